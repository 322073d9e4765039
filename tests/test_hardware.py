"""Peak FLOP/s lookup: device names as torch reports them map to the right datasheet entry."""

import pytest
import torch

from labkit.hardware import device_name, gpu_spec, peak_flops


@pytest.mark.parametrize(
    ("name", "card"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA H200", "H200 SXM"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A100 80GB PCIe", "A100"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA GeForce RTX 4090", "RTX 4090"),
    ],
)
def test_torch_device_names_find_their_card(name, card):
    assert gpu_spec(name).name == card


def test_peaks_are_dense_datasheet_figures():
    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.4e12)
    assert peak_flops("NVIDIA H100 PCIe", "fp32") == pytest.approx(51.2e12)
    assert peak_flops("NVIDIA L4", "bf16") == pytest.approx(121e12)  # 242 is with sparsity
    for name in ("NVIDIA H200", "NVIDIA A100-SXM4-40GB", "NVIDIA GeForce RTX 4090"):
        assert peak_flops(name, "bf16") > peak_flops(name, "fp32")


def test_cpu_unknown_cards_and_missing_precisions_give_none():
    assert device_name("cpu") == "cpu"
    assert peak_flops(torch.device("cpu")) is None
    assert peak_flops("NVIDIA A10G") is None  # a different chip from the A10: no guess
    assert peak_flops("Tesla V100-SXM2-16GB", "bf16") is None  # Volta has no BF16 units
    assert peak_flops("Tesla V100-SXM2-16GB", "fp32") == pytest.approx(15.7e12)


def test_an_unknown_precision_is_rejected():
    with pytest.raises(ValueError, match="'bf16' or 'fp32'"):
        peak_flops("NVIDIA L4", "fp8")
