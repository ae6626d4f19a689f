"""Compare first- and second-order solvers on L2-regularised multinomial logistic regression.

    python large_scale_optimization/train.py --dataset digits
    python large_scale_optimization/train.py --dataset mnist --data-dir DIR \\
        --methods gd,sgd,minibatch_sgd,minibatch_gd,svrg,newton_cg --passes 15

The methods and their cost accounting are in solvers.py, the objective in model.py, the data in data.py.
f* comes from Newton run to ||grad f|| <= --newton-tol (explicit Hessian when K*D <= 3000, else
preconditioned Newton-CG). Writes OUT/results.json (every record of every method), a table on stdout
and four PNG plots (OUT = --out-dir).
"""
from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from threadpoolctl import threadpool_limits

import data
import model
from cli import UserError, check_positive, knob, parse_config, run_main
from files import OutDirLock, write_json, write_png
from provenance import provenance
from solvers import (METHODS, SECOND_ORDER, SOLVERS, Diverged, LogisticProblem, SolverOptions, Tracker,
                     solve_reference)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)


OUT_DIR = Path(__file__).resolve().parent / "out" / "lso_logreg"  # the default --out-dir, wherever the run starts
MAX_SYNTHETIC = 1e8  # numbers in the synthetic feature matrix (0.8 GB)


@dataclass
class TrainConfig:
    dataset: str = knob("digits", "digits | mnist | synthetic")
    data_dir: str | None = knob(None, "folder of the MNIST IDX .gz files (downloaded there if missing)")
    data: str | None = knob(None, "your own .csv / .npz (first column the label); overrides --dataset")
    methods: str = knob(",".join(METHODS), "comma-separated, any of " + ", ".join(METHODS))
    lam: float = knob(1e-4, "L2 strength (> 0); sklearn's C = 1 / (n lam)", lo=0, hi=1e4)
    passes: float = knob(15.0, "budget of effective passes for the first-order methods")
    seed: int = knob(0, "stochastic methods, subsampled Hessian, synthetic data (not the digits / file split)", lo=0)
    out_dir: str | None = knob(None, "results.json and the PNG plots (default: out/lso_logreg beside this script)")
    batch_size: int = knob(128, "minibatch_sgd / minibatch_gd", lo=1)
    svrg_inner: float = knob(2.0, "inner loop length m = svrg_inner * n (> 0)", lo=0, hi=1000)
    svrg_step: float = knob(1.0, "SVRG step eta = svrg_step / L_max (0.1, the theory-safe choice, is far slower)")
    svrg_snapshot: str = knob("last", "last (Johnson & Zhang's option I) | average (of the inner iterates)")
    vr_batch: int = knob(16, "saga / lsvrg: rows per step (one BLAS product)", lo=1)
    vr_step: float = knob(8.0, "saga / lsvrg: eta = vr_step / L(b), L(b) the minibatch smoothness (theory: 1/4, 1/6)")
    newton_tol: float = knob(1e-10, "stop Newton / Newton-CG (and the f* solve) at ||grad f|| <= this", lo=0)
    newton_max_iters: int = knob(50, "Newton / Newton-CG iteration cap (0 would make f* = f(0))", lo=1)
    precondition: str = knob("auto", "newton_cg: auto | subsampled | none")
    switch_after: int = knob(10, "newton_cg auto: CG iterations that trigger the subsampled Hessian")
    hvp_float32: bool = knob(True, "newton_cg: Hessian-vector products on a float32 copy of X")
    precond_size: int = knob(6000, "rows drawn for newton_cg's subsampled Hessian", lo=1)
    threads: int = knob(1, "BLAS threads (threadpoolctl); 1 is often faster than 2 on a 2-core machine", lo=1, hi=1024)
    n: int = knob(5000, "synthetic: samples")
    d: int = knob(50, "synthetic: features")
    classes: int = knob(5, "synthetic: K", lo=2, hi=1000)
    cond: float = knob(100.0, "synthetic: condition number of the feature covariance")
    plots: bool = knob(True, "write the four PNGs")


def check_config(cfg: TrainConfig) -> list[str]:
    """The methods to run; a UserError for any setting out of range."""
    methods = [m.strip() for m in cfg.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise UserError(f"unknown method {bad[0] if bad else cfg.methods!r}; allowed: {', '.join(METHODS)}")
    if not cfg.data and cfg.dataset not in data.DATASETS:
        raise UserError(f"unknown dataset {cfg.dataset!r}; allowed: {', '.join(data.DATASETS)} "
                        f"(or --data FILE.csv/.npz)")
    # lam > 0: Newton, and the f* it computes, need a strongly convex objective
    check_positive(cfg, "lam", "passes", "svrg_inner", "svrg_step", "vr_step")
    if not cfg.data and cfg.dataset == "synthetic" and (cfg.n * 5 // 4) * (cfg.d + 1) > MAX_SYNTHETIC:
        raise UserError(f"--n {cfg.n} x --d {cfg.d} is too large: the synthetic features (with a quarter more for "
                        f"the test split) may hold at most {MAX_SYNTHETIC:g} numbers")
    if cfg.precondition not in ("auto", "subsampled", "none"):
        raise UserError(f"unknown --precondition {cfg.precondition!r}; allowed: auto, subsampled, none")
    if cfg.svrg_snapshot not in ("last", "average"):
        raise UserError(f"unknown --svrg-snapshot {cfg.svrg_snapshot!r}; allowed: last, average")
    return methods


def solver_options(cfg: TrainConfig) -> SolverOptions:
    """The solvers' own settings, taken from the command line."""
    names = [f.name for f in dataclasses.fields(SolverOptions)]
    return SolverOptions(**{name: getattr(cfg, name) for name in names})


def load(cfg: TrainConfig) -> LogisticProblem:
    dataset = data.load_dataset(cfg.dataset, cfg.data_dir, cfg.data, seed=cfg.seed, n=cfg.n, d=cfg.d,
                                K=cfg.classes, cond=cfg.cond)
    return LogisticProblem.from_dataset(dataset, cfg.lam)


def summary_table(results, f_star) -> str:
    lines = [f"{'method':>13} {'passes':>9} {'time s':>8} {'f - f*':>10} {'rel gap':>9} {'|grad f|':>10} "
             f"{'train acc':>9} {'test acc':>8}"]
    for name, recs in results.items():
        r = recs[-1]
        gap = max(r["gap"], 0.0)  # f a few ulps below f* (Newton's -1.4e-17 on digits) is rounding: print 0
        lines.append(f"{name:>13} {r['passes']:9.1f} {r['time']:8.2f} {gap:10.3e} "
                     f"{gap / abs(f_star):9.2e} {r['grad_norm']:10.3e} {r['train_acc']:9.4f} "
                     f"{r['test_acc']:8.4f}")
    return "\n".join(lines)


FIGURES = {  # file: x key, y key, log y, log x, methods (None: all), x label, y label
    "gap_vs_passes.png": ("passes", "gap", True, True, None, "effective passes (log)", "f - f*"),
    "gap_vs_time.png": ("time", "gap", True, True, None, "wall time, s (log)", "f - f*"),
    "newton_grad_norm.png": ("iter", "grad_norm", True, False, SECOND_ORDER, "Newton iteration", "||grad f||"),
    "test_acc_vs_passes.png": ("passes", "test_acc", False, True, None, "effective passes (log)", "test accuracy"),
}
FIRST_ORDER = tuple(m for m in METHODS if m not in SECOND_ORDER)


def curves(ax, results, x_key, y_key, ylog=True, xlog=False, methods=None):
    """One line per method (those in `methods`, or all), each in its colour of METHODS' order."""
    for name, recs in results.items():
        if methods and name not in methods:
            continue
        # x = 0 (the start) has no place on a log axis; left in, matplotlib clips it far to the left and
        # draws a flat line from the plot's edge to the first real point, as if the method sat there
        recs = [r for r in recs if r[x_key] > 0] if xlog else recs
        xs = [r[x_key] for r in recs]
        ys = [max(r[y_key], 1e-16) if ylog else r[y_key] for r in recs]  # f - f* may round to <= 0
        ax.plot(xs, ys, marker="." if len(recs) < 60 else None, label=name, color=f"C{list(results).index(name)}")
    ax.set_yscale("log" if ylog else "linear")
    if xlog:
        ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def plot(results, f_star, out_dir: Path, title: str):
    """The four PNGs of FIGURES. gap_vs_passes.png gets a second panel with the first-order methods alone
    when Newton ran too: its f - f* of ~1e-16 stretches the shared axis until they cannot be told apart."""
    for fname, (xk, yk, ylog, xlog, methods, xl, yl) in FIGURES.items():
        if methods and not any(m in results for m in methods):
            continue
        panels = [(methods, title)]
        if (fname == "gap_vs_passes.png" and any(m in results for m in SECOND_ORDER)
                and any(m in results for m in FIRST_ORDER)):
            panels.append((FIRST_ORDER, "first-order methods only"))
        fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.2), squeeze=False)
        for ax, (only, panel_title) in zip(axes[0], panels):
            curves(ax, results, xk, yk, ylog, xlog, only)
            ax.set_xlabel(xl)
            ax.set_ylabel(yl)
            ax.set_title(panel_title, fontsize=9)
        fig.tight_layout()
        write_png(out_dir / fname, fig, dpi=110)
        plt.close(fig)


def run(cfg: TrainConfig, methods: list[str]) -> dict:
    prob = load(cfg)
    K, D = prob.shape
    name = Path(cfg.data).name if cfg.data else cfg.dataset
    print(f"{name}: n={prob.n} test={len(prob.y_test)} D={D} (with bias) K={K} lam={cfg.lam:g}  "
          f"L={prob.L:.4g} L_max={prob.L_max:.4g}", flush=True)
    t0 = time.perf_counter()
    print("f* solve (its f-f* column shows f until f* is known):", flush=True)
    opts = solver_options(cfg)
    W_star, prob.f_star, g_star, ref_method, ref_records = solve_reference(prob, opts,
                                                                           np.random.default_rng(cfg.seed))
    t_ref = time.perf_counter() - t0
    print(f"f* = {prob.f_star:.12f}  (||grad f|| = {g_star:.2e}, {t_ref:.1f}s)  "
          f"test acc at W* = {model.accuracy(W_star, prob.X_test, prob.y_test):.4f}", flush=True)
    if not g_star <= cfg.newton_tol:  # e.g. a small --newton-max-iters: the gaps below are not gaps to f*
        print(f"warning: the f* solve stopped at ||grad f|| = {g_star:.2e} > --newton-tol {cfg.newton_tol:g} "
              f"(--newton-max-iters {cfg.newton_max_iters}); f - f* is measured from that point", file=sys.stderr)
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
        SOLVERS[m](prob, W0, opts, tr, rng)
        results[m] = tr.records
    return dict(config=dataclasses.asdict(cfg), dataset=name, n=prob.n, D=D, K=K, L=prob.L, L_max=prob.L_max,
                f_star=prob.f_star, f_star_grad_norm=g_star, f_star_seconds=t_ref, methods=results)


def main(argv=None):
    cfg = parse_config(TrainConfig, argv, prog="train.py", description=__doc__)
    methods = check_config(cfg)
    out_dir = Path(cfg.out_dir or OUT_DIR)
    with OutDirLock(out_dir), threadpool_limits(cfg.threads):
        try:
            made = provenance("train.py", argv, cfg.threads)  # before the run: its load average and date
            with np.errstate(all="ignore"):  # a diverging method overflows; Diverged reports it in one line
                out = {**made, **run(cfg, methods)}
        except Diverged as e:
            print(f"train.py: error: {e} (a step too long for this problem?); nothing written to {out_dir}",
                  file=sys.stderr)
            return 3
        write_json(out_dir / "results.json", out)
        print(summary_table(out["methods"], out["f_star"]))
        if cfg.plots:
            plot(out["methods"], out["f_star"], out_dir, f"{out['dataset']}, lam={cfg.lam:g}, f*={out['f_star']:.6f}")
    print(f"wrote {out_dir / 'results.json'}" + (" and PNG plots" if cfg.plots else ""))


if __name__ == "__main__":
    run_main(main)
