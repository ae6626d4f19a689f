"""Shared test harness for the four standalone projects.

Layout
------
``tests/<project>/`` holds one project's tests, one file per script (``test_train.py`` tests ``train.py``),
and a ``conftest.py`` with that project's fixtures; it puts ``<project>/`` first on ``sys.path``, so a test
simply writes ``import model`` and gets that project's ``model.py``, exactly as the script sees it. Several
projects have a ``model.py`` and a ``train.py``, so each project's tests run in a pytest process of their
own: ``bash run.sh test`` runs the four in turn (``bash run.sh test nanogpt`` runs one), and so does
``pytest tests/nanogpt``. This file keeps only what all four share:

- ``run_script("nanogpt/train.py", "--max-iters", "5", ...)`` runs the real command line in a subprocess
  from the repository root and returns the ``CompletedProcess`` (text, stdout and stderr captured);
  ``torchrun(...)`` does the same under ``torch.distributed.run``, on one simulated node or several
  (``nnodes=3`` starts three torchrun "nodes" on 127.0.0.1).
- ``clean_error(result, "needle")``: a user mistake is exit code 2 and one line on stderr.
- ``data_dir`` is ``$DATA_DIR`` or ``../shared/data`` beside the checkout. ``shared_file("mnist/...")``
  returns a file inside it or skips the test, naming the missing file. ``tiktoken_cache`` copies the GPT-2
  BPE cache to a private folder and points ``TIKTOKEN_CACHE_DIR`` at it (tiktoken deletes cache files whose
  hash is wrong, so the shared copy is never handed out directly).

CUDA is hidden (``CUDA_VISIBLE_DEVICES=""``, in this process and every subprocess it starts) unless the run
selects the GPU tests with ``-m gpu``: the suite then behaves the same on a GPU machine as on a laptop, and
``pytest -m gpu tests/nanogpt`` is how the ``gpu``-marked tests run where there is a GPU.
Markers: ``distributed`` (several processes) and ``gpu`` (skipped where CUDA is absent).
Each process uses one CPU thread (``OMP_NUM_THREADS=1``): two-thread BLAS thrashes on a 2-core machine;
the suite runs two pytest-xdist workers instead.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = ("nanogpt", "build_nanogpt", "deep_gradients", "large_scale_optimization")


def _projects_of(args: list[str], invocation_dir: Path) -> set[str]:
    """The project folders a pytest command line reaches ({"nanogpt"} for tests/nanogpt/test_train.py)."""
    found = set()
    for arg in args:
        path = (invocation_dir / arg.split("::")[0]).resolve()
        inside = [p for p in PROJECTS if path == ROOT / "tests" / p or (ROOT / "tests" / p) in path.parents]
        found |= set(inside) if inside else (set(PROJECTS) if path in (ROOT, ROOT / "tests") else set())
    return found


def pytest_configure(config):
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # a job started in the background (`cmd &`) ignores SIGINT and its children inherit that: the tests that
        # press Ctrl-C on a script would wait in vain. Scripts started from here get Python's Ctrl-C back.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    config.addinivalue_line("markers", "distributed: starts several processes (torchrun, gloo)")
    config.addinivalue_line("markers", "gpu: needs CUDA; skipped where it is absent")
    if len(_projects_of(config.args, Path(config.invocation_params.dir))) > 1:
        pytest.exit("run one project's tests per pytest process (each has its own model.py): "
                    "bash run.sh test, or pytest tests/nanogpt", returncode=4)
    markexpr = config.getoption("markexpr", "") or ""
    if "gpu" not in markexpr or "not gpu" in markexpr:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before anything initialises CUDA; subprocesses inherit it
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run with -m gpu on a machine that has one)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# --------------------------------------------------------------------------------------------------
# running the real command lines


def _env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONPATH", None)
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def _run(cmd: list[str], env: dict | None, timeout: float, cwd: Path | None = None):
    return subprocess.run(
        cmd, cwd=cwd or ROOT, env=_env(env), capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def run_script():
    """``run_script("nanogpt/train.py", *args, env=None, timeout=300)`` -> CompletedProcess."""

    def run(script: str, *args, env: dict | None = None, timeout: float = 300):
        return _run([sys.executable, str(ROOT / script), *map(str, args)], env, timeout)

    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def torchrun():
    """``torchrun(script, *args, nproc=2, nnodes=1, env=None, timeout=300)`` -> list of CompletedProcess.

    ``nnodes=1``: one ``torchrun --standalone --nproc_per_node nproc`` process.
    ``nnodes>1``: ``nnodes`` torchrun processes on 127.0.0.1 (``--node_rank i``), ``nproc`` workers each,
    which is how a multi-node cluster is simulated on one machine. Returns one result per node.
    """

    def run(script: str, *args, nproc: int = 2, nnodes: int = 1, env=None, timeout: float = 300):
        base = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
        tail = [str(ROOT / script), *map(str, args)]
        if nnodes == 1:
            return [_run([*base, "--standalone", *tail], env, timeout)]
        port = free_port()
        procs = [
            subprocess.Popen(
                [*base, f"--nnodes={nnodes}", f"--node_rank={i}", "--master_addr=127.0.0.1",
                 f"--master_port={port}", *tail],
                cwd=ROOT, env=_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for i in range(nnodes)
        ]
        results = []
        for i, p in enumerate(procs):
            try:
                out, err = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                for q in procs:
                    q.kill()
                tails = []  # what every node had printed: a hang shows where each one stopped
                for j, q in enumerate(procs):
                    q_out, q_err = q.communicate()
                    tails.append(f"--- node {j} stdout:\n{(q_out or '')[-1500:]}\n--- node {j} stderr:\n{(q_err or '')[-1500:]}")
                pytest.fail(f"torchrun on {nnodes} nodes timed out after {timeout} s\n" + "\n".join(tails))
            results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
        return results

    return run


def assert_clean_error(result, *needles: str):
    """A user mistake: exit code 2, a one-line message on stderr naming the problem, no traceback."""
    err = result.stderr.strip()
    assert result.returncode == 2, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{err}"
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, f"expected one line on stderr, got:\n{err}"
    for needle in needles:
        assert needle.lower() in err.lower(), f"{needle!r} not in {err!r}"


@pytest.fixture(scope="session")
def clean_error():
    """``clean_error(result, "needle", ...)``: assert exit 2 and a one-line stderr containing each needle."""
    return assert_clean_error


# --------------------------------------------------------------------------------------------------
# data


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``$DATA_DIR`` or ``../shared/data`` beside the checkout (may not exist)."""
    return Path(os.environ.get("DATA_DIR", ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_file(data_dir):
    """``shared_file("mnist/t10k-labels-idx1-ubyte.gz")`` -> Path, or skip naming the missing file."""

    def get(rel: str) -> Path:
        path = data_dir / rel
        if not path.exists():
            pytest.skip(f"shared test data {path} is absent (set DATA_DIR or put shared/ beside the checkout)")
        return path

    return get


@pytest.fixture(scope="session")
def tiktoken_cache(shared_file, tmp_path_factory) -> Path:
    """A private copy of the GPT-2 BPE cache, wired through TIKTOKEN_CACHE_DIR (also for subprocesses)."""
    src = shared_file("tiktoken_cache")
    dst = tmp_path_factory.mktemp("tiktoken_cache")
    for f in src.iterdir():
        shutil.copy(f, dst / f.name)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(dst)
    return dst
