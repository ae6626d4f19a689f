"""large_scale_optimization/denoise.py command line: tiny end-to-end runs, flag checks and one-line errors."""
import json

import matplotlib.image
import numpy as np
import pytest

import denoise
from cli import UserError

SCRIPT = "large_scale_optimization/denoise.py"


def test_tv1d_run_writes_results_and_plots(run_script, tmp_path):
    out = tmp_path / "out"
    r = run_script(SCRIPT, "--problem", "tv1d", "--n", "400", "--seg-len", "40", "--lam", "0.3", "--max-iters", "200",
                   "--lam-sweep", "5", "--out-dir", out)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    assert list(res)[:4] == ["command", "date_utc", "threads", "machine"] and res["threads"] == 1
    assert res["command"].endswith(f"python {SCRIPT} --problem tv1d --n 400 --seg-len 40 --lam 0.3 --max-iters 200 "
                                   f"--lam-sweep 5 --out-dir {out}")  # typed through sys.argv
    assert set(res["methods"]) == {"exact", "subgrad-sqrt", "subgrad-const", "subgrad-polyak", "ista", "fista",
                                   "fista-restart"}
    assert max(res["exact_kkt_residual"].values()) < 1e-10
    m = res["methods"]
    assert m["exact"]["rel_objective_gap"] == 0.0
    for name in m:
        assert m[name]["rel_objective_gap"] >= -1e-12
    assert m["fista"]["rel_objective_gap"] < m["ista"]["rel_objective_gap"] < m["subgrad-sqrt"]["rel_objective_gap"]
    assert m["exact"]["psnr"] > res["psnr_noisy"] + 5  # denoising helps on a piecewise-constant signal
    psnrs = res["sweep"]["psnr"]
    assert len(psnrs) == 5 and max(psnrs) > max(psnrs[0], psnrs[-1])  # the U shape (an inverted one in PSNR)
    for png in ("convergence.png", "panels.png", "psnr_vs_lam.png"):
        assert (out / png).stat().st_size > 1000
    assert "fista" in r.stdout and "f* =" in r.stdout
    exact = next(line for line in r.stdout.splitlines() if line.split()[:1] == ["exact"])
    assert exact.split()[6] == "0" and not exact.split()[8].startswith("-")  # issue 29: no negative zeros in the table


def test_gaps_a_few_ulps_below_zero_print_as_zero():
    """The exact solver's duality gap ends at -9.8e-14 on tv1d (rounding): printed 0; a real gap keeps its
    digits, a clearly negative one (f* not a lower bound: a bug) keeps its sign, and nan says 'no dual'."""
    assert [denoise.gap_text(v) for v in (-9.8e-14, 0.0, 1.5e-3, -0.02, float("nan"))] == \
        ["0", "0", "1.50e-03", "-2.00e-02", "no dual"]


@pytest.fixture
def tiny_png(tmp_path):
    rng = np.random.default_rng(0)
    rgb = np.kron(rng.uniform(size=(3, 3, 3)), np.ones((8, 8, 1)))  # (24, 24, 3) blocks
    path = tmp_path / "tiny.png"
    matplotlib.image.imsave(path, rgb)
    return path


def test_tv2d_on_a_user_png(run_script, tmp_path, tiny_png):
    out = tmp_path / "tv2d"
    r = run_script(SCRIPT, "--problem", "tv2d", "--tv", "iso", "--image", tiny_png, "--methods", "fista",
                   "chambolle", "--max-iters", "300", "--ref-max-iters", "1000", "--lam-sweep", "0", "--out-dir", out)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["shape"] == [24, 24] and "psnr" in res["methods"]["fista"]
    assert res["methods"]["fista"]["rel_duality_gap"] < 1e-4
    assert res["methods"]["fista"]["primal"] < res["methods"]["chambolle"]["primal"]
    assert not (out / "psnr_vs_lam.png").exists() and "psnr_vs_lam" not in r.stdout  # --lam-sweep 0: none


def test_l1_haar_in_process(tmp_path, tiny_png):
    """The same command line through main() (no second interpreter start): one prox step is the closed form."""
    out = tmp_path / "l1"
    denoise.main(["--problem", "l1", "--basis", "haar", "--image", str(tiny_png), "--methods", "exact", "ista",
                  "subgrad-polyak", "--max-iters", "50", "--lam-sweep", "3", "--out-dir", str(out)])
    res = json.loads((out / "results.json").read_text())
    m = res["methods"]
    assert m["ista"]["iters"] == 1 and m["ista"]["primal"] == m["exact"]["primal"]  # the same arithmetic
    assert 0 < m["subgrad-polyak"]["rel_objective_gap"] < 0.5 and m["subgrad-polyak"]["rel_duality_gap"] > 0
    assert len(res["sweep"]["psnr"]) == 3


def check(argv):
    return denoise.check_config(denoise.parse_config(denoise.DenoiseConfig, argv, "denoise.py", ""))


def test_chambolle_is_isotropic_only_and_ref_iters_checked():
    """skimage's Chambolle solves isotropic TV: asked for with --tv aniso it is an error (its 'P - f*' would
    be measured on another objective), and 'all' leaves it out there."""
    with pytest.raises(UserError, match="isotropic"):
        check(["--problem", "tv2d", "--tv", "aniso", "--methods", "fista", "chambolle"])
    with pytest.raises(UserError, match="--ref-max-iters"):
        check(["--problem", "tv2d", "--ref-max-iters", "0"])
    assert check(["--problem", "tv2d", "--tv", "iso", "--methods", "chambolle"]) == ["chambolle"]
    assert "chambolle" not in check(["--problem", "tv2d", "--tv", "aniso"])


def test_tv2d_aniso_all_methods_skip_chambolle(tmp_path, tiny_png):
    argv = ["--problem", "tv2d", "--tv", "aniso", "--image", str(tiny_png), "--max-iters", "20",
            "--ref-max-iters", "200", "--lam-sweep", "0", "--out-dir", str(tmp_path)]
    cfg = denoise.parse_config(denoise.DenoiseConfig, argv, "denoise.py", "")
    res = denoise.run(cfg, denoise.check_config(cfg), progress=False)
    assert set(res["methods"]) == set(denoise.PROBLEM_METHODS["tv2d"]) - {"chambolle"}
    for name, m in res["methods"].items():  # f* is the certified lower bound D(p_ref): no method goes below it
        assert m["rel_objective_gap"] >= -1e-12, name
    assert res["methods"]["fista"]["rel_objective_gap"] < res["methods"]["subgrad-sqrt"]["rel_objective_gap"]


def test_bad_inputs_exit_2_with_one_line(run_script, run_main_here, clean_error, tmp_path):
    """Through the real command line once, then in-process (an interpreter start costs ~2 s)."""
    clean_error(run_script(SCRIPT, "--lam", "-0.5"), "--lam -0.5", "must be in [0, 1e+100]")
    bad_png = tmp_path / "broken.png"
    bad_png.write_bytes(b"not a png at all")
    nan_signal = tmp_path / "nan.npy"
    np.save(nan_signal, np.array([0.0, 1.0, np.nan, 1.0]))
    huge_signal = tmp_path / "huge.txt"
    huge_signal.write_text("0\n1e308\n-1e308\n0\n")
    for argv, needles in [(["--problem", "tv3d"], ["tv3d", "tv1d"]),
                          (["--problem", "tv2d", "--methods", "exact"], ["exact", "fista"]),
                          (["--problem", "tv2d", "--image", bad_png], ["cannot read image", "broken.png"]),
                          (["--signal", nan_signal], ["nan", "nan.npy"]),
                          # issue 28: a PSNR of log 0, an allocation error, a hang, a matplotlib tick error
                          (["--lam", "1e308"], ["--lam 1e+308", "must be in [0, 1e+100]"]),
                          (["--lam-sweep", "1e12"], ["--lam-sweep 1000000000000", "must be in"]),
                          (["--threads", "100000"], ["--threads 100000", "must be in [1, 1024]"]),
                          (["--signal", huge_signal], ["huge.txt", "1e+308", "at most 1e+100"])]:
        clean_error(run_main_here(denoise.main, [*argv, "--out-dir", tmp_path / "o"]), *needles)
    assert not (tmp_path / "o" / "results.json").exists()


def test_non_finite_lam_is_refused(run_main_here, clean_error, tmp_path):
    """--lam inf ended with f* = nan and exit 0."""
    for bad in ("inf", "nan"):
        clean_error(run_main_here(denoise.main, ["--lam", bad, "--out-dir", tmp_path]), "--lam", "finite", bad)
    assert not (tmp_path / "results.json").exists()


def test_more_flags_checked_and_commas_accepted():
    """--methods takes train.py's comma style too; a negative step (ascent), crop, seg-len or sweep size, a
    sweep or thread count beyond its bound and an empty method list are errors, each naming the range."""
    assert check(["--methods", "fista,ista", "exact"]) == ["fista", "ista", "exact"]
    for args, needle in [(["--step", "-1"], "--step"), (["--crop", "-3"], "--crop"), (["--seg-len", "0"], "--seg-len"),
                         (["--lam-sweep", "-2"], "--lam-sweep"), (["--methods", ","], "no method"),
                         (["--seed", "-1"], "--seed"), (["--n", "1000000000"], r"--n 1000000000: must be in \[2, 100000000\]"),
                         (["--lam-sweep", "5000"], r"--lam-sweep 5000: must be in \[0, 1000\]"),
                         (["--threads", "5000"], r"--threads 5000: must be in \[1, 1024\]")]:
        with pytest.raises(UserError, match=needle):
            check(args)
