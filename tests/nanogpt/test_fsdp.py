"""train.py --fsdp (FSDP2) under torchrun, gloo on 2 CPU processes: the same run as DDP, and checkpoints that
resume under FSDP (exactly), in one process, and from one process back under FSDP.

Two epochs of 10 steps (192 tokens per step, 3 micro-steps per rank); ckpt_epoch1.pt is written at iter 10.
"""
import json

import pytest
import torch

import checkpoint
import fsdp as fsdp_module
import train
from cli import UserError
from helpers import call_main, read_records, run_args

pytestmark = pytest.mark.distributed

ARGS = ["--batch-size", 2, "--batch-tokens", 192, "--max-epochs", 2, "--eval-interval", 4, "--save-epochs", "1",
        "--lr-decay-iters", 20, "--num-samples", 2, "--sample-tokens", 24]


def launch(torchrun, data_dir, out, *extra):
    (r,) = torchrun("nanogpt/train.py", *run_args(data_dir, out, *ARGS, *extra), nproc=2, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def ddp(torchrun, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    launch(torchrun, tiny_data, out)
    return out


@pytest.fixture(scope="module")
def fsdp(torchrun, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("fsdp")
    r = launch(torchrun, tiny_data, out, "--fsdp")
    assert "2 rank(s) x 3 micro-step(s)" in r.stdout and "FSDP" in r.stdout
    assert "sampling 2 x 24 tokens on cpu" in r.stdout  # on a GPU too: the gathered copy stays in host memory
    return out


def losses(out, after=-1) -> list[tuple]:
    """(iter, step loss, eval train loss, eval val loss) of every log record past iter `after`."""
    return [(r["iter"], r.get("loss"), r.get("train_loss"), r.get("val_loss"))
            for r in read_records(out) if r["iter"] > after]


def assert_close(got, want, tol=1e-5):
    assert [g[0] for g in got] == [w[0] for w in want]
    for g, w in zip(got, want):
        assert g[1:] == pytest.approx(w[1:], abs=tol), (g, w)


def test_fsdp_matches_ddp(ddp, fsdp):
    assert_close(losses(fsdp), losses(ddp))
    assert len(losses(fsdp)) == 11 and losses(fsdp)[-1][3] < losses(fsdp)[0][3]
    hashes = json.loads((fsdp / "results.json").read_text())["throughput"]["replica_weights_sha256"]
    assert len(hashes) == 2 and len(set(hashes)) == 1  # every rank gathers the same full weights
    ours, theirs = (torch.load(out / "ckpt_last.pt", weights_only=True) for out in (fsdp, ddp))
    assert checkpoint.weights_sha256(ours["model"]) == hashes[0]
    # the layout of a DDP (one-process) checkpoint: the same keys, names, optimizer ids and groups
    assert sorted(ours) == sorted(theirs) and list(ours["model"]) == list(theirs["model"])
    assert ours["optimizer"]["param_groups"] == theirs["optimizer"]["param_groups"]
    for i, state in theirs["optimizer"]["state"].items():
        for k, v in state.items():
            torch.testing.assert_close(ours["optimizer"]["state"][i][k], v, atol=1e-5, rtol=0)
    for k, v in theirs["model"].items():
        torch.testing.assert_close(ours["model"][k], v, atol=1e-5, rtol=0)
    assert torch.equal(ours["model"]["lm_head.weight"], ours["model"]["transformer.wte.weight"])  # still tied


def test_fsdp_writes_results_with_the_samples_of_ddp(ddp, fsdp):
    """issue 25: at the end rank 0 samples from a float32 copy in host memory (never on its GPU), and in float32
    the samples are DDP's, character for character."""
    ours, theirs = (json.loads((out / "results.json").read_text()) for out in (fsdp, ddp))
    assert len(ours["samples"]) == 2 and all(len(text) == 24 for text in ours["samples"])
    assert ours["samples"] == theirs["samples"]
    assert ours["final"]["val_loss_full"] == pytest.approx(theirs["final"]["val_loss_full"], abs=1e-5)


def test_fsdp_resume_is_exact(torchrun, fsdp, tiny_data, tmp_path):
    out = tmp_path / "resumed"
    launch(torchrun, tiny_data, out, "--fsdp", "--resume", fsdp / "ckpt_epoch1.pt")
    assert losses(out, after=10) == losses(fsdp, after=10)  # bit for bit


def test_fsdp_checkpoint_resumes_in_one_process_and_back(torchrun, fsdp, tiny_data, tmp_path, capsys):
    single = tmp_path / "single"
    args = run_args(tiny_data, single, *ARGS, "--resume", fsdp / "ckpt_epoch1.pt", "--max-iters", 15)
    r = call_main(train, capsys, *args)
    assert r.returncode == 0, r.stderr
    assert "1 rank(s) x 6 micro-step(s)" in r.stdout
    got = [row for row in losses(single, after=10) if row[0] < 15]
    assert_close(got, [row for row in losses(fsdp, after=10) if row[0] < 15])
    back = tmp_path / "back"
    launch(torchrun, tiny_data, back, "--fsdp", "--resume", single / "ckpt_last.pt", "--max-iters", 0)
    assert_close(losses(back, after=15), losses(fsdp, after=15))


def test_fsdp_without_torchrun_is_refused(tiny_data, tmp_path, capsys):
    r = call_main(train, capsys, *run_args(tiny_data, tmp_path / "out", "--fsdp"))
    assert r.returncode == 2 and "run it under torchrun" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dtype, compile_, needle", [("float16", None, "not float16"), ("float32", True, "--no-compile")])
def test_fsdp_refuses_float16_and_compile(dtype, compile_, needle):
    with pytest.raises(UserError, match=needle):
        fsdp_module.check(True, dtype, compile_)
    fsdp_module.check(True, "bfloat16", False)
