"""Every project's main scripts, run from another working directory with their quickest settings, write only
under their own folder's out/ (or data/, where a dataset is prepared) or the --out-dir they are given: never into
a committed file, never into the working directory (issue 29: "outputs where the README says").

Each test copies one project folder (without its out/ and data/) and the repository's .gitignore into a fresh
git repository, so that the runs neither race the other work going on in this checkout nor depend on it, and
runs the real scripts of that copy from an empty working directory. After every script it checks:
- the copy's files: every new or changed path lies under PROJECT/out/ or PROJECT/data/ (git-ignored or not;
  `git status` alone would not see a write into another ignored folder such as out-tiny/);
- `git status --porcelain` of the copy is empty: no committed file changed, no file git would show;
- the working directory is still empty.
Files outside the copy and the working directory (the user's caches) are not watched.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
ALLOWED = ("out", "data")  # the git-ignored folders a script may write into, under its own project folder


def snapshot(tree: Path) -> dict:
    """relative path -> (size, mtime in ns) of every file under tree, .git left out."""
    files = {}
    for folder, dirs, names in os.walk(tree):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in names:
            st = os.lstat(os.path.join(folder, name))
            files[os.path.relpath(os.path.join(folder, name), tree)] = (st.st_size, st.st_mtime_ns)
    return files


class Repo:
    """A git repository holding one copied project folder; `run(script, *args)` runs the copy's script from an
    empty working directory and checks what it wrote."""

    def __init__(self, project: str, tmp: Path):
        self.project, self.root, self.cwd = project, tmp / "repo", tmp / "elsewhere"
        shutil.copytree(ROOT / project, self.root / project,
                        ignore=shutil.ignore_patterns("out", "out-*", "data", "__pycache__", ".lock"))
        shutil.copy(ROOT / ".gitignore", self.root / ".gitignore")
        self.cwd.mkdir()
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(self.root)]
        for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "copy"]):
            subprocess.run(git + cmd, check=True, capture_output=True)
        self.before = snapshot(self.root)

    def run(self, script: str, *args, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        environ = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1",
                   "PYTHONUNBUFFERED": "1", **(env or {})}
        environ.pop("PYTHONPATH", None)
        cmd = [sys.executable, str(self.root / self.project / script), *map(str, args)]
        r = subprocess.run(cmd, cwd=self.cwd, env=environ, capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"{script} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        self.check(script)
        return r

    def written(self) -> list[str]:
        """Paths new or changed since the last check."""
        now = snapshot(self.root)
        changed = sorted(p for p, st in now.items() if self.before.get(p) != st)
        changed += sorted(f"{p} (deleted)" for p in self.before if p not in now)
        self.before = now
        return changed

    def check(self, script: str) -> None:
        allowed = tuple(f"{self.project}/{a}/" for a in ALLOWED)
        outside = [p for p in self.written() if not p.startswith(allowed)]
        assert not outside, f"{script} wrote outside {self.project}/out/ and the given --out-dir: {outside}"
        status = subprocess.run(["git", "-C", str(self.root), "status", "--porcelain"], capture_output=True,
                                text=True, check=True).stdout
        assert status == "", f"git status after {script}:\n{status}"
        assert not any(self.cwd.iterdir()), f"{script} wrote into the working directory: {list(self.cwd.iterdir())}"

    def out(self, *parts) -> Path:
        return self.root / self.project / "out" / Path(*parts)


def test_nanogpt_train_and_sample_write_under_out(tmp_path, shared_file):
    """train.py with no --out-dir writes nanogpt/out/demo (its --help's default); the dataset it prepares goes
    to nanogpt/data/; sample.py reads out/demo by default and writes nothing."""
    source = shared_file("tinyshakespeare/input.txt")
    repo = Repo("nanogpt", tmp_path)
    repo.run("train.py", "--dataset", "shakespeare_char", "--data-source", source, "--n-layer", 1, "--n-head", 2,
             "--n-embd", 16, "--block-size", 16, "--batch-size", 4, "--max-iters", 3, "--warmup-iters", 1,
             "--eval-iters", 1, "--eval-interval", 0, "--final-eval-tokens", 64, "--num-samples", 0,
             "--save-epochs", "", "--device", "cpu", "--dtype", "float32", "--no-compile")
    assert (repo.out("demo", "results.json")).is_file()
    r = repo.run("sample.py", "--num-samples", 1, "--max-new-tokens", 4, "--device", "cpu")
    assert r.stdout.strip()


def test_build_nanogpt_shards_and_tiny_train_write_under_out(tmp_path, shared_file, tiktoken_cache):
    """fineweb.py writes its shards into the --out-dir given; train.py --preset tiny with no --out-dir writes
    build_nanogpt/out/tiny (the preset's folder, as --help says)."""
    text = shared_file("tinyshakespeare/input.txt").read_text()[:20_000]
    src = tmp_path / "shakespeare.jsonl"
    src.write_text("".join(json.dumps({"text": p}) + "\n" for p in text.split("\n\n")))
    shards = tmp_path / "shards"
    repo = Repo("build_nanogpt", tmp_path)
    repo.run("fineweb.py", "--source", src, "--out-dir", shards, "--shard-size", 2000, "--num-proc", 1)
    assert sorted(p.suffix for p in shards.iterdir() if p.suffix == ".npy")
    repo.run("train.py", "--preset", "tiny", "--data-dir", shards, "--n-layer", 1, "--n-head", 2, "--n-embd", 16,
             "--block-size", 16, "--batch-size", 2, "--total-batch", 64, "--warmup-iters", 1, "--max-iters", 3,
             "--eval-iters", 1, "--num-samples", 0, "--hellaswag-limit", 0, "--eval-interval", 0,
             "--device", "cpu", "--no-compile")
    assert (repo.out("tiny", "ckpt.pt")).is_file()


def test_deep_gradients_train_benchmark_and_report_write_under_out(tmp_path):
    """train.py (offline digits) with no --out-dir writes deep_gradients/out; analyze.py's report goes inside the
    run's folder; benchmark.py writes deep_gradients/out/benchmark, never its committed results/ (here only
    the report: on a machine without CUDA `--rows gpu` skips every row, the quickest whole run)."""
    repo = Repo("deep_gradients", tmp_path)
    repo.run("train.py", "--train-subset", 64, "--max-epochs", 1, "--depth", 8, "--width", 4, "--batch-size", 32,
             "--record-interval", 1, "--device", "cpu", "--no-progress")
    assert (repo.out("results.json")).is_file()
    repo.run("analyze.py", repo.out(), "--n-images", 64)
    assert (repo.out("report", "report.md")).is_file()
    repo.run("benchmark.py", "--rows", "gpu", env={"CUDA_VISIBLE_DEVICES": ""})
    assert (repo.out("benchmark", "benchmark.json")).is_file()


def test_large_scale_optimization_scripts_write_under_out(tmp_path):
    """train.py, bench.py and denoise.py with no --out-dir write under large_scale_optimization/out/."""
    repo = Repo("large_scale_optimization", tmp_path)
    repo.run("train.py", "--dataset", "synthetic", "--n", 300, "--d", 5, "--classes", 3, "--methods", "gd,newton",
             "--passes", 2)
    repo.run("bench.py", "--dataset", "synthetic", "--solvers", "newton_pcg")
    repo.run("denoise.py", "--problem", "tv1d", "--n", 200, "--seg-len", 20, "--max-iters", 20, "--methods", "fista",
             "--lam-sweep", 0)
    assert {p.name for p in repo.out().iterdir()} >= {"lso_logreg", "lso_bench", "denoise"}


def test_large_scale_optimization_bench_first_order_writes_under_out(tmp_path):
    """bench_first_order.py with no --out-dir writes large_scale_optimization/out/first_order_bench, not the
    committed results/ it is quoted from."""
    repo = Repo("large_scale_optimization", tmp_path)
    repo.run("bench_first_order.py", "--dataset", "digits", "--lam", "1e-2", "--contenders", "saga,sgd",
             "--passes", 2, "--epochs", "5", "--targets", "1e-2")
    assert (repo.out("first_order_bench")).is_dir()
