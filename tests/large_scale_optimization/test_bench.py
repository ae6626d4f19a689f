"""large_scale_optimization/bench.py end to end on digits, and its refusals."""
import json

import numpy as np
import pytest

import bench


def test_bench_runs_on_digits(tmp_path, capsys, monkeypatch):
    """bench.py end to end on the small problem: ours reaches the target, sklearn's answer is checked
    with our gradient (its f agrees with ours)."""
    out = tmp_path / "bench.json"
    real = bench.explicit_newton
    # newton_explicit is timed for --explicit-iters steps and extrapolated to newton_pcg's iteration count;
    # a fake clock (0.25 s a step) makes the extrapolation checkable
    monkeypatch.setattr(bench, "explicit_newton", lambda prob, iters: (real(prob, iters)[0], 0.25 * iters))
    bench.main(["--dataset", "digits", "--threads", "1", "--solvers", "newton_pcg,newton_explicit,newton-cg",
                "--explicit-iters", "2", "--out-dir", str(tmp_path)])
    res = json.loads(out.read_text())
    assert res["complete"] and res["threads"] == [1] and res["command"].endswith(
        "python large_scale_optimization/bench.py --dataset digits --threads 1 --solvers newton_pcg,newton_explicit,"
        f"newton-cg --explicit-iters 2 --out-dir {tmp_path}")
    rows = {r["solver"]: r for r in res["table"]}
    assert rows["newton_pcg"]["reached"] and rows["newton_pcg"]["grad_norm"] <= 1e-8
    assert rows["newton-cg"]["f"] == pytest.approx(rows["newton_pcg"]["f"], rel=1e-9)
    assert rows["newton_pcg"]["ratio_to_ours"] == 1.0
    ours, expl = rows["newton_pcg"], rows["newton_explicit"]
    assert ours["iters"] > 2 and expl["estimated"] and expl["iters"] == ours["iters"]
    assert expl["seconds"] == pytest.approx(0.25 * ours["iters"])
    assert expl["ratio_to_ours"] == pytest.approx(expl["seconds"] / ours["seconds"])
    assert "x ours" in capsys.readouterr().out


def test_bench_refuses_two_classes(run_main_here, clean_error, tmp_path):
    """With K = 2 scikit-learn fits a binary model (another objective, coef_ of shape (1, D)): one-line error."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "two.npz", X=rng.random((40, 3)), y=np.arange(40) % 2)
    r = run_main_here(bench.main, ["--data", tmp_path / "two.npz", "--out-dir", tmp_path / "b"])
    clean_error(r, "K >= 3")


@pytest.mark.parametrize("args, needles", [
    (["--threads", "abc"], ["--threads", "positive integers", "abc"]),
    (["--threads", "0"], ["--threads", "positive integers", "0"]),
    (["--threads", "100000"], ["--threads 100000", "up to 1024"]),  # was a hang in threadpoolctl (issue 28)
    (["--repeats", "0"], ["--repeats 0: must be in [1, 100]"]),
    (["--solvers", ","], ["--solvers", "allowed", "newton_pcg"]),
    (["--explicit-iters", "0"], ["--explicit-iters 0: must be in (0, inf)"]),  # was a nan ratio, exit 0
])
def test_bench_bad_flags_are_one_line_errors(run_main_here, clean_error, tmp_path, args, needles):
    r = run_main_here(bench.main, ["--dataset", "digits", *args, "--out-dir", tmp_path / "b"])
    clean_error(r, *needles)
    assert not (tmp_path / "b" / "bench.json").exists()


