"""Compare first- and second-order solvers on L2-regularised multinomial logistic regression.

    python large_scale_optimization/train.py --dataset digits
    python large_scale_optimization/train.py --dataset mnist --data-dir /work/shared/data/mnist \
        --methods gd,sgd,minibatch_sgd,minibatch_gd,svrg,newton_cg --passes 15

Methods (the objective f and its derivatives are in model.py):
  gd             gradient descent, step 1/L with the Boehning bound L = ||X||_2^2/(2n) + lam
  gd_armijo      gradient descent with backtracking (Armijo) line search
  newton         Newton-Raphson: explicit block Hessian, Cholesky solve, backtracking line search
  newton_cg      Hessian-free Newton-CG (CG on Hessian-vector products), optionally preconditioned by a
                 Cholesky-factored, importance-subsampled Hessian (Xu et al. 2016, "Sub-sampled Newton
                 methods with non-uniform sampling")
  sgd            one sample per step, with replacement, eta_k = eta0 / (1 + eta0 lam k), eta0 = 1/L_max
                 (Bottou 2012, "Stochastic gradient descent tricks")
  minibatch_sgd  batches drawn with replacement, same decay, eta0 = min(b / L_max, 1 / L)
  minibatch_gd   shuffled epochs of disjoint batches, same step rule as minibatch_sgd
  svrg           Johnson & Zhang 2013, inner loop m = 2n, step 1 / L_max, snapshot last or average

Cost is counted in sample-gradient equivalents; one effective pass = n of them. A full gradient or a
Hessian-vector product costs one pass (two n x D x K matrix products); a loss evaluation in a line
search one pass; the explicit Hessian (K+1)D/4 passes (K(K+1)/2 Gram matrices of 2nD^2 flops against
4nKD for a gradient) plus K^2 D^2 / (12 n) for its Cholesky ((KD)^3/3 flops). f* comes from Newton run
to ||grad f|| <= 1e-10 (explicit Hessian when K*D <= 3000, else preconditioned Newton-CG).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import scipy.linalg
from scipy.linalg.blas import dger
from scipy.special import softmax
from threadpoolctl import threadpool_limits

import data_sources
import model
from cli import OneLineParser, field_help

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

METHODS = ("gd", "gd_armijo", "newton", "newton_cg", "sgd", "minibatch_sgd", "minibatch_gd", "svrg")
SECOND_ORDER = ("newton", "newton_cg")


@dataclass
class Config:
    dataset: str = "digits"  # digits | mnist | synthetic
    data_dir: str | None = None  # folder of the MNIST IDX .gz files (downloaded there if missing)
    data: str | None = None  # your own .csv / .npz (see data_sources.load_file); overrides --dataset
    methods: str = ",".join(METHODS)  # comma-separated, any of METHODS
    lam: float = 1e-4  # L2 strength; sklearn's C = 1 / (n lam)
    passes: float = 15.0  # budget of effective passes for the first-order methods
    seed: int = 0  # stochastic methods, subsampled Hessian, synthetic data (not the digits / file split)
    out_dir: str = "out/lso_logreg"  # results.json and the PNG plots
    batch_size: int = 128  # minibatch_sgd / minibatch_gd
    svrg_inner: float = 2.0  # inner loop length m = svrg_inner * n
    svrg_step: float = 1.0  # eta = svrg_step / L_max (0.1, the theory-safe choice, is far slower: README)
    svrg_snapshot: str = "last"  # last (Johnson & Zhang's option I) | average (of the inner iterates, Prox-SVRG)
    newton_tol: float = 1e-10  # stop Newton / Newton-CG (and the f* solve) at ||grad f|| <= this
    newton_max_iter: int = 50  # Newton / Newton-CG iteration cap
    precondition: str = "auto"  # newton_cg: auto | subsampled | none (see newton_cg)
    switch_after: int = 10  # newton_cg auto: CG iterations that trigger the subsampled Hessian
    hvp_float32: bool = True  # newton_cg: Hessian-vector products on a float32 copy of X
    precond_size: int = 6000  # rows drawn for that Hessian
    threads: int = 1  # BLAS threads (threadpoolctl); 1 is often faster than 2 on a 2-core machine
    n: int = 5000  # synthetic: samples
    d: int = 50  # synthetic: features
    classes: int = 5  # synthetic: K
    cond: float = 100.0  # synthetic: condition number of the feature covariance
    plots: bool = True  # write the four PNGs


class UserError(ValueError):
    """A bad command line or bad data; main() prints it on one line and exits with code 2."""


# ------------------------------------------------------------------------------------------------
# the problem, and a tracker: cost counter, clock that stops while we evaluate, one record per
# iteration (deterministic methods) or per effective pass (stochastic ones)


@dataclass
class Problem:
    X: np.ndarray  # (n, D) train
    y: np.ndarray  # (n,)
    X_test: np.ndarray
    y_test: np.ndarray
    lam: float
    L: float = 0.0
    L_max: float = 0.0
    f_star: float = 0.0

    @property
    def n(self):
        return self.X.shape[0]

    @property
    def shape(self):  # shape of W
        return int(self.y.max()) + 1, self.X.shape[1]


@dataclass
class Tracker:
    method: str
    prob: Problem
    records: list = field(default_factory=list)
    cost: float = 0.0  # sample-gradient equivalents spent
    elapsed: float = 0.0  # seconds of optimisation (evaluations excluded)
    verbose: bool = True
    _t0: float | None = None  # None: clock not started (the pass-0 record costs no time)

    def start(self):
        self._t0 = time.perf_counter()

    def spend(self, sample_gradients: float):
        self.cost += sample_gradients

    @property
    def passes(self):
        return self.cost / self.prob.n

    def record(self, W, **extra):
        if self._t0 is not None:
            self.elapsed += time.perf_counter() - self._t0
        p = self.prob
        f, g = model.loss_gradient(W, p.X, p.y, p.lam)
        rec = dict(method=self.method, iter=len(self.records), passes=self.passes, time=self.elapsed,
                   f=f, gap=f - p.f_star, grad_norm=float(np.linalg.norm(g)),
                   train_acc=model.accuracy(W, p.X, p.y), test_acc=model.accuracy(W, p.X_test, p.y_test),
                   grad_evals=self.cost, **extra)
        self.records.append(rec)
        if self.verbose:
            print(f"  {self.method:>13} it {rec['iter']:4d}  passes {rec['passes']:9.1f}  t {rec['time']:7.2f}s"
                  f"  f-f* {rec['gap']:.3e}  |g| {rec['grad_norm']:.3e}  test {rec['test_acc']:.4f}", flush=True)
        if self._t0 is not None:
            self._t0 = time.perf_counter()
        return rec


def hessian_cost(K, D, n):
    """Explicit Hessian + Cholesky in sample-gradient equivalents (see the module docstring)."""
    return n * (K + 1) * D / 4 + (K * D) ** 3 / 3 / (4 * K * D)


# ------------------------------------------------------------------------------------------------
# deterministic methods


def armijo(prob, W, f, g, direction, tr, t=1.0, c=1e-4, shrink=0.5):
    """Backtrack t until f(W + t d) <= f + c t <g, d>; each trial is one loss evaluation (one pass)."""
    slope = float(np.vdot(g, direction))
    for _ in range(60):
        W_new = W + t * direction
        f_new = model.loss(W_new, prob.X, prob.y, prob.lam)
        tr.spend(prob.n)
        if f_new <= f + c * t * slope:
            return W_new, t
        t *= shrink
    return W, 0.0  # no decrease possible at this precision


def gd(prob, W, cfg, tr, rng):
    while tr.passes < cfg.passes:
        W = W - model.gradient(W, prob.X, prob.y, prob.lam) / prob.L
        tr.spend(prob.n)
        tr.record(W)
    return W


def gd_armijo(prob, W, cfg, tr, rng):
    t = 1.0 / prob.L
    while tr.passes < cfg.passes:
        f, g = model.loss_gradient(W, prob.X, prob.y, prob.lam)
        tr.spend(prob.n)
        W, t = armijo(prob, W, f, g, -g, tr, t=2 * t)  # try a longer step than last time first
        t = t or 1.0 / prob.L
        tr.record(W, step=t)
    return W


def newton(prob, W, cfg, tr, rng):
    """Newton-Raphson with the explicit block Hessian (model.hessian) and a Cholesky solve."""
    K, D = prob.shape
    for _ in range(cfg.newton_max_iter):
        f, g = model.loss_gradient(W, prob.X, prob.y, prob.lam)
        tr.spend(prob.n)
        if np.linalg.norm(g) <= cfg.newton_tol:
            break
        H = model.hessian(W, prob.X, prob.y, prob.lam)  # (K*D, K*D)
        step = -scipy.linalg.cho_solve(scipy.linalg.cho_factor(H, check_finite=False), g.ravel(),
                                       check_finite=False).reshape(K, D)
        tr.spend(hessian_cost(K, D, prob.n))
        W, t = armijo(prob, W, f, g, step, tr)
        tr.record(W, step=t)
        if t == 0.0:
            break
    return W


def hessian_preconditioner(W, X, lam, size, rng, dtype=np.float32):
    """Cholesky factor of an importance-subsampled Hessian, as a function R (K, D) -> H_S^{-1} R.

    Rows are drawn with probability q_i ~ tr(H_i) = (1 - ||p_i||^2) ||x_i||^2 (samples the model is
    sure about barely curve f) and weighted 1/(n q_i), so H_S is an unbiased estimate of H. Columns of X
    that are zero everywhere (MNIST's border pixels) have Hessian lam exactly and are left out.
    """
    n, D = X.shape
    P = model.probabilities(W, X)  # (n, K)
    K = P.shape[1]
    q = (1.0 - np.sum(P * P, axis=1)) * np.einsum("ij,ij->i", X, X)  # (n,)
    q = q / q.sum() if q.sum() > 0 else np.full(n, 1.0 / n)
    draws = rng.choice(n, size=min(size, n), p=q)
    rows, counts = np.unique(draws, return_counts=True)
    weight = counts / (len(draws) * n * q[rows]) * len(rows)  # hessian() divides by len(rows)
    active = np.flatnonzero(np.any(X != 0, axis=0))
    Xs = X[np.ix_(rows, active)]  # (m, Da)
    Wa = W[:, active]  # (K, Da)
    Hs = model.hessian(Wa, Xs, None, lam, sample_weight=weight, dtype=dtype)
    try:
        factor = scipy.linalg.cho_factor(Hs, overwrite_a=True, check_finite=False)
    except np.linalg.LinAlgError:  # float32 rounding broke positive definiteness: redo in float64
        Hs = model.hessian(Wa, Xs, None, lam, sample_weight=weight, dtype=np.float64)
        factor = scipy.linalg.cho_factor(Hs, overwrite_a=True, check_finite=False)
    Da = len(active)  # flops / (4 K D), the flops of one sample gradient: Gram blocks, then Cholesky
    cost = len(rows) * (K + 1) * Da**2 / (4 * D) + K**2 * Da**3 / (12 * D)

    def apply(R):
        out = R / lam  # (K, D): exact for the inactive columns
        sol = scipy.linalg.cho_solve(factor, R[:, active].ravel().astype(dtype), check_finite=False)
        out[:, active] = sol.reshape(K, Da)
        return out

    return apply, cost


def conjugate_gradient(hvp, b, tol, max_iter, precond=None):
    """Solve H x = b (arrays of shape (K, D)) by (preconditioned) CG; returns (x, iterations)."""
    x = np.zeros_like(b)
    r = b.copy()
    z = precond(r) if precond else r
    p = z.copy()
    rz = float(np.vdot(r, z))
    for it in range(max_iter):
        if np.linalg.norm(r) <= tol:
            return x, it
        Hp = hvp(p)
        alpha = rz / float(np.vdot(p, Hp))
        x += alpha * p
        r -= alpha * Hp
        z = precond(r) if precond else r
        rz_new = float(np.vdot(r, z))
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x, max_iter


def kronecker_preconditioner(X, lam, K):
    """Exact inverse of the Hessian at W = 0, as a function R (K, D) -> H_0^{-1} R.

    At W = 0 every p_i is uniform, so H_0 = C kron G + lam I with C = (I - 11^T/K)/K (K, K) and
    G = X^T X / n (D, D): one Gram matrix and two small eigendecompositions, C = U c U^T, G = Q g Q^T,
    give H_0^{-1} R = U [(U^T R Q) / (c_a g_b + lam)] Q^T. Good while the model is still unsure."""
    n = X.shape[0]
    c, U = np.linalg.eigh((np.eye(K) - 1.0 / K) / K)  # (K,), (K, K)
    g, Q = np.linalg.eigh(X.T @ X / n)  # (D,), (D, D)
    denom = np.maximum(c, 0)[:, None] * np.maximum(g, 0)[None, :] + lam  # (K, D)

    def apply(R):
        return U @ ((U.T @ R @ Q) / denom) @ Q.T  # (K, D)

    return apply, n * X.shape[1] / (2 * K)  # the Gram matrix (2nD^2 flops) in sample gradients (4KD)


def newton_cg(prob, W, cfg, tr, rng):
    """Inexact Newton: CG on Hessian-vector products to relative residual min(0.5, sqrt||g||) (so the
    local rate is superlinear), Armijo line search.

    cfg.precondition "auto" starts with the W = 0 Hessian (kronecker_preconditioner, cheap) and switches
    to the importance-subsampled Hessian (hessian_preconditioner) once CG needs more than ``switch_after``
    iterations. A subsampled Hessian is rebuilt only when CG iterations at the current one cost more
    than a quarter of a rebuild (the Hessian changes slowly near W*). "subsampled" skips the first
    stage, "none" is plain Newton-CG. The products run on a float32 copy of X when cfg.hvp_float32
    (relative error ~1e-7, far below what an inexact Newton step needs; f and grad f stay float64).
    Each line-search trial computes f, grad f and P together, so an accepted step costs one pass."""
    K, D = prob.shape
    X_hvp = prob.X.astype(np.float32) if cfg.hvp_float32 else prob.X  # (n, D)
    precond, kind, build_cost = None, "none", 0.0
    if cfg.precondition == "auto":
        precond, build_cost = kronecker_preconditioner(prob.X, prob.lam, K)
        kind = "kronecker"
        tr.spend(build_cost)
    f, g, P = model.loss_gradient(W, prob.X, prob.y, prob.lam, return_proba=True)
    tr.spend(prob.n)
    for _ in range(cfg.newton_max_iter):
        gnorm = float(np.linalg.norm(g))
        if gnorm <= cfg.newton_tol:
            break
        if cfg.precondition in ("auto", "subsampled") and precond is None:
            precond, build_cost = hessian_preconditioner(W, prob.X, prob.lam, cfg.precond_size, rng)
            kind = "subsampled"
            tr.spend(build_cost)
        P_hvp = P.astype(X_hvp.dtype)  # (n, K)

        def hvp(V):
            tr.spend(prob.n)
            return model.hessian_vector_product(W, X_hvp, prob.y, prob.lam, V.astype(X_hvp.dtype),
                                                P=P_hvp).astype(np.float64)

        step, cg_iters = conjugate_gradient(hvp, -g, tol=min(0.5, np.sqrt(gnorm)) * gnorm, max_iter=500,
                                            precond=precond)
        used = kind
        if kind == "kronecker" and cg_iters > cfg.switch_after:
            precond = None  # the model got confident: time for the real (subsampled) Hessian
        elif kind == "subsampled" and cg_iters * prob.n > build_cost / 4:
            precond = None
        t, slope = 1.0, float(np.vdot(g, step))
        for _ in range(60):  # Armijo backtracking; the unit step is almost always taken
            f_new, g_new, P_new = model.loss_gradient(W + t * step, prob.X, prob.y, prob.lam,
                                                      return_proba=True)
            tr.spend(prob.n)
            if f_new <= f + 1e-4 * t * slope:
                break
            t *= 0.5
        else:
            break  # no decrease at this precision: W is as good as float64 allows
        W, f, g, P = W + t * step, f_new, g_new, P_new
        tr.record(W, step=t, cg_iters=cg_iters, preconditioner=used)
    return W


# ------------------------------------------------------------------------------------------------
# stochastic methods; the single-sample loops update W in place with a BLAS rank-1 update (dger)


def sgd(prob, W, cfg, tr, rng):
    X, y, lam = prob.X, prob.y, prob.lam
    eta0 = 1.0 / prob.L_max
    WT = np.asfortranarray(W.T)  # (D, K) Fortran = W (K, D) in C order: dger updates it in place
    k = 0
    while tr.passes < cfg.passes:
        for i in rng.integers(0, prob.n, prob.n):  # sampling with replacement
            eta = eta0 / (1.0 + eta0 * lam * k)
            x = X[i]
            p = softmax(x @ WT)  # (K,)
            p[y[i]] -= 1.0  # p - e_y: the sample gradient is (p - e_y) x^T + lam W
            WT *= 1.0 - eta * lam
            WT = dger(-eta, x, p, a=WT, overwrite_a=True)
            k += 1
        tr.spend(prob.n)
        tr.record(WT.T)
    return np.ascontiguousarray(WT.T)


def minibatch(prob, W, cfg, tr, rng, replace: bool):
    X, y, lam, b = prob.X, prob.y, prob.lam, min(cfg.batch_size, prob.n)
    eta0 = min(b / prob.L_max, 1.0 / prob.L)
    k = 0
    while tr.passes < cfg.passes:
        if replace:
            batches = [rng.integers(0, prob.n, b) for _ in range(prob.n // b)]
        else:
            perm = rng.permutation(prob.n)
            batches = [perm[j:j + b] for j in range(0, prob.n, b)]
        for idx in batches:
            eta = eta0 / (1.0 + eta0 * lam * k)
            W = W - eta * model.gradient(W, X[idx], y[idx], lam)
            k += 1
        tr.spend(sum(len(idx) for idx in batches))
        tr.record(W)
    return W


def minibatch_sgd(prob, W, cfg, tr, rng):
    return minibatch(prob, W, cfg, tr, rng, replace=True)


def minibatch_gd(prob, W, cfg, tr, rng):
    return minibatch(prob, W, cfg, tr, rng, replace=False)


def svrg(prob, W, cfg, tr, rng):
    """v = grad f_i(W) - grad f_i(W~) + grad f(W~). For this model grad f_i(W) - grad f_i(W~) =
    (p_i - p~_i) x_i^T + lam (W - W~), and the snapshot pass already computes every p~_i, so they are
    kept (n x K floats) and each inner step costs ONE new sample gradient (counted as one)."""
    X, y, lam, n = prob.X, prob.y, prob.lam, prob.n
    eta = cfg.svrg_step / prob.L_max
    m = max(1, int(cfg.svrg_inner * n))
    WT = np.asfortranarray(W.T)  # (D, K)
    while tr.passes < cfg.passes:
        W_snap = np.ascontiguousarray(WT.T)  # (K, D)
        P_snap = model.probabilities(W_snap, X)  # (n, K)
        mu = model.gradient(W_snap, X, y, lam)  # full gradient at the snapshot (K, D)
        tr.spend(n)
        drift = np.asfortranarray((eta * (lam * W_snap - mu)).T)  # constant part of the update (D, K)
        W_avg = np.zeros_like(WT)
        t = 0
        for t, i in enumerate(rng.integers(0, n, m), start=1):
            x = X[i]
            d = softmax(x @ WT) - P_snap[i]  # (K,)
            WT *= 1.0 - eta * lam
            WT += drift
            WT = dger(-eta, x, d, a=WT, overwrite_a=True)
            if cfg.svrg_snapshot == "average":
                W_avg += WT
            if t % n == 0:
                tr.spend(n)
                tr.record(WT.T)
            if tr.passes >= cfg.passes:
                break
        if cfg.svrg_snapshot == "average":
            WT = np.asfortranarray(W_avg / t)
        if t % n:  # steps since the last record (m not a multiple of n); not m % n: the budget may cut the loop
            tr.spend(t % n)
            tr.record(WT.T)
    return np.ascontiguousarray(WT.T)


SOLVERS = dict(gd=gd, gd_armijo=gd_armijo, newton=newton, newton_cg=newton_cg, sgd=sgd,
               minibatch_sgd=minibatch_sgd, minibatch_gd=minibatch_gd, svrg=svrg)


def solve_reference(prob, cfg, rng):
    """W* with ||grad f(W*)|| <= cfg.newton_tol from W = 0: explicit Newton when the Hessian is small,
    else preconditioned Newton-CG. Returns (W*, f*, ||grad f(W*)||, method name, its records with f - f*
    filled in): run() reuses the records instead of solving the same problem twice."""
    K, D = prob.shape
    method = "newton" if K * D <= 3000 else "newton_cg"
    tr = Tracker(method, prob)  # verbose: on MNIST this takes minutes
    tr.record(np.zeros((K, D)))
    tr.start()
    W = SOLVERS[method](prob, np.zeros((K, D)), cfg, tr, rng)
    f, g = model.loss_gradient(W, prob.X, prob.y, prob.lam)
    for rec in tr.records:  # they were recorded before f* was known
        rec["gap"] = rec["f"] - f
    return W, f, float(np.linalg.norm(g)), method, tr.records


# ------------------------------------------------------------------------------------------------
# outputs


def write_json(path: Path, obj):
    """Atomic: a crash never leaves a half-written results file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.chmod(tmp, 0o644)  # mkstemp makes it 0600: results would be unreadable to anyone else
    os.replace(tmp, path)


def summary_table(results, f_star) -> str:
    lines = [f"{'method':>13} {'passes':>9} {'time s':>8} {'f - f*':>10} {'rel gap':>9} {'|grad f|':>10} "
             f"{'train acc':>9} {'test acc':>8}"]
    for name, recs in results.items():
        r = recs[-1]
        lines.append(f"{name:>13} {r['passes']:9.1f} {r['time']:8.2f} {r['gap']:10.3e} "
                     f"{r['gap'] / abs(f_star):9.2e} {r['grad_norm']:10.3e} {r['train_acc']:9.4f} "
                     f"{r['test_acc']:8.4f}")
    return "\n".join(lines)


def plot(results, f_star, out_dir: Path, title: str):
    def curves(ax, x_key, y_key, ylog=True, xlog=False, methods=None):
        for name, recs in results.items():
            if methods and name not in methods:
                continue
            # x = 0 (the start) has no place on a log axis; left in, matplotlib clips it far to the left and
            # draws a flat line from the plot's edge to the first real point, as if the method sat there
            recs = [r for r in recs if r[x_key] > 0] if xlog else recs
            xs = [r[x_key] for r in recs]
            ys = [max(r[y_key], 1e-16) if ylog else r[y_key] for r in recs]  # f - f* may round to <= 0
            ax.plot(xs, ys, marker="." if len(recs) < 60 else None, label=name)
        ax.set_yscale("log" if ylog else "linear")
        if xlog:
            ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)

    figs = {
        "gap_vs_passes.png": ("passes", "gap", True, True, None, "effective passes (log)", "f - f*"),
        "gap_vs_time.png": ("time", "gap", True, True, None, "wall time, s (log)", "f - f*"),
        "newton_grad_norm.png": ("iter", "grad_norm", True, False, SECOND_ORDER, "Newton iteration", "||grad f||"),
        "test_acc_vs_passes.png": ("passes", "test_acc", False, True, None, "effective passes (log)", "test accuracy"),
    }
    for fname, (xk, yk, ylog, xlog, methods, xl, yl) in figs.items():
        if methods and not any(m in results for m in methods):
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        curves(ax, xk, yk, ylog, xlog, methods)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        fig.savefig(out_dir / fname, dpi=110)
        plt.close(fig)


# ------------------------------------------------------------------------------------------------
# command line


def parse_args(argv=None) -> Config:
    parser = OneLineParser(description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    helps = field_help(Config)
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=helps.get(f.name, "-"))
        else:
            kind = {"int": int, "float": float}.get(f.type, str)
            parser.add_argument(flag, type=kind, default=f.default, metavar=f.name.upper(),
                                help=helps.get(f.name, "-"))
    return Config(**vars(parser.parse_args(argv)))


def check_config(cfg: Config) -> list[str]:
    methods = [m.strip() for m in cfg.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise UserError(f"unknown method {bad[0] if bad else cfg.methods!r}; allowed: {', '.join(METHODS)}")
    if not cfg.data and cfg.dataset not in data_sources.DATASETS:
        raise UserError(f"unknown dataset {cfg.dataset!r}; allowed: {', '.join(data_sources.DATASETS)} "
                        f"(or --data FILE.csv/.npz)")
    if not cfg.lam > 0:
        raise UserError(f"--lam must be > 0, got {cfg.lam} (Newton, and the f* it computes, need a "
                        f"strongly convex objective)")
    for name in ("passes", "batch_size", "svrg_inner", "svrg_step", "threads", "newton_max_iter", "precond_size"):
        if not getattr(cfg, name) > 0:  # newton_max_iter 0 would make f* = f(0) and every gap wrong
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    if cfg.newton_tol < 0:
        raise UserError(f"--newton-tol must be >= 0, got {cfg.newton_tol}")
    if cfg.precondition not in ("auto", "subsampled", "none"):
        raise UserError(f"unknown --precondition {cfg.precondition!r}; allowed: auto, subsampled, none")
    if cfg.svrg_snapshot not in ("last", "average"):
        raise UserError(f"unknown --svrg-snapshot {cfg.svrg_snapshot!r}; allowed: last, average")
    return methods


def load(cfg: Config) -> Problem:
    data = data_sources.load_dataset(cfg.dataset, cfg.data_dir, cfg.data, seed=cfg.seed, n=cfg.n, d=cfg.d,
                                 K=cfg.classes, cond=cfg.cond)
    prob = Problem(data.X_train, data.y_train, data.X_test, data.y_test, cfg.lam)
    prob.L, prob.L_max = model.smoothness(prob.X, cfg.lam)
    return prob


def run(cfg: Config, methods: list[str]) -> dict:
    prob = load(cfg)
    K, D = prob.shape
    name = Path(cfg.data).name if cfg.data else cfg.dataset
    print(f"{name}: n={prob.n} test={len(prob.y_test)} D={D} (with bias) K={K} lam={cfg.lam:g}  "
          f"L={prob.L:.4g} L_max={prob.L_max:.4g}", flush=True)
    t0 = time.perf_counter()
    print("f* solve (its f-f* column shows f until f* is known):", flush=True)
    W_star, prob.f_star, g_star, ref_method, ref_records = solve_reference(prob, cfg,
                                                                           np.random.default_rng(cfg.seed))
    t_ref = time.perf_counter() - t0
    print(f"f* = {prob.f_star:.12f}  (||grad f|| = {g_star:.2e}, {t_ref:.1f}s)  "
          f"test acc at W* = {model.accuracy(W_star, prob.X_test, prob.y_test):.4f}", flush=True)
    if not g_star <= cfg.newton_tol:  # e.g. a small --newton-max-iter: the gaps below are not gaps to f*
        print(f"warning: the f* solve stopped at ||grad f|| = {g_star:.2e} > --newton-tol {cfg.newton_tol:g} "
              f"(--newton-max-iter {cfg.newton_max_iter}); f - f* is measured from that point", file=sys.stderr)
    if "newton" in methods and K * D > 3000:  # e.g. MNIST: ~0.5 GB and minutes per step (README, bench.py)
        print(f"warning: newton builds the explicit {K * D} x {K * D} Hessian ({(K * D) ** 2 * 8 / 1e9:.1f} GB) "
              f"every iteration (on MNIST 1.5 to 3 minutes a step, README); leave newton out of --methods to skip it",
              file=sys.stderr)
    results = {}
    for i, m in enumerate(methods):
        print(f"[{i + 1}/{len(methods)}] {m}", flush=True)
        if m == ref_method:  # same solver, settings and seed as the f* solve: reuse its records
            results[m] = ref_records
            print(f"  {m}: the f* solve above ({len(ref_records) - 1} iterations)", flush=True)
            continue
        rng = np.random.default_rng(cfg.seed)
        tr = Tracker(m, prob)
        W0 = np.zeros((K, D))
        tr.record(W0)  # pass 0
        tr.start()
        SOLVERS[m](prob, W0, cfg, tr, rng)
        results[m] = tr.records
    return dict(config=dataclasses.asdict(cfg), dataset=name, n=prob.n, D=D, K=K, L=prob.L, L_max=prob.L_max,
                f_star=prob.f_star, f_star_grad_norm=g_star, f_star_seconds=t_ref,
                threads=cfg.threads, methods=results)


def main(argv=None):
    cfg = parse_args(argv)
    try:
        methods = check_config(cfg)
        with threadpool_limits(cfg.threads):
            out = run(cfg, methods)
    except (UserError, data_sources.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "results.json", out)
    table = summary_table(out["methods"], out["f_star"])
    print(table)
    if cfg.plots:
        plot(out["methods"], out["f_star"], out_dir, f"{out['dataset']}, lam={cfg.lam:g}, f*={out['f_star']:.6f}")
    print(f"wrote {out_dir / 'results.json'}" + (" and PNG plots" if cfg.plots else ""))


if __name__ == "__main__":
    main()
