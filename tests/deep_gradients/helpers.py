"""Shared helpers of deep_gradients's tests (plain functions, not fixtures)."""
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import torch

import hardware
import train

# a tiny run: ResNet-8 of width 4 on 256 digits, 4 steps of 64 per epoch; CPU, as every non-gpu test
TINY = dict(depth=8, width=4, train_subset=256, batch_size=64, progress=False, device="cpu")
# a tiny run that learns: 512 digits, 16 steps of 32 per epoch, 4 epochs: chance is 10%, it reaches ~80%
LEARNS = dict(train_subset=512, max_epochs=4, width=8, batch_size=32, learning_rate=0.1, augment=0)
TINY_ARGS = ("--depth", "8", "--width", "4", "--train-subset", "256", "--batch-size", "64", "--no-progress",
             "--device", "cpu")


def assert_made_here_now(res: dict) -> None:
    """A results file's opening: this machine (its core count and torch version), this process's thread count and
    a date (UTC, to the minute) of the last half hour."""
    assert res["machine"] == hardware.machine_line(), res["machine"]
    assert res["machine"].startswith(f"{os.cpu_count()} CPU cores") and f"torch {torch.__version__};" in res["machine"]
    assert res["torch_threads"] == torch.get_num_threads(), res["torch_threads"]
    made = datetime.strptime(res["date"], "%Y-%m-%d %H:%M UTC").replace(tzinfo=timezone.utc)
    assert timedelta(0) <= datetime.now(timezone.utc) - made < timedelta(minutes=30), res["date"]


def config(out_dir: Path, **kw) -> train.Config:
    return train.Config(**{**TINY, "out_dir": str(out_dir), **kw})


def training_flops_per_image(cfg: dict) -> int:
    """Forward + backward FLOPs of one image of the network of `cfg`, counted by torch's FlopCounterMode on a real
    backward (the input's gradient included: PaLM's convention, 3x the forward), independently of model.py."""
    from torch.utils.flop_counter import FlopCounterMode

    import model

    net = model.from_config(cfg)
    x = torch.randn(1, 1, 28, 28, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(net(x), torch.tensor([3])).backward()
    return counter.get_total_flops()


def weights(out_dir: Path) -> dict:
    return torch.load(Path(out_dir) / "ckpt.pt", weights_only=True)["model"]


def results(out_dir: Path) -> dict:
    return json.loads((Path(out_dir) / "results.json").read_text())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
