"""Checkpoints: what one holds (written and read side by side, the one place that names its keys), and the
file: written whole or not at all, read without running code.

A checkpoint is a dict with nanoGPT's keys `model`, `model_args`, `optimizer` and `iter_num`, plus the grad
scaler, the config, the rest of the position (`epoch`, `epoch_step`), the RNG states, the dataset's identity
and the log history: what an exact resume needs. It holds only tensors and plain data, so
`torch.load(weights_only=True)` reads it, and refuses a file holding anything else (e.g. a pickled callable
that would run code).
"""
from __future__ import annotations

import dataclasses
import hashlib
import random
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cli import UserError
from files import atomic_write

# --------------------------------------------------------------------------------------------------
# what a checkpoint holds


@dataclass
class RunState:
    """Where a run stands, all that changes as it trains: saved in every checkpoint, restored on resume."""
    iter_num: int = 0
    epoch: int = 0  # epochs completed
    epoch_step: int = 0  # optimizer steps taken in the current epoch
    history: list = field(default_factory=list)  # the records of log.jsonl
    elapsed_s: float = 0.0  # training wall time of the processes before this one


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's content. A weights-only file (e.g. for --init-from) has the model and its config; the
    rest is None there."""
    model: dict  # state_dict, parameter names without torch.compile's / DDP's prefixes
    model_args: dict  # GPTConfig's fields
    config: dict  # TrainConfig's fields of the run that wrote it ({} when unknown)
    state: RunState | None = None
    optimizer: dict | None = None  # Optimizer.state_dict(), integer ids (one-process layout, also under FSDP)
    scaler: dict | None = None  # GradScaler.state_dict(); {} when the run had no float16
    rng: dict | None = None  # rng_state()
    dataset: dict | None = None  # data.load_dataset's identity of the data it trained on
    windows: tuple[int, int] | None = None  # (windows per step, windows per epoch): what the position counts
    decay_iters: int | None = None  # the length of its lr schedule


RESUME_KEYS = ("config", "optimizer", "scaler", "iter_num", "epoch", "epoch_step", "data_order", "rng", "losses",
               "elapsed_s")  # what from_checkpoint needs for a resumable Checkpoint


def to_checkpoint(c: Checkpoint, lr: float) -> dict:
    """-> the dict torch.save writes; lr is the next step's (read by people, as are the data order's seed and
    epoch, the best val loss and the tokens seen)."""
    state, cfg = c.state, c.config
    windows_per_step, n_windows = c.windows
    best = min((r["val_loss"] for r in state.history if "val_loss" in r), default=float("inf"))
    return {"model": c.model, "optimizer": c.optimizer, "scaler": c.scaler, "model_args": c.model_args,
            "config": cfg, "iter_num": state.iter_num, "epoch": state.epoch, "epoch_step": state.epoch_step,
            "elapsed_s": state.elapsed_s,
            "schedule": {"iter": state.iter_num, "lr": lr, "decay_iters": c.decay_iters,
                         "warmup_iters": cfg["warmup_iters"]},
            "data_order": {"seed": cfg["seed"], "epoch": state.epoch, "step": state.epoch_step,
                           "windows_per_step": windows_per_step, "n_windows": n_windows},
            "dataset": c.dataset, "rng": c.rng, "losses": {"history": state.history, "best_val_loss": best},
            "tokens_seen": state.iter_num * windows_per_step * cfg["block_size"]}


def from_checkpoint(ckpt: dict) -> Checkpoint:
    """The dict torch.load read back (see load) -> its Checkpoint."""
    weights = Checkpoint(clean_state_dict(ckpt["model"]), ckpt["model_args"], ckpt.get("config") or {})
    if any(k not in ckpt for k in RESUME_KEYS):
        return weights
    state = RunState(ckpt["iter_num"], ckpt["epoch"], ckpt["epoch_step"], list(ckpt["losses"]["history"]),
                     ckpt["elapsed_s"])
    order = ckpt["data_order"]
    return dataclasses.replace(weights, state=state, optimizer=ckpt["optimizer"], scaler=ckpt["scaler"],
                               rng=ckpt["rng"], dataset=ckpt.get("dataset"),
                               windows=(order["windows_per_step"], order["n_windows"]),
                               decay_iters=ckpt.get("schedule", {}).get("decay_iters"))


def dataset_meta(c: Checkpoint) -> Path | None:
    """Where the meta.json of the dataset a checkpoint trained on is (its config's data_dir / dataset); None
    when its config does not say."""
    data_dir, dataset = c.config.get("data_dir"), c.config.get("dataset")
    return Path(str(data_dir)) / str(dataset) / "meta.json" if dataset else None


# --------------------------------------------------------------------------------------------------
# the file


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


def read(path, resumable: bool = False) -> Checkpoint:
    """A nanogpt checkpoint file -> its Checkpoint; with resumable, it must hold the training state."""
    return from_checkpoint(load(path, resumable))


def load(path, resumable: bool = False) -> dict:
    """A nanogpt checkpoint file, read with weights_only=True -> its dict; with resumable, it must hold the
    training state."""
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
            # mapped, not read: a tensor's pages come from the file as they are used (copied on write), so
            # a GPT-2 XL checkpoint does not first take its whole size in host memory
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=head.startswith(ZIP_MAGIC))
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
