"""One process or several under torchrun: rank, world size and the few collectives training needs.

`World.start()` reads torchrun's environment; in a single process every collective below returns at
once and `wrap` hands the model back unchanged, so the training loop reads the same either way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from labkit.batching import shard_rows


class _DDP(DistributedDataParallel):
    """DDP that also exposes `target_logprobs`, so `token_logprobs` runs through the wrapper."""

    def target_logprobs(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.module.target_logprobs(features, targets)


@dataclass
class World:
    """This process's place among the processes of a run (rank 0 of 1 without torchrun)."""

    device: torch.device  # this process's device
    rank: int = 0  # this process's index; rank 0 evaluates and writes the run folder
    size: int = 1  # number of processes
    owns_group: bool = False  # this World started the process group, so `close` ends it

    @classmethod
    def start(cls, device: torch.device) -> World:
        """The World torchrun's environment describes; joins (or starts) the process group.

        Under torchrun each process takes the GPU of its LOCAL_RANK; gloo serves CPUs, nccl GPUs.
        """
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size == 1:
            return cls(device)
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(device, dist.get_rank(), size, owns)

    def shard(self, stream: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a (B, S) stream: (B / size, S)."""
        return shard_rows(stream, self.rank, self.size)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model wrapped in DistributedDataParallel, or the model itself in one process."""
        if self.size == 1:
            return model
        return _DDP(model, device_ids=[self.device] if self.device.type == "cuda" else None)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over the ranks, in place."""
        if self.size > 1:
            dist.all_reduce(tensor)
        return tensor

    def min(self, tensor: torch.Tensor) -> torch.Tensor:
        """The smallest `tensor` of all ranks, in place."""
        if self.size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return tensor

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's `tensor` on every rank (gloo needs it on the CPU, nccl on the GPU)."""
        if self.size == 1:
            return tensor
        tensor = tensor.to(self.device)
        dist.broadcast(tensor, src=0)
        return tensor

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value` (any picklable object), in rank order, on every rank."""
        if self.size == 1:
            return [value]
        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def close(self) -> None:
        """End the process group if this World started it."""
        if self.owns_group:
            dist.destroy_process_group()
