"""large_scale_optimization/train.py end to end on digits (every method reaches its expected tolerance), its
outputs and plots, and its refusals of bad input (exit 2, one line)."""
import gzip
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import train

SCRIPT = "large_scale_optimization/train.py"
MNIST = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="module")
def run(run_script, tmp_path_factory):
    out = tmp_path_factory.mktemp("lso_digits")
    r = run_script("large_scale_optimization/train.py", "--dataset", "digits", "--passes", "30",
                   "--out-dir", out, timeout=300)
    assert r.returncode == 0, r.stderr
    return r, json.loads((out / "results.json").read_text()), out


def test_results_open_with_how_they_were_made(run):
    """results.json opens with the provenance record, its command the one typed (through sys.argv), from the
    repository root."""
    _, res, out = run
    assert list(res)[:4] == ["command", "date_utc", "threads", "machine"] and res["threads"] == 1
    assert res["command"].endswith(f"python large_scale_optimization/train.py --dataset digits --passes 30 "
                                   f"--out-dir {out}")


# f - f* after 30 effective passes from W = 0 (f(0) - f* = 2.22; measured values in the comments). The
# deterministic first-order methods use the worst-case 1/L step, hence slow; the bounds leave ~2x room.
EXPECTED_GAP = {
    "gd": 1.8,  # 1.43
    "gd_armijo": 0.8,  # 0.40
    "minibatch_sgd": 0.6,  # 0.30
    "minibatch_gd": 0.6,  # 0.29
    "sgd": 0.04,  # 0.016
    "svrg": 0.05,  # 0.009 (step 1 / L_max)
    "saga": 0.015,  # 0.0053 (batches of 16, step 8 / L(16))
    "lsvrg": 0.03,  # 0.011
}


def test_every_method_reaches_its_tolerance(run):
    r, res, out = run
    f_star = res["f_star"]
    assert res["f_star_grad_norm"] <= 1e-10
    assert f_star == pytest.approx(0.0840957544, rel=1e-8)  # digits, lam=1e-4, fixed split
    methods = res["methods"]
    assert set(methods) == {"gd", "gd_armijo", "newton", "newton_cg", "sgd", "minibatch_sgd", "minibatch_gd", "svrg",
                            "saga", "lsvrg"}
    for name in ("newton", "newton_cg"):
        last = methods[name][-1]
        assert last["grad_norm"] <= 1e-10 and abs(last["gap"]) <= 1e-12 * f_star, name
        assert len(methods[name]) <= 15
    for name, tol in EXPECTED_GAP.items():
        recs = methods[name]
        assert recs[0]["gap"] == pytest.approx(np.log(10) - f_star)  # W = 0: f = log K
        assert recs[-1]["passes"] >= 30 and recs[-1]["passes"] <= 34
        assert 0 < recs[-1]["gap"] <= tol, (name, recs[-1]["gap"])
        assert recs[-1]["test_acc"] > 0.85, name
    for name in ("gd", "gd_armijo"):  # descent methods: f never goes up
        f = [rec["f"] for rec in methods[name]]
        assert all(b <= a for a, b in zip(f, f[1:])), name
    # cost accounting: a GD step is one pass; a Newton step with the explicit Hessian costs far more
    assert [rec["passes"] for rec in methods["gd"][:3]] == [0.0, 1.0, 2.0]
    assert methods["newton"][1]["passes"] > 100
    # exactly, worked out by hand for digits (n = 1347, K = 10, D = 65): the gradient (1 pass); the explicit
    # Hessian, 55 Gram matrices of 2 n D^2 flops against 4 n K D for a sample-gradient pass: 55 * 130 / 40
    # = 178.75 passes; its Cholesky, 650^3 / 3 flops at 4 * 650 per sample gradient: 650^2 / 12 / 1347 =
    # 26.1383... passes; then one loss per Armijo trial (the first step is taken at 2^-j: j + 1 trials)
    assert (res["n"], res["K"], res["D"]) == (1347, 10, 65)
    trials = 1 + round(np.log2(1 / methods["newton"][1]["step"]))
    assert methods["newton"][1]["passes"] == pytest.approx(1 + 178.75 + 422500 / 16164 + trials, rel=1e-12)
    # minibatch_sgd draws n // b = 10 batches of b = 128 per "epoch": charged what it computed, not n
    assert methods["minibatch_sgd"][1]["passes"] == pytest.approx(1280 / 1347, rel=1e-12)
    assert methods["minibatch_gd"][1]["passes"] == 1.0 and methods["sgd"][1]["passes"] == 1.0
    assert all(rec["time"] >= 0 for m in methods.values() for rec in m)


def test_outputs_table_and_plots(run):
    r, res, out = run
    for name in ("gap_vs_passes.png", "gap_vs_time.png", "newton_grad_norm.png", "test_acc_vs_passes.png"):
        assert (out / name).stat().st_size > 10_000, name
    assert (out / "results.json").stat().st_mode & 0o044 == 0o044  # readable by others
    table = r.stdout[r.stdout.index("rel gap"):]
    for name in res["methods"]:
        assert name in table
    assert "pass" in r.stdout  # per-pass progress lines


def test_log_axis_plots_leave_out_the_start(tmp_path, monkeypatch):
    """The pass-0 / time-0 record cannot sit on a log x axis; matplotlib used to clip it to the far left and
    draw a flat line from the plot's edge to the first real point (a method seemingly at that value all
    along), and stretch the accuracy axis down to the start's 0.1."""
    figs, close = [], train.plt.close
    monkeypatch.setattr(train.plt, "close", figs.append)  # keep the figures to inspect them
    recs = [dict(iter=i, passes=float(p), time=0.1 * p, gap=2.0 / (1 + p), grad_norm=1.0 / (1 + p),
                 test_acc=0.1 if p == 0 else 0.9) for i, p in enumerate([0, 40, 41, 42])]
    train.plot({"newton_cg": recs}, 0.26, tmp_path, "t")
    names = ["gap_vs_passes", "gap_vs_time", "newton_grad_norm", "test_acc_vs_passes"]
    for name, fig in zip(names, figs):
        xs = fig.axes[0].lines[0].get_xdata()
        assert (min(xs) > 0) if name != "newton_grad_norm" else (list(xs) == [0, 1, 2, 3]), name
    assert figs[3].axes[0].get_ylim()[0] > 0.5  # the accuracy axis is not stretched to the start's 0.1
    for fig in figs:
        close(fig)


def test_mnist_corrupt_file_is_a_clean_error(run_script, clean_error, shared_file, tmp_path):
    src = shared_file("mnist/t10k-labels-idx1-ubyte.gz").parent
    for name in MNIST:
        shutil.copy(src / name, tmp_path / name)
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x01" + b"\x00" * 8)
    r = run_script(SCRIPT, "--dataset", "mnist", "--data-dir", tmp_path, "--out-dir", tmp_path / "o")
    clean_error(r, "md5", "t10k-labels")


def bad_input_args(case, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((20, 3))
    y = np.arange(20) % 2
    if case == "method":
        return ["--methods", "gd,adam"], ["adam", "allowed", "svrg"]
    if case == "dataset":
        return ["--dataset", "cifar"], ["cifar", "allowed"]
    if case == "lam":
        return ["--lam", "0", "--methods", "newton"], ["--lam 0.0: must be in (0, 10000.0]"]
    if case == "flag":
        return ["--passes", "many"], ["--passes"]
    if case == "labels":
        y, needles = y + 1, ["labels", "0..K-1"]  # labels 1..2: class 0 never occurs
    elif case == "shapes":
        y, needles = y[:-1], ["mismatched", "(20, 3)", "(19,)"]
    elif case == "nan":
        X[3, 1] = np.nan
        needles = ["nan"]
    elif case == "npz":
        (tmp_path / "bad.npz").write_text("not a zip archive")
        return ["--data", tmp_path / "bad.npz"], ["bad.npz", "not a readable .npz"]
    elif case == "threads":
        return ["--threads", "0"], ["--threads 0", "must be in [1, 1024]"]
    elif case == "newton_max_iters":  # 0 would stop the f* solve at W = 0: every gap wrong, no error
        return ["--newton-max-iters", "0"], ["--newton-max-iters 0", "must be in [1, inf]"]
    elif case == "precond_size":  # was a traceback from rng.choice
        return ["--precond-size", "-5", "--methods", "newton_cg"], ["--precond-size -5", "must be in [1, inf]"]
    elif case == "empty_csv":  # header only: was numpy's UserWarning (two more lines) before the error
        (tmp_path / "empty.csv").write_text("label,a,b\n")
        return ["--data", tmp_path / "empty.csv"], ["empty.csv", "no data rows"]
    elif case == "passes_inf":  # ran forever
        return ["--passes", "inf"], ["--passes", "finite", "inf"]
    elif case == "lam_inf":  # ended with f* = nan and exit 0
        return ["--lam", "inf"], ["--lam", "finite", "inf"]
    elif case == "id_column":  # a first column of ids: set(range(K)) for K ~ 1e6 (or 1e18: out of memory)
        (tmp_path / "ids.csv").write_text("".join(f"{10**6 + i},{i % 3},{i}\n" for i in range(20)))
        return ["--data", tmp_path / "ids.csv"], ["K=1000020", "first column the label"]
    elif case == "huge_label":  # beyond int64
        (tmp_path / "huge.csv").write_text("12345678901234567890,1\n1,2\n0,3\n1,4\n")
        return ["--data", tmp_path / "huge.csv"], ["huge.csv", "labels must be integers 0..K-1", "1.23457e+19"]
    elif case == "single_class":
        y = np.zeros(20, dtype=int)
        needles = ["at least 2 classes"]
    elif case == "one_row":
        (tmp_path / "one.csv").write_text("0,1\n")
        return ["--data", tmp_path / "one.csv"], ["at least 2 classes"]
    elif case == "huge_features":  # overflowed X^T X: nan f*, or a LinAlgError traceback
        X[2, 0] = 1e300
        needles = ["at most 1e+100", "1e+300"]
    elif case == "not_utf8":
        (tmp_path / "latin.csv").write_bytes(b"label,a\n0,1\n1,\xe9\n0,3\n")
        return ["--data", tmp_path / "latin.csv"], ["latin.csv", "not UTF-8", "0xe9"]
    elif case == "bad_first_row":  # an empty field is not a header: the row is data, and it is refused
        (tmp_path / "gap.csv").write_text("0,,1\n1,2,3\n0,3,4\n1,5,6\n")
        return ["--data", tmp_path / "gap.csv"], ["gap.csv", "not a numeric csv", "row 0"]
    elif case == "seed":  # was numpy's ValueError traceback
        return ["--seed", "-1"], ["--seed -1", "must be in [0, inf]"]
    elif case == "upper_bounds":  # each was accepted: a 5000-class or 1e9-step problem ran out of memory or time
        return ["--threads", "100000"], ["--threads 100000", "must be in [1, 1024]"]  # issue 28: hung
    elif case == "classes":
        return ["--dataset", "synthetic", "--classes", "5000"], ["--classes 5000", "must be in [2, 1000]"]
    elif case == "classes_1e12":  # issue 28: an allocation error
        return ["--dataset", "synthetic", "--classes", "1e12"], ["--classes 1000000000000", "must be in [2, 1000]"]
    elif case == "svrg_inner":  # issue 28: an allocation error
        return ["--svrg-inner", "1e12"], ["--svrg-inner 1000000000000.0", "must be in [0, 1000]"]
    elif case == "lam_huge":
        return ["--lam", "1e9"], ["--lam 1000000000.0", "must be in [0, 10000.0]"]
    elif case == "synthetic_size":  # ran out of memory
        return ["--dataset", "synthetic", "--n", "10000000000", "--d", "50"], ["--n", "too large"]
    elif case == "data_folder":  # a folder named like a data file: was IsADirectoryError's traceback
        (tmp_path / "folder.csv").mkdir()
        return ["--data", f"{tmp_path / 'folder.csv'}/"], ["folder.csv", "is a folder", ".csv or .npz file"]
    elif case == "mnist_gz_folder":  # issue 28: IsADirectoryError's traceback
        (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").mkdir(parents=True)
        return (["--dataset", "mnist", "--data-dir", tmp_path / "mnist"],
                ["train-images-idx3-ubyte.gz", "is a folder", "--data-dir"])
    elif case == "filetype":
        (tmp_path / "data.txt").write_text("0,1\n1,2\n")
        return ["--data", tmp_path / "data.txt"], ["unknown file type", ".csv, .npz"]
    np.savez(tmp_path / "bad.npz", X=X, y=y)
    return ["--data", tmp_path / "bad.npz"], needles


@pytest.mark.parametrize("case", ["method", "nan"])
def test_bad_input_exits_2_with_one_line_cli(case, run_script, clean_error, tmp_path):
    args, needles = bad_input_args(case, tmp_path)
    r = run_script(SCRIPT, *args, "--out-dir", tmp_path / "out", "--no-plots")
    clean_error(r, *needles)
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.parametrize("case", ["method", "dataset", "lam", "labels", "shapes", "nan", "flag", "filetype", "npz",
                                  "threads", "newton_max_iters", "precond_size", "empty_csv",
                                  "passes_inf", "lam_inf", "id_column", "huge_label", "single_class", "one_row",
                                  "huge_features", "not_utf8", "bad_first_row", "seed", "upper_bounds",
                                  "classes", "classes_1e12", "svrg_inner", "lam_huge", "data_folder", "mnist_gz_folder",
                                  "synthetic_size"])
def test_bad_input_exits_2_with_one_line(case, run_main_here, clean_error, tmp_path):
    """The same checks in-process through main(argv) (cheaper than a subprocess per case)."""
    args, needles = bad_input_args(case, tmp_path)
    clean_error(run_main_here(train.main, [*args, "--out-dir", tmp_path / "out", "--no-plots"]), *needles)
    assert not (tmp_path / "out" / "results.json").exists()


def test_gap_figure_shows_the_first_order_methods_apart(tmp_path, monkeypatch):
    """Newton's f - f* of ~1e-16 stretches a shared log axis until GD, SGD and SVRG look alike: a second panel
    of gap_vs_passes.png holds the first-order methods alone, on a range set by them, in the same colours.
    Without a second-order method there is nothing to squash them: one panel."""
    figs, close = [], train.plt.close
    monkeypatch.setattr(train.plt, "close", figs.append)

    def recs(gaps):
        return [dict(iter=i, passes=float(i), time=0.1 * i, gap=g, grad_norm=g, test_acc=0.9)
                for i, g in enumerate(gaps)]

    results = {"gd": recs([2.0, 1.5, 1.2]), "newton": recs([2.0, 1e-3, 1e-16]), "svrg": recs([2.0, 1.0, 0.9])}
    train.plot(results, 0.1, tmp_path, "t")
    train.plot({"gd": results["gd"], "svrg": results["svrg"]}, 0.1, tmp_path, "t")
    both, first = figs[0].axes
    assert [line.get_label() for line in first.lines] == ["gd", "svrg"]
    assert first.get_ylim()[0] > 0.5 and both.get_ylim()[0] < 1e-15
    colour = {line.get_label(): line.get_color() for line in both.lines}
    assert all(line.get_color() == colour[line.get_label()] for line in first.lines)
    assert len(figs[4].axes) == 1  # the second call: first-order methods only
    for fig in figs:
        close(fig)


def test_second_run_on_a_busy_out_dir_is_refused(run_main_here, clean_error, tmp_path):
    """A live run holds OUT/.lock: a second train.py on OUT stops before loading any data, naming that
    run's pid, and writes nothing there."""
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".lock").write_text(str(live.pid))
        r = run_main_here(train.main, ["--methods", "gd", "--passes", "1", "--out-dir", tmp_path])
        clean_error(r, "in use by another run", f"pid {live.pid}")
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"] and "f* =" not in r.stdout
    finally:
        live.kill()
        live.wait()


def test_a_diverging_method_stops_the_run_before_any_output(run_main_here, tmp_path):
    """SVRG with a step 1e8 times too long: f overflows to nan. The run stops at that record with exit 3 and
    one line naming the method, and writes neither results.json nor a plot."""
    argv = ["--methods", "gd,svrg", "--svrg-step", "1e8", "--passes", "2", "--out-dir", tmp_path]
    r = run_main_here(train.main, argv)
    assert r.returncode == 3 and r.stderr.count("\n") == 1, r.stderr
    assert "svrg diverged: f = nan" in r.stderr and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_summary_table_prints_a_gap_below_f_star_as_zero():
    """Newton ends a few ulps below f* (f - f* = -1.388e-17 on digits): rounding, printed 0, not as a
    negative gap; a real gap keeps its value."""
    rec = dict(passes=8.0, time=0.1, grad_norm=1e-13, train_acc=1.0, test_acc=0.97)
    table = train.summary_table({"newton": [dict(rec, gap=-1.388e-17)], "gd": [dict(rec, gap=2.5e-3)]}, 0.084)
    newton, gd = table.splitlines()[1:]
    assert newton.split()[3:5] == ["0.000e+00", "0.00e+00"] and "-1.388" not in newton
    assert gd.split()[3:5] == ["2.500e-03", f"{2.5e-3 / 0.084:.2e}"]
