"""Data loader over the uint16 token shards written by fineweb.py.

Each optimizer micro-step, rank r of W takes the window [pos + r*B*T, pos + (r+1)*B*T + 1) of a token
stream and then all ranks advance pos by B*T*W, as in karpathy/build-nanogpt. Unlike the reference,
the stream is shuffled every epoch from a seed: the shard order, and the order of the documents inside
each shard (documents start at <|endoftext|>; a shard's leading fragment of a document cut by the
previous shard counts as one more "document"). The tokens left at the end of one shard carry over into
the next, so within an epoch every token is used once; only the epoch's last < B*T*W tokens are dropped.
"""
from __future__ import annotations

import glob
import hashlib
import os

import numpy as np
import torch

from cli import UserError
from tokens import EOT, GPT2_VOCAB


def shard_files(data_dir: str, split: str) -> list[str]:
    if not os.path.isdir(data_dir):
        raise UserError(f"shard directory {data_dir!r} does not exist (write shards with fineweb.py first)")
    files = sorted(glob.glob(os.path.join(data_dir, f"{split}_*.npy")))
    if not files:
        raise UserError(f"no {split}_*.npy shards in {data_dir!r} (write shards with fineweb.py first)")
    return files


def open_shard(path: str, mmap_mode: str | None = "r") -> np.ndarray:
    """The shard's 1-D uint16 tokens (memory-mapped by default); a damaged or foreign file is one line."""
    try:
        tokens = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:  # bad magic or header, truncated data, unreadable
        raise UserError(f"{path}: not a readable token shard ({str(e).splitlines()[0][:120]})") from None
    if tokens.dtype != np.uint16 or tokens.ndim != 1:
        raise UserError(f"{path}: expected a 1-D uint16 token array, got {tokens.dtype} {tokens.shape}")
    return tokens


def check_shard(path: str) -> int:
    """Every token of the shard is a GPT-2 id; returns its length. Read in blocks: memory stays small."""
    tokens = open_shard(path)
    block = 1 << 26
    for i in range(0, len(tokens), block):
        top = int(tokens[i:i + block].max())
        if top >= GPT2_VOCAB:
            raise UserError(f"{path}: token id {top} near position {i:,} is not a GPT-2 token (< {GPT2_VOCAB})")
    return len(tokens)


def fingerprint(files: list[str], sizes: list[int]) -> str:
    """The identity of a set of shards: a sha256 over each one's name, token count and first MB."""
    h = hashlib.sha256()
    for path, size in zip(files, sizes):
        h.update(f"{os.path.basename(path)}:{size}:".encode())
        with open(path, "rb") as f:
            h.update(f.read(1 << 20))
    return h.hexdigest()


def shuffle_documents(tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same tokens with their documents (runs starting at <|endoftext|>) in a random order."""
    starts = np.flatnonzero(tokens == EOT)
    bounds = np.unique(np.concatenate(([0], starts, [len(tokens)])))  # (n_docs + 1,)
    order = rng.permutation(len(bounds) - 1)
    return np.concatenate([tokens[bounds[i]:bounds[i + 1]] for i in order])


class ShardLoader:
    """(B, T) input/target batches for rank `rank` of `world`, from the `split` shards in `data_dir`."""

    def __init__(self, data_dir: str, split: str, B: int, T: int, rank: int = 0, world: int = 1,
                 seed: int = 0, shuffle: bool = True):
        self.files = shard_files(data_dir, split)
        self.B, self.T, self.rank, self.world = B, T, rank, world
        self.seed, self.shuffle = seed, shuffle
        need = B * T * world + 1
        sizes = [check_shard(f) for f in self.files]  # all of them now, not at step 10,000
        if sum(sizes) < need:
            raise UserError(f"{split} shards in {data_dir!r} hold {sum(sizes):,} tokens, fewer than one "
                            f"batch needs ({need:,} = B*T*world + 1)")
        self.data_dir, self.tokens = data_dir, sum(sizes)
        self.identity = fingerprint(self.files, sizes)  # a resume checks it: the same data, or refused
        self.buffer = None
        self.reset()

    def shard_order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.files))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.files))

    def _load(self) -> None:
        """buffer = the carried-over tail of the previous shard + the shard at `cursor` in this epoch's order."""
        shard = int(self.shard_order(self.epoch)[self.cursor])
        tokens = open_shard(self.files[shard], mmap_mode=None)
        if self.shuffle:
            tokens = shuffle_documents(tokens, np.random.default_rng([self.seed, self.epoch, shard]))
        self.buffer = np.concatenate((self.carry, tokens))

    def reset(self) -> None:
        """Back to the start of epoch 0 (the val loader does this before each evaluation). The buffer is
        kept when it already holds epoch 0's first shard: an evaluation does not read its shard again."""
        at_first_shard = self.buffer is not None and self.epoch == self.cursor == 0 and not len(self.carry)
        self.epoch, self.cursor, self.pos = 0, 0, 0
        if not at_first_shard:
            self.carry = np.empty(0, dtype=np.uint16)
            self._load()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        B, T = self.B, self.T
        while len(self.buffer) - self.pos < B * T * self.world + 1:
            self.carry = self.buffer[self.pos:]  # too short for a batch: goes in front of the next shard
            self.cursor += 1
            if self.cursor == len(self.files):  # end of epoch: new order, the short tail is dropped
                self.epoch, self.cursor = self.epoch + 1, 0
                self.carry = np.empty(0, dtype=np.uint16)
            self.pos = 0
            self._load()
        start = self.pos + self.rank * B * T
        buf = torch.from_numpy(self.buffer[start:start + B * T + 1].astype(np.int64))  # (B*T+1,)
        x = buf[:-1].view(B, T)  # inputs
        y = buf[1:].view(B, T)  # targets: the next token
        self.pos += B * T * self.world
        return x, y

    def state_dict(self) -> dict:
        # plain ints, strings and a tensor: loadable with torch.load(weights_only=True)
        return {"epoch": self.epoch, "cursor": self.cursor, "pos": self.pos,
                "carry": torch.from_numpy(self.carry.astype(np.int32)), "identity": self.identity,
                "files": len(self.files), "tokens": self.tokens}

    def load_state_dict(self, state: dict) -> None:
        if state.get("identity", self.identity) != self.identity:  # (checkpoints before it was recorded: trusted)
            raise UserError(f"--resume: the checkpoint was trained on other shards ({state['files']} files, "
                            f"{state['tokens']:,} tokens) than those in {self.data_dir} ({len(self.files)} files, "
                            f"{self.tokens:,} tokens); resume with its --data-dir, or start a new run")
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self.carry = state["carry"].numpy().astype(np.uint16)
        self._load()
        self.pos = int(state["pos"])
