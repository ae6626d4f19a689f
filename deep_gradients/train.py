"""Train the ResNet of model.py on MNIST (or the offline sklearn digits) on 1 CPU, 1 GPU, or many under torchrun.

    python deep_gradients/train.py                                         # offline: sklearn digits, CPU or GPU
    python deep_gradients/train.py --dataset mnist --data-dir /path/mnist  # the 4 IDX gz files
    torchrun --standalone --nproc_per_node 8 deep_gradients/train.py --dataset mnist --amp bf16

Data parallelism follows PyTorch DDP (Li et al., "PyTorch Distributed", VLDB 2020): every rank holds the whole
model, takes a disjoint slice of each global batch, and gradients are averaged by all-reduce during backward.
`--batch-size` is the GLOBAL batch: N ranks each take batch_size/N, so 1 process and N processes with the same
flags take the same optimisation steps (exactly the same without BatchNorm, whose statistics are per rank
unless --sync-bn). The LR schedule is one-cycle (Smith & Topin 2017, "Super-Convergence").
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import inspect
import json
import math
import os
import re
import resource
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

import mnist
from evolution import Recorder
from model import DEPTHS, ResNet, count_flops

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402


@dataclass
class Config:
    # data
    dataset: str = "digits"  # digits (offline, sklearn) | mnist (IDX gz files in --data-dir)
    data_dir: str = ""  # folder of the 4 MNIST IDX gz files; "" = deep_gradients/data/mnist
    download: bool = False  # fetch missing MNIST files from the canonical mirrors (md5-checked)
    train_subset: int = 0  # use only the first N training images (0 = all); for tiny runs and tests
    augment: int = 2  # random shifts of up to this many pixels, done on-device per batch (0 = off)
    # model
    depth: int = 20  # 6n+2: 8, 20 or 56
    width: int = 16  # channels of the first stage (stages have w, 2w, 4w); "a bigger network" = --width 32
    batch_norm: bool = True  # off: every BatchNorm2d is Identity and the convs get biases
    residual: bool = True  # off: no shortcuts, a plain 6n+2-layer CNN
    zero_init_residual: bool = False  # each block's last BN gamma starts at 0 (Goyal et al. 2017)
    # optimisation
    epochs: int = 6  # passes over the (sub)set; the LR schedule spans all of them
    batch_size: int = 128  # global batch, split evenly over the ranks
    optimizer: str = "sgd"  # sgd (Nesterov momentum) | adamw
    lr: float = 0.1  # peak learning rate
    momentum: float = 0.9  # SGD's Nesterov momentum (AdamW keeps its default betas)
    weight_decay: float = 5e-4  # L2 in SGD, decoupled in AdamW
    schedule: str = "onecycle"  # onecycle (linear up, linear down) | cosine (warm-up, cosine) | constant
    warmup_frac: float = 0.2  # fraction of all steps spent warming up
    # system and CUDA optimisations (each one a flag, measured by benchmark.py)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch CPU threads per process (0 = torch's default)
    amp: str = "none"  # none | bf16 | fp16 (fp16 only on CUDA, with a GradScaler)
    channels_last: bool = False  # NHWC memory layout: the layout cuDNN/oneDNN convolutions prefer
    cudnn_benchmark: bool = False  # let cuDNN time its conv algorithms once per shape and keep the fastest
    compile: bool = False  # torch.compile the model
    compile_mode: str = "default"  # default | reduce-overhead (CUDA graphs) | max-autotune
    data_on_device: bool = True  # whole dataset on the training device; off = host memory + a copy per batch
    sync_bn: bool = False  # SyncBatchNorm across ranks (CUDA only): BN statistics of the global batch
    # bookkeeping
    seed: int = 0  # fixes the init and, with the epoch, each epoch's shuffle and shifts
    out_dir: str = "deep_gradients/out"  # results.json, ckpt.pt, curves.png (and the recorder's files)
    log_every: int = 10  # record the training loss every this many steps (train_curve)
    record_every: int = 0  # > 0: evolution.Recorder logs per-layer statistics every this many steps
    eval: bool = True  # evaluate on the test set after every epoch
    resume: bool = False  # continue from OUT/ckpt.pt
    stop_after: int = 0  # end this invocation after N epochs (e.g. a time-limited job slot); --resume goes on
    progress: bool = True  # tqdm bar per epoch (rank 0)


CHOICES = {"dataset": mnist.DATASETS, "optimizer": ("sgd", "adamw"), "schedule": ("onecycle", "cosine", "constant"),
           "amp": ("none", "bf16", "fp16"), "compile_mode": ("default", "reduce-overhead", "max-autotune")}
# must match when resuming: the architecture, and what fixes the sequence of steps (batches, shifts, LR schedule)
RESUME_KEYS = ("depth", "width", "batch_norm", "residual", "dataset", "train_subset", "batch_size", "epochs", "seed")
# dense peak FLOP/s by GPU name fragment: (16-bit tensor cores, TF32). cuDNN convs run in TF32 by default.
PEAK_FLOPS = {"H200": (989e12, 495e12), "H100 PCIe": (756e12, 378e12), "H100": (989e12, 495e12),
              "A100": (312e12, 156e12), "L4": (121e12, 60e12), "A10": (125e12, 62.5e12)}


class ConfigError(Exception):
    """A bad flag value: printed as one line, exit 2."""


def validate(cfg: Config) -> None:
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise ConfigError(f"--{key.replace('_', '-')} {getattr(cfg, key)!r} is not allowed; one of {', '.join(allowed)}")
    if cfg.depth not in DEPTHS:
        raise ConfigError(f"--depth {cfg.depth} is not allowed; one of {', '.join(map(str, DEPTHS))} (6n+2)")
    for key in ("width", "epochs", "batch_size"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"--{key.replace('_', '-')} {getattr(cfg, key)} must be >= 1")
    if cfg.lr <= 0:
        raise ConfigError(f"--lr {cfg.lr} must be > 0")
    if cfg.momentum < 0 or cfg.weight_decay < 0:
        raise ConfigError(f"--momentum {cfg.momentum} and --weight-decay {cfg.weight_decay} must be >= 0")
    if not 0 <= cfg.warmup_frac < 1:
        raise ConfigError(f"--warmup-frac {cfg.warmup_frac} must be in [0, 1)")
    for key in ("train_subset", "augment", "log_every", "record_every", "threads", "stop_after"):
        if getattr(cfg, key) < 0:
            raise ConfigError(f"--{key.replace('_', '-')} {getattr(cfg, key)} must be >= 0")


# --------------------------------------------------------------------------------------------------
# plain functions: schedule, batches, evaluation


def lr_at(step: int, total: int, cfg: Config) -> float:
    """Learning rate of optimiser step `step` (0-based) out of `total`: a pure function, so resume is exact."""
    warm = int(cfg.warmup_frac * total)
    if cfg.schedule == "constant":
        return cfg.lr
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)  # 0 -> 1 over the decay phase
    if cfg.schedule == "onecycle":
        return cfg.lr * max(0.0, 1.0 - t)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * t))  # cosine


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


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device, autocast, channels_last: bool,
             batch_size: int = 1000) -> torch.Tensor:
    """-> tensor [sum of losses, number correct, count] over (x, y) (all-reduce it for the global figure)."""
    was_training = model.training
    model.eval()
    acc = torch.zeros(3, device=device, dtype=torch.float64)
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device, non_blocking=True)
        yb = y[i:i + batch_size].to(device, non_blocking=True)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = model(xb)  # (b, 10)
        acc[0] += F.cross_entropy(logits.float(), yb, reduction="sum")
        acc[1] += (logits.argmax(1) == yb).sum()
        acc[2] += len(yb)
    model.train(was_training)
    return acc


def state_checksum(model: nn.Module) -> str:
    """sha256 of every parameter and buffer: equal strings on all ranks = identical replicas."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def average_bn_buffers(model: nn.Module, world: int) -> None:
    """Average BN running statistics over ranks. Each rank's last forward updated them with its own shard,
    so without this the replicas would evaluate (and be saved) with slightly different statistics."""
    if world == 1:
        return
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            for buf in (m.running_mean, m.running_var):
                dist.all_reduce(buf)
                buf /= world


def peak_flops(device: torch.device, amp: str) -> float | None:
    """Dense peak FLOP/s of this GPU at the run's precision (MFU's denominator); None on CPU or an unknown GPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, (half, tf32) in PEAK_FLOPS.items():
        if key in name:
            return half if amp in ("bf16", "fp16") else tf32
    return None


class UtilSampler:
    """Samples torch.cuda.utilization() (NVML: % of time a kernel was running) in a thread, every 50 ms."""

    def __init__(self, device: torch.device, period: float = 0.05):
        self.device, self.period, self.samples = device, period, []
        self.ok = device.type == "cuda"
        if self.ok:
            try:
                torch.cuda.utilization(device)
            except Exception:  # pynvml missing or NVML unavailable: leave utilization out
                self.ok = False
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self.samples = []
        if self.ok:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()

    def _run(self):
        while not self._stop.wait(self.period):
            self.samples.append(torch.cuda.utilization(self.device))

    def stop(self) -> float | None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        return sum(self.samples) / len(self.samples) if self.samples else None


def epoch_line(rec: dict, cuda: bool) -> str:
    """The one-line log of an epoch's record (test numbers only if it was evaluated, GPU numbers only on CUDA)."""
    msg = f"epoch {rec['epoch']}: train loss {rec['train_loss']:.4f}"
    if "test_loss" in rec:
        msg += f" | test loss {rec['test_loss']:.4f} acc {100 * rec['test_acc']:.2f}%"
    msg += f" | {rec['images_per_s']:.0f} img/s, {rec['epoch_time_s']:.1f} s"
    if cuda:
        msg += f", {rec['peak_mem_mb']:.0f} MiB"
        if rec["gpu_util"] is not None:
            msg += f", GPU util {rec['gpu_util']:.0f}%"
        if rec["mfu"] is not None:
            msg += f", MFU {100 * rec['mfu']:.1f}%"
    return msg


def plot_curves(results: dict, path: Path) -> None:
    """Training loss per logged step and test accuracy per epoch, side by side."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    if results["train_curve"]:
        steps, losses = zip(*results["train_curve"])
        a.plot(steps, losses, lw=0.8)
    a.set(xlabel="step", ylabel="train loss (batch)", yscale="log", title="training loss")
    accs = [(e["epoch"], 100 * e["test_acc"]) for e in results["epochs"] if e.get("test_acc") is not None]
    if accs:
        b.plot(*zip(*accs), marker="o")
    b.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    c = results["config"]
    fig.suptitle(f"ResNet-{c['depth']} width {c['width']} on {c['dataset']}", fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a crash mid-save leaves the previous checkpoint intact


def atomic_write_json(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------
# the run


def setup_distributed(cfg: Config):
    """-> (rank, local_rank, world, device). torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; otherwise 1 process."""
    ddp = "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = int(os.environ.get("RANK", 0)) if ddp else 0
    local_rank = int(os.environ.get("LOCAL_RANK", 0)) if ddp else 0
    world = int(os.environ.get("WORLD_SIZE", 1)) if ddp else 1
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {cfg.device} asked for CUDA but torch sees no CUDA device; use --device cpu")
    if want not in ("cpu", "cuda") and not want.startswith("cuda:"):
        raise ConfigError(f"--device {cfg.device!r} is not allowed; one of auto, cpu, cuda, cuda:N")
    if want.startswith("cuda:") and ddp and int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:
        raise ConfigError(f"--device {cfg.device} would put every process of this node on one GPU; under torchrun "
                          "use --device cuda (process i takes cuda:LOCAL_RANK)")
    if want == "cuda":
        want = f"cuda:{local_rank}"  # one GPU per process
    try:
        device = torch.device(want)
    except RuntimeError:  # e.g. cuda:x
        raise ConfigError(f"--device {cfg.device!r} is not a device; one of auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if ddp:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return rank, local_rank, world, device


def resume_from(ckpt_path: Path, cfg: Config, model: nn.Module, optimizer: torch.optim.Optimizer,
                device: torch.device) -> tuple[int, dict]:
    """Restore the full state saved after an epoch (weights, optimiser, RNG) -> (epochs done, history)."""
    if not ckpt_path.exists():
        raise ConfigError(f"--resume: no checkpoint at {ckpt_path}")
    try:
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
    except Exception as e:  # truncated, not a checkpoint, or unpickling refused
        raise ConfigError(f"--resume: cannot read {ckpt_path} ({type(e).__name__})") from None
    for key in RESUME_KEYS:
        if ck["config"].get(key) != getattr(cfg, key):
            raise ConfigError(f"--resume: checkpoint has {key}={ck['config'].get(key)!r}, this run "
                              f"{getattr(cfg, key)!r}; a resumed run must repeat {', '.join(RESUME_KEYS)}")
    model.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optimizer"])
    torch.set_rng_state(ck["rng"]["cpu"].cpu())
    if device.type == "cuda" and "cuda" in ck["rng"]:
        torch.cuda.set_rng_state(ck["rng"]["cuda"].cpu())
    return ck["epoch"], ck["history"]


def run(cfg: Config) -> dict:
    validate(cfg)
    rank, local_rank, world, device = setup_distributed(cfg)
    try:
        results = _train(cfg, rank, local_rank, world, device)
        if world > 1:
            dist.barrier()  # leave together: ranks that tear down while rank 0 still writes can hang its exit
        return results
    finally:
        if world > 1 and dist.is_initialized():
            gc.collect()  # free the DDP reducer (it holds the group) first: a gloo group torn down under it can abort the exit
            dist.destroy_process_group()


def _train(cfg: Config, rank: int, local_rank: int, world: int, device: torch.device) -> dict:
    master = rank == 0
    cuda = device.type == "cuda"
    if cfg.batch_size % world:
        raise ConfigError(f"--batch-size {cfg.batch_size} must be divisible by the number of ranks {world}")
    if cfg.amp == "fp16" and not cuda:
        raise ConfigError("--amp fp16 needs CUDA (it needs a GradScaler); on CPU use --amp bf16")
    if cfg.sync_bn and not cuda:
        raise ConfigError("--sync-bn needs CUDA (SyncBatchNorm has no CPU kernel); on CPU use --no-batch-norm "
                          "for batch-size-independent results")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cuda:
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 tensor cores for the fc layer (convs: on by default)
        torch.backends.cudnn.allow_tf32 = True
    out = Path(cfg.out_dir)
    ckpt_path = out / "ckpt.pt"
    if master:
        out.mkdir(parents=True, exist_ok=True)

    # ---- data: whole tensors on the training device (host memory with --no-data-on-device)
    data_dir = cfg.data_dir or None
    if cfg.download and cfg.dataset == "mnist":
        if local_rank == 0:
            mnist.download(data_dir or mnist.DEFAULT_DATA_DIR)
        if world > 1:
            dist.barrier()
    home = device if cfg.data_on_device else torch.device("cpu")
    x_train, y_train, x_test, y_test = mnist.load(cfg.dataset, data_dir, download=False, device=home)
    if cfg.train_subset:
        x_train, y_train = x_train[: cfg.train_subset], y_train[: cfg.train_subset]
    n_test = len(y_test)
    x_test, y_test = x_test[rank::world], y_test[rank::world]  # evaluation shard of this rank
    n_train = len(x_train)
    steps_per_epoch = n_train // cfg.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"--batch-size {cfg.batch_size} is larger than the {n_train} training images")
    total_steps = cfg.epochs * steps_per_epoch

    # ---- model, identical on every rank (same seed; DDP also broadcasts rank 0's weights)
    torch.manual_seed(cfg.seed)
    raw_model = ResNet(cfg.depth, cfg.width, cfg.batch_norm, cfg.residual,
                       zero_init_residual=cfg.zero_init_residual).to(device)
    flops_per_image = 3 * count_flops(raw_model, (1, 1, 28, 28))  # forward + backward ~ 3x forward
    if cfg.channels_last:
        raw_model = raw_model.to(memory_format=torch.channels_last)
    if cfg.sync_bn and world > 1:
        raw_model = nn.SyncBatchNorm.convert_sync_batchnorm(raw_model)
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(raw_model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                                    weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.AdamW(raw_model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    # ---- resume: full state (weights, optimiser, epoch, RNG, history)
    start_epoch, history = 0, {"epochs": [], "train_curve": []}
    if cfg.resume:
        start_epoch, history = resume_from(ckpt_path, cfg, raw_model, optimizer, device)

    model = DDP(raw_model, device_ids=[device.index] if cuda else None) if world > 1 else raw_model
    if cfg.compile:
        model = torch.compile(model, mode=None if cfg.compile_mode == "default" else cfg.compile_mode)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()

    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
    recorder = (Recorder(raw_model, str(out), every=cfg.record_every, resume=start_epoch > 0)
                if (cfg.record_every and master) else None)
    sampler = UtilSampler(device)
    peak = peak_flops(device, cfg.amp)
    if master:
        n_params = sum(p.numel() for p in raw_model.parameters())
        print(f"ResNet-{cfg.depth} width {cfg.width} ({n_params:,} params, {flops_per_image / 3 / 1e6:.1f} MFLOP fwd/image)"
              f" | {cfg.dataset}: {n_train} train, {n_test} test"
              f" | {world} rank(s) on {device.type} | {steps_per_epoch} steps/epoch of {cfg.batch_size}", flush=True)

    stopped_early = False
    epochs_run = 0
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.stop_after and epochs_run >= cfg.stop_after:
            stopped_early = True
            break
        model.train()
        batches = epoch_batches(n_train, cfg.batch_size, cfg.seed, epoch, rank, world)  # (steps, b)
        b = cfg.batch_size // world
        offsets = shift_offsets(steps_per_epoch, cfg.batch_size, cfg.augment, cfg.seed, epoch)[:, :, rank * b:(rank + 1) * b]
        if cfg.data_on_device:  # index tensors too, so a step issues no host-to-device copy at all
            batches, offsets = batches.to(device), offsets.to(device)
        loss_sum = torch.zeros((), device=device)
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
            torch.cuda.synchronize(device)
        sampler.start()
        t0 = time.perf_counter()
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (master and cfg.progress),
                   leave=False, dynamic_ncols=True)
        for i in bar:
            step = epoch * steps_per_epoch + i
            lr = lr_at(step, total_steps, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            idx = batches[i]
            xb = x_train[idx].to(device, non_blocking=True)  # (b, 1, 28, 28)
            yb = y_train[idx].to(device, non_blocking=True)  # (b,)
            xb = mnist.random_shift(xb, cfg.augment, offsets[i])
            if cfg.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast():
                logits = model(xb)  # (b, 10)
                loss = F.cross_entropy(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
            else:
                loss.backward()
            if recorder is not None:
                if scaler is not None:
                    scaler.unscale_(optimizer)  # the recorder must see the true gradients; scaler.step knows
                recorder.on_step(step, epoch, lr)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            loss_sum += loss.detach()
            if master and cfg.log_every and (step % cfg.log_every == 0 or i == steps_per_epoch - 1):
                loss_val = loss.item()  # a sync point, only every log_every steps
                history["train_curve"].append([step, loss_val])
                bar.set_postfix(loss=f"{loss_val:.4f}", lr=f"{lr:.3g}")
        bar.close()
        if cuda:
            torch.cuda.synchronize(device)
        epoch_time = time.perf_counter() - t0
        gpu_util = sampler.stop()
        if world > 1:
            dist.all_reduce(loss_sum)
        train_loss = loss_sum.item() / (steps_per_epoch * world)

        average_bn_buffers(raw_model, world)
        rec = {"epoch": epoch + 1, "train_loss": train_loss, "images_per_s": steps_per_epoch * cfg.batch_size / epoch_time,
               "epoch_time_s": epoch_time}
        if cfg.eval:
            acc = evaluate(raw_model, x_test, y_test, device, autocast, cfg.channels_last)
            if world > 1:
                dist.all_reduce(acc)
            rec["test_loss"] = acc[0].item() / acc[2].item()
            rec["test_acc"] = acc[1].item() / acc[2].item()
        if cuda:
            rec["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
            rec["gpu_util"] = gpu_util
            rec["mfu"] = rec["images_per_s"] / world * flops_per_image / peak if peak else None
        else:
            rec["peak_mem_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB
        history["epochs"].append(rec)
        epochs_run += 1
        if master:
            print(epoch_line(rec, cuda), flush=True)
            rng = {"cpu": torch.get_rng_state()}
            if cuda:
                rng["cuda"] = torch.cuda.get_rng_state(device)
            atomic_save({"model": raw_model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                         "rng": rng, "config": asdict(cfg), "history": history}, ckpt_path)

    if recorder is not None:
        recorder.close()
    checksums = [state_checksum(raw_model)]
    if world > 1:
        checksums = [None] * world
        dist.all_gather_object(checksums, state_checksum(raw_model))
    last = history["epochs"][-1] if history["epochs"] else {}
    results = {
        "config": asdict(cfg), "world_size": world, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
        "torch_threads": torch.get_num_threads(), "n_train": n_train, "steps_per_epoch": steps_per_epoch,
        "flops_per_image_train": flops_per_image, "epochs": history["epochs"], "train_curve": history["train_curve"],
        "final_test_acc": last.get("test_acc"), "finished": not stopped_early, "rank_checksums": checksums,
    }
    if master:
        atomic_write_json(results, out / "results.json")
        plot_curves(results, out / "curves.png")
        if stopped_early:
            print(f"stopped after {epochs_run} epoch(s) (--stop-after); continue with --resume", flush=True)
        elif last.get("test_acc") is not None:
            print(f"final test accuracy {100 * last['test_acc']:.2f}% -> {out / 'results.json'}", flush=True)
        else:  # --no-eval: still say where the run went
            print(f"done, no evaluation (--no-eval) -> {out / 'results.json'}", flush=True)
    return results


# --------------------------------------------------------------------------------------------------
# command line


class ArgParser(argparse.ArgumentParser):
    """argparse with its errors on one line (exit 2) instead of a usage block; the other scripts use it too."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def field_help(cls) -> dict[str, str]:
    """Field name -> the `# comment` on its line in the dataclass source: the --help text, kept in one place."""
    out = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.+)$", line)
        if m:
            out[m[1]] = m[2].replace("%", "%%")  # argparse expands %-formats in help strings
    return out


def build_parser() -> argparse.ArgumentParser:
    p = ArgParser(prog="train.py", description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    comments = field_help(Config)
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        help_text = comments.get(f.name) or (f"one of {', '.join(CHOICES[f.name])}" if f.name in CHOICES else " ")
        if f.type in ("bool", bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default, help=help_text)
        else:
            typ = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
            p.add_argument(flag, dest=f.name, type=typ, default=f.default, help=help_text)
    return p


def main(argv=None) -> dict | None:
    args = build_parser().parse_args(argv)
    cfg = Config(**vars(args))
    try:
        return run(cfg)
    except (ConfigError, mnist.DataError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
