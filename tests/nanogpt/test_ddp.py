"""nanogpt/train.py under torchrun (gloo on CPU): 2 processes on one node, and 3 simulated nodes.

The global batch is the same in every run (192 tokens = 12 windows of 16), so one process accumulates 6
micro-steps, 2 ranks 3 each, 3 nodes 2 each: the losses must match one process within float tolerance,
and every rank must end with bit-identical weights.
"""
import contextlib
import io
import json
import os
import re

import pytest
import torch

from helpers import read_log, run_args

pytestmark = pytest.mark.distributed

DDP_ARGS = ["--batch-size", 2, "--batch-tokens", 192, "--max-epochs", 1, "--eval-interval", 4,
            "--save-epochs", "1"]
SUMMARY = {"NANOGPT_DEBUG_PARAM_SUMMARY": "1"}  # each rank prints a hash of its weights at the end


@pytest.fixture(scope="module")
def single(load_module, tiny_data, tmp_path_factory):
    """The reference: one process (train.main here, no interpreter start), 6 micro-steps per step."""
    train = load_module("nanogpt", "train")
    out = tmp_path_factory.mktemp("single")
    stdout = io.StringIO()
    os.environ.update(SUMMARY)
    try:
        with contextlib.redirect_stdout(stdout):
            code = train.main([str(a) for a in run_args(tiny_data, out, *DDP_ARGS)])
    finally:
        for k in SUMMARY:
            os.environ.pop(k)
    assert code == 0
    assert "1 rank(s) x 6 micro-step(s)" in stdout.getvalue()
    return read_log(out), summaries(stdout.getvalue()), final_val(out)


def final_val(out) -> float:
    """The exact val loss over every val window, computed at the end (each rank a share, all-reduced)."""
    return json.loads((out / "results.json").read_text())["final"]["val_loss_full"]


def summaries(stdout: str) -> dict:
    """rank -> (sha256 of its weights, sum of |w|)."""
    return {int(r): (h, float(s)) for r, h, s in
            re.findall(r"param_summary rank=(\d+) sha256=([0-9a-f]{64}) abs_sum=([0-9.e+-]+\d)", stdout)}


def check_matches_single(single, out, stdout, world, train):
    ref_log, ref_sum, ref_full = single
    log = read_log(out)
    assert [e["iter"] for e in log] == [e["iter"] for e in ref_log] == [0, 4, 8, 10]  # 127 // 12 = 10 steps
    for a, b in zip(log, ref_log):
        assert a["lr"] == b["lr"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4, abs=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4, abs=1e-5)
    assert log[-1]["val_loss"] < log[0]["val_loss"]
    got = summaries(stdout)
    assert sorted(got) == list(range(world)), stdout
    assert len({h for h, _ in got.values()}) == 1, got  # every rank holds the same weights, bit for bit
    assert got[0][1] == pytest.approx(ref_sum[0][1], rel=1e-5)
    assert (out / "ckpt_epoch1.pt").exists()
    # the checkpoint holds exactly those final weights, under the bare model's names (no DDP "module." prefix)
    ckpt = torch.load(out / "ckpt_last.pt", weights_only=True)
    assert train.param_summary(type("Saved", (), {"state_dict": lambda self: ckpt["model"]})()) == got[0][0]
    assert final_val(out) == pytest.approx(ref_full, rel=1e-5)


def test_two_processes_match_one(torchrun, single, tiny_data, tmp_path, load_module):
    out = tmp_path / "ddp2"
    (r,) = torchrun("nanogpt/train.py", *run_args(tiny_data, out, *DDP_ARGS), nproc=2, env=SUMMARY, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 rank(s) x 3 micro-step(s)" in r.stdout
    check_matches_single(single, out, r.stdout, world=2, train=load_module("nanogpt", "train"))


def test_three_simulated_nodes_match_one(torchrun, single, tiny_data, tmp_path, load_module):
    out = tmp_path / "nodes3"
    results = torchrun("nanogpt/train.py", *run_args(tiny_data, out, *DDP_ARGS), nproc=1, nnodes=3, env=SUMMARY,
                       timeout=180)
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
    assert "3 rank(s) x 2 micro-step(s)" in results[0].stdout
    stdout = "".join(r.stdout for r in results)
    check_matches_single(single, out, stdout, world=3, train=load_module("nanogpt", "train"))
