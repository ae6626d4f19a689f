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

Read it top down: Plan and Run (what a step uses), the lr schedule and one step (with model.py and data.py,
that is all of a step), evaluation and the loop, then how a run is set up and torn down
(main -> run -> train_loop -> train_step).
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass
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
from checkpoint import Checkpoint, RunState
from cli import StopSignal, UserError, run_main
from config import TrainConfig, check_config, parse_save_epochs, resolve_config
from files import OutDirLock
from model import GPT
from report import Outputs
from session import build_model, compiled, on_rank0, resumed_state


class Diverged(Exception):
    """A non-finite loss, evaluation or weights: the run stops before anything is written from them."""


@dataclass(frozen=True)
class Plan:
    """The run's arithmetic, fixed at start: batch, epoch and schedule lengths."""
    accum: int  # micro-steps per optimizer step on each rank
    windows_per_step: int  # over all ranks
    n_train: int  # training windows per epoch
    n_val: int
    steps_per_epoch: int
    total_iters: int
    decay_iters: int
    tokens_per_step: int


def make_plan(cfg: TrainConfig, accum: int, world_size: int, train_tokens: int, val_tokens: int) -> Plan:
    """The Plan of a run over this many tokens; data too short for one window or one step is refused."""
    n_train, n_val = data.train_windows(train_tokens, cfg.block_size), data.num_windows(val_tokens, cfg.block_size)
    if n_val < 1 or n_train < 1:
        raise UserError(f"--block-size {cfg.block_size} is larger than the data: {cfg.dataset} has "
                        f"{train_tokens} train and {val_tokens} val tokens")
    windows = cfg.batch_size * accum * world_size
    steps_per_epoch = n_train // windows  # the remainder of an epoch is dropped
    if steps_per_epoch < 1:
        raise UserError(f"one step needs {windows} windows of {cfg.block_size} tokens but train.bin "
                        f"has only {n_train}; lower --batch-tokens, --batch-size or --block-size")
    total = min(steps_per_epoch * cfg.max_epochs, cfg.max_iters or math.inf)
    return Plan(accum, windows, n_train, n_val, steps_per_epoch, total, cfg.lr_decay_iters or total,
                windows * cfg.block_size)


@dataclass(frozen=True)
class Run:
    """What the loop uses and never changes: settings, data, model, optimizer. What changes is RunState."""
    cfg: TrainConfig
    plan: Plan  # the run's arithmetic: micro-steps per step, steps per epoch, total steps, decay length
    rank: int
    world_size: int
    device: str
    dtype: str
    autocast: contextlib.AbstractContextManager  # torch.autocast in bfloat16/float16; does nothing in float32
    train_data: np.ndarray  # token ids (memmap of train.bin)
    val_data: np.ndarray
    meta: dict  # the dataset's meta.json
    identity: dict  # the dataset's, which a checkpoint records
    model: torch.nn.Module  # what runs forward: raw_model, compiled and/or wrapped in DDP
    raw_model: GPT  # never wrapped (sharded in place with --fsdp): its state_dict has no prefixes
    layout: Replicated  # or fsdp.Sharded with --fsdp: the raw model's full state, gathered and restored
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler  # loss scaling in float16; otherwise each call passes through
    unigram: float | None  # the unigram baseline of train.bin in nats/token (rank 0; None elsewhere)

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def ddp(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()


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

    def plain_model(self) -> GPT:
        return self.model


# --------------------------------------------------------------------------------------------------
# the schedule, one step, evaluation


def get_lr(it: int, cfg: TrainConfig, decay_iters: int) -> float:
    """The learning rate of step it: linear warmup to the peak, then cosine decay to min_lr_ratio * peak
    at decay_iters, flat after (GPT-3)."""
    if not cfg.decay_lr:
        return cfg.learning_rate
    min_lr = cfg.learning_rate * cfg.min_lr_ratio
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
    if it >= decay_iters:
        return min_lr
    ratio = (it - cfg.warmup_iters) / max(1, decay_iters - cfg.warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.learning_rate - min_lr)


def train_step(run: Run, it: int, windows: np.ndarray, shift: int, lr: float) -> torch.Tensor:
    """Optimizer step `it` at learning rate lr over windows (accum, batch_size) of the grid shifted by shift ->
    its mean loss, left on the device (no host sync)."""
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    torch.manual_seed(run.cfg.seed * 1_000_003 + it * 1009 + run.rank)  # dropout noise, resumable
    accum = len(windows)
    loss_sum = torch.zeros((), device=run.device)
    for micro in range(accum):
        x, y = data.get_batch(run.train_data, windows[micro], run.cfg.block_size, run.device, shift)
        # DDP all-reduces the gradients in backward (FSDP reduce-scatters them): only the last micro-step needs to
        last = micro == accum - 1
        with run.model.no_sync() if run.ddp and not last else contextlib.nullcontext():
            with run.autocast:
                _, loss = run.model(x, y)
                loss = loss / accum  # the step's gradient is the mean over its micro-steps
            run.scaler.scale(loss).backward()
        loss_sum += loss.detach().float()
    if run.cfg.grad_clip > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.raw_model.parameters(), run.cfg.grad_clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    return loss_sum


@torch.no_grad()
def evaluate(run: Run, splits: dict, progress: str | None = None) -> dict:
    """Mean loss over each split's given windows; each rank takes every world_size-th window and the sums
    are all-reduced, so every rank returns the same numbers. progress: a bar with this label (rank 0)."""
    model = run.model.module if isinstance(run.model, DDP) else run.model  # no DDP hooks for forward only
    model.eval()
    out = {}
    for name, (tokens, windows) in splits.items():
        mine = windows[run.rank :: run.world_size]
        total = torch.zeros(2, dtype=torch.float64, device=run.device)  # (sum of window losses, windows)
        per_rank = -(-len(windows) // run.world_size)  # FSDP: every rank runs as many forwards (collectives)
        starts = range(0, per_rank, run.cfg.batch_size)
        for i in tqdm(starts, desc=progress, unit="batch", leave=False, disable=not (progress and run.master)):
            chunk = mine[i : i + run.cfg.batch_size]  # empty on a rank short of windows: a forward, weight 0
            x, y = data.get_batch(tokens, chunk if len(chunk) else windows[:1], run.cfg.block_size, run.device)
            with run.autocast:
                _, loss = model(x, y)
            total[0] += loss.double() * len(chunk)
            total[1] += len(chunk)
        if run.world_size > 1:
            dist.all_reduce(total)
        out[name] = (total[0] / total[1]).item()
    model.train()
    return out


# --------------------------------------------------------------------------------------------------
# the loop: logging, checkpoints, stopping


@dataclass
class Meter:
    """Training tokens and seconds since the last evaluation. The first step after a start or resume is left
    out: it carries torch.compile's tracing and the allocator's warm-up."""
    tokens: int = 0
    seconds: float = 0.0
    warm: bool = False

    def add(self, tokens: int, seconds: float) -> None:
        if self.warm:
            self.tokens, self.seconds = self.tokens + tokens, self.seconds + seconds
        self.warm = True

    def rate(self) -> float | None:
        rate = self.tokens / self.seconds if self.seconds > 0 else None
        self.tokens, self.seconds = 0, 0.0
        return rate


def log(state: RunState, outputs: Outputs, rec: dict) -> None:
    state.history.append(rec)
    outputs.log(rec)


def log_eval(run: Run, state: RunState, outputs: Outputs, meter: Meter, lr: float) -> None:
    """Evaluate on the fixed windows of both splits and log it with lr, the last step's; stop on a non-finite
    result."""
    cfg, plan = run.cfg, run.plan
    splits = {s: (tokens, data.eval_windows(n, cfg.eval_iters * cfg.batch_size, cfg.seed, s))
              for s, tokens, n in (("train", run.train_data, plan.n_train), ("val", run.val_data, plan.n_val))}
    losses = evaluate(run, splits)
    if not all(map(math.isfinite, losses.values())):
        raise Diverged(f"evaluation loss is {losses['val']} at iter {state.iter_num}")
    tps = meter.rate()
    mfu = hardware.mfu(run.raw_model.flops_per_token(), tps / run.world_size, run.device, run.dtype) if tps else None
    rec = {"epoch": round(state.iter_num / plan.steps_per_epoch, 4), "epochs_done": state.epoch,
           "iter": state.iter_num, "tokens": state.iter_num * plan.tokens_per_step, "train_loss": losses["train"],
           "val_loss": losses["val"], "val_ppl": math.exp(min(losses["val"], 50.0)), "lr": lr,
           "tokens_per_s": tps, "mfu": mfu, "elapsed_s": round(state.elapsed_s, 3)}
    log(state, outputs, rec)
    if run.master:
        tqdm.write(f"epoch {rec['epoch']:.2f} iter {state.iter_num}: train {rec['train_loss']:.4f} val "
                   f"{rec['val_loss']:.4f} (ppl {rec['val_ppl']:.2f}) lr {lr:.2e}"
                   + (f" {tps:,.0f} tok/s" if tps else "") + (f" MFU {mfu:.1%}" if mfu else ""))


def log_step(run: Run, state: RunState, outputs: Outputs, bar: tqdm, loss: float, lr: float, step_s: float) -> None:
    """The loss of the step just taken (its lr, its seconds): in log.jsonl and on the progress bar."""
    log(state, outputs, {"iter": state.iter_num, "epoch": round(state.iter_num / run.plan.steps_per_epoch, 4),
                         "loss": loss, "lr": lr})
    if run.master:
        tps = run.plan.tokens_per_step / step_s
        mfu = hardware.mfu(run.raw_model.flops_per_token(), tps / run.world_size, run.device, run.dtype)
        bar.set_postfix_str(f"loss {loss:.4f} lr {lr:.2e} {tps:,.0f} tok/s" + (f" MFU {mfu:.1%}" if mfu else ""),
                            refresh=False)


def sync_point(run: Run, state: RunState, loss: torch.Tensor, first_bad: torch.Tensor,
               stop: StopSignal) -> tuple[float, bool]:
    """Where the host reads the device -> (the step's loss, averaged over ranks; whether any rank got a stop
    signal). A non-finite loss at any step since the last sync point raises Diverged."""
    stats = torch.stack([loss, torch.tensor(float(stop.name is not None), device=run.device),
                         (first_bad >= 0).float()])
    if run.world_size > 1:
        dist.all_reduce(stats)
        stats[0] /= run.world_size
    step_loss, stop_requested, bad = stats.tolist()
    if bad:
        at = int(first_bad.item()) if first_bad.item() >= 0 else state.iter_num - 1
        raise Diverged(f"loss is not finite at iter {at} (lr {get_lr(at, run.cfg, run.plan.decay_iters):.3g})")
    return step_loss, stop_requested > 0


def save(run: Run, state: RunState, outputs: Outputs, names: list[str]) -> None:
    """Write a checkpoint, after checking that the weights are finite (a diverged model never replaces one)."""
    if not run.layout.all_finite():
        raise Diverged(f"the weights are not finite at iter {state.iter_num}")
    model_state, optimizer_state = run.layout.full_state(run.optimizer)  # FSDP: gathered to rank 0
    if not run.master:
        return
    saved = Checkpoint(model_state, dataclasses.asdict(run.raw_model.config), dataclasses.asdict(run.cfg), state,
                       optimizer_state, run.scaler.state_dict(), checkpoint.rng_state(), run.identity,
                       (run.plan.windows_per_step, run.plan.n_train), run.plan.decay_iters)
    next_lr = get_lr(state.iter_num, run.cfg, run.plan.decay_iters)
    outputs.save_checkpoint(checkpoint.to_checkpoint(saved, next_lr), names)


def train_loop(run: Run, state: RunState, outputs: Outputs, stop: StopSignal) -> str | None:
    """Steps until the budget or max_epochs ends -> the name of the signal that stopped it, or None."""
    cfg, plan = run.cfg, run.plan
    meter, save_epochs = Meter(), parse_save_epochs(cfg.save_epochs)
    first_bad = torch.full((), -1, dtype=torch.long, device=run.device)  # first iter with a non-finite loss
    base_s, t_start = state.elapsed_s, time.time()
    lr = get_lr(max(0, state.iter_num - 1), cfg, plan.decay_iters)  # the last step's: what evaluations log
    bar = tqdm(total=plan.total_iters, initial=min(state.iter_num, plan.total_iters), disable=not run.master,
               unit="step", dynamic_ncols=True, mininterval=1.0)
    with bar:
        if state.iter_num == 0 and plan.total_iters > 0 and cfg.eval_interval > 0:
            log_eval(run, state, outputs, meter, lr)  # the loss at initialization, where the curve starts
        while state.iter_num < plan.total_iters and state.epoch < cfg.max_epochs:
            order = data.epoch_order(plan.n_train, cfg.seed, state.epoch)
            shift = data.epoch_shift(cfg.seed, state.epoch, cfg.block_size)
            while state.epoch_step < plan.steps_per_epoch and state.iter_num < plan.total_iters:
                t0 = time.time()
                lr = get_lr(state.iter_num, cfg, plan.decay_iters)
                windows = data.step_windows(order, state.epoch_step, run.rank, run.world_size, cfg.batch_size,
                                            plan.accum)
                loss = train_step(run, state.iter_num, windows, shift, lr)
                first_bad = torch.where((first_bad < 0) & ~loss.isfinite(), state.iter_num, first_bad)
                state.iter_num, state.epoch_step = state.iter_num + 1, state.epoch_step + 1
                epoch_end = state.epoch_step == plan.steps_per_epoch
                evaluate_now = epoch_end or (cfg.eval_interval > 0 and state.iter_num % cfg.eval_interval == 0)
                log_now = state.iter_num % cfg.log_interval == 0
                stop_now = False
                # the only places a step waits for the device; one process honours a stop request (a host-side
                # flag) after this step, several ranks agree on one at the next logged or evaluated step
                if evaluate_now or log_now or (stop.name and run.world_size == 1):
                    step_loss, stop_now = sync_point(run, state, loss, first_bad, stop)
                if log_now:
                    log_step(run, state, outputs, bar, step_loss, lr, time.time() - t0)
                meter.add(plan.tokens_per_step, time.time() - t0)
                state.elapsed_s = base_s + time.time() - t_start
                bar.update(1)
                if epoch_end:
                    state.epoch, state.epoch_step = state.epoch + 1, 0
                if evaluate_now:
                    log_eval(run, state, outputs, meter, lr)
                if epoch_end and (save_epochs is None or state.epoch in save_epochs):
                    save(run, state, outputs, [f"ckpt_epoch{state.epoch}.pt", "ckpt_last.pt"])
                if stop_now:
                    return stop.name or "a signal on another rank"
                if epoch_end:
                    break
        sync_point(run, state, torch.zeros((), device=run.device), first_bad, stop)
        evals = report.evaluations(state.history)
        if not evals or evals[-1]["iter"] != state.iter_num:  # the budget ended mid-epoch
            log_eval(run, state, outputs, meter, lr)
    return None


# --------------------------------------------------------------------------------------------------
# a run: set-up, the out dir's lock, the loop, the results, teardown


def setup(cfg: TrainConfig, saved: Checkpoint | None, accum: int, rank: int, world_size: int, device: str,
          dtype: str, layout_class: type) -> tuple[Run, RunState]:
    """Data, model, optimizer and position, from scratch or from the checkpoint `saved`."""
    torch.manual_seed(cfg.seed)  # model init: the same on every rank
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32  # TF32 tensor cores for float32 matmuls (Ampere+)
        torch.backends.cudnn.allow_tf32 = cfg.tf32
    train_data, val_data, meta, identity = data.load_dataset(cfg.dataset, cfg.data_dir)
    plan = make_plan(cfg, accum, world_size, len(train_data), len(val_data))
    windows = (plan.windows_per_step, plan.n_train)
    state = resumed_state(cfg, windows, identity, saved) if saved is not None else RunState()
    layout = layout_class(build_model(cfg, meta, saved), device, dtype)  # on device; sharded with --fsdp
    raw_model = layout.model
    device_type = torch.device(device).type
    optimizer = raw_model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2),
                                               device_type, eps=cfg.eps)
    scaler = torch.amp.GradScaler(device_type, enabled=(dtype == "float16"))  # float16 needs loss scaling
    if saved is not None:
        layout.load_optimizer(optimizer, saved.optimizer)
        if saved.scaler:  # empty when the checkpoint's run had no float16 (GradScaler disabled)
            scaler.load_state_dict(saved.scaler)
        checkpoint.set_rng_state(saved.rng)
    model = torch.compile(raw_model) if compiled(cfg, device) else raw_model
    if dist.is_initialized() and not cfg.fsdp:
        model = DDP(model, device_ids=[torch.device(device).index] if device_type == "cuda" else None)
    # read from up to 50M tokens of train.bin: printed now, written to results.json at the end
    unigram = data.unigram_entropy(train_data, int(meta["vocab_size"])) if rank == 0 else None
    run = Run(cfg, plan, rank, world_size, device, dtype, hardware.autocast(device, dtype), train_data, val_data,
              meta, identity, model, raw_model, layout, optimizer, scaler, unigram)
    return run, state


def announce(run: Run, state: RunState, saved: Checkpoint | None) -> None:
    """What the run is about to do, and what in its settings deserves a second look (rank 0)."""
    cfg, plan = run.cfg, run.plan
    if saved is not None:
        print(f"resuming from {cfg.resume} at iter {state.iter_num} (epoch {state.epoch}, step {state.epoch_step}"
              f" of {plan.steps_per_epoch})")
        before = saved.decay_iters or plan.decay_iters
        if cfg.decay_lr and before != plan.decay_iters:
            print(f"train.py: warning: the lr schedule now decays over {plan.decay_iters} iters, the checkpoint's "
                  f"over {before}: the learning rate at iter {state.iter_num} moves from "
                  f"{get_lr(state.iter_num, cfg, before):.3g} to {get_lr(state.iter_num, cfg, plan.decay_iters):.3g}"
                  f"; pass --lr-decay-iters {before} to keep the schedule", file=sys.stderr)
    if cfg.decay_lr and plan.total_iters and cfg.warmup_iters > plan.total_iters / 2:
        print(f"train.py: warning: the warmup ({cfg.warmup_iters} iters) is longer than half the run "
              f"({plan.total_iters} iters); the learning rate peaks late or never", file=sys.stderr)
    print(f"{cfg.dataset}: {len(run.train_data):,} train / {len(run.val_data):,} val tokens, tokenizer "
          f"{run.meta.get('tokenizer')}; unigram baseline {run.unigram:.4f} nats/token")
    weights = (f"resumed from {cfg.resume}" if saved is not None else f"from scratch (seed {cfg.seed})"
               if cfg.init_from == "scratch" else f"from {cfg.init_from}")
    print(f"model {run.raw_model.get_num_params() / 1e6:.2f}M params, weights {weights}; {run.world_size} rank(s) x "
          f"{plan.accum} micro-step(s) x {cfg.batch_size} x {cfg.block_size} = {plan.tokens_per_step:,} tokens/step; "
          f"{plan.steps_per_epoch} steps/epoch; {plan.total_iters} steps; device {run.device} {run.dtype}"
          f"{' compiled' if compiled(cfg, run.device) else ' eager'}{' FSDP' if cfg.fsdp else ''}")
    if run.device == "cpu" and run.raw_model.config.vocab_size >= 50000:
        print(f"note: on CPU the output layer over {run.raw_model.config.vocab_size:,} tokens dominates the step "
              f"(about 25-50x slower than a byte or char-level model of the same size); --preset "
              f"finetune_shakespeare_cpu is a GPT-2 fine-tune sized for minutes on a CPU")


def finish(run: Run, state: RunState, outputs: Outputs, stopped_by: str | None = None) -> None:
    """The exact val loss, the samples, results.json and loss.png. After a stop, only results.json and loss.png,
    of what the checkpoint beside them holds (never an earlier run's)."""
    cfg, plan = run.cfg, run.plan
    # the logged val loss is a sample of eval_iters batches (+-0.02 at eval_iters=20); this is the exact one
    full_val, n_full = None, 0
    if cfg.final_eval_tokens and not stopped_by:
        n_full = min(plan.n_val, max(1, cfg.final_eval_tokens // cfg.block_size))  # from the start of val.bin
        full_val = evaluate(run, {"val": (run.val_data, np.arange(n_full))}, "exact val loss")["val"]
    replicas = None
    if run.world_size > 1:  # every rank must hold the same weights
        replicas = [None] * run.world_size
        dist.all_gather_object(replicas, checkpoint.weights_sha256(run.raw_model.state_dict()))
    sampler = None if stopped_by else run.layout.plain_model()  # FSDP: a float32 copy in rank 0's host memory
    if not run.master:
        return
    on_device = not cfg.fsdp  # FSDP samples on the CPU: the whole model may not fit one GPU
    samples = [] if stopped_by else report.print_samples(
        sampler, run.meta, cfg.num_samples, cfg.sample_tokens, cfg.seed,
        run.autocast if on_device else contextlib.nullcontext(), run.device if on_device else "cpu")
    evals = report.evaluations(state.history)
    # epoch-end evaluations, told by iter: the epoch field is rounded to 4 places
    per_epoch = [r for r in evals if r["epochs_done"] > 0 and r["iter"] == r["epochs_done"] * plan.steps_per_epoch]
    none = dict.fromkeys(("iter", "train_loss", "val_loss", "val_ppl"))  # stopped before any evaluation
    best, last = min(evals, key=lambda r: r["val_loss"], default=none), evals[-1] if evals else none
    tps, mfus = [r["tokens_per_s"] for r in evals if r["tokens_per_s"]], [r["mfu"] for r in evals if r["mfu"]]
    results = {
        "config": dataclasses.asdict(cfg), "model_args": dataclasses.asdict(run.raw_model.config),
        "n_params": run.raw_model.get_num_params(),
        "dataset": {"name": cfg.dataset, "train_tokens": len(run.train_data), "val_tokens": len(run.val_data),
                    "tokenizer": run.meta.get("tokenizer"), "vocab_size": run.meta.get("vocab_size")},
        "unigram_baseline_nats": run.unigram,
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
        "samples": samples, "stopped_by": stopped_by,
    }
    outputs.write_results(results, state.history, run.unigram)
    if stopped_by:
        return
    exact = f"; over {n_full * cfg.block_size:,} val tokens {full_val:.4f}" if full_val is not None else ""
    print(f"final val loss {last['val_loss']:.4f} (best {best['val_loss']:.4f} at iter {best['iter']}{exact}) vs "
          f"unigram baseline {run.unigram:.4f}; results in {outputs.out_dir}/results.json and loss.png")


def run(cfg: TrainConfig, saved: Checkpoint | None = None) -> None:
    """Train with cfg, resuming from `saved`: returns when finished or stopped by SIGINT/SIGTERM (resumable);
    raises Diverged when the loss, an evaluation or the weights go non-finite, UserError on bad settings. Under
    torchrun (RANK, LOCAL_RANK, WORLD_SIZE set) it joins the process group first and leaves it last."""
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
    # before the process group: a rank waiting for the data sits in no collective, whose timeout would end it;
    # SIGINT/SIGTERM end the preparation at once (KeyboardInterrupt)
    with StopSignal(armed=False, announce=False):
        data.prepare_or_wait(cfg.dataset, cfg.data_dir, cfg.data_source, int(os.environ.get("LOCAL_RANK", rank)))
    if ddp:
        if device.startswith("cuda"):
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    try:
        with contextlib.ExitStack() as stack:
            on_rank0(lambda: stack.enter_context(OutDirLock(cfg.out_dir)), rank, world_size)
            # SIGINT/SIGTERM in the loop (armed) finish the step and save; elsewhere, or twice: at once
            stop = stack.enter_context(StopSignal(armed=False, announce=rank == 0))
            outputs = stack.enter_context(Outputs(cfg, rank == 0))
            job, state = setup(cfg, saved, accum, rank, world_size, device, dtype, layout_class)
            if job.master:
                announce(job, state, saved)
            outputs.start_log(state.history)  # a fresh run starts a fresh log; a resumed one its checkpoint's
            try:
                stop.armed = True
                stopped_by = train_loop(job, state, outputs, stop)
                save(job, state, outputs, ["ckpt_last.pt"])
                stop.armed = False
            except Diverged as e:
                keep = (f"the last good checkpoint is {outputs.last_checkpoint}" if outputs.last_checkpoint
                        else "no checkpoint of this run was written")
                raise Diverged(f"{e}; stopping, {keep}") from None
            if stopped_by and job.master:
                print(f"stopped by {stopped_by} at iter {state.iter_num} (epoch {state.epoch}, step "
                      f"{state.epoch_step}); resumable checkpoint {outputs.last_checkpoint}; continue with: "
                      f"{resume_command(cfg, world_size)}")
            finish(job, state, outputs, stopped_by)
        if ddp:
            dist.barrier()  # leave together: ranks that tear down while rank 0 still writes can hang its exit
    finally:
        if ddp and dist.is_initialized():
            gc.collect()  # free the DDP reducer (it holds the group) before the group is torn down
            dist.destroy_process_group()


def resume_command(cfg: TrainConfig, world_size: int) -> str:
    """The command that continues a stopped run, as typed from the current folder (its settings are in
    OUT/ckpt_last.pt; --fsdp is how this launch ran, not a setting the checkpoint keeps)."""
    script = shlex.quote(os.path.relpath(__file__))
    launch = f"python {script}"
    if world_size > 1:
        launch = f"torchrun --standalone --nproc_per_node={world_size} {script}"
    if int(os.environ.get("LOCAL_WORLD_SIZE", world_size)) != world_size:  # several nodes
        launch = f"(your torchrun command) {script}"
    out_dir = shlex.quote(os.path.relpath(cfg.out_dir))
    return f"{launch} --resume --out-dir {out_dir}" + (" --fsdp" if cfg.fsdp else "")


def main(argv=None) -> int:
    """-> exit code: 0 when finished or stopped by SIGINT/SIGTERM (resumable), 3 when the run diverged, 130
    when interrupted outside the loop or twice; bad settings exit 2 (cli.run_main)."""
    cfg, saved = resolve_config(argv, __doc__.split("\n\n")[0])
    try:
        run(cfg, saved)
    except Diverged as e:
        if int(os.environ.get("RANK", 0)) == 0:
            print(f"train.py: error: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        last = Path(cfg.out_dir) / "ckpt_last.pt"
        print(f"train.py: interrupted; {'resume from ' + str(last) if last.exists() else 'nothing to resume'}",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    run_main(main)
