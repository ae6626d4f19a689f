"""What optimiser step k of a run does, as pure functions of (seed, epoch, step): its learning rate, its
batch and its random shifts. A resumed run recomputes them and takes exactly the same steps."""
from __future__ import annotations

import math

import torch


def lr_at(step: int, total: int, cfg) -> float:
    """Learning rate of optimiser step `step` (0-based) out of `total`: a pure function, so resume is exact."""
    warm = int(cfg.warmup_frac * total)
    if cfg.schedule == "constant":
        return cfg.learning_rate
    if step < warm:
        return cfg.learning_rate * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)  # 0 -> 1 over the decay phase
    if cfg.schedule == "onecycle":
        return cfg.learning_rate * max(0.0, 1.0 - t)
    return cfg.learning_rate * 0.5 * (1.0 + math.cos(math.pi * t))  # cosine


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """Indices of this rank's part of every global batch of `epoch` -> (steps, batch_size // world).

    One permutation per epoch, the same on every rank (seeded by seed and epoch); global batch i is
    perm[i*B:(i+1)*B] and rank r takes its r-th contiguous slice, so the ranks' shards are disjoint and
    their union is exactly what one process would see. The last incomplete global batch is dropped.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g)
    steps, b = n // batch_size, batch_size // world
    return perm[: steps * batch_size].view(steps, world, b)[:, rank]  # (steps, b)


def shift_offsets(steps: int, batch_size: int, max_shift: int, seed: int, epoch: int) -> torch.Tensor:
    """Random shift offsets for every image of every global batch of an epoch -> (steps, 2, batch_size)."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch + 50_000)
    return torch.randint(0, 2 * max_shift + 1, (steps, 2, batch_size), generator=g)
