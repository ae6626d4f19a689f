"""large_scale_optimization/bench_first_order.py: the time-to-target bookkeeping on hand-made curves, the
benchmark end to end on digits (scikit-learn's point checked against a fit of our own), and its refusals."""
import json
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import bench_first_order as bfo
import model


def test_time_to_target_and_gap_after_on_a_hand_made_curve():
    """The first point at or below each target; for scikit-learn's fits, the fit before it as the lower
    bound; the gap after 15 passes is the last point at <= 15 passes (never one after it)."""
    curve = [dict(passes=p, cpu_s=t, rel_gap=g) for p, t, g in
             [(0, 0.0, 9.0), (5, 1.0, 2e-2), (10, 2.0, 1e-2), (14.6, 3.0, 2e-3), (16.2, 4.0, 5e-4)]]
    s = bfo.summarise(curve, [1e-2, 1e-3, 1e-4], 15, sklearn_fits=True)
    assert s["to_target"]["0.01"] == dict(cpu_s=2.0, passes=10, cpu_s_lower=1.0)  # equal to the target counts
    assert s["to_target"]["0.001"] == dict(cpu_s=4.0, passes=16.2, cpu_s_lower=3.0)
    assert s["to_target"]["0.0001"] is None
    assert s["gap_at"] == 2e-3 and s["final"]["rel_gap"] == 5e-4
    assert "cpu_s_lower" not in bfo.summarise(curve, [1e-2], 15, sklearn_fits=False)["to_target"]["0.01"]
    assert bfo.gap_after(curve[2:], 5) is None


def test_bench_first_order_runs_on_digits(tmp_path, capsys):
    """End to end on digits (lam = 1e-2): our saga with its own +passes, sgd, scikit-learn's saga on an epoch
    grid that stops at the first fit reaching the smallest target. Its 5-epoch point is the gap of a fit
    made here; the JSON says how it was run; the figure is written."""
    bfo.main(["--dataset", "digits", "--lam", "1e-2", "--contenders", "saga+passes=12,sgd,sklearn_saga",
              "--passes", "4", "--epochs", "5,10,40,80", "--targets", "1e-2,1e-4", "--out-dir", str(tmp_path)])
    res = json.loads((tmp_path / "first_order_bench.json").read_text())
    assert res["threads"] == 1 and res["date_utc"] and res["machine"]["cpu_count"] >= 1
    assert res["command"].endswith("python large_scale_optimization/bench_first_order.py --dataset digits --lam 1e-2 "
                                   "--contenders saga+passes=12,sgd,sklearn_saga --passes 4 --epochs 5,10,40,80 "
                                   f"--targets 1e-2,1e-4 --out-dir {tmp_path}")
    assert all(i["threads"] == 1 for i in res["machine"]["blas_under_limit"])
    runs = {r["contender"]: r for r in res["runs"]}
    saga = runs["saga+passes=12"]["curve"]
    assert [p["passes"] for p in saga] == [0, *range(2, 13)]  # its own budget; the table at W0 is one pass
    assert saga[-1]["rel_gap"] < 1e-4 and all(b["cpu_s"] >= a["cpu_s"] for a, b in zip(saga, saga[1:]))
    assert runs["sgd"]["curve"][-1]["passes"] == 4
    sk = runs["sklearn_saga"]["curve"]
    assert [p["passes"] for p in sk][:2] == [0, 5] and sk[-1]["rel_gap"] <= 1e-4 < sk[-2]["rel_gap"]
    clf = LogisticRegression(C=1 / (res["n"] * 1e-2), fit_intercept=False, solver="saga", tol=0, max_iter=5,
                             random_state=0)
    prob = bfo.LogisticProblem.from_dataset(bfo.data.load_dataset("digits"), 1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(prob.X, prob.y)
    f5 = model.loss(clf.coef_, prob.X, prob.y, 1e-2)
    assert sk[1]["rel_gap"] == pytest.approx((f5 - res["f_star"]) / res["f_star"], rel=1e-9)
    rows = {r["contender"]: r for r in res["rows"]}
    assert rows["sklearn_saga"]["to_target"]["0.0001"]["cpu_s_lower"] == sk[-2]["cpu_s"]
    assert rows["sgd"]["to_target"]["0.0001"] is None and "not reached" in capsys.readouterr().out
    assert (tmp_path / "first_order_bench.png").stat().st_size > 10_000


@pytest.mark.parametrize("args, needles", [
    (["--contenders", "saga,newton"], ["unknown contender", "'newton'", "lsvrg"]),
    (["--contenders", "saga+vr_stp=2"], ["vr_stp=2", "vr_step"]),
    (["--contenders", "saga+vr_batch=x"], ["vr_batch must be int", "'x'"]),
    (["--contenders", "sklearn_saga+passes=3"], ["take no +settings"]),
    (["--epochs", "10,5"], ["--epochs", "increasing"]),
    (["--targets", "1e-2,-1"], ["--targets", "positive"]),
    (["--repeats", "0"], ["--repeats 0: must be in [1, 100]"]),
    (["--threads", "100000"], ["--threads 100000: must be in [1, 1024]"]),  # hung in threadpoolctl (issue 28)
])
def test_bench_first_order_bad_flags_are_one_line_errors(run_main_here, clean_error, tmp_path, args, needles):
    r = run_main_here(bfo.main, ["--dataset", "digits", *args, "--out-dir", tmp_path / "b"])
    clean_error(r, *needles)
    assert not (tmp_path / "b" / "first_order_bench.json").exists()
