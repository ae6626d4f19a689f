"""build_nanogpt/logs.py: curves.png plots every iter's training loss, and HellaSwag with its 95% binomial band
and the chance line; a resumed log keeps the records before the checkpoint."""
import json
import math

import matplotlib.axes
import pytest

import logs


def test_curves_show_every_train_iter_and_a_binomial_band(tmp_path, monkeypatch):
    drawn = {}
    real_fill, real_axhline = matplotlib.axes.Axes.fill_between, matplotlib.axes.Axes.axhline
    real_plot = matplotlib.axes.Axes.plot

    def plot(self, *args, label=None, **kw):
        drawn.setdefault("series", {})[label] = (list(args[0]), list(args[1]))
        return real_plot(self, *args, label=label, **kw)

    def fill(self, x, low, high, **kw):
        drawn["band"] = (list(x), list(low), list(high))
        return real_fill(self, x, low, high, **kw)

    def hline(self, y=0, **kw):
        drawn.setdefault("lines", []).append(y)
        return real_axhline(self, y, **kw)
    monkeypatch.setattr(matplotlib.axes.Axes, "fill_between", fill)
    monkeypatch.setattr(matplotlib.axes.Axes, "axhline", hline)
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", plot)
    records = [{"kind": "train", "iter": i, "loss": 5 - i / 10} for i in range(20)]
    records += [{"kind": "val", "iter": i, "val_loss": 6 - i / 10} for i in (0, 10, 19)]
    records += [{"kind": "hellaswag", "iter": i, "n": 100, "acc_norm": p, "acc": p} for i, p in ((0, 0.25), (10, 0.3))]
    logs.plot_curves(records, str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    series = drawn["series"]
    assert series["train loss (every iter)"] == (list(range(20)), [5 - i / 10 for i in range(20)])
    assert series["val loss"] == ([0, 10, 19], [6, 5, 6 - 1.9])
    x, low, high = drawn["band"]
    assert x == [0, 10]
    for p, lo, hi in zip((0.25, 0.3), low, high):
        half = 1.96 * math.sqrt(p * (1 - p) / 100)
        assert lo == pytest.approx(p - half) and hi == pytest.approx(p + half)
    assert logs.CHANCE in drawn["lines"] and 0.2955 in drawn["lines"]


def test_resumed_logger_keeps_the_records_before_the_checkpoint(tmp_path):
    log = logs.Logger(str(tmp_path), True, 0)
    for i in range(6):
        log.log({"kind": "train", "iter": i, "loss": 1.0}, f"iter {i}")
    logs.Logger(str(tmp_path), True, 4)
    kept = [json.loads(x)["iter"] for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert kept == [0, 1, 2, 3]
    assert "resumed from the checkpoint at iter 4" in (tmp_path / "log.txt").read_text()
