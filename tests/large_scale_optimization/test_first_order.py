"""large_scale_optimization/first_order.py: duality gaps, the rates of each method, the tv2d reference and
the KKT residual report, against the exact solutions of prox.py / tv.py."""
import math

import numpy as np
import pytest

import prox
import tv
import first_order
from denoise_data import piecewise_constant


@pytest.fixture(scope="module")
def tv1d():
    """A fixed 1-D problem: 300 samples, 10 pieces, sigma 0.1, lam 0.3, with its exact solution."""
    rng = np.random.default_rng(0)
    y = piecewise_constant(300, 30, rng) + 0.1 * rng.standard_normal(300)
    prob = prox.tv1d_problem(y, 0.3)
    x_star = prob.exact()
    return prob, x_star, prob.primal(x_star), tv.tv1d_dual(x_star, y)


def test_kkt_residual_flags_each_violated_condition(tv1d):
    """first_order.kkt_residual_tv1d (reported for the exact solver): all three ~0 at x*, and each one catches
    the point that violates it."""
    prob, x_star, _, _ = tv1d
    y, lam = prob.y, prob.lam
    assert max(first_order.kkt_residual_tv1d(x_star, y, lam).values()) < 1e-10
    shifted = first_order.kkt_residual_tv1d(x_star + 0.01, y, lam)  # sum(x) != sum(y)
    assert shifted["sum_residual"] == pytest.approx(0.01 * y.size, rel=1e-6)
    raw = first_order.kkt_residual_tv1d(y, y, lam)  # z = 0, but y jumps everywhere: |z| should be lam there
    assert raw["sum_residual"] == 0 and raw["box_violation"] == 0 and raw["jump_sign_residual"] == lam
    flat = first_order.kkt_residual_tv1d(np.full(y.size, y.mean()), y, lam)  # no jumps, |z| far above lam
    assert flat["box_violation"] > 1.0 and flat["jump_sign_residual"] == 0


def test_tv2d_reference_is_the_certified_lower_bound():
    """No exact solver for 2-D TV: f* is D(p) of a long fista-restart run, a certified lower bound on P*, so
    every plotted P - f* is >= 0 (its primal is an upper bound, reported as f_upper)."""
    rng = np.random.default_rng(3)
    y = np.kron(rng.uniform(size=(2, 2)), np.ones((8, 8))) + 0.1 * rng.standard_normal((16, 16))
    prob = prox.tv2d_problem(y, 0.1, isotropic=True)
    ref = first_order.reference(prob, ref_iters=30)
    p_star = first_order.prox_gradient(prob, 5000, accel=True, restart=True, tol=1e-13).primal[-1]
    assert ref["f_star"] < ref["f_upper"] and ref["f_star"] <= p_star <= ref["f_upper"]
    assert ref["iters"] == 30 and "fista-restart 30 iters" in ref["how"]  # the budget, not yet certified to 1e-11


def test_exact_solver_equals_converged_fista(tv1d):
    prob, x_star, f_star, _ = tv1d
    tr = first_order.prox_gradient(prob, 5000, accel=True, restart=True, tol=1e-13)
    assert tr.gap[-1] <= 1e-13 * tr.primal[-1]
    np.testing.assert_allclose(tr.x, x_star, atol=1e-6)  # ||x - x*||^2 <= 2 gap
    assert tr.primal[-1] >= f_star - 1e-12


def test_duality_gaps_are_nonnegative_and_vanish():
    rng = np.random.default_rng(1)
    img = np.kron(rng.uniform(size=(3, 3)), np.ones((8, 8))) + 0.1 * rng.standard_normal((24, 24))
    sig = rng.standard_normal(100)
    problems = [prox.tv1d_problem(sig, 0.5), prox.tv2d_problem(img, 0.1, isotropic=True),
                prox.tv2d_problem(img, 0.1, isotropic=False), prox.l1_problem(img, 0.1, "dct"),
                prox.l1_problem(img[:16, :16], 0.1, "haar")]
    for prob in problems:
        for scale in (0.1, 1.0, 10.0):  # random feasible dual points: weak duality
            p = prob.project(scale * rng.standard_normal(prob.K(prob.y).shape))
            assert prob.gap(p)[2] >= -1e-12
        tr = first_order.prox_gradient(prob, 5000, accel=True, restart=True, tol=1e-9)
        assert min(tr.gap) >= -1e-12, prob.name
        assert tr.gap[-1] <= 1e-9 * tr.primal[-1], prob.name
        assert tr.gap[0] > 1e4 * tr.gap[-1] or prob.name == "l1"  # l1: one prox step is already exact
        if prob.exact is not None:
            assert tr.primal[-1] == pytest.approx(prob.primal(prob.exact()), rel=1e-8)


def test_ista_and_fista_meet_their_dual_rate_bounds(tv1d):
    """Beck & Teboulle: D* - D(p_k) <= L||p*||^2 / (2k) (ISTA) and 2L||p*||^2 / (k+1)^2 (FISTA), p_0 = 0."""
    prob, _, f_star, p_star = tv1d
    c = prob.L * float(p_star @ p_star)
    subopt = {}
    for accel in (False, True):
        tr = first_order.prox_gradient(prob, 1000, accel=accel, restart=False)
        k = np.asarray(tr.iters, dtype=float)
        dual_subopt = f_star - (np.asarray(tr.primal) - np.asarray(tr.gap))  # D* - D(p_k), D* = P*
        assert dual_subopt.min() >= -1e-12
        bound = 2 * c / (k + 1) ** 2 if accel else c / (2 * k)
        assert np.all(dual_subopt <= bound), accel
        subopt[accel] = dual_subopt[np.searchsorted(k, 100)]
    # the bounds are not vacuous: plain ISTA breaks FISTA's 1/k^2 bound at k = 100
    assert subopt[False] > 2 * c / 101**2 > subopt[True]


def test_subgradient_rates(tv1d):
    """Best P - P*: at least O(1/sqrt k) for a_k ~ 1/sqrt k and Polyak; a constant step stalls."""
    prob, x_star, f_star, _ = tv1d
    radius = float(np.linalg.norm(prob.y - x_star))
    gaps = {}
    for rule in ("sqrt", "const", "polyak"):
        tr = first_order.subgradient_method(prob, rule, 3000, step=0.1, radius=radius, f_star=f_star)
        k = np.asarray(tr.iters)
        gap = np.asarray(tr.primal) - f_star
        assert np.all(gap >= 0) and np.all(np.diff(gap) <= 0)  # best-so-far is monotone
        assert prob.primal(tr.x) == pytest.approx(tr.primal[-1], rel=1e-12)  # and x is that best point
        gaps[rule] = {kk: gap[np.searchsorted(k, kk)] for kk in (30, 1000, 3000)}
    for rule in ("sqrt", "polyak"):
        assert gaps[rule][3000] <= gaps[rule][30] * math.sqrt(30 / 3000)
    assert gaps["const"][3000] >= 0.8 * gaps["const"][1000]  # stalled
    assert gaps["const"][3000] > 2 * max(gaps["sqrt"][3000], gaps["polyak"][3000])


def test_fista_restart_is_no_slower_than_fista(tv1d):
    prob = tv1d[0]
    plain = first_order.prox_gradient(prob, 3000, accel=True, restart=False, tol=1e-10)
    restarted = first_order.prox_gradient(prob, 3000, accel=True, restart=True, tol=1e-10)
    assert restarted.iters[-1] <= plain.iters[-1]


def test_skimage_weight_is_our_lam_and_fista_beats_its_default_stop():
    """denoise_tv_chambolle(weight=lam) run to convergence reaches our certified f*; with its defaults it
    stops above the objective that FISTA (dual) reaches."""
    skimage_restoration = pytest.importorskip("skimage.restoration")
    rng = np.random.default_rng(2)
    clean = np.kron(rng.uniform(size=(4, 4)), np.ones((8, 8)))
    y = clean + 0.1 * rng.standard_normal(clean.shape)
    prob = prox.tv2d_problem(y, 0.1, isotropic=True)
    ref = first_order.prox_gradient(prob, 5000, accel=True, restart=True, tol=1e-12)
    f_lo = ref.primal[-1] - ref.gap[-1]
    long = skimage_restoration.denoise_tv_chambolle(y, weight=0.1, eps=1e-12, max_num_iter=3000)
    assert prob.primal(long) == pytest.approx(f_lo, rel=2e-5)  # Chambolle's O(1/k) tail: ~5e-6 here
    default = first_order.chambolle_method(prob)
    fista = first_order.prox_gradient(prob, 200, accel=True, restart=True)
    assert f_lo <= fista.primal[-1] < default.primal[0]
