"""What a person reads of a train.py run: one line per epoch, and curves.png (training loss per step, test
accuracy per epoch)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

from files import atomic_write

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402


def epoch_line(rec: dict, cuda: bool) -> str:
    """The one-line log of an epoch's record (test numbers only if it was evaluated, GPU numbers only on CUDA)."""
    msg = f"epoch {rec['epoch']}: train loss {rec['train_loss']:.4f}"
    if "test_loss" in rec:
        msg += f" | test loss {rec['test_loss']:.4f} acc {100 * rec['test_acc']:.2f}%"
    msg += f" | {rec['images_per_s']:.0f} img/s, {rec['epoch_time_s']:.1f} s"
    if cuda:
        msg += f", {rec['peak_mem_mb']:.0f} MiB"
        if rec["gpu_util"] is not None:
            msg += f", GPU util {rec['gpu_util']:.0f}%"
    if rec.get("mfu") is not None:  # model FLOPs utilisation, where the device's peak is known (a GPU)
        msg += f", MFU {100 * rec['mfu']:.1f}%"
    return msg


def save_figure(fig, path, dpi: int = 90) -> Path:
    """PNG of `fig` at `path`, written atomically; the figure is closed."""
    if fig.get_layout_engine() is None:  # figures made with layout="constrained" keep theirs
        fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    finally:
        plt.close(fig)


def plot_curves(results: dict, path: Path) -> None:
    """Training loss per logged step and test accuracy per epoch, side by side."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    if results["train_curve"]:
        steps, losses = zip(*results["train_curve"])
        a.plot(steps, losses, lw=0.8)
    a.set(xlabel="step", ylabel="train loss (batch)", yscale="log", title="training loss")
    accs = [(e["epoch"], 100 * e["test_acc"]) for e in results["epochs"] if e.get("test_acc") is not None]
    if accs:
        b.plot(*zip(*accs), marker="o")
    b.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    c = results["config"]
    fig.suptitle(f"ResNet-{c['depth']} width {c['width']} on {c['dataset']}", fontsize=9)
    save_figure(fig, path, dpi=110)
