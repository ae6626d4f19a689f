"""large_scale_optimization/prox.py: every prox / projection equals a brute-force minimisation."""
import numpy as np
import pytest
from scipy.optimize import minimize, minimize_scalar

import first_order
import prox
import tv


def qp_l1_prox(v, K, lam):
    """argmin_x 1/2||x - v||^2 + lam ||K x||_1 as a smooth QP: min 1/2||x - v||^2 + lam sum(t), -t <= Kx <= t."""
    n, m = v.size, K.shape[0]

    def f(w):
        x, t = w[:n], w[n:]
        return 0.5 * np.sum((x - v) ** 2) + lam * np.sum(t)

    def grad(w):
        return np.concatenate([w[:n] - v, lam * np.ones(m)])

    cons = [{"type": "ineq", "fun": lambda w: w[n:] - K @ w[:n], "jac": lambda w: np.hstack([-K, np.eye(m)])},
            {"type": "ineq", "fun": lambda w: w[n:] + K @ w[:n], "jac": lambda w: np.hstack([K, np.eye(m)])}]
    w0 = np.concatenate([v, np.abs(K @ v) + 1.0])
    res = minimize(f, w0, jac=grad, constraints=cons, method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
    return res.x[:n]


def test_soft_threshold_is_the_l1_prox():
    rng = np.random.default_rng(0)
    for v in rng.normal(scale=2.0, size=8):
        for t in (0.0, 0.3, 1.5):
            brute = minimize_scalar(lambda x: 0.5 * (x - v) ** 2 + t * abs(x), bounds=(-10, 10), method="bounded",
                                    options={"xatol": 1e-12}).x
            assert prox.soft_threshold(np.array([v]), t)[0] == pytest.approx(brute, abs=1e-7)


def test_box_and_disc_projections_are_nearest_points():
    rng = np.random.default_rng(1)
    lam = 0.7
    for _ in range(4):
        v = rng.normal(scale=1.5, size=(2, 3))  # 3 "pixels", 2 gradient components each
        cons = [{"type": "ineq", "fun": lambda p: lam**2 - (p.reshape(2, 3) ** 2).sum(axis=0)}]
        brute = minimize(lambda p: np.sum((p - v.ravel()) ** 2), np.zeros(6), constraints=cons, method="SLSQP",
                         options={"ftol": 1e-15}).x.reshape(2, 3)
        np.testing.assert_allclose(prox.project_discs(v, lam), brute, atol=1e-6)
        box = minimize(lambda p: np.sum((p - v.ravel()) ** 2), np.zeros(6), bounds=[(-lam, lam)] * 6,
                       method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12}).x.reshape(2, 3)
        np.testing.assert_allclose(prox.project_box(v, lam), box, atol=1e-6)


def test_disc_projection_at_lam_zero_has_no_nan():
    """lam = 0 (allowed on the command line): the discs shrink to points, so p = 0, even where p is already 0
    (the old norm / lam form gave 0/0 = nan there, and the nan spread through dual FISTA on flat regions)."""
    p = np.zeros((2, 3, 3))
    p[:, 0, 0] = [1.0, -2.0]
    np.testing.assert_array_equal(prox.project_discs(p, 0.0), np.zeros_like(p))
    y = np.kron(np.eye(2), np.ones((4, 4)))  # flat blocks: exact zeros in the image gradient
    tr = first_order.prox_gradient(prox.tv2d_problem(y, 0.0, isotropic=True), 5, accel=True, restart=True)
    np.testing.assert_array_equal(tr.x, y)  # lam = 0: the answer is the data itself
    assert tr.gap[-1] == 0.0


def test_group_soft_threshold_is_the_l21_prox():
    rng = np.random.default_rng(2)
    for t in (0.2, 1.0):
        v = rng.normal(size=(2, 4))
        out = prox.group_soft_threshold(v, t)
        for j in range(4):  # separable over pixels: brute-force each 2-vector
            obj = lambda x: 0.5 * np.sum((x - v[:, j]) ** 2) + t * np.linalg.norm(x)  # noqa: E731
            brute = minimize(obj, v[:, j] * 0.5, method="Nelder-Mead",
                             options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 4000}).x
            assert obj(out[:, j]) <= obj(brute) + 1e-12
            np.testing.assert_allclose(out[:, j], brute, atol=1e-5)


@pytest.mark.parametrize("basis", ["dct", "haar"])
def test_l1_in_orthonormal_basis_prox_matches_qp(basis):
    rng = np.random.default_rng(3)
    y = rng.normal(size=(4, 4))
    lam = 0.4
    prob = prox.l1_problem(y, lam, basis=basis)
    W = np.stack([prob.K(e.reshape(4, 4)).ravel() for e in np.eye(16)], axis=1)  # (16, 16) matrix of K
    np.testing.assert_allclose(W.T @ W, np.eye(16), atol=1e-12)  # orthonormal: the prox is exact
    exact = prob.exact().ravel()
    brute = qp_l1_prox(y.ravel(), W, lam)
    np.testing.assert_allclose(exact, brute, atol=1e-6)
    assert prob.primal(exact.reshape(4, 4)) <= prob.primal(brute.reshape(4, 4)) + 1e-12


def test_tv1d_exact_solver_is_the_tv_prox():
    rng = np.random.default_rng(4)
    n = 7
    D = np.diff(np.eye(n), axis=0)  # (n-1, n) forward differences
    for lam in (0.05, 0.3, 2.0):
        y = np.repeat(rng.normal(size=3), [2, 3, 2]) + 0.2 * rng.normal(size=n)
        np.testing.assert_allclose(tv.tv1d_denoise(y, lam), qp_l1_prox(y, D, lam), atol=1e-6)


def test_operators_are_adjoint_and_haar_is_orthonormal():
    rng = np.random.default_rng(5)
    x, p = rng.normal(size=(6, 9)), rng.normal(size=(2, 6, 9))
    p[0, -1], p[1, :, -1] = 0.0, 0.0  # the padded row/column of the (2, H, W) gradient is always zero
    assert np.vdot(prox.grad2d(x), p) == pytest.approx(np.vdot(x, prox.grad2d_T(p)), abs=1e-12)
    u, z = rng.normal(size=10), rng.normal(size=9)
    assert np.vdot(prox.diff1d(u), z) == pytest.approx(np.vdot(u, prox.diff1d_T(z)), abs=1e-12)
    for shape in [(16,), (8, 12), (6, 10)]:
        a = rng.normal(size=shape)
        levels = prox.haar_levels(shape)
        c = prox.haar(a, levels)
        assert np.linalg.norm(c) == pytest.approx(np.linalg.norm(a), rel=1e-12)
        np.testing.assert_allclose(prox.ihaar(c, levels), a, atol=1e-12)
    assert prox.haar_levels((8, 12)) == 2 and prox.haar_levels((7, 8)) == 0
