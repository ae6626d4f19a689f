"""Shared test harness for the four standalone projects.

How tests reach a project's code
--------------------------------
Every project is run as a script (``python nanogpt/train.py``), so its folder is its import root and
several folders hold a ``model.py`` or a ``train.py``. Two ways in, and only these two:

1. ``load_module("nanogpt", "model")`` (fixture) imports ``nanogpt/model.py`` with ``nanogpt/`` first on
   ``sys.path``, exactly as the script would see it, and returns the module. Before it does, it parks
   the bare-named modules of the *other* project folders (out of ``sys.modules``) and brings back this
   project's, so ``deep_gradients``'s ``model`` can never stand in for ``nanogpt``'s and each project's
   modules stay single objects (pickling and multiprocessing keep working). Modules already handed
   out keep working (they hold their own references). Project modules must therefore import their
   siblings at the top of the file, never lazily inside a function. Test files are named
   ``test_<project>_*.py`` (``test_lso_*`` for large_scale_optimization); before each test, an autouse
   fixture makes that project's modules the active ones again.
2. ``run_script("nanogpt/train.py", "--max-iters", "5", ...)`` (fixture) runs the real command line in a
   subprocess from the repository root and returns the ``CompletedProcess`` (text, stdout and stderr
   captured). ``torchrun(...)`` does the same under ``torch.distributed.run``, on one simulated node or
   several (``nnodes=3`` starts three torchrun "nodes" on 127.0.0.1).

Data
----
``data_dir`` is ``$DATA_DIR`` or ``../shared/data`` beside the checkout. ``shared_file("mnist/...")``
returns a file inside it or skips the test, naming the missing file. ``tiktoken_cache`` copies the GPT-2
BPE cache to a private folder and points ``TIKTOKEN_CACHE_DIR`` at it (tiktoken deletes cache files whose
hash is wrong, so the shared copy is never handed out directly).

Markers: ``distributed`` (several processes) and ``gpu`` (skipped where CUDA is absent).
Each process uses one CPU thread (``OMP_NUM_THREADS=1``): two-thread BLAS thrashes on a 2-core machine;
the suite runs two pytest-xdist workers instead.
"""
from __future__ import annotations

import functools
import importlib
import os
import shutil
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
import torch  # noqa: E402

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = ("nanogpt", "build_nanogpt", "deep_gradients", "large_scale_optimization")
_PROJECT_DIRS = {(ROOT / p).resolve(): p for p in PROJECTS}
_loaded: dict[tuple[str, str], object] = {}
_parked: dict[str, dict[str, object]] = {}  # project -> its modules while another project is active


def pytest_configure(config):
    config.addinivalue_line("markers", "distributed: starts several processes (torchrun, gloo)")
    config.addinivalue_line("markers", "gpu: needs CUDA; skipped where it is absent")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


# --------------------------------------------------------------------------------------------------
# importing a project's modules


@functools.lru_cache(maxsize=None)
def _owner_of_file(file: str) -> str | None:
    return _PROJECT_DIRS.get(Path(file).resolve().parent)


def _owner(module) -> str | None:
    file = getattr(module, "__file__", None)
    return _owner_of_file(file) if isinstance(file, str) else None


def _activate(project: str) -> None:
    """Park the bare-named modules of the other projects (out of sys.modules), bring back this one's.

    `import model` inside nanogpt/train.py then finds nanogpt's model, the same object that
    load_module("nanogpt", "model") handed out, and `sys.modules[cls.__module__]` (used by pickle,
    multiprocessing and inspect) is the module that defined cls.
    """
    for mod_name, mod in list(sys.modules.items()):
        owner = _owner(mod)
        if owner and owner != project:
            _parked.setdefault(owner, {})[mod_name] = sys.modules.pop(mod_name)
    sys.modules.update(_parked.pop(project, {}))


def _load_module(project: str, name: str):
    if project not in PROJECTS:
        raise ValueError(f"unknown project {project!r}; one of {PROJECTS}")
    _activate(project)
    key = (project, name)
    if key not in _loaded:
        folder = str((ROOT / project).resolve())
        sys.path.insert(0, folder)
        try:
            _loaded[key] = importlib.import_module(name)
        finally:
            sys.path.remove(folder)
    return _loaded[key]


_TEST_PREFIXES = {"test_build_nanogpt_": "build_nanogpt", "test_nanogpt_": "nanogpt",
                  "test_deep_gradients_": "deep_gradients", "test_lso_": "large_scale_optimization"}


@pytest.fixture(autouse=True)
def _active_project(request):
    """Before each test, make the project its file is named after the active one (see _activate)."""
    for prefix, project in _TEST_PREFIXES.items():
        if request.path.name.startswith(prefix):
            _activate(project)
            break


@pytest.fixture(scope="session")
def load_module():
    """``load_module(project, name)`` -> the module ``project/name.py``, imported as its script sees it."""
    return _load_module


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
