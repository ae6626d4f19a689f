"""Turn one training run directory into a report: PNG plots plus report.md with the numbers.

    python deep_gradients/analyze.py RUN_DIR [--out-dir DIR]

RUN_DIR is what train.py wrote: results.json, ckpt.pt, and (recorded by default, unless it ran with
--record-interval 0) init.pt, evolution.jsonl, histograms.jsonl from evolution.Recorder. The report shows,
each figure with a caption saying what to look at,
- the training loss of every step, the test loss and accuracy per epoch;
- per-layer curves over the steps: weight norm, gradient norm, update-to-weight ratio log10(lr ||g|| / ||w||),
  relative change since init, ReLU zero / dead fractions, pre-activation std, BN gamma and beta;
- histograms of weights, gradients and pre-activations at several points of the run;
- feature visualisation (Zeiler & Fergus 2014; Simonyan et al. 2014; Selvaraju et al. 2017): first-layer
  filters at init and trained, one digit's feature maps through every stage, the top-activating test images
  of each last-stage channel, and per class a saliency map (|d logit / d input|) and a Grad-CAM map.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import checkpoint  # noqa: E402
import evolution  # noqa: E402
import features  # noqa: E402
import mnist  # noqa: E402
import model as model_lib  # noqa: E402
from cli import UserError, build_parser, knob, run_main  # noqa: E402
from curves import save_figure  # noqa: E402
from files import OutDirLock, write_text  # noqa: E402


@dataclass
class AnalyzeConfig:
    out_dir: str = knob("", "where the PNGs and report.md go; empty = RUN_DIR/report")
    data_dir: str = knob("", "where the run's dataset lives, if it moved since training")
    n_images: int = knob(2000, "test images scanned for the top-activating examples (>= 10)")
    digit_index: int = knob(0, "the test image followed through the stages, in [0, --n-images)")


# --------------------------------------------------------------------------------------------------
# loading


def load_run(run_dir: str) -> dict:
    """-> {"results", "config", "state", "init_state" (or None), "evolution", "histograms"}."""
    if not os.path.isdir(run_dir):
        raise UserError(f"RUN_DIR {run_dir!r} is not a directory")
    paths = {k: os.path.join(run_dir, k) for k in ("results.json", "ckpt.pt")}
    missing = [k for k, p in paths.items() if not os.path.isfile(p)]
    if missing:
        raise UserError(f"RUN_DIR {run_dir!r} has no {' or '.join(missing)}; expected a train.py output directory")
    try:
        with open(paths["results.json"]) as f:
            results = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"RUN_DIR {run_dir!r}: cannot read results.json ({type(e).__name__})") from None
    ckpt = checkpoint.load(paths["ckpt.pt"], flag="RUN_DIR")
    init_path = os.path.join(run_dir, "init.pt")
    init_state = checkpoint.load(init_path, "RUN_DIR", keys={"model"})["model"] if os.path.isfile(init_path) else None
    config = dict(results.get("config") or ckpt.get("config") or {})
    evo_path, hist_path = (os.path.join(run_dir, n) for n in ("evolution.jsonl", "histograms.jsonl"))
    return {
        "results": results, "config": config, "state": ckpt["model"], "init_state": init_state,
        "evolution": evolution.read_jsonl(evo_path) if os.path.isfile(evo_path) else [],
        "histograms": evolution.read_jsonl(hist_path) if os.path.isfile(hist_path) else [],
    }


def build_model(config: dict, state: dict) -> torch.nn.Module:
    m = model_lib.from_config(config)
    try:
        m.load_state_dict({k.removeprefix("_orig_mod.").removeprefix("module."): v for k, v in state.items()})
    except RuntimeError as e:
        raise UserError(f"ckpt.pt does not fit the run's config ({str(e).splitlines()[0][:120]})") from None
    return m.eval()


# --------------------------------------------------------------------------------------------------
# plots of the training run


def _layer_lines(fig, axes, rows: list[dict], section: str, panels, names: list[str]) -> None:
    """One line per layer in each panel (key, title, yscale), coloured by depth; a colour bar names every layer."""
    cmap = plt.cm.viridis
    colors = cmap(np.linspace(0, 0.95, max(len(names), 1)))
    for ax, (key, title, scale) in zip(np.ravel(axes), panels):
        steps, vals = _series(rows, section, key, names)
        for j in range(len(names)):
            ax.plot(steps, vals[:, j], color=colors[j], lw=1)
        ax.set(title=title, xlabel="step", yscale=scale)
    norm = matplotlib.colors.BoundaryNorm(np.arange(len(names) + 1) - 0.5, len(names))
    sm = plt.cm.ScalarMappable(cmap=matplotlib.colors.ListedColormap(colors), norm=norm)
    bar = fig.colorbar(sm, ax=list(np.ravel(axes)), fraction=0.03, pad=0.01)
    bar.set_ticks(range(len(names)), labels=names)
    bar.ax.tick_params(labelsize=max(4, min(8, int(300 / max(len(names), 1)))))
    bar.ax.invert_yaxis()  # the first layer on top, as in the network


def plot_loss(results: dict, path: str) -> str:
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    curve = np.array(results.get("train_curve") or [[0, np.nan]], dtype=float)
    a.plot(curve[:, 0], curve[:, 1], lw=0.6, alpha=0.5, label="train (every step)")
    if len(curve) > 20:  # a moving average shows the trend through the batch-to-batch noise
        k = max(5, len(curve) // 50)
        a.plot(curve[k - 1:, 0], np.convolve(curve[:, 1], np.ones(k) / k, mode="valid"), lw=1.2,
               label=f"train (mean of {k} steps)")
    ep = results.get("epochs") or []
    if ep and curve.shape[0] > 1:
        steps_per_epoch = results.get("steps_per_epoch") or (curve[-1, 0] + 1) / max(len(ep), 1)
        xs = [(e.get("epoch", i + 1)) * steps_per_epoch for i, e in enumerate(ep)]
        a.plot(xs, [e.get("test_loss", np.nan) for e in ep], "o-", label="test (per epoch)")
        epochs = [e.get("epoch", i + 1) for i, e in enumerate(ep)]
        accs = [100 * e["test_acc"] if e.get("test_acc") is not None else np.nan for e in ep]
        b.plot(epochs, accs, "o-", ms=7)
        for x, acc in zip(epochs, accs):  # the value beside each point: readable with one epoch too
            if np.isfinite(acc):
                b.annotate(f"{acc:.1f}%", (x, acc), textcoords="offset points", xytext=(6, -4), fontsize=8)
        b.set_xlim(0.5, max(epochs) + 0.5)
        b.set_xticks(epochs if len(epochs) <= 12 else b.get_xticks())
    a.set(xlabel="step", ylabel="cross-entropy", title="loss", yscale="log")
    a.legend(fontsize=8)
    b.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"final test acc {_pct(results.get('final_test_acc'))}")
    return str(save_figure(fig, path))


def _series(rows: list[dict], section: str, key: str, names: list[str]):
    steps = np.array([r["step"] for r in rows])
    vals = np.array([[np.nan if (r[section].get(n) or {}).get(key) is None else r[section][n][key] for n in names]
                     for r in rows], dtype=float)  # (T, layers)
    return steps, vals


def weight_names(rows: list[dict]) -> list[str]:
    """Conv and linear weights in network order (BN and biases are drawn separately)."""
    names = list(rows[0]["params"]) if rows else []
    return [n for n in names if n.endswith("weight") and ".bn" not in n and not n.startswith("stem.1")
            and not n.endswith("shortcut.1.weight")]


def plot_param_curves(rows: list[dict], path: str) -> str:
    fig, axes = plt.subplots(2, 2, figsize=(13, 8), layout="constrained")
    panels = [("w_norm", "weight norm ||w||", "log"), ("g_norm", "gradient norm ||g||", "log"),
              ("update_ratio", "update / weight: log10(lr ||g|| / ||w||)", "linear"),
              ("rel_change", "relative change ||w - w0|| / ||w0||", "linear")]
    _layer_lines(fig, axes, rows, "params", panels, weight_names(rows))
    axes[1, 0].axhline(-3, color="k", ls="--", lw=0.8)
    return str(save_figure(fig, path))


def plot_relu_curves(rows: list[dict], path: str) -> str:
    fig, axes = plt.subplots(1, 3, figsize=(16, 4), layout="constrained")
    panels = [("zero_frac", "ReLU outputs that are 0 (per activation)", "linear"),
              ("dead_frac", "dead units (0 for every image of the sample)", "linear"), ("pre_std", "pre-activation std", "log")]
    _layer_lines(fig, axes, rows, "act", panels, list(rows[0]["act"]) if rows else [])
    return str(save_figure(fig, path))


def plot_bn_curves(rows: list[dict], path: str) -> str | None:
    """gamma and beta over the steps (one line per BN layer), and per layer at the end with their spread."""
    names = list(rows[0]["bn"]) if rows else []
    if not names:
        return None
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5), layout="constrained", height_ratios=(1, 1.3))
    _layer_lines(fig, axes[0], rows, "bn", [("gamma_mean", "BN gamma (scale), mean over channels", "linear"),
                                             ("beta_mean", "BN beta (shift), mean over channels", "linear")], names)
    for ax, what, ref in zip(axes[1], ("gamma", "beta"), (1.0, 0.0)):
        mean, std = (_series(rows[-1:], "bn", f"{what}_{k}", names)[1][0] for k in ("mean", "std"))
        ax.errorbar(range(len(names)), mean, yerr=std, fmt="o", ms=4, capsize=2)
        ax.axhline(ref, color="grey", ls=":", lw=1, label=f"at init ({ref:g})")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=max(5, min(8, int(300 / len(names)))))
        ax.set_title(f"{what} of every BN layer at step {rows[-1]['step']} (bar: +-1 std over its channels)")
        ax.legend(fontsize=8)
    return str(save_figure(fig, path))


def plot_histograms(hists: list[dict], kind: str, path: str, max_layers: int = 4) -> str | None:
    rows = [h for h in hists if h["kind"] == kind]
    if not rows:
        return None
    names = list(dict.fromkeys(h["name"] for h in rows))
    pick = sorted({0, len(names) // 3, (2 * len(names)) // 3, len(names) - 1})[:max_layers]
    names = [names[i] for i in pick]
    steps = sorted({h["step"] for h in rows})
    if len(steps) > 5:  # at most 5 snapshots, those nearest to 5 evenly spaced steps (not 2 neighbours)
        steps = sorted({min(steps, key=lambda s: abs(s - t)) for t in np.linspace(steps[0], steps[-1], 5)})
    colors = plt.cm.plasma(np.linspace(0, 0.85, len(steps)))
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4), squeeze=False)
    for ax, n in zip(axes[0], names):
        for c, s in zip(colors, steps):
            h = next((h for h in rows if h["name"] == n and h["step"] == s), None)
            if h is None:
                continue
            e = np.array(h["edges"])
            ax.stairs(np.array(h["counts"]) / max(sum(h["counts"]), 1), e, color=c,
                      label=f"step {s} (epoch {h['epoch'] + 1})")
        ax.set(title=n, yscale="log", xlabel="value")
        ax.xaxis.set_major_locator(plt.MaxNLocator(5))  # gradients' small ticks (-0.0075 ...) overlap otherwise
    axes[0][0].legend(fontsize=7)
    what = {"weight": "weights", "grad": "gradients", "act": "ReLU inputs (pre-activations)"}[kind]
    fig.suptitle(f"histograms of {what} (fraction per bin)")
    return str(save_figure(fig, path))


# --------------------------------------------------------------------------------------------------
# the report


def _fmt(v, f=".3f"):
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, f)


def _pct(v) -> str:
    """A fraction as a percentage; a run trained with --no-eval has no test accuracy (None)."""
    return "n/a" if v is None else f"{100 * v:.2f}%"


def evolution_table(rows: list[dict]) -> list[str]:
    """Per-layer numbers at the first and last recorded step."""
    if not rows:
        return ["(no evolution.jsonl: the run was trained with --record-interval 0)"]
    first, last = rows[0], rows[-1]
    out = [f"Conv/linear weights at step {first['step']} -> step {last['step']}:", "",
           "| layer | update ratio log10(lr·‖g‖/‖w‖) | ‖g‖ | ‖w‖ | rel. change since init |",
           "|---|---|---|---|---|"]
    for n in weight_names(rows):
        a, b = first["params"][n], last["params"][n]
        out.append(f"| {n} | {_fmt(a['update_ratio'], '.2f')} -> {_fmt(b['update_ratio'], '.2f')} "
                   f"| {_fmt(a['g_norm'], '.2e')} -> {_fmt(b['g_norm'], '.2e')} "
                   f"| {_fmt(a['w_norm'], '.2f')} -> {_fmt(b['w_norm'], '.2f')} | {_fmt(b['rel_change'])} |")
    if last["act"]:
        out += ["", f"ReLUs at step {first['step']} -> step {last['step']} (definitions in evolution.py):", "",
                "| ReLU | zero fraction | dead units | dead channels | pre-activation std |", "|---|---|---|---|---|"]
        for n in last["act"]:
            a, b = first["act"].get(n, {}), last["act"][n]
            out.append(f"| {n} | {_fmt(a.get('zero_frac'))} -> {_fmt(b['zero_frac'])} "
                       f"| {_fmt(a.get('dead_frac'))} -> {_fmt(b['dead_frac'])} "
                       f"| {_fmt(a.get('dead_channels'))} -> {_fmt(b['dead_channels'])} "
                       f"| {_fmt(a.get('pre_std'))} -> {_fmt(b['pre_std'])} |")
    return out


CAPTIONS = {  # under each figure of report.md: what it shows and what to look for
    "loss.png": "Training loss of every step (faint), its moving average, and the test loss after each epoch "
                "(log scale); right: test accuracy per epoch. Look for the training loss falling steeply while the "
                "learning rate warms up, then flattening as it decays. Near the peak learning rate the test loss "
                "can sit far above the training loss: evaluation uses BatchNorm's running statistics, which lag "
                "behind weights that move fast; it comes down as the rate decays. A test loss that rises late, "
                "while the training loss still falls, is overfitting.",
    "evolution_params.png": "One line per conv/linear layer, coloured by depth (the colour bar names them). Look at "
                            "the update/weight ratio: around -3 (dashed) is the usual healthy rate; far above it a "
                            "layer is being kicked around by too large a learning rate, far below it barely learns. "
                            "The relative change says how far each layer travelled from its initialisation.",
    "evolution_relu.png": "Per ReLU (colour bar), on the first 32 images of the training batch: the share of "
                          "outputs that are zero, the share of units that are zero for all 32 images (dead), and the "
                          "std of the ReLU input. Dead fractions that climb during training are units that stopped "
                          "learning; input stds that shrink or grow with depth show signals vanishing or exploding. "
                          "BatchNorm keeps a block's first ReLU input near std 1; its second ReLU sees the BN output "
                          "plus the shortcut, hence the higher lines.",
    "evolution_bn.png": "Top: each BatchNorm's mean scale (gamma) and shift (beta) over the steps. Bottom: every "
                        "layer's gamma and beta at the last record, bar = spread over its channels, dotted = the "
                        "init (1 and 0). Gammas that fall towards 0 switch channels (or whole residual branches) "
                        "off; a wide spread means the channels were given very different weights.",
    "hist_weight.png": "Weight distributions of four layers (first, two middle, last) at up to five points spread "
                       "over the run, the last after the final update. Look for how far training moves them from "
                       "the initial Gaussian: the middle layers, with many weights each, hardly change in a short "
                       "run, while the first conv and the classifier move most (compare the relative-change panel "
                       "above); weight decay pulls them in.",
    "hist_grad.png": "Gradient distributions of the same layers at the same steps (log counts), from step 0 to the "
                     "last step. Their width follows the gradient-norm panel above: wide while the loss is high, "
                     "narrow once it has fallen; a layer whose gradients are orders of magnitude smaller than the "
                     "others' learns slowly.",
    "hist_act.png": "Distributions of ReLU inputs (pre-activations), of the first 32 images of the training batch "
                    "at those steps. The part below 0 is what the ReLU zeroes; a distribution that drifts entirely "
                    "below 0 is a dead ReLU.",
    "filters.png": "The first layer's 3x3 filters at init, trained, and the difference (trained - init), each "
                   "panel on one signed colour scale (red > 0 > blue). A 3x3 filter has only 9 weights: it cannot "
                   "draw the smooth oriented edges of an ImageNet network's 7x7 or 11x11 first layer, so at init "
                   "(random) and still after training the filters look like noise to the eye. The difference panel "
                   "shows what training added: a filter whose change runs from red on one side to blue on the other "
                   "became an edge (stroke-border) detector in that direction; a uniform change shifts its "
                   "brightness response.",
    "feature_maps.png": "One test digit after the stem and after each stage (first channels, each scaled to its own "
                        "range). Early maps are shifted copies and edges of the digit; later stages, at 14x14 and "
                        "7x7, keep only where class-relevant strokes are.",
    "top_activating.png": "For each last-stage channel, the test images that excite it most (yellow number = the "
                          "label). A channel whose top images share one label is a class detector.",
    "saliency_gradcam.png": "Per class, a test image, its saliency |d logit / d pixel| and its Grad-CAM map. Both "
                            "should sit on the strokes that tell the digit apart (the bar of a 7, the loop of a 9), "
                            "not on the background.",
}


def training_figures(run: dict, out: str) -> list[tuple[str, str | None]]:
    """The loss, per-layer evolution and histogram figures -> [(title, path or None)]."""
    res, rows, P = run["results"], run["evolution"], lambda name: os.path.join(out, name)
    figs = [("Loss and accuracy", plot_loss(res, P("loss.png")))]
    if rows:
        figs.append(("Weights, gradients and updates per layer", plot_param_curves(rows, P("evolution_params.png"))))
        figs.append(("ReLU activity per layer", plot_relu_curves(rows, P("evolution_relu.png"))))
        figs.append(("BatchNorm gamma and beta", plot_bn_curves(rows, P("evolution_bn.png"))))
    for kind in ("weight", "grad", "act"):
        figs.append((f"Histograms: {kind}", plot_histograms(run["histograms"], kind, P(f"hist_{kind}.png"))))
    return figs


def feature_figures(run: dict, cfg: AnalyzeConfig, out: str) -> tuple[list, dict]:
    """Filters, feature maps, top-activating images, saliency -> (figures, numbers for the report)."""
    conf, P = run["config"], lambda name: os.path.join(out, name)
    m = build_model(conf, run["state"])
    init_note = "saved by evolution.Recorder (init.pt)"
    if run["init_state"] is None:  # no Recorder: the init as train.py builds it
        run["init_state"] = model_lib.from_config(conf).state_dict()
        init_note = "rebuilt from the run's seed (no init.pt)"
    try:
        data_dir = cfg.data_dir or conf.get("data_dir") or None
        _, _, x_test, y_test = mnist.load(conf.get("dataset", "digits"), data_dir=data_dir)
    except mnist.DataError as e:
        raise UserError(f"cannot load the run's test data: {e}") from None
    x, y = x_test[:cfg.n_images].float(), y_test[:cfg.n_images]
    i = min(cfg.digit_index, len(x) - 1)
    sal_path, sal_stats = features.plot_saliency(m, x, y, P("saliency_gradcam.png"))
    figs = [("First-layer filters", features.plot_filters(run["state"], run["init_state"], P("filters.png"))),
            ("One digit through every stage", features.plot_feature_maps(m, x[i], int(y[i]), P("feature_maps.png"))),
            ("Top-activating test images", features.plot_top_activating(m, x, y, P("top_activating.png"))),
            ("Saliency and Grad-CAM per class", sal_path)]
    acc = model_lib.evaluate(m, x, y)
    return figs, {"init_note": init_note, "n": len(x), "acc": (acc[1] / acc[2]).item(), "saliency": sal_stats}


UNDERTRAINED = 0.9  # below this test accuracy the report warns that its pictures are of an undertrained network


def undertrained_note(acc: float | None, epochs: int) -> list[str]:
    """A warning at the top of the report when the network has not learned the digits yet."""
    if acc is None or acc >= UNDERTRAINED:
        return []
    return [f"> **An undertrained network** ({100 * acc:.1f}% test accuracy after {epochs} epoch(s); chance is 10%). "
            "The pictures below show a network that has not yet learned the digits: Grad-CAM and saliency may light "
            "the background rather than the strokes, the first-layer filters still look like their random "
            "initialisation, and the per-layer curves cover only the start of training. After a full run (the "
            "defaults: 6 epochs; MNIST above 99%) saliency and Grad-CAM sit on the strokes that tell the digits "
            "apart and the filters become smooth edge and stroke detectors.", ""]


def report_lines(run_dir: str, run: dict, figs: list, nums: dict) -> list[str]:
    res, conf, rows = run["results"], run["config"], run["evolution"]
    last_loss = res["train_curve"][-1][1] if res.get("train_curve") else None
    acc = res["final_test_acc"] if res.get("final_test_acc") is not None else nums["acc"]  # --no-eval: recomputed
    lines = [f"# Run report: `{run_dir}`", "",
             "Made by `python deep_gradients/analyze.py RUN_DIR`. Config: "
             + ", ".join(f"`{k}={v}`" for k, v in sorted(conf.items())), "",
             *undertrained_note(acc, len(res.get("epochs") or [])),
             "## Numbers", "",
             f"- final test accuracy (results.json): **{_pct(res.get('final_test_acc'))}**",
             f"- accuracy of ckpt.pt on the first {nums['n']} test images only (recomputed here; the images the "
             f"figures use): {100 * nums['acc']:.2f}%",
             f"- final train loss (last step): {_fmt(last_loss, '.4f')}",
             "", "| epoch | train loss | test loss | test acc |", "|---|---|---|---|"]
    for e in res.get("epochs") or []:
        lines.append(f"| {e.get('epoch')} | {_fmt(e.get('train_loss'), '.4f')} | {_fmt(e.get('test_loss'), '.4f')} "
                     f"| {_fmt(100 * e['test_acc'] if e.get('test_acc') is not None else None, '.2f')}% |")
    lines += ["", f"First-layer filters at initialisation: {nums['init_note']}."]
    lines += ["", "## Per-layer evolution", ""] + evolution_table(rows)
    lines += ["", "Saliency / Grad-CAM examples (first test image of each class): "
              + ", ".join(f"class {s['class']} p={s['p']:.2f}" for s in nums["saliency"]), "",
              "What BatchNorm and the residual paths do to these pictures is measured side by side by "
              "`python deep_gradients/ablate.py` (BN on/off x shortcuts on/off x depth x learning rate); "
              "ANALYSIS.md discusses its results.", "", "## Figures", ""]
    for title, path in figs:
        if path:
            name = os.path.basename(path)
            lines += [f"### {title}", "", f"![{title}]({name})", "", CAPTIONS[name], ""]
    return lines


def make_report(run_dir: str, cfg: AnalyzeConfig, log=print) -> str:
    """Write every PNG and report.md into cfg.out_dir (default RUN_DIR/report); -> path of report.md."""
    run = load_run(run_dir)
    out = cfg.out_dir or os.path.join(run_dir, "report")
    with OutDirLock(out):
        figs = training_figures(run, out)
        log("plotted the training curves")
        more, nums = feature_figures(run, cfg, out)
        log("plotted the features")
        text = "\n".join(report_lines(run_dir, run, figs + more, nums)) + "\n"
        return str(write_text(os.path.join(out, "report.md"), text))


def parse_args(argv=None) -> tuple[str, AnalyzeConfig]:
    """-> (RUN_DIR, the settings)."""
    p = build_parser(AnalyzeConfig, "analyze.py", __doc__.splitlines()[0])
    p.add_argument("run_dir", metavar="RUN_DIR", help="a train.py output directory (results.json, ckpt.pt, ...)")
    flags = vars(p.parse_args(argv))
    run_dir = flags.pop("run_dir")
    cfg = AnalyzeConfig(**flags)
    if cfg.n_images < 10:
        raise UserError(f"--n-images {cfg.n_images} must be >= 10")
    if not 0 <= cfg.digit_index < cfg.n_images:
        raise UserError(f"--digit-index {cfg.digit_index}: must be in [0, {cfg.n_images}) (below --n-images)")
    return run_dir, cfg


def main(argv=None) -> None:
    path = make_report(*parse_args(argv))
    print(f"wrote {path}")


if __name__ == "__main__":
    run_main(main)
