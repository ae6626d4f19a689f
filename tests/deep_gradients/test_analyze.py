"""deep_gradients/analyze.py: the report of a run (every figure with its caption, the numbers) and its errors."""
import json

import numpy as np
import pytest
import torch
from helpers import TINY_ARGS, read_jsonl

import analyze
import features
import model
from cli import UserError

PNGS = ["loss.png", "evolution_params.png", "evolution_relu.png", "evolution_bn.png", "hist_weight.png",
        "hist_grad.png", "hist_act.png", "filters.png", "feature_maps.png", "top_activating.png",
        "saliency_gradcam.png"]


def test_plots_a_run_without_evaluation(tmp_path, monkeypatch):
    figs = figure_of(monkeypatch)
    res = {"train_curve": [[0, 2.3], [5, 1.9]], "epochs": [{"epoch": 1, "train_loss": 2.0}], "final_test_acc": None}
    path = analyze.plot_loss(res, str(tmp_path / "loss.png"))  # train.py --no-eval: no test accuracy, no crash
    assert path == str(tmp_path / "loss.png") and (tmp_path / "loss.png").stat().st_size > 1000
    loss_ax, acc_ax = figs[0].axes
    assert loss_ax.lines[0].get_ydata().tolist() == [2.3, 1.9]  # the training curve, every step
    assert acc_ax.get_title() == "final test acc n/a" and all(np.isnan(acc_ax.lines[0].get_ydata()))
    assert analyze._pct(None) == "n/a" and analyze._pct(0.9912) == "99.12%"


def test_writes_the_whole_report_with_captions(recorded_run, tmp_path):
    report = analyze.make_report(str(recorded_run), analyze.AnalyzeConfig(out_dir=str(tmp_path), n_images=200),
                                 log=lambda *a: None)
    text = open(report).read()
    for name in PNGS:
        path = tmp_path / name
        assert path.exists() and path.stat().st_size > 1000, name
        figure = text.index(f"({name})")
        assert analyze.CAPTIONS[name][:40] in text[figure:figure + 400], name  # the caption right under it
    results = json.loads((recorded_run / "results.json").read_text())
    assert f"{100 * results['final_test_acc']:.2f}%" in text
    assert "ablate.py" in text  # where BN and residual blocks are compared
    rows = read_jsonl(recorded_run / "evolution.jsonl")
    a, b = rows[0]["params"]["stages.2.0.conv2.weight"], rows[-1]["params"]["stages.2.0.conv2.weight"]
    assert (f"| stages.2.0.conv2.weight | {a['update_ratio']:.2f} -> {b['update_ratio']:.2f} "
            f"| {a['g_norm']:.2e} -> {b['g_norm']:.2e} | {a['w_norm']:.2f} -> {b['w_norm']:.2f} "
            f"| {b['rel_change']:.3f} |") in text  # first -> last recorded step, as recorded


def test_layer_plots_name_every_layer(recorded_run, tmp_path, monkeypatch):
    """The per-layer line plots carry a colour bar whose ticks are the layer names, all of them."""
    bars = []
    real = analyze._layer_lines

    def spy(fig, axes, rows, section, panels, names):
        real(fig, axes, rows, section, panels, names)
        bars.append(([t.get_text() for t in fig.axes[-1].get_yticklabels()], names))

    monkeypatch.setattr(analyze, "_layer_lines", spy)
    rows = read_jsonl(recorded_run / "evolution.jsonl")
    analyze.plot_param_curves(rows, str(tmp_path / "p.png"))
    analyze.plot_relu_curves(rows, str(tmp_path / "r.png"))
    analyze.plot_bn_curves(rows, str(tmp_path / "b.png"))
    assert len(bars) == 3
    for labels, names in bars:
        assert labels == names and len(names) >= 7


def test_filters_show_init_trained_and_change(recorded_run, tmp_path, monkeypatch):
    titles = []
    real = features._grid
    monkeypatch.setattr(features, "_grid", lambda ax, imgs, ncol, title="", shared=False: (
        titles.append((title, shared)), real(ax, imgs, ncol, title, shared))[1])
    state = torch.load(recorded_run / "ckpt.pt", weights_only=True)["model"]
    init = torch.load(recorded_run / "init.pt", weights_only=True)["model"]
    features.plot_filters(state, init, str(tmp_path / "f.png"))
    assert [t for t, _ in titles] == ["first-layer filters, at initialisation", "first-layer filters, trained",
                                      "first-layer filters, trained - init"]
    assert all(shared for _, shared in titles)  # one signed colour scale: structure and sign stay visible


def test_default_train_then_analyze_gives_every_figure(run_script, tmp_path):
    """train.py with its default recording (a tiny budget: 3 epochs of 8 steps), then analyze.py: every picture
    of the README, the evolution ones drawn from several records, the histograms from several steps."""
    r = run_script("deep_gradients/train.py", *TINY_ARGS, "--batch-size", "32", "--max-epochs", "3", "--out-dir",
                   tmp_path / "run", timeout=120)
    assert r.returncode == 0, r.stderr
    assert [row["step"] for row in read_jsonl(tmp_path / "run" / "evolution.jsonl")] == [0, 10, 20]  # stride 10
    grad_steps = {h["step"] for h in read_jsonl(tmp_path / "run" / "histograms.jsonl") if h["kind"] == "grad"}
    assert grad_steps == {0, 6, 12, 17, 23}  # five spread over the 24 steps, not only step 0
    r = run_script("deep_gradients/analyze.py", tmp_path / "run", "--n-images", "100", timeout=120)
    assert r.returncode == 0, r.stderr
    for name in PNGS:
        assert (tmp_path / "run" / "report" / name).stat().st_size > 1000, name
    report = (tmp_path / "run" / "report" / "report.md").read_text()
    assert all(f"]({name})" in report for name in PNGS)


def test_bad_run_dir(run_script, clean_error, tmp_path):
    clean_error(run_script("deep_gradients/analyze.py", str(tmp_path / "nope")), "RUN_DIR", "nope")
    with pytest.raises(UserError, match="ckpt.pt"):  # a folder, but not a run
        analyze.load_run(str(tmp_path))
    (tmp_path / "results.json").write_text("{")
    (tmp_path / "ckpt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        analyze.load_run(str(tmp_path))


@pytest.mark.parametrize("content", [b"\x80\x02damaged", "foreign"])
def test_damaged_or_foreign_checkpoint_is_one_line(run_script, clean_error, tmp_path, content):
    (tmp_path / "results.json").write_text("{}")
    if content == "foreign":
        torch.save({"state": 1}, tmp_path / "ckpt.pt")
    else:
        (tmp_path / "ckpt.pt").write_bytes(content)
    clean_error(run_script("deep_gradients/analyze.py", tmp_path), "ckpt.pt")


@pytest.mark.parametrize("argv,needle", [
    (["RUN", "--n-images", "x"], "'x'"), (["RUN", "--digit-index", "2000"], "--digit-index 2000"),
    (["RUN", "--n-images", "5"], "--n-images 5"), ([], "RUN_DIR"), (["RUN", "--out", "x"], "--out-dir")])
def test_bad_option_is_one_line(argv, needle):
    with pytest.raises(UserError) as e:  # argparse's own errors too: no usage block
        analyze.parse_args(argv)
    assert len(str(e.value).splitlines()) == 1 and needle in str(e.value), str(e.value)


def figure_of(monkeypatch):
    """Keep the figure a plot function saves (analyze.save_figure still writes it)."""
    figs, real = [], analyze.save_figure
    monkeypatch.setattr(analyze, "save_figure", lambda fig, path, **kw: (figs.append(fig), real(fig, path, **kw))[1])
    return figs


def test_bn_plot_names_every_layer_on_its_axis(recorded_run, tmp_path, monkeypatch):
    figs = figure_of(monkeypatch)
    rows = read_jsonl(recorded_run / "evolution.jsonl")
    analyze.plot_bn_curves(rows, str(tmp_path / "bn.png"))
    names = list(rows[0]["bn"])
    for ax in figs[0].axes[2:4]:  # the per-layer panels: one tick per BN layer, named
        assert [t.get_text() for t in ax.get_xticklabels()] == names


def test_histograms_show_five_snapshots_spread_over_the_run(tmp_path, monkeypatch):
    figs = figure_of(monkeypatch)
    hists = [{"step": s, "epoch": 0, "kind": "weight", "name": "w", "edges": [0, 1, 2], "counts": [1, 2]}
             for s in (0, 16, 32, 49, 65, 66)]  # 66: the final weights, one step after the last recorded one
    analyze.plot_histograms(hists, "weight", str(tmp_path / "h.png"))
    labels = [t.get_text() for t in figs[0].axes[0].get_legend().get_texts()]
    assert [int(t.split()[1]) for t in labels] == [0, 16, 32, 49, 66]  # not both 65 and 66


def test_a_short_run_is_called_undertrained_and_its_one_epoch_is_readable(tmp_path, monkeypatch):
    """33% after one epoch: the report says its pictures are of an undertrained network and what a full run
    gives; the accuracy panel shows its one point with the value written beside it."""
    figs = figure_of(monkeypatch)
    res = {"train_curve": [[0, 2.3], [5, 2.1]], "epochs": [{"epoch": 1, "train_loss": 2.2, "test_acc": 0.33}],
           "final_test_acc": 0.33}
    analyze.plot_loss(res, str(tmp_path / "loss.png"))
    acc_ax = figs[0].axes[1]
    assert [t.get_text() for t in acc_ax.texts] == ["33.0%"] and acc_ax.get_xlim() == (0.5, 1.5)
    note = " ".join(analyze.undertrained_note(0.33, 1))
    assert "undertrained" in note and "33.0%" in note and "after a full run" in note.lower()
    assert analyze.undertrained_note(0.995, 6) == []


def test_saliency_and_gradcam_have_colour_bars(tmp_path, monkeypatch):
    figs = []
    real = features.save_figure
    monkeypatch.setattr(features, "save_figure", lambda fig, path, **kw: (figs.append(fig), real(fig, path, **kw))[1])
    torch.manual_seed(0)
    net = model.ResNet(8, 4).eval()
    x, y = torch.randn(3, 1, 28, 28), torch.tensor([0, 1, 2])
    features.plot_saliency(net, x, y, str(tmp_path / "s.png"))
    bars = [ax for ax in figs[0].axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 2 and all(ax.get_ylim() == (0.0, 1.0) for ax in bars)  # saliency and Grad-CAM, 0..max
