"""Repository rules: four standalone folders with one dialect (identical cli.py and files.py, one MFU table), no
torchvision, a torch pin that keeps the CPU wheel, and READMEs whose dependency order is the real one."""
import ast
import hashlib
import importlib.metadata
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECTS, ROOT


def project_files(project):
    return sorted((ROOT / project).glob("*.py"))


def imported_top_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def all_py_files():
    return [p for p in ROOT.rglob("*.py") if ".venv" not in p.parts and ".git" not in p.parts]


def test_layout():
    for item in (*PROJECTS, "tests", "requirements.txt", "README.md", "LICENSE", ".ci/run"):
        assert (ROOT / item).exists(), item
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    for project in PROJECTS:
        assert (ROOT / project / "train.py").exists(), f"{project}/train.py"
        assert (ROOT / project / "model.py").exists(), f"{project}/model.py"


def test_no_torchvision_anywhere():
    offenders = [str(p) for p in all_py_files() if "torchvision" in imported_top_names(p)]
    assert not offenders, offenders
    assert "torchvision" not in re.sub(r"#.*", "", (ROOT / "requirements.txt").read_text())


@pytest.mark.parametrize("project", PROJECTS)
def test_projects_do_not_import_each_other(project):
    own = {p.stem for p in project_files(project)}
    others = {p.stem for q in PROJECTS if q != project for p in project_files(q)} - own
    for path in project_files(project):
        bad = imported_top_names(path) & (others | set(PROJECTS))
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)} from another project folder"


@pytest.mark.parametrize("project", PROJECTS)
def test_no_module_shadows_the_standard_library_or_a_dependency(project):
    # the folder is sys.path[0] when its scripts run: an `inspect.py` there would break `import torch`,
    # a `datasets.py` would hide Hugging Face datasets
    installed = set(importlib.metadata.packages_distributions())
    clash = {p.stem for p in project_files(project)} & (set(sys.stdlib_module_names) | installed)
    assert not clash, f"{project}/ shadows the standard library or an installed package: {sorted(clash)}"


def test_torch_pin_admits_the_cpu_wheel_and_nothing_newer():
    from packaging.requirements import Requirement

    line = next(l for l in (ROOT / "requirements.txt").read_text().splitlines() if l.startswith("torch"))
    spec = Requirement(line).specifier
    assert spec.contains("2.13.0") and spec.contains("2.13.0+cpu")
    assert not spec.contains("2.13.1") and not spec.contains("2.14.0")


def test_each_projects_model_and_train_import_without_side_effects():
    """Every project has a model.py and a train.py: each imports from its own folder, runs nothing, prints nothing."""
    for project in PROJECTS:
        code = ("import sys; sys.path.insert(0, sys.argv[1]); import model, train; "
                "print(model.__file__); print(train.__file__)")
        out = subprocess.run([sys.executable, "-c", code, str(ROOT / project)], capture_output=True, text=True,
                             timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
        assert out.returncode == 0, out.stderr
        assert [Path(line).parent for line in out.stdout.splitlines()] == [ROOT / project] * 2, out.stdout


@pytest.mark.parametrize("args", [["tests"], [], ["tests/nanogpt", "tests/deep_gradients/test_model.py"]])
def test_one_pytest_process_per_project(args):
    """Each project has its own model.py: a pytest run that reaches two projects is refused with the advice."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 4 and "run one project's tests per pytest process" in out.stdout + out.stderr, (
        out.returncode, out.stdout[-500:], out.stderr[-500:])


def test_tests_need_no_module_juggling():
    """No conftest edits sys.modules and no test module imports another: each project's tests stand alone."""
    for path in (ROOT / "tests").rglob("*.py"):
        text = path.read_text()
        if path.name == "conftest.py":  # a test may still hide a module with monkeypatch.setitem(sys.modules, ...)
            assert "sys.modules" not in text, path
        assert not re.search(r"^\s*(from|import) test_", text, re.M), path


# ---- what a reader relies on --------------------------------------------------------------------------
MAX_FUNCTION_LINES = 80  # a function a reader holds in their head; files have no cap (the path matters, not size)


@pytest.mark.parametrize("project", PROJECTS)
def test_functions_stay_short(project):
    for path in project_files(project):
        rel = path.relative_to(ROOT)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                assert n <= MAX_FUNCTION_LINES, f"{rel}:{node.lineno} {node.name}() is {n} lines"


@pytest.mark.parametrize("name", ["cli.py", "files.py"])
def test_the_copied_helpers_are_identical_in_every_folder(name):
    """Each folder keeps its own copy (no code is shared between folders), and the copies are one file: a
    reader learns one dialect, and a fix reaches every project."""
    digests = {p: hashlib.sha256((ROOT / p / name).read_bytes()).hexdigest()[:12] for p in PROJECTS}
    assert len(set(digests.values())) == 1, f"{name} differs between folders: {digests}"


def _peak_tables() -> dict[str, dict[str, dict[str, float]]]:
    """Each folder's PEAK_FLOPS (hardware.py), as {gpu: {precision: FLOP/s}}; deep_gradients keeps
    (16-bit, tf32) pairs."""
    tables = {}
    for project in PROJECTS:
        path = ROOT / project / "hardware.py"
        if not path.exists():
            continue
        for node in ast.parse(path.read_text()).body:
            target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign) else None)
            if isinstance(target, ast.Name) and target.id == "PEAK_FLOPS":
                table = ast.literal_eval(node.value)
                tables[project] = {gpu: v if isinstance(v, dict) else {"bf16": v[0], "fp16": v[0], "tf32": v[1]}
                                   for gpu, v in table.items()}
    return tables


def test_the_peak_flops_tables_agree_where_they_overlap():
    """MFU means the same in every project: a GPU listed in two folders has the same datasheet figures, and a
    precision one table leaves out (no datasheet rate) is not made up in another."""
    tables = _peak_tables()
    assert len(tables) >= 3, sorted(tables)
    for a, b in itertools.combinations(tables, 2):
        for gpu in tables[a].keys() & tables[b].keys():
            ta, tb = tables[a][gpu], tables[b][gpu]
            shared = ("bf16", "fp16", "tf32") if "deep_gradients" in (a, b) else ("bf16", "fp16", "tf32", "fp32")
            for precision in shared:
                assert ta.get(precision) == tb.get(precision), (gpu, precision, a, ta, b, tb)


def _readme_file_order(project: str) -> list[str] | None:
    """The module names of the README's file table, in order, if it says each file imports only those above."""
    text = (ROOT / project / "README.md").read_text()
    if "imports only files above it" not in text:
        return None
    table = text.split("imports only files above it", 1)[1].split("\n\n", 2)[1]
    return [m for row in table.splitlines() if row.startswith("|") for m in re.findall(r"`(\w+)\.py`", row.split("|")[1])]


@pytest.mark.parametrize("project", PROJECTS)
def test_the_readmes_dependency_order_is_the_real_one(project):
    """Where a README lists its files in dependency order, no file imports one listed below it."""
    order = _readme_file_order(project)
    if order is None:
        pytest.skip(f"{project}/README.md states no dependency order")
    own = {p.stem for p in project_files(project)}
    assert set(order) == own, f"the table lists {sorted(set(order) - own)} but not {sorted(own - set(order))}"
    for i, name in enumerate(order):
        below = set(order[i + 1:])
        bad = imported_top_names(ROOT / project / f"{name}.py") & below
        assert not bad, f"{project}/{name}.py imports {sorted(bad)}, listed below it in the README"


@pytest.mark.parametrize("project", PROJECTS)
def test_one_command_line_idiom_per_folder(project):
    """One argparse subclass per folder, in its cli.py; every script parses through it."""
    subclasses = [(p.name, node.name) for p in project_files(project) for node in ast.walk(ast.parse(p.read_text()))
                  if isinstance(node, ast.ClassDef) and any("ArgumentParser" in ast.unparse(b) for b in node.bases)]
    assert subclasses == [("cli.py", "Parser")], subclasses
    for path in project_files(project):
        if path.name != "cli.py":
            assert "argparse.ArgumentParser(" not in path.read_text(), f"{path.name} builds its own parser"


@pytest.mark.parametrize("project", PROJECTS)
def test_run_main_exit_codes(project):
    """The same contract in every folder: 0 for a result of any kind, an int is the code, a user mistake 2 with
    one line, Ctrl-C 130 with one line."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import cli\n"
            "def main(kind):\n"
            "    if kind == 'dict': return {'a': 1}\n"
            "    if kind == 'three': return 3\n"
            "    if kind == 'user': raise cli.UserError('bad --x 5; allowed: 1..4')\n"
            "    if kind == 'ctrl-c': raise KeyboardInterrupt\n"
            "cli.run_main(main, sys.argv[2])\n")
    for kind, rc, stderr in [("dict", 0, ""), ("three", 3, ""), ("none", 0, ""),
                             ("user", 2, "error: bad --x 5; allowed: 1..4"), ("ctrl-c", 130, "interrupted")]:
        out = subprocess.run([sys.executable, "-c", code, str(ROOT / project), kind], capture_output=True, text=True,
                             timeout=60, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
        assert out.returncode == rc, (kind, out.returncode, out.stderr)
        assert stderr in out.stderr and len(out.stderr.strip().splitlines()) == (1 if stderr else 0), (kind, out.stderr)
