"""Denoising with first-order methods: subgradient, proximal gradient (ISTA) and accelerated (FISTA).

    python large_scale_optimization/denoise.py --problem tv1d --n 100000 --lam 1.0
    python large_scale_optimization/denoise.py --problem tv2d --tv iso --lam 0.1      # cameraman
    python large_scale_optimization/denoise.py --problem l1 --basis haar --image my.png
    python large_scale_optimization/denoise.py --bench                                 # figures for DENOISING.md

Problems (prox.py): min_x 1/2||x - y||^2 + lam R(K x) for 1-D TV, 2-D TV (isotropic / anisotropic) and l1
sparsity in an orthonormal DCT / Haar basis. Methods (first_order.py):
  subgrad-sqrt / subgrad-const / subgrad-polyak   primal subgradient steps of length s R/sqrt(k+1), s R/10
      (R = ||y - x*||), or Polyak's (f - f*)/||g||^2
  ista / fista / fista-restart   proximal gradient on the DUAL for TV (Beck & Teboulle's GP / FGP), on the
      PRIMAL for l1 (the prox is soft thresholding); restart: O'Donoghue & Candes' gradient scheme
  exact      Condat's direct algorithm (tv1d, tv.py) or the closed-form soft threshold (l1)
  chambolle  scikit-image's denoise_tv_chambolle with its defaults (tv2d --tv iso; weight = lam)
f* comes from the exact solver, or for tv2d from a long fista-restart run whose duality gap certifies it.
Writes OUT/results.json, convergence.png, panels.png and psnr_vs_lam.png (OUT = --out-dir).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

import prox
from cli import UserError, check_positive, knob, parse_config, run_main
from denoise_bench import run_benchmark
from denoise_data import Source, make_data, psnr
from denoise_plots import plot_convergence, plot_panels, plot_sweep
from files import OutDirLock, write_json
from first_order import PROX_GRADIENT, SUBGRADIENT, MethodOptions, prox_gradient, reference, run_method
from provenance import provenance

PROBLEMS = ("tv1d", "tv2d", "l1")
OUT_DIR = Path(__file__).resolve().parent / "out" / "denoise"  # the default --out-dir, wherever the run starts
PROBLEM_METHODS = {
    "tv1d": ("exact", *SUBGRADIENT, *PROX_GRADIENT),
    "tv2d": (*SUBGRADIENT, *PROX_GRADIENT, "chambolle"),
    "l1": ("exact", *SUBGRADIENT, *PROX_GRADIENT),
}
DEFAULT_LAM = {"tv1d": 1.0, "tv2d": 0.1, "l1": 0.2}


@dataclass
class DenoiseConfig:
    problem: str = knob("tv1d", "tv1d | tv2d | l1")
    n: int = knob(100_000, "tv1d signal length", lo=2, hi=10**8)  # a few arrays of n float64 each
    seg_len: int = knob(500, "tv1d: mean length of the constant pieces of the clean signal", lo=1)
    signal: str = knob("", "tv1d: a clean 1-D signal (.npy or text) instead of the generated one")
    image: str = knob("", "tv2d / l1: a PNG/JPG; empty: skimage's cameraman, else matplotlib's grace_hopper")
    crop: int = knob(0, "centre crop to crop x crop pixels (0: whole image)", lo=0)
    tv: str = knob("iso", "tv2d: iso (per-pixel l2 of the gradient) | aniso (l1)")
    basis: str = knob("dct", "l1: dct | haar")
    lam: float | None = knob(None, "regularisation weight >= 0; unset: tv1d 1.0, tv2d 0.1, l1 0.2",
                             lo=0, hi=1e100)  # lam * K^T p must not overflow (1e308 gave inf and a PSNR of log 0)
    sigma: float = knob(0.1, "std of the additive Gaussian noise", lo=0)
    seed: int = knob(0, "seed of the noise (and of the generated signal)", lo=0)
    methods: list[str] = knob(["all"], "methods to run (space- or comma-separated), or all (per problem: "
                              + "; ".join(f"{p}: {' '.join(m)}" for p, m in PROBLEM_METHODS.items()) + ")",
                              nargs="+")
    max_iters: int = knob(1000, "iteration budget per method", lo=1)
    tol: float = knob(1e-9, "stop a method when its duality gap <= tol * |P(x)|")
    step: float = knob(0.1, "subgradient step scale s: lengths s*R/sqrt(k+1) (sqrt), s*R/10 (const), R=||y-x*||")
    ref_max_iters: int = knob(3000, "tv2d: fista-restart iterations (at most) for the certified f*", lo=1)
    lam_sweep: int = knob(9, "PSNR-vs-lam sweep points (0: skip)", lo=0, hi=1000)
    bench: bool = knob(False, "run the benchmark (n = 1e6 tv1d, cameraman tv2d vs skimage) instead")
    threads: int = knob(1, "BLAS threads (threadpoolctl); the dot products here are memory-bound", lo=1, hi=1024)
    out_dir: str | None = knob(None, "results.json and the PNG plots (default: out/denoise beside this script)")


def check_config(cfg: DenoiseConfig) -> list[str]:
    """The methods to run (comma-separated names split, all expanded); a UserError for a bad setting."""
    methods = [m for arg in cfg.methods for m in arg.split(",") if m]
    if not methods:
        raise UserError(f"--methods names no method; choose from {', '.join(PROBLEM_METHODS.get(cfg.problem, ()))} "
                        f"or all")
    if cfg.problem not in PROBLEMS:
        raise UserError(f"unknown --problem {cfg.problem!r}; choose one of {', '.join(PROBLEMS)}")
    if cfg.tv not in ("iso", "aniso"):
        raise UserError(f"unknown --tv {cfg.tv!r}; choose iso or aniso")
    if cfg.basis not in ("dct", "haar"):
        raise UserError(f"unknown --basis {cfg.basis!r}; choose dct or haar")
    check_positive(cfg, "step")  # a negative scale would climb the objective
    if methods == ["all"]:  # skimage's Chambolle is isotropic TV: another objective than ours for aniso
        return [m for m in PROBLEM_METHODS[cfg.problem] if not (m == "chambolle" and cfg.tv != "iso")]
    bad = [m for m in methods if m not in PROBLEM_METHODS[cfg.problem]]
    if bad:
        raise UserError(f"unknown method {bad[0]!r} for --problem {cfg.problem}; "
                        f"choose from {', '.join(PROBLEM_METHODS[cfg.problem])} or all")
    if "chambolle" in methods and cfg.tv != "iso":
        raise UserError("method chambolle (skimage's denoise_tv_chambolle) solves the isotropic "
                        "problem only; use --tv iso")
    return methods


def source(cfg: DenoiseConfig) -> Source:
    return Source(one_d=cfg.problem == "tv1d", signal=cfg.signal, n=cfg.n, seg_len=cfg.seg_len, image=cfg.image,
                  crop=cfg.crop, sigma=cfg.sigma, seed=cfg.seed)


def make_problem(cfg: DenoiseConfig, y: np.ndarray, lam: float) -> prox.Problem:
    if cfg.problem == "tv1d":
        return prox.tv1d_problem(y, lam)
    if cfg.problem == "tv2d":
        return prox.tv2d_problem(y, lam, isotropic=cfg.tv == "iso")
    return prox.l1_problem(y, lam, basis=cfg.basis)


def rel(a: float, b: float) -> float:
    """a / |b|, nan-safe and without ZeroDivisionError (lam = 0 gives f* = 0)."""
    return a / abs(b) if b != 0 else (0.0 if a == 0 else math.inf)


def gap_text(v: float) -> str:
    """A relative gap for the printed table: 'no dual' for nan, 0 for a value a few ulps below 0 (the exact
    solver's duality gap of -9.8e-14 is rounding, not a negative gap), else 3 digits. A gap clearly below 0
    (an f* that is not a lower bound) keeps its sign."""
    if math.isnan(v):
        return "no dual"
    return "0" if -1e-10 < v <= 0 else f"{v:.2e}"


def summarise(tr, prob: prox.Problem, f_star: float, clean: np.ndarray) -> dict:
    """One method's entry of results.json, also printed as one line."""
    final_primal = prob.primal(tr.x)
    rel_gap = rel(tr.gap[-1], tr.primal[-1])
    r = {"iters": tr.iters[-1], "time_s": tr.time[-1], "primal": final_primal,
         "rel_objective_gap": rel(final_primal - f_star, f_star), "rel_duality_gap": rel_gap,
         "psnr": psnr(tr.x, clean),
         "trace": {"iters": tr.iters, "time": tr.time, "primal": tr.primal, "gap": tr.gap}}
    print(f"  {tr.method:15s} {r['iters']:6d} it {r['time_s']:8.3f} s  P-f*/f* {gap_text(r['rel_objective_gap']):>9}  "
          f"gap/P {gap_text(rel_gap):>9}  PSNR {r['psnr']:6.2f} dB", flush=True)
    return r


def lam_sweep(cfg: DenoiseConfig, clean: np.ndarray, y: np.ndarray, lam: float) -> dict:
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



def run(cfg: DenoiseConfig, methods: list[str], progress: bool = True, made: dict | None = None) -> dict:
    """Every method on one problem, the lam sweep, then results.json (opening with `made`, the provenance
    record) and the three PNGs in cfg.out_dir."""
    lam = DEFAULT_LAM[cfg.problem] if cfg.lam is None else cfg.lam
    out_dir = Path(cfg.out_dir)
    clean, y, name = make_data(source(cfg))
    prob = make_problem(cfg, y, lam)
    t0 = time.perf_counter()
    ref = reference(prob, cfg.ref_max_iters, progress)
    f_star = ref["f_star"]
    print(f"{cfg.problem} on {name} {clean.shape}, lam={lam:g}, sigma={cfg.sigma:g}: f* = {f_star:.10g} "
          f"({ref['how']}, {time.perf_counter() - t0:.2f} s); noisy PSNR {psnr(y, clean):.2f} dB", flush=True)

    results = {**(made or {}), "config": dataclasses.asdict(cfg), "problem": cfg.problem, "data": name,
               "shape": list(clean.shape), "lam": lam, "f_star": f_star, "f_star_how": ref["how"],
               "psnr_noisy": psnr(y, clean), "methods": {}}
    if "kkt_residual" in ref:
        results["exact_kkt_residual"] = ref["kkt_residual"]
    opts = MethodOptions(max_iters=cfg.max_iters, step=cfg.step, tol=cfg.tol, progress=progress)
    traces = []
    for method in methods:
        traces.append(run_method(method, prob, ref, opts))
        results["methods"][method] = summarise(traces[-1], prob, f_star, clean)

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


def main(argv=None):
    cfg = parse_config(DenoiseConfig, argv, prog="denoise.py", description=__doc__)
    cfg = dataclasses.replace(cfg, out_dir=cfg.out_dir or str(OUT_DIR))
    methods = check_config(cfg)
    with OutDirLock(cfg.out_dir), threadpool_limits(cfg.threads):
        made = provenance("denoise.py", argv, cfg.threads)
        if cfg.bench:
            run_benchmark(source(cfg), cfg.ref_max_iters, Path(cfg.out_dir), made)
        else:
            run(cfg, methods, made=made)


if __name__ == "__main__":
    run_main(main)
