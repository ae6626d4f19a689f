"""Train a GPT by epochs, on a laptop CPU or on many GPUs across nodes, with exact resume.

    python nanogpt/train.py                                    # offline demo, CPU, a few minutes
    python nanogpt/train.py --preset shakespeare_char          # one GPU (or --device cpu)
    torchrun --standalone --nproc_per_node=8 nanogpt/train.py --preset gpt2
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --master_addr=10.0.0.1 --master_port=29500 \
        nanogpt/train.py --preset gpt2                         # and --node_rank=1 on the second node

References: karpathy/nanoGPT train.py (the loop this follows); GPT-3, Brown et al. 2020, appendix B
(AdamW betas 0.9/0.95, eps 1e-8, weight decay 0.1, clip 1.0, warmup then cosine decay to 10%, batch
stated in tokens); PyTorch DDP and torchrun docs (no_sync for gradient accumulation).

What nanoGPT lacks and this adds: a typed config with --help instead of exec'd files, epochs over a
seeded permutation of non-overlapping windows (each rank a disjoint share), evaluation on fixed batches,
and checkpoints that hold the data position and RNG states, so a resumed run logs bit-identical losses.
"""
import argparse
import contextlib
import dataclasses
import gc
import hashlib
import json
import math
import os
import platform
import random
import signal
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

import prepare
from model import GPT, GPTConfig, HUB_MODELS, native_bf16

HERE = Path(__file__).resolve().parent


def knob(default, help: str, hidden: bool = False):
    """A config field with its --help text next to its default."""
    return field(default=default, metadata={"help": help, "hidden": hidden})


# --------------------------------------------------------------------------------------------------
# configuration: every knob and its default, in one place


@dataclass
class TrainConfig:
    # data and output
    dataset: str = knob("python_stdlib", "dataset under --data-dir (prepared automatically when missing)")
    data_dir: str = knob(str(HERE / "data"), "folder holding DATASET/{train.bin,val.bin,meta.json}")
    data_source: str = knob("", "local file/folder to prepare the dataset from (e.g. Tiny Shakespeare's "
                                "input.txt offline); '' = prepare.py's default source")
    out_dir: str = knob(str(HERE / "out"), "where checkpoints, log.jsonl, results.json and loss.png go")
    init_from: str = knob("scratch", "scratch | resume | gpt2 | gpt2-medium | gpt2-large | gpt2-xl | PATH "
                                     "(a checkpoint .pt or a Hugging Face GPT-2 folder)")
    resume: str = knob("", "continue exactly from OUT/ckpt_last.pt (bare --resume) or from the given file")
    # how long: epochs, with an optional budget in optimizer steps
    max_epochs: int = knob(1, "passes over train.bin")
    max_iters: int = knob(0, "stop after this many optimizer steps in all (0: no limit)")
    save_epochs: str = knob("1,5", "write ckpt_epoch{N}.pt after these epochs ('all', or '' for none)")
    eval_interval: int = knob(200, "evaluate every this many steps (and at every epoch end)")
    eval_iters: int = knob(20, "fixed batches per split for evaluation")
    final_eval_tokens: int = knob(2_000_000, "at the end, the exact val loss over every window of the first "
                                             "this many val.bin tokens, not a sample (0: off)")
    log_interval: int = knob(10, "update the progress bar every this many steps")
    num_samples: int = knob(3, "samples printed at the end")
    sample_tokens: int = knob(200, "tokens per printed sample")
    # batch: stated in tokens, as GPT-3 does; gradient accumulation is derived from it
    batch_size: int = knob(16, "micro-batch: sequences per rank per forward pass")
    block_size: int = knob(128, "context length in tokens")
    batch_tokens: int = knob(0, "tokens per optimizer step over all ranks (0: batch_size*block_size*world, "
                                "no accumulation); must be a multiple of batch_size*block_size*world")
    # model
    n_layer: int = knob(4, "transformer blocks")
    n_head: int = knob(4, "attention heads")
    n_embd: int = knob(128, "embedding width")
    dropout: float = knob(0.0, "dropout probability (0 for pretraining, 0.1+ when finetuning small data)")
    bias: bool = knob(True, "biases in Linear and LayerNorm (GPT-2 has them)")
    # AdamW and schedule, GPT-3 appendix B
    learning_rate: float = knob(1e-3, "peak learning rate")
    min_lr_ratio: float = knob(0.1, "cosine decay ends at this fraction of the peak")
    warmup_iters: int = knob(100, "linear warmup steps")
    lr_decay_iters: int = knob(0, "steps of the cosine decay (0: the length of this run). Fix it when a "
                                  "resumed run gets a larger budget, so the schedule stays the same")
    decay_lr: bool = knob(True, "warmup + cosine decay; off: constant learning rate")
    weight_decay: float = knob(0.1, "AdamW weight decay, on tensors with >= 2 dims only")
    beta1: float = knob(0.9, "AdamW beta1")
    beta2: float = knob(0.95, "AdamW beta2")
    eps: float = knob(1e-8, "AdamW eps")
    grad_clip: float = knob(1.0, "clip the global gradient norm to this (0: off)")
    # system and performance switches
    device: str = knob("auto", "auto (cuda if present, else cpu) | cpu | cuda | cuda:N")
    dtype: str = knob("auto", "auto (bfloat16 on CUDA that has it, float16 on older CUDA, float32 on CPU) | "
                              "float32 | bfloat16 | float16 (autocast; float16 adds a GradScaler)")
    compile: Optional[bool] = knob(None, "torch.compile the model (default: on with CUDA, off on CPU)")
    flash: bool = knob(True, "attention through scaled_dot_product_attention (flash kernels on GPU)")
    tf32: bool = knob(True, "TF32 matmuls on Ampere or newer GPUs")
    vocab_multiple: int = knob(64, "pad a BPE vocabulary (> 256 tokens) up to a multiple of this (50257 -> 50304)")
    seed: int = knob(1337, "seed of init, data order, eval batches, dropout and samples")
    # hidden: fault injection for tests
    debug_nan_at_iter: int = knob(-1, "make the loss NaN at this step (tests)", hidden=True)


# named presets: overrides of the defaults above ("demo" is what `python nanogpt/train.py` runs)
PRESETS: dict[str, dict] = {
    # offline, a few minutes on a 2-core CPU: byte-level LM on the Python standard library's sources
    # (4.2M train tokens, 2066 steps per epoch; 1000 steps = 2M tokens is enough to beat the unigram
    # baseline by far)
    "demo": dict(max_iters=1000),
    # nanoGPT's config/train_shakespeare_char.py: a 10.7M-parameter char model, minutes on one GPU
    "shakespeare_char": dict(
        dataset="shakespeare_char", out_dir=str(HERE / "out-shakespeare-char"), n_layer=6, n_head=6, n_embd=384,
        block_size=256, batch_size=64, dropout=0.2, bias=False, learning_rate=1e-3, beta2=0.99, warmup_iters=100,
        max_epochs=1000, max_iters=5000, lr_decay_iters=5000, eval_interval=250, eval_iters=200,
    ),
    # nanoGPT README's CPU recipe for the same data (val ~1.88 after 2000 steps)
    "shakespeare_char_cpu": dict(
        dataset="shakespeare_char", out_dir=str(HERE / "out-shakespeare-char-cpu"), device="cpu", compile=False,
        n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, dropout=0.0, bias=False, learning_rate=1e-3,
        beta2=0.99, warmup_iters=100, max_epochs=1000, max_iters=2000, lr_decay_iters=2000,
        eval_interval=250, eval_iters=20,
    ),
    # GPT-2 124M from scratch with the GPT-3 small recipe: ~0.5M tokens per step (12 * 1024 * 40); 600k
    # steps (~300B tokens) are ~33 epochs of OpenWebText's 9B, so the step budget, not max_epochs, ends it
    "gpt2": dict(
        dataset="openwebtext", out_dir=str(HERE / "out-gpt2"), n_layer=12, n_head=12, n_embd=768, block_size=1024,
        batch_size=12, batch_tokens=491_520, dropout=0.0, learning_rate=6e-4, warmup_iters=2000,
        max_epochs=1000, max_iters=600_000, lr_decay_iters=600_000, eval_interval=1000, eval_iters=200,
        log_interval=10,
    ),
    # finetune OpenAI's GPT-2 (124M) on Tiny Shakespeare, GPT-2 BPE tokens
    "finetune_shakespeare": dict(
        dataset="shakespeare", out_dir=str(HERE / "out-finetune-shakespeare"), init_from="gpt2", block_size=1024,
        batch_size=1, batch_tokens=32 * 1024, dropout=0.0, learning_rate=3e-5, decay_lr=False,
        max_epochs=10, max_iters=20, eval_interval=5, eval_iters=40, save_epochs="1",
    ),
}

MODEL_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "bias")  # fixed by a checkpoint when resuming
RESUME_KEYS = ("config", "optimizer", "scaler", "iter_num", "epoch", "epoch_step", "data_order", "rng", "losses",
               "elapsed_s")  # what a resumed run reads back from a checkpoint


class ConfigError(Exception):
    """A user mistake found before training: printed as one line, exit code 2."""


class ArgParser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, instead of argparse's usage block
        raise ConfigError(message)


def _bool(text: str) -> bool:
    t = str(text).lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def build_parser() -> ArgParser:
    p = ArgParser(prog="train.py", description=__doc__.split("\n\n")[0],
                  formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=argparse.SUPPRESS)
    p.add_argument("--preset", help=f"named settings: {', '.join(PRESETS)} (default: demo)")
    p.add_argument("--config", help="TOML or JSON file of field = value (applied after the preset)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = argparse.SUPPRESS if f.metadata["hidden"] else f"{f.metadata['help']} (default: {f.default})"
        if f.name == "resume":
            p.add_argument(flag, nargs="?", const="last", metavar="PATH", help=help_text)
        elif f.type in (bool, Optional[bool]):
            # --compile, --no-compile, or --compile false
            p.add_argument(flag, nargs="?", const=True, type=_bool, metavar="BOOL", help=help_text)
            p.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false",
                           help=argparse.SUPPRESS)
        else:
            p.add_argument(flag, type=f.type, metavar=f.type.__name__.upper(), help=help_text)
    return p


def _coerce(name: str, value, where: str):
    """Check a config-file value against the field's type."""
    types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    if name not in types:
        raise ConfigError(f"{where}: unknown setting {name!r}; see train.py --help")
    t = types[name]
    if t in (bool, Optional[bool]):
        ok = isinstance(value, bool) or (t is Optional[bool] and value is None)
    elif t is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, t) and not isinstance(value, bool)
    if not ok:
        raise ConfigError(f"{where}: {name} must be {getattr(t, '__name__', 'true/false')}, got {value!r}")
    return value


def load_config_file(path: str) -> dict:
    """A TOML (tomllib) or JSON file of field = value. Never executed."""
    p = Path(path)
    try:
        text = p.read_bytes()
        data = tomllib.loads(text.decode()) if p.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read config file {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table/object of settings")
    out = {}
    for k, v in data.items():
        k = k.replace("-", "_")
        out[k] = v if k == "preset" else _coerce(k, v, f"config file {path}")
    return out


def resolve_config(argv=None) -> TrainConfig:
    """defaults < preset < config file < command-line flags (and, when resuming, the checkpoint's config
    takes the place of defaults + preset)."""
    flags = vars(build_parser().parse_args(argv))
    file_cfg = load_config_file(flags.pop("config")) if "config" in flags else {}
    preset = flags.pop("preset", file_cfg.pop("preset", "demo"))
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    overrides = {**file_cfg, **flags}  # flags win over the file
    cfg = dataclasses.replace(TrainConfig(), **PRESETS[preset])
    cfg = dataclasses.replace(cfg, **overrides)
    if cfg.init_from == "resume" and not cfg.resume:
        cfg.resume = "last"
    if cfg.resume:
        path = resume_path(cfg)
        ckpt = load_checkpoint(path, mmap=True)  # mmap: only the config is read here
        missing = [k for k in RESUME_KEYS if k not in ckpt]
        if missing:  # e.g. weights only: --init-from takes those
            raise ConfigError(f"{path} has no training state to resume ({missing[0]!r} is missing); "
                              f"start from its weights with --init-from {path}")
        saved = ckpt["config"]
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        base = TrainConfig(**{k: v for k, v in saved.items() if k in known})
        for k in MODEL_KEYS:  # the architecture is the checkpoint's
            if k in overrides and getattr(base, k) != overrides[k]:
                raise ConfigError(f"--{k.replace('_', '-')} {overrides[k]} differs from the checkpoint's "
                                  f"{getattr(base, k)}; a resumed run keeps its architecture")
        cfg = dataclasses.replace(base, **overrides)
        cfg.resume = str(path)
    return cfg


def resume_path(cfg: TrainConfig) -> Path:
    path = Path(cfg.out_dir) / "ckpt_last.pt" if cfg.resume == "last" else Path(cfg.resume)
    if not path.is_file():
        raise ConfigError(f"no checkpoint to resume from at {path}")
    return path


def check_config(cfg: TrainConfig, world_size: int) -> int:
    """Static checks, before anything is loaded. Returns the gradient-accumulation steps per rank."""
    if cfg.n_layer < 1 or cfg.n_head < 1 or cfg.n_embd < 1 or cfg.block_size < 1 or cfg.batch_size < 1:
        raise ConfigError("n_layer, n_head, n_embd, block_size and batch_size must all be >= 1")
    if cfg.n_embd % cfg.n_head:
        raise ConfigError(f"n_embd {cfg.n_embd} is not divisible by n_head {cfg.n_head}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {cfg.dropout}")
    if cfg.max_epochs < 1 or cfg.max_iters < 0 or cfg.eval_interval < 1 or cfg.eval_iters < 1 or cfg.log_interval < 1:
        raise ConfigError("max_epochs, eval_interval, eval_iters and log_interval must be >= 1, max_iters >= 0")
    if cfg.final_eval_tokens < 0:
        raise ConfigError(f"final_eval_tokens must be >= 0 (0: off), got {cfg.final_eval_tokens}")
    for name in ("seed", "batch_tokens", "warmup_iters", "lr_decay_iters", "num_samples", "sample_tokens"):
        if getattr(cfg, name) < 0:  # a negative seed would crash numpy's seeding mid-run
            raise ConfigError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.learning_rate < 0 or cfg.weight_decay < 0 or cfg.eps < 0 or not 0 <= cfg.min_lr_ratio <= 1:
        raise ConfigError("learning_rate, weight_decay and eps must be >= 0, min_lr_ratio in [0, 1]")
    if not (0 <= cfg.beta1 < 1 and 0 <= cfg.beta2 < 1):
        raise ConfigError(f"beta1 and beta2 must be in [0, 1), got {cfg.beta1}, {cfg.beta2}")
    parse_save_epochs(cfg.save_epochs)
    hub = cfg.init_from in HUB_MODELS
    if hub and cfg.block_size > 1024:
        raise ConfigError(f"block_size {cfg.block_size} is larger than {cfg.init_from} allows (1024 positions)")
    # (a resumed run takes its weights from the checkpoint, so the original --init-from may be gone)
    if not (cfg.resume or cfg.init_from in ("scratch", "resume") or hub or Path(cfg.init_from).exists()):
        raise ConfigError(f"--init-from {cfg.init_from!r}: not scratch, resume, one of {', '.join(HUB_MODELS)}, "
                          f"or an existing checkpoint file / GPT-2 folder")
    micro = cfg.batch_size * cfg.block_size * world_size  # tokens of one micro-step over all ranks
    batch_tokens = cfg.batch_tokens or micro
    if batch_tokens % micro:
        raise ConfigError(f"batch_tokens {batch_tokens} is not a multiple of batch_size*block_size*world_size "
                          f"= {cfg.batch_size}*{cfg.block_size}*{world_size} = {micro}")
    return batch_tokens // micro


def parse_save_epochs(text: str):
    """'1,5' -> {1, 5}; 'all' -> None (every epoch); '' -> set()."""
    text = text.strip()
    if text == "all":
        return None
    try:
        epochs = {int(t) for t in text.split(",") if t.strip()}
    except ValueError:
        raise ConfigError(f"save_epochs must be like '1,5', 'all' or '', got {text!r}") from None
    return epochs


def resolve_device(cfg: TrainConfig, local_rank: int) -> str:
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kind = device.split(":")[0]
    if kind not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r} is not supported; use cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but CUDA is not available on this machine")
    if kind == "cuda" and local_rank >= 0:
        device = f"cuda:{local_rank}"  # torchrun: one GPU per process
    return device


def resolve_dtype(dtype: str, device_type: str, bf16_supported: bool) -> str:
    """'auto' -> the fastest dtype the device does well; refuses one the device lacks."""
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise ConfigError(f"dtype {dtype!r} is not one of auto, float32, bfloat16, float16")
    if dtype == "auto":
        if device_type == "cuda":
            return "bfloat16" if bf16_supported else "float16"
        return "float32"
    if device_type == "cuda" and dtype == "bfloat16" and not bf16_supported:
        raise ConfigError("dtype bfloat16 is not supported by this GPU (needs Ampere or newer); use float16")
    return dtype


# --------------------------------------------------------------------------------------------------
# data: epochs over non-overlapping windows


def num_windows(n_tokens: int, block_size: int) -> int:
    """Windows of block_size + 1 tokens starting at multiples of block_size: the inputs never overlap, and
    each window's last token is the next one's first (the target of its last position)."""
    return max(0, (n_tokens - 1) // block_size)


def train_windows(n_tokens: int, block_size: int) -> int:
    """Training windows per epoch: (n - block_size) // block_size, so that the last window still fits
    whatever the epoch's grid shift (0..block_size-1)."""
    return max(0, (n_tokens - block_size) // block_size)


def epoch_shift(seed: int, epoch: int, block_size: int) -> int:
    """Where the window grid starts in this epoch (0..block_size-1), so that across epochs the model sees
    window boundaries at every position, not always at the same multiples of block_size."""
    return int(np.random.default_rng([seed, epoch, 1]).integers(block_size))


def epoch_order(n_windows: int, seed: int, epoch: int) -> np.ndarray:
    """The window order of one epoch: a permutation that depends only on (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n_windows)


def step_windows(order: np.ndarray, step: int, rank: int, world_size: int, batch_size: int, accum: int):
    """Window ids this rank trains on at one optimizer step -> (accum, batch_size).

    A step consumes world_size * accum * batch_size consecutive entries of the epoch order; rank r takes
    the r-th contiguous share, so ranks are disjoint and together see exactly what one process would."""
    per_rank = accum * batch_size
    start = step * per_rank * world_size + rank * per_rank
    return order[start : start + per_rank].reshape(accum, batch_size)


def eval_windows(n_windows: int, count: int, seed: int, split: str) -> np.ndarray:
    """Fixed evaluation windows of a split: the same at every evaluation, in every run with this seed."""
    tag = {"train": 1, "val": 2}[split]
    return np.sort(np.random.default_rng([seed, 7919, tag]).permutation(n_windows)[: min(count, n_windows)])


def get_batch(data: np.ndarray, windows: np.ndarray, block_size: int, device: str, shift: int = 0):
    """windows (B,) -> x, y (B, T) int64, y shifted by one token. Window w starts at shift + w*block_size."""
    idx = shift + windows[:, None] * block_size + np.arange(block_size + 1)  # (B, T+1)
    buf = torch.from_numpy(data[idx].astype(np.int64))  # (B, T+1)
    x, y = buf[:, :-1].contiguous(), buf[:, 1:].contiguous()  # contiguous before pinning: the copy stays async
    if device.startswith("cuda"):
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x, y


def unigram_entropy(data: np.ndarray, vocab_size: int, limit: int = 50_000_000) -> float:
    """Entropy (nats/token) of the token frequencies of train.bin (first `limit` tokens): the loss of the
    best model that ignores context. A language model must get well below it."""
    counts = np.bincount(np.asarray(data[:limit]), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def load_dataset(cfg: TrainConfig, master: bool, ddp: bool):
    """memmaps of train.bin / val.bin and meta.json; prepares the dataset first if it is missing (rank 0
    prepares, the others wait, and every rank learns about a failure)."""
    folder = Path(cfg.data_dir) / cfg.dataset
    error = None
    if master and not (folder / "train.bin").is_file():
        print(f"preparing dataset {cfg.dataset!r} in {cfg.data_dir} ...")
        try:
            prepare.prepare(cfg.dataset, cfg.data_dir, source=cfg.data_source or None)
        except (ValueError, OSError) as e:  # prepare.DataError is a ValueError
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            error = f"cannot prepare dataset {cfg.dataset!r}: {why}".replace("--source", "--data-source")
        except SystemExit as e:  # prepare may report a user mistake this way
            error = f"cannot prepare dataset {cfg.dataset!r} (prepare.py exited with {e.code})"
    if ddp:
        box = [error]
        dist.broadcast_object_list(box, src=0)
        error = box[0]
    if error:
        raise ConfigError(error)
    try:
        meta = json.loads((folder / "meta.json").read_text())
        train = np.memmap(folder / "train.bin", dtype=np.uint16, mode="r")
        val = np.memmap(folder / "val.bin", dtype=np.uint16, mode="r")
    except (OSError, ValueError) as e:
        raise ConfigError(f"dataset {cfg.dataset!r} in {cfg.data_dir} is incomplete: {e}") from None
    return train, val, meta


# --------------------------------------------------------------------------------------------------
# schedule, evaluation


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


@torch.no_grad()
def evaluate(model, splits: dict, cfg: TrainConfig, ctx, device: str, rank: int, world_size: int) -> dict:
    """Mean loss over each split's fixed windows; each rank takes every world_size-th window and the sums
    are all-reduced, so every rank returns the same numbers."""
    model.eval()
    out = {}
    for name, (data, windows) in splits.items():
        mine = windows[rank::world_size]
        total = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of window losses, windows)
        for i in range(0, len(mine), cfg.batch_size):
            x, y = get_batch(data, mine[i : i + cfg.batch_size], cfg.block_size, device)
            with ctx:
                _, loss = model(x, y)
            total[0] += loss.double() * len(x)
            total[1] += len(x)
        if world_size > 1:
            dist.all_reduce(total)
        out[name] = (total[0] / total[1]).item()
    model.train()
    return out


# --------------------------------------------------------------------------------------------------
# checkpoints: state that weights_only loading accepts (tensors, numbers, strings, lists, dicts)


def rng_state() -> dict:
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),  # (version, tuple of ints, None): plain types
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),  # uint8 tensor
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": n["key"].numpy().astype(np.uint32),
                         "pos": n["pos"]}, "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict, out_dir: Path, names: list[str]) -> None:
    """Atomic: write a temp file, then rename over the target, so a crash never leaves half a file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{names[0]}.tmp"
    torch.save(state, tmp)
    for name in names[1:]:  # same bytes under another name (ckpt_epochN.pt and ckpt_last.pt)
        copy_tmp = out_dir / f".{name}.tmp"
        with open(tmp, "rb") as src, open(copy_tmp, "wb") as dst:
            while chunk := src.read(1 << 24):
                dst.write(chunk)
        os.replace(copy_tmp, out_dir / name)
    os.replace(tmp, out_dir / names[0])


def load_checkpoint(path, mmap: bool = False) -> dict:
    """weights_only=True: a checkpoint holding anything but tensors and plain data (e.g. a pickled callable
    that would run code) is refused."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - UnpicklingError for unsafe content, other errors for damaged files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"refusing to load checkpoint {path}: {first[:300]}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
        raise ConfigError(f"{path} is not a nanogpt checkpoint (no 'model' / 'model_args')")
    return ckpt


def clean_state_dict(sd: dict) -> dict:
    """Strip torch.compile's '_orig_mod.' (and DDP's 'module.') prefixes."""
    return {k.removeprefix("_orig_mod.").removeprefix("module."): v for k, v in sd.items()}


def param_summary(model) -> str:
    """sha256 over every parameter's bytes: equal on all DDP ranks when their weights are identical."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# model


def build_model(cfg: TrainConfig, meta: dict, ckpt: Optional[dict]):
    """-> (model, model_args). From scratch, a resumed checkpoint, GPT-2 weights, or a file/folder."""
    if ckpt is not None:  # resume: the checkpoint's architecture; dropout and flash may be changed
        model = GPT(GPTConfig(**{**ckpt["model_args"], "dropout": cfg.dropout, "flash": cfg.flash}))
        model.load_state_dict(clean_state_dict(ckpt["model"]))
    elif cfg.init_from == "scratch":
        vocab = int(meta["vocab_size"])
        if vocab > 256 and cfg.vocab_multiple > 1:  # BPE: round up for faster matmuls, 50257 -> 50304
            vocab = -(-vocab // cfg.vocab_multiple) * cfg.vocab_multiple
        model = GPT(GPTConfig(block_size=cfg.block_size, vocab_size=vocab, n_layer=cfg.n_layer, n_head=cfg.n_head,
                              n_embd=cfg.n_embd, dropout=cfg.dropout, bias=cfg.bias, flash=cfg.flash))
    elif Path(cfg.init_from).is_file():  # one of our checkpoints: weights only, fresh optimizer
        src = load_checkpoint(cfg.init_from)
        args = {**src["model_args"], "dropout": cfg.dropout, "flash": cfg.flash}
        if cfg.block_size > args["block_size"]:
            raise ConfigError(f"block_size {cfg.block_size} is larger than {cfg.init_from} allows "
                              f"({args['block_size']} positions)")
        model = GPT(GPTConfig(**args))
        model.load_state_dict(clean_state_dict(src["model"]))
    else:  # OpenAI GPT-2: hub name or local Hugging Face folder
        if meta.get("tokenizer") != "gpt2":
            raise ConfigError(f"--init-from {cfg.init_from} needs a GPT-2 BPE dataset, but {cfg.dataset!r} "
                              f"uses tokenizer {meta.get('tokenizer')!r}; prepare one with the gpt2 tokenizer")
        hf_config = Path(cfg.init_from) / "config.json"
        if hf_config.is_file():
            n_pos = json.loads(hf_config.read_text()).get("n_positions", 1024)
            if cfg.block_size > n_pos:
                raise ConfigError(f"block_size {cfg.block_size} is larger than {cfg.init_from} allows ({n_pos} positions)")
        try:
            model = GPT.from_pretrained(cfg.init_from, dict(dropout=cfg.dropout, flash=cfg.flash))
        except ValueError as e:
            raise ConfigError(str(e).splitlines()[0]) from None
    if cfg.block_size < model.config.block_size:
        model.crop_block_size(cfg.block_size)
    if int(meta["vocab_size"]) > model.config.vocab_size:
        raise ConfigError(f"dataset vocab_size {meta['vocab_size']} exceeds the model's {model.config.vocab_size}")
    return model, dataclasses.asdict(model.config)


# --------------------------------------------------------------------------------------------------
# the run


class StopSignal:
    """While active, SIGINT/SIGTERM only set a flag: the loop finishes its step, writes a resumable
    checkpoint and exits cleanly. The previous handlers come back on exit."""

    def __init__(self):
        self.name = None
        self.previous = {}

    def _handle(self, signum, frame):
        self.name = signal.Signals(signum).name

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def write_results(out_dir: Path, results: dict, history: list, unigram: float) -> None:
    tmp = out_dir / ".results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, out_dir / "results.json")
    import matplotlib  # noqa: PLC0415 - plotting only at the very end; keeps error paths fast

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4))
    its = [r["iter"] for r in history]
    ax.plot(its, [r["train_loss"] for r in history], "o-", label="train (fixed batches)")
    ax.plot(its, [r["val_loss"] for r in history], "o-", label="val")
    ax.axhline(unigram, color="gray", ls="--", label=f"unigram baseline {unigram:.3f}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(f"{results['config']['dataset']}: {results['n_params'] / 1e6:.2f}M params")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / ".loss.png.tmp.png", dpi=110)
    plt.close(fig)
    os.replace(out_dir / ".loss.png.tmp.png", out_dir / "loss.png")


def print_samples(model, meta: dict, cfg: TrainConfig, ctx, device: str) -> list[str]:
    """cfg.num_samples continuations of a newline (temperature 0.8, top-k 200), printed and returned."""
    if cfg.num_samples < 1:
        return []
    try:
        tokenizer = prepare.get_tokenizer(meta)
    except Exception as e:  # noqa: BLE001 - e.g. tiktoken files missing offline: train anyway, no samples
        print(f"(no samples: cannot load tokenizer {meta.get('tokenizer')!r}: {e})")
        return []
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    try:
        start = tokenizer.encode("\n") or [0]
    except ValueError:  # a char vocabulary without a newline
        start = [0]
    idx = torch.tensor([start] * cfg.num_samples, dtype=torch.long, device=device)  # (S, len(start))
    with ctx:
        out = model.generate(idx, cfg.sample_tokens, temperature=0.8, top_k=200, generator=gen)
    samples = [tokenizer.decode([t for t in row[len(start):] if t < tokenizer.vocab_size]) for row in out.tolist()]
    for i, text in enumerate(samples):
        print(f"---------- sample {i + 1}\n{text}")
    return samples


def device_description(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def train(cfg: TrainConfig) -> int:
    """Train with cfg -> exit code: 0 when finished or stopped by SIGINT/SIGTERM (resumable), 3 when the loss
    goes non-finite; bad settings raise ConfigError. Sets up the device and, under torchrun, the process group
    around _train, which is the run itself."""
    # ---- distributed setup (torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT)
    ddp = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", -1)) if ddp else -1
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    master = rank == 0
    accum = check_config(cfg, world_size)
    device = resolve_device(cfg, local_rank)
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    bf16_ok = device_type == "cuda" and native_bf16(device)
    dtype = resolve_dtype(cfg.dtype, device_type, bf16_ok)
    ckpt = load_checkpoint(cfg.resume) if cfg.resume else None
    if ddp:
        if device_type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    try:
        with StopSignal() as stop:
            code = _train(cfg, ckpt, stop, ddp, rank, world_size, master, accum, device, device_type, dtype)
        if ddp and code == 0:
            dist.barrier()  # leave together: ranks that tear down while rank 0 still writes can hang its exit
        return code
    finally:
        if ddp and dist.is_initialized():
            gc.collect()  # free the DDP reducer (it holds the group) first: a gloo group torn down under it can abort the exit
            dist.destroy_process_group()


def _train(cfg, ckpt, stop, ddp, rank, world_size, master, accum, device, device_type, dtype) -> int:
    out_dir = Path(cfg.out_dir)
    torch.manual_seed(cfg.seed)  # model init: the same on every rank
    if device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = cfg.tf32  # TF32 tensor cores for float32 matmuls (Ampere+)
        torch.backends.cudnn.allow_tf32 = cfg.tf32
    ptdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    ctx = contextlib.nullcontext() if dtype == "float32" else torch.amp.autocast(device_type, dtype=ptdtype)

    # ---- data, with the checks that need it
    train_data, val_data, meta = load_dataset(cfg, master, ddp)
    n_train, n_val = train_windows(len(train_data), cfg.block_size), num_windows(len(val_data), cfg.block_size)
    if n_val < 1 or n_train < 1:
        raise ConfigError(f"block_size {cfg.block_size} is larger than the data: {cfg.dataset} has "
                          f"{len(train_data)} train and {len(val_data)} val tokens")
    global_windows = cfg.batch_size * accum * world_size  # windows per optimizer step, all ranks
    steps_per_epoch = n_train // global_windows  # the remainder of an epoch is dropped
    if steps_per_epoch < 1:
        raise ConfigError(f"one step needs {global_windows} windows of {cfg.block_size} tokens but train.bin "
                          f"has only {n_train}; lower batch_tokens/batch_size/block_size")
    total_iters = steps_per_epoch * cfg.max_epochs
    if cfg.max_iters:
        total_iters = min(total_iters, cfg.max_iters)
    decay_iters = cfg.lr_decay_iters or total_iters
    tokens_per_step = global_windows * cfg.block_size
    if ckpt is not None:  # the saved (epoch, step) position means something only with the same step size and data
        saved = (ckpt["data_order"]["windows_per_step"], ckpt["data_order"]["n_windows"])
        if saved != (global_windows, n_train):
            raise ConfigError(f"cannot resume: a step now takes {global_windows} of {n_train} windows per epoch, "
                              f"the checkpoint's took {saved[0]} of {saved[1]}; keep the dataset and "
                              f"batch_size * accumulation * world_size (set --batch-tokens when changing GPUs)")

    # ---- model and optimizer
    model, model_args = build_model(cfg, meta, ckpt)
    model.to(device)
    raw_model = model  # never compiled or wrapped: its state_dict has no _orig_mod./module. prefix
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.learning_rate, (cfg.beta1, cfg.beta2),
                                           device_type, eps=cfg.eps)
    scaler = torch.amp.GradScaler(device_type, enabled=(dtype == "float16"))  # float16 needs loss scaling
    iter_num, epoch, epoch_step, history, elapsed_before = 0, 0, 0, [], 0.0
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt["scaler"]:  # empty when the checkpoint's run had no float16 (GradScaler disabled)
            scaler.load_state_dict(ckpt["scaler"])
        iter_num, epoch, epoch_step = ckpt["iter_num"], ckpt["epoch"], ckpt["epoch_step"]
        history, elapsed_before = list(ckpt["losses"]["history"]), ckpt["elapsed_s"]
        set_rng_state(ckpt["rng"])
        del ckpt
    use_compile = cfg.compile if cfg.compile is not None else device_type == "cuda"
    if use_compile:
        model = torch.compile(model)
    if ddp:
        model = DDP(model, device_ids=[int(device.split(":")[1])] if device_type == "cuda" else None)
    eval_model = model.module if ddp else model  # no DDP hooks needed for forward-only evaluation

    n_params = raw_model.get_num_params()
    unigram = unigram_entropy(train_data, int(meta["vocab_size"]))
    eval_splits = {
        "train": (train_data, eval_windows(n_train, cfg.eval_iters * cfg.batch_size, cfg.seed, "train")),
        "val": (val_data, eval_windows(n_val, cfg.eval_iters * cfg.batch_size, cfg.seed, "val")),
    }
    save_epochs = parse_save_epochs(cfg.save_epochs)
    if master:
        out_dir.mkdir(parents=True, exist_ok=True)
        # a fresh run starts a fresh log; a resumed one continues the log stored in its checkpoint (so
        # evaluations logged after that checkpoint was written are not repeated)
        tmp = out_dir / ".log.jsonl.tmp"
        tmp.write_text("".join(json.dumps(rec) + "\n" for rec in history))
        os.replace(tmp, out_dir / "log.jsonl")
        print(f"{cfg.dataset}: {len(train_data):,} train / {len(val_data):,} val tokens, tokenizer "
              f"{meta.get('tokenizer')}; unigram baseline {unigram:.4f} nats/token")
        print(f"model {n_params / 1e6:.2f}M params; {world_size} rank(s) x {accum} micro-step(s) x "
              f"{cfg.batch_size} x {cfg.block_size} = {tokens_per_step:,} tokens/step; {steps_per_epoch} "
              f"steps/epoch; {total_iters} steps; device {device} {dtype}{' compiled' if use_compile else ''}")

    def best_val():
        return min((r["val_loss"] for r in history), default=float("inf"))

    t_start = time.time()

    def elapsed():
        return elapsed_before + time.time() - t_start

    def checkpoint_state():
        return {
            "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "model_args": model_args, "config": dataclasses.asdict(cfg),
            "iter_num": iter_num, "epoch": epoch, "epoch_step": epoch_step,
            "schedule": {"iter": iter_num, "lr": get_lr(iter_num, cfg, decay_iters), "decay_iters": decay_iters,
                         "warmup_iters": cfg.warmup_iters},
            "data_order": {"seed": cfg.seed, "epoch": epoch, "step": epoch_step, "windows_per_step": global_windows,
                           "n_windows": n_train},  # order and grid shift are functions of (seed, epoch)
            "rng": rng_state(), "losses": {"history": history, "best_val_loss": best_val()},
            "tokens_seen": iter_num * tokens_per_step, "elapsed_s": elapsed(),
        }

    # throughput since the last evaluation (training time only)
    since_eval = {"tokens": 0, "time": 0.0}

    def log_eval(lr):
        losses = evaluate(eval_model, eval_splits, cfg, ctx, device, rank, world_size)
        tps = since_eval["tokens"] / since_eval["time"] if since_eval["time"] > 0 else None
        mfu = raw_model.estimate_mfu(tps / world_size, device, dtype) if tps else None  # per GPU
        rec = {"epoch": round(iter_num / steps_per_epoch, 4), "epochs_done": epoch, "iter": iter_num,
               "tokens": iter_num * tokens_per_step, "train_loss": losses["train"], "val_loss": losses["val"],
               "val_ppl": math.exp(min(losses["val"], 50.0)), "lr": lr, "tokens_per_s": tps, "mfu": mfu,
               "elapsed_s": round(elapsed(), 3)}
        history.append(rec)
        since_eval.update(tokens=0, time=0.0)
        if master:
            with open(out_dir / "log.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
            tqdm.write(f"epoch {rec['epoch']:.2f} iter {iter_num}: train {rec['train_loss']:.4f} val "
                       f"{rec['val_loss']:.4f} (ppl {rec['val_ppl']:.2f}) lr {lr:.2e}"
                       + (f" {tps:,.0f} tok/s" if tps else "") + (f" MFU {mfu:.1%}" if mfu else ""))
        return rec

    def save(names):
        if master:
            save_checkpoint(checkpoint_state(), out_dir, names)

    last_eval_iter = history[-1]["iter"] if history else -1
    lr = get_lr(iter_num, cfg, decay_iters)
    pbar = tqdm(total=total_iters, initial=min(iter_num, total_iters), disable=not master, unit="step",
                dynamic_ncols=True, mininterval=1.0)
    stopped_by = None
    if iter_num == 0 and total_iters > 0:  # the loss at initialization, where the curve starts
        log_eval(lr)
        last_eval_iter = 0
    while iter_num < total_iters and epoch < cfg.max_epochs:
        order = epoch_order(n_train, cfg.seed, epoch)
        shift = epoch_shift(cfg.seed, epoch, cfg.block_size)
        while epoch_step < steps_per_epoch and iter_num < total_iters:
            t0 = time.time()
            lr = get_lr(iter_num, cfg, decay_iters)
            for group in optimizer.param_groups:
                group["lr"] = lr
            windows = step_windows(order, epoch_step, rank, world_size, cfg.batch_size, accum)  # (accum, B)
            # dropout noise is a function of (seed, step, rank) alone, so a resumed run draws the same
            torch.manual_seed(cfg.seed * 1_000_003 + iter_num * 1009 + rank)
            loss_sum = torch.zeros((), device=device)
            for micro in range(accum):
                x, y = get_batch(train_data, windows[micro], cfg.block_size, device, shift)
                # DDP all-reduces gradients in backward; only the last micro-step needs it
                sync = contextlib.nullcontext() if (not ddp or micro == accum - 1) else model.no_sync()
                with sync:
                    with ctx:
                        _, loss = model(x, y)
                        loss = loss / accum  # the step's gradient is the mean over its micro-steps
                    scaler.scale(loss).backward()
                loss_sum += loss.detach().float()
            if iter_num == cfg.debug_nan_at_iter:
                loss_sum = loss_sum * float("nan")
            # one small all-reduce carries the mean loss and any rank's stop signal
            loss_and_stop = torch.stack([loss_sum, torch.tensor(float(stop.name is not None), device=device)])
            if ddp:
                dist.all_reduce(loss_and_stop)
                loss_and_stop[0] /= world_size
            step_loss, stop_requested = loss_and_stop[0].item(), loss_and_stop[1].item() > 0
            if not math.isfinite(step_loss):
                optimizer.zero_grad(set_to_none=True)
                pbar.close()
                last = out_dir / "ckpt_last.pt"
                keep = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written"
                if master:
                    print(f"train.py: error: loss is {step_loss} at iter {iter_num} (lr {lr:.3g}); stopping, "
                          f"{keep}", file=sys.stderr)
                return 3
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            iter_num += 1
            epoch_step += 1
            dt = time.time() - t0
            since_eval["tokens"] += tokens_per_step
            since_eval["time"] += dt
            pbar.update(1)
            if iter_num % cfg.log_interval == 0 and master:
                tps = tokens_per_step / dt
                mfu = raw_model.estimate_mfu(tps / world_size, device, dtype)  # tps counts all ranks
                pbar.set_postfix_str(f"loss {step_loss:.4f} lr {lr:.2e} {tps:,.0f} tok/s"
                                     + (f" MFU {mfu:.1%}" if mfu else ""), refresh=False)
            if epoch_step == steps_per_epoch:
                break  # the epoch-end evaluation follows below
            if iter_num % cfg.eval_interval == 0:
                log_eval(lr)
                last_eval_iter = iter_num
            if stop_requested:
                stopped_by = stop.name or "a signal on another rank"
                break
        if stopped_by:
            break
        if epoch_step == steps_per_epoch:  # end of an epoch: evaluate, maybe save, start the next
            epoch += 1
            epoch_step = 0
            log_eval(lr)
            last_eval_iter = iter_num
            if save_epochs is None or epoch in save_epochs:
                save([f"ckpt_epoch{epoch}.pt", "ckpt_last.pt"])
            if stop_requested:
                stopped_by = stop.name or "a signal on another rank"
                break
    pbar.close()

    if stopped_by:
        save(["ckpt_last.pt"])
        if master:
            print(f"stopped by {stopped_by} at iter {iter_num} (epoch {epoch}, step {epoch_step}); "
                  f"resumable checkpoint {out_dir / 'ckpt_last.pt'}; continue with --resume")
        return 0
    if last_eval_iter != iter_num:  # budget ended mid-epoch
        log_eval(lr)
    save(["ckpt_last.pt"])

    # the logged val loss is a sample of eval_iters batches (+-0.02 at eval_iters=20); this is the exact one
    full_val, n_full = None, 0
    if cfg.final_eval_tokens:
        n_full = min(n_val, max(1, cfg.final_eval_tokens // cfg.block_size))  # windows from the start of val.bin
        full_val = evaluate(eval_model, {"val": (val_data, np.arange(n_full))}, cfg, ctx, device, rank,
                            world_size)["val"]

    if os.environ.get("NANOGPT_DEBUG_PARAM_SUMMARY"):  # tests: every rank must hold identical weights
        abs_sum = sum(p.detach().double().abs().sum().item() for p in raw_model.parameters())
        # one write per line: ranks share the launcher's stdout, and print() writes the newline separately
        sys.stdout.write(f"param_summary rank={rank} sha256={param_summary(raw_model)} abs_sum={abs_sum:.10e}\n")
        sys.stdout.flush()
    if not master:
        return 0

    # ---- results: samples, results.json, loss.png
    samples = print_samples(raw_model, meta, cfg, ctx, device)
    # epoch-end evaluations (not r["epoch"] == int(r["epoch"]): rounded to 4 places, a step just before the end
    # of a 20k-step epoch would count)
    per_epoch = [r for r in history if r["epochs_done"] > 0 and r["iter"] == r["epochs_done"] * steps_per_epoch]
    best = min(history, key=lambda r: r["val_loss"])
    tps = [r["tokens_per_s"] for r in history if r["tokens_per_s"]]
    mfus = [r["mfu"] for r in history if r["mfu"]]
    results = {
        "config": dataclasses.asdict(cfg), "model_args": model_args, "n_params": n_params,
        "dataset": {"name": cfg.dataset, "train_tokens": len(train_data), "val_tokens": len(val_data),
                    "tokenizer": meta.get("tokenizer"), "vocab_size": meta.get("vocab_size")},
        "unigram_baseline_nats": unigram,
        "final": {"iter": iter_num, "epochs_done": epoch, "train_loss": history[-1]["train_loss"],
                  "val_loss": history[-1]["val_loss"], "val_ppl": history[-1]["val_ppl"],
                  "val_loss_full": full_val, "val_tokens_full": n_full * cfg.block_size},
        "best": {"iter": best["iter"], "val_loss": best["val_loss"], "val_ppl": best["val_ppl"]},
        "per_epoch": [{k: r[k] for k in ("epochs_done", "iter", "train_loss", "val_loss", "val_ppl", "elapsed_s")}
                      for r in per_epoch],
        "throughput": {"tokens_per_s_mean": float(np.mean(tps)) if tps else None,
                       "mfu_mean": float(np.mean(mfus)) if mfus else None, "tokens_per_step": tokens_per_step,
                       "grad_accum": accum, "world_size": world_size, "elapsed_s": round(elapsed(), 2)},
        "device": {"device": device, "name": device_description(device), "dtype": dtype, "compile": use_compile,
                   "torch": torch.__version__},
        "samples": samples,
    }
    write_results(out_dir, results, history, unigram)
    exact = f"; over {n_full * cfg.block_size:,} val tokens {full_val:.4f}" if full_val is not None else ""
    print(f"final val loss {results['final']['val_loss']:.4f} (best {best['val_loss']:.4f} at iter {best['iter']}"
          f"{exact}) vs unigram baseline {unigram:.4f}; results in {out_dir}/results.json and loss.png")
    return 0


def main(argv=None) -> int:
    try:
        cfg = resolve_config(argv)
        return train(cfg)
    except ConfigError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
