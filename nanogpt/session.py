"""A training run before its first step: its records, its plan, and how data, model and optimizer are set up.

Plan is its arithmetic (batch, epoch, schedule); Run holds what the loop uses and does not change; where it
stands is checkpoint.RunState. `setup` builds them, from scratch or from a checkpoint read once.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

import checkpoint
import data
import hardware
from checkpoint import RunState
from cli import UserError
from config import TrainConfig
from files import write_text
from hub import gpt2_folder
from model import GPT, GPTConfig
from tracking import Tracker


@dataclass
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


@dataclass
class Run:
    """Everything the loop uses and does not change: settings, data, model, optimizer, where to write."""
    cfg: TrainConfig
    plan: Plan
    rank: int
    world_size: int
    device: str
    dtype: str
    ctx: object  # autocast context
    train_data: np.ndarray
    val_data: np.ndarray
    meta: dict
    identity: dict
    model: torch.nn.Module  # compiled and/or DDP-wrapped
    raw_model: GPT  # never wrapped (sharded in place with --fsdp): its state_dict has no _orig_mod./module. prefix
    layout: object  # train.Replicated, or fsdp.Sharded with --fsdp: the raw model's full state, gathered and restored
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    out_dir: Path
    last_good: Path | None = None  # the newest checkpoint this run's weights are known good in
    bar: tqdm | None = None
    tracker: Tracker = field(default_factory=Tracker)  # W&B with --wandb (rank 0)
    baseline: float | None = None  # the unigram entropy of train.bin, computed once (see unigram)

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def ddp(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()


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


def get_lr(it: int, cfg: TrainConfig, decay_iters: int) -> float:
    """Linear warmup to the peak, then cosine decay to min_lr_ratio * peak (GPT-3)."""
    if not cfg.decay_lr:
        return cfg.learning_rate
    min_lr = cfg.learning_rate * cfg.min_lr_ratio
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
    if it >= decay_iters:
        return min_lr
    ratio = (it - cfg.warmup_iters) / max(1, decay_iters - cfg.warmup_iters)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.learning_rate - min_lr)


def build_model(cfg: TrainConfig, meta: dict, saved: checkpoint.Checkpoint | None) -> GPT:
    """From scratch, a resumed checkpoint, one of our checkpoints (weights only), or GPT-2 weights."""
    tweaks = {"dropout": cfg.dropout, "flash": cfg.flash}  # may differ from the source's
    source = saved if saved is not None else checkpoint.read(cfg.init_from) if Path(cfg.init_from).is_file() else None
    if source is not None:
        model = GPT(GPTConfig(**{**source.model_args, **tweaks}))
        model.load_state_dict(source.model)
    elif cfg.init_from == "scratch":
        vocab = int(meta["vocab_size"])
        if vocab > 256 and cfg.vocab_multiple > 1:  # BPE: round up for faster matmuls, 50257 -> 50304
            vocab = -(-vocab // cfg.vocab_multiple) * cfg.vocab_multiple
        model = GPT(GPTConfig(block_size=cfg.block_size, vocab_size=vocab, n_layer=cfg.n_layer, n_head=cfg.n_head,
                              n_embd=cfg.n_embd, bias=cfg.bias, **tweaks))
    else:  # OpenAI GPT-2: hub name or local Hugging Face folder
        if meta.get("tokenizer") != "gpt2":
            raise UserError(f"--init-from {cfg.init_from} needs a GPT-2 BPE dataset, but {cfg.dataset!r} "
                            f"uses tokenizer {meta.get('tokenizer')!r}; prepare one with the gpt2 tokenizer")
        try:
            model = GPT.from_pretrained(gpt2_folder(cfg.init_from), tweaks)
        except ValueError as e:
            raise UserError(str(e).splitlines()[0]) from None
    if cfg.block_size > model.config.block_size:
        raise UserError(f"block_size {cfg.block_size} is larger than {cfg.init_from} allows "
                        f"({model.config.block_size} positions)")
    if cfg.block_size < model.config.block_size:
        model.crop_block_size(cfg.block_size)
    vocab, bpe = int(meta["vocab_size"]), meta.get("tokenizer") == "gpt2"
    if vocab > model.config.vocab_size or (saved is None and source is not None
                                           and (model.config.vocab_size >= 50257) != bpe):
        raise UserError(f"dataset {cfg.dataset!r} (tokenizer {meta.get('tokenizer')}, vocab {vocab}) does not "
                        f"match the model's vocabulary of {model.config.vocab_size} tokens")
    return model


def on_rank0(fn, rank: int, world_size: int) -> None:
    """fn() on rank 0 only; a UserError there is raised on every rank (the others would wait forever)."""
    error = None
    if rank == 0:
        try:
            fn()
        except UserError as e:
            error = str(e)
    if world_size > 1:
        box = [error]
        dist.broadcast_object_list(box, src=0)
        error = box[0]
    if error:
        raise UserError(error)


def make_plan(cfg: TrainConfig, accum: int, world_size: int, train_tokens: int, val_tokens: int) -> Plan:
    n_train, n_val = data.train_windows(train_tokens, cfg.block_size), data.num_windows(val_tokens, cfg.block_size)
    if n_val < 1 or n_train < 1:
        raise UserError(f"block_size {cfg.block_size} is larger than the data: {cfg.dataset} has "
                        f"{train_tokens} train and {val_tokens} val tokens")
    windows = cfg.batch_size * accum * world_size
    steps_per_epoch = n_train // windows  # the remainder of an epoch is dropped
    if steps_per_epoch < 1:
        raise UserError(f"one step needs {windows} windows of {cfg.block_size} tokens but train.bin "
                        f"has only {n_train}; lower batch_tokens/batch_size/block_size")
    total = min(steps_per_epoch * cfg.max_epochs, cfg.max_iters or math.inf)
    return Plan(accum, windows, n_train, n_val, steps_per_epoch, total, cfg.lr_decay_iters or total,
                windows * cfg.block_size)


def resumed_state(run_cfg: TrainConfig, plan: Plan, identity: dict, saved: checkpoint.Checkpoint) -> RunState:
    """The checkpoint's position, which means something only on the same data with the same step size."""
    dataset = saved.dataset or identity
    if dataset != identity:
        changed = ", ".join(k for k in identity if dataset.get(k) != identity[k])
        raise UserError(f"cannot resume: dataset {run_cfg.dataset!r} in {run_cfg.data_dir} is not the data the "
                        f"checkpoint trained on ({changed} differ); resume on that data, or start a new run "
                        f"from its weights with --init-from {run_cfg.resume}")
    if saved.windows != (plan.windows_per_step, plan.n_train):
        raise UserError(f"cannot resume: a step now takes {plan.windows_per_step} of {plan.n_train} windows per "
                        f"epoch, the checkpoint's took {saved.windows[0]} of {saved.windows[1]}; keep "
                        f"batch_size * accumulation * world_size (set --batch-tokens when changing GPUs)")
    return saved.state


def setup(cfg: TrainConfig, saved: checkpoint.Checkpoint | None, accum: int, rank: int, world_size: int, device: str,
          dtype: str, layout_class) -> tuple[Run, RunState]:
    torch.manual_seed(cfg.seed)  # model init: the same on every rank
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32  # TF32 tensor cores for float32 matmuls (Ampere+)
        torch.backends.cudnn.allow_tf32 = cfg.tf32
    on_rank0(lambda: data.prepare_if_missing(cfg.dataset, cfg.data_dir, cfg.data_source), rank, world_size)
    train_data, val_data, meta, identity = data.load_dataset(cfg.dataset, cfg.data_dir)
    plan = make_plan(cfg, accum, world_size, len(train_data), len(val_data))
    state = resumed_state(cfg, plan, identity, saved) if saved is not None else RunState()
    layout = layout_class(build_model(cfg, meta, saved), device, dtype)  # on device, sharded with --fsdp
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
    run = Run(cfg, plan, rank, world_size, device, dtype, hardware.autocast(device, dtype), train_data, val_data,
              meta, identity, model, raw_model, layout, optimizer, scaler, Path(cfg.out_dir),
              last_good=Path(cfg.resume) if saved is not None else None)
    return run, state


def compiled(cfg: TrainConfig, device: str) -> bool:
    return cfg.compile if cfg.compile is not None else device.startswith("cuda") and not cfg.fsdp


def announce(run: Run, state: RunState, saved: checkpoint.Checkpoint | None) -> None:
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
          f"{run.meta.get('tokenizer')}; unigram baseline {unigram(run):.4f} nats/token")
    print(f"model {run.raw_model.get_num_params() / 1e6:.2f}M params; {run.world_size} rank(s) x {plan.accum} "
          f"micro-step(s) x {cfg.batch_size} x {cfg.block_size} = {plan.tokens_per_step:,} tokens/step; "
          f"{plan.steps_per_epoch} steps/epoch; {plan.total_iters} steps; device {run.device} {run.dtype}"
          f"{' compiled' if compiled(cfg, run.device) else ''}{' FSDP' if cfg.fsdp else ''}")
    if run.device == "cpu" and run.raw_model.config.vocab_size >= 50000:
        print(f"note: on CPU the output layer over {run.raw_model.config.vocab_size:,} tokens dominates the step "
              f"(about 25-50x slower than a byte or char-level model of the same size)")
    # a fresh run starts a fresh log; a resumed one continues the log stored in its checkpoint
    write_text(run.out_dir / "log.jsonl", "".join(json.dumps(rec) + "\n" for rec in state.history))


def unigram(run: Run) -> float:
    """The unigram baseline (nats/token): read from up to 50M tokens of train.bin once, then remembered."""
    if run.baseline is None:
        run.baseline = data.unigram_entropy(run.train_data, int(run.meta["vocab_size"]))
    return run.baseline
