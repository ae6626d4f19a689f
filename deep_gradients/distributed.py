"""The processes of a run: torchrun's ranks, the device of each, and what they must agree on (BatchNorm
statistics, when to stop after a signal, identical weights at the end). One process without torchrun.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

import hardware
from cli import StopSignal

STOP_CHECK = 16  # under torchrun the ranks agree on a stop signal every this many steps (one tiny all-reduce)


@dataclass
class Ranks:
    rank: int
    local_rank: int
    world: int
    device: torch.device
    ddp: bool = False  # started by torchrun: a process group (also with one process) and a DDP model

    @property
    def master(self) -> bool:
        return self.rank == 0


def rank() -> int:
    """This process's rank, also before setup (0 without torchrun)."""
    return int(os.environ.get("RANK", 0))


def setup(device: str) -> Ranks:
    """torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; otherwise 1 process. nccl on GPUs, gloo on CPUs."""
    ddp = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    env = (lambda key: int(os.environ.get(key, 0))) if ddp else (lambda key: 0)
    dev = hardware.resolve_device(device, env("LOCAL_RANK"), int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if ddp:
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Ranks(env("RANK"), env("LOCAL_RANK"), env("WORLD_SIZE") if ddp else 1, dev, ddp)


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


def stop_agreed(ranks: Ranks, stop: StopSignal, i: int, steps_per_epoch: int) -> bool:
    """Whether to stop after step i of an epoch; every rank answers the same (they compare every STOP_CHECK
    steps and at the epoch's end, so a signal to one rank stops all at the same step)."""
    if ranks.world == 1:
        return stop.name is not None
    if (i + 1) % STOP_CHECK and i + 1 != steps_per_epoch:
        return False
    flag = torch.tensor([float(stop.name is not None)], device=ranks.device)
    dist.all_reduce(flag)
    return flag.item() > 0
