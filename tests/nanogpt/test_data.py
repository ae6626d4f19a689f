"""nanogpt/data.py: epochs of windows, batches, and datasets checked against their meta.json."""
import json
import shutil
import threading
import time

import numpy as np
import pytest
import torch

import data
import train
from helpers import call_main, run_args


def test_epoch_order_is_seeded_and_ranks_are_disjoint():
    order = data.epoch_order(103, seed=1, epoch=0)
    assert sorted(order) == list(range(103))
    assert np.array_equal(order, data.epoch_order(103, 1, 0))
    assert not np.array_equal(order, data.epoch_order(103, 1, 1))  # a new order every epoch
    world, B, accum = 3, 2, 4
    steps = 103 // (world * B * accum)
    seen = np.concatenate([data.step_windows(order, s, r, world, B, accum).ravel()
                           for s in range(steps) for r in range(world)])
    assert len(set(seen)) == len(seen) == steps * world * B * accum  # disjoint shares, nothing repeats
    # what 3 ranks see at a step is exactly what one process with 3x the accumulation sees
    one = data.step_windows(order, 1, 0, 1, B, accum * world).ravel()
    three = np.concatenate([data.step_windows(order, 1, r, world, B, accum).ravel() for r in range(world)])
    assert np.array_equal(one, three)
    assert data.num_windows(1 + 16 * 5, 16) == 5  # windows of block+1 tokens, inputs not overlapping
    # training shifts the grid each epoch (seeded); every window still fits at the largest shift
    shifts = {data.epoch_shift(1, e, 16) for e in range(50)}
    assert shifts <= set(range(16)) and len(shifts) > 5
    tokens = np.arange(16 * 7 + 3, dtype=np.uint16)
    n = data.train_windows(len(tokens), 16)
    x, y = data.get_batch(tokens, np.arange(n), 16, "cpu", shift=15)
    assert n == 6 and y[-1, -1] == len(tokens) - 4 and x[0, 0] == 15
    with pytest.raises(IndexError):
        data.get_batch(tokens, np.arange(n + 1), 16, "cpu", shift=15)


def test_batches_shift_by_one():
    tokens = np.arange(200, dtype=np.uint16)
    x, y = data.get_batch(tokens, np.array([0, 3]), 16, "cpu")
    assert x.shape == y.shape == (2, 16)
    assert x[1, 0] == 48 and torch.equal(y[:, :-1], x[:, 1:]) and y[1, -1] == 64


@pytest.fixture
def copy_of(tiny_data, tmp_path):
    """A private copy of the tiny dataset, to break."""
    shutil.copytree(tiny_data / "shakespeare_char", tmp_path / "d" / "shakespeare_char")
    return tmp_path / "d"


@pytest.mark.parametrize("damage, needles", [
    ("uint32", ["train.bin has", "meta.json says 2048", "prepare it again"]),
    ("random", ["token id", "outside the vocabulary of 65"]),
    ("meta", ["meta.json", "broken"]),
])
def test_broken_dataset_is_one_line(copy_of, tmp_path, capsys, clean_error, damage, needles):
    folder = copy_of / "shakespeare_char"
    if damage == "uint32":  # the right tokens in the wrong width: twice the bytes meta.json promises
        np.fromfile(folder / "train.bin", dtype=np.uint16).astype(np.uint32).tofile(folder / "train.bin")
    elif damage == "random":
        np.random.default_rng(0).integers(0, 65536, 2048).astype(np.uint16).tofile(folder / "train.bin")
    else:
        (folder / "meta.json").write_text('{"tokenizer": "char"')
    clean_error(call_main(train.main, capsys, *run_args(copy_of, tmp_path / "out", "--max-iters", 1)), *needles)
    assert not (tmp_path / "out" / "ckpt_last.pt").exists()


def test_stale_data_source_is_refused(copy_of, tmp_path, capsys, clean_error):
    """--data-source naming another text than the one an existing dataset was built from: refused, not ignored."""
    other = tmp_path / "other.txt"
    other.write_text("a different corpus\n" * 100)
    r = call_main(train.main, capsys, *run_args(copy_of, tmp_path / "out", "--data-source", other))
    clean_error(r, "was built from", str(other), "another --dataset name")
    meta = json.loads((copy_of / "shakespeare_char" / "meta.json").read_text())
    src = tmp_path / "same.txt"  # the source it was built from: accepted
    shutil.copy(meta["source"], src)
    r = call_main(train.main, capsys, *run_args(copy_of, tmp_path / "out", "--data-source", src, "--max-iters", 1))
    assert r.returncode == 0, r.stderr


def test_other_local_ranks_wait_for_the_prepared_dataset(tmp_path, capsys, monkeypatch):
    """issue 25: a rank other than local rank 0 never prepares; it waits, with no time limit, until meta.json (written
    last) is there, says once that it waits, and returns as soon as it appears."""
    monkeypatch.setattr(data, "prepare_if_missing", lambda *a: pytest.fail("only local rank 0 prepares"))
    folder = tmp_path / "shakespeare_char"
    done = threading.Timer(1.0, lambda: (folder.mkdir(), (folder / "meta.json").write_text("{}")))
    done.start()
    t0 = time.monotonic()
    data.prepare_or_wait("shakespeare_char", str(tmp_path), "", local_rank=1, poll_s=0.05)
    assert 1.0 <= time.monotonic() - t0 < 5 and (folder / "meta.json").is_file()
    assert capsys.readouterr().out.count("wait for local rank 0 to prepare dataset 'shakespeare_char'") == 1
    data.prepare_or_wait("shakespeare_char", str(tmp_path), "", local_rank=3)  # already there: returns at once
    assert capsys.readouterr().out == ""
