"""First-order methods for the denoising problems of prox.py, each returning a Trace.

  subgrad-sqrt / subgrad-const / subgrad-polyak   primal subgradient steps of length s R/sqrt(k+1), s R/10
      (R = ||y - x*||), or Polyak's (f - f*)/||g||^2
  ista / fista / fista-restart   proximal gradient on the DUAL for TV (projected gradient and Beck &
      Teboulle's FGP, 2009), on the PRIMAL for l1 (the prox is soft thresholding); restart is the
      gradient scheme of O'Donoghue & Candes, "Adaptive Restart for Accelerated Gradient Schemes", 2015
  exact      Condat's direct algorithm (tv1d, tv.py) or the closed-form soft threshold (l1)
  chambolle  scikit-image's denoise_tv_chambolle with its defaults (tv2d iso; weight = lam, same objective)

A Trace's "time" counts only the method's own work, not the monitoring (objective and gap evaluations).
f* (reference) comes from the exact solver, or for tv2d from a long fista-restart run whose duality gap
certifies it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from tqdm import tqdm

import prox
import tv
from cli import UserError

SUBGRADIENT = ("subgrad-sqrt", "subgrad-const", "subgrad-polyak")
PROX_GRADIENT = ("ista", "fista", "fista-restart")


@dataclass
class Trace:
    method: str
    x: np.ndarray
    iters: list = field(default_factory=list)  # 1-based iteration counts
    time: list = field(default_factory=list)  # seconds of solver work up to that iteration
    primal: list = field(default_factory=list)  # P(x_k) (best so far for the subgradient method)
    gap: list = field(default_factory=list)  # duality gap P(x_k) - D(p_k), or nan where no dual point
    p: Optional[np.ndarray] = None  # the final dual point (dual methods)

    def log(self, k: int, t: float, primal: float, gap: float):
        self.iters.append(k)
        self.time.append(t)
        self.primal.append(primal)
        self.gap.append(gap)


def subgradient_method(prob: prox.Problem, rule: str, iters: int, step: float = 0.1, radius: float = 1.0,
                       f_star: Optional[float] = None, progress: bool = False) -> Trace:
    """x_{k+1} = x_k - a_k g_k, g_k in dP(x_k); not a descent method, so report the best P so far.

    rule "sqrt":   a_k = step * R / (||g_k|| sqrt(k+1)), the textbook choice for best P - P* = O(1/sqrt k)
                   when R = ||x_0 - x*|| (radius; known here from the reference solution, as Polyak knows f*).
    rule "const":  constant step length ||x_{k+1} - x_k|| = step * R / 10: fast at first, then it stalls
                   at a level proportional to the step.
    rule "polyak": a_k = (P(x_k) - f*) / ||g_k||^2, no tuning but needs f*.
    """
    if rule == "polyak" and f_star is None:
        raise ValueError("the Polyak step needs f*")
    x = prob.y.copy()
    trace = Trace(f"subgrad-{rule}", x)
    best, best_x, solver_time = math.inf, x, 0.0
    for k in tqdm(range(iters), desc=trace.method, leave=False, disable=not progress, mininterval=1.0):
        t0 = time.perf_counter()
        f = prob.primal(x)
        g = prob.subgradient(x)
        if f < best:
            best, best_x = f, x
        g_norm = math.sqrt(float(np.vdot(g, g)))
        if g_norm == 0.0:  # 0 is a subgradient: x is optimal (lam = 0, or a lucky start)
            solver_time += time.perf_counter() - t0
            trace.log(k + 1, solver_time, best, 0.0 if prob.dual_of_primal else math.nan)
            break
        if rule == "sqrt":
            a = step * radius / (g_norm * math.sqrt(k + 1))
        elif rule == "const":
            a = step * radius / (10 * g_norm)
        else:
            a = max(f - f_star, 0.0) / g_norm**2
        x = x - a * g
        solver_time += time.perf_counter() - t0
        if logged(k + 1, iters):
            cert = prob.primal_gap(best_x)
            trace.log(k + 1, solver_time, best, cert[2] if cert else math.nan)
    trace.x = best_x
    return trace


def prox_gradient(prob: prox.Problem, iters: int, accel: bool, restart: bool, tol: float = 0.0,
                  check_every: int = 10, progress: bool = False) -> Trace:
    """ISTA / FISTA / FISTA with gradient restart, on the dual (TV) or the primal (l1, prox = soft threshold).

    Dual, maximise D(p) = 1/2||y||^2 - 1/2||y - K^T p||^2 over C: grad D(p) = K x(p) with x(p) = y - K^T p,
    L = ||K||^2, so p <- Proj_C(z + K x(z) / L) (Beck & Teboulle 2009: GP and FGP). Gap at p_k certifies x(p_k).
    Stops once gap <= tol * P, checked every check_every iterations and at the logged ones.
    Primal (l1): x <- prox_{lam||W.||_1 / L}(z - (z - y)/L) = W^T soft(W(...), lam/L); L = 1 here, so one step
    already lands on the closed form.
    """
    dual = prob.name in ("tv1d", "tv2d")
    v = np.zeros_like(prob.K(prob.y)) if dual else prob.y.copy()  # p_0 = 0 (x = y) or x_0 = y
    z, t, solver_time = v, 1.0, 0.0
    trace = Trace("fista-restart" if restart else "fista" if accel else "ista", prob.y)
    for k in tqdm(range(iters), desc=trace.method, leave=False, disable=not progress, mininterval=1.0):
        t0 = time.perf_counter()
        if dual:  # in place where it is free: at n = 1e6 fresh 8 MB arrays cost more than the arithmetic
            v_new = prob.K(prob.x_of(z))
            v_new /= prob.L
            v_new += z
            v_new = prob.project(v_new, out=v_new)
        else:
            # the gradient step z - (z - y) / L on 1/2||x - y||^2 lands on y, as L = 1 (orthonormal K)
            v_new = prob.KT(prox.soft_threshold(prob.K(prob.y), prob.lam))
        if not accel:
            z = v_new
        else:
            step = v_new - v
            # O'Donoghue-Candes gradient restart: (z - v_new) . (v_new - v) > 0 means the momentum points uphill
            if restart and np.vdot(z, step) - np.vdot(v_new, step) > 0:
                z, t = v_new, 1.0
            else:
                t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
                step *= (t - 1.0) / t_new
                step += v_new
                z, t = step, t_new
        v = v_new
        solver_time += time.perf_counter() - t0
        if not (logged(k + 1, iters) or (tol > 0 and (k + 1) % check_every == 0)):
            continue  # the certificate costs about one iteration: compute it only where it is used
        primal, _, gap = prob.gap(v) if dual else prob.primal_gap(v)
        trace.log(k + 1, solver_time, primal, gap)
        if gap <= tol * abs(primal):
            break
    trace.x = prob.x_of(v) if dual else v
    trace.p = v if dual else None
    return trace


def exact_method(prob: prox.Problem) -> Trace:
    """Condat's direct algorithm (tv1d) or the closed-form soft threshold (l1); one 'iteration'."""
    t0 = time.perf_counter()
    x = prob.exact()
    dt = time.perf_counter() - t0
    trace = Trace("exact", x)
    cert = prob.primal_gap(x)
    trace.log(1, dt, prob.primal(x), cert[2] if cert else math.nan)
    return trace


def chambolle_method(prob: prox.Problem) -> Trace:
    """scikit-image's Chambolle (2004) projection algorithm with its default stopping rule.

    Its fixed point solves 1/2||x - y||^2 + weight * TV_iso(x) on the same forward-difference grid, so
    weight = lam (skimage/restoration/_denoise.py, _denoise_tv_chambolle_nd).
    """
    try:
        from skimage.restoration import denoise_tv_chambolle
    except ImportError:
        raise UserError("method chambolle needs scikit-image, which is not importable") from None
    t0 = time.perf_counter()
    x = denoise_tv_chambolle(prob.y, weight=prob.lam)
    dt = time.perf_counter() - t0
    trace = Trace("chambolle", x)
    trace.log(1, dt, prob.primal(x), math.nan)
    return trace


def logged(k: int, iters: int) -> bool:
    """Log-spaced iterations (about 25 per decade) plus the last: small JSON, smooth log-log plots."""
    return k <= 10 or k == iters or int(25 * math.log10(k)) != int(25 * math.log10(k - 1))


def reference(prob: prox.Problem, ref_iters: int, progress: bool = False) -> dict:
    """f* and how it is certified: exact solver, or a long fista-restart run with its duality gap."""
    if prob.exact is not None:
        x = prob.exact()
        f = prob.primal(x)
        out = {"f_star": f, "how": "exact", "x": x}
        if prob.name == "tv1d":
            out["kkt_residual"] = kkt_residual_tv1d(x, prob.y, prob.lam)
        return out
    tr = prox_gradient(prob, ref_iters, accel=True, restart=True, tol=1e-11, progress=progress)
    primal, dual, gap = prob.gap(tr.p)
    # D(p_ref) <= P* <= P(x_ref): take the certified lower bound so every plotted gap is >= 0
    return {"f_star": dual, "how": f"fista-restart {tr.iters[-1]} iters, gap {gap:.3e}", "x": tr.x,
            "f_upper": primal, "iters": tr.iters[-1]}


def kkt_residual_tv1d(x: np.ndarray, y: np.ndarray, lam: float) -> dict:
    """How far x is from satisfying the 1-D TV optimality conditions with z = cumsum(x - y)."""
    z = tv.tv1d_dual(x, y)
    dx = np.diff(x)
    jumps = dx != 0
    return {
        "sum_residual": abs(float(np.sum(x - y))),  # D^T z = y - x needs the last partial sum to vanish
        "box_violation": max(0.0, float(np.abs(z).max(initial=0.0)) - lam),
        "jump_sign_residual": float(np.abs(z[jumps] - lam * np.sign(dx[jumps])).max(initial=0.0)),
    }


@dataclass
class MethodOptions:
    """What run_method passes on to a method."""
    max_iters: int = 1000  # iteration budget
    step: float = 0.1  # subgradient step scale
    tol: float = 1e-9  # prox_gradient stops at duality gap <= tol * |P|
    progress: bool = False  # tqdm bars on stderr


def run_method(method: str, prob: prox.Problem, ref: dict, opts: MethodOptions) -> Trace:
    """One of METHODS on prob; `ref` is reference()'s answer (subgradient methods use x* and f*)."""
    if method == "exact":
        return exact_method(prob)
    if method == "chambolle":
        return chambolle_method(prob)
    if method.startswith("subgrad-"):
        radius = float(np.linalg.norm(prob.y - ref["x"]))
        return subgradient_method(prob, method.split("-")[1], opts.max_iters, opts.step, radius, ref["f_star"],
                                  opts.progress)
    return prox_gradient(prob, opts.max_iters, accel=method != "ista", restart=method == "fista-restart",
                         tol=opts.tol, progress=opts.progress)
