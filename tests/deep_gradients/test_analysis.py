"""deep_gradients: evolution.Recorder inside a real tiny train.py run, the analyze.py report, the ablation runner."""
import json
import math
import re

import pytest
import torch

DEPTH8_RELUS = 7  # stem + 3 blocks x 2


@pytest.fixture(scope="module")
def mods(load_module):
    return {n: load_module("deep_gradients", n) for n in ("train", "evolution", "analyze", "ablate", "model")}


TINY = dict(dataset="digits", train_subset=192, epochs=2, batch_size=32, depth=8, width=4, record_every=2,
            progress=False)


@pytest.fixture(scope="module")
def tiny_run(mods, tmp_path_factory):
    out = tmp_path_factory.mktemp("dg_run")
    mods["train"].run(mods["train"].Config(**TINY, out_dir=str(out)))  # 6 steps per epoch, steps 0..11
    return out


def test_relu_stats_definitions(mods):
    out = torch.zeros(2, 2, 1, 2)  # (B, C, H, W)
    out[0, 0, 0, 0] = 1.0  # channel 0: one live unit (for one example); channel 1 dead everywhere
    s = mods["evolution"].relu_stats(out - 0.5, out)
    assert s["zero_frac"] == pytest.approx(7 / 8)
    assert s["dead_frac"] == pytest.approx(3 / 4)  # units (c, h, w) zero for every example
    assert s["dead_channels"] == pytest.approx(1 / 2)


def test_recorder_writes_every_layer(mods, tiny_run):
    rows = mods["evolution"].read_jsonl(str(tiny_run / "evolution.jsonl"))
    assert [r["step"] for r in rows] == list(range(0, 12, 2))
    model = mods["model"].ResNet(depth=8, width=4)
    names = [n for n, _ in model.named_parameters()]
    relus = [n for n, m in model.named_modules() if isinstance(m, torch.nn.ReLU)]
    bns = [n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
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
    hists = mods["evolution"].read_jsonl(str(tiny_run / "histograms.jsonl"))
    assert {h["epoch"] for h in hists} == {0, 1} and {h["kind"] for h in hists} == {"weight", "grad", "act"}
    for h in hists:
        assert len(h["edges"]) == len(h["counts"]) + 1 and sum(h["counts"]) > 0
    # activations come from the last TRAINING batch (32 images), never from an evaluation pass (359 images)
    stem_act = [h for h in hists if h["kind"] == "act" and h["name"] == "stem.2"]
    assert len(stem_act) == 3 and all(sum(h["counts"]) == 32 * 4 * 28 * 28 for h in stem_act)  # epochs 0, 1, close
    # init.pt holds the weights before any step: the same as a model built from the run's seed
    init = torch.load(tiny_run / "init.pt", weights_only=True)["model"]
    torch.manual_seed(0)
    ref = mods["model"].ResNet(depth=8, width=4).state_dict()
    for k, v in ref.items():
        assert torch.equal(init[k], v), k


def test_recorder_resumed_run_continues_the_records(mods, tiny_run, tmp_path):
    tr = mods["train"]
    tr.run(tr.Config(**TINY, out_dir=str(tmp_path), stop_after=1))  # "preempted" after epoch 1 ...
    tr.run(tr.Config(**TINY, out_dir=str(tmp_path), resume=True))  # ... and resumed
    init, ref = (torch.load(d / "init.pt", weights_only=True)["model"] for d in (tmp_path, tiny_run))
    assert all(torch.equal(init[k], ref[k]) for k in ref)  # still the weights before the first step
    rows, ref_rows = (mods["evolution"].read_jsonl(str(d / "evolution.jsonl")) for d in (tmp_path, tiny_run))
    assert [r["step"] for r in rows] == list(range(0, 12, 2))  # both invocations' records, none twice
    assert rows == ref_rows  # same numbers as the uninterrupted run: rel_change is still measured from init


def test_analyze_plots_a_run_without_evaluation(mods, tmp_path):
    an = mods["analyze"]
    res = {"train_curve": [[0, 2.3], [5, 1.9]], "epochs": [{"epoch": 1, "train_loss": 2.0}], "final_test_acc": None}
    assert an.plot_loss(res, str(tmp_path / "loss.png"))  # train.py --no-eval: no test accuracy, no crash
    assert an._pct(None) == "n/a" and an._pct(0.9912) == "99.12%"


def test_analyze_writes_the_whole_report(mods, tiny_run, tmp_path):
    an = mods["analyze"]
    report = an.make_report(an.AnalyzeConfig(run_dir=str(tiny_run), out=str(tmp_path), n_images=200), log=lambda *a: None)
    pngs = ["loss.png", "evolution_params.png", "evolution_relu.png", "evolution_bn.png", "hist_weight.png",
            "hist_grad.png", "hist_act.png", "filters.png", "feature_maps.png", "top_activating.png",
            "saliency_gradcam.png"]
    text = open(report).read()
    for name in pngs:
        path = tmp_path / name
        assert path.exists() and path.stat().st_size > 1000, name
        assert f"({name})" in text, name
    results = json.loads((tiny_run / "results.json").read_text())
    assert f"{100 * results['final_test_acc']:.2f}%" in text
    assert "stages.2.0.conv2.weight" in text  # the per-layer table
    rows = mods["evolution"].read_jsonl(str(tiny_run / "evolution.jsonl"))
    a, b = rows[0]["params"]["stages.2.0.conv2.weight"], rows[-1]["params"]["stages.2.0.conv2.weight"]
    assert (f"| stages.2.0.conv2.weight | {a['update_ratio']:.2f} -> {b['update_ratio']:.2f} "
            f"| {a['g_norm']:.2e} -> {b['g_norm']:.2e} | {a['w_norm']:.2f} -> {b['w_norm']:.2f} "
            f"| {b['rel_change']:.3f} |") in text  # first -> last recorded step, as recorded


def test_analyze_bad_run_dir(mods, run_script, clean_error, tmp_path):
    clean_error(run_script("deep_gradients/analyze.py", str(tmp_path / "nope")), "RUN_DIR", "nope")
    with pytest.raises(mods["analyze"].RunDirError, match="ckpt.pt"):  # a folder, but not a run
        mods["analyze"].load_run(str(tmp_path))
    (tmp_path / "results.json").write_text("{")
    (tmp_path / "ckpt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(mods["analyze"].RunDirError, match="cannot read"):
        mods["analyze"].load_run(str(tmp_path))


def test_ablation_two_configs_one_seed(mods, tmp_path):
    ab = mods["ablate"]
    cfg = ab.AblateConfig(configs="bn+res,plain", depths="8", lrs="0.1", seeds="0", epochs=1, train_subset=128,
                          batch_size=32, width=4, act_images=64, out_dir=str(tmp_path))
    logged = []
    out = ab.run_all(cfg, log=logged.append)
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
    again = ab.run_all(ab.AblateConfig(**{**cfg.__dict__, "configs": "plain"}), log=lambda *a: None)
    assert [r["seconds"] for r in again["runs"]] == [r["seconds"] for r in saved["runs"]]
    for key, value in (("width", 8), ("batch_size", 16), ("train_subset", 64)):  # another budget: not mixed in
        with pytest.raises(ab.AblateError, match="another budget"):
            ab.run_all(ab.AblateConfig(**{**cfg.__dict__, key: value}), log=lambda *a: None)


def test_ablation_diverged_flag_and_summary_over_seeds(mods, tmp_path, monkeypatch):
    """run_all's bookkeeping with train.run stubbed: divergence (NaN, or loss >= ln 10) and mean/std over seeds."""
    ab = mods["ablate"]
    final = {("bn+res", 0): (0.9, 0.3), ("bn+res", 1): (0.7, 0.5), ("plain", 0): (0.1, math.log(10) + 1e-3),
             ("plain", 1): (0.2, float("nan"))}  # (test acc, last-epoch train loss)

    def fake_run(tc):
        acc, loss = final[(next(c for c, v in ab.CONFIGS.items() if v == (tc.batch_norm, tc.residual)), tc.seed)]
        return {"final_test_acc": acc, "epochs": [{"train_loss": loss, "test_loss": 1.0}], "train_curve": [[0, 2.3]]}

    monkeypatch.setattr(ab.train, "run", fake_run)
    monkeypatch.setattr(ab, "act_stats", lambda tc, x: {"init": [1.0], "trained": [1.0]})
    cfg = ab.AblateConfig(configs="bn+res,plain", depths="8", lrs="0.1", seeds="0,1", out_dir=str(tmp_path))
    out = ab.run_all(cfg, log=lambda *a: None)
    assert [(r["config"], r["seed"], r["diverged"]) for r in out["runs"]] == [
        ("bn+res", 0, False), ("bn+res", 1, False), ("plain", 0, True), ("plain", 1, True)]
    s = {r["config"]: r for r in out["summary"]}
    assert s["bn+res"]["n_seeds"] == 2 and s["bn+res"]["diverged"] == 0 and s["plain"]["diverged"] == 2
    assert s["bn+res"]["acc_mean"] == pytest.approx(0.8) and s["bn+res"]["acc_std"] == pytest.approx(0.1)
    assert s["bn+res"]["train_loss_mean"] == pytest.approx(0.4) and s["plain"]["train_loss_mean"] is None
    assert "| bn+res | 8 | 80.00 +- 10.00 (0.400) |" in (tmp_path / "ablation.md").read_text()


def test_ablation_rejects_bad_selection(mods, run_script, clean_error):
    with pytest.raises(mods["ablate"].AblateError, match="depths"):
        mods["ablate"].grid(mods["ablate"].AblateConfig(depths="8,9"))
    clean_error(run_script("deep_gradients/ablate.py", "--configs", "bn+res,wide"), "--configs", "wide", "plain")
    with pytest.raises(mods["ablate"].AblateError, match="--act-images 1 must be >= 2"):  # names the bad value
        mods["ablate"].grid(mods["ablate"].AblateConfig(act_images=1))


@pytest.mark.parametrize("script,argv,needle", [
    ("ablate", ["--epochs", "two"], "'two'"), ("ablate", ["--bogus"], "--bogus"),
    ("analyze", ["RUN", "--n-images", "x"], "'x'"), ("analyze", ["RUN", "--digit-index", "2000"], "--digit-index 2000"),
    ("analyze", ["RUN", "--n-images", "5"], "--n-images 5"), ("analyze", [], "run_dir")])
def test_cli_bad_option_is_one_line(mods, capsys, script, argv, needle):
    with pytest.raises(SystemExit) as e:  # argparse's own errors too: no usage block
        mods[script].parse_args(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and needle in err, err
