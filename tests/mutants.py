"""Tests of the tests: each mutant below is a deliberate bug, the shape of a real one, and names the test that
must catch it. This script applies each mutant to a scratch copy of its project, runs that test there (and,
first, on the unchanged copy: a test that fails anyway catches nothing), and writes what happened to
tests/mutants.json with the command, machine and date.

    python tests/mutants.py                     # every mutant (a few minutes)
    python tests/mutants.py --only ng-ddp-loss  # one
    python tests/mutants.py --list

A mutant is (name, project file, the exact text it replaces, its replacement, what the bug is, the test that
must fail). The text must occur exactly once in the file: a mutant that no longer applies is reported, not
skipped, so the list is kept in step with the code.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

T = "tests/"
MUTANTS = [
    # (name, file, old, new, bug, test that must fail)
    # ---- the five deliberate bugs of issue 26 ----
    ("ng-ddp-step-loss-summed", "nanogpt/train.py", "        stats[0] /= run.world_size\n", "",
     "DDP's per-step logged loss summed over ranks instead of averaged", T + "nanogpt/test_train_ddp.py -k two_processes_match_one"),
    ("ng-export-eps-fixed", "nanogpt/export.py", '"layer_norm_epsilon": model.layer_norm_eps',
     '"layer_norm_epsilon": 1e-5', "export writes layer_norm_epsilon 1e-5 whatever the model's",
     T + "nanogpt/test_export.py -k non_default_layer_norm_epsilon"),
    ("ng-cosine-to-zero", "nanogpt/train.py", "min_lr = cfg.learning_rate * cfg.min_lr_ratio", "min_lr = 0.0",
     "the cosine schedule decays to 0 instead of min_lr_ratio (10%) of the peak", T + "nanogpt/test_train.py -k lr_schedule"),
    ("dg-signal-save-unchecked", "deep_gradients/train.py",
     "    if not math.isfinite(p.loss_sum) or not checkpoint.finite(t.raw_model):\n        raise Diverged(",
     "    if False:\n        raise Diverged(", "a checkpoint saved (on a signal) without the finite-weights check",
     T + "deep_gradients/test_train.py -k finite"),
    ("lso-svrg-average-t+1", "large_scale_optimization/solvers.py", "W_avg / t)", "W_avg / (t + 1))",
     "SVRG's average snapshot divides by t + 1", T + "large_scale_optimization/test_solvers.py -k average"),
    # ---- the loudest claims of build_nanogpt's speedrun ladder (issue 27) ----
    ("bn-muon-coefficients", "build_nanogpt/muon.py", "NS_COEFFS = (3.4445, -4.7750, 2.0315)",
     "NS_COEFFS = (3.4445, -4.7750, 2.3315)", "a wrong Newton-Schulz coefficient (singular values leave the band)",
     T + "build_nanogpt/test_muon.py"),
    ("bn-rotary-sign", "build_nanogpt/modern.py", "return torch.cat((x1 * cos + x2 * sin, -x1 * sin + x2 * cos), dim=-1)",
     "return torch.cat((x1 * cos + x2 * sin, x1 * sin + x2 * cos), dim=-1)",
     "rotary's second half with the wrong sign (no longer a rotation)",
     T + "build_nanogpt/test_modern.py -k rotary"),
    ("bn-window-off-by-one", "build_nanogpt/modern.py", "return (j <= i) & (i - j < window)",
     "return (j <= i) & (i - j <= window)", "the sliding window lets a query see one key too far back",
     T + "build_nanogpt/test_modern.py -k window"),
    ("bn-softcap-clamp", "build_nanogpt/modern.py", "logits = c.softcap * torch.tanh(logits / c.softcap)",
     "logits = logits.clamp(-2 * c.softcap, 2 * c.softcap)", "the logit soft-cap replaced by a looser clamp",
     T + "build_nanogpt/test_modern.py -k softcap"),
    # ---- what the READMEs claim most loudly ----
    ("ng-resume-forgets-position", "nanogpt/checkpoint.py", 'ckpt["epoch"], ckpt["epoch_step"], list(', 'ckpt["epoch"], 0, list(',
     "a resumed run restarts its epoch's data order from the first step", T + "nanogpt/test_train_resume.py -k bitwise"),
    ("ng-accum-not-averaged", "nanogpt/train.py", "loss = loss / accum  #", "loss = loss  #",
     "gradient accumulation sums the micro-steps' gradients instead of averaging them",
     T + "nanogpt/test_train.py -k accumulate"),
    ("dg-mfu-3x-again", "deep_gradients/train.py", "t.flops_per_image / peak", "3 * t.flops_per_image / peak",
     "MFU counts the backward pass twice (the bug of issue 25)", T + "deep_gradients/test_train.py -k mfu"),
    ("lso-saga-table-mean-stale", "large_scale_optimization/solvers.py", "    G += delta_g / A.shape[0]\n", "",
     "SAGA's stored-gradient mean not updated with the table", T + "large_scale_optimization/test_solvers.py -k saga"),
    ("bn-muon-no-nesterov", "build_nanogpt/muon.py", 'update = g.add(buf, alpha=mu) if group["nesterov"] else buf',
     "update = buf", "Muon's Nesterov momentum dropped", T + "build_nanogpt/test_muon.py -k nesterov"),
    # ---- the shared helpers (issue 24) ----
    ("common-lock-not-exclusive", "nanogpt/files.py", "            os.link(tmp, self.path)\n            return True",
     "            if self.path.exists():\n                raise FileExistsError\n            os.replace(tmp, self.path)\n"
     "            return True", "the lock created by check-then-rename instead of an exclusive link",
     T + "test_common.py -k same_instant"),
    ("common-range-hi-ignored", "nanogpt/cli.py", "(hi is not None and value > hi)", "False",
     "a knob's upper bound not checked", T + "test_common.py -k range"),
    # ---- nanogpt README claims (issue 26, second pass) ----
    # ---- build_nanogpt README claims (issue 26, second pass) ----
    # ---- deep_gradients README claims (issue 26, second pass) ----
    # ---- large_scale_optimization README claims (issue 26, second pass) ----
]


def copy_project(project: str, into: Path) -> Path:
    """The project folder, its tests and the root test files, as the test runner sees them."""
    repo = into / "repo"
    shutil.copytree(ROOT / project, repo / project, ignore=shutil.ignore_patterns("out", "data", "__pycache__"))
    shutil.copytree(ROOT / "tests" / project, repo / "tests" / project, ignore=shutil.ignore_patterns("__pycache__"))
    for path in (ROOT / "tests").glob("*.py"):  # the root conftest and the repository-wide tests
        shutil.copy2(path, repo / "tests" / path.name)
    return repo


def run_test(repo: Path, test: str) -> tuple[int, float, str]:
    env = {**os.environ, "DATA_DIR": os.environ.get("DATA_DIR", str(ROOT.parent / "shared" / "data")),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *test.split()],
                       cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    tail = (r.stdout + r.stderr).strip().splitlines()[-1:] or [""]
    return r.returncode, round(time.monotonic() - start, 1), tail[0]


def try_mutant(name: str, path: str, old: str, new: str, bug: str, test: str) -> dict:
    project = path.split("/")[0]
    record = {"name": name, "file": path, "bug": bug, "test": test}
    with tempfile.TemporaryDirectory() as tmp:
        repo = copy_project(project, Path(tmp))
        source = (repo / path).read_text()
        if source.count(old) != 1:
            return {**record, "outcome": f"does not apply ({source.count(old)} matches): update the mutant"}
        code, seconds, tail = run_test(repo, test)
        if code != 0:
            return {**record, "outcome": "the test fails without the mutant", "detail": tail}
        (repo / path).write_text(source.replace(old, new))
        code, seconds, tail = run_test(repo, test)
    caught = code == 1
    return {**record, "outcome": "caught" if caught else f"missed (pytest exit {code})", "seconds": seconds,
            "detail": tail}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="mutant names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--out", default=str(ROOT / "tests" / "mutants.json"))
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.only or m[0] in args.only]
    if args.list or not chosen:
        for m in MUTANTS:
            print(f"{m[0]:28s} {m[1]}: {m[4]}")
        return 0 if args.list else 2
    records = []
    for i, m in enumerate(chosen, 1):
        record = try_mutant(*m)
        records.append(record)
        print(f"[{i}/{len(chosen)}] {record['name']}: {record['outcome']}", flush=True)
    caught = sum(r["outcome"] == "caught" for r in records)
    doc = {"command": "python tests/mutants.py" + (f" --only {' '.join(args.only)}" if args.only else ""),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
           "date": datetime.date.today().isoformat(), "caught": caught, "tried": len(records), "mutants": records}
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"{caught} of {len(records)} mutants caught; {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0 if caught == len(records) else 1


if __name__ == "__main__":
    sys.exit(main())
