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
small kernels and one sync. What recording cost a run is in train.py's results.json (`record_s`); the
default stride and the five histogram snapshots keep it under 2% of the training time (README).

Written files (JSON lines, one object per line, flushed as they are written):
- OUT/evolution.jsonl: every `every` steps, {"step", "epoch", "lr",
  "params": {name: {w_norm, g_norm, update_ratio, rel_change}},
  "bn": {module: {gamma_mean, gamma_std, beta_mean, beta_std}},
  "act": {relu module: {pre_mean, pre_std, mean, std, zero_frac, dead_frac, dead_channels}}}.
- OUT/histograms.jsonl: at the steps in `hist_steps` (train.py: `spread(total steps)`, five steps from the
  first to the last), and of the final weights and last batch's activations at close() (step = last step + 1,
  no gradients), one line per (kind, layer) with kind in weight | grad | act:
  {"step", "epoch", "kind", "name", "edges", "counts"}.

Definitions of the ReLU numbers (from the last training batch's forward pass, seen by forward hooks, on
its first SAMPLE_IMAGES images: plenty for these fractions and a 60-bin histogram, and a quarter of the cost
of a batch of 128):
- zero_frac: fraction of all ReLU outputs (example x channel x position) that are exactly zero.
- dead_frac: fraction of units (channel x position) that are zero for EVERY example of the sample.
- dead_channels: fraction of channels that are zero for every example and every position.
"pre_*" describe the ReLU input (the pre-activation), and the activation histograms are of that input,
because the output's histogram is mostly a spike at zero.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn as nn

import checkpoint
from cli import UserError
from files import atomic_write, why_failed, write_text

SAMPLE_IMAGES = 32  # the ReLU numbers and activation histograms: of the batch's first this many images


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
    if os.path.isfile(path):
        kept = [r for r in read_jsonl(path) if isinstance(r, dict) and isinstance(r.get("step"), int)
                and r["step"] < step]
        write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def read_jsonl(path: str) -> list:
    """The records of a .jsonl file; a line that does not parse (the torn last line of a killed run) is skipped."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def _append(f, text: str) -> None:
    """Write and flush records; a full disk is one UserError line, not a traceback in the middle of training."""
    try:
        f.write(text)
        f.flush()
    except OSError as e:
        raise UserError(f"cannot write {f.name}: {why_failed(e)}") from None


def spread(total: int, n: int = 5) -> set[int]:
    """n steps spread evenly over steps 0 .. total-1, the first and the last included."""
    return {round(k * (total - 1) / (n - 1)) for k in range(n)}


def histogram(t: torch.Tensor, bins: int) -> tuple[list[float], list[int]]:
    """-> (bins + 1 edges spanning the finite values, counts); non-finite values are left out."""
    t = t.detach().float().flatten()
    lo, hi = torch.stack(torch.aminmax(t)).tolist() if t.numel() else (math.nan, math.nan)
    if not (math.isfinite(lo) and math.isfinite(hi)):  # a NaN or inf somewhere: histogram the rest
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
        self.cuda = any(p.is_cuda for p in self.params.values())
        self.init = {n: p.detach().clone() for n, p in self.params.items()}
        if resume and os.path.isfile(init_path):  # the model holds trained weights: w0 is the saved init
            saved = checkpoint.load(init_path, "--resume", keys={"model"})["model"]
            if any(n not in saved or saved[n].shape != p.shape for n, p in self.params.items()):
                raise UserError(f"--resume: {init_path} does not hold this model's initial weights")
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
        self.seconds = 0.0  # spent recording (this invocation): its cost, reported in train.py's results.json

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if module.training:  # keep a reference to the last training batch only (eval passes skipped)
                inp = inputs[0]
                if getattr(module, "inplace", False):
                    inp = output  # the input was overwritten; only the output is left
                self.acts[name] = (inp.detach()[:SAMPLE_IMAGES], output.detach()[:SAMPLE_IMAGES])  # views
        return hook

    @torch.no_grad()
    def on_step(self, step: int, epoch: int, lr: float) -> None:
        """Call after loss.backward() and before optimizer.step(): grads are fresh, weights not yet moved."""
        self.calls += 1
        self.last_step, self.last_epoch = step, epoch
        stats = step % self.every == 0  # step 0 included; the same steps whether or not the run was resumed
        if not stats and step not in self.hist_steps:
            return
        if self.cuda:  # the GPU first ends the work queued before: `seconds` is the recording's own time
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if stats:
            self._write_stats(step, epoch, lr)
        if step in self.hist_steps:
            self._write_histograms(step, epoch)
        self.seconds += time.perf_counter() - t0

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
        _append(self.evo, json.dumps(row) + "\n")

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
        lines = []
        for kind, name, t in rows:
            edges, counts = histogram(t, self.bins)
            lines.append(json.dumps({"step": int(step), "epoch": int(epoch), "kind": kind, "name": name,
                                     "edges": edges, "counts": counts}) + "\n")
        _append(self.hist, "".join(lines))

    def close(self, final_histograms: bool = True) -> None:
        """Removes the hooks and writes the final weight and activation histograms (after the last update)."""
        t0 = time.perf_counter()
        if final_histograms and self.calls and not self.hist.closed:
            self._write_histograms(self.last_step + 1, self.last_epoch, grads=False)
        self.seconds += time.perf_counter() - t0
        for h in self.hooks:
            h.remove()
        self.hooks, self.acts = [], {}
        for f in (self.evo, self.hist):
            if not f.closed:
                f.close()
