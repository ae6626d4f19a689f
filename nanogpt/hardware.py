"""The machine: which device and dtype a run gets, the autocast context, and the datasheet peaks behind MFU.

MFU (model FLOPs utilization, PaLM appendix B) is the achieved training FLOP/s over the dense datasheet peak
of the GPU in use for the dtype in use; it is None on a CPU or an unknown GPU, never a made-up figure.
"""
from __future__ import annotations

import contextlib
import os
import platform
import re

import torch

from cli import UserError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str, local_rank: int = -1) -> str:
    """'auto' -> cuda if present, else cpu; under torchrun each process takes GPU LOCAL_RANK."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kind = device.split(":")[0]
    if kind not in ("cpu", "cuda"):
        raise UserError(f"device {device!r} is not supported; use auto, cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} asked for, but CUDA is not available on this machine; use --device cpu")
    if kind == "cuda" and local_rank >= 0:
        device = f"cuda:{local_rank}"
    return device


def native_bf16(device: str) -> bool:
    """bfloat16 tensor cores: Ampere or newer (compute capability >= 8), or ROCm. Not
    torch.cuda.is_bf16_supported(), which also says yes to the slow emulation on V100 / T4."""
    return torch.version.hip is not None or torch.cuda.get_device_capability(torch.device(device))[0] >= 8


def resolve_dtype(dtype: str, device: str) -> str:
    """'auto' -> bfloat16 on a GPU that has it, float16 on an older GPU, float32 on CPU; refuses what the
    device lacks."""
    if dtype not in ("auto", *DTYPES):
        raise UserError(f"dtype {dtype!r} is not one of auto, float32, bfloat16, float16")
    if not device.startswith("cuda"):
        return "float32" if dtype == "auto" else dtype
    bf16 = native_bf16(device)
    if dtype == "auto":
        return "bfloat16" if bf16 else "float16"
    if dtype == "bfloat16" and not bf16:
        raise UserError("dtype bfloat16 is not supported by this GPU (needs Ampere or newer); use float16")
    return dtype


def autocast(device: str, dtype: str):
    """The mixed-precision context of forward passes: nothing for float32, else torch.autocast."""
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.amp.autocast(torch.device(device).type, dtype=DTYPES[dtype])


def synchronize(device: str) -> None:
    """Wait for the device's queued work (a no-op on CPU), so a timer measures the work, not its launch."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def host_memory() -> int | None:
    """Bytes of physical memory of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_model_fits(n_layer: int, n_embd: int, block_size: int) -> None:
    """Refuse a model whose float32 weights alone exceed this machine's memory (it is built there first), before
    an allocation fails with a traceback. Counts 12 * n_layer * n_embd^2 + block_size * n_embd (no vocabulary)."""
    n = 12 * n_layer * n_embd**2 + block_size * n_embd
    have = host_memory()
    if have and 4 * n > have:
        raise UserError(f"--n-layer {n_layer}, --n-embd {n_embd}, --block-size {block_size} make about {n:.2g} "
                        f"parameters, {4 * n / 2**30:,.0f} GiB in float32, more than this machine's "
                        f"{have / 2**30:,.0f} GiB of memory; choose a smaller model")


def describe(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


# Dense (no 2:4 sparsity) tensor-core / vector peaks from NVIDIA's datasheets, FLOP/s. "tf32" is float32
# matmuls with TF32 allowed; "fp32" without. A dtype a GPU has no fast path for (bf16 before Ampere) is
# absent, so MFU is None rather than a made-up figure. Matched as whole words of torch.cuda.get_device_name,
# first match wins, so specific names come before general ones.
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "H100 NVL": {"bf16": 835.5e12, "fp16": 835.5e12, "tf32": 417.5e12, "fp32": 60e12},
    "H100 PCIe": {"bf16": 756.5e12, "fp16": 756.5e12, "tf32": 378e12, "fp32": 51e12},
    "H100": {"bf16": 989.5e12, "fp16": 989.5e12, "tf32": 494.5e12, "fp32": 67e12},  # SXM5 ("H100 80GB HBM3")
    "H200 NVL": {"bf16": 835.5e12, "fp16": 835.5e12, "tf32": 417.5e12, "fp32": 60e12},
    "H200": {"bf16": 989.5e12, "fp16": 989.5e12, "tf32": 494.5e12, "fp32": 67e12},  # SXM
    "GH200": {"bf16": 989.5e12, "fp16": 989.5e12, "tf32": 494.5e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12},  # SXM4 and PCIe, 40/80 GB
    # AWS's A10G has no NVIDIA datasheet and published tensor rates disagree: only its FP32 rate is given
    "A10G": {"fp32": 31.2e12},
    "A10": {"bf16": 125e12, "fp16": 125e12, "tf32": 62.5e12, "fp32": 31.2e12},
    "L40S": {"bf16": 362.05e12, "fp16": 362.05e12, "tf32": 183e12, "fp32": 91.6e12},
    "L4": {"bf16": 121e12, "fp16": 121e12, "tf32": 60e12, "fp32": 30.3e12},
    "RTX 4090": {"bf16": 165.2e12, "fp16": 165.2e12, "tf32": 82.6e12, "fp32": 82.6e12},  # fp32 accumulate
    "RTX 3090": {"bf16": 71e12, "fp16": 71e12, "tf32": 35.6e12, "fp32": 35.6e12},  # fp32 accumulate
    "V100-PCIE": {"fp16": 112e12, "fp32": 14e12},
    "V100": {"fp16": 125e12, "fp32": 15.7e12},  # SXM2
    "T4": {"fp16": 65e12, "fp32": 8.1e12},
}

_DTYPE_KEYS = {
    torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32",
    "bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "fp16": "fp16", "half": "fp16",
    "float32": "fp32", "fp32": "fp32", "float": "fp32", "tf32": "tf32",
}


def peak_flops(device_name: str, dtype) -> float | None:
    """Datasheet dense peak FLOP/s of a GPU (by torch.cuda.get_device_name) for dtype, or None if unknown.
    float32 counts as TF32 when torch allows TF32 matmuls."""
    key = _DTYPE_KEYS.get(dtype)
    if key is None:
        return None
    if key == "fp32" and torch.backends.cuda.matmul.allow_tf32:
        key = "tf32"
    for pattern, table in PEAK_FLOPS.items():
        # whole-word match, so "L4" does not claim an "L40" nor "H200" a "GH200"
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(pattern)}(?![A-Za-z0-9])", device_name, re.IGNORECASE):
            return table.get(key)
    return None


def mfu(flops_per_token: float, tokens_per_s: float, device, dtype) -> float | None:
    """Achieved FLOP/s over the peak of the GPU in use; None on CPU or for a GPU not in PEAK_FLOPS."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    peak = peak_flops(torch.cuda.get_device_name(device), dtype)
    return None if peak is None else flops_per_token * tokens_per_s / peak
