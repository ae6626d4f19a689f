"""large_scale_optimization/denoise_plots.py: what the convergence figure draws."""
import numpy as np
import pytest

import denoise_plots
from first_order import Trace


def test_convergence_plot_floors_and_slopes(tmp_path, monkeypatch):
    """An exact one-step method sits at a relative gap of 1e-16 (it was 1e-16 / f*, stretching the axis to
    1e-20), and the rate slopes of the duality-gap panel start at that panel's largest value."""
    figs, close = [], denoise_plots.plt.close
    monkeypatch.setattr(denoise_plots.plt, "close", figs.append)
    f_star = 2000.0
    k = np.arange(1, 101)
    sub = Trace("subgrad-sqrt", np.zeros(2), list(k), list(0.01 * k), list(f_star * (1 + 5 / np.sqrt(k))),
                        list(f_star * 0.9 / np.sqrt(k)))
    one = Trace("ista", np.zeros(2), [1], [0.01], [f_star], [0.0])
    denoise_plots.plot_convergence([sub, one], f_star, "l1", tmp_path)
    ax_obj, _, ax_gap, _ = figs[0].axes
    assert min(min(line.get_ydata()) for line in ax_obj.lines) >= 1e-16 * 0.999
    slopes = [line for line in ax_gap.lines if line.get_linestyle() == ":"]
    gap_rel = np.asarray(sub.gap) / np.asarray(sub.primal)
    assert max(slopes[0].get_ydata()) == pytest.approx(gap_rel.max())
    close(figs[0])


def test_a_method_keeps_its_colour_across_problems(tmp_path, monkeypatch):
    """fista is drawn in one colour whether or not 'exact' (tv1d, l1) or 'chambolle' (tv2d) ran before it:
    the colour used to be the method's position in that problem's list."""
    figs, close = [], denoise_plots.plt.close
    monkeypatch.setattr(denoise_plots.plt, "close", figs.append)

    def trace(method):
        return Trace(method, np.zeros(2), [1, 2, 3], [0.01, 0.02, 0.03], [3.0, 2.5, 2.2], [1.0, 0.5, 0.2])

    exact = Trace("exact", np.zeros(2), [1], [0.01], [2.0], [0.0])
    denoise_plots.plot_convergence([exact, trace("ista"), trace("fista")], 2.0, "tv1d", tmp_path)
    denoise_plots.plot_convergence([trace("fista"), trace("chambolle")], 2.0, "tv2d", tmp_path)
    colours = [{line.get_label(): line.get_color() for line in fig.axes[0].lines} for fig in figs]
    assert colours[0]["fista"] == colours[1]["fista"]
    assert len({colours[0]["ista"], colours[0]["fista"], colours[1]["chambolle"]}) == 3
    for fig in figs:
        close(fig)
