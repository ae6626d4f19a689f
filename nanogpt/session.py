"""How a run is set up before its first step: its model (from scratch, a checkpoint or GPT-2 weights), its
position when resuming (checked against the data and the step size), and what only rank 0 does."""
from __future__ import annotations

from pathlib import Path

import torch.distributed as dist

import checkpoint
from checkpoint import Checkpoint, RunState
from cli import UserError
from config import TrainConfig
from hub import gpt2_folder
from model import GPT, GPTConfig


def build_model(cfg: TrainConfig, meta: dict, saved: Checkpoint | None) -> GPT:
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
        raise UserError(f"--block-size {cfg.block_size} is larger than {cfg.init_from} allows "
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


def resumed_state(run_cfg: TrainConfig, windows: tuple[int, int], identity: dict, saved: Checkpoint) -> RunState:
    """The checkpoint's position, which means something only on the same data with the same step size."""
    dataset = saved.dataset or identity
    if dataset != identity:
        changed = ", ".join(k for k in identity if dataset.get(k) != identity[k])
        raise UserError(f"cannot resume: dataset {run_cfg.dataset!r} in {run_cfg.data_dir} is not the data the "
                        f"checkpoint trained on ({changed} differ); resume on that data, or start a new run "
                        f"from its weights with --init-from {run_cfg.resume}")
    if saved.windows != windows:  # (windows per step, windows per epoch)
        raise UserError(f"cannot resume: a step now takes {windows[0]} of {windows[1]} windows per "
                        f"epoch, the checkpoint's took {saved.windows[0]} of {saved.windows[1]}; keep "
                        f"--batch-size * accumulation * world size (set --batch-tokens when changing GPUs)")
    return saved.state


def compiled(cfg: TrainConfig, device: str) -> bool:
    return cfg.compile if cfg.compile is not None else device.startswith("cuda") and not cfg.fsdp

