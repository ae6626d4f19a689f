"""CPU time to relative gaps 1e-2, 1e-3, 1e-4 on MNIST: our first-order methods against scikit-learn's saga
and sag, in one process, on one BLAS thread.

    OMP_NUM_THREADS=1 python large_scale_optimization/bench_first_order.py --data-dir DIR

Each contender starts from W = 0. The relative gap is (f - f*) / f*, with f* from solvers.solve_reference
(Newton-CG to ||grad f|| <= 1e-10). Times are process CPU seconds (time.process_time), so the other jobs on a
shared machine slow a run down less than they would wall time; the monitoring after each pass (f, grad f,
accuracies) is not timed, and scikit-learn does none.

Ours: one record per effective pass (n sample gradients), timed by the Tracker. A contender is a method
name, optionally with settings: `saga+vr_step=0.25+vr_batch=32` (any SolverOptions field). How passes are
counted: saga 1 for its table at W0, then 1 per epoch; lsvrg b per step plus 1 per snapshot (2 per epoch in
expectation); svrg 1 per snapshot plus 1 per n inner steps; sgd 1 per epoch.
scikit-learn (`sklearn_saga`, `sklearn_sag`): LogisticRegression(C = 1/(n lam), fit_intercept=False, tol=0)
on the same bias-augmented X, i.e. our f. It reports no iterates, so it is fitted from scratch for each
epoch count of --epochs (max_iter = epochs), stopping after the first fit that reaches the smallest target:
its time to a target is that of the first fit that reached it, and the fit before (which did not) gives a
lower bound (`cpu_s_lower`). One epoch is n sample gradients, like one pass.
--repeats R runs the contenders R times, interleaved (A B C, then C B A, ...); the summary takes medians.

Writes OUT/first_order_bench.json (command, machine, date, threads, f*, every curve) and
OUT/first_order_bench.png (relative gap against CPU time and against passes); OUT = --out-dir.
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

import data
import model
from cli import UserError, check_positive, check_ranges, knob, parse_config, run_main, to_bool
from files import OutDirLock, write_json, write_png
from provenance import provenance
from solvers import METHODS, SECOND_ORDER, SOLVERS, LogisticProblem, SolverOptions, Tracker, solve_reference

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

SKLEARN = ("sklearn_saga", "sklearn_sag")
OUT_DIR = Path(__file__).resolve().parent / "out" / "first_order_bench"  # the default --out-dir, from any folder
FIRST_ORDER = tuple(m for m in METHODS if m not in SECOND_ORDER)


@dataclass
class FirstOrderBenchConfig:
    dataset: str = knob("mnist", "mnist | digits | synthetic")
    data_dir: str | None = knob(None, "folder of the MNIST IDX .gz files (as train.py --data-dir)")
    data: str | None = knob(None, "your own .csv / .npz instead (as train.py --data)")
    lam: float = knob(1e-4, "L2 strength")
    contenders: str = knob("saga,sklearn_saga,lsvrg,saga+vr_batch=64,saga+vr_step=0.25+passes=20,"
                           "saga+vr_batch=1+vr_step=1+passes=5,svrg+passes=15,sgd+passes=10,minibatch_sgd+passes=20,"
                           "sklearn_sag",
                           "comma-separated: our methods (" + ", ".join(FIRST_ORDER) + "), each optionally "
                           "+field=value (SolverOptions), and " + ", ".join(SKLEARN))
    targets: str = knob("1e-2,1e-3,1e-4", "relative gaps (f - f*) / f*, comma-separated")
    passes: float = knob(40.0, "budget of effective passes for our methods (each stops there)")
    epochs: str = knob("5,15,30,60", "scikit-learn: the epoch counts fitted, increasing (the last is the cap)")
    at_passes: float = knob(15.0, "also report the gap after this many passes / epochs")
    repeats: int = knob(1, "runs of every contender, interleaved; the summary takes medians", lo=1, hi=100)
    threads: int = knob(1, "BLAS threads (threadpoolctl)", lo=1, hi=1024)  # 100000 hung threadpoolctl (issue 28)
    seed: int = knob(0, "our stochastic methods' and scikit-learn's shuffling")
    out_dir: str | None = knob(None, "first_order_bench.json and .png (default: out/first_order_bench beside this "
                                     "script; --out-dir large_scale_optimization/results refreshes the committed "
                                     "figures the README quotes)")


def parse_contender(spec: str) -> tuple[str, dict]:
    """'saga+vr_step=0.25' -> ('saga', {'vr_step': 0.25}); a UserError names a bad method or field."""
    name, *settings = spec.split("+")
    if name not in FIRST_ORDER + SKLEARN:
        raise UserError(f"unknown contender {name!r}; allowed: {', '.join(FIRST_ORDER + SKLEARN)}")
    if settings and name in SKLEARN:
        raise UserError(f"contender {spec!r}: scikit-learn's solvers take no +settings")
    types = {f.name: f.type for f in dataclasses.fields(SolverOptions)}
    opts = {}
    for s in settings:
        key, _, value = s.partition("=")
        if key not in types or not value:
            raise UserError(f"contender {spec!r}: {s!r} is not field=value with a field of SolverOptions "
                            f"({', '.join(types)})")
        try:
            opts[key] = {"int": int, "float": float, "str": str, "bool": to_bool}[types[key]](value)
        except ValueError:
            raise UserError(f"contender {spec!r}: {key} must be {types[key]}, got {value!r}") from None
    return name, opts


def parse_numbers(text: str, flag: str, kind=float) -> list:
    try:
        values = [kind(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"--{flag} must be comma-separated numbers, got {text!r}") from None
    if not values or not all(v > 0 and np.isfinite(v) for v in values):
        raise UserError(f"--{flag} must be positive numbers, got {text!r}")
    return values


def check_config(cfg: FirstOrderBenchConfig):
    """(contenders as (spec, name, options), targets, epochs); a UserError for anything out of range."""
    check_positive(cfg, "lam", "passes")
    check_ranges(cfg, {"seed": (0, None), "at_passes": (0, None)})
    contenders = [(s, *parse_contender(s)) for s in cfg.contenders.split(",") if s]
    if not contenders:
        raise UserError(f"--contenders {cfg.contenders!r} names none")
    targets = sorted(parse_numbers(cfg.targets, "targets"), reverse=True)
    epochs = parse_numbers(cfg.epochs, "epochs", int)
    if epochs != sorted(set(epochs)):
        raise UserError(f"--epochs must be increasing, got {cfg.epochs!r}")
    return contenders, targets, epochs


def first_reaching(curve: list[dict], target: float) -> dict | None:
    """The first point of a curve (points in the order run) whose relative gap is <= target, or None."""
    return next((p for p in curve if p["rel_gap"] <= target), None)


def gap_after(curve: list[dict], passes: float) -> float | None:
    """The relative gap of the last point at most `passes` passes in (None: no such point)."""
    before = [p for p in curve if p["passes"] <= passes + 1e-9]
    return before[-1]["rel_gap"] if before else None


def run_ours(prob, name: str, options: dict, cfg: FirstOrderBenchConfig) -> list[dict]:
    """One of our methods from W = 0 for cfg.passes passes (or its own +passes=): its curve (passes, CPU
    seconds, relative gap)."""
    tr = Tracker(name, prob, verbose=False, clock=time.process_time)
    W0 = np.zeros(prob.shape)
    tr.record(W0)
    tr.start()
    SOLVERS[name](prob, W0, SolverOptions(**{"passes": cfg.passes, **options}), tr,
                  np.random.default_rng(cfg.seed))
    return [dict(passes=r["passes"], cpu_s=r["time"], rel_gap=r["gap"] / prob.f_star) for r in tr.records]


def run_sklearn(prob, solver: str, epochs: list[int], smallest_target: float, seed: int) -> list[dict]:
    """scikit-learn's sag or saga fitted from scratch for each epoch count, until one reaches the smallest
    target: one point per fit (its CPU seconds and the relative gap of its coef_, with our loss)."""
    curve = [dict(passes=0, cpu_s=0.0, rel_gap=(model.loss(np.zeros(prob.shape), prob.X, prob.y, prob.lam)
                                                 - prob.f_star) / prob.f_star)]
    for e in epochs:
        clf = LogisticRegression(C=1.0 / (prob.n * prob.lam), fit_intercept=False, solver=solver, tol=0.0,
                                 max_iter=e, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            t0 = time.process_time()
            clf.fit(prob.X, prob.y)
            sec = time.process_time() - t0
        gap = (model.loss(clf.coef_, prob.X, prob.y, prob.lam) - prob.f_star) / prob.f_star
        curve.append(dict(passes=int(np.max(clf.n_iter_)), cpu_s=sec, rel_gap=gap))
        print(f"    {solver} {e:4d} epochs: {sec:7.2f} s CPU  rel gap {gap:.3e}", flush=True)
        if gap <= smallest_target:
            break
    return curve


def summarise(curve: list[dict], targets: list[float], at_passes: float, sklearn_fits: bool) -> dict:
    """Time to each target (None: not reached; for scikit-learn also the lower bound from the fit before),
    the gap after `at_passes` and at the end."""
    to = {}
    for t in targets:
        hit = first_reaching(curve, t)
        entry = dict(cpu_s=hit["cpu_s"], passes=hit["passes"]) if hit else None
        if hit and sklearn_fits:
            entry["cpu_s_lower"] = curve[curve.index(hit) - 1]["cpu_s"]
        to[f"{t:g}"] = entry
    return dict(to_target=to, gap_at=gap_after(curve, at_passes), final=curve[-1])


def median_table(runs: list[dict], targets: list[float], at_passes: float) -> tuple[list[dict], str]:
    """Per contender, medians over the repeats; the rows and the text table."""
    rows, lines = [], []
    head = "".join(f" {'to ' + format(t, 'g'):>16}" for t in targets)
    lines.append(f"{'contender':>28}{head} {'gap @' + format(at_passes, 'g'):>10} {'final gap':>10} {'passes':>7}"
                 f"   (CPU s [passes]; median of {max(r['repeat'] for r in runs) + 1} run(s))")
    for spec in dict.fromkeys(r["contender"] for r in runs):
        mine = [r for r in runs if r["contender"] == spec]
        row = dict(contender=spec, runs=len(mine), to_target={})
        cells = ""
        for t in targets:
            hits = [r["summary"]["to_target"][f"{t:g}"] for r in mine]
            if all(hits):
                sec, passes = float(np.median([h["cpu_s"] for h in hits])), float(np.median([h["passes"] for h in hits]))
                row["to_target"][f"{t:g}"] = dict(cpu_s=sec, passes=passes)
                if "cpu_s_lower" in hits[0]:
                    row["to_target"][f"{t:g}"]["cpu_s_lower"] = float(np.median([h["cpu_s_lower"] for h in hits]))
                cells += f" {f'{sec:.2f} [{passes:g}]':>16}"
            else:
                row["to_target"][f"{t:g}"] = None
                cells += f" {'not reached':>16}"
        at = [r["summary"]["gap_at"] for r in mine]
        row["gap_at"] = float(np.median(at)) if all(g is not None for g in at) else None
        row["final_gap"] = float(np.median([r["summary"]["final"]["rel_gap"] for r in mine]))
        row["final_passes"] = float(np.median([r["summary"]["final"]["passes"] for r in mine]))
        at_text = f"{row['gap_at']:.2e}" if row["gap_at"] is not None else "-"
        lines.append(f"{spec:>28}{cells} {at_text:>10} {row['final_gap']:10.2e} {row['final_passes']:7.1f}")
        rows.append(row)
    return rows, "\n".join(lines)


def plot(runs: list[dict], title: str, path: Path):
    """Relative gap against CPU seconds and against passes, one colour per contender (first repeat)."""
    specs = list(dict.fromkeys(r["contender"] for r in runs))
    fig, axes = plt.subplots(1, 2, figsize=(12.8, 4.6))
    for ax, x_key, label in ((axes[0], "cpu_s", "CPU seconds, one thread"), (axes[1], "passes", "effective passes")):
        for i, spec in enumerate(specs):
            curve = next(r["curve"] for r in runs if r["contender"] == spec)
            pts = [p for p in curve if p["passes"] > 0]
            style = dict(ls="--", marker="s") if spec in SKLEARN else dict(ls="-", marker="." if len(pts) < 60 else None)
            ax.plot([p[x_key] for p in pts], [max(p["rel_gap"], 1e-16) for p in pts], label=spec, color=f"C{i}", **style)
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("relative gap (f - f*) / f*")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    write_png(path, fig, dpi=110)
    plt.close(fig)


def main(argv=None):
    cfg = parse_config(FirstOrderBenchConfig, argv, prog="bench_first_order.py", description=__doc__)
    contenders, targets, epochs = check_config(cfg)
    out_dir = Path(cfg.out_dir or OUT_DIR)
    with OutDirLock(out_dir), threadpool_limits(cfg.threads):
        made = provenance("bench_first_order.py", argv, cfg.threads)
        dataset = data.load_dataset(cfg.dataset, cfg.data_dir, cfg.data)
        prob = LogisticProblem.from_dataset(dataset, cfg.lam)
        if prob.shape[0] < 3:  # as bench.py: for K = 2 scikit-learn fits the binary loss, another objective
            raise UserError("bench_first_order.py needs K >= 3 classes: with 2, scikit-learn's LogisticRegression "
                            "minimises the binary loss, not our K-row softmax objective")
        t0 = time.process_time()
        _, prob.f_star, g_star, _, _ = solve_reference(prob, SolverOptions(), np.random.default_rng(cfg.seed))
        print(f"{cfg.dataset}: n={prob.n} D={prob.shape[1]} K={prob.shape[0]} lam={cfg.lam:g} L={prob.L:.4g} "
              f"L_max={prob.L_max:.4g}; f* = {prob.f_star:.12f} (||grad f|| {g_star:.1e}, "
              f"{time.process_time() - t0:.1f} s CPU)", flush=True)
        runs = []
        for rep in range(cfg.repeats):
            order = contenders if rep % 2 == 0 else contenders[::-1]  # interleaved: A B C, C B A, ...
            for spec, name, options in order:
                print(f"[run {rep + 1}/{cfg.repeats}] {spec}", flush=True)
                if name in SKLEARN:
                    curve = run_sklearn(prob, name.removeprefix("sklearn_"), epochs, targets[-1], cfg.seed)
                else:
                    curve = run_ours(prob, name, options, cfg)
                summary = summarise(curve, targets, cfg.at_passes, name in SKLEARN)
                print("    " + "  ".join(f"to {t}: " + (f"{v['cpu_s']:.2f} s [{v['passes']:g}]" if v else "-")
                                         for t, v in summary["to_target"].items())
                      + f"  final {summary['final']['rel_gap']:.2e} at {summary['final']['passes']:.1f}", flush=True)
                runs.append(dict(contender=spec, repeat=rep, summary=summary, curve=curve))
                # written after every contender, so an interrupted benchmark keeps what it measured
                complete = rep == cfg.repeats - 1 and spec == order[-1][0]
                rows, table = median_table(runs, targets, cfg.at_passes)
                result = dict(made, complete=complete, config=dataclasses.asdict(cfg), n=prob.n, D=prob.shape[1],
                              K=prob.shape[0], L=prob.L, L_max=prob.L_max, f_star=prob.f_star,
                              f_star_grad_norm=g_star, table=table, rows=rows, runs=runs)
                write_json(out_dir / "first_order_bench.json", result)
                plot(runs, f"{cfg.dataset}, lam={cfg.lam:g}, one thread, {made['date_utc']}",
                     out_dir / "first_order_bench.png")
        print(table)
    print(f"wrote {out_dir / 'first_order_bench.json'} and first_order_bench.png")


if __name__ == "__main__":
    run_main(main)
