"""deep_gradients/hardware.py: device resolution, the MFU peak table by exact GPU name, NVML availability."""
import pytest
import torch

import hardware
from cli import UserError


@pytest.mark.parametrize("name,dtype,peak", [
    ("NVIDIA L4", "bfloat16", 121e12), ("NVIDIA L40S", "bfloat16", 362.05e12),  # L4 is not an L40S
    ("NVIDIA A10", "float16", 125e12), ("NVIDIA A10G", "bfloat16", None),  # an A10 is not an A10G
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989.5e12), ("NVIDIA H100 NVL", "bfloat16", 835.5e12),
    ("NVIDIA H100 PCIe", "float32", 378e12), ("NVIDIA H200", "bfloat16", 989.5e12),
    ("NVIDIA GH200 480GB", "bfloat16", 989.5e12), ("NVIDIA A100-SXM4-80GB", "float32", 156e12),
    ("Tesla T4", "float16", None), ("NVIDIA GeForce RTX 4090", "bfloat16", None),
])
def test_peak_flops_by_whole_gpu_name(name, dtype, peak):
    assert hardware.peak_flops(name, dtype) == peak


def test_resolve_device():
    assert hardware.resolve_device("auto") == torch.device("cpu")  # the suite hides CUDA
    assert hardware.resolve_device("cpu") == torch.device("cpu")
    for bad, needle in (("gpu", "not allowed"), ("cuda:x", "not allowed"), ("cuda", "no CUDA device")):
        with pytest.raises(UserError, match=needle):
            hardware.resolve_device(bad)


def test_missing_nvidia_ml_py_is_said_not_swallowed(monkeypatch):
    def no_pynvml(device=None):
        raise ModuleNotFoundError("pynvml does not seem to be installed or it can't be imported.")

    monkeypatch.setattr(torch.cuda, "utilization", no_pynvml)
    problem = hardware.nvml_problem(torch.device("cuda", 0))
    assert "nvidia-ml-py is not installed" in problem
    sampler = hardware.UtilSampler(torch.device("cuda", 0))
    assert sampler.problem == problem
    sampler.start()
    assert sampler.stop() is None  # no column made up
    monkeypatch.setattr(torch.cuda, "utilization", lambda device=None: 37)
    assert hardware.nvml_problem(torch.device("cuda", 0)) is None


def test_native_bf16(monkeypatch):
    assert hardware.native_bf16(torch.device("cpu"))
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 5))  # T4: emulated only
    assert not hardware.native_bf16(torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    assert hardware.native_bf16(torch.device("cuda", 0))


def test_nvml_failing_during_the_run_is_said(monkeypatch):
    calls = []

    def first_call_only(device=None):
        calls.append(device)
        if len(calls) > 1:
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")
        return 50

    monkeypatch.setattr(torch.cuda, "utilization", first_call_only)
    sampler = hardware.UtilSampler(torch.device("cuda", 0), period=0.001)
    assert sampler.problem is None  # NVML answered the first question
    sampler.start()
    sampler._thread.join(timeout=30)  # the sampling thread ends itself at the failure
    assert sampler.stop() is None
    assert sampler.problem == "NVML stopped answering during the run (RuntimeError: NVML_ERROR_GPU_IS_LOST)"


def test_host_batches_reach_the_gpu_through_pinned_memory(monkeypatch):
    """--no-data-on-device: each batch gathered on the host is pinned, then copied with non_blocking."""
    calls, real_to = [], torch.Tensor.to

    def fake_to(x, *args, **kw):  # this CPU build has no CUDA: record the copy instead of making it
        if args and isinstance(args[0], torch.device) and args[0].type == "cuda":
            calls.append(("to", args[0].type, kw.get("non_blocking")))
            return x
        return real_to(x, *args, **kw)

    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda x, *a: (calls.append("pin"), x)[1])
    monkeypatch.setattr(torch.Tensor, "to", fake_to)
    hardware.to_device(torch.zeros(2, 1, 28, 28), torch.device("cuda", 0))
    assert calls == ["pin", ("to", "cuda", True)]
    calls.clear()
    hardware.to_device(torch.zeros(2), torch.device("cpu"))
    assert calls == []  # on the CPU nothing to pin
