"""Helpers of nanogpt's tests: a tiny model and dataset, and ways to run train.py and read what it wrote."""
import json
import subprocess
from pathlib import Path

import numpy as np

# a model and a budget small enough for seconds-long runs; tests add data/out dirs and budgets
TINY = ["--n-layer", 2, "--n-head", 2, "--n-embd", 32, "--block-size", 16, "--batch-size", 4,
        "--eval-iters", 2, "--eval-interval", 10, "--log-interval", 5, "--num-samples", 0,
        "--warmup-iters", 5, "--learning-rate", 3e-3, "--device", "cpu", "--dtype", "float32", "--no-compile"]


def make_tiny_dataset(prepare, source: Path, data_dir: Path, n_train=2048, n_val=512) -> Path:
    """prepare.py's shakespeare_char, cut to n_train / n_val tokens so an epoch is short."""
    prepare.prepare("shakespeare_char", str(data_dir), source=str(source))
    folder = data_dir / "shakespeare_char"
    for name, n in (("train.bin", n_train), ("val.bin", n_val)):
        tokens = np.fromfile(folder / name, dtype=np.uint16)[:n]
        tokens.tofile(folder / name)
    return data_dir


def read_log(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(out_dir) / "log.jsonl").read_text().splitlines()]


def run_args(data_dir, out_dir, *extra):
    return [*TINY, "--dataset", "shakespeare_char", "--data-dir", data_dir, "--out-dir", out_dir, *extra]


def call_main(train, capsys, *args) -> subprocess.CompletedProcess:
    """train.main(argv) in this process (fast: no interpreter start), as a CompletedProcess."""
    code = train.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)
