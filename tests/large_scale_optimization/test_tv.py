"""large_scale_optimization/tv.py: Condat's exact 1-D TV solver meets the KKT conditions."""
import numpy as np
import pytest

import tv
from denoise_data import piecewise_constant


def assert_kkt(x, y, lam, tol=1e-10):
    """Optimality of x: z = cumsum(x - y) gives x - y + D^T z = 0, |z| <= lam, z = lam sign(Dx) on jumps."""
    z = tv.tv1d_dual(x, y)
    residual = x - y - np.diff(z, prepend=0.0, append=0.0)  # x - y + D^T z, with D^T z = -diff([0, z, 0])
    assert np.abs(residual).max() <= tol
    assert np.abs(z).max(initial=0.0) <= lam + tol
    dx = np.diff(x)
    jumps = dx != 0
    assert np.abs(z[jumps] - lam * np.sign(dx[jumps])).max(initial=0.0) <= tol


@pytest.mark.parametrize("n", [2, 3, 10, 1000, 20000])
@pytest.mark.parametrize("lam", [1e-3, 0.1, 1.0, 100.0])
def test_condat_solver_satisfies_kkt(n, lam):
    rng = np.random.default_rng(n)
    blocks = piecewise_constant(n, max(1, n // 10), rng) + 0.1 * rng.standard_normal(n)  # ~10 pieces
    for y in (rng.standard_normal(n), blocks):
        x = tv.tv1d_denoise(y, lam)
        assert_kkt(x, y, lam)
    if lam == 100.0 and n <= 10:
        np.testing.assert_allclose(x, np.full(n, y.mean()), atol=1e-12)  # huge lam: the constant mean


def test_condat_edge_cases():
    np.testing.assert_array_equal(tv.tv1d_denoise([3.0], 1.0), [3.0])
    np.testing.assert_array_equal(tv.tv1d_denoise([1.0, 2.0], 0.0), [1.0, 2.0])
    np.testing.assert_allclose(tv.tv1d_denoise([0.0, 1.0], 0.25), [0.25, 0.75])  # jump shrinks by 2 lam
    np.testing.assert_allclose(tv.tv1d_denoise([0.0, 1.0], 0.5), [0.5, 0.5])
