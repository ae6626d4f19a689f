"""What train.py measures every --eval-interval iters: the val loss, HellaSwag, samples, and whether the
replicas still hold the same weights. Each is split across ranks and reduced (samples gathered).

The val loss runs through the compiled module (the training shape: no recompiles); HellaSwag and sampling
(variable shapes) run on the uncompiled module it wraps: the same parameters, no copy.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist

from hellaswag import evaluate_all
from loader import ShardLoader


class Diverged(Exception):
    """A non-finite loss or weight: the run stops before it saves anything."""


@torch.no_grad()
def val_loss(model, loader: ShardLoader, steps: int, device: str, autocast, world: int) -> float:
    """Mean loss over the first `steps` val batches of every rank (a fixed set: the loader is reset)."""
    loader.reset()
    total = torch.zeros((), device=device)
    for _ in range(steps):
        x, y = loader.next_batch()
        with autocast():
            _, loss = model(x.to(device), y.to(device))
        total += loss.float() / steps
    if world > 1:
        dist.all_reduce(total)  # gloo has no AVG
    return total.item() / world


@torch.no_grad()
def samples(model, enc, cfg, it: int, device: str, autocast, rank: int, world: int) -> list[str]:
    """`num_samples` continuations of the prompt, split across ranks, gathered on every rank."""
    mine = list(range(rank, cfg.num_samples, world))
    texts = []
    if mine:
        gen = torch.Generator(device=device).manual_seed(cfg.seed + 1000 * it + rank)
        ids = enc.encode(cfg.sample_prompt) or [enc.eot_token]  # an empty prompt: start a new document
        prompt = torch.tensor(ids, dtype=torch.long, device=device)
        prompt = prompt[-model.config.block_size:].unsqueeze(0).repeat(len(mine), 1)  # (n, t)
        with autocast():
            out = model.generate(prompt, cfg.sample_tokens, generator=gen)  # (n, t + sample_tokens)
        texts = [enc.decode([t for t in row if t < enc.n_vocab]) for row in out.tolist()]
    if world > 1:
        parts = [None] * world
        dist.all_gather_object(parts, texts)
        texts = [t for p in parts for t in p]
    return texts


def replica_max_diff(model, world: int) -> float:
    """Largest difference between rank 0's and any rank's per-tensor parameter sums (0.0 = in sync)."""
    fp = torch.stack([p.detach().double().sum() for p in model.parameters()])  # on the model's device
    if dist.get_backend() != "nccl":
        fp = fp.cpu()  # gloo gathers CPU tensors; nccl gathers CUDA tensors
    parts = [torch.zeros_like(fp) for _ in range(world)]
    dist.all_gather(parts, fp)
    return max((p.cpu() - parts[0].cpu()).abs().max().item() for p in parts)


def evaluate(run, it: int) -> None:
    """Val loss (the compiled module), HellaSwag and samples (the eager one: variable shapes); the plot."""
    cfg, model = run.cfg, run.model
    model.eval()
    vl = val_loss(run.compiled, run.val_loader, cfg.eval_iters, run.device, run.autocast, run.world)
    if not math.isfinite(vl):
        raise Diverged(f"val loss is {vl} at iter {it}")
    record, line = {"kind": "val", "iter": it, "val_loss": vl}, f"iter {it:5d} | val loss {vl:.4f}"
    if run.world > 1:  # only where there are replicas to compare
        record["replica_max_diff"] = diff = replica_max_diff(model, run.world)
        line += f" | replicas max diff {diff:.3g}"
    run.logger.log(record, line)
    if run.examples:
        n, c, cn = evaluate_all(model, run.examples, run.enc, run.device, 8, run.autocast, run.rank,
                                run.world)
        run.logger.log({"kind": "hellaswag", "iter": it, "n": n, "acc": c / n, "acc_norm": cn / n},
                       f"iter {it:5d} | hellaswag acc_norm {cn / n:.4f} acc {c / n:.4f} ({n} examples)")
    if cfg.num_samples > 0:
        texts = samples(model, run.enc, cfg, it, run.device, run.autocast, run.rank, run.world)
        run.logger.log({"kind": "sample", "iter": it, "texts": texts},
                       "\n".join(f"iter {it:5d} | sample {i}: {t!r}" for i, t in enumerate(texts)))
    run.logger.plot()
    model.train()
