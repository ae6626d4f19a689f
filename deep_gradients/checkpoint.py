"""train.py's checkpoint: all a resumed run needs to take exactly the steps the uninterrupted run takes.

OUT/ckpt.pt holds the weights, the optimiser and GradScaler state, the RNG, the Config, and `Progress`: how
many epochs are done, how many steps of the next one (a run stopped by a signal saves mid-epoch), and the
history so far. The batches and shifts of every step are a pure function of (seed, epoch), so nothing else
is needed. Only finite weights are ever saved: train.py checks before it calls `save`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from cli import UserError
from files import atomic_write

# A resumed run takes its settings from the checkpoint. Only these may be changed by a flag given with --resume:
# where things are, how long the run goes on, how it runs and reports. Every other setting (the network, the
# data, the optimiser, the seed, the dtype) fixes the steps already taken and is refused. A longer --max-epochs
# stretches the learning-rate schedule over the new total from the next step on.
MAY_CHANGE = ("max_epochs", "stop_after", "data_dir", "download", "out_dir", "resume", "device", "threads",
              "channels_last", "cudnn_benchmark", "compile", "compile_mode", "warmup_steps", "data_on_device",
              "log_interval", "record_interval", "eval", "progress")
KEYS = {"model", "optimizer", "scaler", "epoch", "progress", "rng", "config"}


@dataclass
class Progress:
    """Where a run stands: `epoch` epochs done, `step` steps of the next one (with their summed loss and time)."""
    epoch: int = 0
    step: int = 0
    loss_sum: float = 0.0
    seconds: float = 0.0
    history: dict = field(default_factory=lambda: {"epochs": [], "train_curve": []})


def save(path: Path, model: nn.Module, optimizer, scaler, config: dict, progress: Progress,
         device: torch.device) -> None:
    rng = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
             "epoch": progress.epoch, "progress": dataclasses.asdict(progress), "rng": rng, "config": config}
    atomic_write(path, lambda tmp: torch.save(state, tmp))  # a crash mid-save leaves the previous file intact


def load(path: Path, flag: str = "--resume", keys: set = KEYS, device="cpu") -> dict:
    """The checkpoint at `path`, or a one-line UserError: missing, damaged, or not a train.py checkpoint
    (one holding all of `keys`)."""
    if not Path(path).is_file():
        raise UserError(f"{flag}: no checkpoint at {path}")
    try:
        ck = torch.load(path, map_location=device, weights_only=True)  # never unpickles code
    except Exception as e:  # truncated, not a torch file, or a pickle that weights_only refuses
        raise UserError(f"{flag}: cannot read {path}: damaged or not a checkpoint "
                        f"({type(e).__name__})") from None
    if not isinstance(ck, dict) or not keys <= set(ck):
        lacks = ", ".join(sorted(keys - set(ck))) if isinstance(ck, dict) else "a dict"
        raise UserError(f"{flag}: {path} is not a deep_gradients train.py checkpoint (it lacks {lacks})")
    return ck


def resumed_settings(saved: dict, given: dict) -> tuple[dict, list[str]]:
    """A resumed run's settings: the checkpoint's (`saved`), then the flags given with --resume (`given`;
    `restore` refuses those that may not change) -> (settings, a line for each setting a flag changes)."""
    changes = [f"--resume: --{key.replace('_', '-')} {value} instead of the checkpoint's {saved[key]}"
               for key, value in given.items() if key in MAY_CHANGE and key in saved and saved[key] != value
               and key not in ("out_dir", "resume")]
    return {**saved, **given}, changes


def check_settings(saved: dict, cfg) -> None:
    """UserError naming the first flag that differs from the checkpoint's settings and may not change."""
    for key, value in saved.items():
        if key not in MAY_CHANGE and hasattr(cfg, key) and getattr(cfg, key) != value:
            flag = f"--{key.replace('_', '-')}"
            raise UserError(f"{flag} {getattr(cfg, key)}: a resumed run keeps its checkpoint's {key}={value!r}; leave "
                            f"{flag} out, or start a new run in another --out-dir")


def restore(ck: dict, cfg, model: nn.Module, optimizer, scaler, device: torch.device, path: Path) -> Progress:
    """Load a checkpoint that `load` returned into the run's objects -> its Progress."""
    check_settings(ck["config"], cfg)
    try:
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        progress = Progress(**ck["progress"])
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"--resume: {path} does not fit this model ({str(e).splitlines()[0][:120]})") from None
    if cfg.max_epochs < progress.epoch:
        raise UserError(f"--max-epochs {cfg.max_epochs}: the checkpoint {path} has done {progress.epoch} epochs")
    torch.set_rng_state(ck["rng"]["cpu"].cpu())
    if device.type == "cuda" and "cuda" in ck["rng"]:
        torch.cuda.set_rng_state(ck["rng"]["cuda"].cpu())
    return progress


def finite(model: nn.Module) -> bool:
    """True when every parameter and buffer is finite (one host sync)."""
    flags = [torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True
