"""Seeds, devices, autocast, Ctrl-C and the notebook set-up: the one place where each is decided."""

from __future__ import annotations

import os
import random
import signal
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's generators (CPU and every CUDA device)."""
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds all CUDA devices


def pick_device(device: str = "auto") -> torch.device:
    """Resolve a device name: "auto" picks cuda > mps > cpu.

    Returns:
        The torch device.
    Raises:
        RuntimeError: a device was asked for by name and this machine lacks it.
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = device.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device={device!r} was requested but this machine has no CUDA device "
            "(or torch is a CPU build). Use device='auto' or device='cpu'."
        )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(
            f"device={device!r} was requested but MPS is not available here. "
            "Use device='auto' or device='cpu'."
        )
    if kind not in {"cpu", "cuda", "mps"}:
        raise ValueError(
            f"unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
        )
    return torch.device(device)


def autocast(device: torch.device, amp: str) -> AbstractContextManager:
    """bfloat16 autocast on CUDA when amp is "bf16"; on other devices a context that does nothing."""
    if device.type == "cuda" and amp == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


class Interrupt:
    """Turn Ctrl-C into a flag a loop reads between steps, so a checkpoint is never half a step.

    A second Ctrl-C interrupts at once, and nothing is saved. (Only the main thread can catch
    signals; elsewhere Ctrl-C never reaches the loop.)
    """

    def __init__(self) -> None:
        self.requested = False  # Ctrl-C was pressed: stop after this step
        self.forced = False  # pressed twice: stop now, without saving
        self.previous = None

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def set_cpu_threads(threads: int = 0) -> int:
    """Set torch's intra-op threads (0 keeps torch's default, one per physical core).

    Returns:
        The number of threads in force.
    """
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def setup(seed: int = 0, device: str = "auto", renderer: str | None = None) -> torch.device:
    """The first call of every notebook: seed, device and plotly renderer in one place.

    The plotly renderer comes from `renderer`, else the PLOTLY_RENDERER environment variable,
    else plotly's own default (which works in JupyterLab and writes HTML-friendly output headless).

    Returns:
        The chosen torch device.
    """
    import plotly.io as pio

    renderer = renderer or os.environ.get("PLOTLY_RENDERER")
    if renderer:
        pio.renderers.default = renderer
    seed_everything(seed)
    return pick_device(device)
