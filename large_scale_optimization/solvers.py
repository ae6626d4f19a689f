"""The ten solvers for L2-regularised multinomial logistic regression, and the cost they are charged.

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
  saga           Defazio, Bach & Lacoste-Julien 2014, in minibatches of b rows (one BLAS product each):
                 a table of the last gradient of every sample instead of SVRG's snapshots
  lsvrg          loopless SVRG (Kovalev, Horvath & Richtarik 2020) in minibatches of b rows: the snapshot
                 is refreshed with probability b/n after each step instead of every m steps

Every solver is `solver(prob, W, opts, tr, rng) -> W`: a LogisticProblem, the start W (K, D), its own
SolverOptions, a Tracker that counts the cost and records the iterates, and a numpy Generator.

Cost is counted in sample-gradient equivalents; one effective pass = n of them. A full gradient or a
Hessian-vector product costs one pass (two n x D x K matrix products); a loss evaluation in a line
search one pass; the explicit Hessian (K+1)D/4 passes (K(K+1)/2 Gram matrices of 2nD^2 flops against
4nKD for a gradient) plus K^2 D^2 / (12 n) for its Cholesky ((KD)^3/3 flops).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
from scipy.linalg.blas import dger
from scipy.special import softmax

import model

METHODS = ("gd", "gd_armijo", "newton", "newton_cg", "sgd", "minibatch_sgd", "minibatch_gd", "svrg", "saga",
           "lsvrg")
SECOND_ORDER = ("newton", "newton_cg")


@dataclass
class SolverOptions:
    passes: float = 15.0  # budget of effective passes for the first-order methods
    batch_size: int = 128  # minibatch_sgd / minibatch_gd
    svrg_inner: float = 2.0  # inner loop length m = svrg_inner * n
    svrg_step: float = 1.0  # eta = svrg_step / L_max
    svrg_snapshot: str = "last"  # last (Johnson & Zhang's option I) | average (of the inner iterates)
    vr_batch: int = 16  # saga / lsvrg: rows per step
    vr_step: float = 8.0  # saga / lsvrg: eta = vr_step / L(b), L(b) the minibatch smoothness constant
    newton_tol: float = 1e-10  # stop Newton / Newton-CG at ||grad f|| <= this
    newton_max_iters: int = 50  # Newton / Newton-CG iteration cap
    precondition: str = "auto"  # newton_cg: auto | subsampled | none
    switch_after: int = 10  # newton_cg auto: CG iterations that trigger the subsampled Hessian
    hvp_float32: bool = True  # newton_cg: Hessian-vector products on a float32 copy of X
    precond_size: int = 6000  # rows drawn for the subsampled Hessian


class Diverged(Exception):
    """A method reached a non-finite f or gradient: its records stop there, and nothing of the run is saved."""


# ------------------------------------------------------------------------------------------------
# the problem, and a tracker: cost counter, clock that stops while we evaluate, one record per
# iteration (deterministic methods) or per effective pass (stochastic ones)


@dataclass
class LogisticProblem:
    X: np.ndarray  # (n, D) train
    y: np.ndarray  # (n,)
    X_test: np.ndarray
    y_test: np.ndarray
    lam: float
    L: float = 0.0
    L_max: float = 0.0
    f_star: float = 0.0

    @classmethod
    def from_dataset(cls, data, lam: float) -> "LogisticProblem":
        """The problem on a data.Dataset, with its smoothness constants L and L_max."""
        prob = cls(data.X_train, data.y_train, data.X_test, data.y_test, lam)
        prob.L, prob.L_max = model.smoothness(prob.X, lam)
        return prob

    @property
    def n(self):
        return self.X.shape[0]

    @property
    def shape(self):  # shape of W
        return int(self.y.max()) + 1, self.X.shape[1]


@dataclass
class Tracker:
    method: str
    prob: LogisticProblem
    records: list = field(default_factory=list)
    cost: float = 0.0  # sample-gradient equivalents spent
    elapsed: float = 0.0  # seconds of optimisation (evaluations excluded)
    verbose: bool = True
    clock: object = time.perf_counter  # wall time; the first-order benchmark passes time.process_time (CPU)
    _t0: float | None = None  # None: clock not started (the pass-0 record costs no time)

    def start(self):
        self._t0 = self.clock()

    def spend(self, sample_gradients: float):
        self.cost += sample_gradients

    @property
    def passes(self):
        return self.cost / self.prob.n

    def record(self, W, **extra):
        if self._t0 is not None:
            self.elapsed += self.clock() - self._t0
        p = self.prob
        f, g = model.loss_gradient(W, p.X, p.y, p.lam)
        if not (np.isfinite(f) and np.all(np.isfinite(g))):
            raise Diverged(f"{self.method} diverged: f = {f} after {self.passes:.1f} passes")
        rec = dict(method=self.method, iter=len(self.records), passes=self.passes, time=self.elapsed,
                   f=f, gap=f - p.f_star, grad_norm=float(np.linalg.norm(g)),
                   train_acc=model.accuracy(W, p.X, p.y), test_acc=model.accuracy(W, p.X_test, p.y_test),
                   grad_evals=self.cost, **extra)
        self.records.append(rec)
        if self.verbose:
            print(f"  {self.method:>13} it {rec['iter']:4d}  passes {rec['passes']:9.1f}  t {rec['time']:7.2f}s"
                  f"  f-f* {rec['gap']:.3e}  |g| {rec['grad_norm']:.3e}  test {rec['test_acc']:.4f}", flush=True)
        if self._t0 is not None:
            self._t0 = self.clock()
        return rec


def hessian_cost(K, D, n):
    """Explicit Hessian + Cholesky in sample-gradient equivalents (see the module docstring)."""
    return n * (K + 1) * D / 4 + (K * D) ** 3 / 3 / (4 * K * D)


# ------------------------------------------------------------------------------------------------
# deterministic methods


def armijo(prob, W, f, g, direction, tr, t=1.0, c=1e-4, shrink=0.5, with_gradient=False):
    """Backtrack t until f(W + t d) <= f + c t <g, d>; each trial is one loss evaluation (one pass).

    Returns (W + t d, t, value) with value = (f,) at the accepted point, or (f, grad f, P) when
    `with_gradient`; (W, 0.0, None) when no trial decreases f at this precision."""
    slope = float(np.vdot(g, direction))
    for _ in range(60):
        W_new = W + t * direction
        if with_gradient:
            value = model.loss_gradient(W_new, prob.X, prob.y, prob.lam, return_proba=True)
        else:
            value = (model.loss(W_new, prob.X, prob.y, prob.lam),)
        tr.spend(prob.n)
        if value[0] <= f + c * t * slope:
            return W_new, t, value
        t *= shrink
    return W, 0.0, None


def gd(prob, W, opts, tr, rng):
    while tr.passes < opts.passes:
        W = W - model.gradient(W, prob.X, prob.y, prob.lam) / prob.L
        tr.spend(prob.n)
        tr.record(W)
    return W


def gd_armijo(prob, W, opts, tr, rng):
    t = 1.0 / prob.L
    while tr.passes < opts.passes:
        f, g = model.loss_gradient(W, prob.X, prob.y, prob.lam)
        tr.spend(prob.n)
        W, t, _ = armijo(prob, W, f, g, -g, tr, t=2 * t)  # try a longer step than last time first
        t = t or 1.0 / prob.L
        tr.record(W, step=t)
    return W


def newton(prob, W, opts, tr, rng):
    """Newton-Raphson with the explicit block Hessian (model.hessian) and a Cholesky solve."""
    K, D = prob.shape
    for _ in range(opts.newton_max_iters):
        f, g = model.loss_gradient(W, prob.X, prob.y, prob.lam)
        tr.spend(prob.n)
        if np.linalg.norm(g) <= opts.newton_tol:
            break
        H = model.hessian(W, prob.X, prob.y, prob.lam)  # (K*D, K*D)
        step = -scipy.linalg.cho_solve(scipy.linalg.cho_factor(H, check_finite=False), g.ravel(),
                                       check_finite=False).reshape(K, D)
        tr.spend(hessian_cost(K, D, prob.n))
        W, t, _ = armijo(prob, W, f, g, step, tr)
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


@dataclass
class Preconditioner:
    """newton_cg's current preconditioner: `apply` (None: build the next one), its kind and build cost."""
    apply: object = None
    kind: str = "none"
    build_cost: float = 0.0


def newton_cg(prob, W, opts, tr, rng):
    """Inexact Newton: CG on Hessian-vector products to relative residual min(0.5, sqrt||g||) (so the
    local rate is superlinear), Armijo line search.

    opts.precondition "auto" starts with the W = 0 Hessian (kronecker_preconditioner, cheap) and switches
    to the importance-subsampled Hessian (hessian_preconditioner) once CG needs more than ``switch_after``
    iterations. A subsampled Hessian is rebuilt only when CG iterations at the current one cost more
    than a quarter of a rebuild (the Hessian changes slowly near W*). "subsampled" skips the first
    stage, "none" is plain Newton-CG. The products run on a float32 copy of X when opts.hvp_float32
    (relative error ~1e-7, far below what an inexact Newton step needs; f and grad f stay float64).
    Each line-search trial computes f, grad f and P together, so an accepted step costs one pass."""
    K, D = prob.shape
    X_hvp = prob.X.astype(np.float32) if opts.hvp_float32 else prob.X  # (n, D)
    pre = Preconditioner()
    if opts.precondition == "auto":
        apply, cost = kronecker_preconditioner(prob.X, prob.lam, K)
        pre = Preconditioner(apply, "kronecker", cost)
        tr.spend(cost)
    f, g, P = model.loss_gradient(W, prob.X, prob.y, prob.lam, return_proba=True)
    tr.spend(prob.n)
    for _ in range(opts.newton_max_iters):
        gnorm = float(np.linalg.norm(g))
        if gnorm <= opts.newton_tol:
            break
        if opts.precondition in ("auto", "subsampled") and pre.apply is None:
            apply, cost = hessian_preconditioner(W, prob.X, prob.lam, opts.precond_size, rng)
            pre = Preconditioner(apply, "subsampled", cost)
            tr.spend(cost)
        step, cg_iters = newton_step(prob, W, g, P.astype(X_hvp.dtype), X_hvp, tr, pre.apply)
        used = pre.kind
        if pre.kind == "kronecker" and cg_iters > opts.switch_after:
            pre.apply = None  # the model got confident: time for the real (subsampled) Hessian
        elif pre.kind == "subsampled" and cg_iters * prob.n > pre.build_cost / 4:
            pre.apply = None
        W_new, t, value = armijo(prob, W, f, g, step, tr, with_gradient=True)  # the unit step: almost always
        if value is None:
            break  # no decrease at this precision: W is as good as float64 allows
        W, (f, g, P) = W_new, value
        tr.record(W, step=t, cg_iters=cg_iters, preconditioner=used)
    return W


def newton_step(prob, W, g, P_hvp, X_hvp, tr, precond):
    """CG on H d = -g with Hessian-vector products at W (each one pass) to relative residual
    min(0.5, sqrt||g||); returns (d, CG iterations)."""
    gnorm = float(np.linalg.norm(g))

    def hvp(V):
        tr.spend(prob.n)
        return model.hessian_vector_product(W, X_hvp, prob.y, prob.lam, V.astype(X_hvp.dtype),
                                            P=P_hvp).astype(np.float64)

    return conjugate_gradient(hvp, -g, tol=min(0.5, np.sqrt(gnorm)) * gnorm, max_iter=500, precond=precond)


# ------------------------------------------------------------------------------------------------
# stochastic methods; the single-sample loops update W in place with a BLAS rank-1 update (dger)


def sgd(prob, W, opts, tr, rng):
    X, y, lam = prob.X, prob.y, prob.lam
    eta0 = 1.0 / prob.L_max
    WT = np.asfortranarray(W.T)  # (D, K) Fortran = W (K, D) in C order: dger updates it in place
    k = 0
    while tr.passes < opts.passes:
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


def minibatch(prob, W, opts, tr, rng, replace: bool):
    X, y, lam, b = prob.X, prob.y, prob.lam, min(opts.batch_size, prob.n)
    eta0 = min(b / prob.L_max, 1.0 / prob.L)
    k = 0
    while tr.passes < opts.passes:
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


def minibatch_sgd(prob, W, opts, tr, rng):
    return minibatch(prob, W, opts, tr, rng, replace=True)


def minibatch_gd(prob, W, opts, tr, rng):
    return minibatch(prob, W, opts, tr, rng, replace=False)


def svrg(prob, W, opts, tr, rng):
    """v = grad f_i(W) - grad f_i(W~) + grad f(W~). For this model grad f_i(W) - grad f_i(W~) =
    (p_i - p~_i) x_i^T + lam (W - W~), and the snapshot pass already computes every p~_i, so they are
    kept (n x K floats) and each inner step costs ONE new sample gradient (counted as one)."""
    X, y, lam, n = prob.X, prob.y, prob.lam, prob.n
    eta = opts.svrg_step / prob.L_max
    m = max(1, int(opts.svrg_inner * n))
    WT = np.asfortranarray(W.T)  # (D, K)
    while tr.passes < opts.passes:
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
            if opts.svrg_snapshot == "average":
                W_avg += WT
            if t % n == 0:
                tr.spend(n)
                tr.record(WT.T)
            if tr.passes >= opts.passes:
                break
        if opts.svrg_snapshot == "average":
            WT = np.asfortranarray(W_avg / t)
        if t % n:  # steps since the last record (m not a multiple of n); not m % n: the budget may cut the loop
            tr.spend(t % n)
            tr.record(WT.T)
    return np.ascontiguousarray(WT.T)


# ------------------------------------------------------------------------------------------------
# minibatch variance reduction: one step is two (b x D) @ (D x K)-sized BLAS products, not b Python steps.
# Both methods write the data term as lbar(W) = 1/n sum_i l_i(W), grad l_i(W) = (p_i(W) - e_{y_i}) x_i^T,
# and keep the regulariser's gradient lam W exact (it is the same for every sample: a control variate
# for it would only add noise). A gradient table or snapshot of this model needs only the n x K
# probabilities p_i: the gradient is rebuilt from x_i in the same product that uses it.


def minibatch_smoothness(prob, b):
    """L(b) = n (b - 1) / (b (n - 1)) L + (n - b) / (b (n - 1)) L_max: the expected smoothness of the mean
    of b rows drawn without replacement (Gower et al. 2019, "SGD: general analysis and improved rates",
    Prop. 3.8); L(1) = L_max, L(n) = L. The variance-reduced methods step eta = vr_step / L(b)."""
    n = prob.n
    return n * (b - 1) / (b * (n - 1)) * prob.L + (n - b) / (b * (n - 1)) * prob.L_max if n > 1 else prob.L_max


def shuffled_batches(n, b, rng):
    """One epoch: a random permutation of 0..n-1 cut into batches of b (the last one shorter when b does not
    divide n). Disjoint rows, so a batch never holds a row twice (the SAGA table update needs that)."""
    perm = rng.permutation(n)
    return [perm[j:j + b] for j in range(0, n, b)]


def softmax_rows(Z):
    """softmax of each row of Z (b, K), in place (Z is a fresh product): scipy's softmax costs more than
    the (b x D) @ (D x K) product at b = 16."""
    Z -= Z.max(axis=1, keepdims=True)
    np.exp(Z, out=Z)
    Z /= Z.sum(axis=1, keepdims=True)
    return Z


def saga_step(W, A, G, idx, X, lam, eta):
    """One SAGA step on the rows idx, in place on W (K, D), the table A (n, K) and its mean G (K, D).

    Table: A_i = p_i(phi_i), the probabilities at the iterate phi_i where row i was last used, and
    G = (A - Y)^T X / n = 1/n sum_i grad l_i(phi_i) (Y one-hot; Y cancels in every update below).
    With P_B = softmax(X_B W^T) (b, K) and Delta = P_B - A_B:

        v = Delta^T X_B / b + G + lam W          = grad l_B(W) - grad l_B(phi_B) + G + lam W
        W <- W - eta v
        G <- G + Delta^T X_B / n,   A_B <- P_B    (row i's stored gradient is now the one at W)

    v is unbiased: over a uniform batch E[grad l_B(phi_B)] = G, so E[v] = grad f(W); and as W and every
    phi_i approach W*, both differences vanish: the variance goes to 0 and a constant step converges.
    One product Delta^T X_B (K, D) serves both v and G."""
    XB = X[idx]  # (b, D)
    PB = softmax_rows(XB @ W.T)  # (b, K)
    delta_g = (PB - A[idx]).T @ XB  # (K, D) = b (grad l_B(W) - grad l_B(phi_B))
    W *= 1.0 - eta * lam
    W -= eta * (delta_g / len(idx) + G)
    G += delta_g / A.shape[0]
    A[idx] = PB


def saga(prob, W, opts, tr, rng):
    """SAGA (Defazio, Bach & Lacoste-Julien 2014) in minibatches of b = vr_batch rows from shuffled epochs;
    the step is saga_step above. The table starts at W0 (A = P(W0), G = its mean gradient: one pass), then
    each epoch uses every row once: n sample gradients, one record. eta = vr_step / L(b): the minibatch
    SAGA theory (Gazagnadou, Gower & Salmon 2019) guarantees E[||W - W*||^2 + table term] <= (1 - lam
    eta)^k (...) for eta = 1 / (4 max(L(b), (n - b) / (b (n - 1)) L_max + lam n / (4 b))), about 1/(4 L(b));
    L(b) is Boehning's worst case (two classes at p = 1/2), far above the curvature a fitted model meets, so
    the default vr_step is 32 times that: 8, chosen on MNIST, where it reaches a relative gap of 1e-4 in
    about 21 passes (README, results/first_order_bench.json); 12 already stops converging on digits at
    lam = 1e-2. The batches must be disjoint (shuffled_batches): a row twice in one batch would enter G
    twice but the table once, and G would drift from the table's mean (a floor on the gap)."""
    X, y, lam, n = prob.X, prob.y, prob.lam, prob.n
    b = min(opts.vr_batch, n)
    eta = opts.vr_step / minibatch_smoothness(prob, b)
    W = np.array(W, dtype=np.float64)  # (K, D), updated in place
    _, g, A = model.loss_gradient(W, X, y, lam, return_proba=True)  # A = P(W0) (n, K)
    G = g - lam * W  # (K, D) = (A - Y)^T X / n
    tr.spend(n)
    while tr.passes < opts.passes:
        for idx in shuffled_batches(n, b, rng):
            saga_step(W, A, G, idx, X, lam, eta)
        tr.spend(n)
        tr.record(W)
    return W


def lsvrg(prob, W, opts, tr, rng):
    """Loopless SVRG (Kovalev, Horvath & Richtarik 2020, "Don't jump through hoops") in minibatches of
    b = vr_batch rows: SVRG's direction, with the snapshot refreshed by a coin instead of an inner loop.

        v = (P_B - P~_B)^T X_B / b + lam (W - W~) + mu   = grad f_B(W) - grad f_B(W~) + grad f(W~)
        W <- W - eta v;   then with probability q = b / n:  W~ <- W, P~ <- P(W~), mu <- grad f(W~)

    P~ = P(W~) (n, K) is kept from the snapshot pass, so a step costs b new sample gradients and a refresh
    one pass: 2b per step in expectation, twice SAGA's. Theory: eta = 1 / (6 L(b)) contracts
    E[||W - W*||^2 + ...] by max(1 - lam eta, 1 - q / 2) per step. One record per epoch of n / b batches."""
    X, y, lam, n = prob.X, prob.y, prob.lam, prob.n
    b = min(opts.vr_batch, n)
    eta = opts.vr_step / minibatch_smoothness(prob, b)
    W = np.array(W, dtype=np.float64)  # (K, D)
    refresh = True
    while tr.passes < opts.passes:
        for idx in shuffled_batches(n, b, rng):
            if refresh:
                W_snap = W.copy()
                _, mu, P_snap = model.loss_gradient(W_snap, X, y, lam, return_proba=True)  # (K, D), (n, K)
                tr.spend(n)
            XB = X[idx]  # (b, D)
            PB = softmax_rows(XB @ W.T)  # (b, K)
            v = (PB - P_snap[idx]).T @ XB / len(idx) + lam * (W - W_snap) + mu  # (K, D)
            W -= eta * v
            tr.spend(len(idx))
            refresh = rng.random() < len(idx) / n
            if tr.passes >= opts.passes:
                break
        tr.record(W)
    return W


SOLVERS = dict(gd=gd, gd_armijo=gd_armijo, newton=newton, newton_cg=newton_cg, sgd=sgd,
               minibatch_sgd=minibatch_sgd, minibatch_gd=minibatch_gd, svrg=svrg, saga=saga, lsvrg=lsvrg)


def solve_reference(prob, opts, rng):
    """W* with ||grad f(W*)|| <= opts.newton_tol from W = 0: explicit Newton when the Hessian is small
    (K*D <= 3000), else preconditioned Newton-CG. Returns (W*, f*, ||grad f(W*)||, method name, its
    records with f - f* filled in): train.py reuses the records instead of solving the same problem twice."""
    K, D = prob.shape
    method = "newton" if K * D <= 3000 else "newton_cg"
    tr = Tracker(method, prob)  # verbose: on MNIST this takes minutes
    tr.record(np.zeros((K, D)))
    tr.start()
    W = SOLVERS[method](prob, np.zeros((K, D)), opts, tr, rng)
    f, g = model.loss_gradient(W, prob.X, prob.y, prob.lam)
    for rec in tr.records:  # they were recorded before f* was known
        rec["gap"] = rec["f"] - f
    return W, f, float(np.linalg.norm(g)), method, tr.records
