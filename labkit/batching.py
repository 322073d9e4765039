"""Contiguous streams for truncated backpropagation through time.

A token sequence w_0 .. w_N is cut into B streams that are read side by side, T tokens at a time;
the LSTM state of each stream is carried from one window to the next. Inputs are w_0 .. w_{N-1} and
targets w_1 .. w_N, so every token after w_0 is predicted exactly once per epoch. When N is not a
multiple of B, the last stream is padded and its padded targets are IGNORE_INDEX, which the
likelihood skips: no token is lost, none is seen twice.
"""

from __future__ import annotations

import math

import torch

IGNORE_INDEX = -100  # a target that nothing predicts (padding)


def batchify(
    ids: torch.Tensor, batch_size: int, pad_id: int = 0, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lay `ids` (N,) out as `batch_size` contiguous streams.

    Args:
        mask: optional (N,) bool, True where a token is a target; the others (and padding) become
            IGNORE_INDEX, so they are read as input but never predicted.
    Returns:
        inputs (B, S) and targets (B, S), S = ceil((N - 1) / B); padded targets are IGNORE_INDEX.
    Raises:
        ValueError: fewer than two tokens, fewer predictions than streams (say which to shrink), or
            a mask of another length than `ids`.
    """
    if ids.dim() != 1:
        raise ValueError(f"batchify expects a 1-D tensor of ids, got shape {tuple(ids.shape)}")
    if mask is not None and mask.shape != ids.shape:
        raise ValueError(
            f"the target mask has shape {tuple(mask.shape)} but the ids {tuple(ids.shape)}; "
            "build one mask entry per token."
        )
    n = ids.numel() - 1  # number of predictions
    if n < 1:
        raise ValueError(
            "the token stream is empty: a corpus needs at least two tokens to train on."
        )
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if n < batch_size:
        raise ValueError(
            f"the token stream has {n} predictions, fewer than batch_size={batch_size}: "
            "use a longer corpus or a smaller --batch_size."
        )
    s = math.ceil(n / batch_size)
    inputs = torch.full((batch_size * s,), pad_id, dtype=torch.long)
    targets = torch.full((batch_size * s,), IGNORE_INDEX, dtype=torch.long)
    inputs[:n] = ids[:-1]
    targets[:n] = ids[1:] if mask is None else ids[1:].masked_fill(~mask[1:], IGNORE_INDEX)
    return inputs.view(batch_size, s), targets.view(batch_size, s)


def num_windows(stream: torch.Tensor, bptt: int) -> int:
    """How many windows of `bptt` columns cover a (B, S) stream (the last may be shorter)."""
    return math.ceil(stream.size(1) / bptt)


def window(
    inputs: torch.Tensor, targets: torch.Tensor, index: int, bptt: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The `index`-th window: inputs and targets (B, <=bptt), views into the streams."""
    start = index * bptt
    return inputs[:, start : start + bptt], targets[:, start : start + bptt]


def shard_rows(stream: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """The rows of a (B, S) stream that one rank of `world_size` trains on (B must divide evenly).

    Raises:
        ValueError: B is not a multiple of world_size.
    """
    b = stream.size(0)
    if b % world_size:
        raise ValueError(
            f"batch_size={b} does not split evenly over {world_size} processes; "
            f"use a batch_size that is a multiple of {world_size}."
        )
    per = b // world_size
    return stream[rank * per : (rank + 1) * per]


def window_counts(targets: torch.Tensor, bptt: int) -> list[int]:
    """Real (non-padding) targets in each window of a (B, S) target stream, over all rows."""
    per_column = (targets != IGNORE_INDEX).sum(0)  # (S,)
    n = num_windows(targets, bptt)
    padded = torch.zeros(n * bptt, dtype=torch.long)
    padded[: per_column.numel()] = per_column
    return padded.view(n, bptt).sum(1).tolist()
