"""What the accelerator could do at most: dense peak FLOP/s of common NVIDIA cards.

Achieved FLOP/s over the card's peak (model FLOP utilisation, MFU) says how much of the hardware a
training run uses. Peaks are the vendors' datasheet figures for dense matrix maths (without 2:4
sparsity, which halves the quoted tensor-core numbers): BF16 on tensor cores with FP32 accumulation,
and plain FP32 on CUDA cores (no TF32, which PyTorch leaves off for matrix products by default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GPUSpec:
    """Datasheet peaks of one card."""

    name: str  # the card, as the table names it
    bf16: float | None  # dense BF16 tensor-core FLOP/s; None where the card has no BF16 units
    fp32: float  # dense FP32 FLOP/s on CUDA cores


# Matched in order against the lower-cased device name, so variants come before their family.
# torch.cuda.get_device_name() gives e.g. "NVIDIA H100 80GB HBM3" (SXM), "NVIDIA H100 PCIe",
# "NVIDIA A100-SXM4-80GB", "NVIDIA GeForce RTX 4090".
SPECS: tuple[tuple[tuple[str, ...], GPUSpec], ...] = (
    (("h200", "nvl"), GPUSpec("H200 NVL", 835e12, 60e12)),
    (("h200",), GPUSpec("H200 SXM", 989.4e12, 66.9e12)),
    (("h100", "nvl"), GPUSpec("H100 NVL", 835e12, 60e12)),
    (("h100", "pcie"), GPUSpec("H100 PCIe", 756.5e12, 51.2e12)),
    (("h100",), GPUSpec("H100 SXM", 989.4e12, 66.9e12)),
    (("a100",), GPUSpec("A100", 312e12, 19.5e12)),
    (("l40s",), GPUSpec("L40S", 362.05e12, 91.6e12)),
    (("l4",), GPUSpec("L4", 121e12, 30.3e12)),
    (("a10",), GPUSpec("A10", 125e12, 31.2e12)),
    (("rtx 4090",), GPUSpec("RTX 4090", 165.2e12, 82.6e12)),
    (("rtx 3090",), GPUSpec("RTX 3090", 71e12, 35.6e12)),
    (("v100",), GPUSpec("V100", None, 15.7e12)),
    (("t4",), GPUSpec("T4", None, 8.1e12)),
)


def device_name(device: torch.device | str = "cuda") -> str:
    """The accelerator's marketing name (e.g. "NVIDIA H100 80GB HBM3"), or "cpu" / "mps"."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def gpu_spec(name: str) -> GPUSpec | None:
    """The datasheet entry whose keywords all occur in `name` (None for a CPU or an unknown card)."""
    lowered = name.lower()
    for words, spec in SPECS:
        if all(_has_word(lowered, w) for w in words):
            return spec
    return None


def peak_flops(device: torch.device | str, dtype: str = "bf16") -> float | None:
    """Dense peak FLOP/s of `device` (a torch device, or a card name) for "bf16" or "fp32".

    Returns:
        FLOP/s, or None for a CPU, an unknown card, or a card without that precision.
    Raises:
        ValueError: a dtype other than "bf16" or "fp32".
    """
    if dtype not in ("bf16", "fp32"):
        raise ValueError(f"dtype must be 'bf16' or 'fp32', got {dtype!r}")
    if isinstance(device, torch.device) or device.split(":")[0] in ("cpu", "cuda", "mps"):
        name = device_name(device)
    else:
        name = device
    spec = gpu_spec(name)
    return None if spec is None else getattr(spec, dtype)


def _has_word(text: str, word: str) -> bool:
    """`word` occurs in `text` as a whole word: "l4" is not found in "l40s", nor "a10" in "a100"."""
    return re.search(rf"(?<![a-z0-9]){re.escape(word)}(?![a-z0-9])", text) is not None
