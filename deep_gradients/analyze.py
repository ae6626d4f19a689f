"""Turn one training run directory into a report: PNG plots plus report.md with the numbers.

    python deep_gradients/analyze.py RUN_DIR [--out DIR]

RUN_DIR is what train.py wrote: results.json, ckpt.pt, and (when it ran with --record-every > 0)
init.pt, evolution.jsonl, histograms.jsonl from evolution.Recorder. The report shows
- the loss curves and test accuracy;
- per-layer curves over the steps: weight norm, gradient norm, update-to-weight ratio log10(lr ||g|| / ||w||),
  relative change since init, ReLU zero / dead fractions, pre-activation std, BN gamma and beta;
- histograms of weights, gradients and pre-activations at several epochs;
- feature visualisation (Zeiler & Fergus 2014; Simonyan et al. 2014; Selvaraju et al. 2017): first-layer
  filters at init and trained, one digit's feature maps through every stage, the top-activating test images
  of each last-stage channel, and per class a saliency map (|d logit / d input|) and a Grad-CAM map.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import evolution  # noqa: E402
import mnist  # noqa: E402
import model as model_lib  # noqa: E402
from train import ArgParser  # noqa: E402


class RunDirError(Exception):
    """RUN_DIR is not a usable run directory: reported as one line, exit code 2."""


@dataclass
class AnalyzeConfig:
    run_dir: str = ""
    out: str = ""  # where the PNGs and report.md go; empty = RUN_DIR/report
    data_dir: str = ""  # overrides the run's data_dir (for MNIST moved elsewhere)
    n_images: int = 2000  # test images scanned for top-activating examples
    digit_index: int = 0  # which test image is followed through the stages


# --------------------------------------------------------------------------------------------------
# loading


def load_run(run_dir: str) -> dict:
    """-> {"results", "config", "state", "init_state" (or None), "evolution", "histograms"}."""
    if not os.path.isdir(run_dir):
        raise RunDirError(f"RUN_DIR {run_dir!r} is not a directory")
    paths = {k: os.path.join(run_dir, k) for k in ("results.json", "ckpt.pt")}
    missing = [k for k, p in paths.items() if not os.path.isfile(p)]
    if missing:
        raise RunDirError(f"RUN_DIR {run_dir!r} has no {' or '.join(missing)}; expected a train.py output directory")
    try:
        with open(paths["results.json"]) as f:
            results = json.load(f)
        ckpt = torch.load(paths["ckpt.pt"], map_location="cpu", weights_only=True)
        init_path = os.path.join(run_dir, "init.pt")
        init_state = (torch.load(init_path, map_location="cpu", weights_only=True)["model"]
                      if os.path.isfile(init_path) else None)
    except (json.JSONDecodeError, RuntimeError, OSError, EOFError, ValueError, KeyError, TypeError) as e:
        raise RunDirError(f"RUN_DIR {run_dir!r}: cannot read results.json / ckpt.pt / init.pt "
                          f"({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise RunDirError(f"RUN_DIR {run_dir!r}: ckpt.pt holds no 'model' state_dict")
    config = dict(results.get("config") or ckpt.get("config") or {})
    evo_path, hist_path = (os.path.join(run_dir, n) for n in ("evolution.jsonl", "histograms.jsonl"))
    return {
        "results": results, "config": config, "state": ckpt["model"], "init_state": init_state,
        "evolution": evolution.read_jsonl(evo_path) if os.path.isfile(evo_path) else [],
        "histograms": evolution.read_jsonl(hist_path) if os.path.isfile(hist_path) else [],
    }


def build_model(config: dict, state: dict) -> torch.nn.Module:
    m = model_lib.ResNet(depth=int(config.get("depth", 20)), width=int(config.get("width", 16)),
                         batch_norm=bool(config.get("batch_norm", True)), residual=bool(config.get("residual", True)))
    m.load_state_dict({k.removeprefix("_orig_mod.").removeprefix("module."): v for k, v in state.items()})
    return m.eval()


# --------------------------------------------------------------------------------------------------
# plots of the training run


def _save(fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _layer_colors(n: int):
    return plt.cm.viridis(np.linspace(0, 0.95, max(n, 1)))


def plot_loss(results: dict, path: str) -> str:
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    curve = np.array(results.get("train_curve") or [[0, np.nan]], dtype=float)
    a.plot(curve[:, 0], curve[:, 1], lw=0.8, alpha=0.6, label="train (per step)")
    ep = results.get("epochs") or []
    if ep and curve.shape[0] > 1:
        steps_per_epoch = curve[-1, 0] / max(len(ep), 1)
        xs = [(e.get("epoch", i + 1)) * steps_per_epoch for i, e in enumerate(ep)]
        a.plot(xs, [e.get("test_loss", np.nan) for e in ep], "o-", label="test (per epoch)")
        b.plot([e.get("epoch", i + 1) for i, e in enumerate(ep)], [100 * e.get("test_acc", np.nan) for e in ep], "o-")
    a.set(xlabel="step", ylabel="cross-entropy", title="loss", yscale="log")
    a.legend()
    b.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"final test acc {_pct(results.get('final_test_acc'))}")
    return _save(fig, path)


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
    names = weight_names(rows)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    keys = [("w_norm", "weight norm ||w||", "log"), ("g_norm", "gradient norm ||g||", "log"),
            ("update_ratio", "update / weight: log10(lr ||g|| / ||w||)", "linear"),
            ("rel_change", "relative change ||w - w0|| / ||w0||", "linear")]
    colors = _layer_colors(len(names))
    for ax, (key, title, scale) in zip(axes.flat, keys):
        steps, vals = _series(rows, "params", key, names)
        for j, n in enumerate(names):
            ax.plot(steps, vals[:, j], color=colors[j], lw=1, label=n if j in (0, len(names) - 1) else None)
        ax.set(title=title, xlabel="step", yscale=scale)
        if key == "update_ratio":
            ax.axhline(-3, color="k", ls="--", lw=0.8)
    axes[0, 0].legend(fontsize=7, title="first / last layer (colour = depth)")
    return _save(fig, path)


def plot_relu_curves(rows: list[dict], path: str) -> str:
    names = list(rows[0]["act"]) if rows else []
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    colors = _layer_colors(len(names))
    for ax, (key, title) in zip(axes, [("zero_frac", "ReLU outputs that are 0 (per activation)"),
                                       ("dead_frac", "dead units (0 for the whole batch)"),
                                       ("pre_std", "pre-activation std")]):
        steps, vals = _series(rows, "act", key, names)
        for j, n in enumerate(names):
            ax.plot(steps, vals[:, j], color=colors[j], lw=1, label=n if j in (0, len(names) - 1) else None)
        ax.set(title=title, xlabel="step")
    if names:
        axes[0].legend(fontsize=7)
    return _save(fig, path)


def plot_bn_curves(rows: list[dict], path: str) -> str | None:
    names = list(rows[0]["bn"]) if rows else []
    if not names:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    colors = _layer_colors(len(names))
    for ax, what in zip(axes, ("gamma", "beta")):
        steps, mean = _series(rows, "bn", f"{what}_mean", names)
        _, std = _series(rows, "bn", f"{what}_std", names)
        for j, n in enumerate(names):
            ax.plot(steps, mean[:, j], color=colors[j], lw=1)
            ax.fill_between(steps, mean[:, j] - std[:, j], mean[:, j] + std[:, j], color=colors[j], alpha=0.08)
        ax.set(title=f"BN {what}: mean over channels (band = +-1 std)", xlabel="step")
    return _save(fig, path)


def plot_histograms(hists: list[dict], kind: str, path: str, max_layers: int = 4) -> str | None:
    rows = [h for h in hists if h["kind"] == kind]
    if not rows:
        return None
    names = list(dict.fromkeys(h["name"] for h in rows))
    pick = sorted({0, len(names) // 3, (2 * len(names)) // 3, len(names) - 1})[:max_layers]
    names = [names[i] for i in pick]
    steps = sorted({h["step"] for h in rows})
    if len(steps) > 5:  # at most 5 snapshots, spread over the run
        steps = [steps[i] for i in np.linspace(0, len(steps) - 1, 5).round().astype(int)]
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
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------
# feature visualisation


def _grid(ax, imgs: np.ndarray, ncol: int, title: str = "") -> None:
    """imgs (n, h, w) -> one tiled image with a 1-pixel gap, each tile scaled to its own range."""
    n, h, w = imgs.shape
    nrow = int(np.ceil(n / ncol))
    canvas = np.full((nrow * (h + 1) - 1, ncol * (w + 1) - 1), np.nan)
    for i in range(n):
        t = imgs[i]
        t = (t - t.min()) / (t.max() - t.min() + 1e-12)
        r, c = divmod(i, ncol)
        canvas[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = t
    ax.imshow(canvas, cmap="gray", interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def plot_filters(state: dict, init_state: dict | None, path: str) -> str:
    w = state["stem.0.weight"].float()  # (C, in, 3, 3)
    panels = ([("at initialisation", init_state["stem.0.weight"].float())] if init_state else []) + [("trained", w)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (name, t) in zip(axes[0], panels):
        _grid(ax, t[:, 0].numpy(), ncol=int(np.ceil(np.sqrt(t.shape[0]))), title=f"first-layer 3x3 filters, {name}")
    return _save(fig, path)


def stage_outputs(m: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Feature maps after the stem and after each stage, for x (B, 1, 28, 28)."""
    outs = {}
    hooks = [m.stem.register_forward_hook(lambda mod, i, o: outs.__setitem__("stem", o))]
    for k, s in enumerate(m.stages):
        hooks.append(s.register_forward_hook(lambda mod, i, o, k=k: outs.__setitem__(f"stage {k + 1}", o)))
    with torch.no_grad():
        m(x)
    for h in hooks:
        h.remove()
    return outs


def plot_feature_maps(m, x: torch.Tensor, label: int, path: str, max_ch: int = 16) -> str:
    outs = stage_outputs(m, x[None])
    fig, axes = plt.subplots(1, 1 + len(outs), figsize=(3.2 * (1 + len(outs)), 3.6))
    axes[0].imshow(x[0].numpy(), cmap="gray")
    axes[0].set_title(f"input (label {label})", fontsize=9)
    axes[0].axis("off")
    for ax, (name, o) in zip(axes[1:], outs.items()):
        o = o[0, :max_ch].numpy()  # (C', H, W)
        _grid(ax, o, ncol=4, title=f"{name}: {tuple(outs[name].shape[1:])}, first {len(o)} ch")
    return _save(fig, path)


def top_activating(m, x: torch.Tensor, k: int = 6, max_ch: int = 12):
    """-> (channels, idx (max_ch, k), score): test images with the largest spatially averaged activation of
    each last-stage channel."""
    acts = []
    for i in range(0, len(x), 500):
        acts.append(stage_outputs(m, x[i:i + 500])["stage 3"].mean(dim=(2, 3)))  # (b, 4w)
    a = torch.cat(acts)  # (N, 4w)
    ch = list(range(min(max_ch, a.shape[1])))
    score, idx = a[:, ch].topk(k, dim=0)  # (k, max_ch)
    return ch, idx.t(), score.t()


def plot_top_activating(m, x: torch.Tensor, y: torch.Tensor, path: str) -> str:
    ch, idx, score = top_activating(m, x)
    k = idx.shape[1]
    imgs = x[idx.flatten(), 0].numpy()  # (channels * k, 28, 28), row r = channel ch[r]
    fig, ax = plt.subplots(figsize=(1.1 * k + 1, 1.1 * len(ch) + 0.6))
    _grid(ax, imgs, ncol=k, title="top-activating test images per last-stage channel (number = label)")
    ax.axis("on")
    ax.set_xticks([])
    ax.set_yticks([29 * r + 14 for r in range(len(ch))], [f"ch {c}" for c in ch], fontsize=8)
    for r in range(len(ch)):
        for j in range(k):
            ax.text(29 * j + 1, 29 * r + 6, str(int(y[idx[r, j]])), color="yellow", fontsize=7)
    return _save(fig, path)


def saliency_and_gradcam(m, x: torch.Tensor, cls: int) -> tuple[np.ndarray, np.ndarray, float]:
    """x (1, 1, 28, 28) -> (|d logit_cls / d x| (28, 28), Grad-CAM (28, 28) on the last stage, p(cls))."""
    feats = {}

    def keep(mod, inp, out):  # returns None: a forward hook that returns something replaces the output
        out.retain_grad()
        feats["a"] = out

    h = m.stages[-1].register_forward_hook(keep)
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        logits = m(x)  # (1, K)
        logits[0, cls].backward()
    h.remove()
    sal = x.grad[0, 0].abs().numpy()
    a, g = feats["a"], feats["a"].grad  # (1, C, 7, 7)
    weights = g.mean(dim=(2, 3), keepdim=True)  # (1, C, 1, 1): channel importance
    cam = F.relu((weights * a).sum(1, keepdim=True))  # (1, 1, 7, 7)
    cam = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[0, 0].detach().numpy()
    return sal, cam, logits.softmax(1)[0, cls].item()


def plot_saliency(m, x: torch.Tensor, y: torch.Tensor, path: str) -> tuple[str, list[dict]]:
    classes = sorted(int(c) for c in torch.unique(y))
    fig, axes = plt.subplots(3, len(classes), figsize=(1.5 * len(classes), 4.8), squeeze=False)
    stats = []
    for j, c in enumerate(classes):
        i = int((y == c).nonzero()[0])
        sal, cam, p = saliency_and_gradcam(m, x[i:i + 1], c)
        img = x[i, 0].numpy()
        axes[0][j].imshow(img, cmap="gray")
        axes[0][j].set_title(f"class {c}\np={p:.2f}", fontsize=8)
        axes[1][j].imshow(sal, cmap="hot")
        axes[2][j].imshow(img, cmap="gray")
        axes[2][j].imshow(cam, cmap="jet", alpha=0.5)
        stats.append({"class": c, "test_index": i, "p": p})
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1][0].set_ylabel("saliency", fontsize=8)
    axes[2][0].set_ylabel("Grad-CAM", fontsize=8)
    return _save(fig, path), stats


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
        return ["(no evolution.jsonl: run train.py with --record-every > 0)"]
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


def make_report(cfg: AnalyzeConfig, log=print) -> str:
    """Write every PNG and report.md into cfg.out (default RUN_DIR/report); -> path of report.md."""
    run = load_run(cfg.run_dir)
    out = cfg.out or os.path.join(cfg.run_dir, "report")
    os.makedirs(out, exist_ok=True)
    res, conf, rows = run["results"], run["config"], run["evolution"]
    figs: list[tuple[str, str | None]] = []
    P = lambda name: os.path.join(out, name)  # noqa: E731
    figs.append(("Loss and accuracy", plot_loss(res, P("loss.png"))))
    if rows:
        figs.append(("Weights, gradients and updates per layer", plot_param_curves(rows, P("evolution_params.png"))))
        figs.append(("ReLU activity per layer", plot_relu_curves(rows, P("evolution_relu.png"))))
        figs.append(("BatchNorm gamma and beta", plot_bn_curves(rows, P("evolution_bn.png"))))
    for kind in ("weight", "grad", "act"):
        figs.append((f"Histograms: {kind}", plot_histograms(run["histograms"], kind, P(f"hist_{kind}.png"))))
    log("plotted the training curves")

    m = build_model(conf, run["state"])
    init_note = "saved by evolution.Recorder (init.pt)"
    if run["init_state"] is None:  # no Recorder: rebuild the init the way train.py does (seed, then ResNet)
        torch.manual_seed(int(conf.get("seed", 0)))
        run["init_state"] = model_lib.ResNet(m.depth, m.width, m.batch_norm, m.residual,
                                             zero_init_residual=bool(conf.get("zero_init_residual", False))).state_dict()
        init_note = "rebuilt from the run's seed (no init.pt)"
    data_dir = cfg.data_dir or conf.get("data_dir") or None
    try:
        _, _, x_test, y_test = mnist.load(conf.get("dataset", "digits"), data_dir=data_dir)
    except mnist.DataError as e:
        raise RunDirError(f"cannot load the run's test data: {e}") from None
    x, y = x_test[:cfg.n_images].float(), y_test[:cfg.n_images]
    with torch.no_grad():
        acc = (m(x).argmax(1) == y).float().mean().item()
    figs.append(("First-layer filters", plot_filters(run["state"], run["init_state"], P("filters.png"))))
    i = min(cfg.digit_index, len(x) - 1)
    figs.append(("One digit through every stage", plot_feature_maps(m, x[i], int(y[i]), P("feature_maps.png"))))
    figs.append(("Top-activating test images", plot_top_activating(m, x, y, P("top_activating.png"))))
    sal_path, sal_stats = plot_saliency(m, x, y, P("saliency_gradcam.png"))
    figs.append(("Saliency and Grad-CAM per class", sal_path))
    log("plotted the features")

    ep = res.get("epochs") or []
    lines = [f"# Run report: `{cfg.run_dir}`", "",
             "Made by `python deep_gradients/analyze.py RUN_DIR`. Config: "
             + ", ".join(f"`{k}={v}`" for k, v in sorted(conf.items())), "",
             "## Numbers", "",
             f"- final test accuracy (results.json): **{_pct(res.get('final_test_acc'))}**",
             f"- accuracy of ckpt.pt on the first {len(x)} test images only (recomputed here; the images the "
             f"figures use): {100 * acc:.2f}%",
             f"- final train loss (last step): {_fmt(res['train_curve'][-1][1] if res.get('train_curve') else None, '.4f')}",
             "", "| epoch | train loss | test loss | test acc |", "|---|---|---|---|"]
    for e in ep:
        lines.append(f"| {e.get('epoch')} | {_fmt(e.get('train_loss'), '.4f')} | {_fmt(e.get('test_loss'), '.4f')} "
                     f"| {_fmt(100 * e['test_acc'] if e.get('test_acc') is not None else None, '.2f')}% |")
    lines += ["", f"First-layer filters at initialisation: {init_note}."]
    lines += ["", "## Per-layer evolution", ""] + evolution_table(rows)
    lines += ["", "Saliency / Grad-CAM examples (first test image of each class): "
              + ", ".join(f"class {s['class']} p={s['p']:.2f}" for s in sal_stats), "", "## Figures", ""]
    for title, path in figs:
        if path:
            lines += [f"### {title}", "", f"![{title}]({os.path.basename(path)})", ""]
    report = P("report.md")
    tmp = report + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, report)
    return report


def parse_args(argv=None) -> AnalyzeConfig:
    p = ArgParser(prog="analyze.py", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="a train.py output directory (results.json, ckpt.pt, ...)")
    p.add_argument("--out", default="", help="output folder (default RUN_DIR/report)")
    p.add_argument("--data-dir", default="", help="where the run's dataset lives, if moved")
    p.add_argument("--n-images", type=int, default=AnalyzeConfig.n_images, help="test images scanned")
    p.add_argument("--digit-index", type=int, default=AnalyzeConfig.digit_index, help="test image to follow")
    a = p.parse_args(argv)
    if a.n_images < 10:
        p.error(f"--n-images {a.n_images} must be >= 10")
    if not 0 <= a.digit_index < a.n_images:
        p.error(f"--digit-index {a.digit_index} must be in [0, --n-images) = [0, {a.n_images})")
    return AnalyzeConfig(a.run_dir, a.out, a.data_dir, a.n_images, a.digit_index)


def main(argv=None) -> None:
    cfg = parse_args(argv)
    try:
        path = make_report(cfg)
    except RunDirError as e:
        print(f"analyze.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
