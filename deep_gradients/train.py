"""Train the ResNet of model.py on MNIST (or the offline sklearn digits) on 1 CPU, 1 GPU, or many under torchrun.

    python deep_gradients/train.py                                         # offline: sklearn digits, CPU or GPU
    python deep_gradients/train.py --dataset mnist --data-dir DIR          # the 4 IDX gz files
    torchrun --standalone --nproc_per_node 8 deep_gradients/train.py --dataset mnist --dtype bfloat16

Data parallelism follows PyTorch DDP (Li et al., "PyTorch Distributed", VLDB 2020): every rank holds the whole
model, takes a disjoint slice of each global batch, and gradients are averaged by all-reduce during backward.
`--batch-size` is the GLOBAL batch: N ranks each take batch_size/N, so 1 process and N processes with the same
flags take the same optimisation steps (exactly the same without BatchNorm, whose statistics are per rank
unless --sync-bn). The LR schedule is one-cycle (Smith & Topin 2017, "Super-Convergence").
Ctrl-C or SIGTERM ends the run after the current step with a checkpoint that --resume continues exactly.
"""
from __future__ import annotations

import copy
import gc
import math
import os
import resource
import shlex
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

import checkpoint
import curves
import distributed
import evolution
import hardware
import mnist
import model as model_lib
import schedule
from cli import StopSignal, UserError, build_parser, check_ranges, knob, parse_config, run_main
from distributed import Ranks, average_bn_buffers, state_checksum
from evolution import Recorder
from files import OutDirLock, write_json
from model import DEPTHS, count_flops


OUT = Path(__file__).resolve().parent / "out"  # the default --out-dir
AUTO_WARMUP = 10  # warm-up steps of --warmup-steps -1 when there is something to warm up (compile, autotuning)
TARGET_ACC = 0.995  # results.json's time_to_target_s: training seconds until the test accuracy first reaches this


@dataclass
class Config:
    # data
    dataset: str = knob("digits", "digits (offline, sklearn) | mnist (IDX gz files in --data-dir)")
    data_dir: str = knob("", "folder of the 4 MNIST IDX gz files; empty = deep_gradients/data/mnist")
    download: bool = knob(False, "fetch missing MNIST files from the canonical mirrors (md5-checked)")
    train_subset: int = knob(0, "use only the first N training images (0 = all); for tiny runs and tests", lo=0,
                             hi=1 << 31)
    augment: int = knob(2, "random shifts of up to this many pixels, done on-device per batch (0 = off)", lo=0, hi=8)
    # model
    depth: int = knob(20, "6n+2: 8, 20 or 56")
    width: int = knob(16, "channels of the first stage (stages have w, 2w, 4w); a bigger network: --width 32",
                      lo=1, hi=1024)
    batch_norm: bool = knob(True, "off: every BatchNorm2d is Identity and the convs get biases")
    residual: bool = knob(True, "off: no shortcuts, a plain 6n+2-layer CNN")
    zero_init_residual: bool = knob(False, "each block's last BN gamma starts at 0 (Goyal et al. 2017)")
    # optimisation
    max_epochs: int = knob(6, "passes over the (sub)set; the LR schedule spans all of them", lo=1, hi=100_000)
    batch_size: int = knob(128, "global batch, split evenly over the ranks", lo=1, hi=1 << 20)
    optimizer: str = knob("sgd", "sgd (Nesterov momentum) | adamw")
    learning_rate: float = knob(0.1, "peak learning rate", lo=1e-12, hi=100.0)
    momentum: float = knob(0.9, "SGD's Nesterov momentum, in [0, 1) (AdamW keeps its default betas)")
    weight_decay: float = knob(5e-4, "L2 in SGD, decoupled in AdamW", lo=0.0, hi=1.0)
    schedule: str = knob("onecycle", "onecycle (linear up, linear down) | cosine (warm-up, cosine) | constant")
    warmup_frac: float = knob(0.2, "fraction of all steps spent warming up", lo=0.0, hi=0.99)
    # system and CUDA optimisations (each one a flag, measured by benchmark.py)
    device: str = knob("auto", "auto | cpu | cuda | cuda:N (auto = cuda if present, else cpu)")
    threads: int = knob(0, "torch CPU threads per process (0 = torch's default)", lo=0, hi=4096)
    dtype: str = knob("float32", "float32 | bfloat16 | float16: autocast precision (float16 on CUDA, with a "
                                 "GradScaler; bfloat16 where the device has it natively)")
    channels_last: bool = knob(False, "NHWC memory layout: the layout cuDNN/oneDNN convolutions prefer")
    cudnn_benchmark: bool = knob(False, "let cuDNN time its conv algorithms once per shape and keep the fastest")
    compile: bool = knob(False, "torch.compile the model")
    compile_mode: str = knob("default", "default | reduce-overhead (CUDA graphs) | max-autotune")
    warmup_steps: int = knob(-1, "untimed steps before epoch 1, undone afterwards (weights, optimiser, RNG), so "
                                 "compilation and cuDNN autotuning stay out of the timed epochs; -1 = auto: "
                                 f"{AUTO_WARMUP} with --compile or --cudnn-benchmark, else 0", lo=-1, hi=100_000)
    data_on_device: bool = knob(True, "whole dataset on the training device; off = host memory + a copy per batch")
    sync_bn: bool = knob(False, "SyncBatchNorm across ranks (CUDA only): BN statistics of the global batch")
    # bookkeeping
    seed: int = knob(0, "fixes the init and, with the epoch, each epoch's shuffle and shifts", lo=0, hi=2**31 - 1)
    out_dir: str = knob("", "results.json, ckpt.pt, curves.png and the recorder's files; empty = deep_gradients/out, "
                            "beside this script, from any working directory")
    log_interval: int = knob(10, "show the loss on the progress bar every this many steps (0 = never; the "
                                  "loss of every step goes into results.json's train_curve regardless)",
                              lo=0, hi=1 << 31)
    record_interval: int = knob(10, "per-layer statistics for analyze.py (evolution.py) every this many steps "
                                    "(0 = off); the default costs under 2 percent of the training time",
                                 lo=0, hi=1 << 31)
    eval: bool = knob(True, "evaluate on the test set after every epoch")
    resume: str = knob("", "continue a run with its checkpoint's settings: bare --resume = OUT_DIR/ckpt.pt, or "
                           "--resume FILE; flags given with it may change only where and how it runs (e.g. "
                           "--max-epochs, --data-dir, --device)", nargs="?", const="last")
    stop_after: int = knob(0, "end this invocation after N epochs (e.g. a time-limited job slot); --resume goes on",
                           lo=0, hi=100_000)
    progress: bool = knob(True, "tqdm bar per epoch (rank 0)")


CHOICES = {"dataset": mnist.DATASETS, "optimizer": ("sgd", "adamw"), "schedule": ("onecycle", "cosine", "constant"),
           "dtype": ("float32", "bfloat16", "float16"), "compile_mode": ("default", "reduce-overhead", "max-autotune")}


def check_config(cfg: Config) -> None:
    """Every flag in its allowed set or range, before anything is built (UserError names the first bad one)."""
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise UserError(f"--{key.replace('_', '-')} {getattr(cfg, key)!r} is not allowed; "
                            f"one of {', '.join(allowed)}")
    if cfg.depth not in DEPTHS:
        raise UserError(f"--depth {cfg.depth} is not allowed; one of {', '.join(map(str, DEPTHS))} (6n+2)")
    check_ranges(cfg)  # the knobs' own ranges (parse_config checked them too; a Config built in code was not)
    if not 0 <= cfg.momentum < 1:  # a half-open range, which a knob's [lo, hi] cannot state
        raise UserError(f"--momentum {cfg.momentum}: must be in [0, 1)")


class Diverged(Exception):
    """A non-finite loss, evaluation or weight: the run stops before anything is saved (exit code 3)."""

    def __init__(self, message: str, history: dict):
        super().__init__(message)
        self.history = history


# --------------------------------------------------------------------------------------------------
# building a run: processes, data, model and optimiser


@dataclass
class Trainer:
    """What one run builds once and every epoch uses."""
    cfg: Config
    ranks: Ranks
    data: tuple  # x_train, y_train, x_test (this rank's shard), y_test
    n_test: int
    raw_model: nn.Module
    model: nn.Module  # raw_model, wrapped in DDP and/or compiled
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    recorder: Recorder | None
    sampler: hardware.UtilSampler
    flops_per_image: int  # training FLOPs of one image: forward + backward = 3x forward (PaLM's convention)
    steps_per_epoch: int
    saved: str | None = None  # the last good checkpoint: this run's last save, or the one it resumed
    warmup_s: float = 0.0  # spent in the untimed warm-up steps (compilation, cuDNN autotuning)

    def autocast(self):
        dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(self.cfg.dtype)
        return torch.autocast(self.ranks.device.type, dtype=dtype) if dtype else nullcontext()


def check_for_device(cfg: Config, ranks: Ranks) -> None:
    cuda = ranks.device.type == "cuda"
    if cfg.batch_size % ranks.world:
        raise UserError(f"--batch-size {cfg.batch_size} must be divisible by the number of ranks {ranks.world}")
    if cfg.dtype == "float16" and not cuda:
        raise UserError("--dtype float16 needs CUDA (it needs a GradScaler); on CPU use --dtype bfloat16")
    if cfg.dtype == "bfloat16" and not hardware.native_bf16(ranks.device):
        raise UserError(f"--dtype bfloat16: {torch.cuda.get_device_name(ranks.device)} has no native bfloat16 "
                        "(compute capability < 8); use --dtype float16")
    if cfg.sync_bn and not cuda:
        raise UserError("--sync-bn needs CUDA (SyncBatchNorm has no CPU kernel); on CPU use --no-batch-norm "
                        "for batch-size-independent results")


def load_data(cfg: Config, ranks: Ranks) -> tuple[tuple, int]:
    """Whole tensors on the training device (host memory with --no-data-on-device) -> (data, test images)."""
    data_dir = cfg.data_dir or None
    if cfg.download and cfg.dataset == "mnist":
        if ranks.local_rank == 0:
            mnist.download(data_dir or mnist.DEFAULT_DATA_DIR)
        if ranks.world > 1:
            dist.barrier()
    home = ranks.device if cfg.data_on_device else torch.device("cpu")
    x_train, y_train, x_test, y_test = mnist.load(cfg.dataset, data_dir, download=False, device=home)
    if cfg.train_subset:
        x_train, y_train = x_train[: cfg.train_subset], y_train[: cfg.train_subset]
    if len(x_train) < cfg.batch_size:
        raise UserError(f"--batch-size {cfg.batch_size} is larger than the {len(x_train)} training images")
    r, w = ranks.rank, ranks.world
    return (x_train, y_train, x_test[r::w], y_test[r::w]), len(y_test)  # evaluation shard of this rank


def build_model_and_optimizer(cfg: Config, device: torch.device, world: int = 1):
    """-> (model, optimizer, forward FLOPs per image): the seeded init of model.from_config, on `device`."""
    model = model_lib.from_config(cfg).to(device)  # identical on every rank (DDP also broadcasts rank 0's)
    flops = count_flops(model, (1, 1, 28, 28))
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.sync_bn and world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.learning_rate, momentum=cfg.momentum,
                                    nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    return model, optimizer, flops


def wrap(cfg: Config, raw_model: nn.Module, ranks: Ranks) -> nn.Module:
    """DDP across ranks, then torch.compile: the module the training steps call."""
    cuda = ranks.device.type == "cuda"
    model = DDP(raw_model, device_ids=[ranks.device.index] if cuda else None) if ranks.ddp else raw_model
    if cfg.compile:
        model = torch.compile(model, mode=None if cfg.compile_mode == "default" else cfg.compile_mode)
    return model


# --------------------------------------------------------------------------------------------------
# training: one step, one epoch, its record


def train_step(t: Trainer, xb: torch.Tensor, yb: torch.Tensor, step: int, epoch: int, lr: float) -> torch.Tensor:
    """Forward, backward, recorder, update -> the batch loss (on the device, no host sync)."""
    with t.autocast():
        logits = t.model(xb)  # (b, 10)
        loss = F.cross_entropy(logits.float(), yb)
    t.optimizer.zero_grad(set_to_none=True)
    t.scaler.scale(loss).backward()  # a disabled scaler (all but float16) passes the loss through
    if t.recorder is not None:
        t.scaler.unscale_(t.optimizer)  # the recorder must see the true gradients; scaler.step knows
        t.recorder.on_step(step, epoch, lr)
    t.scaler.step(t.optimizer)
    t.scaler.update()
    return loss.detach()


def epoch_plan(t: Trainer, epoch: int):
    """This rank's batch indices (steps, b) and shift offsets (steps, 2, b) of `epoch`."""
    cfg, r = t.cfg, t.ranks
    batches = schedule.epoch_batches(len(t.data[0]), cfg.batch_size, cfg.seed, epoch, r.rank, r.world)
    b = cfg.batch_size // r.world
    offsets = schedule.shift_offsets(t.steps_per_epoch, cfg.batch_size, cfg.augment, cfg.seed, epoch)
    offsets = offsets[:, :, r.rank * b:(r.rank + 1) * b].to(r.device)  # (steps, 2, b): this rank's slice
    if cfg.data_on_device:  # the indices too, so a step issues no host-to-device copy at all
        batches = batches.to(r.device)
    return batches, offsets  # with --no-data-on-device the indices stay on the host, where the images are



def batch(t: Trainer, idx: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (b, 1, 28, 28), shifted and in the run's memory layout, and labels (b,) at indices idx."""
    device = t.ranks.device
    xb = mnist.random_shift(hardware.to_device(t.data[0][idx], device), t.cfg.augment, offsets)
    if t.cfg.channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    return xb, hardware.to_device(t.data[1][idx], device)


def train_epoch(t: Trainer, p: checkpoint.Progress, stop: StopSignal) -> bool:
    """The steps of epoch p.epoch from step p.step on, updating p -> True if stopped by a signal before its end."""
    cfg, device, epoch = t.cfg, t.ranks.device, p.epoch
    total = cfg.max_epochs * t.steps_per_epoch
    batches, offsets = epoch_plan(t, epoch)
    t.model.train()
    loss_sum = torch.tensor(p.loss_sum, device=device)
    losses = torch.zeros(t.steps_per_epoch, device=device)  # every step's loss, copied to the host at the end
    start, t0, recorded = p.step, time.perf_counter(), recorder_seconds(t)
    bar = tqdm(range(p.step, t.steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.max_epochs}", leave=False,
               disable=not (t.ranks.master and cfg.progress), dynamic_ncols=True)
    stopped = False
    for i in bar:
        step = epoch * t.steps_per_epoch + i
        lr = schedule.lr_at(step, total, cfg)
        for group in t.optimizer.param_groups:
            group["lr"] = lr
        loss = train_step(t, *batch(t, batches[i], offsets[i]), step, epoch, lr)
        loss_sum += loss
        losses[i] = loss
        p.step = i + 1
        if cfg.log_interval and (step % cfg.log_interval == 0 or i == t.steps_per_epoch - 1):
            show_loss(t, p, step, loss.item(), lr, bar)  # a host sync, only every log_interval steps
        if distributed.stop_agreed(t.ranks, stop, i, t.steps_per_epoch) and p.step < t.steps_per_epoch:
            stopped = True
            break
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    # the epoch's training time: the recorder's is reported apart (results.json's record_s)
    p.seconds += time.perf_counter() - t0 - (recorder_seconds(t) - recorded)
    p.loss_sum = loss_sum.item()
    if t.ranks.master:  # rank 0's batch losses: the training curve
        first = epoch * t.steps_per_epoch
        p.history["train_curve"] += [[first + i, v] for i, v in enumerate(losses.tolist()) if start <= i < p.step]
    return stopped


def recorder_seconds(t: Trainer) -> float:
    return t.recorder.seconds if t.recorder is not None else 0.0


def show_loss(t: Trainer, p: checkpoint.Progress, step: int, loss: float, lr: float, bar) -> None:
    if t.ranks.world == 1 and not math.isfinite(loss):  # with several ranks, the epoch-end check decides
        raise Diverged(f"training loss is {loss} at step {step} (lr {lr:.3g})", p.history)
    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.3g}")


def epoch_record(t: Trainer, p: checkpoint.Progress, gpu_util: float | None) -> dict:
    """The numbers of the epoch just finished: train loss over all ranks, test figures, speed, memory."""
    cfg, r = t.cfg, t.ranks
    loss_sum = torch.tensor([p.loss_sum], device=r.device)
    if r.world > 1:
        dist.all_reduce(loss_sum)
    average_bn_buffers(t.raw_model, r.world)
    rec = {"epoch": p.epoch + 1, "train_loss": loss_sum.item() / (t.steps_per_epoch * r.world),
           "images_per_s": t.steps_per_epoch * cfg.batch_size / p.seconds, "epoch_time_s": p.seconds}
    if cfg.eval:
        acc = model_lib.evaluate(t.raw_model, t.data[2], t.data[3], r.device, t.autocast, cfg.channels_last)
        if r.world > 1:
            dist.all_reduce(acc)
        rec["test_loss"] = acc[0].item() / acc[2].item()
        rec["test_acc"] = acc[1].item() / acc[2].item()
    # MFU: the model FLOP/s one device achieves over its dense peak, t.flops_per_image already forward + backward
    peak = hardware.peak_flops(hardware.device_name(r.device), cfg.dtype)  # None for a CPU or an unknown GPU
    rec["mfu"] = rec["images_per_s"] / r.world * t.flops_per_image / peak if peak else None
    if r.device.type == "cuda":
        rec["peak_mem_mb"] = torch.cuda.max_memory_allocated(r.device) / 2**20
        rec["gpu_util"] = gpu_util
    else:
        rec["peak_mem_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB
    bad = [k for k in ("train_loss", "test_loss") if k in rec and not math.isfinite(rec[k])]
    if bad or not checkpoint.finite(t.raw_model):
        what = f"{bad[0].replace('_', ' ')} is {rec[bad[0]]}" if bad else "the weights are not finite"
        raise Diverged(f"{what} after epoch {p.epoch + 1}", p.history)
    return rec


def warmup_steps(cfg: Config) -> int:
    if cfg.warmup_steps >= 0:
        return cfg.warmup_steps
    return AUTO_WARMUP if cfg.compile or cfg.cudnn_benchmark else 0


def warm_up(t: Trainer) -> float:
    """Run cfg.warmup_steps real steps, then put weights, optimiser, scaler and RNG back -> seconds it took.
    Compilation and cuDNN's autotuning happen here, outside the timed epochs; the run is the same as without."""
    # state_dict()s hold the live tensors: copies, or the warm-up steps would change them too
    saved, opt, scaler = copy.deepcopy((t.raw_model.state_dict(), t.optimizer.state_dict(), t.scaler.state_dict()))
    rng = torch.get_rng_state()
    recorder, t.recorder = t.recorder, None
    batches, offsets = epoch_plan(t, 0)
    t0 = time.perf_counter()
    for i in range(warmup_steps(t.cfg)):
        j = i % t.steps_per_epoch
        train_step(t, *batch(t, batches[j], offsets[j]), 0, 0, 0.0)
    if t.ranks.device.type == "cuda":
        torch.cuda.synchronize(t.ranks.device)
    seconds = time.perf_counter() - t0
    t.raw_model.load_state_dict(saved)
    t.optimizer.load_state_dict(opt)
    t.scaler.load_state_dict(scaler)
    torch.set_rng_state(rng)
    t.recorder = recorder
    return seconds


# --------------------------------------------------------------------------------------------------
# the run


def build(cfg: Config, ranks: Ranks, out: Path) -> tuple[Trainer, checkpoint.Progress]:
    """Data, model, optimiser, scaler, recorder -> (the Trainer, where to start: the checkpoint's progress)."""
    check_for_device(cfg, ranks)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if ranks.device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 tensor cores for the fc layer (convs: on by default)
        torch.backends.cudnn.allow_tf32 = True
    data, n_test = load_data(cfg, ranks)
    raw_model, optimizer, fwd_flops = build_model_and_optimizer(cfg, ranks.device, ranks.world)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.dtype == "float16")
    progress, saved = checkpoint.Progress(), None
    if cfg.resume:
        path = resume_path(cfg)
        ck = checkpoint.load(path, device=ranks.device)
        progress = checkpoint.restore(ck, cfg, raw_model, optimizer, scaler, ranks.device, path)
        saved = f"{path} (epoch {progress.epoch}, step {progress.step})"
    steps_per_epoch = len(data[0]) // cfg.batch_size
    recorder = None
    if cfg.record_interval and ranks.master:
        recorder = Recorder(raw_model, str(out), every=cfg.record_interval, resume=bool(cfg.resume),
                            hist_steps=evolution.spread(cfg.max_epochs * steps_per_epoch),
                            start_step=progress.epoch * steps_per_epoch + progress.step)
    t = Trainer(cfg, ranks, data, n_test, raw_model, wrap(cfg, raw_model, ranks), optimizer, scaler, recorder,
                hardware.UtilSampler(ranks.device), 3 * fwd_flops, steps_per_epoch, saved)
    return t, progress


def resume_path(cfg: Config) -> Path:
    return Path(cfg.out_dir or OUT) / "ckpt.pt" if cfg.resume == "last" else Path(cfg.resume)


def resumed_config(cfg: Config, given: dict) -> Config:
    """--resume: the checkpoint's settings, changed by the flags given on this command line (`given`), with a
    line for each change; checkpoint.restore refuses a change to a setting that fixes the steps already taken."""
    saved = checkpoint.load(resume_path(cfg))["config"]
    known = {f.name for f in fields(Config)}  # a setting this train.py no longer has is left behind
    settings, changes = checkpoint.resumed_settings({k: v for k, v in saved.items() if k in known}, given)
    if changes and distributed.rank() == 0:
        print("\n".join(changes), flush=True)
    return Config(**{**settings, "out_dir": cfg.out_dir, "resume": cfg.resume})


def resume_hint(cfg: Config, world: int) -> str:
    """The command that continues a stopped run, as the user can type it from this working directory."""
    script = os.path.relpath(Path(__file__).resolve())
    python = "python" if shutil.which("python") == sys.executable else sys.executable
    launch = f"torchrun --standalone --nproc_per_node {world}" if world > 1 else python
    return f"{launch} {shlex.quote(script)} --resume" + (f" --out-dir {shlex.quote(cfg.out_dir)}" if cfg.out_dir else "")


def announce(t: Trainer, p: checkpoint.Progress) -> None:
    """The run's header (rank 0): network, data, ranks, steps, and the checkpoint it resumes."""
    cfg, r = t.cfg, t.ranks
    if not r.master:
        return
    n_params = sum(w.numel() for w in t.raw_model.parameters())
    print(f"ResNet-{cfg.depth} width {cfg.width} ({n_params:,} params, {t.flops_per_image / 3e6:.1f} MFLOP fwd/image)"
          f" | {cfg.dataset}: {len(t.data[0])} train, {t.n_test} test | {r.world} rank(s) on {r.device.type} | "
          f"{t.steps_per_epoch} steps/epoch of {cfg.batch_size}", flush=True)
    if r.device.type == "cuda" and t.sampler.problem:
        print(f"GPU utilisation not recorded: {t.sampler.problem}", flush=True)
    if cfg.resume:
        print(f"resumed from {resume_path(cfg)} at epoch {p.epoch + 1}, step {p.step}", flush=True)


def train_loop(t: Trainer, p: checkpoint.Progress, out: Path, stop: StopSignal) -> str | None:
    """The untimed warm-up steps, then the epochs from p on, a checkpoint after each -> None when done, else
    why it stopped early."""
    cfg, r = t.cfg, t.ranks
    t.warmup_s = warm_up(t) if warmup_steps(cfg) else 0.0
    epochs_run = 0
    while p.epoch < cfg.max_epochs:
        if cfg.stop_after and epochs_run >= cfg.stop_after:
            return f"stopped after {epochs_run} epoch(s) (--stop-after)"
        if r.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(r.device)
            torch.cuda.synchronize(r.device)
        t.sampler.start()
        stopped = train_epoch(t, p, stop)
        gpu_util = t.sampler.stop()
        if stopped:
            save(t, p, out)
            return f"stopped by {stop.name or 'a signal on another rank'} at epoch {p.epoch + 1}, step {p.step}"
        p.history["epochs"].append(epoch_record(t, p, gpu_util))
        p.epoch, p.step, p.loss_sum, p.seconds = p.epoch + 1, 0, 0.0, 0.0
        epochs_run += 1
        if r.master:
            print(curves.epoch_line(p.history["epochs"][-1], r.device.type == "cuda"), flush=True)
        save(t, p, out)
        if p.epoch < cfg.max_epochs and distributed.stop_agreed(r, stop, t.steps_per_epoch - 1, t.steps_per_epoch):
            return f"stopped by {stop.name or 'a signal on another rank'} after epoch {p.epoch}"
    return None


def save(t: Trainer, p: checkpoint.Progress, out: Path) -> None:
    """The checkpoint (rank 0), only of a finite loss and finite weights: a diverged model never replaces the
    last good checkpoint (a finite but worse one does: it is the run's state, and a resume must continue it)."""
    if not math.isfinite(p.loss_sum) or not checkpoint.finite(t.raw_model):
        raise Diverged(f"the loss or the weights are not finite at epoch {p.epoch + 1}, step {p.step}", p.history)
    if t.ranks.master:
        checkpoint.save(out / "ckpt.pt", t.raw_model, t.optimizer, t.scaler, asdict(t.cfg), p, t.ranks.device)
        t.saved = f"{out / 'ckpt.pt'} (epoch {p.epoch}, step {p.step})"


def time_to_target(epochs: list[dict], target: float) -> tuple[float | None, int | None]:
    """Training seconds until the first epoch whose test accuracy reaches `target`, and that epoch; (None, None)
    if none did. Epoch times leave out evaluation, warm-up (compilation, cuDNN autotuning) and the recorder."""
    seconds = 0.0
    for e in epochs:
        seconds += e["epoch_time_s"]
        if e.get("test_acc") is not None and e["test_acc"] >= target:
            return seconds, e["epoch"]
    return None, None


def portable(cfg: Config) -> dict:
    """The settings with their paths as typed at the repository's root (hardware.from_repo): what results.json
    records, so that it names no folder of this machine and its command works from the root."""
    paths = ("data_dir", "out_dir") + (("resume",) if cfg.resume not in ("", "last") else ())
    return hardware.settings_from_repo(asdict(cfg), paths)


def command_line(cfg: Config) -> str:
    """A command that repeats this run from the repository root: the settings that differ from the defaults."""
    args, settings = [], portable(cfg)
    for f in fields(Config):
        value, flag = settings[f.name], "--" + f.name.replace("_", "-")
        if value != f.default and f.name != "resume":
            args += [flag if value else f"--no-{flag[2:]}"] if isinstance(value, bool) else [flag, str(value)]
    return shlex.join(["python", "deep_gradients/train.py", *args])


def outputs(t: Trainer, p: checkpoint.Progress, out: Path, stopped: str | None) -> dict:
    """results.json and curves.png (rank 0), with every rank's weight checksum."""
    cfg, r = t.cfg, t.ranks
    checksums = [state_checksum(t.raw_model)]
    if r.world > 1:
        checksums = [None] * r.world
        dist.all_gather_object(checksums, state_checksum(t.raw_model))
    history = p.history
    last = history["epochs"][-1] if history["epochs"] else {}
    target_s, target_epoch = time_to_target(history["epochs"], TARGET_ACC)
    results = {
        **hardware.made_by(command_line(cfg)), "config": portable(cfg), "world_size": r.world,
        "device": str(r.device),
        "device_name": hardware.device_name(r.device),
        "n_train": len(t.data[0]), "steps_per_epoch": t.steps_per_epoch,
        "flops_per_image_train": t.flops_per_image, "warmup_s": t.warmup_s, "epochs": history["epochs"],
        "train_curve": history["train_curve"], "final_test_acc": last.get("test_acc"), "finished": not stopped,
        "rank_checksums": checksums, "gpu_util_problem": t.sampler.problem if r.device.type == "cuda" else None,
        "record_s": recorder_seconds(t),  # evolution.py's cost, this invocation
        "target_acc": TARGET_ACC, "time_to_target_s": target_s, "target_epoch": target_epoch,
    }
    if r.master:
        write_json(out / "results.json", results)
        curves.plot_curves(results, out / "curves.png")
        if stopped:
            print(f"{stopped}; continue with: {resume_hint(cfg, r.world)}", flush=True)
        elif last.get("test_acc") is not None:
            print(f"final test accuracy {100 * last['test_acc']:.2f}% -> {out / 'results.json'}", flush=True)
        else:  # --no-eval: still say where the run went
            print(f"done, no evaluation (--no-eval) -> {out / 'results.json'}", flush=True)
    return results


def run(cfg: Config) -> dict:
    """One training run -> its results: set-up, the out dir's lock, the loop, the outputs, teardown (raises
    UserError for bad input, Diverged for a non-finite model)."""
    check_config(cfg)
    ranks = distributed.setup(cfg.device)
    out = Path(cfg.out_dir or OUT)
    try:
        with OutDirLock(out) if ranks.master else nullcontext(), \
                StopSignal(armed=False, announce=ranks.master) as stop:  # unarmed: a signal in set-up ends it
            t, progress = build(cfg, ranks, out)
            stop.armed = True  # from here on a first Ctrl-C / SIGTERM ends the run after its step, resumable
            if ranks.world > 1:
                dist.barrier()  # every rank armed before the header tells the user the run is under way
            announce(t, progress)
            diverged = False
            try:
                stopped = train_loop(t, progress, out, stop)
            except Diverged as e:
                diverged = True
                e.args = (f"{e}; stopping before any save: "
                          + (f"the last good checkpoint is {t.saved}" if t.saved else "no checkpoint was written"),)
                raise
            finally:
                if t.recorder is not None:
                    t.recorder.close(final_histograms=not diverged)
            stop.armed = False  # the outputs: a signal now ends the run at once (the checkpoint is saved)
            results = outputs(t, progress, out, stopped)
        if ranks.world > 1:
            dist.barrier()  # leave together: ranks that tear down while rank 0 still writes can hang its exit
        return results
    finally:
        if dist.is_initialized():
            gc.collect()  # free the DDP reducer (it holds the group) before the group: else the exit can abort
            dist.destroy_process_group()


def main(argv=None) -> int:
    doc = __doc__.split("\n")[0]
    cfg = parse_config(Config, argv, "train.py", doc)
    if cfg.resume:  # a resumed run's settings are its checkpoint's
        cfg = resumed_config(cfg, vars(build_parser(Config, "train.py", doc).parse_args(argv)))  # the flags given
    try:
        run(cfg)
    except Diverged as e:
        print(f"train.py: error: {e}", file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    run_main(main)
