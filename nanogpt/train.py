"""Train a GPT by epochs, on a laptop CPU or on many GPUs across nodes, with exact resume.

    python nanogpt/train.py                                    # offline demo, CPU, a few minutes
    python nanogpt/train.py --preset shakespeare_char          # one GPU (or --device cpu)
    torchrun --standalone --nproc_per_node=8 nanogpt/train.py --preset gpt2
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --master_addr=10.0.0.1 --master_port=29500 \
        nanogpt/train.py --preset gpt2                         # and --node_rank=1 on the second node

References: karpathy/nanoGPT train.py (the loop this follows); GPT-3, Brown et al. 2020, appendix B
(AdamW betas 0.9/0.95, eps 1e-8, weight decay 0.1, clip 1.0, warmup then cosine decay to 10%, batch
stated in tokens); PyTorch DDP and torchrun docs (no_sync for gradient accumulation).

What nanoGPT lacks and this adds: a typed config with --help (config.py), epochs over a seeded permutation
of non-overlapping windows (data.py), evaluation on fixed batches, and checkpoints holding the data
position and RNG states (checkpoint.py), so a resumed run logs bit-identical losses.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

import checkpoint
import data
import hardware
import report
from checkpoint import RunState
from cli import run_main
from config import TrainConfig, check_config, parse_save_epochs, resolve_config
from files import OutDirLock, append_line
from model import GPT
from session import Meter, Run, announce, compiled, get_lr, on_rank0, setup, unigram
from tracking import Tracker


class Diverged(Exception):
    """A non-finite loss, evaluation or weights: the run stops before anything is written from them."""


class StopSignal:
    """SIGINT/SIGTERM while armed (the training loop) only set a flag: the loop finishes its step, writes a
    resumable checkpoint and exits cleanly. Unarmed (data preparation, setup, the final evaluation), or a
    second signal: KeyboardInterrupt at once. The previous handlers come back on exit."""

    def __init__(self):
        self.name = None
        self.armed = False
        self.previous = {}

    def _handle(self, signum, frame):
        if self.name is not None or not self.armed:
            raise KeyboardInterrupt
        self.name = signal.Signals(signum).name

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class Replicated:
    """A model every rank holds whole (one process, DDP): its full state is its own. With --fsdp, fsdp.Sharded
    has the same methods for a model sharded over the ranks."""

    def __init__(self, model: GPT, device: str, dtype: str):
        self.model = model.to(device)

    def all_finite(self) -> bool:  # every rank holds the same weights: no collective
        return bool(torch.stack([p.detach().isfinite().all() for p in self.model.parameters()]).all().item())

    def full_state(self, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
        return self.model.state_dict(), optimizer.state_dict()

    def load_optimizer(self, optimizer: torch.optim.Optimizer, state: dict) -> None:
        optimizer.load_state_dict(state)

    def plain_model(self, device: str) -> GPT:
        return self.model


# --------------------------------------------------------------------------------------------------
# schedule, model, one step, evaluation


def train_step(run: Run, state: RunState, order: np.ndarray, shift: int) -> torch.Tensor:
    """One optimizer step over accum micro-batches -> its mean loss, left on the device (no host sync)."""
    cfg, accum = run.cfg, run.plan.accum
    for group in run.optimizer.param_groups:
        group["lr"] = get_lr(state.iter_num, cfg, run.plan.decay_iters)
    windows = data.step_windows(order, state.epoch_step, run.rank, run.world_size, cfg.batch_size, accum)
    torch.manual_seed(cfg.seed * 1_000_003 + state.iter_num * 1009 + run.rank)  # dropout noise, resumable
    loss_sum = torch.zeros((), device=run.device)
    for micro in range(accum):
        x, y = data.get_batch(run.train_data, windows[micro], cfg.block_size, run.device, shift)
        # DDP all-reduces the gradients in backward (FSDP reduce-scatters them): only the last micro-step needs to
        last = micro == accum - 1
        with run.model.no_sync() if run.ddp and not last else contextlib.nullcontext():
            with run.ctx:
                _, loss = run.model(x, y)
                loss = loss / accum  # the step's gradient is the mean over its micro-steps
            run.scaler.scale(loss).backward()
        loss_sum += loss.detach().float()
    if cfg.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.raw_model.parameters(), cfg.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    return loss_sum


@torch.no_grad()
def evaluate(run: Run, splits: dict) -> dict:
    """Mean loss over each split's given windows; each rank takes every world_size-th window and the sums
    are all-reduced, so every rank returns the same numbers."""
    model = run.model.module if isinstance(run.model, DDP) else run.model  # no DDP hooks for forward only
    model.eval()
    out = {}
    for name, (tokens, windows) in splits.items():
        mine = windows[run.rank :: run.world_size]
        total = torch.zeros(2, dtype=torch.float64, device=run.device)  # (sum of window losses, windows)
        per_rank = -(-len(windows) // run.world_size)  # FSDP: every rank runs as many forwards (collectives)
        for i in range(0, per_rank, run.cfg.batch_size):
            chunk = mine[i : i + run.cfg.batch_size]  # empty on a rank short of windows: a forward, weight 0
            x, y = data.get_batch(tokens, chunk if len(chunk) else windows[:1], run.cfg.block_size, run.device)
            with run.ctx:
                _, loss = model(x, y)
            total[0] += loss.double() * len(chunk)
            total[1] += len(chunk)
        if run.world_size > 1:
            dist.all_reduce(total)
        out[name] = (total[0] / total[1]).item()
    model.train()
    return out


# --------------------------------------------------------------------------------------------------
# logging and saving


def log(run: Run, state: RunState, rec: dict) -> None:
    state.history.append(rec)
    if run.master:
        append_line(run.out_dir / "log.jsonl", json.dumps(rec))
        run.tracker.log(rec)


def log_eval(run: Run, state: RunState, meter: Meter) -> None:
    """Evaluate on the fixed windows of both splits, log it, and stop on a non-finite result."""
    cfg, plan = run.cfg, run.plan
    splits = {s: (tokens, data.eval_windows(n, cfg.eval_iters * cfg.batch_size, cfg.seed, s))
              for s, tokens, n in (("train", run.train_data, plan.n_train), ("val", run.val_data, plan.n_val))}
    losses = evaluate(run, splits)
    if not all(map(math.isfinite, losses.values())):
        raise Diverged(f"evaluation loss is {losses['val']} at iter {state.iter_num}")
    tps = meter.rate()
    mfu = hardware.mfu(run.raw_model.flops_per_token(), tps / run.world_size, run.device, run.dtype) if tps else None
    lr = get_lr(max(0, state.iter_num - 1), cfg, plan.decay_iters)  # the lr of the step just taken
    rec = {"epoch": round(state.iter_num / plan.steps_per_epoch, 4), "epochs_done": state.epoch,
           "iter": state.iter_num, "tokens": state.iter_num * plan.tokens_per_step, "train_loss": losses["train"],
           "val_loss": losses["val"], "val_ppl": math.exp(min(losses["val"], 50.0)), "lr": lr,
           "tokens_per_s": tps, "mfu": mfu, "elapsed_s": round(state.elapsed_s, 3)}
    log(run, state, rec)
    if run.master:
        tqdm.write(f"epoch {rec['epoch']:.2f} iter {state.iter_num}: train {rec['train_loss']:.4f} val "
                   f"{rec['val_loss']:.4f} (ppl {rec['val_ppl']:.2f}) lr {lr:.2e}"
                   + (f" {tps:,.0f} tok/s" if tps else "") + (f" MFU {mfu:.1%}" if mfu else ""))


def sync_point(run: Run, state: RunState, loss: torch.Tensor, first_bad: torch.Tensor, stop: StopSignal,
               step_s: float | None = None) -> bool:
    """Where the host reads the device: any non-finite loss since the last sync point (-> Diverged), any
    rank's stop signal (-> True on every rank) and, given the step's time, the step's loss (logged)."""
    stats = torch.stack([loss, torch.tensor(float(stop.name is not None), device=run.device),
                         (first_bad >= 0).float()])
    if run.world_size > 1:
        dist.all_reduce(stats)
        stats[0] /= run.world_size
    step_loss, stop_requested, bad = stats.tolist()
    if bad:
        at = int(first_bad.item()) if first_bad.item() >= 0 else state.iter_num - 1
        raise Diverged(f"loss is not finite at iter {at} (lr {get_lr(at, run.cfg, run.plan.decay_iters):.3g})")
    if step_s is not None and state.iter_num % run.cfg.log_interval == 0:
        lr = get_lr(state.iter_num - 1, run.cfg, run.plan.decay_iters)
        log(run, state, {"iter": state.iter_num, "epoch": round(state.iter_num / run.plan.steps_per_epoch, 4),
                         "loss": step_loss, "lr": lr})
        if run.master:
            tps = run.plan.tokens_per_step / step_s
            mfu = hardware.mfu(run.raw_model.flops_per_token(), tps / run.world_size, run.device, run.dtype)
            run.bar.set_postfix_str(f"loss {step_loss:.4f} lr {lr:.2e} {tps:,.0f} tok/s"
                                    + (f" MFU {mfu:.1%}" if mfu else ""), refresh=False)
    return stop_requested > 0


def save(run: Run, state: RunState, names: list[str]) -> None:
    """Write a checkpoint, after checking that the weights are finite (a diverged model never replaces one)."""
    if not run.layout.all_finite():
        raise Diverged(f"the weights are not finite at iter {state.iter_num}")
    model_state, optimizer_state = run.layout.full_state(run.optimizer)  # FSDP: gathered to rank 0
    if not run.master:
        return
    saved = checkpoint.Checkpoint(model_state, dataclasses.asdict(run.raw_model.config), dataclasses.asdict(run.cfg),
                                  state, optimizer_state, run.scaler.state_dict(), checkpoint.rng_state(), run.identity,
                                  (run.plan.windows_per_step, run.plan.n_train), run.plan.decay_iters)
    ckpt = checkpoint.to_checkpoint(saved, get_lr(state.iter_num, run.cfg, run.plan.decay_iters))
    run.last_good = checkpoint.save(ckpt, run.out_dir, names)


# --------------------------------------------------------------------------------------------------
# the loop


def train_loop(run: Run, state: RunState, stop: StopSignal) -> str | None:
    """Steps until the budget or max_epochs ends -> the name of the signal that stopped it, or None."""
    cfg, plan = run.cfg, run.plan
    meter, save_epochs = Meter(), parse_save_epochs(cfg.save_epochs)
    first_bad = torch.full((), -1, dtype=torch.long, device=run.device)  # first iter with a non-finite loss
    base_s, t_start = state.elapsed_s, time.time()
    if state.iter_num == 0 and plan.total_iters > 0:
        log_eval(run, state, meter)  # the loss at initialization, where the curve starts
    while state.iter_num < plan.total_iters and state.epoch < cfg.max_epochs:
        order = data.epoch_order(plan.n_train, cfg.seed, state.epoch)
        shift = data.epoch_shift(cfg.seed, state.epoch, cfg.block_size)
        while state.epoch_step < plan.steps_per_epoch and state.iter_num < plan.total_iters:
            t0 = time.time()
            loss = train_step(run, state, order, shift)
            first_bad = torch.where((first_bad < 0) & ~loss.isfinite(), state.iter_num, first_bad)
            state.iter_num, state.epoch_step = state.iter_num + 1, state.epoch_step + 1
            epoch_end = state.epoch_step == plan.steps_per_epoch
            evaluate_now = epoch_end or state.iter_num % cfg.eval_interval == 0
            stop_now = (evaluate_now or state.iter_num % cfg.log_interval == 0) and sync_point(
                run, state, loss, first_bad, stop, time.time() - t0)
            meter.add(plan.tokens_per_step, time.time() - t0)
            state.elapsed_s = base_s + time.time() - t_start
            run.bar.update(1)
            if epoch_end:
                state.epoch, state.epoch_step = state.epoch + 1, 0
            if evaluate_now:
                log_eval(run, state, meter)
            if epoch_end and (save_epochs is None or state.epoch in save_epochs):
                save(run, state, [f"ckpt_epoch{state.epoch}.pt", "ckpt_last.pt"])
            if stop_now:
                return stop.name or "a signal on another rank"
            if epoch_end:
                break
    sync_point(run, state, torch.zeros((), device=run.device), first_bad, stop)
    evals = report.evaluations(state.history)
    if not evals or evals[-1]["iter"] != state.iter_num:  # the budget ended mid-epoch
        log_eval(run, state, meter)
    return None


# --------------------------------------------------------------------------------------------------
# the run and its results


def run_training(cfg: TrainConfig, saved: checkpoint.Checkpoint | None, stop: StopSignal, accum: int, rank: int, world_size: int,
                 device: str, dtype: str, tracker: Tracker, layout_class) -> int:
    run, state = setup(cfg, saved, accum, rank, world_size, device, dtype, layout_class)
    run.tracker = tracker
    if run.master:
        announce(run, state, saved)
    del saved  # read once; the weights and optimizer state now live in the model and optimizer
    run.bar = tqdm(total=run.plan.total_iters, initial=min(state.iter_num, run.plan.total_iters),
                   disable=not run.master, unit="step", dynamic_ncols=True, mininterval=1.0)
    try:
        with run.bar:
            stop.armed = True
            stopped_by = train_loop(run, state, stop)
        save(run, state, ["ckpt_last.pt"])
        stop.armed = False
    except Diverged as e:
        keep = (f"the last good checkpoint is {run.last_good}" if run.last_good
                else "no checkpoint of this run was written")
        if run.master:
            print(f"train.py: error: {e}; stopping, {keep}", file=sys.stderr)
        return 3
    if stopped_by:
        if run.master:
            print(f"stopped by {stopped_by} at iter {state.iter_num} (epoch {state.epoch}, step "
                  f"{state.epoch_step}); resumable checkpoint {run.last_good}; continue with --resume")
        return 0
    return finish(run, state)


def finish(run: Run, state: RunState) -> int:
    """The exact val loss, the samples, results.json and loss.png."""
    cfg, plan = run.cfg, run.plan
    # the logged val loss is a sample of eval_iters batches (+-0.02 at eval_iters=20); this is the exact one
    full_val, n_full = None, 0
    if cfg.final_eval_tokens:
        n_full = min(plan.n_val, max(1, cfg.final_eval_tokens // cfg.block_size))  # from the start of val.bin
        full_val = evaluate(run, {"val": (run.val_data, np.arange(n_full))})["val"]
    replicas = None
    if run.world_size > 1:  # every rank must hold the same weights
        replicas = [None] * run.world_size
        dist.all_gather_object(replicas, checkpoint.weights_sha256(run.raw_model.state_dict()))
    sampler = run.layout.plain_model(run.device)  # FSDP: a plain copy on rank 0
    if not run.master:
        return 0
    samples = report.print_samples(sampler, run.meta, cfg.num_samples, cfg.sample_tokens, cfg.seed, run.ctx,
                                   run.device)
    evals = report.evaluations(state.history)
    # epoch-end evaluations (not r["epoch"] == int(r["epoch"]): rounded to 4 places, a step just before the
    # end of a 20k-step epoch would count)
    per_epoch = [r for r in evals if r["epochs_done"] > 0 and r["iter"] == r["epochs_done"] * plan.steps_per_epoch]
    best, last = min(evals, key=lambda r: r["val_loss"]), evals[-1]
    tps, mfus = [r["tokens_per_s"] for r in evals if r["tokens_per_s"]], [r["mfu"] for r in evals if r["mfu"]]
    baseline = unigram(run)
    results = {
        "config": dataclasses.asdict(cfg), "model_args": dataclasses.asdict(run.raw_model.config),
        "n_params": run.raw_model.get_num_params(),
        "dataset": {"name": cfg.dataset, "train_tokens": len(run.train_data), "val_tokens": len(run.val_data),
                    "tokenizer": run.meta.get("tokenizer"), "vocab_size": run.meta.get("vocab_size")},
        "unigram_baseline_nats": baseline,
        "final": {"iter": state.iter_num, "epochs_done": state.epoch, "train_loss": last["train_loss"],
                  "val_loss": last["val_loss"], "val_ppl": last["val_ppl"], "val_loss_full": full_val,
                  "val_tokens_full": n_full * cfg.block_size},
        "best": {"iter": best["iter"], "val_loss": best["val_loss"], "val_ppl": best["val_ppl"]},
        "per_epoch": [{k: r[k] for k in ("epochs_done", "iter", "train_loss", "val_loss", "val_ppl", "elapsed_s")}
                      for r in per_epoch],
        "throughput": {"tokens_per_s_mean": float(np.mean(tps)) if tps else None,
                       "mfu_mean": float(np.mean(mfus)) if mfus else None, "tokens_per_step": plan.tokens_per_step,
                       "grad_accum": plan.accum, "world_size": run.world_size,
                       "elapsed_s": round(state.elapsed_s, 2), "replica_weights_sha256": replicas},
        "device": {"device": run.device, "name": hardware.describe(run.device), "dtype": run.dtype,
                   "compile": compiled(cfg, run.device), "torch": torch.__version__},
        "samples": samples,
    }
    report.write_results(run.out_dir, results, state.history, baseline)
    exact = f"; over {n_full * cfg.block_size:,} val tokens {full_val:.4f}" if full_val is not None else ""
    print(f"final val loss {last['val_loss']:.4f} (best {best['val_loss']:.4f} at iter {best['iter']}{exact}) vs "
          f"unigram baseline {baseline:.4f}; results in {run.out_dir}/results.json and loss.png")
    return 0


def train(cfg: TrainConfig, saved: checkpoint.Checkpoint | None = None) -> int:
    """Train with cfg (resuming from saved) -> exit code: 0 when finished or stopped by SIGINT/SIGTERM
    (resumable), 3 when the loss, an evaluation or the weights go non-finite; bad settings raise UserError.
    Under torchrun (RANK, LOCAL_RANK, WORLD_SIZE set) it joins the process group first."""
    ddp = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    accum = check_config(cfg, world_size)
    device = hardware.resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", -1)) if ddp else -1)
    dtype = hardware.resolve_dtype(cfg.dtype, device)
    layout_class = Replicated
    if cfg.fsdp:  # shard the model over the ranks; fsdp.py needs torch >= 2.6, so only --fsdp imports it
        import fsdp  # noqa: PLC0415

        fsdp.check(ddp, dtype, cfg.compile)
        layout_class = fsdp.Sharded
    if ddp:
        if device.startswith("cuda"):
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    try:
        with contextlib.ExitStack() as stack:
            on_rank0(lambda: stack.enter_context(OutDirLock(cfg.out_dir)), rank, world_size)
            stop = stack.enter_context(StopSignal())
            tracker = stack.enter_context(Tracker(cfg, rank == 0))
            code = run_training(cfg, saved, stop, accum, rank, world_size, device, dtype, tracker, layout_class)
    except KeyboardInterrupt:
        last = Path(cfg.out_dir) / "ckpt_last.pt"
        print(f"train.py: interrupted; {'resume from ' + str(last) if last.exists() else 'nothing to resume'}",
              file=sys.stderr)
        return 130
    else:
        if ddp and code == 0:
            dist.barrier()  # leave together: ranks that tear down while rank 0 still writes can hang its exit
        return code
    finally:
        if ddp and dist.is_initialized():
            gc.collect()  # free the DDP reducer (it holds the group) before the group is torn down
            dist.destroy_process_group()


def main(argv=None) -> int:
    cfg, saved = resolve_config(argv, __doc__.split("\n\n")[0])
    return train(cfg, saved)


if __name__ == "__main__":
    run_main(main)
