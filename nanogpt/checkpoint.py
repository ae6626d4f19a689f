"""Checkpoints: written whole or not at all, read without running code, holding what an exact resume needs.

A checkpoint is a dict with nanoGPT's keys `model`, `model_args` and `optimizer`, plus the grad scaler, the
config, the position (`iter_num`, `epoch`, `epoch_step`), the RNG states, the dataset's identity and the log
history. It holds only tensors and plain data, so `torch.load(weights_only=True)` reads it, and refuses a
file holding anything else (e.g. a pickled callable that would run code).
"""
from __future__ import annotations

import hashlib
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from cli import UserError
from files import atomic_write

RESUME_KEYS = ("config", "optimizer", "scaler", "iter_num", "epoch", "epoch_step", "data_order", "rng", "losses",
               "elapsed_s")  # what a resumed run reads back


def rng_state() -> dict:
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),  # (version, tuple of ints, None): plain types
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),  # uint8 tensor
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": n["key"].numpy().astype(np.uint32),
                         "pos": n["pos"]}, "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(state: dict, out_dir: Path, names: list[str]) -> Path:
    """Write state under each name (e.g. ckpt_epoch1.pt and ckpt_last.pt), each atomically. -> the last."""
    first = atomic_write(Path(out_dir) / names[0], lambda tmp: torch.save(state, tmp))
    for name in names[1:]:  # the same bytes under another name
        atomic_write(Path(out_dir) / name, lambda tmp: shutil.copyfile(first, tmp))
    return Path(out_dir) / names[-1]


ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since 1.6
LEGACY_MAGIC = b"l\xfc\x9cF\xf9 j\xa8P\x19"  # the older one: a pickle that starts with torch's magic number


def load(path, resumable: bool = False) -> dict:
    """A nanogpt checkpoint, read with weights_only=True; with resumable, it must hold the training state."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError as e:
        raise UserError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    if not (head.startswith(ZIP_MAGIC) or LEGACY_MAGIC in head):
        raise UserError(f"{path} is not a PyTorch checkpoint (a file written by torch.save)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: not the user's business
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise UserError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001 - UnpicklingError for unsafe content, others for damaged files
        why = ("it holds objects other than tensors and plain data" if "weights_only" in str(e)
               else f"the file is damaged, e.g. truncated ({type(e).__name__})")
        raise UserError(f"refusing to load checkpoint {path}: {why}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
        raise UserError(f"{path} is not a nanogpt checkpoint (no 'model' / 'model_args')")
    missing = [k for k in RESUME_KEYS if k not in ckpt]
    if resumable and missing:  # e.g. weights only: --init-from takes those
        raise UserError(f"{path} has no training state to resume ({missing[0]!r} is missing); "
                        f"start from its weights with --init-from {path}")
    return ckpt


def in_folder(path: Path) -> Path:
    """A checkpoint file as given, or a run's out dir -> its ckpt_last.pt."""
    return path / "ckpt_last.pt" if path.is_dir() else path


def dataset_meta(ckpt: dict) -> Path:
    """Where the meta.json of the dataset a checkpoint trained on is (its config's data_dir / dataset)."""
    cfg = ckpt.get("config") or {}
    return Path(str(cfg.get("data_dir", ""))) / str(cfg.get("dataset", "")) / "meta.json"


def clean_state_dict(sd: dict) -> dict:
    """Strip torch.compile's '_orig_mod.' (and DDP's 'module.') prefixes."""
    return {k.removeprefix("_orig_mod.").removeprefix("module."): v for k, v in sd.items()}


def weights_sha256(state_dict: dict) -> str:
    """sha256 over every tensor's name and float32 bytes: equal for identical weights (e.g. on all DDP ranks)."""
    h = hashlib.sha256()
    for name, p in sorted(clean_state_dict(state_dict).items()):
        p = p.full_tensor() if hasattr(p, "full_tensor") else p  # FSDP's shards, gathered (every rank calls)
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()
