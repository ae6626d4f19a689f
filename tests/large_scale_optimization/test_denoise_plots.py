"""large_scale_optimization/denoise_plots.py: what the convergence figure draws."""
import numpy as np
import pytest

import denoise_plots
from first_order import Trace


def test_convergence_plot_floors_and_slopes(tmp_path, monkeypatch):
    """An exact one-step method (gap 0) sits on the axis's floor, a decade below the iterating method's smallest
    relative gap (it was 1e-16 / f*, stretching the axis to 1e-20), and the rate slopes of the duality-gap panel
    start at that panel's largest value."""
    figs, close = [], denoise_plots.plt.close
    monkeypatch.setattr(denoise_plots.plt, "close", figs.append)
    f_star = 2000.0
    k = np.arange(1, 101)
    sub = Trace("subgrad-sqrt", np.zeros(2), list(k), list(0.01 * k), list(f_star * (1 + 5 / np.sqrt(k))),
                        list(f_star * 0.9 / np.sqrt(k)))
    one = Trace("ista", np.zeros(2), [1], [0.01], [f_star], [0.0])
    denoise_plots.plot_convergence([sub, one], f_star, "l1", tmp_path)
    ax_obj, _, ax_gap, _ = figs[0].axes
    smallest = 0.9 / 10 / 1.5  # sub's smallest relative gap: its duality gap / P at k = 100 (its P-f*/f* is 0.5)
    ista = next(line for line in ax_obj.lines if line.get_label().startswith("ista"))
    assert list(ista.get_ydata()) == pytest.approx([smallest / 10])
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


def test_a_method_exact_in_one_step_does_not_squeeze_the_others(tmp_path, monkeypatch):
    """On l1 ista/fista are exact after one step (gap ~1e-13): drawn at 1e-16 they stretched the axis over 16
    decades and pressed the subgradient curves into its top. The axis now ends a decade below the smallest gap of
    the methods that iterate, and the one-step method is a triangle on that floor, labelled as exact."""
    figs, close = [], denoise_plots.plt.close
    monkeypatch.setattr(denoise_plots.plt, "close", figs.append)
    f_star = 100.0
    k = np.arange(1, 301)
    sub = Trace("subgrad-polyak", np.zeros(2), list(k), list(0.01 * k), list(f_star * (1 + 1 / k)), list(f_star * 2 / k))
    one = Trace("fista", np.zeros(2), [1], [0.01], [f_star * (1 + 1e-14)], [1e-12])
    denoise_plots.plot_convergence([sub, one], f_star, "l1", tmp_path)
    ax_obj, _, ax_gap, _ = figs[0].axes
    smallest = 1 / 300  # sub's smallest relative objective gap (its duality gap / P is larger)
    for ax in (ax_obj, ax_gap):
        assert ax.get_ylim()[0] == pytest.approx(smallest / 20)  # half the floor: the triangle is visible
        tri = next(line for line in ax.lines if line.get_label().startswith("fista"))
        assert list(tri.get_ydata()) == pytest.approx([smallest / 10]) and tri.get_marker() == "v"
        assert "exact in 1 step" in tri.get_label()
    assert not any("dual gap" in t.get_text() for t in figs[0].texts)  # l1 runs on the primal: no dual note
    close(figs[0])


def test_dual_methods_say_why_fista_follows_one_over_k(tmp_path, monkeypatch):
    """On TV, fista runs on the dual: its 1/k^2 bounds the dual gap, and the primal gap it is plotted by
    follows 1/k on tv1d. The figure says so; without a dual method it says nothing."""
    figs, close = [], denoise_plots.plt.close
    monkeypatch.setattr(denoise_plots.plt, "close", figs.append)
    k = np.arange(1, 51)
    fista = Trace("fista", np.zeros(2), list(k), list(0.01 * k), list(2.0 * (1 + 1 / k)), list(1.0 / k))
    sub = Trace("subgrad-sqrt", np.zeros(2), list(k), list(0.01 * k), list(2.0 * (1 + 1 / k)), list(1.0 / k))
    denoise_plots.plot_convergence([fista], 2.0, "tv1d", tmp_path)
    denoise_plots.plot_convergence([sub], 2.0, "tv1d", tmp_path)
    note = " ".join(t.get_text() for t in figs[0].texts)
    assert "dual gap D* - D(p_k)" in note and "guaranteed only 1/k for fista" in note
    assert not any("dual gap" in t.get_text() for t in figs[1].texts)
    for fig in figs:
        close(fig)


def test_panels_explain_a_higher_psnr_than_the_most_accurate_solve():
    """Subgradient scores 28.67 dB against FISTA's 28.55 on tv2d: the panels' caption names it and says why
    (PSNR is not the objective); when the most accurate solve also has the best PSNR there is no caption."""
    rng = np.random.default_rng(0)
    clean = rng.uniform(size=(8, 8))
    near, far = clean + 0.01 * rng.standard_normal((8, 8)), clean + 0.1 * rng.standard_normal((8, 8))
    accurate = Trace("fista", far, [1], [0.1], [1.0], [0.0])
    sloppy = Trace("subgrad-polyak", near, [1], [0.1], [1.5], [np.nan])
    note = denoise_plots.psnr_note(clean, [accurate, sloppy])
    assert note.startswith("subgrad-polyak scores a higher PSNR than fista, the most accurate solve")
    assert "objective never sees" in note
    assert denoise_plots.psnr_note(clean, [Trace("fista", near, [1], [0.1], [1.0], [0.0]),
                                           Trace("subgrad-polyak", far, [1], [0.1], [1.5], [np.nan])]) == ""
