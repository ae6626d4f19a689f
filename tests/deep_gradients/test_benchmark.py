"""deep_gradients/benchmark.py: the plan of rows (CPU and GPU selection), the scaling formula, its errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import benchmark
from cli import UserError


def test_plan_and_scaling_formula():
    cfg = benchmark.parse_args(["--quick"])
    rows = benchmark.plan(cfg, n_gpus=0, cores=2)
    skipped = [r for r in rows if "skip" in r]
    assert skipped and all(r["group"] == "gpu" and "no CUDA" in r["skip"] for r in skipped)
    names = [r["name"] for r in rows if r["group"] == "cpu" and r["net"] == cfg.small]
    assert names[0].endswith("(baseline)") and any("2 processes" in n for n in names)
    gpu_rows = benchmark.plan(cfg, n_gpus=4, cores=16)
    assert any(r.get("launcher") == "torchrun" and r["workers"] == 4 and r["group"] == "gpu" for r in gpu_rows)
    fake = [dict(group="cpu", net="8x16", name="base", baseline=True, images_per_s=100.0),
            dict(group="cpu", net="8x16", name="2 procs", scale=2, images_per_s=150.0)]
    benchmark.derive(fake)
    assert fake[1]["speedup"] == pytest.approx(1.5) and fake[1]["scaling_eff"] == pytest.approx(0.75)  # T_N/(N*T_1)


def test_rows_gpu_runs_only_the_gpu_rows():
    rows = benchmark.plan(benchmark.parse_args(["--rows", "gpu"]), n_gpus=1, cores=16)
    run = [r for r in rows if "skip" not in r]
    assert run and all(r["group"] == "gpu" and "--device" in r["flags"] and "cuda" in r["flags"] for r in run)
    assert any("time to 99.5%" in r["name"] for r in run)
    cpu_only = benchmark.plan(benchmark.parse_args(["--rows", "cpu"]), n_gpus=1, cores=16)
    assert all(r["group"] == "cpu" or "skip" in r for r in cpu_only)


def test_time_to_995_row_warms_up_outside_the_timed_epochs():
    row = next(r for r in benchmark.plan(benchmark.parse_args([]), n_gpus=1, cores=2) if "99.5%" in r["name"])
    assert "--compile" in row["flags"] and "--warmup-steps" in row["flags"]
    assert int(row["flags"][row["flags"].index("--warmup-steps") + 1]) > 0


def test_gpu_rows_without_native_bf16_use_float16():
    rows = benchmark.plan(benchmark.parse_args(["--rows", "gpu"]), n_gpus=1, cores=2, bf16=False)
    run = [r for r in rows if "skip" not in r]
    assert run and not any("bfloat16" in r["flags"] for r in run)
    assert any(r["name"] == "+ bf16 autocast" and "no native bfloat16" in r["skip"] for r in rows if "skip" in r)


def test_row_that_times_out_is_skipped_not_fatal(tmp_path, monkeypatch):
    cfg = benchmark.parse_args(["--quick", "--timeout", "7"])

    def too_slow(cmd, **kw):
        raise subprocess.TimeoutExpired(cmd, kw["timeout"])

    monkeypatch.setattr(benchmark.subprocess, "run", too_slow)
    row = benchmark.plan(cfg, n_gpus=0, cores=1)[0]
    out = benchmark.run_row(row, cfg, "digits", tmp_path)  # the rows measured before it are kept
    assert "timed out after 7 s" in out["skip"] and "images_per_s" not in out


@pytest.mark.parametrize("argv,needle", [(["--max-epochs", "0"], "--max-epochs 0"), (["--dataset", "cifar"], "'cifar'"),
                                         (["--num-proc", "-1"], "--num-proc -1: must be in [0, 4096]"),
                                         (["--batch-size", "x"], "'x'"),
                                         (["--quick-subset", "0"], "--quick-subset 0"), (["--small", "18x16"], "18x16"),
                                         (["--rows", "tpu"], "--rows 'tpu'"), (["--out", "x"], "--out-dir"),
                                         (["--batch-size", "10000000"], "--batch-size 10000000: must be in [1, 65536]"),
                                         (["--big", "20x100000"], "20x100000")])
def test_bad_option_is_one_line_before_any_row(argv, needle):
    with pytest.raises(UserError) as e:  # parse_args runs before the first row: no row is started
        benchmark.parse_args(["--quick", *argv])
    assert len(str(e.value).splitlines()) == 1 and needle in str(e.value), str(e.value)


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--help"])
    flat = " ".join(capsys.readouterr().out.split())
    assert "training images per worker with --quick (default: 1024)" in flat and "(default: 8x16)" in flat


def test_gpu_util_that_could_not_be_read_is_explained_in_the_report(tmp_path):
    cfg = benchmark.parse_args(["--out-dir", str(tmp_path)])
    why = "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    rows = [dict(group="gpu", net="8x16", name="1 GPU, fp32 (baseline)", baseline=True, images_per_s=5000.0,
                 epoch_time_s=1.0, gpu_util=None, mfu=0.1, peak_mem_mb=300.0, gpu_util_problem=why)]
    benchmark.write_report(rows, cfg, "digits", dict(machine="m", load_start=0.0, load_end=0.0, date="d"))
    text = (tmp_path / "benchmark.md").read_text()
    assert f"GPU util % not measured: {why}" in text  # not a silently empty column
    assert json.loads((tmp_path / "benchmark.json").read_text())["rows"][0]["gpu_util_problem"] == why


def test_auto_dataset_picks_mnist_only_when_all_four_files_are_there(tmp_path):
    """--dataset auto: mnist when --data-dir holds every file train.py reads, else the offline digits."""
    names = [name for name, _ in benchmark.mnist.MNIST_FILES.values()]
    for name in names[:-1]:
        (tmp_path / name).write_bytes(b"")
    assert not benchmark.mnist_available(str(tmp_path))  # a label file missing: every mnist row would fail
    (tmp_path / names[-1]).write_bytes(b"")
    assert benchmark.mnist_available(str(tmp_path))
    assert not benchmark.mnist_available(str(tmp_path / "elsewhere"))


def test_outputs_go_under_out_never_beside_the_script_or_the_working_directory(tmp_path, monkeypatch):
    """By default the report goes to deep_gradients/out/benchmark (git-ignored), from any working directory: never
    over the committed results, never into the folder the command was started from."""
    here = Path(benchmark.__file__).resolve().parent
    monkeypatch.chdir(tmp_path)
    out, runs = benchmark.folders(benchmark.parse_args([]))
    assert out == here / "out" / "benchmark" and runs == out / "runs"
    assert benchmark.folders(benchmark.parse_args(["--out-dir", "b"])) == (Path("b"), Path("b") / "runs")
    cmd = [sys.executable, str(benchmark.TRAIN), "--out-dir", str(runs / "00"), "--dtype", "float32"]
    assert benchmark.shown(cmd) == "python deep_gradients/train.py --out-dir deep_gradients/out/benchmark/runs/00 " \
                                   "--dtype float32"  # no path of this machine in a committed benchmark.json


def test_a_benchmark_whose_rows_are_all_skipped_still_writes_its_report(tmp_path, monkeypatch):
    """`--rows gpu` on a machine without CUDA: every row skipped, and the report says so (it used to end in a
    FileNotFoundError traceback: the report was written only after a measured row). Its config names the
    folders from the repository's root, whatever the working directory."""
    monkeypatch.chdir(tmp_path)
    benchmark.measure(benchmark.parse_args(["--rows", "gpu", "--out-dir", "b"]))
    saved = json.loads((tmp_path / "b" / "benchmark.json").read_text())
    assert saved["rows"] and all("no CUDA device" in r["skip"] for r in saved["rows"])
    up = os.path.relpath(tmp_path, Path(benchmark.__file__).resolve().parents[1])
    assert (saved["config"]["out_dir"], saved["config"]["runs_dir"]) == (f"{up}/b", "")
    assert "no CUDA device" in (tmp_path / "b" / "benchmark.md").read_text()


def test_a_benchmark_cut_short_keeps_the_rows_it_measured(tmp_path, monkeypatch):
    """A time limit or Ctrl-C during row 2: benchmark.json and .md already hold row 1, row 2 listed as not run."""
    rows = [dict(group="cpu", net="8x16", name=f"row {i}", flags=[], workers=1, launcher="python", threads=1,
                 baseline=i == 0) for i in range(2)]
    monkeypatch.setattr(benchmark, "plan", lambda *a, **k: [dict(r) for r in rows])

    def run_row(r, cfg, dataset, run_dir):
        if r["name"] == "row 1":
            raise KeyboardInterrupt
        return {**r, "images_per_s": 100.0, "epoch_time_s": 1.0, "cmd": "python deep_gradients/train.py"}

    monkeypatch.setattr(benchmark, "run_row", run_row)
    with pytest.raises(KeyboardInterrupt):
        benchmark.measure(benchmark.parse_args(["--quick", "--rows", "cpu", "--out-dir", str(tmp_path)]))
    saved = json.loads((tmp_path / "benchmark.json").read_text())["rows"]
    assert saved[0]["images_per_s"] == 100.0 and saved[1]["skip"].startswith("not run")
    assert "| cpu | 8x16 | row 0 | 100 |" in (tmp_path / "benchmark.md").read_text()
