"""deep_gradients/train.py under torchrun (gloo, CPU): 2 processes and 3 simulated nodes on 127.0.0.1.

`--batch-size` is the global batch, so N ranks with the same flags take the same optimisation steps as one
process. Without BatchNorm that makes the weights equal up to float summation order; with BatchNorm the
statistics are per rank (SyncBatchNorm has no CPU kernel), so there we check that the replicas stay identical.
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import weights

import model
import train
from distributed import state_checksum

pytestmark = pytest.mark.distributed

# 3 ranks x 32 = 96 global batch; 288 images = 3 steps per epoch; no augmentation noise needed, but it is
# drawn per global batch, so leaving it on also checks that ranks shift their slice like one process would
ARGS = ("--depth", "8", "--width", "4", "--train-subset", "288", "--batch-size", "96", "--max-epochs", "2",
        "--no-progress", "--learning-rate", "0.2", "--device", "cpu")  # gloo on CPU, also on a GPU machine


ROOT = Path(__file__).resolve().parents[2]


def single_process(out_dir, **kw):
    cfg = train.Config(depth=8, width=4, train_subset=288, batch_size=96, max_epochs=2, progress=False,
                       learning_rate=0.2, device="cpu", out_dir=str(out_dir), **kw)
    return train.run(cfg)


def assert_same_training(a, b, init):
    moved = max((a[k] - init[k]).abs().max().item() for k in a)
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert moved > 1e-2, moved  # the weights really trained ...
    assert diff < 1e-5, diff  # ... and DDP took the same steps as one process (up to float summation order)


def check_ok(results):
    for r in results:
        assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"


@pytest.fixture(scope="module")
def init_no_bn():
    return model.from_config({"depth": 8, "width": 4, "batch_norm": False}).state_dict()


def test_two_processes_match_one_process(torchrun, tmp_path, init_no_bn):
    check_ok(torchrun("deep_gradients/train.py", *ARGS, "--no-batch-norm", "--out-dir", tmp_path / "ddp", nproc=2))
    single_process(tmp_path / "one", batch_norm=False)
    assert_same_training(weights(tmp_path / "ddp"), weights(tmp_path / "one"), init_no_bn)
    res = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert res["world_size"] == 2 and len(set(res["rank_checksums"])) == 1
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    # evaluation is all-reduced over the ranks' test shards: the same figure as one process
    assert res["final_test_acc"] == pytest.approx(one["final_test_acc"], abs=1 / 359 + 1e-9)
    same_train_loss(res, one)


def same_train_loss(ddp, one):
    """The recorded epoch train loss is the mean over all ranks' shards: the one-process figure."""
    a, b = [e["train_loss"] for e in ddp["epochs"]], [e["train_loss"] for e in one["epochs"]]
    assert len(a) == len(b) == 2 and a == pytest.approx(b, rel=1e-4), (a, b)


def test_three_nodes_match_one_process(torchrun, tmp_path, init_no_bn):
    results = torchrun("deep_gradients/train.py", *ARGS, "--no-batch-norm", "--out-dir", tmp_path / "ddp",
                       nproc=1, nnodes=3)
    check_ok(results)
    res = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert res["world_size"] == 3
    assert len(res["rank_checksums"]) == 3 and len(set(res["rank_checksums"])) == 1  # identical on every rank
    one = single_process(tmp_path / "one", batch_norm=False)
    assert_same_training(weights(tmp_path / "ddp"), weights(tmp_path / "one"), init_no_bn)
    same_train_loss(res, one)


def test_batch_norm_replicas_stay_identical(torchrun, tmp_path):
    check_ok(torchrun("deep_gradients/train.py", *ARGS, "--out-dir", tmp_path / "ddp", nproc=2))
    res = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert len(res["rank_checksums"]) == 2 and len(set(res["rank_checksums"])) == 1  # params AND BN buffers
    assert res["rank_checksums"][0] == state_checksum(_loaded_resnet(tmp_path / "ddp"))
    assert res["final_test_acc"] is not None
    # the saved BN running statistics are the AVERAGE of the ranks' (not their sum): close to what one process
    # with the same global batch records (not equal: each rank normalised with its own half-batch statistics)
    single_process(tmp_path / "one")
    ddp, one = weights(tmp_path / "ddp"), weights(tmp_path / "one")
    ratios = torch.cat([ddp[k] / one[k] for k in one if k.endswith("running_var")])
    assert ratios.min() > 0.75 and ratios.max() < 1.33, (ratios.min(), ratios.max())


def _loaded_resnet(out_dir):
    net = model.ResNet(8, 4)
    net.load_state_dict(weights(out_dir))
    return net


def test_signal_to_one_rank_stops_all_ranks_at_the_same_step(tmp_path):
    """SIGTERM to one worker: both ranks stop at the same step (identical replicas), rank 0 saves there."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "deep_gradients/train.py"), *ARGS, "--max-epochs", "3", "--out-dir", str(tmp_path / "ddp")]
    launcher = subprocess.Popen(cmd, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert launcher.stdout.readline().startswith("ResNet-8")  # both ranks are past their handler set-up
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
    workers = [int(c) for c in children if "train.py" in Path(f"/proc/{c}/cmdline").read_text()]
    assert len(workers) == 2, children
    os.kill(workers[-1], signal.SIGTERM)
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 0, err
    assert "stopped by" in out and "continue with: torchrun --standalone --nproc_per_node 2 " in out, out
    assert "stopping after this step" not in err, err  # only rank 0 announces a signal (this one went to rank 1)
    res = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert not res["finished"] and len(set(res["rank_checksums"])) == 1  # the same step on both ranks
    ck = torch.load(tmp_path / "ddp" / "ckpt.pt", weights_only=True)
    assert ck["epoch"] < 3 and state_checksum(_loaded_resnet(tmp_path / "ddp")) == res["rank_checksums"][0]
