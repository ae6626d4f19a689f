"""large_scale_optimization/cli.py as every script uses it: help beside each default, no abbreviations,
"did you mean", finite floats only, one-line errors."""
import dataclasses
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bench
import bench_first_order
import denoise
import train
from cli import UserError, parse_config, run_main

CONFIGS = [(train.TrainConfig, "train.py"), (bench.BenchConfig, "bench.py"), (denoise.DenoiseConfig, "denoise.py"),
           (bench_first_order.FirstOrderBenchConfig, "bench_first_order.py")]


@pytest.mark.parametrize("cls, prog", CONFIGS)
def test_every_setting_has_help_and_its_default_parses(cls, prog):
    assert all(f.metadata.get("help") for f in dataclasses.fields(cls)), cls
    assert parse_config(cls, [], prog, "") == cls()


@pytest.mark.parametrize("argv, needle", [
    (["--lam-sw", "3"], "unknown option --lam-sw; did you mean --lam-sweep?"),  # no prefix matching
    (["--iters", "5"], "did you mean --max-iters?"),  # the old name of the iteration budget
    (["--sigma", "inf"], "expected a finite number, got 'inf'"),
    (["--lam", "nan"], "expected a finite number, got 'nan'"),
])
def test_flags_are_exact_and_numbers_finite(argv, needle):
    with pytest.raises(UserError, match=needle.replace("?", r"\?").replace("(", r"\(")):
        parse_config(denoise.DenoiseConfig, argv, "denoise.py", "")


def test_ctrl_c_is_one_line_and_exit_130(capsys):
    def main():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_:
        run_main(main)
    assert exit_.value.code == 130
    assert capsys.readouterr().err.strip().endswith(": interrupted")


def test_default_out_dirs_sit_beside_the_scripts(tmp_path, monkeypatch):
    """Without --out-dir every script writes under its own folder, not under the directory it was started
    from (the old defaults, out/..., were relative to the current directory)."""
    monkeypatch.chdir(tmp_path)
    here = Path(train.__file__).resolve().parent
    assert train.OUT_DIR == here / "out" / "lso_logreg" and bench.OUT_DIR == here / "out" / "lso_bench"
    assert denoise.OUT_DIR == here / "out" / "denoise" and bench_first_order.OUT_DIR == here / "out" / "first_order_bench"
    for cls, prog in CONFIGS:
        assert parse_config(cls, [], prog, "").out_dir is None  # None: the script's OUT_DIR


def test_scripts_started_elsewhere_write_only_under_their_out_folder(tmp_path):
    """Issue 29: train.py started from another folder wrote out/lso_logreg there. Run for real from an empty
    folder with the default --out-dir, the scripts leave that folder empty and write their own out/. They run
    from a copy of the project folder, so the test leaves the repository's out/ alone."""
    here = Path(train.__file__).resolve().parent
    project, elsewhere = tmp_path / "large_scale_optimization", tmp_path / "elsewhere"
    shutil.copytree(here, project, ignore=shutil.ignore_patterns("out", "results", "__pycache__", "*.png", "*.md"))
    elsewhere.mkdir()
    runs = {project / train.OUT_DIR.relative_to(here): ["train.py", "--methods", "gd", "--passes", "1", "--no-plots"],
            project / denoise.OUT_DIR.relative_to(here): ["denoise.py", "--n", "200", "--methods", "exact",
                                                          "--lam-sweep", "0"]}
    procs = [subprocess.Popen([sys.executable, str(project / argv[0]), *argv[1:]], cwd=elsewhere, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for argv in runs.values()]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert list(elsewhere.iterdir()) == []
    assert sorted(p.name for p in project.iterdir() if p.is_dir() and p.name != "__pycache__") == ["out"]
    for out_dir, argv in runs.items():
        res = json.loads((out_dir / "results.json").read_text())
        assert res["command"].endswith(shlex.join(["python", f"large_scale_optimization/{argv[0]}", *argv[1:]]))
