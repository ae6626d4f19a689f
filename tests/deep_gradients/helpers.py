"""Shared helpers of deep_gradients's tests (plain functions, not fixtures)."""
import json
from pathlib import Path

import torch

import train

# a tiny run: ResNet-8 of width 4 on 256 digits, 4 steps of 64 per epoch; CPU, as every non-gpu test
TINY = dict(depth=8, width=4, train_subset=256, batch_size=64, progress=False, device="cpu")
TINY_ARGS = ("--depth", "8", "--width", "4", "--train-subset", "256", "--batch-size", "64", "--no-progress",
             "--device", "cpu")


def config(out_dir: Path, **kw) -> train.Config:
    return train.Config(**{**TINY, "out_dir": str(out_dir), **kw})


def weights(out_dir: Path) -> dict:
    return torch.load(Path(out_dir) / "ckpt.pt", weights_only=True)["model"]


def results(out_dir: Path) -> dict:
    return json.loads((Path(out_dir) / "results.json").read_text())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
