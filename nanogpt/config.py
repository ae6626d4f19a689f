"""train.py's settings: every knob with its default and help, the named presets, and the checks.

Precedence: defaults < --preset < --config FILE (TOML or JSON, never executed) < flags. A resumed run starts
from its checkpoint's config instead of defaults + preset; flags still override it, but not the architecture.
--init-from weights fix the model's shape: a preset's or default shape yields to them, a given one must agree.
A preset writes to nanogpt/out/PRESET unless --out-dir says otherwise.
"""
from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path

import checkpoint
import hardware
from cli import UserError, build_parser, check_ranges, knob
from hub import HUB_MODELS, gpt2_folder
from model import pretrained_config

HERE = Path(__file__).resolve().parent
MAX_SEED = 2**32 - 1


@dataclass
class TrainConfig:
    # data and output
    dataset: str = knob("python_stdlib", "dataset under --data-dir (prepared automatically when missing)")
    data_dir: str = knob(str(HERE / "data"), "folder holding DATASET/{train.bin,val.bin,meta.json}")
    data_source: str = knob("", "local file/folder to prepare the dataset from (e.g. Tiny Shakespeare's "
                                "input.txt offline); '' = where prepare.py gets it")
    out_dir: str = knob(str(HERE / "out" / "demo"), "where checkpoints, log.jsonl, results.json and loss.png go "
                                                    "(--preset P: nanogpt/out/P)")
    init_from: str = knob("scratch", "scratch | gpt2 | gpt2-medium | gpt2-large | gpt2-xl | PATH (a checkpoint "
                                     ".pt or a Hugging Face GPT-2 folder): the weights to start from and their "
                                     "shape (to continue a run, use --resume)")
    resume: str = knob("", "continue exactly from OUT/ckpt_last.pt (bare --resume) or from the given file",
                       nargs="?", const="last")
    # how long: epochs, with an optional budget in optimizer steps
    max_epochs: int = knob(1, "passes over train.bin", lo=1)
    max_iters: int = knob(0, "stop after this many optimizer steps in all (0: no limit)", lo=0)
    save_epochs: str = knob("1,5", "write ckpt_epoch{N}.pt after these epochs ('all', or '' for none)")
    eval_interval: int = knob(200, "evaluate every this many steps, at every epoch end and at the end (0: only "
                                   "at epoch ends and the end)", lo=0)
    eval_iters: int = knob(20, "fixed batches per split for evaluation", lo=1)
    final_eval_tokens: int = knob(2_000_000, "at the end, the exact val loss over every window of the first "
                                             "this many val.bin tokens, not a sample (0: off)", lo=0)
    log_interval: int = knob(10, "log the training loss (log.jsonl, progress bar) every this many steps", lo=1)
    num_samples: int = knob(3, "samples printed at the end", lo=0, hi=1000)
    sample_tokens: int = knob(200, "tokens per printed sample", lo=0, hi=1_000_000)
    # batch: stated in tokens, as GPT-3 does; gradient accumulation is derived from it
    batch_size: int = knob(16, "micro-batch: sequences per rank per forward pass", lo=1)
    block_size: int = knob(128, "context length in tokens", lo=1)
    batch_tokens: int = knob(0, "tokens per optimizer step over all ranks (0: batch_size*block_size*world, "
                                "no accumulation); must be a multiple of batch_size*block_size*world", lo=0)
    # model
    n_layer: int = knob(4, "transformer blocks", lo=1)
    n_head: int = knob(4, "attention heads", lo=1)
    n_embd: int = knob(128, "embedding width", lo=1)
    dropout: float = knob(0.0, "dropout probability (0 for pretraining, 0.1+ when finetuning small data)")
    bias: bool = knob(True, "biases in Linear and LayerNorm (GPT-2 has them)")
    # AdamW and schedule, GPT-3 appendix B
    learning_rate: float = knob(1e-3, "peak learning rate", lo=0)
    min_lr_ratio: float = knob(0.1, "cosine decay ends at this fraction of the peak", lo=0, hi=1)
    warmup_iters: int = knob(100, "linear warmup steps", lo=0)
    lr_decay_iters: int = knob(0, "steps of the cosine decay (0: the length of this run). Fix it when a "
                                  "resumed run gets a larger budget, so the schedule stays the same", lo=0)
    decay_lr: bool = knob(True, "warmup + cosine decay; off: constant learning rate")
    weight_decay: float = knob(0.1, "AdamW weight decay, on tensors with >= 2 dims only", lo=0)
    beta1: float = knob(0.9, "AdamW beta1")
    beta2: float = knob(0.95, "AdamW beta2")
    eps: float = knob(1e-8, "AdamW eps", lo=0)
    grad_clip: float = knob(1.0, "clip the global gradient norm to this (0: off)", lo=0)
    # system and performance switches
    device: str = knob("auto", "auto (cuda if present, else cpu) | cpu | cuda | cuda:N")
    dtype: str = knob("auto", "auto (bfloat16 on CUDA that has it, float16 on older CUDA, float32 on CPU) | "
                              "float32 | bfloat16 | float16 (autocast; float16 adds a GradScaler)")
    compile: bool | None = knob(None, "torch.compile the model (none: on with CUDA unless --fsdp, off on CPU)")
    flash: bool = knob(True, "attention through scaled_dot_product_attention (flash kernels on GPU)")
    tf32: bool = knob(True, "TF32 matmuls on Ampere or newer GPUs")
    vocab_multiple: int = knob(64, "pad a BPE vocabulary (> 256 tokens) up to a multiple of this (50257 -> 50304)")
    seed: int = knob(1337, "seed of init, data order, eval batches, dropout and samples", lo=0, hi=MAX_SEED)
    fsdp: bool = knob(False, "under torchrun, shard weights, gradients and AdamW state over the ranks (FSDP2) "
                             "instead of replicating them (DDP): for models that do not fit one GPU")
    # experiment tracking (rank 0)
    wandb: bool = knob(False, "log every evaluation and logged training step to Weights & Biases")
    wandb_project: str = knob("nanogpt", "W&B project")
    wandb_run_name: str = knob("", "W&B run name ('' = W&B's generated name)")


# named presets: overrides of the defaults above ("demo" is what `python nanogpt/train.py` runs)
PRESETS: dict[str, dict] = {
    # offline, a few minutes on a 2-core CPU: byte-level LM on the Python standard library's sources
    # (4.2M train tokens, 2066 steps per epoch; 1000 steps = 2M tokens beat the unigram baseline by far)
    "demo": dict(max_iters=1000),
    # nanoGPT's config/train_shakespeare_char.py: a 10.7M-parameter char model, minutes on one GPU
    "shakespeare_char": dict(
        dataset="shakespeare_char", n_layer=6, n_head=6, n_embd=384,
        block_size=256, batch_size=64, dropout=0.2, bias=False, learning_rate=1e-3, beta2=0.99, warmup_iters=100,
        max_epochs=1000, max_iters=5000, lr_decay_iters=5000, eval_interval=250, eval_iters=200,
    ),
    # nanoGPT README's CPU recipe for the same data (val ~1.88 after 2000 steps)
    "shakespeare_char_cpu": dict(
        dataset="shakespeare_char", device="cpu", compile=False,
        n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, dropout=0.0, bias=False, learning_rate=1e-3,
        beta2=0.99, warmup_iters=100, max_epochs=1000, max_iters=2000, lr_decay_iters=2000,
        eval_interval=250, eval_iters=20,
    ),
    # GPT-2 124M from scratch with the GPT-3 small recipe: ~0.5M tokens per step (12 * 1024 * 40); 600k
    # steps (~300B tokens) are ~33 epochs of OpenWebText's 9B, so the step budget, not max_epochs, ends it
    "gpt2": dict(
        dataset="openwebtext", n_layer=12, n_head=12, n_embd=768, block_size=1024,
        batch_size=12, batch_tokens=491_520, dropout=0.0, learning_rate=6e-4, warmup_iters=2000,
        max_epochs=1000, max_iters=600_000, lr_decay_iters=600_000, eval_interval=1000, eval_iters=200,
        log_interval=10,
    ),
    # finetune OpenAI's GPT-2 (124M) on Tiny Shakespeare, GPT-2 BPE tokens
    "finetune_shakespeare": dict(
        dataset="shakespeare", init_from="gpt2", block_size=1024,
        batch_size=1, batch_tokens=32 * 1024, dropout=0.0, learning_rate=3e-5, decay_lr=False,
        max_epochs=10, max_iters=20, eval_interval=5, eval_iters=40, save_epochs="1",
    ),
    # the same fine-tune sized for a laptop CPU (minutes, not hours): 50 steps of 4 x 128 tokens (25,600 tokens,
    # not 655,360), small evaluations; on a CPU the output layer over 50,257 tokens is most of the step
    "finetune_shakespeare_cpu": dict(
        dataset="shakespeare", init_from="gpt2", device="cpu", compile=False, block_size=128, batch_size=4,
        dropout=0.0, learning_rate=3e-5, decay_lr=False, max_epochs=1, max_iters=50, eval_interval=10,
        eval_iters=4, final_eval_tokens=16_384, num_samples=1, sample_tokens=100, save_epochs="",
    ),
}

MODEL_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "bias")  # fixed by a checkpoint when resuming
LAUNCH_KEYS = ("fsdp",)  # how this launch runs, not taken from the checkpoint: FSDP, DDP and one process resume


def resolve_config(argv=None, description: str = "") -> tuple[TrainConfig, checkpoint.Checkpoint | None]:
    """-> (config, the checkpoint when resuming, read once). See the module docstring for precedence."""
    parser = build_parser(TrainConfig, "train.py", description)
    parser.add_argument("--preset", help=f"named settings: {', '.join(PRESETS)} (default: demo)")
    parser.add_argument("--config", metavar="FILE", help="TOML or JSON file of field = value (after the preset)")
    flags = vars(parser.parse_args(argv))
    config_file = flags.pop("config", None)
    file_cfg = read_config_file(config_file) if config_file else {}
    preset = flags.pop("preset", file_cfg.pop("preset", "demo"))
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    overrides = {**file_cfg, **flags}
    cfg = TrainConfig(**{**PRESETS[preset], "out_dir": str(HERE / "out" / preset), **overrides})
    if cfg.init_from == "resume" and not cfg.resume:  # nanoGPT's spelling of --resume
        cfg.resume = "last"
    if not cfg.resume:
        if cfg.init_from != "scratch":
            cfg = follow_weights(cfg, {**{k: f"in {config_file}" for k in file_cfg}, **{k: "typed" for k in flags}})
        return cfg, None
    path = Path(cfg.out_dir) / "ckpt_last.pt" if cfg.resume == "last" else Path(cfg.resume)
    if not path.is_file():
        raise UserError(f"no checkpoint to resume from at {path}")
    saved = checkpoint.read(path, resumable=True)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    base = TrainConfig(**{k: v for k, v in saved.config.items() if k in known and k not in LAUNCH_KEYS})
    for k in MODEL_KEYS:  # the architecture is the checkpoint's
        if k in overrides and getattr(base, k) != overrides[k]:
            raise UserError(f"--{k.replace('_', '-')} {overrides[k]} differs from the checkpoint's "
                            f"{getattr(base, k)}; a resumed run keeps its architecture")
    return dataclasses.replace(base, **{**overrides, "resume": str(path)}), saved


SHAPE_KEYS = ("n_layer", "n_head", "n_embd", "bias")  # fixed by --init-from weights


def follow_weights(cfg: TrainConfig, given: dict[str, str]) -> TrainConfig:
    """cfg with the model shape of its --init-from weights: a preset's or default shape yields to them; one the
    user gave (`given`: field -> "typed" or where it was set) that contradicts them is refused. A shorter
    --block-size crops the positions; a longer one is refused, a preset's or default one shortened."""
    if cfg.init_from in HUB_MODELS:  # OpenAI's sizes: known without a download
        have = dict(zip(("n_layer", "n_head", "n_embd"), HUB_MODELS[cfg.init_from]), bias=True, block_size=1024)
    elif Path(cfg.init_from).is_file():
        have = checkpoint.read(cfg.init_from).model_args
    elif Path(cfg.init_from).is_dir():
        try:
            have = dataclasses.asdict(pretrained_config(gpt2_folder(cfg.init_from)))
        except ValueError as e:
            raise UserError(str(e).splitlines()[0]) from None
    else:
        return cfg  # refused by check_config, naming what --init-from may be
    for k in SHAPE_KEYS:
        if k in given and getattr(cfg, k) != have[k]:
            raise UserError(f"--{k.replace('_', '-')} {getattr(cfg, k)} ({given[k]}) contradicts --init-from "
                            f"{cfg.init_from}, whose weights have --{k.replace('_', '-')} {have[k]}; leave it out")
    if "block_size" in given and cfg.block_size > have["block_size"]:
        raise UserError(f"--block-size {cfg.block_size} ({given['block_size']}) is larger than --init-from "
                        f"{cfg.init_from} allows ({have['block_size']} positions)")
    return dataclasses.replace(cfg, **{k: have[k] for k in SHAPE_KEYS},
                               block_size=min(cfg.block_size, have["block_size"]))


def read_config_file(path: str) -> dict:
    """A TOML (tomllib) or JSON file of field = value, each checked against the field's type. Never executed."""
    p = Path(path)
    try:
        text = p.read_bytes()
        data = tomllib.loads(text.decode()) if p.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read config file {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a table/object of settings")
    hints = typing.get_type_hints(TrainConfig)
    out = {}
    for key, value in data.items():
        key = key.replace("-", "_")
        if key != "preset" and key not in hints:
            raise UserError(f"config file {path}: unknown setting {key!r}; see train.py --help")
        out[key] = value if key == "preset" else _typed(key, value, hints[key], path)
    return out


def _typed(name: str, value, hint, path):
    if hint in (bool, bool | None):
        ok = isinstance(value, bool) or (hint != bool and value is None)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, hint) and not isinstance(value, bool)
    if not ok:
        what = "a finite number" if hint is float else getattr(hint, "__name__", "true/false")
        raise UserError(f"config file {path}: {name} must be {what}, got {value!r}")
    return value


def check_config(cfg: TrainConfig, world_size: int) -> int:
    """The checks, before anything is loaded: each knob's range, then the rules that involve several fields.
    -> the gradient-accumulation steps per rank."""
    check_ranges(cfg)
    if cfg.n_embd % cfg.n_head:
        raise UserError(f"--n-embd {cfg.n_embd}: must be a multiple of --n-head {cfg.n_head}")
    hardware.check_model_fits(cfg.n_layer, cfg.n_embd, cfg.block_size)
    for name in ("dropout", "beta1", "beta2"):  # half-open: a closed knob range cannot state [0, 1)
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise UserError(f"--{name} {getattr(cfg, name)}: must be in [0, 1)")
    parse_save_epochs(cfg.save_epochs)
    # a resumed run takes its weights from the checkpoint, so the original --init-from may be gone
    if not (cfg.resume or cfg.init_from in ("scratch", "resume", *HUB_MODELS) or Path(cfg.init_from).exists()):
        raise UserError(f"--init-from {cfg.init_from!r}: not scratch, resume, one of {', '.join(HUB_MODELS)}, "
                        f"or an existing checkpoint file / GPT-2 folder")
    micro = cfg.batch_size * cfg.block_size * world_size  # tokens of one micro-step over all ranks
    batch_tokens = cfg.batch_tokens or micro
    if batch_tokens % micro:
        raise UserError(f"--batch-tokens {batch_tokens}: must be a multiple of --batch-size * --block-size * "
                        f"world size = {cfg.batch_size} * {cfg.block_size} * {world_size} = {micro}")
    return batch_tokens // micro


def parse_save_epochs(text: str) -> set[int] | None:
    """'1,5' -> {1, 5}; 'all' -> None (every epoch); '' -> set()."""
    text = text.strip()
    if text == "all":
        return None
    try:
        return {int(t) for t in text.split(",") if t.strip()}
    except ValueError:
        raise UserError(f"--save-epochs {text!r}: must be like '1,5', 'all' or ''") from None
