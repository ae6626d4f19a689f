"""Prox operators, denoising problems, their objectives and duality gaps.

Every problem here has the same shape,

    primal  P(x) = 1/2 ||x - y||^2 + lam * R(K x)
    dual    D(p) = 1/2 ||y||^2 - 1/2 ||y - K^T p||^2      over  p in C = {R*(p) <= lam},   x(p) = y - K^T p

with R the l1 norm (anisotropic TV, sparsity) or the l2,1 norm over gradient pairs (isotropic TV), so C
is a box |p_i| <= lam or a set of per-pixel discs ||p_ij||_2 <= lam. Weak duality P(x) >= D(p) for every
feasible p, so gap = P(x(p)) - D(p) >= 0 certifies how far x(p) is from optimal (Rockafellar; for TV see
Chambolle 2004 and Beck & Teboulle, "Fast Gradient-Based Algorithms for Constrained Total Variation Image
Denoising and Deblurring Problems", IEEE TIP 2009).

    K = D (1-D forward differences)             tv1d, ||K||^2 <= 4
    K = (d/dr, d/dc), Neumann boundary           tv2d, ||K||^2 <= 8, same grid as skimage's Chambolle
    K = W, an orthonormal DCT or Haar transform  l1,   ||K||^2 = 1, prox is exact soft thresholding
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import scipy.fft

import tv

# --------------------------------------------------------------------------------------------------
# prox operators and projections


def soft_threshold(v: np.ndarray, t: float) -> np.ndarray:
    """prox of t*||.||_1: argmin_x 1/2||x - v||^2 + t||x||_1 = sign(v) max(|v| - t, 0)."""
    return np.sign(v) * np.maximum(np.abs(v) - t, 0.0)


def project_box(p: np.ndarray, lam: float, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Projection onto {|p_i| <= lam}: the prox of the indicator of the l_inf ball (dual of l1)."""
    return np.clip(p, -lam, lam, out=out)


def project_discs(p: np.ndarray, lam: float, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Projection of p (G, ...) onto {||p[:, j]||_2 <= lam for every j}: the dual set of the l2,1 norm."""
    norm = np.sqrt((p * p).sum(axis=0))  # (...)
    # p * lam / max(lam, ||p||): written without norm / lam, which is 0/0 = nan where lam = 0 and p = 0
    scale = np.divide(lam, np.maximum(norm, lam), out=np.zeros_like(norm), where=norm > 0)
    return np.multiply(p, scale, out=out)


def group_soft_threshold(v: np.ndarray, t: float) -> np.ndarray:
    """prox of t*sum_j ||v[:, j]||_2 (isotropic shrinkage); Moreau: v - projection onto the t-discs."""
    return v - project_discs(v, t)


# --------------------------------------------------------------------------------------------------
# linear operators K and their adjoints


def diff1d(x: np.ndarray) -> np.ndarray:
    """(D x)_i = x_{i+1} - x_i, (n,) -> (n-1,)."""
    return np.diff(x)


def diff1d_T(z: np.ndarray) -> np.ndarray:
    """D^T z = (-z_0, z_0 - z_1, ..., z_{n-2}), (n-1,) -> (n,)."""
    out = np.empty(z.size + 1)
    out[0], out[-1] = -z[0] if z.size else 0.0, z[-1] if z.size else 0.0
    np.subtract(z[:-1], z[1:], out=out[1:-1])  # one pass, no concatenated copy
    return out


def grad2d(x: np.ndarray) -> np.ndarray:
    """Forward differences with a zero last row/column (Neumann), (H, W) -> (2, H, W)."""
    g = np.zeros((2,) + x.shape)
    g[0, :-1] = x[1:] - x[:-1]
    g[1, :, :-1] = x[:, 1:] - x[:, :-1]
    return g


def grad2d_T(p: np.ndarray) -> np.ndarray:
    """Adjoint of grad2d (minus the divergence), (2, H, W) -> (H, W); the padded row/column is ignored."""
    out = np.zeros(p.shape[1:])
    out[:-1] -= p[0, :-1]
    out[1:] += p[0, :-1]
    out[:, :-1] -= p[1, :, :-1]
    out[:, 1:] += p[1, :, :-1]
    return out


def dct(x: np.ndarray) -> np.ndarray:
    return scipy.fft.dctn(x, norm="ortho")


def idct(c: np.ndarray) -> np.ndarray:
    return scipy.fft.idctn(c, norm="ortho")


def haar_levels(shape, max_levels: int = 6) -> int:
    """How many Haar levels fit: every side must stay even at each level."""
    levels = 0
    sides = np.array(shape)
    while levels < max_levels and np.all(sides % 2 == 0) and np.all(sides >= 2):
        sides //= 2
        levels += 1
    return levels


def haar(x: np.ndarray, levels: int) -> np.ndarray:
    """Orthonormal multi-level Haar transform (Mallat pyramid) of a 1-D or 2-D array."""
    c = np.array(x, dtype=np.float64)
    box = c.shape
    for _ in range(levels):
        block = c[tuple(slice(0, s) for s in box)]
        for axis in range(c.ndim):
            a = np.moveaxis(block, axis, 0)
            lo, hi = (a[0::2] + a[1::2]) / np.sqrt(2), (a[0::2] - a[1::2]) / np.sqrt(2)
            block = np.moveaxis(np.concatenate([lo, hi]), 0, axis)
        c[tuple(slice(0, s) for s in box)] = block
        box = tuple(s // 2 for s in box)
    return c


def ihaar(c: np.ndarray, levels: int) -> np.ndarray:
    """Inverse of haar (its transpose, since the transform is orthonormal)."""
    x = np.array(c, dtype=np.float64)
    boxes = [tuple(s >> j for s in x.shape) for j in range(levels)]
    for box in reversed(boxes):
        block = x[tuple(slice(0, s) for s in box)]
        for axis in reversed(range(x.ndim)):
            a = np.moveaxis(block, axis, 0)
            half = a.shape[0] // 2
            lo, hi = a[:half], a[half:]
            out = np.empty_like(a)
            out[0::2], out[1::2] = (lo + hi) / np.sqrt(2), (lo - hi) / np.sqrt(2)
            block = np.moveaxis(out, 0, axis)
        x[tuple(slice(0, s) for s in box)] = block
    return x


# --------------------------------------------------------------------------------------------------
# problems


@dataclass
class Problem:
    """1/2||x - y||^2 + lam * R(K x) with its dual over C (see the module docstring)."""

    name: str
    y: np.ndarray
    lam: float
    K: Callable[[np.ndarray], np.ndarray]
    KT: Callable[[np.ndarray], np.ndarray]
    L: float  # an upper bound on ||K||^2: the Lipschitz constant of the dual gradient
    isotropic: bool = False  # R = sum of per-pixel l2 norms of the (2, H, W) gradient, else l1
    exact: Optional[Callable[[], np.ndarray]] = None  # closed-form / direct solver, where one exists
    dual_of_primal: Optional[Callable[[np.ndarray], np.ndarray]] = None  # a dual point matching a primal x

    def regularizer(self, x: np.ndarray) -> float:
        g = self.K(x)
        if self.isotropic:
            return self.lam * float(np.sqrt((g * g).sum(axis=0)).sum())
        return self.lam * float(np.abs(g).sum())

    def primal(self, x: np.ndarray) -> float:
        r = x - self.y
        return 0.5 * float(np.vdot(r, r)) + self.regularizer(x)

    def subgradient(self, x: np.ndarray) -> np.ndarray:
        """x - y + lam K^T s with s in dR(Kx): sign(Kx), or Kx/||Kx|| per pixel (0 where Kx = 0)."""
        g = self.K(x)
        if self.isotropic:
            norm = np.sqrt((g * g).sum(axis=0))
            s = np.divide(g, norm, out=np.zeros_like(g), where=norm > 0)
        else:
            s = np.sign(g)
        return x - self.y + self.lam * self.KT(s)

    def project(self, p: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        return project_discs(p, self.lam, out) if self.isotropic else project_box(p, self.lam, out)

    def x_of(self, p: np.ndarray) -> np.ndarray:
        """The primal point y - K^T p that a dual point p stands for."""
        x = self.KT(p)
        return np.subtract(self.y, x, out=x)

    def dual(self, p: np.ndarray) -> float:
        r = self.x_of(p)
        return 0.5 * float(np.vdot(self.y, self.y)) - 0.5 * float(np.vdot(r, r))

    def gap(self, p: np.ndarray) -> tuple[float, float, float]:
        """(P(x(p)), D(p), P - D) for a feasible dual point p; the gap bounds P(x(p)) - P*."""
        x = self.x_of(p)
        primal = self.primal(x)
        dual = 0.5 * float(np.vdot(self.y, self.y)) - 0.5 * float(np.vdot(x, x))  # = self.dual(p), reusing x
        return primal, dual, primal - dual

    def primal_gap(self, x: np.ndarray) -> Optional[tuple[float, float, float]]:
        """(P(x), D(p), P(x) - D(p)) with a feasible p built from x, where the problem knows how."""
        if self.dual_of_primal is None:
            return None
        p = self.project(self.dual_of_primal(x))
        primal = self.primal(x)
        dual = self.dual(p)
        return primal, dual, primal - dual


def tv1d_problem(y: np.ndarray, lam: float) -> Problem:
    """1-D TV denoising; the exact answer comes from Condat's direct algorithm (tv.py)."""
    return Problem(
        name="tv1d", y=y, lam=lam, K=diff1d, KT=diff1d_T, L=4.0,  # ||D||^2 = 4 sin^2(pi (n-1) / 2n) < 4
        exact=lambda: tv.tv1d_denoise(y, lam),
        dual_of_primal=lambda x: tv.tv1d_dual(x, y),  # D^T z = y - x whenever sum(x) = sum(y)
    )


def tv2d_problem(y: np.ndarray, lam: float, isotropic: bool = True) -> Problem:
    """2-D TV denoising (ROF), isotropic or anisotropic; no direct solver, so f* is certified by the gap."""
    return Problem(name="tv2d", y=y, lam=lam, K=grad2d, KT=grad2d_T, L=8.0, isotropic=isotropic)


def l1_problem(y: np.ndarray, lam: float, basis: str = "dct") -> Problem:
    """Sparsity in an orthonormal basis W: the prox is exact, x* = W^T soft(W y, lam)."""
    if basis == "dct":
        K, KT = dct, idct
    elif basis == "haar":
        levels = haar_levels(y.shape)
        K, KT = (lambda x: haar(x, levels)), (lambda c: ihaar(c, levels))
    else:
        raise ValueError(f"unknown basis {basis!r}; use dct or haar")
    return Problem(
        name="l1", y=y, lam=lam, K=K, KT=KT, L=1.0,
        exact=lambda: KT(soft_threshold(K(y), lam)),
        dual_of_primal=lambda x: K(y - x),  # W^T p = y - x exactly, before projection
    )
