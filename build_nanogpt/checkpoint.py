"""Checkpoints of train.py: what a run saves and how it comes back, side by side.

A checkpoint holds the model, the optimizer, the gradient scaler, the step, the loader position, the RNG
states, the config and the model's shape (`model_args`). It is written by rank 0 to a temp file and renamed,
and read with `torch.load(weights_only=True, mmap=True)`: plain tensors and numbers, never pickled code. A file that is
damaged, truncated or from another program is refused in one line.
"""
from __future__ import annotations

import pickle
from dataclasses import asdict

import torch

from cli import UserError
from files import atomic_write

KEYS = ("model", "optimizer", "step", "loader", "config", "model_args", "rng")


def read_checkpoint(path, keys=KEYS, what: str = "this train.py") -> dict:
    """The checkpoint at `path` as a dict holding `keys`; one UserError line for anything else."""
    try:
        # mmap: tensors are read from the file as they are used, not copied into RAM by every rank at once
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise UserError(f"no checkpoint at {path}") from None
    except Exception as e:  # noqa: BLE001 - truncated zip, not a torch file, an object weights_only refuses
        if "Unsupported global" in str(e) or "Unsupported class" in str(e):
            raise UserError(f"{path} holds pickled objects besides tensors; refused, since loading it could "
                            f"run code (a checkpoint of {what} never does)") from None
        first = "" if isinstance(e, pickle.UnpicklingError) else (str(e).strip().splitlines() or [""])[0][:100]
        raise UserError(f"{path} is not a readable checkpoint (damaged, truncated or another kind of file: "
                        f"{type(e).__name__}{': ' + first if first else ''})") from None
    missing = [k for k in keys if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise UserError(f"{path} is not a checkpoint of {what} (no {', '.join(missing)})")
    return ckpt


def save_checkpoint(path, step: int, model, optimizer, scaler, loader, cfg, model_args: dict,
                    val_loss: float | None = None) -> None:
    cuda = next(model.parameters()).is_cuda
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
             "step": step, "val_loss": val_loss, "loader": loader.state_dict(), "config": asdict(cfg),
             "model_args": model_args,
             "rng": {"torch": torch.get_rng_state(), **({"cuda": torch.cuda.get_rng_state()} if cuda else {})}}
    atomic_write(path, lambda tmp: torch.save(state, tmp))  # a crash mid-save leaves the previous one intact


def restore_checkpoint(path, model, optimizer, scaler, loader, model_args: dict) -> tuple[int, float | None]:
    """Put the run saved at `path` back into these objects; returns the step it continues from and the val
    loss of the saved weights (None in a checkpoint written before it was recorded)."""
    ckpt = read_checkpoint(path)
    if ckpt["model_args"] != model_args:
        raise UserError(f"--resume: {path} holds a model {ckpt['model_args']}, not {model_args}")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scaler"):  # empty when saved without float16
        scaler.load_state_dict(ckpt["scaler"])
    loader.load_state_dict(ckpt["loader"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if next(model.parameters()).is_cuda and "cuda" in ckpt["rng"]:
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
    return int(ckpt["step"]), ckpt.get("val_loss")
