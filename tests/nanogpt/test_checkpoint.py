"""nanogpt/checkpoint.py: safe loading (no code runs, no unsafe advice), atomic saves, RNG state round trip."""
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import checkpoint
import train
from cli import UserError
from helpers import call_main

ROOT = Path(__file__).resolve().parents[2]


def test_tampered_checkpoint_is_refused(capsys, clean_error, tmp_path):
    class Evil:  # unpickling this would run a command
        def __reduce__(self):
            return (subprocess.call, (["touch", str(tmp_path / "pwned")],))

    bad = tmp_path / "ckpt_last.pt"
    torch.save({"model": {}, "model_args": {}, "config": {}, "payload": Evil()}, bad)
    r = call_main(train.main, capsys, "--resume", bad)
    clean_error(r, "refusing to load checkpoint", str(bad), "objects other than tensors")
    assert "weights_only" not in r.stderr  # never advise the unsafe load
    assert not (tmp_path / "pwned").exists()
    weights_only = tmp_path / "weights.pt"  # model and model_args, no training state: not resumable
    torch.save({"model": {}, "model_args": {}}, weights_only)
    clean_error(call_main(train.main, capsys, "--resume", weights_only), "no training state", "'config' is missing")
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    clean_error(call_main(train.main, capsys, "--resume", damaged), "refusing to load", "damaged")


def test_save_is_atomic_and_writes_every_name(tmp_path, monkeypatch):
    path = checkpoint.save({"model": {"w": torch.ones(3)}, "model_args": {}}, tmp_path, ["a.pt", "b.pt"])
    assert path == tmp_path / "b.pt"
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()

    def full_disk(obj, f, *a, **k):
        open(f, "wb").write(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    before = (tmp_path / "a.pt").read_bytes()
    with pytest.raises(UserError, match="no space left on the device"):
        checkpoint.save({"model": {}}, tmp_path, ["a.pt"])
    assert (tmp_path / "a.pt").read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]


def test_rng_state_round_trip():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = checkpoint.rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpoint.set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_weights_sha256_ignores_prefixes_and_sees_one_bit():
    sd = {"a.weight": torch.ones(2, 2), "b": torch.zeros(3)}
    h = checkpoint.weights_sha256(sd)
    assert checkpoint.weights_sha256({"_orig_mod." + k: v for k, v in sd.items()}) == h
    sd["b"][1] = 1e-30
    assert checkpoint.weights_sha256(sd) != h


@pytest.mark.parametrize("content", [b"step,loss\n1,2.5\n", bytes(np.random.default_rng(0).integers(0, 256, 4096,
                                     dtype=np.uint8)), b"", b"\x80\x04K\x01."])  # text, random, empty, a pickle
def test_a_file_that_is_not_a_pytorch_checkpoint_says_so(content, capsys, clean_error, tmp_path):
    """Whatever torch.load would make of it (a KeyError, advice about weights_only, an EOFError): one line."""
    bad = tmp_path / "notes.pt"
    bad.write_bytes(content)
    with pytest.raises(UserError, match=f"^{bad} is not a PyTorch checkpoint"):
        checkpoint.load(bad)
    r = call_main(train.main, capsys, "--resume", bad)
    clean_error(r, f"{bad} is not a PyTorch checkpoint")
    assert "weights_only" not in r.stderr


def test_a_truncated_checkpoint_is_damaged(tmp_path):
    good = checkpoint.save({"model": {"w": torch.ones(1000)}, "model_args": {}}, tmp_path, ["good.pt"])
    assert checkpoint.load(good)["model"]["w"].sum() == 1000
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:2000])
    with pytest.raises(UserError, match="cut.pt: the file is damaged"):
        checkpoint.load(tmp_path / "cut.pt")


def test_a_checkpoint_is_mapped_not_read_into_memory(tmp_path):
    """Loading a 128 MB checkpoint grows the process's resident memory by far less than 128 MB: its tensors are
    mapped from the file (torch.load mmap=True), so a large checkpoint is not first copied whole into RAM."""
    path = checkpoint.save({"model": {"w": torch.zeros(32 * 2**20)}, "model_args": {}}, tmp_path, ["big.pt"])
    code = ("import os, sys\n"
            "sys.path.insert(0, 'nanogpt')\n"
            "import checkpoint\n"
            "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') // 2**20\n"
            "before = rss()\n"
            "ckpt = checkpoint.load(sys.argv[1])\n"
            "assert ckpt['model']['w'].numel() == 32 * 2**20\n"
            "print(rss() - before)\n")
    r = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) < 32, r.stdout  # MB resident after the load; reading the file would take 128
