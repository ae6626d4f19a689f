"""build_nanogpt/ladder.py on a tiny budget: the rungs are cumulative, ladder.json/.md/.png agree with the runs'
own logs, and a ladder cut short goes on at its first unfinished run (a half-done run resumes to the same
numbers as one never stopped)."""
import json
import math
import shutil
import statistics
import subprocess

import pytest

import ladder

TINY = ["--seeds", "2", "--rungs", "2", "--n-layer", "2", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "2", "--total-batch", "32", "--max-iters", "4", "--warmup-iters", "1", "--eval-interval",
        "2", "--eval-iters", "2", "--ckpt-interval", "2", "--learning-rate", "1e-2"]


def finals(out):
    return {(r["rung"], run["seed"]): run["final_val_loss"]
            for r in json.loads((out / "ladder.json").read_text())["rungs"] for run in r["runs"]}


def test_rungs_are_cumulative():
    cfg = ladder.LadderConfig(block_size=64, max_iters=100)
    for k in range(1, len(ladder.RUNGS)):
        below, here = ladder.rung_flags(k - 1, cfg), ladder.rung_flags(k, cfg)
        assert here[:len(below)] == below and len(here) > len(below)  # rung k = rung k-1 + its own flags
    top = ladder.rung_flags(len(ladder.RUNGS) - 1, cfg)
    for flag in ("--rotary", "--optimizer", "--relu2", "--qk-norm", "--zero-init", "--untied", "--embed-skip", "--unet",
                 "--window", "--value-embeds"):
        assert flag in top
    assert top[len(top) - 1 - top[::-1].index("--softcap") + 1] == "15"  # the last --softcap given wins: 15
    assert ladder.rung_flags(0, cfg) == []
    assert ladder.selected(ladder.LadderConfig(rungs=3)) == [0, 1, 2]
    assert ladder.selected(ladder.LadderConfig(only="9,0")) == [0, 9]


def test_crossing_interpolates_the_first_descent_to_the_target():
    curve = [(0, 10.0), (100, 6.0), (200, 4.0), (300, 5.0), (400, 3.0)]
    assert ladder.crossing(curve, 5.0) == 150  # half way from 6 to 4
    assert ladder.crossing(curve, 4.0) == 200
    assert ladder.crossing(curve, 3.5) == 375
    assert ladder.crossing(curve, 2.0) is None
    assert ladder.crossing([(0, 1.0), (10, 0.5)], 2.0) == 0


def test_tiny_ladder_writes_its_results_and_resumes_at_the_first_unfinished_run(shards, tmp_path):
    out, runs = tmp_path / "lad", tmp_path / "runs"
    flags = TINY + ["--data-dir", str(shards), "--out-dir", str(out), "--runs-dir", str(runs)]
    summary = ladder.main(flags)
    assert [r["name"] for r in summary["rungs"]] == ["gpt2", "rotary+lr"]
    base = []
    for r in summary["rungs"]:
        assert r["seeds_done"] == 2 and len(r["runs"]) == 2 and r["cpu_us_per_token"] > 0
        for run in r["runs"]:
            log = [json.loads(line) for line in (runs / f"{r['rung']}-{r['name']}-s{run['seed']}" / "log.jsonl").open()]
            val = [x["val_loss"] for x in log if x["kind"] == "val"]
            assert run["curve"] == [[i * 32, v] for i, v in zip((0, 2, 4), val)]
            assert run["final_val_loss"] == val[-1]
            if r["rung"] == 0:
                base.append(val[-1])
        mean = sum(x["final_val_loss"] for x in r["runs"]) / 2
        assert r["final_val_loss_mean"] == pytest.approx(mean)
    assert summary["target_val_loss"] == pytest.approx(sum(base) / 2)
    r0, r1 = summary["rungs"]
    f0, f1 = ([x["final_val_loss"] for x in r["runs"]] for r in (r0, r1))
    se = math.sqrt(statistics.variance(f0) / 2 + statistics.variance(f1) / 2)
    assert r1["vs_previous"] == pytest.approx(sum(f1) / 2 - sum(f0) / 2) and r1["vs_previous_se"] == pytest.approx(se)
    assert r1["verdict"] == ("helps" if r1["vs_previous"] < -2 * se else "hurts" if r1["vs_previous"] > 2 * se
                             else "within noise")
    gap = r1["vs_baseline"] / max(statistics.stdev(f0), statistics.stdev(f1))
    assert r1["vs_baseline_in_seed_std"] == pytest.approx(gap) and r0["vs_previous"] is None
    assert summary["rungs"][0]["tokens_to_target_mean"] is not None
    cmd = json.loads((out / "ladder.json").read_text())["command"]
    assert cmd.startswith("python build_nanogpt/ladder.py --seeds 2")
    md = (out / "ladder.md").read_text()
    assert "| 1 rotary+lr |" in md and "final val loss" in md
    assert (out / "ladder.png").stat().st_size > 10_000
    assert not list(runs.glob("*/ckpt.pt"))  # removed once read (--keep-ckpt keeps them)
    first = finals(out)

    # cut short: rung 1 seed 1 stopped after 2 of its 4 iters (a checkpoint); the others finished
    shutil.rmtree(runs / "1-rotary+lr-s1")
    cfg = ladder.parse_config(ladder.LadderConfig, flags, "ladder.py", "", ladder.PRESETS)
    half = runs / "1-rotary+lr-s1"
    subprocess.run(ladder.train_command(cfg, 1, 1, str(half), False) + ["--stop-at", "2"], check=True,
                   capture_output=True)
    assert (half / "ckpt.pt").exists()
    untouched = {p: p.stat().st_mtime_ns for p in runs.glob("*/log.jsonl") if p.parent.name != half.name}
    ladder.main(flags)
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched  # finished runs are not run again
    assert "start iter 2" in (half / "stdout.txt").read_text()  # resumed, not restarted
    assert finals(out) == first  # and to the same numbers
    assert json.loads((out / "ladder.json").read_text())["started"] == summary["started"]  # the first start


def test_bad_settings_are_one_line(tmp_path):
    with pytest.raises(ladder.UserError, match=r"--rungs 11: must be in \[1, 10\]"):
        ladder.main(["--rungs", "11", "--out-dir", str(tmp_path / "x")])
    with pytest.raises(ladder.UserError, match="--only 0,12: use rung numbers 0 .. 9"):
        ladder.main(["--only", "0,12", "--out-dir", str(tmp_path / "x")])
    with pytest.raises(ladder.UserError, match="does not exist"):
        ladder.main(["--data-dir", str(tmp_path / "none"), "--out-dir", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()
