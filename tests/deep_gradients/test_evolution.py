"""deep_gradients/evolution.py: the Recorder inside real tiny train.py runs (definitions, every layer, resume)."""
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import read_jsonl

import evolution
import model
import train
from cli import UserError
from conftest import RECORDED

ROOT = Path(__file__).resolve().parents[2]
HIST_STEPS = [0, 3, 6, 8, 11, 12]  # five spread over steps 0..11, first and last included; 12 = the final weights


def test_relu_stats_definitions():
    out = torch.zeros(2, 2, 1, 2)  # (B, C, H, W)
    out[0, 0, 0, 0] = 1.0  # channel 0: one live unit (for one example); channel 1 dead everywhere
    s = evolution.relu_stats(out - 0.5, out)
    assert s["zero_frac"] == pytest.approx(7 / 8)
    assert s["dead_frac"] == pytest.approx(3 / 4)  # units (c, h, w) zero for every example
    assert s["dead_channels"] == pytest.approx(1 / 2)


def test_recorder_writes_every_layer(recorded_run):
    rows = read_jsonl(recorded_run / "evolution.jsonl")
    assert [r["step"] for r in rows] == list(range(0, 12, 2))
    net = model.ResNet(depth=8, width=4)
    names = [n for n, _ in net.named_parameters()]
    relus = [n for n, m in net.named_modules() if isinstance(m, torch.nn.ReLU)]
    bns = [n for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for r in rows:
        assert list(r["params"]) == names and list(r["act"]) == relus and list(r["bn"]) == bns
        for n in names:
            p = r["params"][n]
            assert p["w_norm"] > 0 or n.endswith("bias")
            assert p["g_norm"] > 0
        for a in r["act"].values():
            assert 0 <= a["dead_frac"] <= a["zero_frac"] <= 1
            assert a["pre_std"] > 0
    first, last = rows[0]["params"]["stem.0.weight"], rows[-1]["params"]["stem.0.weight"]
    assert first["rel_change"] == 0 and last["rel_change"] > 0  # recorded before the first optimizer step
    # update ratio is log10(lr * |g| / |w|)
    assert first["update_ratio"] == pytest.approx(math.log10(rows[0]["lr"] * first["g_norm"] / first["w_norm"]))
    assert rows[0]["bn"]["stem.1"]["gamma_mean"] == pytest.approx(1.0)  # BN gamma starts at 1
    res = json.loads((recorded_run / "results.json").read_text())  # the recorder's cost, part of the epochs' time
    assert 0 < res["record_s"] < sum(e["epoch_time_s"] for e in res["epochs"])
    hists = read_jsonl(recorded_run / "histograms.jsonl")
    assert {h["epoch"] for h in hists} == {0, 1} and {h["kind"] for h in hists} == {"weight", "grad", "act"}
    assert sorted({h["step"] for h in hists if h["kind"] == "grad"}) == HIST_STEPS[:-1]  # over the run, not step 0
    for h in hists:
        assert len(h["edges"]) == len(h["counts"]) + 1 and sum(h["counts"]) > 0
    # activations come from the last TRAINING batch (32 images), never from an evaluation pass (359 images)
    stem_act = [h for h in hists if h["kind"] == "act" and h["name"] == "stem.2"]
    assert [h["step"] for h in stem_act] == HIST_STEPS and all(sum(h["counts"]) == 32 * 4 * 28 * 28 for h in stem_act)
    assert evolution.spread(12) == set(HIST_STEPS[:-1]) and evolution.spread(1) == {0}
    # init.pt holds the weights before any step: the same as a model built from the run's seed
    init = torch.load(recorded_run / "init.pt", weights_only=True)["model"]
    ref = model.from_config(RECORDED).state_dict()
    for k, v in ref.items():
        assert torch.equal(init[k], v), k


def test_histogram_leaves_out_non_finite_values():
    edges, counts = evolution.histogram(torch.tensor([0.0, 1.0, 2.0, float("nan"), float("inf")]), bins=4)
    assert edges[0] == 0.0 and edges[-1] == 2.0 and sum(counts) == 3
    assert evolution.histogram(torch.tensor([float("nan")]), bins=4) == ([0.0, 1.0], [0])
    edges, counts = evolution.histogram(torch.tensor([3.0, 3.0]), bins=2)  # one value: a unit-wide range around it
    assert edges == [2.5, 3.0, 3.5] and counts == [0, 2]


def test_activation_numbers_come_from_a_sample_of_the_batch(tmp_path):
    net = model.ResNet(depth=8, width=4).train()
    rec = evolution.Recorder(net, str(tmp_path), every=1)
    net(torch.randn(40, 1, 28, 28))
    assert rec.acts and all(len(i) == len(o) == evolution.SAMPLE_IMAGES == 32 for i, o in rec.acts.values())
    net.eval()(torch.randn(50, 1, 28, 28))  # an evaluation pass leaves them alone
    assert all(len(i) == 32 for i, _ in rec.acts.values())
    rec.close(final_histograms=False)


def test_stats_match_a_direct_computation():
    """The one-sync gathering of _host returns the same numbers as computing each one on its own."""
    torch.manual_seed(0)
    inp = torch.randn(4, 3, 5, 5)
    out = inp.relu()
    s = evolution.relu_stats(inp, out)
    assert s["pre_std"] == pytest.approx(inp.std().item()) and s["mean"] == pytest.approx(out.mean().item())
    assert s["zero_frac"] == pytest.approx((out <= 0).float().mean().item())


def _resume_records(tmp_path, junk_from=None):
    """A run stopped after epoch 1 (optionally with records past its checkpoint appended, as a run killed by
    kill -9 mid-epoch leaves them, and a torn last line), then resumed -> its out dir."""
    train.run(train.Config(**RECORDED, out_dir=str(tmp_path), stop_after=1))
    if junk_from is not None:
        for name in ("evolution.jsonl", "histograms.jsonl"):
            extra = [json.dumps(r) for r in read_jsonl(junk_from / name) if 6 <= r["step"] < 10]  # after the ckpt
            with open(tmp_path / name, "a") as f:
                f.write("\n".join(extra) + '\n{"step": 8, "ep')
    train.run(train.Config(**RECORDED, out_dir=str(tmp_path), resume="last"))
    return tmp_path


def test_resumed_run_continues_the_records(recorded_run, tmp_path):
    out = _resume_records(tmp_path)
    init, ref = (torch.load(d / "init.pt", weights_only=True)["model"] for d in (out, recorded_run))
    assert all(torch.equal(init[k], ref[k]) for k in ref)  # still the weights before the first step
    rows, ref_rows = (read_jsonl(d / "evolution.jsonl") for d in (out, recorded_run))
    assert [r["step"] for r in rows] == list(range(0, 12, 2))  # both invocations' records, none twice
    assert rows == ref_rows  # same numbers as the uninterrupted run: rel_change is still measured from init


def test_resume_after_kill_does_not_duplicate_records(recorded_run, tmp_path):
    out = _resume_records(tmp_path, junk_from=recorded_run)
    assert read_jsonl(out / "evolution.jsonl") == read_jsonl(recorded_run / "evolution.jsonl")
    hists, ref = (read_jsonl(d / "histograms.jsonl") for d in (out, recorded_run))
    assert [(h["step"], h["kind"], h["name"]) for h in hists] == [(h["step"], h["kind"], h["name"]) for h in ref]


class FullDisk:
    name = "OUT/evolution.jsonl"
    closed = False

    def write(self, text):
        raise OSError(28, "No space left on device")


def test_full_disk_while_recording_is_one_line(tmp_path):
    net = model.ResNet(depth=8, width=4).train()
    rec = evolution.Recorder(net, str(tmp_path), every=1, hist_steps={0})
    torch.nn.functional.cross_entropy(net(torch.randn(4, 1, 28, 28)), torch.arange(4)).backward()
    rec.evo = rec.hist = FullDisk()
    with pytest.raises(UserError, match="^cannot write OUT/evolution.jsonl: no space left on the device$"):
        rec.on_step(0, 0, 0.1)


def test_torn_last_line_of_a_killed_run_is_skipped(tmp_path):
    (tmp_path / "e.jsonl").write_text('{"step": 0}\n{"step": 10}\n{"step": 2')
    assert evolution.read_jsonl(str(tmp_path / "e.jsonl")) == [{"step": 0}, {"step": 10}]
    evolution.keep_before(str(tmp_path / "e.jsonl"), 10)
    assert (tmp_path / "e.jsonl").read_text() == '{"step": 0}\n'


@pytest.mark.parametrize("damage,needle", [(b"torn", "cannot read"), ({"model": {"stem.0.weight": torch.zeros(1)}},
                                                                        "does not hold this model's initial weights")])
def test_damaged_init_pt_on_resume_is_one_line(tmp_path, damage, needle):
    train.run(train.Config(**RECORDED, out_dir=str(tmp_path), stop_after=1))
    init = tmp_path / "init.pt"
    init.write_bytes(damage) if isinstance(damage, bytes) else torch.save(damage, init)
    with pytest.raises(UserError, match=needle) as e:
        train.run(train.Config(**RECORDED, out_dir=str(tmp_path), resume="last"))
    assert str(init) in str(e.value) and len(str(e.value).splitlines()) == 1


def test_resume_after_a_real_kill_9_mid_epoch(tmp_path, recorded_run):
    """kill -9 once the first checkpoint exists (the run is then somewhere in epoch 2, its records past the
    checkpoint on disk, in most tries), then --resume: every step recorded exactly once, as in the uninterrupted
    run (test_resume_after_kill_does_not_duplicate_records makes those leftover records for certain)."""
    args = [f"--{k.replace('_', '-')}={v}" for k, v in RECORDED.items() if not isinstance(v, bool)]
    cmd = [sys.executable, str(ROOT / "deep_gradients/train.py"), *args, "--no-progress", "--out-dir", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(1200):  # poll for the epoch-1 checkpoint (at most 2 minutes)
            if (tmp_path / "ckpt.pt").exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        proc.kill()
        proc.wait()
    finally:
        proc.kill()
    assert (tmp_path / "ckpt.pt").exists(), proc.stderr.read()
    assert (tmp_path / ".lock").exists()  # left by the killed run: the resumed run takes it over
    train.run(train.Config(**RECORDED, out_dir=str(tmp_path), resume="last"))
    rows, ref = (read_jsonl(d / "evolution.jsonl") for d in (tmp_path, recorded_run))
    assert [r["step"] for r in rows] == [r["step"] for r in ref] == list(range(0, 12, 2))
    hists, ref = (read_jsonl(d / "histograms.jsonl") for d in (tmp_path, recorded_run))
    assert [(h["step"], h["kind"], h["name"]) for h in hists] == [(h["step"], h["kind"], h["name"]) for h in ref]
