"""Peak dense FLOP/s per accelerator and precision, for model FLOPs utilization (MFU, PaLM paper app. B).

Figures are the vendors' dense (no 2:4 sparsity) tensor-core peaks from their datasheets. An unknown
device (and any CPU) gives None: MFU is then reported as unknown rather than against a wrong peak.
"""
from __future__ import annotations

import torch

# name fragment (matched against torch.cuda.get_device_name, lower case) -> {precision: FLOP/s}
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "h200": {"bf16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12},
    "h100 pcie": {"bf16": 756.0e12, "tf32": 378.0e12, "fp32": 51.2e12},
    "h100": {"bf16": 989.4e12, "tf32": 494.7e12, "fp32": 66.9e12},  # SXM (also "H100 80GB HBM3")
    "a100": {"bf16": 312.0e12, "tf32": 156.0e12, "fp32": 19.5e12},
    "l40s": {"bf16": 362.05e12, "tf32": 183.0e12, "fp32": 91.6e12},
    "a10g": {"bf16": 70.0e12, "tf32": 35.0e12, "fp32": 31.2e12},
}


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    if device.startswith("mps"):
        return "Apple MPS"
    return "cpu"


def peak_flops(name: str, precision: str) -> float | None:
    """Peak FLOP/s of device `name` at `precision` (bf16 | tf32 | fp32), or None when unknown."""
    low = name.lower()
    for key, table in PEAK_FLOPS.items():  # dict order: the more specific "h100 pcie" comes first
        if key in low:
            return table.get(precision)
    return None
