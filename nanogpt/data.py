"""The data a run trains on: a prepared dataset on disk, cut into epochs of non-overlapping windows.

A dataset is DATA_DIR/NAME/{train.bin, val.bin, meta.json} as prepare.py writes it (token ids as uint16).
An epoch is one pass over train.bin in windows of block_size + 1 tokens, in an order that depends only on
(seed, epoch); every step takes the next windows of that order, each rank a disjoint share.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

import prepare
import sources
from cli import UserError

HEAD_BYTES = 1 << 20  # the part of train.bin whose hash identifies a dataset in a checkpoint


def num_windows(n_tokens: int, block_size: int) -> int:
    """Windows of block_size + 1 tokens starting at multiples of block_size: the inputs never overlap, and
    each window's last token is the next one's first (the target of its last position)."""
    return max(0, (n_tokens - 1) // block_size)


def train_windows(n_tokens: int, block_size: int) -> int:
    """Training windows per epoch: (n - block_size) // block_size, so that the last window still fits
    whatever the epoch's grid shift (0..block_size-1)."""
    return max(0, (n_tokens - block_size) // block_size)


def epoch_shift(seed: int, epoch: int, block_size: int) -> int:
    """Where the window grid starts in this epoch (0..block_size-1), so that across epochs the model sees
    window boundaries at every position, not always at the same multiples of block_size."""
    return int(np.random.default_rng([seed, epoch, 1]).integers(block_size))


def epoch_order(n_windows: int, seed: int, epoch: int) -> np.ndarray:
    """The window order of one epoch: a permutation that depends only on (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n_windows)


def step_windows(order: np.ndarray, step: int, rank: int, world_size: int, batch_size: int, accum: int):
    """Window ids this rank trains on at one optimizer step -> (accum, batch_size).

    A step consumes world_size * accum * batch_size consecutive entries of the epoch order; rank r takes
    the r-th contiguous share, so ranks are disjoint and together see exactly what one process would."""
    per_rank = accum * batch_size
    start = step * per_rank * world_size + rank * per_rank
    return order[start : start + per_rank].reshape(accum, batch_size)


def eval_windows(n_windows: int, count: int, seed: int, split: str) -> np.ndarray:
    """Fixed evaluation windows of a split: the same at every evaluation, in every run with this seed."""
    tag = {"train": 1, "val": 2}[split]
    return np.sort(np.random.default_rng([seed, 7919, tag]).permutation(n_windows)[: min(count, n_windows)])


def get_batch(data: np.ndarray, windows: np.ndarray, block_size: int, device: str, shift: int = 0):
    """windows (B,) -> x, y (B, T) int64, y shifted by one token. Window w starts at shift + w*block_size."""
    idx = shift + windows[:, None] * block_size + np.arange(block_size + 1)  # (B, T+1)
    buf = torch.from_numpy(data[idx].astype(np.int64))  # (B, T+1)
    x, y = buf[:, :-1].contiguous(), buf[:, 1:].contiguous()  # contiguous before pinning: the copy stays async
    if device.startswith("cuda"):
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x, y


def unigram_entropy(data: np.ndarray, vocab_size: int, limit: int = 50_000_000) -> float:
    """Entropy (nats/token) of the token frequencies of train.bin (first `limit` tokens): the loss of the
    best model that ignores context. A language model must get well below it."""
    counts = np.bincount(np.asarray(data[:limit]), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def prepare_if_missing(dataset: str, data_dir: str, source: str) -> None:
    """Prepare DATA_DIR/dataset when it is missing; an existing one built from another --data-source is refused."""
    folder = Path(data_dir) / dataset
    try:
        if (folder / "train.bin").is_file():
            if source:
                _check_source(folder, source)
            return
        print(f"preparing dataset {dataset!r} in {data_dir} ...", flush=True)
        prepare.prepare(dataset, data_dir, source=source or None)
    except (ValueError, OSError) as e:  # prepare.DataError is a ValueError
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"cannot prepare dataset {dataset!r}: {why}".replace("--source", "--data-source")) from None


def prepare_or_wait(dataset: str, data_dir: str, source: str, local_rank: int, poll_s: float = 0.5) -> None:
    """Local rank 0 prepares a missing dataset; the other ranks of its node wait for the finished files
    (meta.json is written last), with no time limit. train.py calls this before the process group exists: a
    rank waiting in a collective would be ended by its timeout (NCCL's 10 minutes) while a large dataset is
    tokenized. Several nodes sharing one --data-dir would each prepare it: run prepare.py once first."""
    if local_rank == 0:
        return prepare_if_missing(dataset, data_dir, source)
    meta = Path(data_dir) / dataset / "meta.json"
    if not meta.is_file() and local_rank == 1:
        print(f"ranks of this node wait for local rank 0 to prepare dataset {dataset!r} in {data_dir} "
              f"(no time limit) ...", flush=True)
    while not meta.is_file():
        time.sleep(poll_s)


def _check_source(folder: Path, source: str) -> None:
    meta = _read_meta(folder)
    if meta.get("sha256") != sources.sha256_files(sources.local_files(Path(source))):
        raise UserError(f"dataset {folder.name!r} in {folder.parent} was built from {meta.get('source')}, not "
                        f"from --data-source {source}; choose another --dataset name, or delete {folder}")


def _read_meta(folder: Path) -> dict:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        int(meta["vocab_size"]), int(meta["train_tokens"]), int(meta["val_tokens"])
        return meta
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"dataset {folder} is broken: meta.json unreadable or incomplete ({type(e).__name__}: "
                        f"{e}); prepare it again") from None


def load_dataset(dataset: str, data_dir: str):
    """-> (train memmap, val memmap, meta dict, identity) after checking the files against meta.json."""
    folder = Path(data_dir) / dataset
    meta = _read_meta(folder)
    splits, heads = {}, {}
    for split in ("train", "val"):
        path, want = folder / f"{split}.bin", int(meta[f"{split}_tokens"])
        size = path.stat().st_size if path.is_file() else None
        if size != 2 * want:
            raise UserError(f"dataset {folder} is broken: {path.name} has {size} bytes, meta.json says {want} "
                            f"uint16 tokens ({2 * want} bytes); prepare it again")
        splits[split] = np.memmap(path, dtype=np.uint16, mode="r") if want else np.zeros(0, np.uint16)
        head = heads[split] = np.asarray(splits[split][: HEAD_BYTES // 2])
        if len(head) and int(head.max()) >= int(meta["vocab_size"]):
            raise UserError(f"dataset {folder} is broken: {path.name} holds token id {int(head.max())}, outside "
                            f"the vocabulary of {meta['vocab_size']}; prepare it again")
    identity = {"name": dataset, "train_tokens": len(splits["train"]), "val_tokens": len(splits["val"]),
                "meta_sha256": hashlib.sha256((folder / "meta.json").read_bytes()).hexdigest(),
                "head_sha256": hashlib.sha256(heads["train"].tobytes()).hexdigest()}
    return splits["train"], splits["val"], meta, identity
