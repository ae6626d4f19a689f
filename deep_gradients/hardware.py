"""What the machine offers: the device to train on, native bfloat16, asynchronous host-to-GPU copies (pinned
memory), a GPU's peak FLOP/s (the denominator of MFU, model FLOPs utilisation) and its utilisation, sampled
through NVML (the nvidia-ml-py package).
"""
from __future__ import annotations

import os
import platform
import re
import shlex
import threading
import time
from pathlib import Path

import torch

from cli import UserError

# Dense peak FLOP/s from NVIDIA's datasheets: (16-bit tensor cores, TF32). cuDNN convolutions run in TF32 by
# default, so TF32 is the float32 peak. Keys are matched as whole words of torch.cuda.get_device_name, the
# specific names first: "NVIDIA L4" is not an L40S, an A10 not an A10G, an H100 NVL not an H100 SXM.
PEAK_FLOPS = {
    "H100 NVL": (835.5e12, 417.5e12), "H100 PCIe": (756.5e12, 378e12), "H100": (989.5e12, 494.5e12),
    "H200 NVL": (835.5e12, 417.5e12), "H200": (989.5e12, 494.5e12), "GH200": (989.5e12, 494.5e12),
    "A100": (312e12, 156e12), "A10": (125e12, 62.5e12), "L40S": (362.05e12, 183e12), "L4": (121e12, 60e12),
}


def resolve_device(want: str, local_rank: int = 0, local_world: int = 1) -> torch.device:
    """--device auto|cpu|cuda|cuda:N -> the device of this process (under torchrun, cuda = cuda:LOCAL_RANK)."""
    name = "cuda" if want == "auto" and torch.cuda.is_available() else ("cpu" if want == "auto" else want)
    if name != "cpu" and not re.fullmatch(r"cuda(:\d+)?", name):
        raise UserError(f"--device {want!r} is not allowed; one of auto, cpu, cuda, cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {want} asked for CUDA but torch sees no CUDA device; use --device cpu")
    if name.startswith("cuda:") and local_world > 1:
        raise UserError(f"--device {want} would put every process of this node on one GPU; under torchrun "
                        "use --device cuda (process i takes cuda:LOCAL_RANK)")
    if name == "cuda":
        name = f"cuda:{local_rank}"  # one GPU per process
    device = torch.device(name)
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {want}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def native_bf16(device: torch.device) -> bool:
    """bfloat16 at full speed: any CPU (autocast), or a GPU of compute capability >= 8 (Ampere and newer).
    Not torch.cuda.is_bf16_supported(), which also says yes to the slow emulation on V100 / T4."""
    return device.type != "cuda" or torch.version.hip is not None or torch.cuda.get_device_capability(device)[0] >= 8


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch gathered in host memory -> `device`; to a GPU through pinned memory, so the copy is
    asynchronous (a copy from pageable memory waits for the GPU to finish its queue)."""
    if device.type == "cuda" and x.device.type == "cpu":
        x = x.pin_memory()
    return x.to(device, non_blocking=True)


def device_name(device: torch.device) -> str:
    """The GPU's marketing name ("NVIDIA H100 80GB HBM3"), or "cpu"."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def peak_flops(device_name: str, dtype: str) -> float | None:
    """Dense peak FLOP/s of the GPU called device_name at the run's --dtype; None for an unknown GPU."""
    for key, (half, tf32) in PEAK_FLOPS.items():
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", device_name, re.IGNORECASE):
            return half if dtype in ("bfloat16", "float16") else tf32
    return None


def nvml_problem(device: torch.device) -> str | None:
    """Why GPU utilisation cannot be read on `device` (None when it can)."""
    if device.type != "cuda":
        return "not a GPU"
    try:
        torch.cuda.utilization(device)
    except ModuleNotFoundError:
        return "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    except Exception as e:  # NVML present but refusing, e.g. inside some containers
        return f"NVML cannot read this GPU ({type(e).__name__}: {e})"
    return None


class UtilSampler:
    """Samples torch.cuda.utilization() (NVML: % of time a kernel was running) in a thread, every 50 ms."""

    def __init__(self, device: torch.device, period: float = 0.05):
        self.device, self.period, self.samples = device, period, []
        self.problem = nvml_problem(device)
        self._stop = threading.Event()
        self._thread = None

    def start(self) -> None:
        self.samples = []
        if self.problem is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            try:
                self.samples.append(torch.cuda.utilization(self.device))
            except Exception as e:  # NVML gave up mid-run: say so (results.json) rather than go quiet
                self.problem = f"NVML stopped answering during the run ({type(e).__name__}: {e})"
                return

    def stop(self) -> float | None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        return sum(self.samples) / len(self.samples) if self.samples else None


REPO = Path(os.path.abspath(__file__)).parent.parent  # the repository's root, above deep_gradients/


def from_repo(path: str) -> str:
    """A path as a command typed at the repository's root names it, so that a results file names no folder of
    this machine: relative to the root (deep_gradients/out/run, ../shared/data/mnist), unless typed absolute
    outside the repository (kept as typed). Empty stays empty."""
    full = Path(os.path.abspath(path))  # not resolved: a symbolic link (../shared beside a clone) is kept
    if not path or (os.path.isabs(path) and not full.is_relative_to(REPO)):
        return path
    return os.path.relpath(full, REPO)


def settings_from_repo(settings: dict, paths=("data_dir", "out_dir", "runs_dir")) -> dict:
    """A script's settings as a results file records them: the values of `paths` written by from_repo."""
    return {k: from_repo(v) if k in paths else v for k, v in settings.items()}


def made_by(command: str) -> dict:
    """The opening of a results file: the command that made it, the machine, the thread count, the date (UTC)."""
    return {"command": command, "machine": machine_line(), "torch_threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def typed_command(script: str, argv: list[str]) -> str:
    """`python deep_gradients/SCRIPT.py ARGS`: the script named from the repository's root, its arguments as typed."""
    return shlex.join(["python", from_repo(script), *argv])


def machine_line() -> str:
    """CPU cores and model, GPUs, torch and Python versions: the machine a figure was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return (f"{os.cpu_count()} CPU cores ({cpu}); GPUs: {', '.join(gpus) if gpus else 'none'}; "
            f"torch {torch.__version__}; Python {platform.python_version()}")
