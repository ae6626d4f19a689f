"""nanogpt/train.py under torchrun (gloo on CPU): 2 processes on one node, and 3 simulated nodes.

The global batch is the same in every run (192 tokens = 12 windows of 16), so one process accumulates 6
micro-steps, 2 ranks 3 each, 3 nodes 2 each: the losses must match one process within float tolerance,
and every rank must end with bit-identical weights.
"""
import json
from pathlib import Path

import pytest
import torch

import checkpoint
import train
from helpers import read_log, read_records, run_args

pytestmark = pytest.mark.distributed

DDP_ARGS = ["--batch-size", 2, "--batch-tokens", 192, "--max-epochs", 1, "--eval-interval", 4,
            "--save-epochs", "1"]


@pytest.fixture(scope="module")
def single(tiny_data, tmp_path_factory):
    """The reference: one process (train.main here, no interpreter start), 6 micro-steps per step."""
    out = tmp_path_factory.mktemp("single")
    assert train.main([str(a) for a in run_args(tiny_data, out, *DDP_ARGS)]) == 0
    return read_log(out), results(out), step_losses(out)


def results(out) -> dict:
    return json.loads((out / "results.json").read_text())


def step_losses(out) -> list[tuple]:
    """(iter, loss) of every logged training step: the step's loss over the whole global batch."""
    return [(r["iter"], r["loss"]) for r in read_records(out) if "loss" in r]


def check_matches_single(single, out, world):
    ref_log, ref, ref_steps = single
    log = read_log(out)
    steps = step_losses(out)  # each rank's loss is over its share of the batch: the ranks' mean is the whole's
    assert [i for i, _ in steps] == [i for i, _ in ref_steps] == [5, 10]
    assert [loss for _, loss in steps] == pytest.approx([loss for _, loss in ref_steps], rel=1e-4, abs=1e-5)
    assert [e["iter"] for e in log] == [e["iter"] for e in ref_log] == [0, 4, 8, 10]  # 127 // 12 = 10 steps
    for a, b in zip(log, ref_log):
        assert a["lr"] == b["lr"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4, abs=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4, abs=1e-5)
    assert log[-1]["val_loss"] < log[0]["val_loss"]
    res = results(out)
    assert res["throughput"]["world_size"] == world and ref["throughput"]["replica_weights_sha256"] is None
    hashes = res["throughput"]["replica_weights_sha256"]
    assert len(hashes) == world and len(set(hashes)) == 1, hashes  # every rank holds the same weights, bit for bit
    assert (out / "ckpt_epoch1.pt").exists()
    # the checkpoint holds exactly those final weights, under the bare model's names (no DDP "module." prefix)
    ckpt = torch.load(out / "ckpt_last.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["model"])
    assert checkpoint.weights_sha256(ckpt["model"]) == hashes[0]
    # the exact val loss: every rank evaluates a share of the windows with its own weights
    assert res["final"]["val_loss_full"] == pytest.approx(ref["final"]["val_loss_full"], rel=1e-5)


def test_two_processes_match_one(torchrun, single, tiny_data, tmp_path):
    out = tmp_path / "ddp2"
    (r,) = torchrun("nanogpt/train.py", *run_args(tiny_data, out, *DDP_ARGS), nproc=2, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 rank(s) x 3 micro-step(s)" in r.stdout
    check_matches_single(single, out, world=2)


def test_three_simulated_nodes_match_one(torchrun, single, tiny_data, tmp_path):
    out = tmp_path / "nodes3"
    results_ = torchrun("nanogpt/train.py", *run_args(tiny_data, out, *DDP_ARGS), nproc=1, nnodes=3, timeout=180)
    for r in results_:
        assert r.returncode == 0, r.stderr[-3000:]
    assert "3 rank(s) x 2 micro-step(s)" in results_[0].stdout
    check_matches_single(single, out, world=3)


SLOW_PREPARE = """
import sys, time
sys.path.insert(0, sys.argv[1])
import torch.distributed as dist
import prepare, train
from cli import run_main
real = prepare.prepare
def slow(*args, **kwargs):  # local rank 0, preparing: a process group would have the other rank in a collective
    assert not dist.is_initialized(), "the dataset is prepared inside the process group"
    time.sleep(4)
    return real(*args, **kwargs)
prepare.prepare = slow
sys.argv = sys.argv[1:]
run_main(train.main, sys.argv[1:])
"""


def test_a_missing_dataset_is_prepared_before_the_process_group(torchrun, shared_file, tmp_path):
    """issue 25: on a fresh --data-dir, local rank 0 prepares the dataset (slowed down here) before any process
    group exists, while rank 1 waits for the finished files, saying so; then both train."""
    launcher, data, out = tmp_path / "launch.py", tmp_path / "data", tmp_path / "out"
    launcher.write_text(SLOW_PREPARE)
    args = run_args(data, out, "--data-source", shared_file("tinyshakespeare/input.txt"), "--max-iters", 2,
                    "--final-eval-tokens", 0)
    (r,) = torchrun(str(launcher), Path(train.__file__).parent, *args, nproc=2, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "preparing dataset 'shakespeare_char'" in r.stdout
    assert "wait for local rank 0 to prepare dataset 'shakespeare_char'" in r.stdout, r.stdout
    assert results(out)["final"]["iter"] == 2 and results(out)["throughput"]["world_size"] == 2
