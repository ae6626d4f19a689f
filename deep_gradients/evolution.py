"""Watch a network learn: per-layer weight, gradient, update and activation statistics while it trains.

The quantities follow Karpathy's "A Recipe for Training Neural Networks" (2019) and CS231n's "babysitting
the learning process": the update-to-weight ratio log10(lr * ||g|| / ||w||) (healthy around -3), how far
each layer moved from its initialisation, and dead ReLUs. train.py drives it:

    rec = Recorder(model, out_dir, every, hist_steps)   # saves OUT/init.pt (the weights before any step)
    (resume=True, start_step=k, for train.py --resume: keeps OUT/init.pt, drops the records of steps >= k
     that an interrupted run left, and appends)
    ... loss.backward(); rec.on_step(step, epoch, lr); optimizer.step() ...
    rec.close()

All numbers of one record are gathered into one tensor and copied to the host once, so a record costs a few
small kernels and one sync (train.py's default stride keeps that under 2% of the training time).

Written files (JSON lines, one object per line, flushed as they are written):
- OUT/evolution.jsonl: every `every` steps, {"step", "epoch", "lr",
  "params": {name: {w_norm, g_norm, update_ratio, rel_change}},
  "bn": {module: {gamma_mean, gamma_std, beta_mean, beta_std}},
  "act": {relu module: {pre_mean, pre_std, mean, std, zero_frac, dead_frac, dead_channels}}}.
- OUT/histograms.jsonl: at the steps in `hist_steps` (train.py: every epoch's first step and six steps spread
  over the run), and of the final weights
  and last batch's activations at close() (step = last step + 1, no gradients), one line per
  (kind, layer) with kind in weight | grad | act: {"step", "epoch", "kind", "name", "edges", "counts"}.

Definitions of the ReLU numbers (from the last training batch's forward pass, seen by forward hooks):
- zero_frac: fraction of all ReLU outputs (example x channel x position) that are exactly zero.
- dead_frac: fraction of units (channel x position) that are zero for EVERY example of the batch.
- dead_channels: fraction of channels that are zero for every example and every position.
"pre_*" describe the ReLU input (the pre-activation), and the activation histograms are of that input,
because the output's histogram is mostly a spike at zero.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
import torch.nn as nn

from files import atomic_write, write_text


def _num(v: float) -> float | None:
    """JSON has no NaN/inf: a diverged run writes null."""
    v = float(v)
    return v if math.isfinite(v) else None


def _host(stats: dict) -> dict:
    """{name: {key: 0-d tensor}} -> {name: {key: float or None}} with ONE device-to-host copy."""
    flat = [v.float() for d in stats.values() for v in d.values()]
    values = iter(torch.stack(flat).tolist() if flat else [])
    return {n: {k: _num(next(values)) for k in d} for n, d in stats.items()}


def keep_before(path: str, step: int) -> None:
    """Drop the records of steps >= step (and a torn last line) that an interrupted run left in a .jsonl file."""
    if not os.path.isfile(path):
        return
    kept = []
    for line in Path(path).read_text().splitlines():
        try:
            if json.loads(line)["step"] < step:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue
    write_text(path, "".join(kept))


def histogram(t: torch.Tensor, bins: int) -> tuple[list[float], list[int]]:
    t = t.detach().float().flatten()
    t = t[torch.isfinite(t)]
    if t.numel() == 0:
        return [0.0, 1.0], [0]
    lo, hi = t.min().item(), t.max().item()
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts = torch.histc(t, bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1)
    return [round(e, 6) for e in edges.tolist()], [int(c) for c in counts.tolist()]


def relu_stats(inp: torch.Tensor, out: torch.Tensor) -> dict:
    """Statistics of one ReLU call; inp, out (B, C, H, W) or (B, D). Definitions in the module docstring."""
    return _host({"": _relu_tensors(inp, out)})[""]


def _relu_tensors(inp: torch.Tensor, out: torch.Tensor) -> dict:
    zero = out <= 0  # (B, C, ...)
    dead_units = zero.all(dim=0)  # (C, ...): zero for every example
    dead_channels = dead_units.flatten(1).all(dim=1) if dead_units.dim() > 1 else dead_units  # (C,)
    return {"pre_mean": inp.mean(), "pre_std": inp.std(), "mean": out.mean(), "std": out.std(),
            "zero_frac": zero.float().mean(), "dead_frac": dead_units.float().mean(),
            "dead_channels": dead_channels.float().mean()}


class Recorder:
    """Records per-layer statistics of `model` every `every` steps into `out_dir` (see module docstring)."""

    def __init__(self, model: nn.Module, out_dir: str, every: int = 10, hist_steps=(), bins: int = 60,
                 save_init: bool = True, resume: bool = False, start_step: int = 0):
        self.model, self.out_dir, self.every, self.bins = model, out_dir, max(1, int(every)), bins
        self.hist_steps = set(hist_steps)
        os.makedirs(out_dir, exist_ok=True)
        init_path = os.path.join(out_dir, "init.pt")
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.init = {n: p.detach().clone() for n, p in self.params.items()}
        if resume and os.path.isfile(init_path):  # the model holds trained weights: w0 is the saved init
            saved = torch.load(init_path, map_location="cpu", weights_only=True)["model"]
            self.init = {n: saved[n].to(p.device, p.dtype) for n, p in self.params.items()}
        elif save_init:  # analyze.py draws the first-layer filters at init next to the trained ones
            init = {"model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
            atomic_write(init_path, lambda tmp: torch.save(init, tmp))
        self.init_norm = {n: w.norm().item() for n, w in self.init.items()}
        self.bns = {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
        self.acts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.hooks = [m.register_forward_hook(self._hook(n)) for n, m in model.named_modules()
                      if isinstance(m, nn.ReLU)]
        paths = [os.path.join(out_dir, name) for name in ("evolution.jsonl", "histograms.jsonl")]
        if resume:  # continue the records of the interrupted run, without the steps it did not save
            for path in paths:
                keep_before(path, start_step)
        self.evo, self.hist = (open(path, "a" if resume else "w") for path in paths)
        self.calls = 0

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if module.training:  # keep a reference to the last training batch only (eval passes skipped)
                inp = inputs[0]
                if getattr(module, "inplace", False):
                    inp = output  # the input was overwritten; only the output is left
                self.acts[name] = (inp.detach(), output.detach())
        return hook

    @torch.no_grad()
    def on_step(self, step: int, epoch: int, lr: float) -> None:
        """Call after loss.backward() and before optimizer.step(): grads are fresh, weights not yet moved."""
        self.calls += 1
        self.last_step, self.last_epoch = step, epoch
        if step % self.every == 0:  # step 0 included; the same steps whether or not the run was resumed
            self._write_stats(step, epoch, lr)
        if step in self.hist_steps:
            self._write_histograms(step, epoch)

    def _write_stats(self, step: int, epoch: int, lr: float) -> None:
        tensors = {}
        for n, p in self.params.items():
            w = p.detach()
            g = p.grad if p.grad is not None else torch.zeros_like(w)
            tensors[n] = {"w_norm": w.norm(), "g_norm": g.norm(), "change": (w - self.init[n]).norm()}
        nums = _host(tensors)
        params = {}
        for n, v in nums.items():
            w_norm, g_norm, w0_norm = v["w_norm"], v["g_norm"], self.init_norm[n]
            ratio = math.log10(lr * g_norm / w_norm) if lr > 0 and g_norm and w_norm else None
            # a BN beta starts at zero: its relative change is undefined, so null
            change = v["change"] / w0_norm if w0_norm > 0 and v["change"] is not None else None
            params[n] = {"w_norm": w_norm, "g_norm": g_norm,
                         "update_ratio": _num(ratio) if ratio is not None else None, "rel_change": change}
        bn = _host({n: {"gamma_mean": m.weight.mean(), "gamma_std": m.weight.std(), "beta_mean": m.bias.mean(),
                        "beta_std": m.bias.std()} for n, m in self.bns.items() if m.weight is not None})
        act = _host({n: _relu_tensors(i, o) for n, (i, o) in self.acts.items()})
        row = {"step": int(step), "epoch": int(epoch), "lr": float(lr), "params": params, "bn": bn, "act": act}
        self.evo.write(json.dumps(row) + "\n")
        self.evo.flush()

    @torch.no_grad()
    def _write_histograms(self, step: int, epoch: int, grads: bool = True) -> None:
        rows = []
        for n, p in self.params.items():
            if p.dim() < 2:  # weights of convs and linears; BN and biases are summarised in evolution.jsonl
                continue
            rows.append(("weight", n, p))
            if grads and p.grad is not None:
                rows.append(("grad", n, p.grad))
        rows += [("act", n, i) for n, (i, _) in self.acts.items()]
        for kind, name, t in rows:
            edges, counts = histogram(t, self.bins)
            self.hist.write(json.dumps({"step": int(step), "epoch": int(epoch), "kind": kind, "name": name,
                                        "edges": edges, "counts": counts}) + "\n")
        self.hist.flush()

    def close(self, final_histograms: bool = True) -> None:
        """Removes the hooks and writes the final weight and activation histograms (after the last update)."""
        if final_histograms and self.calls and not self.hist.closed:
            self._write_histograms(self.last_step + 1, self.last_epoch, grads=False)
        for h in self.hooks:
            h.remove()
        self.hooks, self.acts = [], {}
        for f in (self.evo, self.hist):
            if not f.closed:
                f.close()


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
