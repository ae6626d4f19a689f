"""What a trained network looks at (Zeiler & Fergus 2014; Simonyan et al. 2014; Selvaraju et al. 2017): its
first-layer filters at init and trained, one digit's feature maps through every stage, the test images that
excite each last-stage channel most, and per class a saliency map (|d logit / d input|) and a Grad-CAM map.
analyze.py puts them in its report."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from curves import save_figure  # noqa: E402


def _grid(ax, imgs: np.ndarray, ncol: int, title: str = "", shared: bool = False):
    """imgs (n, h, w) -> one tiled image with a 1-pixel gap. Each tile scaled to its own range (grey), or with
    `shared` one symmetric scale for all, blue < 0 < red (so the sign and size of weights can be compared)."""
    n, h, w = imgs.shape
    nrow = int(np.ceil(n / ncol))
    canvas = np.full((nrow * (h + 1) - 1, ncol * (w + 1) - 1), np.nan)
    for i in range(n):
        t = imgs[i] if shared else (imgs[i] - imgs[i].min()) / (imgs[i].max() - imgs[i].min() + 1e-12)
        r, c = divmod(i, ncol)
        canvas[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = t
    a = float(np.abs(imgs).max()) or 1.0
    im = ax.imshow(canvas, cmap="RdBu_r" if shared else "gray", interpolation="nearest",
                   **({"vmin": -a, "vmax": a} if shared else {}))
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    return im


def plot_filters(state: dict, init_state: dict | None, path: str) -> str:
    """The first conv's 3x3 filters at init, trained, and what training changed, on one colour scale each."""
    w = state["stem.0.weight"].float()[:, 0]  # (C, 3, 3)
    panels = [("trained", w)]
    if init_state is not None:
        w0 = init_state["stem.0.weight"].float()[:, 0]
        panels = [("at initialisation", w0), ("trained", w), ("trained - init", w - w0)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    for ax, (name, t) in zip(axes[0], panels):
        im = _grid(ax, t.numpy(), ncol=int(np.ceil(np.sqrt(t.shape[0]))), title=f"first-layer filters, {name}",
                   shared=True)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return str(save_figure(fig, path))


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
    return str(save_figure(fig, path))


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
    return str(save_figure(fig, path))


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
    """Per class, a test image, its saliency and its Grad-CAM, each map scaled to its own maximum (one colour
    bar per row: the share of that image's strongest response)."""
    classes = sorted(int(c) for c in torch.unique(y))
    fig, axes = plt.subplots(3, len(classes), figsize=(1.5 * len(classes) + 1.2, 4.8), squeeze=False,
                             layout="constrained")
    stats = []
    for j, c in enumerate(classes):
        i = int((y == c).nonzero()[0])
        sal, cam, p = saliency_and_gradcam(m, x[i:i + 1], c)
        img = x[i, 0].numpy()
        axes[0][j].imshow(img, cmap="gray")
        axes[0][j].set_title(f"class {c}\np={p:.2f}", fontsize=8)
        sal_im = axes[1][j].imshow(sal / max(sal.max(), 1e-12), cmap="hot", vmin=0, vmax=1)
        axes[2][j].imshow(img, cmap="gray")
        cam_im = axes[2][j].imshow(cam / max(cam.max(), 1e-12), cmap="jet", alpha=0.5, vmin=0, vmax=1)
        stats.append({"class": c, "test_index": i, "p": p})
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1][0].set_ylabel("saliency", fontsize=8)
    axes[2][0].set_ylabel("Grad-CAM", fontsize=8)
    for row, im in ((1, sal_im), (2, cam_im)):
        bar = fig.colorbar(im, ax=list(axes[row]), fraction=0.02, pad=0.01)
        bar.set_label("of its max", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    return str(save_figure(fig, path)), stats
