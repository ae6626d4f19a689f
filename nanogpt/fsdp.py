"""Fully sharded data parallel (FSDP2) for models whose weights plus AdamW state do not fit one GPU.

    torchrun --standalone --nproc_per_node=8 nanogpt/train.py --preset finetune_shakespeare \
        --init-from gpt2-xl --fsdp

Each transformer block, and then the root (embeddings, final LayerNorm, tied output layer), is one
`fully_shard` unit: every rank keeps 1/world of each parameter, its gradient and its AdamW moments, and
all-gathers one unit's weights just before that unit runs. The tied `wte`/`lm_head` weight lives in the root
unit, so it stays one parameter. On CUDA with bfloat16 the gathered weights are bfloat16 and gradients are
reduced in float32; the sharded master weights and the optimizer stay float32.

Checkpoints hold full, unsharded tensors in the layout a single process writes (`model` keyed by parameter
name, `optimizer` as `torch.optim.Optimizer.state_dict()` with integer ids), gathered to rank 0, so one
checkpoint resumes under FSDP, DDP or one process. train.py imports this module only with --fsdp: it needs
torch >= 2.6, which the other paths do not. Reference: PyTorch's FSDP2 (`fully_shard`) and
`torch.distributed.checkpoint.state_dict` docs.
"""
from __future__ import annotations

import contextlib

import torch
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_optimizer_state_dict)

from cli import UserError
from model import GPT

try:
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
except ImportError:  # the public FSDP2 path is torch 2.6's
    raise UserError(f"--fsdp needs torch >= 2.6 (torch.distributed.fsdp.fully_shard); this is torch "
                    f"{torch.__version__}") from None

GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)  # full tensors, on rank 0's CPU only


def check(distributed: bool, dtype: str, compile_: bool | None) -> None:
    """Refuse settings FSDP does not run with, in one line."""
    if not distributed:
        raise UserError("--fsdp shards the model over the processes of torchrun; run it under torchrun "
                        "(e.g. torchrun --standalone --nproc_per_node=2 nanogpt/train.py --fsdp ...)")
    if dtype == "float16":
        raise UserError("--fsdp runs in float32 or bfloat16 (--dtype bfloat16), not float16")
    if compile_:
        raise UserError("--fsdp does not compile the model; pass --no-compile (the default with --fsdp)")


class Sharded:
    """A GPT sharded in place over every rank of the default group, with what train.py needs of it: the full
    state gathered to rank 0 (checkpoints, samples) and the optimizer restored from the one-process layout.
    train.Replicated has the same methods for a model every rank holds whole."""

    def __init__(self, model: GPT, device: str, dtype: str):
        cuda = device.startswith("cuda")
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if (
            cuda and dtype == "bfloat16") else MixedPrecisionPolicy()
        mesh = torch.distributed.device_mesh.init_device_mesh("cuda" if cuda else "cpu",
                                                              (torch.distributed.get_world_size(),))
        for block in model.transformer.h:
            fully_shard(block, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
        # DDP's name for "accumulate, do not reduce" (FSDP1 had it too), so train_step treats both alike
        model.no_sync = lambda: _no_sync(model)
        self.model = model

    def all_finite(self) -> bool:
        """Whether every weight is finite, on every rank (each rank checks its shards; a collective)."""
        local = [p.to_local() if hasattr(p, "to_local") else p for p in self.model.parameters()]
        finite = torch.stack([p.detach().isfinite().all() for p in local]).all()
        torch.distributed.all_reduce(finite := finite.int(), op=torch.distributed.ReduceOp.MIN)
        return bool(finite.item())

    def full_state(self, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
        """(model state_dict, optimizer state_dict) as one process holds them: a collective (call it on every
        rank) that gathers full CPU tensors to rank 0; other ranks get empty dicts."""
        model_sd = get_model_state_dict(self.model, options=GATHER)
        by_name = get_optimizer_state_dict(self.model, optimizer, options=GATHER)
        if not model_sd:
            return {}, {}
        index = {name: i for i, name in enumerate(_param_names(self.model, optimizer))}
        groups = [{**g, "params": [index[name] for name in g["params"]]} for g in by_name["param_groups"]]
        return model_sd, {"state": {index[name]: s for name, s in by_name["state"].items()}, "param_groups": groups}

    def load_optimizer(self, optimizer: torch.optim.Optimizer, state: dict) -> None:
        """Optimizer.state_dict() layout (every rank holds it whole) -> the sharded optimizer."""
        names = _param_names(self.model, optimizer)
        groups = [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]
        by_name = {"state": {names[i]: s for i, s in state["state"].items()}, "param_groups": groups}
        set_optimizer_state_dict(self.model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))

    def plain_model(self) -> GPT | None:
        """A plain float32 copy in rank 0's host memory (None elsewhere; a collective), for work only rank 0
        does (samples): never on its GPU, which may not hold the whole model (the reason for --fsdp)."""
        state = get_model_state_dict(self.model, options=GATHER)
        if not state:
            return None
        plain = GPT(self.model.config)
        plain.load_state_dict(state)
        return plain


@contextlib.contextmanager
def _no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def _param_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The name of each optimizer parameter, in the order Optimizer.state_dict() numbers them."""
    names = {id(p): name for name, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
