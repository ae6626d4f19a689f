"""large_scale_optimization/model.py: derivatives against finite differences and scikit-learn, f* parity."""

import numpy as np
import pytest
import scipy.optimize
from sklearn.linear_model import LogisticRegression

import data
import model
import solvers


@pytest.fixture(scope="module")
def small():
    """A small random problem with a bias column: n=40, D=5, K=3, W away from 0."""
    rng = np.random.default_rng(0)
    X = np.hstack([rng.standard_normal((40, 4)), np.ones((40, 1))])
    y = rng.integers(0, 3, 40)
    y[:3] = [0, 1, 2]
    W = rng.standard_normal((3, 5))
    return X, y, W, 0.1


@pytest.fixture(scope="module")
def digits():
    return data.load_digits_dataset()


def test_gradient_matches_finite_differences(small):
    X, y, W, lam = small
    g = model.gradient(W, X, y, lam)
    fd = np.zeros_like(W)
    h = 1e-6
    for idx in np.ndindex(W.shape):
        E = np.zeros_like(W)
        E[idx] = h
        fd[idx] = (model.loss(W + E, X, y, lam) - model.loss(W - E, X, y, lam)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
    f2, g2 = model.loss_gradient(W, X, y, lam)
    assert f2 == pytest.approx(model.loss(W, X, y, lam), rel=1e-14)
    np.testing.assert_allclose(g2, g, rtol=1e-13, atol=1e-15)


def test_hessian_matches_finite_differences_of_gradient(small):
    X, y, W, lam = small
    H = model.hessian(W, X, y, lam)
    K, D = W.shape
    h = 1e-6
    fd = np.zeros((K * D, K * D))
    for j in range(K * D):
        E = np.zeros(K * D)
        E[j] = h
        E = E.reshape(K, D)
        fd[:, j] = ((model.gradient(W + E, X, y, lam) - model.gradient(W - E, X, y, lam)) / (2 * h)).ravel()
    np.testing.assert_allclose(H, fd, rtol=1e-5, atol=1e-8)


def test_hessian_symmetric_positive_definite_and_hvp(small):
    X, y, W, lam = small
    H = model.hessian(W, X, y, lam)
    np.testing.assert_array_equal(H, H.T)  # mirrored blocks: exactly symmetric
    eig = np.linalg.eigvalsh(H)
    assert eig.min() >= lam * (1 - 1e-9)  # data part is PSD, the penalty adds lam
    L, _ = model.smoothness(X, lam)
    assert eig.max() <= L * (1 + 1e-9)  # Boehning bound used for the GD step
    V = np.random.default_rng(1).standard_normal(W.shape)
    np.testing.assert_allclose(model.hessian_vector_product(W, X, y, lam, V), (H @ V.ravel()).reshape(W.shape),
                               rtol=1e-12, atol=1e-13)


def test_smoothness_constants_are_the_boehning_bounds(small):
    """L = ||X||_2^2 / (2n) + lam and L_max = max_i ||x_i||^2 / 2 + lam exactly (the GD, SGD and SVRG steps
    are 1/L and 1/L_max): a bound off by 2 still upper-bounds the Hessian, only slower, so pin the values."""
    X, y, W, lam = small
    L, L_max = model.smoothness(X, lam)
    assert L == pytest.approx(np.linalg.norm(X, 2) ** 2 / (2 * len(X)) + lam, rel=1e-10)
    assert L_max == pytest.approx(max(float(x @ x) for x in X) / 2 + lam, rel=1e-14)


def test_weighted_hessian_is_the_hessian_of_repeated_rows(small):
    """sample_weight s (the subsampled preconditioner's importance weights): 1/n sum_i s_i H_i + lam I. With
    integer weights that is the Hessian of the data with row i repeated s_i times, rescaled."""
    X, y, W, lam = small
    n = len(X)
    s = np.random.default_rng(2).integers(0, 4, n)
    H_w = model.hessian(W, X, y, lam, sample_weight=s.astype(float))
    rep = np.repeat(np.arange(n), s)
    H_rep = model.hessian(W, X[rep], y[rep], lam)
    eye = lam * np.eye(len(H_w))
    np.testing.assert_allclose((H_w - eye) * n, (H_rep - eye) * len(rep), rtol=1e-10, atol=1e-12)
    H32 = model.hessian(W, X, y, lam, sample_weight=s.astype(float), dtype=np.float32)
    assert H32.dtype == np.float32
    np.testing.assert_allclose(H32, H_w, rtol=1e-4, atol=1e-5)


def test_loss_is_stable_for_huge_scores(small):
    X, y, W, lam = small
    f = model.loss(1e4 * W, X, y, lam)  # scores ~1e4: exp overflows without the max shift
    g = model.gradient(1e4 * W, X, y, lam)
    assert np.isfinite(f) and np.all(np.isfinite(g))


def test_loss_equals_sklearn_objective(small):
    """Our f equals scikit-learn's LinearModelLoss (mean multinomial loss + l2/2 ||W||^2), the function
    LogisticRegression(C = 1/(n lam)) minimises."""
    from sklearn._loss.loss import HalfMultinomialLoss
    from sklearn.linear_model._linear_loss import LinearModelLoss

    X, y, W, lam = small
    lml = LinearModelLoss(base_loss=HalfMultinomialLoss(n_classes=3), fit_intercept=False)
    ref = lml.loss(W, X, y.astype(np.float64), l2_reg_strength=lam)
    assert model.loss(W, X, y, lam) == pytest.approx(ref, rel=1e-12)
    _, g_ref = lml.loss_gradient(W, X, y.astype(np.float64), l2_reg_strength=lam)
    np.testing.assert_allclose(model.gradient(W, X, y, lam), g_ref, rtol=1e-10, atol=1e-12)


def test_fstar_on_digits_matches_independent_solvers(digits):
    """Acceptance: f* by our Newton agrees with scipy L-BFGS (tight) to 1e-9 relative, and scikit-learn's
    fitted coef_ (C = 1/(n lam), fit_intercept=False) is a point where our gradient ~ vanishes."""
    X, y, lam = digits.X_train, digits.y_train, 1e-4
    prob = solvers.LogisticProblem(X, y, digits.X_test, digits.y_test, lam)
    W_star, f_star, g_star, _, _ = solvers.solve_reference(prob, solvers.SolverOptions(), np.random.default_rng(0))
    assert g_star <= 1e-10
    K, D = W_star.shape

    def fg(w):
        f, g = model.loss_gradient(w.reshape(K, D), X, y, lam)
        return f, g.ravel()

    res = scipy.optimize.minimize(fg, np.zeros(K * D), jac=True, method="L-BFGS-B",
                                  options=dict(maxiter=20000, gtol=1e-11, ftol=1e-15, maxcor=30))
    assert res.fun == pytest.approx(f_star, rel=1e-9)
    assert f_star <= res.fun + 1e-15  # Newton's answer is at least as low

    clf = LogisticRegression(C=1.0 / (len(y) * lam), fit_intercept=False, tol=1e-12, max_iter=20000,
                             solver="lbfgs").fit(X, y)
    assert model.loss(clf.coef_, X, y, lam) == pytest.approx(f_star, rel=1e-9)
    assert np.linalg.norm(model.gradient(clf.coef_, X, y, lam)) < 1e-6


def test_newton_converges_quadratically(digits):
    prob = solvers.LogisticProblem(digits.X_train, digits.y_train, digits.X_test, digits.y_test, 1e-4)
    tr = solvers.Tracker("newton", prob, verbose=False)
    tr.start()
    solvers.newton(prob, np.zeros(prob.shape), solvers.SolverOptions(newton_tol=1e-12), tr, None)
    g = [r["grad_norm"] for r in tr.records]
    assert g[-1] <= 1e-10 and len(g) <= 12
    steps = [r["step"] for r in tr.records]
    assert steps[-3:] == [1.0, 1.0, 1.0]  # unit steps near the optimum
    # once close (||g|| < 1e-3): ||g_{k+1}|| / ||g_k||^2 bounded, i.e. the digits gained double each step
    close = [(a, b) for a, b in zip(g, g[1:]) if a < 1e-3 and b > 1e-14]
    assert len(close) >= 2
    assert all(b / a**2 < 1e3 for a, b in close), close  # measured ~190 at every step
    assert all(b < 0.1 * a for a, b in close)
