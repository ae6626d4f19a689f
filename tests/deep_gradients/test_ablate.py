"""deep_gradients/ablate.py: the ablation grid, its bookkeeping, report and errors."""
import json
import math
import os
import re
from pathlib import Path

import pytest

import ablate
from cli import UserError
from helpers import assert_made_here_now

ROOT = Path(__file__).resolve().parents[2]
DEPTH8_RELUS = 7  # stem + 3 blocks x 2


def test_ablation_json_says_how_it_was_made_with_paths_from_the_repository_root(tmp_path, monkeypatch):
    """ablation.json opens with the command as typed at the repository's root, the machine, the date and the
    thread count; its paths inside the repository are written from the root (no folder of this machine)."""
    stub = {"final_test_acc": 0.5, "epochs": [{"train_loss": 1.0, "test_loss": 1.0}], "train_curve": [[0, 2.3]]}
    monkeypatch.setattr(ablate.train, "run", lambda tc: stub)
    monkeypatch.setattr(ablate, "act_stats", lambda *a, **k: {"init": [1.0], "trained": [1.0]})
    runs = ROOT / "deep_gradients" / "out" / f"ablate_test_{os.getpid()}"
    monkeypatch.chdir(tmp_path)  # another working directory: the paths are still written from the root
    ablate.main(["--configs", "bn", "--depths", "8", "--max-epochs", "1", "--device", "cpu",
                 "--out-dir", "abl", "--runs-dir", str(runs)])
    saved = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    rel_out, rel_runs = os.path.relpath(tmp_path / "abl", ROOT), f"deep_gradients/out/ablate_test_{os.getpid()}"
    assert saved["command"] == ("python deep_gradients/ablate.py --configs bn --depths 8 --max-epochs 1 --device cpu"
                                f" --out-dir abl --runs-dir {runs}")  # as typed
    assert_made_here_now(saved)
    assert (saved["ablate_config"]["out_dir"], saved["ablate_config"]["runs_dir"]) == (rel_out, rel_runs)
    assert saved["runs"][0]["out_dir"] == f"{rel_runs}/bn_d8_lr0.1_s0"
    assert f"Made by `{saved['command']}`" in (tmp_path / "abl" / "ablation.md").read_text()


def test_default_out_dir_is_beside_the_script_whatever_the_working_directory(tmp_path, monkeypatch):
    """No --out-dir: the grid goes to deep_gradients/out/ablation, not the working directory (issue 29 item 6)."""
    assert ablate.OUT == ROOT / "deep_gradients" / "out" / "ablation"
    stub = {"final_test_acc": 0.5, "epochs": [{"train_loss": 1.0, "test_loss": 1.0}], "train_curve": [[0, 2.3]]}
    monkeypatch.setattr(ablate.train, "run", lambda tc: stub)
    monkeypatch.setattr(ablate, "act_stats", lambda *a, **k: {"init": [1.0], "trained": [1.0]})
    monkeypatch.setattr(ablate, "OUT", tmp_path / "default")  # stands for deep_gradients/out/ablation
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    ablate.main(["--configs", "bn", "--depths", "8", "--max-epochs", "1", "--device", "cpu"])
    saved = json.loads((tmp_path / "default" / "ablation.json").read_text())
    assert [r["name"] for r in saved["runs"]] == ["bn_d8_lr0.1_s0"]
    assert list((tmp_path / "cwd").iterdir()) == []


def test_two_configs_one_seed(tmp_path):
    cfg = ablate.AblateConfig(configs="bn+res,plain", depths="8", lrs="0.1", seeds="0", max_epochs=1,
                              train_subset=128, batch_size=32, width=4, act_images=64, out_dir=str(tmp_path),
                              device="cpu")
    logged = []
    out = ablate.run_all(cfg, log=logged.append)
    assert [r["name"] for r in out["runs"]] == ["bn+res_d8_lr0.1_s0", "plain_d8_lr0.1_s0"]
    done = [line for line in logged if line.startswith("plain_d8_lr0.1_s0: test acc")]
    assert done and re.search(r"train loss (\d+\.\d{3}|NaN), \d+s$", done[0]), logged  # rounded, not 2.2957334518...
    saved = json.loads((tmp_path / "ablation.json").read_text())
    assert len(saved["runs"]) == 2 and len(saved["summary"]) == 2
    for r in saved["runs"]:
        assert 0 <= r["final_test_acc"] <= 1 and r["train_curve"]
        assert len(r["act_std"]["init"]) == len(r["act_std"]["trained"]) == DEPTH8_RELUS
        assert (tmp_path / r["name"] / "ckpt.pt").exists()
    bn_run, plain_run = saved["runs"]
    # with BN (train mode, gamma 1, beta 0) every pre-activation at init has unit std; without it, it drifts
    assert bn_run["act_std"]["init"][0] == pytest.approx(1.0, abs=1e-3)
    assert abs(plain_run["act_std"]["init"][-1] - 1.0) > 0.05
    md = (tmp_path / "ablation.md").read_text()
    assert "| bn+res | 8 |" in md and "| plain | 8 |" in md
    for name in ("ablation_curves.png", "ablation_acc.png", "ablation_actstd.png"):
        assert (tmp_path / name).stat().st_size > 1000
    # a second call over the same folder keeps what is done and reruns nothing
    again = ablate.run_all(ablate.AblateConfig(**{**cfg.__dict__, "configs": "plain"}), log=lambda *a: None)
    assert [r["seconds"] for r in again["runs"]] == [r["seconds"] for r in saved["runs"]]
    for key, value in (("width", 8), ("batch_size", 16), ("train_subset", 64)):  # another budget: not mixed in
        with pytest.raises(UserError, match="another budget"):
            ablate.run_all(ablate.AblateConfig(**{**cfg.__dict__, key: value}), log=lambda *a: None)


def test_diverged_flag_and_summary_over_seeds(tmp_path, monkeypatch):
    """run_all's bookkeeping with train.run stubbed: divergence (NaN, or loss >= ln 10, or train.py stopping a
    diverged run) and mean/std over seeds."""
    final = {("bn+res", 0): (0.9, 0.3), ("bn+res", 1): (0.7, 0.5), ("plain", 0): (0.1, math.log(10) + 1e-3),
             ("plain", 1): None}  # (test acc, last-epoch train loss); None: train.py stops it as diverged

    def fake_run(tc):
        got = final[(next(c for c, v in ablate.CONFIGS.items() if v == (tc.batch_norm, tc.residual)), tc.seed)]
        if got is None:
            raise ablate.train.Diverged("loss is nan", {"epochs": [], "train_curve": [[0, 2.3], [1, float("nan")]]})
        return {"final_test_acc": got[0], "epochs": [{"train_loss": got[1], "test_loss": 1.0}],
                "train_curve": [[0, 2.3]]}

    monkeypatch.setattr(ablate.train, "run", fake_run)
    monkeypatch.setattr(ablate, "act_stats", lambda tc, x, diverged=False: {"init": [1.0], "trained": [1.0]})
    cfg = ablate.AblateConfig(configs="bn+res,plain", depths="8", lrs="0.1", seeds="0,1", out_dir=str(tmp_path))
    out = ablate.run_all(cfg, log=lambda *a: None)
    assert [(r["config"], r["seed"], r["diverged"]) for r in out["runs"]] == [
        ("bn+res", 0, False), ("bn+res", 1, False), ("plain", 0, True), ("plain", 1, True)]
    assert out["runs"][3]["train_curve"] == [[0, 2.3], [1, None]]  # kept up to where it stopped
    s = {r["config"]: r for r in out["summary"]}
    assert s["bn+res"]["n_seeds"] == 2 and s["bn+res"]["diverged"] == 0 and s["plain"]["diverged"] == 2
    assert s["bn+res"]["acc_mean"] == pytest.approx(0.8) and s["bn+res"]["acc_std"] == pytest.approx(0.1)
    assert s["bn+res"]["train_loss_mean"] == pytest.approx(0.4) and s["plain"]["train_loss_mean"] is None
    assert "| bn+res | 8 | 80.00 +- 10.00 (0.400) |" in (tmp_path / "ablation.md").read_text()


def test_rejects_bad_selection(run_script, clean_error):
    with pytest.raises(UserError, match="depths"):
        ablate.grid(ablate.AblateConfig(depths="8,9"))
    for bad, needle in ((dict(lrs="0.1,1000"), "--learning-rate 1000"), (dict(width=100000), "--width 100000"),
                        (dict(seeds="0,-1"), "--seed -1")):  # the last runs' settings refused before the first runs
        with pytest.raises(UserError, match=needle):
            ablate.grid(ablate.AblateConfig(**bad))
    clean_error(run_script("deep_gradients/ablate.py", "--configs", "bn+res,wide"), "--configs", "wide", "plain")
    with pytest.raises(UserError, match=r"--act-images 1: must be in \[2, inf\]"):  # names the bad value
        ablate.grid(ablate.AblateConfig(act_images=1))
    with pytest.raises(UserError, match="--lrs"):
        ablate.grid(ablate.AblateConfig(lrs="0.1,inf"))


@pytest.mark.parametrize("argv,needle", [(["--max-epochs", "two"], "'two'"), (["--bogus"], "--bogus"),
                                         (["--epochs", "2"], "--max-epochs")])
def test_bad_option_is_one_line(run_script, clean_error, argv, needle):
    clean_error(run_script("deep_gradients/ablate.py", *argv), needle)


def test_ctrl_c_stops_the_grid_and_keeps_the_runs_done(tmp_path, monkeypatch):
    """train.py ends a run stopped by Ctrl-C with finished=False: that run is not recorded as a result, the grid
    stops (run_main: one line, exit 130) and ablation.json holds the runs before it, which a rerun skips."""
    calls = []

    def fake_run(tc):
        calls.append(tc.seed)
        return {"final_test_acc": 0.9, "epochs": [{"train_loss": 0.3, "test_loss": 0.4}], "train_curve": [[0, 2.3]],
                "finished": calls != [0, 1]}  # the second run of the first invocation is interrupted

    monkeypatch.setattr(ablate.train, "run", fake_run)
    monkeypatch.setattr(ablate, "act_stats", lambda tc, x, diverged=False: {"init": [1.0], "trained": [1.0]})
    cfg = ablate.AblateConfig(configs="bn+res", depths="8", lrs="0.1", seeds="0,1,2", out_dir=str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        ablate.run_all(cfg, log=lambda *a: None)
    assert calls == [0, 1]
    assert [r["seed"] for r in json.loads((tmp_path / "ablation.json").read_text())["runs"]] == [0]
    calls.clear()
    ablate.run_all(cfg, log=lambda *a: None)
    assert calls == [1, 2]
