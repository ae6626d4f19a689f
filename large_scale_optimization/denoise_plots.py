"""The denoising figures: convergence (objective and duality gap, log-log with rate slopes, and against
solver time), clean / noisy / denoised panels, and PSNR against lam."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np

from denoise_data import psnr
from files import write_png
from first_order import PROX_GRADIENT, SUBGRADIENT

# one colour per method in every figure of every problem (tv2d has no "exact", l1 and tv1d no "chambolle")
COLOURS = {m: f"C{i}" for i, m in enumerate(("exact", *SUBGRADIENT, *PROX_GRADIENT, "chambolle"))}

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)


def relative_gaps(tr, f_star: float) -> tuple[np.ndarray, np.ndarray]:
    """(P(x_k) - f*) / f* and duality gap / P along a trace (nan where no dual point)."""
    primal = np.asarray(tr.primal, dtype=float)
    return (primal - f_star) / abs(f_star), np.asarray(tr.gap, dtype=float) / np.abs(primal)


def axis_floor(long: list, f_star: float) -> float:
    """The lowest value the gap panels show: a decade below the smallest positive gap of `long`, the methods that
    take more than one step, so that a method exact in one step (ista / fista on l1: a gap of ~1e-13) does not
    stretch the axis down to 1e-16 and squeeze every other curve into its top; 1e-16 when `long` is empty."""
    vals = [v for tr in long for v in np.concatenate(relative_gaps(tr, f_star)) if np.isfinite(v) and v > 0]
    return max(min(vals) / 10, 1e-16) if vals else 1e-16


DUAL_NOTE = ("ista / fista run on the dual: 1/k and 1/k^2 bound the dual gap D* - D(p_k). The primal point "
             "x_k = y - K^T p_k is only O(sqrt(D* - D(p_k))) from x* (the dual is 1-strongly concave in K^T p), "
             "and lam R(K x) is Lipschitz,\nso P(x_k) - f* and the duality gap are guaranteed only 1/k for fista "
             "(1/sqrt(k) for ista): fista's curves here may follow 1/k, not 1/k^2. The tests check the dual bounds.")


def plot_convergence(traces: list, f_star: float, problem: str, out_dir: Path):
    """Objective gap and duality gap against iteration (log-log, with rate slopes) and wall time. A method that
    is exact in one step is drawn as a triangle on the axis's floor (axis_floor), labelled so."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    long = [tr for tr in traces if len(tr.iters) > 1 and tr.method != "exact"]
    floor = axis_floor(long, f_star)
    for tr in traces:
        if tr.method == "exact":  # it *is* f*: mark its run time instead of a point at gap 1e-16
            for ax in axes[:, 1]:
                ax.axvline(tr.time[0], color=COLOURS[tr.method], ls="--", label=f"exact: {tr.time[0]:.3g} s")
            continue
        it = np.asarray(tr.iters, dtype=float)
        obj, gap = relative_gaps(tr, f_star)
        label = tr.method
        if len(it) == 1 and obj[0] < floor:
            label = f"{tr.method}: exact in 1 step (gap below the axis)"
        style = dict(color=COLOURS[tr.method], marker="v" if len(it) == 1 else None, ms=7)
        obj = np.maximum(obj, floor)
        axes[0, 0].loglog(it, obj, label=label, **style)
        axes[0, 1].loglog(np.maximum(tr.time, 1e-6), obj, label=label, **style)
        if not np.all(np.isnan(gap)):
            axes[1, 0].loglog(it, np.maximum(gap, floor), label=label, **style)
            axes[1, 1].loglog(np.maximum(tr.time, 1e-6), np.maximum(gap, floor), label=label, **style)
    if long:
        k = np.logspace(0, math.log10(max(tr.iters[-1] for tr in long)), 50)
        top_obj = max(max(np.asarray(tr.primal) - f_star) for tr in long) / abs(f_star)
        gaps = [g for tr in long for g in np.asarray(tr.gap) / np.abs(np.asarray(tr.primal)) if np.isfinite(g)]
        # each panel's slopes start at its own largest value: the relative duality gap starts near 1,
        # the objective gap near 20
        for ax, top in ((axes[0, 0], top_obj), (axes[1, 0], max(gaps, default=np.nan))):
            if not np.isfinite(top) or top <= 0:
                continue
            for p, lbl in ((0.5, "1/sqrt(k)"), (1, "1/k"), (2, "1/k^2")):
                ax.loglog(k, top * k**-p, "k:", lw=0.8)
                k_end = min(k[-1], (top / floor) ** (1 / p))  # the label inside the axis: where the slope meets the floor
                ax.text(k_end, top * k_end**-p, lbl, fontsize=8, ha="right", va="bottom", clip_on=True)
    for ax in axes.flat:
        ax.set_ylim(bottom=floor / 2)  # the slopes and a one-step method's triangle end there
    titles = ("(P(x_k) - f*) / f*  vs iteration", "(P(x_k) - f*) / f*  vs solver time [s]",
              "duality gap / P  vs iteration", "duality gap / P  vs solver time [s]")
    for ax, title, xlabel in zip(axes.flat, titles, ("iteration k", "solver time [s]") * 2):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    axes[0, 1].legend(fontsize=8)
    fig.suptitle(f"{problem}: subgradient = best so far; ista/fista on the dual (TV) or the primal (l1)")
    dual = problem in ("tv1d", "tv2d") and any(tr.method in PROX_GRADIENT for tr in traces)
    if dual:
        fig.text(0.5, 0.005, DUAL_NOTE, ha="center", va="bottom", fontsize=8)
    fig.tight_layout(rect=(0, 0.05 if dual else 0, 1, 1))
    write_png(out_dir / "convergence.png", fig, dpi=90)
    plt.close(fig)


def psnr_note(clean: np.ndarray, traces: list) -> str:
    """A caption for the methods whose PSNR is above that of the most accurate solve (the lowest objective),
    e.g. subgradient on tv2d: PSNR measures what the objective never sees. Empty when there are none."""
    if not traces:
        return ""
    best = min(traces, key=lambda tr: tr.primal[-1])
    top = psnr(best.x, clean)
    above = [tr.method for tr in traces if tr.primal[-1] > best.primal[-1] and psnr(tr.x, clean) > top + 0.005]
    if not above:
        return ""
    verb = "scores" if len(above) == 1 else "score"
    return (f"{', '.join(above)} {verb} a higher PSNR than {best.method}, the most accurate solve (lowest objective): "
            f"PSNR is the distance to the clean image,\nwhich the objective never sees. Its minimiser is not the "
            f"image closest to the clean one; an unfinished solve can stop nearer by chance. lam sets the PSNR "
            f"(psnr_vs_lam.png).")


def plot_panels(clean: np.ndarray, y: np.ndarray, traces: list, out_dir: Path):
    panels = [("clean", clean), (f"noisy {psnr(y, clean):.1f} dB", y)]
    panels += [(f"{tr.method} {psnr(tr.x, clean):.1f} dB", tr.x) for tr in traces]
    if clean.ndim == 1:
        w = slice(0, min(clean.size, 2000))
        fig, axes = plt.subplots(len(panels) - 1, 1, figsize=(10, 1.8 * (len(panels) - 1)), sharex=True)
        axes = np.atleast_1d(axes)
        axes[0].plot(y[w], color="0.7", lw=0.5, label="noisy")
        axes[0].plot(clean[w], "k", lw=1, label="clean")
        axes[0].legend(fontsize=8, loc="upper right")
        axes[0].set_title(f"{panels[1][0]}; samples 0-{w.stop} of {clean.size}; below: each method (red) "
                          f"over the clean signal (black)", fontsize=9)
        for ax, (title, x) in zip(axes[1:], panels[2:]):
            ax.plot(clean[w], "k", lw=0.8)
            ax.plot(x[w], "C3", lw=0.8)
            ax.set_title(title, fontsize=9)
        axes[-1].set_xlabel("sample index")
    else:
        cols = min(4, len(panels))
        rows = -(-len(panels) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows))
        for ax in np.ravel(axes):
            ax.axis("off")
        for ax, (title, x) in zip(np.ravel(axes), panels):
            ax.imshow(np.clip(x, 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=9)
    note = psnr_note(clean, traces)
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=8)
    fig.tight_layout(rect=(0, 0.06 if note else 0, 1, 1))
    write_png(out_dir / "panels.png", fig, dpi=90)
    plt.close(fig)


def plot_sweep(sweep: dict, lam: float, problem: str, out_dir: Path):
    if not sweep["lam"]:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogx(sweep["lam"], sweep["psnr"], "o-")
    ax.axvline(lam, color="0.6", ls="--", label=f"lam = {lam:g}")
    ax.set_xlabel("lam")
    ax.set_ylabel("PSNR [dB]")
    ax.set_title(f"{problem}: PSNR vs lam")
    ax.legend()
    fig.tight_layout()
    write_png(out_dir / "psnr_vs_lam.png", fig, dpi=90)
    plt.close(fig)
