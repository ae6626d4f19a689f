"""The device a run uses, the precision it can afford there, and the peak FLOP/s that MFU is measured against
(PaLM paper, app. B).

Peaks are the vendors' dense (no 2:4 sparsity) tensor-core figures from their datasheets, matched against
torch.cuda.get_device_name by whole words, first match first, so that "NVIDIA L4" is not an L40S, an A10 is
not an A10G and an H100 NVL is not an H100 SXM. An unknown device (and any CPU) gives None: MFU is then
reported as unknown rather than against a wrong peak.
"""
from __future__ import annotations

import os
import platform
import re
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import torch

from cli import UserError

PEAK_FLOPS: dict[str, dict[str, float]] = {  # the same figures as nanogpt's and deep_gradients' tables
    "H100 NVL": {"bf16": 835.5e12, "fp16": 835.5e12, "tf32": 417.5e12, "fp32": 60e12},
    "H100 PCIe": {"bf16": 756.5e12, "fp16": 756.5e12, "tf32": 378e12, "fp32": 51e12},
    "H100": {"bf16": 989.5e12, "fp16": 989.5e12, "tf32": 494.5e12, "fp32": 67e12},  # SXM ("H100 80GB HBM3")
    "H200 NVL": {"bf16": 835.5e12, "fp16": 835.5e12, "tf32": 417.5e12, "fp32": 60e12},
    "H200": {"bf16": 989.5e12, "fp16": 989.5e12, "tf32": 494.5e12, "fp32": 67e12},  # SXM
    "GH200": {"bf16": 989.5e12, "fp16": 989.5e12, "tf32": 494.5e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
    # AWS's A10G has no NVIDIA datasheet and published tensor rates disagree: only its FP32 rate is given
    "A10G": {"fp32": 31.2e12},
    "A10": {"bf16": 125e12, "fp16": 125e12, "tf32": 62.5e12, "fp32": 31.2e12},
    "L40S": {"bf16": 362.05e12, "fp16": 362.05e12, "tf32": 183e12, "fp32": 91.6e12},
    "L4": {"bf16": 121e12, "fp16": 121e12, "tf32": 60e12, "fp32": 30.3e12},
    "V100": {"fp16": 125e12, "fp32": 15.7e12},
    "T4": {"fp16": 65e12, "fp32": 8.1e12},
}
DTYPES = ("float32", "bfloat16", "float16")


def resolve_device(name: str, local_rank: int = 0, distributed: bool = False) -> str:
    """auto | cpu | cuda | cuda:N | mps -> this process's device (under torchrun, cuda is cuda:LOCAL_RANK, and
    an explicit cuda:N other than that is refused: DDP is given device_ids=[LOCAL_RANK])."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        else:
            return "mps" if torch.backends.mps.is_available() else "cpu"
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", name):
        raise UserError(f"--device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    if distributed and name.startswith("cuda:") and int(name[5:]) != local_rank:
        raise UserError(f"--device {name}: under torchrun each process uses cuda:LOCAL_RANK (here cuda:{local_rank}); "
                        "pass --device cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}, but CUDA is not available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps, but MPS is not available")
    if name == "cuda":
        name = f"cuda:{local_rank}"
    if name.startswith("cuda") and int(name[5:]) >= torch.cuda.device_count():
        raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return name


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return "Apple MPS" if device.startswith("mps") else "cpu"


def native_bf16(device: str) -> bool:
    """bfloat16 tensor cores: Ampere or newer (compute capability >= 8), or ROCm; not is_bf16_supported(),
    which also says yes to the slow emulation on V100 / T4. CPUs and MPS autocast bf16 themselves."""
    if not device.startswith("cuda"):
        return True
    return torch.version.hip is not None or torch.cuda.get_device_capability(torch.device(device))[0] >= 8


def pick_dtype(dtype: str, device: str) -> tuple[str, str | None]:
    """The autocast dtype to use for `--dtype` on `device`, and a one-line note when it had to change."""
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r}: use {', '.join(DTYPES)}")
    if dtype == "bfloat16" and not native_bf16(device):
        return "float16", f"note: {device_name(device)} has no native bfloat16; using float16 with a GradScaler"
    if dtype == "float16" and not device.startswith("cuda"):
        return "float32", f"note: float16 autocast is for CUDA; {device} runs in float32"
    return dtype, None


def autocast_for(dtype: str, device: str):
    """A zero-argument context factory: autocast to `dtype`, or nothing for float32."""
    if dtype == "float32":
        return nullcontext
    kind = {"bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    return lambda: torch.autocast(device_type=device.split(":")[0], dtype=kind)


def peak_flops(name: str, precision: str) -> float | None:
    """Peak FLOP/s of device `name` at `precision` (bf16 | fp16 | tf32 | fp32), or None when unknown."""
    for key, table in PEAK_FLOPS.items():
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", name, re.IGNORECASE):
            return table.get(precision)
    return None


def machine() -> str:
    """One line naming what a measurement ran on, for the results files: CPU, GPU, Python, torch, threads."""
    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    cuda = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {platform.machine()}, {os.cpu_count()} CPUs, {cuda}, {platform.system()}, "
            f"Python {platform.python_version()}, torch {torch.__version__}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


REPO = Path(os.path.abspath(__file__)).parent.parent


def from_repo(path: str) -> str:
    """A path as a command typed at the repository's root names it, so that a results file names no folder of
    this machine: relative to the root (build_nanogpt/out/bench, ../shared/data), unless it lies outside the
    repository and was typed absolute (kept as typed). Empty stays empty."""
    full = Path(os.path.abspath(path))  # not resolved: a symbolic link (../shared beside a clone) is kept
    if not path or (os.path.isabs(path) and not full.is_relative_to(REPO)):
        return path
    return os.path.relpath(full, REPO)


def settings(cfg) -> dict:
    """A config as a results file records it: its folders (the *_dir fields) named from the repository's root."""
    return {k: from_repo(v) if k.endswith("_dir") else v for k, v in asdict(cfg).items()}
