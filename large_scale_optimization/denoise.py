"""Denoising with first-order methods: subgradient, proximal gradient (ISTA) and accelerated (FISTA).

    python large_scale_optimization/denoise.py --problem tv1d --n 100000 --lam 1.0
    python large_scale_optimization/denoise.py --problem tv2d --tv iso --lam 0.1      # cameraman
    python large_scale_optimization/denoise.py --problem l1 --basis haar --image my.png
    python large_scale_optimization/denoise.py --bench                                 # figures for DENOISING.md

Problems (prox.py): min_x 1/2||x - y||^2 + lam R(K x) for 1-D TV, 2-D TV (isotropic / anisotropic) and l1
sparsity in an orthonormal DCT / Haar basis. Methods:
  subgrad-sqrt / subgrad-const / subgrad-polyak   primal subgradient steps of length s R/sqrt(k+1), s R/10
      (R = ||y - x*||), or Polyak's (f - f*)/||g||^2
  ista / fista / fista-restart   proximal gradient on the DUAL for TV (projected gradient and Beck &
      Teboulle's FGP, 2009), on the PRIMAL for l1 (the prox is soft thresholding); restart is the
      gradient scheme of O'Donoghue & Candes, "Adaptive Restart for Accelerated Gradient Schemes", 2015
  exact      Condat's direct algorithm (tv1d, tv.py) or the closed-form soft threshold (l1)
  chambolle  scikit-image's denoise_tv_chambolle with its defaults (tv2d --tv iso; weight = lam, same objective)
f* comes from the exact solver, or for tv2d from a long fista-restart run whose duality gap certifies it.
"""
from __future__ import annotations

import os

# the dot products here are memory-bound; threaded BLAS only spins on a shared 2-core machine
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

import matplotlib

matplotlib.use("Agg")
import matplotlib.cbook  # noqa: E402
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import prox  # noqa: E402
from cli import OneLineParser, field_help  # noqa: E402
import tv  # noqa: E402

try:  # optional: the default image (skimage.restoration, for the Chambolle comparison, is imported on use:
    import skimage.data  # it pulls in scipy.stats, ~1.5 s, which only the tv2d comparison needs)
except ImportError:  # pragma: no cover - scikit-image is in requirements.txt
    skimage = None

PROBLEMS = ("tv1d", "tv2d", "l1")
SUBGRAD = ("subgrad-sqrt", "subgrad-const", "subgrad-polyak")
PROX = ("ista", "fista", "fista-restart")
METHODS = {
    "tv1d": ("exact", *SUBGRAD, *PROX),
    "tv2d": (*SUBGRAD, *PROX, "chambolle"),
    "l1": ("exact", *SUBGRAD, *PROX),
}
DEFAULT_LAM = {"tv1d": 1.0, "tv2d": 0.1, "l1": 0.2}


@dataclass
class Config:
    problem: str = "tv1d"  # tv1d | tv2d | l1
    n: int = 100_000  # tv1d signal length
    seg_len: int = 500  # tv1d: mean length of the constant pieces of the clean signal
    signal: str = ""  # tv1d: a clean 1-D signal (.npy or text) instead of the generated one
    image: str = ""  # tv2d / l1: a PNG/JPG; empty: skimage's cameraman, else matplotlib's grace_hopper
    crop: int = 0  # centre crop to crop x crop pixels (0: whole image)
    tv: str = "iso"  # tv2d: iso (per-pixel l2 of the gradient) | aniso (l1)
    basis: str = "dct"  # l1: dct | haar
    lam: Optional[float] = None  # regularisation weight >= 0; unset: tv1d 1.0, tv2d 0.1, l1 0.2 (DEFAULT_LAM)
    sigma: float = 0.1  # std of the additive Gaussian noise
    seed: int = 0  # seed of the noise (and of the generated signal)
    methods: list = field(default_factory=lambda: ["all"])
    iters: int = 1000  # iteration budget per method
    tol: float = 1e-9  # stop a method when its duality gap <= tol * |P(x)|
    step: float = 0.1  # subgradient step scale s: lengths s*R/sqrt(k+1) (sqrt), s*R/10 (const), R=||y-x*||
    ref_iters: int = 3000  # tv2d: fista-restart iterations (at most) for the certified f*
    lam_sweep: int = 9  # PSNR-vs-lam sweep points (0: skip)
    bench: bool = False  # run the benchmark (n = 1e6 tv1d, cameraman tv2d vs skimage) instead
    out_dir: str = "out/denoise"


class UserError(Exception):
    """A mistake in the command line or the input files: one line on stderr, exit code 2."""


# --------------------------------------------------------------------------------------------------
# data


def piecewise_constant(n: int, seg_len: int, rng: np.random.Generator) -> np.ndarray:
    """A clean test signal: ~n/seg_len constant pieces at uniform random levels in [0, 1]."""
    pieces = max(1, n // max(1, seg_len))
    cuts = np.sort(rng.choice(np.arange(1, n), size=min(pieces - 1, n - 1), replace=False))
    lengths = np.diff(np.concatenate([[0], cuts, [n]]))
    return np.repeat(rng.uniform(0.0, 1.0, size=lengths.size), lengths)


def load_signal(path: str) -> np.ndarray:
    try:
        x = np.load(path) if path.endswith(".npy") else np.loadtxt(path)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read signal {path!r}: {e}") from None
    x = np.squeeze(np.asarray(x, dtype=np.float64))  # a (1, n) or (n, 1) array is still a 1-D signal
    if x.ndim != 1:  # a table or an image flattened row by row would be denoised as one long signal
        raise UserError(f"signal {path!r} must be 1-D, got shape {x.shape}")
    if x.size < 2:
        raise UserError(f"signal {path!r} has {x.size} samples; need at least 2")
    return x


def to_gray(img: np.ndarray) -> np.ndarray:
    """Any imread result -> float64 grayscale in [0, 1] (Rec. 709 luma, as skimage.color.rgb2gray)."""
    img = np.asarray(img)
    if np.issubdtype(img.dtype, np.integer):
        img = img / float(np.iinfo(img.dtype).max)
    img = img.astype(np.float64)
    if img.ndim == 3:
        img = img[..., :3] @ np.array([0.2125, 0.7154, 0.0721]) if img.shape[2] >= 3 else img[..., 0]
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D or RGB(A) image, got shape {img.shape}")
    return img


def load_image(path: str) -> tuple[np.ndarray, str]:
    """(grayscale image in [0, 1], its name). Offline defaults only: no downloads here."""
    if path:
        try:
            return to_gray(matplotlib.image.imread(path)), Path(path).name
        except Exception as e:  # noqa: BLE001 - PIL/matplotlib raise many kinds for a bad file
            raise UserError(f"cannot read image {path!r}: {type(e).__name__}: {e}".splitlines()[0]) from None
    if skimage is not None:
        return to_gray(skimage.data.camera()), "cameraman"
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        return to_gray(matplotlib.image.imread(f, format="jpg")), "grace_hopper"


def centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    if size <= 0:
        return img
    r0, c0 = max(0, (img.shape[0] - size) // 2), max(0, (img.shape[1] - size) // 2)
    return img[r0:r0 + size, c0:c0 + size]


def make_data(cfg: Config) -> tuple[np.ndarray, np.ndarray, str]:
    """(clean, noisy, description), the noise drawn from cfg.seed."""
    rng = np.random.default_rng(cfg.seed)
    if cfg.problem == "tv1d":
        if cfg.signal:
            clean, name = load_signal(cfg.signal), Path(cfg.signal).name
        else:
            clean, name = piecewise_constant(cfg.n, cfg.seg_len, rng), f"piecewise constant n={cfg.n}"
    else:
        img, name = load_image(cfg.image)
        clean = centre_crop(img, cfg.crop)
    if not np.all(np.isfinite(clean)):
        raise UserError(f"input {name!r} contains NaN or inf values; give finite data")
    noisy = clean + cfg.sigma * rng.standard_normal(clean.shape)
    return clean, noisy, name


def make_problem(cfg: Config, y: np.ndarray, lam: float) -> prox.Problem:
    if cfg.problem == "tv1d":
        return prox.tv1d_problem(y, lam)
    if cfg.problem == "tv2d":
        return prox.tv2d_problem(y, lam, isotropic=cfg.tv == "iso")
    return prox.l1_problem(y, lam, basis=cfg.basis)


def psnr(x: np.ndarray, clean: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB, the peak being the clean data's range (1 for images in [0, 1])."""
    peak = float(clean.max() - clean.min()) or 1.0
    mse = float(np.mean((x - clean) ** 2))
    return 10.0 * math.log10(peak**2 / mse) if mse > 0 else float("inf")


# --------------------------------------------------------------------------------------------------
# methods. Each returns a Trace; "time" counts only the method's own work, not the monitoring.


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
        if _logged(k + 1, iters):
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
            w = z - (z - prob.y)  # gradient step on 1/2||x - y||^2 with 1/L = 1
            v_new = prob.KT(prox.soft_threshold(prob.K(w), prob.lam))
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
        if not (_logged(k + 1, iters) or (tol > 0 and (k + 1) % check_every == 0)):
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


def _logged(k: int, iters: int) -> bool:
    """Log-spaced iterations (about 25 per decade) plus the last: small JSON, smooth log-log plots."""
    return k <= 10 or k == iters or int(25 * math.log10(k)) != int(25 * math.log10(k - 1))


def reference(prob: prox.Problem, cfg: Config, progress: bool) -> dict:
    """f* and how it is certified: exact solver, or a long fista-restart run with its duality gap."""
    if prob.exact is not None:
        x = prob.exact()
        f = prob.primal(x)
        out = {"f_star": f, "how": "exact", "x": x}
        if prob.name == "tv1d":
            out["kkt_residual"] = kkt_residual_tv1d(x, prob.y, prob.lam)
        return out
    tr = prox_gradient(prob, cfg.ref_iters, accel=True, restart=True, tol=1e-11, progress=progress)
    primal, dual, gap = prob.gap(tr.p)
    # D(p_ref) <= P* <= P(x_ref): take the certified lower bound so every plotted gap is >= 0
    return {"f_star": dual, "how": f"fista-restart {tr.iters[-1]} iters, gap {gap:.3e}", "x": tr.x,
            "f_upper": primal}


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


def run_method(method: str, prob: prox.Problem, cfg: Config, ref: dict, progress: bool) -> Trace:
    if method == "exact":
        return exact_method(prob)
    if method == "chambolle":
        return chambolle_method(prob)
    if method.startswith("subgrad-"):
        radius = float(np.linalg.norm(prob.y - ref["x"]))
        return subgradient_method(prob, method.split("-")[1], cfg.iters, cfg.step, radius, ref["f_star"], progress)
    return prox_gradient(prob, cfg.iters, accel=method != "ista", restart=method == "fista-restart",
                         tol=cfg.tol, progress=progress)


# --------------------------------------------------------------------------------------------------
# the experiment


def lam_sweep(cfg: Config, clean: np.ndarray, y: np.ndarray, lam: float) -> dict:
    """PSNR against lam with the fastest accurate solver: the U shape (under- vs over-smoothing)."""
    lams = [float(v) for v in lam * np.logspace(-1, 1, cfg.lam_sweep)] if cfg.lam_sweep > 0 else []
    out = []
    for lam_i in tqdm(lams, desc="lam sweep", leave=False, disable=cfg.lam_sweep < 3, mininterval=1.0):
        prob = make_problem(cfg, y, lam_i)
        if prob.exact is not None:
            x = prob.exact()
        else:  # tv2d: accurate enough for PSNR (relative gap 1e-5, at most 300 iterations)
            x = prox_gradient(prob, 300, accel=True, restart=True, tol=1e-5).x
        out.append(psnr(x, clean))
    best = int(np.argmax(out)) if out else -1
    return {"lam": lams, "psnr": out, "best_lam": lams[best] if out else None}


def run(cfg: Config, progress: bool = True) -> dict:
    lam = DEFAULT_LAM[cfg.problem] if cfg.lam is None else cfg.lam
    methods = list(METHODS[cfg.problem] if cfg.methods == ["all"] else cfg.methods)
    if cfg.problem == "tv2d" and cfg.tv != "iso" and "chambolle" in methods:
        methods.remove("chambolle")  # skimage's Chambolle is isotropic TV: another objective than ours
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    clean, y, name = make_data(cfg)
    prob = make_problem(cfg, y, lam)
    t0 = time.perf_counter()
    ref = reference(prob, cfg, progress)
    f_star = ref["f_star"]
    print(f"{cfg.problem} on {name} {clean.shape}, lam={lam:g}, sigma={cfg.sigma:g}: f* = {f_star:.10g} "
          f"({ref['how']}, {time.perf_counter() - t0:.2f} s); noisy PSNR {psnr(y, clean):.2f} dB", flush=True)

    results = {"config": dataclasses.asdict(cfg), "problem": cfg.problem, "data": name,
               "shape": list(clean.shape), "lam": lam, "f_star": f_star, "f_star_how": ref["how"],
               "psnr_noisy": psnr(y, clean), "methods": {}}
    if "kkt_residual" in ref:
        results["exact_kkt_residual"] = ref["kkt_residual"]
    traces = []
    for method in methods:
        tr = run_method(method, prob, cfg, ref, progress)
        traces.append(tr)
        final_primal = prob.primal(tr.x)
        rel_gap = rel(tr.gap[-1], tr.primal[-1])
        results["methods"][method] = {
            "iters": tr.iters[-1], "time_s": tr.time[-1], "primal": final_primal,
            "rel_objective_gap": rel(final_primal - f_star, f_star), "rel_duality_gap": rel_gap,
            "psnr": psnr(tr.x, clean),
            "trace": {"iters": tr.iters, "time": tr.time, "primal": tr.primal, "gap": tr.gap},
        }
        r = results["methods"][method]
        print(f"  {method:15s} {r['iters']:6d} it {r['time_s']:8.3f} s  P-f*/f* {r['rel_objective_gap']:9.2e}  "
              f"gap/P {'no dual' if math.isnan(rel_gap) else f'{rel_gap:9.2e}':>9}  PSNR {r['psnr']:6.2f} dB",
              flush=True)

    results["sweep"] = lam_sweep(cfg, clean, y, lam)
    if results["sweep"]["lam"]:
        s = results["sweep"]
        print(f"  lam sweep: best PSNR {max(s['psnr']):.2f} dB at lam={s['best_lam']:.4g}", flush=True)
    write_json(out_dir / "results.json", results)
    plot_convergence(traces, f_star, cfg.problem, out_dir)
    plot_panels(clean, y, traces, out_dir)
    plot_sweep(results["sweep"], lam, cfg.problem, out_dir)
    sweep_png = ", psnr_vs_lam.png" if results["sweep"]["lam"] else ""  # --lam-sweep 0 writes none
    print(f"wrote {out_dir}/results.json and convergence.png, panels.png{sweep_png}")
    return results


def rel(a: float, b: float) -> float:
    """a / |b|, nan-safe and without ZeroDivisionError (lam = 0 gives f* = 0)."""
    return a / abs(b) if b != 0 else (0.0 if a == 0 else math.inf)


def write_json(path: Path, obj: dict):
    """Atomic: a reader never sees half a file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float, allow_nan=True))
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------
# plots


def plot_convergence(traces: list, f_star: float, problem: str, out_dir: Path):
    """Objective gap and duality gap against iteration (log-log, with rate slopes) and wall time."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    for i, tr in enumerate(traces):
        if tr.method == "exact":  # it *is* f*: mark its run time instead of a point at gap 1e-16
            for ax in axes[:, 1]:
                ax.axvline(tr.time[0], color=f"C{i}", ls="--", label=f"exact: {tr.time[0]:.3g} s")
            continue
        it = np.asarray(tr.iters, dtype=float)
        obj = np.maximum((np.asarray(tr.primal) - f_star) / abs(f_star), 1e-16)  # exact in 1 step: at 1e-16
        gap = np.asarray(tr.gap) / np.abs(np.asarray(tr.primal))
        style = dict(color=f"C{i}", marker="o" if len(it) == 1 else None, ms=5)
        axes[0, 0].loglog(it, obj, label=tr.method, **style)
        axes[0, 1].loglog(np.maximum(tr.time, 1e-6), obj, label=tr.method, **style)
        if not np.all(np.isnan(gap)):
            axes[1, 0].loglog(it, np.maximum(gap, 1e-16), label=tr.method, **style)
            axes[1, 1].loglog(np.maximum(tr.time, 1e-6), np.maximum(gap, 1e-16), label=tr.method, **style)
    long = [tr for tr in traces if len(tr.iters) > 1 and tr.method != "exact"]
    if long:
        k = np.logspace(0, math.log10(max(tr.iters[-1] for tr in long)), 50)
        top_obj = max(max(np.asarray(tr.primal) - f_star) for tr in long) / abs(f_star)
        gaps = [g for tr in long for g in np.asarray(tr.gap) / np.abs(np.asarray(tr.primal)) if np.isfinite(g)]
        # each panel's slopes start at its own largest value (the relative duality gap starts near 1,
        # the objective gap near 20: one anchor put the gap panel's slopes far above its curves)
        for ax, top in ((axes[0, 0], top_obj), (axes[1, 0], max(gaps, default=np.nan))):
            if not np.isfinite(top) or top <= 0:
                continue
            for p, lbl in ((0.5, "1/sqrt(k)"), (1, "1/k"), (2, "1/k^2")):
                ax.loglog(k, top * k**-p, "k:", lw=0.8)
                ax.text(k[-1], top * k[-1] ** -p, lbl, fontsize=8)
    titles = ("(P(x_k) - f*) / f*  vs iteration", "(P(x_k) - f*) / f*  vs solver time [s]",
              "duality gap / P  vs iteration", "duality gap / P  vs solver time [s]")
    for ax, title, xlabel in zip(axes.flat, titles, ("iteration k", "solver time [s]") * 2):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    axes[0, 1].legend(fontsize=8)
    fig.suptitle(f"{problem}: subgradient = best so far; ista/fista on the dual (TV) or the primal (l1)")
    fig.tight_layout()
    fig.savefig(out_dir / "convergence.png", dpi=90)
    plt.close(fig)


def plot_panels(clean: np.ndarray, y: np.ndarray, traces: list, out_dir: Path):
    panels = [("clean", clean), (f"noisy {psnr(y, clean):.1f} dB", y)]
    panels += [(f"{tr.method} {psnr(tr.x, clean):.1f} dB", tr.x) for tr in traces]
    if clean.ndim == 1:
        w = slice(0, min(clean.size, 2000))
        fig, axes = plt.subplots(len(panels) - 1, 1, figsize=(10, 1.8 * (len(panels) - 1)), sharex=True)
        axes = np.atleast_1d(axes)
        axes[0].plot(y[w], color="0.7", lw=0.5, label="noisy")
        axes[0].plot(clean[w], "k", lw=1, label="clean")
        axes[0].legend(fontsize=8, loc="upper right")
        axes[0].set_title(f"{panels[1][0]}; samples 0-{w.stop} of {clean.size}; below: each method (red) "
                          f"over the clean signal (black)", fontsize=9)
        for ax, (title, x) in zip(axes[1:], panels[2:]):
            ax.plot(clean[w], "k", lw=0.8)
            ax.plot(x[w], "C3", lw=0.8)
            ax.set_title(title, fontsize=9)
        axes[-1].set_xlabel("sample index")
    else:
        cols = min(4, len(panels))
        rows = -(-len(panels) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows))
        for ax in np.ravel(axes):
            ax.axis("off")
        for ax, (title, x) in zip(np.ravel(axes), panels):
            ax.imshow(np.clip(x, 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "panels.png", dpi=90)
    plt.close(fig)


def plot_sweep(sweep: dict, lam: float, problem: str, out_dir: Path):
    if not sweep["lam"]:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogx(sweep["lam"], sweep["psnr"], "o-")
    ax.axvline(lam, color="0.6", ls="--", label=f"lam = {lam:g}")
    ax.set_xlabel("lam")
    ax.set_ylabel("PSNR [dB]")
    ax.set_title(f"{problem}: PSNR vs lam")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "psnr_vs_lam.png", dpi=90)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------
# benchmark: the figures quoted in DENOISING.md


BENCH_ITERS_1D = 3000  # fista-restart budget for relative gap 1e-8 at n = 1e6


def bench(cfg: Config) -> dict:
    """tv1d at n = 1e6 (Condat's time, KKT, fista-restart to relative gap 1e-8); tv2d on the default image
    at lam = 0.1 against skimage's denoise_tv_chambolle defaults. Writes OUT/bench.json."""
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}",
           "loadavg_start": os.getloadavg(), "tv1d": {}, "tv2d": {}}
    rng = np.random.default_rng(cfg.seed)
    n = 1_000_000
    clean = piecewise_constant(n, cfg.seg_len, rng)
    y = clean + cfg.sigma * rng.standard_normal(n)
    for lam in (0.3, 1.0):
        wall, cpu = [], []  # wall time suffers from the other jobs on the machine; CPU time much less
        for _ in range(3):
            t0, c0 = time.perf_counter(), time.process_time()
            x = tv.tv1d_denoise(y, lam)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        prob = prox.tv1d_problem(y, lam)
        f_star = prob.primal(x)
        row = {"condat_wall_s": wall, "condat_cpu_s": cpu, "kkt": kkt_residual_tv1d(x, y, lam),
               "segments": int(np.count_nonzero(np.diff(x))) + 1, "psnr": psnr(x, clean)}
        print(f"tv1d n=1e6 lam={lam}: Condat best of 3 {min(wall):.3f} s wall, {min(cpu):.3f} s CPU; "
              f"KKT {row['kkt']}", flush=True)
        c0 = time.process_time()
        tr = prox_gradient(prob, BENCH_ITERS_1D, accel=True, restart=True, tol=1e-8, progress=True)
        row["fista_restart"] = {"iters": tr.iters[-1], "solver_wall_s": tr.time[-1],
                                "cpu_s_with_monitoring": time.process_time() - c0,
                                "rel_gap": tr.gap[-1] / tr.primal[-1], "rel_obj_gap": (tr.primal[-1] - f_star) / f_star}
        print(f"  fista-restart (dual): {row['fista_restart']}", flush=True)
        out["tv1d"][str(lam)] = row
        write_json(out_dir / "bench.json", out)

    img, name = load_image(cfg.image)
    y = img + cfg.sigma * np.random.default_rng(cfg.seed).standard_normal(img.shape)
    lam = 0.1
    prob = prox.tv2d_problem(y, lam, isotropic=True)
    ch = min((chambolle_method(prob) for _ in range(3)), key=lambda tr: tr.time[0])  # best of 3
    ref = prox_gradient(prob, cfg.ref_iters, accel=True, restart=True, tol=1e-11, progress=True)
    f_lo = prob.gap(ref.p)[1]
    row = {"image": name, "shape": list(img.shape), "sigma": cfg.sigma, "lam": lam, "f_star_lower": f_lo,
           "f_star_upper": ref.primal[-1], "ref_iters": ref.iters[-1],
           "chambolle": {"time_s": ch.time[0], "primal": ch.primal[0], "rel_excess": (ch.primal[0] - f_lo) / f_lo,
                         "psnr": psnr(ch.x, img)}}
    for method in ("fista", "fista-restart"):
        tr = prox_gradient(prob, 2000, accel=True, restart=method == "fista-restart", tol=1e-6, progress=True)
        beat = next((i for i, f in enumerate(tr.primal) if f < ch.primal[0]), None)
        # the first logged iteration below Chambolle's objective (logging is ~25 points per decade)
        row[method] = {"iters_to_beat_chambolle": tr.iters[beat] if beat is not None else None,
                       "time_to_beat_chambolle_s": tr.time[beat] if beat is not None else None,
                       "iters_to_rel_gap_1e-6": tr.iters[-1], "time_s": tr.time[-1],
                       "rel_excess": (tr.primal[-1] - f_lo) / f_lo, "psnr": psnr(tr.x, img)}
    print(f"tv2d {name} {img.shape} sigma={cfg.sigma} lam={lam}: {json.dumps(row, indent=1)}", flush=True)
    out["tv2d"] = row
    out["loadavg_end"] = os.getloadavg()
    write_json(out_dir / "bench.json", out)
    return out


# --------------------------------------------------------------------------------------------------
# command line


def parse_args(argv=None) -> Config:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    comments = field_help(Config)
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if f.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", help=comments.get(f.name, ""))
        elif f.name == "methods":
            parser.add_argument(flag, nargs="+", default=default,
                                help="methods to run (space- or comma-separated), or 'all' (per problem: " +
                                     "; ".join(f"{p}: {' '.join(m)}" for p, m in METHODS.items()) + ")")
        else:
            kind = {"int": int, "float": float, "Optional[float]": float, "str": str}[str(f.type)]
            parser.add_argument(flag, type=kind, default=default,
                                help=f"{comments.get(f.name, '')} (default {default!r})")
    cfg = Config(**vars(parser.parse_args(argv)))
    cfg.methods = [m for arg in cfg.methods for m in arg.split(",") if m]  # train.py's style works here too
    if not cfg.methods:
        raise UserError(f"--methods names no method; choose from {', '.join(METHODS.get(cfg.problem, ()))} or all")
    if cfg.problem not in PROBLEMS:
        raise UserError(f"unknown --problem {cfg.problem!r}; choose one of {', '.join(PROBLEMS)}")
    if cfg.tv not in ("iso", "aniso"):
        raise UserError(f"unknown --tv {cfg.tv!r}; choose iso or aniso")
    if cfg.basis not in ("dct", "haar"):
        raise UserError(f"unknown --basis {cfg.basis!r}; choose dct or haar")
    if cfg.lam is not None and not cfg.lam >= 0:
        raise UserError(f"--lam must be a number >= 0, got {cfg.lam:g}")
    if cfg.sigma < 0 or not math.isfinite(cfg.sigma):
        raise UserError(f"--sigma must be a finite number >= 0, got {cfg.sigma:g}")
    if cfg.n < 2 or cfg.iters < 1:
        raise UserError(f"--n must be >= 2 and --iters >= 1, got n={cfg.n}, iters={cfg.iters}")
    if cfg.ref_iters < 1:
        raise UserError(f"--ref-iters must be >= 1, got {cfg.ref_iters}")
    for flag, value, low in (("--seg-len", cfg.seg_len, 1), ("--crop", cfg.crop, 0), ("--lam-sweep", cfg.lam_sweep, 0)):
        if value < low:
            raise UserError(f"{flag} must be >= {low}, got {value}")
    if not cfg.step > 0:  # a negative scale would climb the objective
        raise UserError(f"--step must be > 0, got {cfg.step:g}")
    if cfg.methods != ["all"]:
        bad = [m for m in cfg.methods if m not in METHODS[cfg.problem]]
        if bad:
            raise UserError(f"unknown method {bad[0]!r} for --problem {cfg.problem}; "
                            f"choose from {', '.join(METHODS[cfg.problem])} or all")
        if "chambolle" in cfg.methods and cfg.tv != "iso":
            raise UserError("method chambolle (skimage's denoise_tv_chambolle) solves the isotropic "
                            "problem only; use --tv iso")
    return cfg


def main(argv=None):
    try:
        cfg = parse_args(argv)
        if cfg.bench:
            bench(cfg)
        else:
            run(cfg)
    except UserError as e:
        print(f"denoise.py: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
