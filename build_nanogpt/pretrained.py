"""Where a model's weights come from: a fresh init of the config's shape, or trained weights.

Trained weights (`train.py --init-from`, `hellaswag.py --model`) are one of
- a hub name: gpt2 | gpt2-medium | gpt2-large | gpt2-xl (downloaded once by huggingface_hub),
- a Hugging Face GPT-2 folder (`save_pretrained`: config.json + model.safetensors or pytorch_model.bin),
- a checkpoint of this train.py or of nanogpt's (a torch file with `model` and `model_args`; the state dict
  may carry torch.compile's `_orig_mod.` or DDP's `module.` prefixes), or the run folder that holds it (its
  ckpt.pt, or nanogpt's ckpt_last.pt), as nanogpt's sample.py and export.py take one.
Fine-tuning takes the architecture from the weights: model flags left at their defaults, or set by a preset,
follow them; a flag the user typed that contradicts them is refused (a shorter --block-size crops). GPT-2's 50,257-token table is padded to --vocab-size (50,304: faster
matmuls); the padded ids get probability 0, so the loss is the one the original model computes.
"""
from __future__ import annotations

import dataclasses
import os

import torch

from checkpoint import read_checkpoint
from cli import UserError
import modern
from model import GPT, GPTConfig
from tokens import GPT2_VOCAB

HUB = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
SHAPE = ("n_layer", "n_head", "n_embd", "block_size")
_BASE_ARGS = ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "flash")


def model_args_of(config: GPTConfig) -> dict:
    """The config as a checkpoint records it: the base fields, plus others where they differ from GPT-2's."""
    default = GPTConfig()
    return {k: v for k, v in dataclasses.asdict(config).items() if k in _BASE_ARGS or v != getattr(default, k)}


def _strip(state: dict) -> dict:
    return {k.removeprefix("_orig_mod.").removeprefix("module."): v for k, v in state.items()}


def _config_of(path: str, model_args: dict) -> GPTConfig:
    """The GPTConfig a checkpoint's model_args describe; nanogpt's fields mapped onto this model's."""
    args = dict(model_args)
    nanogpt = "layer_norm_eps" in args  # nanogpt records it; train.py's model_args never do
    args.pop("dropout", None)  # training-time only
    if args.pop("layer_norm_eps", 1e-5) != 1e-5:
        raise UserError(f"{path}: a layer_norm_eps other than 1e-5 is not supported by this model")
    if nanogpt:
        args.setdefault("gelu_approximate", "none")  # nanogpt's default: the exact GELU
        if args.get("vocab_size", 0) > GPT2_VOCAB:  # GPT-2's table padded (50,304): its export crops the
            args.setdefault("n_real_tokens", GPT2_VOCAB)  # padding, so the padded ids get probability 0 here
    unknown = set(args) - {f.name for f in dataclasses.fields(GPTConfig)}
    if unknown:
        raise UserError(f"{path}: model settings {sorted(unknown)} are not supported by this model")
    try:
        config = GPTConfig(**args)
        ok = min(config.n_layer, config.n_head, config.n_embd, config.block_size, config.vocab_size) >= 1
    except TypeError:
        ok = False
    if not ok or config.n_embd % config.n_head:
        raise UserError(f"{path}: model_args {model_args} do not describe a GPT")
    return config


def from_checkpoint(path: str) -> GPT:
    """A train.py or nanogpt checkpoint -> GPT; one UserError line for any file that is not one."""
    what = "train.py or nanogpt"
    folder = os.path.dirname(os.path.abspath(path))
    if path.endswith((".safetensors", "config.json")) and os.path.exists(os.path.join(folder, "config.json")):
        raise UserError(f"{path} is part of a Hugging Face folder: pass the folder, {folder}")
    ckpt = read_checkpoint(path, keys=("model", "model_args"), what=what)
    args, state = ckpt["model_args"], ckpt["model"]
    if not (isinstance(args, dict) and isinstance(state, dict)
            and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise UserError(f"{path} is not a checkpoint of {what} ('model' is not a state dict "
                        "or 'model_args' not a dict of settings)")
    if args.get("arch") == "modern":  # modern.py's model: model_args are its ModernConfig and "arch"
        try:
            model = modern.ModernGPT(modern.ModernConfig(**{k: v for k, v in args.items() if k != "arch"}))
        except (TypeError, AssertionError) as e:
            raise UserError(f"{path}: model_args {args} do not describe a modern.py model ({e})") from None
    else:
        model = GPT(_config_of(path, args))
    try:
        missing, extra = model.load_state_dict(_strip(state), strict=False)
        why = f"missing {missing[:3]}, extra {extra[:3]}" if missing or extra else ""
    except RuntimeError as e:  # tensors of other shapes
        why = (str(e).strip().splitlines() or [type(e).__name__])[-1].strip()[:200]
    if why:
        raise UserError(f"{path}: the weights do not fit the model its model_args describe ({why})")
    return model


def load_weights(spec: str) -> GPT:
    """Trained weights by file, folder or hub name (see the module docstring)."""
    if os.path.isfile(spec):
        return from_checkpoint(spec)
    if os.path.isdir(spec):
        if not os.path.exists(os.path.join(spec, "config.json")):  # a run folder means its checkpoint
            runs = [os.path.join(spec, n) for n in ("ckpt.pt", "ckpt_last.pt") if os.path.isfile(os.path.join(spec, n))]
            if not runs:
                raise UserError(f"folder {spec!r} has no config.json (a Hugging Face GPT-2 folder), ckpt.pt (a run of "
                                "train.py) or ckpt_last.pt (a run of nanogpt)")
            return from_checkpoint(runs[0])
        try:
            return GPT.from_hf(spec)
        except Exception as e:  # noqa: BLE001 - no weights file, not a GPT-2 config, keys that do not match
            first = (str(e).strip().splitlines() or [""])[0][:160]
            raise UserError(f"folder {spec!r} is not a Hugging Face GPT-2 checkpoint "
                            f"({type(e).__name__}: {first})") from None
    if spec in HUB or spec.startswith("openai-community/"):
        try:
            from huggingface_hub import snapshot_download  # noqa: PLC0415 - only needed for hub names

            local = snapshot_download(spec, allow_patterns=["config.json", "model.safetensors"])
        except Exception as e:  # noqa: BLE001 - offline, unknown name, hub down
            raise UserError(f"could not fetch {spec!r} from the Hugging Face hub ({type(e).__name__}); "
                            "pass a local folder or checkpoint") from None
        return GPT.from_hf(local)
    raise UserError(f"{spec!r}: not a file, a folder, or one of {', '.join(HUB)}")


def reshape(model: GPT, config: GPTConfig) -> GPT:
    """The same weights in a model of `config`: token table padded with zero rows, positions cropped."""
    new = GPT(config)
    state = model.state_dict()
    with torch.no_grad():
        for k, v in new.state_dict().items():
            src = state[k][:v.shape[0]] if k == "transformer.wpe.weight" else state[k]
            v.zero_()[:src.shape[0]] = src
    return new


def modern_config(cfg) -> modern.ModernConfig:
    """The modern.py model that train.py's settings describe (`--arch modern`)."""
    return modern.ModernConfig(block_size=cfg.block_size, vocab_size=cfg.vocab_size, n_layer=cfg.n_layer,
                               n_head=cfg.n_head, n_embd=cfg.n_embd,
                               **{name: getattr(cfg, name) for name in modern.SWITCHES})


def init_model(cfg, typed: set[str] | None = None) -> tuple[GPT | modern.ModernGPT, dict]:
    """The model train.py starts from, and its model_args: a fresh one, or `--init-from` weights.
    `--arch modern`: a fresh modern.py model; its model_args are its whole ModernConfig and "arch".
    With weights, `typed` names the settings the user typed: a shape they typed that contradicts the weights
    is refused; one that came from a preset yields to the weights (a shorter block_size, typed or preset,
    crops the positions). typed=None: every setting that differs from the default counts as typed."""
    if cfg.arch == "modern":
        config = modern_config(cfg)
        return modern.ModernGPT(config), {"arch": "modern", **dataclasses.asdict(config)}
    if cfg.init_from == "scratch":
        config = GPTConfig(block_size=cfg.block_size, vocab_size=cfg.vocab_size, n_layer=cfg.n_layer,
                           n_head=cfg.n_head, n_embd=cfg.n_embd, flash=cfg.flash)
        return GPT(config), model_args_of(config)
    model = load_weights(cfg.init_from)
    theirs, default = model.config, type(cfg)()
    if typed is None:
        typed = {name for name in SHAPE if getattr(cfg, name) != getattr(default, name)}
    real = theirs.n_real_tokens or theirs.vocab_size
    if real < GPT2_VOCAB:  # e.g. a character-level model: the shards hold GPT-2 token ids it cannot embed
        raise UserError(f"--init-from {cfg.init_from}: a {real}-token vocabulary, not GPT-2's {GPT2_VOCAB:,} "
                        "BPE tokens that the shards hold; fine-tune a GPT-2-vocabulary model")
    for name in SHAPE:
        given, have = getattr(cfg, name), getattr(theirs, name)
        if name in typed and given != have and not (name == "block_size" and given < have):
            raise UserError(f"--{name.replace('_', '-')} {given} (typed on the command line) contradicts "
                            f"--init-from {cfg.init_from} ({name} {have}); leave it out")
    shorter = cfg.block_size != default.block_size and cfg.block_size < theirs.block_size
    block = cfg.block_size if shorter else theirs.block_size
    vocab = max(cfg.vocab_size, theirs.vocab_size)
    real = theirs.n_real_tokens or (theirs.vocab_size if vocab > theirs.vocab_size else 0)
    config = dataclasses.replace(theirs, block_size=min(block, theirs.block_size), vocab_size=vocab,
                                 flash=cfg.flash, n_real_tokens=real)
    return reshape(model, config), model_args_of(config)
