"""Helpers of nanogpt's tests: a tiny model and dataset, and ways to run a script's main and read what it wrote."""
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import prepare
from cli import run_main

# a model and a budget small enough for seconds-long runs; tests add data/out dirs and budgets
TINY = ["--n-layer", 2, "--n-head", 2, "--n-embd", 32, "--block-size", 16, "--batch-size", 4,
        "--eval-iters", 2, "--eval-interval", 10, "--log-interval", 5, "--num-samples", 0,
        "--warmup-iters", 5, "--learning-rate", 3e-3, "--device", "cpu", "--dtype", "float32", "--no-compile"]
STEPS_PER_EPOCH = 31  # 2048 tokens / 16 = 127 windows, 4 per step


def make_tiny_dataset(source: Path, data_dir: Path, n_train=2048, n_val=512, name="shakespeare_char") -> Path:
    """prepare.py's shakespeare_char, cut to n_train / n_val tokens (meta.json says so) so an epoch is short."""
    prepare.prepare(name, str(data_dir), source=str(source), verbose=False)
    folder = data_dir / name
    meta = json.loads((folder / "meta.json").read_text())
    for split, n in (("train", n_train), ("val", n_val)):
        tokens = np.fromfile(folder / f"{split}.bin", dtype=np.uint16)[:n]
        tokens.tofile(folder / f"{split}.bin")
        meta[f"{split}_tokens"] = len(tokens)
    (folder / "meta.json").write_text(json.dumps(meta))
    return data_dir


def read_log(out_dir: Path) -> list[dict]:
    """log.jsonl's evaluation records (the logged training steps are the records without val_loss)."""
    return [r for r in read_records(out_dir) if "val_loss" in r]


def read_records(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(out_dir) / "log.jsonl").read_text().splitlines()]


def run_args(data_dir, out_dir, *extra):
    return [*TINY, "--dataset", "shakespeare_char", "--data-dir", data_dir, "--out-dir", out_dir, *extra]


def weights_args(data_dir, out_dir, *extra):
    """run_args without the model's shape (--n-layer, --n-head, --n-embd): for an --init-from run, whose weights fix
    it (a typed contradicting flag is refused)."""
    args = run_args(data_dir, out_dir, *extra)
    for flag in ("--n-layer", "--n-head", "--n-embd"):
        i = args.index(flag)
        del args[i:i + 2]
    return args


def call_main(script, capsys, *args) -> subprocess.CompletedProcess:
    """A script's main(argv) (the module or its main) in this process (fast: no interpreter start), as its command
    line runs it (one-line errors, exit codes), returned as a CompletedProcess."""
    with pytest.raises(SystemExit) as e:
        run_main(getattr(script, "main", script), [str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, e.value.code, out, err)


def tiny_gpt(**kw):
    """A 2-layer, 32-wide GPT in eval mode, the same weights every call."""
    import model

    args = dict(block_size=32, vocab_size=61, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    args.update(kw)
    torch.manual_seed(0)
    return model.GPT(model.GPTConfig(**args)).eval()


def big_wikitext_source(tmp_path: Path, shared_file) -> Path:
    """A folder of ~20 MB of WikiText-2 text: many seconds of GPT-2 BPE tokenizing with a pool."""
    folder = shared_file("wikitext-2/wiki.valid.tokens").parent
    src = tmp_path / "src"
    src.mkdir()
    text = "".join((folder / n).read_text() for n in ("wiki.test.tokens", "wiki.valid.tokens"))
    for i in range(8):
        (src / f"part{i}.txt").write_text(text)
    return src


def signal_once_preparing(script: str, args: list, data: Path, sig, start_s: float, exit_s: float):
    """Run nanogpt/SCRIPT ARGS, send SIG once the pooled preparation of dataset "big" into DATA has written
    tokens, and wait for the exit -> (returncode, stderr, seconds from the signal to the exit)."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, str(root / "nanogpt" / script), *map(str, args)], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + start_s
        while not any((p / "train.bin").exists() and (p / "train.bin").stat().st_size > 0
                      for p in data.glob(".big.tmp-*")):
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(sig)
        t0 = time.time()
        _, err = proc.communicate(timeout=exit_s)
    finally:
        proc.kill()
    return proc.returncode, err, time.time() - t0
