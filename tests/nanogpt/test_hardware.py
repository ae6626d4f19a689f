"""nanogpt/hardware.py: device and dtype resolution, and the datasheet peaks behind MFU."""
import pytest
import torch

import hardware
from cli import UserError


def test_dtype_resolution(monkeypatch):
    # bf16 only where it is native: torch.cuda.is_bf16_supported() also says yes to V100/T4's emulation
    monkeypatch.setattr(torch.version, "hip", None)
    for capability, native in (((7, 5), False), ((8, 0), True), ((9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert hardware.native_bf16("cuda:0") is native
        assert hardware.resolve_dtype("auto", "cuda:0") == ("bfloat16" if native else "float16")
    assert hardware.resolve_dtype("auto", "cpu") == "float32"
    assert hardware.resolve_dtype("bfloat16", "cpu") == "bfloat16"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    with pytest.raises(UserError, match="bfloat16 is not supported by this GPU"):
        hardware.resolve_dtype("bfloat16", "cuda")
    with pytest.raises(UserError, match="float64"):
        hardware.resolve_dtype("float64", "cpu")


def test_device_resolution(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert hardware.resolve_device("auto") == "cpu"
    with pytest.raises(UserError, match="not available"):
        hardware.resolve_device("cuda")
    with pytest.raises(UserError, match="'tpu' is not supported"):
        hardware.resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert hardware.resolve_device("auto") == "cuda" and hardware.resolve_device("cuda", local_rank=3) == "cuda:3"


def test_autocast_only_below_float32():
    assert not isinstance(hardware.autocast("cpu", "float32"), torch.amp.autocast)
    ctx = hardware.autocast("cpu", "bfloat16")
    with ctx:
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_mfu_table():
    assert hardware.mfu(1e9, 1e6, "cpu", torch.float32) is None  # never a made-up figure on CPU
    assert hardware.peak_flops("NVIDIA A100-SXM4-80GB", torch.bfloat16) == 312e12
    assert hardware.peak_flops("NVIDIA H100 80GB HBM3", "bfloat16") == 989.5e12
    assert hardware.peak_flops("NVIDIA H100 PCIe", torch.bfloat16) == 756.5e12
    assert hardware.peak_flops("NVIDIA H200", torch.float16) == 989.5e12
    assert hardware.peak_flops("NVIDIA L4", torch.bfloat16) == 121e12
    assert hardware.peak_flops("NVIDIA GeForce RTX 4090", torch.bfloat16) == 165.2e12
    assert hardware.peak_flops("Tesla V100-SXM2-16GB", torch.bfloat16) is None  # no bf16 tensor cores
    assert hardware.peak_flops("Tesla T4", torch.float16) == 65e12
    assert hardware.peak_flops("NVIDIA L40", torch.bfloat16) is None  # unknown, and not mistaken for an L4
    assert hardware.peak_flops("NVIDIA A10", torch.bfloat16) == 125e12
    assert hardware.peak_flops("Some Future GPU", torch.bfloat16) is None


def test_synchronize_names_the_device(monkeypatch):
    seen = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: seen.append(device))
    hardware.synchronize("cpu")
    hardware.synchronize("cuda:1")
    assert seen == [torch.device("cuda:1")]  # the GPU that ran the work, not the current one
