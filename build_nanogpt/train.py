"""Train GPT-2 (124M) on FineWeb-Edu shards: the recipe of karpathy/build-nanogpt, made resumable.

    python build_nanogpt/train.py --preset tiny --data-dir build_nanogpt/data/shakespeare   # CPU
    python build_nanogpt/train.py                                                            # 1 GPU
    torchrun --standalone --nproc_per_node=8 build_nanogpt/train.py                          # 8 GPUs

Recipe (GPT-3 paper, table 2.1, "Small"): 524,288 tokens per iter reached by gradient accumulation,
AdamW (0.9, 0.95, eps 1e-8, weight decay 0.1 on >=2-D tensors), peak LR 6e-4 after 715 warmup iters,
cosine decay to 10% at iter 19,073 (one epoch of 10B tokens), gradient clipping at 1.0, bf16 autocast,
TF32 matmuls, torch.compile, flash attention, vocabulary padded to 50,304.

torch.compile and evaluation: the training forward runs through `torch.compile(model)`. The validation
loss runs through the SAME compiled module, with the same (B, T) shape as training, so it reuses the
compiled code (one extra graph for no_grad mode, no shape-driven recompiles). HellaSwag (every batch a
different length) and sampling (the sequence grows by one token per step) run on the uncompiled module
that the compiled one wraps: the very same parameters, no copy, no recompilation storm, no dynamic-shape
graph breaks; both are a small part of the run's time. The reference turned compile off to get these
two working; here compile stays on for all of training.

The speedrun's model and optimizer (modern.py, muon.py) are switches of the same run: `--arch modern` with
any of --rotary --rmsnorm --no-bias --relu2 --zero-init --qk-norm --untied --embed-skip --softcap CAP --unet
--window W [--window-start W0] --value-embeds N, and `--optimizer muon` (Muon on the hidden matrices, AdamW on
the rest) with `--schedule wsd` (warm-up, stable, linear decay to the floor) and `--momentum-warmup-iters`.
With every switch off, `--arch modern` is GPT-2 (the same losses); ladder.py runs them rung by rung.

Ctrl-C or SIGTERM (on any rank) finishes the current iter, writes ckpt.pt and exits 0 (cli.StopSignal); a
second one stops at once; `--resume --out-dir OUT` continues (the settings come from the checkpoint). A non-finite loss, val loss or weight stops the run before
anything is saved (exit 3). A checkpoint replaces the last one only when its weights are known good (finite,
and a val loss not absurdly worse: see `save`), so a run that blows up but stays finite keeps the good one.
"""
from __future__ import annotations

import dataclasses
import gc
import math
import os
import shlex
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from checkpoint import read_checkpoint, restore_checkpoint, save_checkpoint
from cli import StopSignal, UserError, build_parser, knob, parse_config, run_main
from files import OutDirLock
from hardware import autocast_for, device_name, peak_flops, pick_dtype, resolve_device
from evaluation import Diverged, evaluate, val_loss
from hellaswag import download as download_hellaswag
from hellaswag import load_examples
from loader import ShardLoader
from logs import Logger
import modern
from model import GPT, GPTConfig, flops_per_token
from pretrained import init_model, modern_config
from tokens import GPT2_VOCAB, gpt2_encoding

MANY = 1 << 40
HERE = os.path.dirname(os.path.abspath(__file__))  # default folders are beside this script, wherever it runs from
CHOICES = {"arch": ("gpt2", "modern"), "optimizer": ("adamw", "muon"), "schedule": ("cosine", "wsd")}


@dataclass
class TrainConfig:
    # data and outputs
    data_dir: str = knob(os.path.join(HERE, "data", "edu_fineweb10B"), "folder of {val,train}_NNNNNN.npy shards")
    out_dir: str = knob(os.path.join(HERE, "out", "gpt2-124m"), "log.jsonl, log.txt, curves.png, ckpt.pt go here; "
                                                                "with --preset P the default is build_nanogpt/out/P")
    resume: str = knob("", "continue exactly from OUT_DIR/ckpt.pt (bare --resume) or from the given file",
                       nargs="?", const="last")
    init_from: str = knob("scratch", "scratch | gpt2 | gpt2-medium | gpt2-large | gpt2-xl | HF_DIR | CKPT.pt "
                                     "(fine-tune: the architecture comes from the weights)")
    seed: int = knob(1337, "model init, data shuffling and sampling", lo=0, hi=2**63 - 1)
    # model
    n_layer: int = knob(12, "transformer blocks", lo=1, hi=1024)
    n_head: int = knob(12, "attention heads", lo=1, hi=1024)
    n_embd: int = knob(768, "embedding width", lo=1, hi=65536)
    block_size: int = knob(1024, "sequence length T", lo=1, hi=1 << 20)
    vocab_size: int = knob(50304, "50,257 padded to a multiple of 128", lo=1, hi=1 << 20)
    # batch and schedule
    batch_size: int = knob(64, "sequences per forward pass per rank (micro-batch B)", lo=1, hi=1 << 20)
    total_batch: int = knob(524_288, "tokens per iter (2**19); accumulation = total / (B*T*world)", lo=1,
                            hi=1 << 30)  # 2**30: 300x GPT-3's largest batch; beyond it a run never reaches a step
    learning_rate: float = knob(6e-4, "peak learning rate", lo=0, hi=10)
    min_lr_ratio: float = knob(0.1, "final LR as a fraction of the peak", lo=0, hi=1)
    warmup_iters: int = knob(715, "linear warmup iters (375M tokens, GPT-3)", lo=0, hi=MANY)
    max_iters: int = knob(19_073, "iters of the cosine schedule and of the run (10B tokens)", lo=1, hi=MANY)
    stop_at: int = knob(-1, "stop (and checkpoint) at this iter without changing the schedule; resume later",
                        lo=-1, hi=MANY)
    weight_decay: float = knob(0.1, "AdamW weight decay on >=2-D tensors", lo=0, hi=10)
    beta1: float = knob(0.9, "AdamW beta1", lo=0, hi=1)
    beta2: float = knob(0.95, "AdamW beta2", lo=0, hi=1)
    eps: float = knob(1e-8, "AdamW eps", lo=0, hi=1)
    grad_clip: float = knob(1.0, "clip the global gradient norm (0: off)", lo=0, hi=1_000_000)
    # evaluation and checkpoints
    eval_interval: int = knob(250, "val loss, HellaSwag and samples every N iters (and at the end; 0: at the "
                                   "end only)", lo=0, hi=MANY)
    eval_iters: int = knob(20, "val batches per rank per evaluation (always the same ones; at most those the "
                               "val shards hold)", lo=1, hi=MANY)
    hellaswag_limit: int = knob(-1, "HellaSwag examples per evaluation (-1: all 10,042; 0: off)", lo=-1)
    hellaswag_data: str = knob("", "hellaswag_val.jsonl; empty: download once (sha256-checked) to "
                                   "~/.cache/build_nanogpt/hellaswag (or $BUILD_NANOGPT_CACHE/hellaswag)")
    num_samples: int = knob(4, "samples printed per evaluation (0: off)", lo=0, hi=1024)
    sample_tokens: int = knob(32, "tokens per sample", lo=1, hi=1 << 16)
    sample_prompt: str = knob("Hello, I'm a language model,", "prompt for the samples")
    ckpt_interval: int = knob(5000, "checkpoint every N iters (and at the end; 0: at the end only)", lo=0,
                              hi=MANY)
    # system
    device: str = knob("auto", "auto | cpu | cuda | cuda:N | mps")
    dtype: str = knob("bfloat16", "autocast dtype: bfloat16 | float16 (with a GradScaler) | float32 (none); "
                                  "bfloat16 becomes float16 on a GPU without native bf16")
    tf32: bool = knob(True, "TF32 matmuls for float32 (CUDA)")
    compile: bool = knob(True, "torch.compile the model")
    flash: bool = knob(True, "flash attention (scaled_dot_product_attention)")
    fused_adamw: bool = knob(True, "fused AdamW kernel (CUDA only; ignored elsewhere)")
    # the speedrun's techniques (modern.py, muon.py): each a switch, GPT-2 when off
    arch: str = knob("gpt2", "gpt2 (model.py) | modern (modern.py: the switches below)")
    bias: bool = knob(True, "modern: biases in Linear and LayerNorm (GPT-2 has them)")
    rotary: bool = knob(False, "modern: rotary position embeddings instead of the learned table")
    rmsnorm: bool = knob(False, "modern: parameter-free RMSNorm instead of LayerNorm")
    relu2: bool = knob(False, "modern: ReLU^2 MLP instead of GELU")
    zero_init: bool = knob(False, "modern: output projections (and an untied head) start at zero")
    qk_norm: bool = knob(False, "modern: RMS-normalise q and k per head")
    untied: bool = knob(False, "modern: a head of its own instead of the token embedding")
    embed_skip: bool = knob(False, "modern: the token embedding mixed into every block (learned scalars)")
    softcap: float = knob(0.0, "modern: logits = cap * tanh(logits / cap) (0: off)", lo=0, hi=1e4)
    unet: bool = knob(False, "modern: U-net skips from the first half of the blocks to the second")
    window: int = knob(0, "modern: sliding-window attention of this many tokens (0: full causal)", lo=0)
    window_start: int = knob(0, "modern: the window grows linearly from this to --window over the run "
                                "(0: no warm-up)", lo=0)
    value_embeds: int = knob(0, "modern: value-embedding tables (first and last N blocks, U-net pattern)",
                              lo=0, hi=512)
    optimizer: str = knob("adamw", "adamw | muon (Muon on the hidden matrices, AdamW on the rest; --arch modern)")
    muon_lr: float = knob(0.02, "Muon's peak learning rate (follows the schedule like --learning-rate)", lo=0,
                           hi=10)
    muon_momentum: float = knob(0.95, "Muon's momentum (after its warm-up)", lo=0, hi=1)
    momentum_warmup_iters: int = knob(0, "Muon's momentum rises linearly from 0.85 over these iters (0: off)",
                                       lo=0, hi=MANY)
    schedule: str = knob("cosine", "cosine (GPT-3) | wsd (warm-up, stable, linear decay to the floor "
                                   "min_lr_ratio in the last --cooldown-frac of the run)")
    cooldown_frac: float = knob(0.4, "wsd: the fraction of --max-iters spent decaying", lo=0, hi=1)


PRESETS = {
    "gpt2-124m": {},  # the defaults above
    "tiny": dict(  # about 30 s of CPU time (README: 100 iters on Tiny Shakespeare)
        data_dir=os.path.join(HERE, "data", "shakespeare"), out_dir=os.path.join(HERE, "out", "tiny"), n_layer=2,
        n_head=2,
        n_embd=64, block_size=64, batch_size=4, total_batch=512, learning_rate=3e-3, warmup_iters=10,
        max_iters=100, eval_interval=50, eval_iters=4, hellaswag_limit=20, num_samples=2, sample_tokens=16,
        ckpt_interval=50, dtype="float32", compile=False,
    ),
}


# --resume takes the run's settings from its checkpoint; a flag typed with it may change only these (the
# length of the run, where data, evaluation and outputs are, how often to measure, and how to run: none of
# them changes the model, the optimizer's state or the data order). A flag outside the list that differs from
# the checkpoint is refused, naming it.
MAY_CHANGE_ON_RESUME = ("max_iters", "data_dir", "eval_interval", "eval_iters", "hellaswag_limit", "hellaswag_data",
                        "num_samples", "sample_tokens", "sample_prompt", "ckpt_interval", "device", "compile",
                        "tf32", "fused_adamw", "dtype", "learning_rate", "min_lr_ratio", "warmup_iters",
                        "grad_clip", "weight_decay", "muon_lr")
THIS_RUN = ("resume", "out_dir", "stop_at")  # never taken from the checkpoint


def resumed_config(cfg: TrainConfig, typed: set[str], announce: bool) -> TrainConfig:
    """With --resume: the checkpoint's settings, overridden by the typed flags that may change (a line for
    each); a typed flag that may not change and differs from the checkpoint is refused."""
    path = os.path.join(cfg.out_dir, "ckpt.pt") if cfg.resume == "last" else cfg.resume
    if not os.path.exists(path):
        raise UserError(f"--resume: no checkpoint at {path!r}")
    saved = read_checkpoint(path)["config"]
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    base = replace(cfg, **{k: v for k, v in saved.items() if k in fields and k not in THIS_RUN})
    base = replace(base, **{k: getattr(cfg, k) for k in THIS_RUN if k != "stop_at" or k in typed})
    if "stop_at" not in typed:
        base = replace(base, stop_at=-1)
    for name in sorted(typed - set(THIS_RUN)):
        mine, theirs = getattr(cfg, name), getattr(base, name)
        if mine == theirs:
            continue
        flag = "--" + name.replace("_", "-")
        if name not in MAY_CHANGE_ON_RESUME:
            raise UserError(f"{flag} {mine}: a resumed run keeps its checkpoint's {name} {theirs} ({path}); "
                            f"leave {flag} out, or start a new run (--init-from {path} to fine-tune its weights)")
        if announce:
            print(f"resume: {flag} {mine} overrides the checkpoint's {theirs}")
        base = replace(base, **{name: mine})
    return base


def check_config(cfg: TrainConfig, world: int) -> int:
    """Refuse settings that cannot run; return the gradient accumulation steps."""
    if cfg.vocab_size < GPT2_VOCAB:  # the shards hold GPT-2 token ids: a smaller table cannot embed them
        raise UserError(f"--vocab-size {cfg.vocab_size}: must be >= {GPT2_VOCAB} (the GPT-2 tokens)")
    if cfg.stop_at == 0 or cfg.stop_at < -1:  # iter 0 has nothing to checkpoint yet
        raise UserError(f"--stop-at {cfg.stop_at}: use -1 (run to --max-iters) or an iter >= 1")
    if cfg.n_embd % cfg.n_head:
        raise UserError(f"--n-embd {cfg.n_embd} is not divisible by --n-head {cfg.n_head}")
    for name, allowed in CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise UserError(f"--{name} {getattr(cfg, name)}: use {' | '.join(allowed)}")
    check_modern(cfg)
    per_step = cfg.batch_size * cfg.block_size * world
    if cfg.total_batch < per_step or cfg.total_batch % per_step:
        raise UserError(f"--total-batch {cfg.total_batch} must be a multiple of batch_size*block_size*world "
                        f"= {cfg.batch_size}*{cfg.block_size}*{world} = {per_step}")
    return cfg.total_batch // per_step


def check_modern(cfg: TrainConfig) -> None:
    """The switches need --arch modern and must describe a model modern.py can build."""
    default = TrainConfig()
    moved = [name for name in modern.SWITCHES + ("optimizer",) if getattr(cfg, name) != getattr(default, name)]
    if cfg.arch == "gpt2" and moved:
        flag = moved[0].replace("_", "-")
        raise UserError(f"--{flag} is a switch of --arch modern (with every switch off it is GPT-2); add --arch modern")
    if cfg.arch == "gpt2":
        return
    if not cfg.flash:
        raise UserError("--no-flash: --arch modern always uses scaled_dot_product_attention")
    if cfg.init_from != "scratch":
        raise UserError(f"--init-from {cfg.init_from}: --arch modern trains from scratch only")
    if cfg.window_start and not cfg.window:
        raise UserError(f"--window-start {cfg.window_start} needs --window (the size it grows to)")
    if cfg.window > cfg.block_size or cfg.window_start > cfg.window:
        raise UserError(f"--window-start {cfg.window_start} <= --window {cfg.window} <= --block-size "
                        f"{cfg.block_size} is needed")
    problem = modern.check_config(modern_config(cfg))
    if problem:
        raise UserError(f"--arch modern: {problem}")


def get_lr(it: int, cfg: TrainConfig, peak: float | None = None) -> float:
    """Linear warmup to `peak` (default learning_rate), then cosine down to min_lr_ratio*peak at max_iters;
    or, with --schedule wsd, flat at the peak and a linear decay to that floor over the last cooldown_frac
    (the speedrun's trapezoid; its 3.1-minute record decays to 0.1 of the peak instead of 0)."""
    top = cfg.learning_rate if peak is None else peak
    low = top * cfg.min_lr_ratio
    if it < cfg.warmup_iters:
        return top * (it + 1) / cfg.warmup_iters
    if it >= cfg.max_iters:
        return low
    if cfg.schedule == "wsd":
        decay_start = max(cfg.warmup_iters, cfg.max_iters - round(cfg.cooldown_frac * cfg.max_iters))
        if it < decay_start:
            return top
        return top + (low - top) * (it - decay_start) / (cfg.max_iters - decay_start)
    ratio = (it - cfg.warmup_iters) / max(1, cfg.max_iters - cfg.warmup_iters)
    return low + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (top - low)


def get_momentum(it: int, cfg: TrainConfig) -> float:
    """Muon's momentum: from 0.85 up to muon_momentum over momentum_warmup_iters (the 8.2-minute record)."""
    frac = min(it / cfg.momentum_warmup_iters, 1.0) if cfg.momentum_warmup_iters else 1.0
    return (1 - frac) * 0.85 + frac * cfg.muon_momentum


def get_window(it: int, cfg: TrainConfig) -> int:
    """The attention window at iter `it`: from window_start to window, linearly over the run (4.7 minutes)."""
    if not cfg.window_start:
        return cfg.window
    return round(cfg.window_start + (cfg.window - cfg.window_start) * min(it / cfg.max_iters, 1.0))


def forward_backward(model, batches, autocast=nullcontext, ddp: bool = False, scaler=None) -> torch.Tensor:
    """Accumulate the gradient of the mean loss over `batches` (micro-batches); return that loss.

    Each micro-loss is divided by the number of micro-batches, so the summed gradient equals the
    gradient of one big batch. Under DDP only the last backward all-reduces (no_sync on the others).
    """
    loss_accum = torch.zeros((), device=batches[0][0].device)
    for i, (x, y) in enumerate(batches):
        sync = i == len(batches) - 1
        with model.no_sync() if ddp and not sync else nullcontext():
            with autocast():
                _, loss = model(x, y)
            loss = loss / len(batches)
            (scaler.scale(loss) if scaler else loss).backward()
        loss_accum += loss.detach()
    return loss_accum


# --------------------------------------------------------------------------------------------------
# the run


@dataclass
class Run:
    """Everything the loop's pieces share, built once by `setup`."""
    cfg: TrainConfig
    device: str
    rank: int
    world: int
    ddp: bool  # started by torchrun (even with one process: the nccl/gloo path runs)
    grad_accum: int
    model: GPT | modern.ModernGPT  # the plain module: its state_dict has no _orig_mod./module. prefixes
    compiled: torch.nn.Module  # torch.compile(model), or model
    train_model: torch.nn.Module  # DDP(compiled) under torchrun, else compiled
    model_args: dict
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    autocast: object
    train_loader: ShardLoader
    val_loader: ShardLoader
    examples: list
    enc: object
    logger: Logger | None
    ckpt_path: str
    start: int
    flops_iter: float
    peak: float | None
    good: tuple[str, int, float | None] | None = None  # the last good checkpoint on disk: path, iter, val loss

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def stop(self) -> int:
        """The iter this run ends at: --max-iters, or --stop-at when it comes first."""
        return self.cfg.max_iters if self.cfg.stop_at < 0 else min(self.cfg.stop_at, self.cfg.max_iters)


def train_step(run: Run, it: int, stop_requested) -> tuple[float, float, bool]:
    """One optimizer step over total_batch tokens -> (mean loss, gradient norm, any rank asked to stop).
    `stop_requested()` is asked after the forward and backward passes, so a signal that came during them
    stops the run after this step, as the line printed at the signal says."""
    cfg, device = run.cfg, run.device
    run.optimizer.zero_grad(set_to_none=True)
    batches = [tuple(t.to(device, non_blocking=True) for t in run.train_loader.next_batch())
               for _ in range(run.grad_accum)]
    loss = forward_backward(run.train_model, batches, run.autocast, run.ddp, run.scaler)
    loss_and_stop = torch.stack([loss.float(), torch.tensor(float(stop_requested()), device=loss.device)])
    if run.ddp:  # one small all-reduce carries the mean loss and any rank's stop request
        dist.all_reduce(loss_and_stop)
    mean, stop = loss_and_stop[0].item() / run.world, loss_and_stop[1].item() > 0
    if not math.isfinite(mean):
        raise Diverged(f"loss is {mean} at iter {it}")
    run.scaler.unscale_(run.optimizer)
    clip = cfg.grad_clip > 0
    norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip) if clip else torch.zeros(())
    for group in run.optimizer.param_groups:
        group["lr"] = get_lr(it, cfg, group.get("peak_lr"))  # Muon's groups have peaks of their own
        if group.get("muon"):
            group["momentum"] = get_momentum(it, cfg)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return mean, float(norm), stop


def save(run: Run, done: int) -> None:
    """ckpt.pt at iter `done`, written by rank 0, only when the new weights are known good, so that a run that
    goes bad but stays finite never replaces the last good checkpoint. The rule, on every rank alike: the weights
    are finite and their own val loss (measured here, on the --eval-iters val batches) is at most
    max(2 x the val loss of the last good checkpoint, ln(vocab_size) + 1); ln(vocab_size) is the loss of a
    uniform guess, where a fresh model starts. A finite loss above that is a blow-up, not training: the old
    checkpoint stays and one line says so; a non-finite one raises Diverged."""
    if not all(torch.isfinite(p).all() for p in run.model.parameters()):
        raise Diverged(f"a weight is not finite after iter {done - 1}")
    run.model.eval()
    vl = val_loss(run.compiled, run.val_loader, run.cfg.eval_iters, run.device, run.autocast, run.world)
    run.model.train()
    if not math.isfinite(vl):
        raise Diverged(f"val loss is {vl} after iter {done - 1}")
    ref = run.good[2] if run.good and run.good[2] is not None else None
    limit = max(2 * ref if ref is not None else 0.0, math.log(run.model.config.vocab_size) + 1)
    if vl > limit:
        if run.master:
            kept = f"{run.good[0]} (iter {run.good[1]}) kept" if run.good else "nothing saved"
            print(f"iter {done:5d} | val loss {vl:.4g} is over {limit:.4g} (twice the last good checkpoint's, "
                  f"or ln(vocab)+1): not a good checkpoint; {kept}", flush=True)
        return
    if run.master:
        save_checkpoint(run.ckpt_path, done, run.model, run.optimizer, run.scaler, run.train_loader,
                        run.cfg, run.model_args, val_loss=vl)
    run.good = (run.ckpt_path, done, vl)


def train_loop(run: Run, stop: int, signals: StopSignal) -> str | None:
    """Iters run.start .. stop; returns the signal that stopped the run early, or None. A non-finite loss,
    val loss or weight raises Diverged before anything is saved."""
    cfg = run.cfg
    bar = tqdm(total=stop, initial=run.start, unit="iter", disable=None if run.master else True)
    try:
        for it in range(run.start, stop + 1):
            if cfg.window:
                run.model.set_window(get_window(it, cfg))  # a buffer: the compiled model does not recompile
            if (cfg.eval_interval > 0 and it % cfg.eval_interval == 0) or it == cfg.max_iters:
                evaluate(run, it)
            if it == stop:
                return None
            t0, c0 = time.time(), time.process_time()
            loss, norm, stopping = train_step(run, it, lambda: signals.name is not None)
            if run.device.startswith("cuda"):
                torch.cuda.synchronize(run.device)
            dt, cpu = time.time() - t0, time.process_time() - c0  # wall, and this process's CPU time
            tok_s = cfg.total_batch / dt
            mfu = run.flops_iter / dt / (run.peak * run.world) if run.peak else None
            lr = get_lr(it, cfg)
            run.logger.log({"kind": "train", "iter": it, "loss": loss, "lr": lr, "norm": norm,
                            "dt_ms": 1000 * dt, "cpu_ms": 1000 * cpu, "tok_per_s": tok_s,
                            "mfu": mfu},
                           f"iter {it:5d} | loss {loss:.6f} | lr {lr:.4e} | norm {norm:.4f} | "
                           f"dt {1000 * dt:.2f}ms | tok/sec {tok_s:,.0f}"
                           + (f" | mfu {100 * mfu:.1f}%" if mfu else ""))
            bar.set_postfix_str(f"loss {loss:.4f} {tok_s:,.0f} tok/s", refresh=False)
            bar.update(1)
            done = it + 1
            if (cfg.ckpt_interval > 0 and done % cfg.ckpt_interval == 0) or done == stop or stopping:
                save(run, done)
            if stopping:
                return signals.name or "a signal on another rank"
    finally:
        bar.close()
    return None


def setup(cfg: TrainConfig, rank: int, local_rank: int, world: int, ddp: bool,
          typed: set[str] | None = None) -> Run:
    """Check what a user can get wrong, then build the model, optimizer and loaders (nothing written).
    `typed`: the settings typed on the command line (not from a preset), None: all that differ from defaults."""
    check_config(cfg, world)
    device = resolve_device(cfg.device, local_rank, distributed=ddp)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    dtype, note = pick_dtype(cfg.dtype, device)
    if note and rank == 0:
        print(note)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model, model_args = init_model(cfg, typed)
    # fine-tuning: the shape comes from the weights
    shape = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")
    cfg = replace(cfg, **{k: getattr(model.config, k) for k in shape})
    grad_accum = check_config(cfg, world)
    train_loader = ShardLoader(cfg.data_dir, "train", cfg.batch_size, cfg.block_size, rank, world, cfg.seed)
    val_loader = ShardLoader(cfg.data_dir, "val", cfg.batch_size, cfg.block_size, rank, world, shuffle=False)
    distinct = max(1, (val_loader.tokens - 1) // (cfg.batch_size * cfg.block_size * world))
    if cfg.eval_iters > distinct:  # more would only repeat them (and a huge value would never finish)
        if rank == 0:
            print(f"note: --eval-iters {cfg.eval_iters} is more than the {distinct} val batches per rank in "
                  f"{cfg.data_dir}; using {distinct}")
        cfg = replace(cfg, eval_iters=distinct)
    ckpt_path = os.path.join(cfg.out_dir, "ckpt.pt")
    resume_path = ckpt_path if cfg.resume == "last" else cfg.resume
    if resume_path and not os.path.exists(resume_path):
        raise UserError(f"--resume: no checkpoint at {resume_path!r}")
    hs_path = cfg.hellaswag_data
    if cfg.hellaswag_limit != 0 and not hs_path:
        # cached after the first time (each rank checks the sha256)
        hs_path = download_hellaswag(hint="pass a local copy with --hellaswag-data PATH, or "
                                          "--hellaswag-limit 0")
    examples = load_examples(hs_path, cfg.hellaswag_limit) if cfg.hellaswag_limit != 0 else []
    enc = gpt2_encoding()

    tf32 = cfg.tf32 and device.startswith("cuda")  # TF32 tensor cores for float32 matmuls; set both ways, since
    torch.set_float32_matmul_precision("high" if tf32 else "highest")  # the setting outlives a run in-process
    model.to(device)
    fused = cfg.fused_adamw and device.startswith("cuda")
    betas = (cfg.beta1, cfg.beta2)
    if cfg.optimizer == "muon":
        optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, betas, cfg.eps,
                                               optimizer="muon", muon_lr=cfg.muon_lr,
                                               muon_momentum=cfg.muon_momentum)
    else:
        optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, betas, cfg.eps, fused=fused)
    scaler = torch.amp.GradScaler(device.split(":")[0], enabled=dtype == "float16")
    start, good = 0, None
    if resume_path:
        start, ref = restore_checkpoint(resume_path, model, optimizer, scaler, train_loader, model_args)
        good = (resume_path, start, ref)
    compiled = torch.compile(model) if cfg.compile else model  # wraps `model`: same parameters
    if ddp:
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    train_model = compiled
    if ddp:
        train_model = DDP(compiled, device_ids=[local_rank] if device.startswith("cuda") else None)
    flops = modern.flops_per_token if cfg.arch == "modern" else flops_per_token
    precision = {"bfloat16": "bf16", "float16": "fp16"}.get(dtype, "tf32" if tf32 else "fp32")
    return Run(cfg=cfg, device=device, rank=rank, world=world, ddp=ddp, grad_accum=grad_accum, model=model,
               compiled=compiled, train_model=train_model, model_args=model_args, optimizer=optimizer,
               scaler=scaler,
               autocast=autocast_for(dtype, device), train_loader=train_loader, val_loader=val_loader,
               examples=examples, enc=enc, logger=None, ckpt_path=ckpt_path, start=start,
               flops_iter=flops(model.config, model.num_params()) * cfg.total_batch,
               peak=peak_flops(device_name(device), precision), good=good)


def run(cfg: TrainConfig, rank: int, local_rank: int, world: int, ddp: bool,
        typed: set[str] | None = None) -> None:
    """Set up, lock the out dir, train, report. Returns when the run is done or stopped by a signal
    (resumable); raises Diverged (naming the last good checkpoint) when it went non-finite."""
    job = setup(cfg, rank, local_rank, world, ddp, typed)
    with OutDirLock(cfg.out_dir) if job.master else nullcontext():
        job.logger = Logger(cfg.out_dir, job.master, job.start)
        if job.master:
            announce(job)
        try:
            with StopSignal(announce=job.master) as signals:
                stopped_by = train_loop(job, job.stop, signals)
        except Diverged as e:
            keep = (f"the last good checkpoint is {job.good[0]} (iter {job.good[1]})" if job.good
                    else "no checkpoint was written")
            raise Diverged(f"{e}; stopping without saving, {keep}") from None
        finally:
            if job.ddp:
                # free the DDP reducer (it holds the gloo group) before the group is torn down: torn down under
                # it, a rank can abort at exit (SIGABRT) and leave the other node's torchrun in its exit barrier
                del job.train_model
                gc.collect()
        if job.master:
            report(job, stopped_by)


def announce(run: Run) -> None:
    cfg = run.cfg
    weights = (f"resumed from {run.good[0]}" if cfg.resume else
               f"from scratch (seed {cfg.seed})" if cfg.init_from == "scratch" else f"from {cfg.init_from}")
    dtype = {"bfloat16": "bf16", "float16": "fp16"}.get(autocast_dtype(run), "float32")
    print(f"{run.model.num_params():,} parameters {weights} | device {device_name(run.device)} | dtype {dtype} | "
          f"compile {'on' if cfg.compile else 'off'} | world {run.world} | grad accumulation {run.grad_accum} | "
          f"{cfg.total_batch:,} tokens/iter | start iter {run.start}")
    if cfg.warmup_iters > cfg.max_iters / 2:
        print(f"train.py: warning: the warmup ({cfg.warmup_iters} iters) is longer than half the run "
              f"({cfg.max_iters} iters); the learning rate peaks late or never (--warmup-iters)", file=sys.stderr)
    if cfg.device == "auto" and run.device == "cpu" and run.model.num_params() > 20e6:
        print("note: no GPU found, so this model trains on the CPU (very slowly); --preset tiny is sized for a CPU")


def report(run: Run, stopped_by: str | None) -> None:
    """The plot and the closing line."""
    cfg = run.cfg
    run.logger.plot()
    if stopped_by:
        what = f"stopped by {stopped_by}; continue with: {resume_command(run)}"
    elif run.stop < cfg.max_iters:
        what = f"stopped at iter {run.stop} (--stop-at); continue with: {resume_command(run)}"
    else:
        what = "done"
    print(f"{what} | log.txt, log.jsonl, curves.png, ckpt.pt in {os.path.relpath(cfg.out_dir)}")


def resume_command(run: Run) -> str:
    """The command that continues this run, as typed from the current folder (its settings are in ckpt.pt)."""
    script = os.path.relpath(os.path.abspath(__file__))
    if run.ddp:
        launch = f"torchrun --standalone --nproc_per_node={run.world} {shlex.quote(script)}"
        if int(os.environ.get("LOCAL_WORLD_SIZE", run.world)) != run.world:  # several nodes
            launch = f"(your torchrun command) {shlex.quote(script)}"
    else:
        launch = f"python {shlex.quote(script)}"
    return f"{launch} --resume --out-dir {shlex.quote(os.path.relpath(run.cfg.out_dir))}"


def autocast_dtype(run: Run) -> str:
    return pick_dtype(run.cfg.dtype, run.device)[0]


def main(argv: list[str] | None = None) -> int:
    """-> exit code: 0 when done or stopped by SIGINT/SIGTERM (resumable), 3 when the run diverged; bad
    settings exit 2 and a second Ctrl-C 130 (cli.run_main)."""
    cfg = parse_config(TrainConfig, argv, "train.py", "\n\n".join(__doc__.split("\n\n")[:2]), PRESETS)
    typed = set(vars(build_parser(TrainConfig, "train.py", "", PRESETS).parse_args(argv))) - {"preset"}
    rank, local_rank, world = (int(os.environ.get(k, d)) for k, d in
                               (("RANK", 0), ("LOCAL_RANK", 0), ("WORLD_SIZE", 1)))
    if cfg.resume:
        cfg = resumed_config(cfg, typed, announce=rank == 0)
    code = None
    try:
        run(cfg, rank, local_rank, world, ddp="RANK" in os.environ, typed=typed)
        code = 0
    except Diverged as e:  # every rank raises it at the same iter (the loss is all-reduced)
        if rank == 0:
            print(f"train.py: error: {e}", file=sys.stderr, flush=True)
        code = 3
    finally:
        # only a rank that ended in step with the others may wait for them: after an error on one rank (a full
        # disk at save, rank 0's out-dir lock refusing) the others wait in a collective, and a barrier here would
        # hang until NCCL's watchdog; instead this process exits and torchrun stops the rest
        if dist.is_initialized() and code is not None:
            dist.barrier()
            dist.destroy_process_group()
    return code


if __name__ == "__main__":
    run_main(main)
