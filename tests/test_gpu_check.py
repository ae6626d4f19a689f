"""gpu_check.sh (`bash run.sh gpu`): Ctrl-C stops it within seconds with the summary of what ran and nothing left
running; $OUT holds only what a GPU lease copies back; a step's figures come from the file it names.
The whole dry run is CI's (.ci/run), not a test here: it takes minutes."""
import fcntl
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def holding(entry: bytes) -> list[int]:
    """The processes whose environment holds this NAME=value entry."""
    pids = []
    for path in Path("/proc").glob("[0-9]*/environ"):
        try:
            if entry in path.read_bytes().split(b"\0"):
                pids.append(int(path.parent.name))
        except OSError:  # ended meanwhile, or another user's
            pass
    return pids


def source(snippet: str, **env) -> subprocess.CompletedProcess:
    """Run bash code after sourcing gpu_check.sh (its functions only: sourced, it runs nothing)."""
    return subprocess.run(["bash", "-c", f"source gpu_check.sh; {snippet}"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PY": sys.executable, **env}, timeout=60)


def test_ctrl_c_stops_the_dry_run_with_the_summary_so_far(tmp_path, shared_file):
    shared_file("mnist")
    entry = f"GPU_CHECK_TEST={uuid.uuid4().hex}"  # inherited by every process the run starts, torchrun's workers too
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "GPU_CHECK_WORK": str(tmp_path / "work"),
           "GPU_CHECK_CACHE": str(tmp_path / "cache"), "PROJECTS": "dg", "PYTHON": sys.executable,
           entry.split("=")[0]: entry.split("=")[1]}
    p = subprocess.Popen(["bash", "run.sh", "gpu", "--dry-run"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)  # its own process group
    lines, started = [], threading.Event()

    def read():
        for line in p.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("--> dg-"):
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(180), "no dg step started:\n" + "\n".join(lines)
        time.sleep(1.5)  # the step's Python is up
        step = next(line.split()[1] for line in lines if line.startswith("--> dg-"))
        t0 = time.monotonic()
        os.killpg(p.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        p.wait(timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    reader.join(5)
    text = "\n".join(lines)
    assert p.returncode == 130 and elapsed < 10, text
    summary = lines[max(i for i, line in enumerate(lines) if line.startswith("--- ")) + 1:]
    assert summary[0].split() == ["step", "exit", "seconds", "recompiles", "figures"], text
    rows = {line.split()[0]: line.split()[1:] for line in summary[1:]}
    assert rows["env"][0] == "0" and "torch=" in " ".join(rows["env"]), text
    assert "interrupted" in rows[step], text  # the step that was running, said so
    assert list(rows) == ["env", step], text  # nothing ran after it

    deadline = time.monotonic() + 1  # orphans are reaped by init within moments
    while holding(entry.encode()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert holding(entry.encode()) == [], "processes left behind"

    files = sorted(str(f.relative_to(out)) for f in out.rglob("*") if f.is_file())
    assert files == ["results.tgz", "summary.tsv"]  # what a lease copies back: <= 8 files, <= 2 folders down
    tsv = (out / "summary.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in tsv] == ["step", "env", step]
    with tarfile.open(out / "results.tgz") as tar:
        names = tar.getnames()
    assert {"./logs/env.log", f"./logs/{step}.log"} <= set(names), names
    assert not any(n.endswith((".pt", ".bin")) for n in names), names  # logs and results, no checkpoints or data


def test_sweep_ends_what_a_step_left_behind():
    """torchrun starts its workers in sessions of their own: a killed torchrun leaves them running. sweep TAG ends
    every process whose environment holds GPU_CHECK_STEP=TAG (SIGTERM, then SIGKILL), and no other."""
    tag = f"test.{uuid.uuid4().hex}"
    ignores_term = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    plain = "import time; print('up', flush=True); time.sleep(60)"
    procs = [subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "GPU_CHECK_STEP": t},
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
             for code, t in [(ignores_term, tag), (plain, tag), (plain, tag + ".other")]]
    try:
        assert [p.stdout.readline() for p in procs] == ["up\n"] * 3
        t0 = time.monotonic()
        assert source(f"sweep {tag}").returncode == 0
        assert procs[0].wait(5) == -signal.SIGKILL and procs[1].wait(5) == -signal.SIGTERM
        assert time.monotonic() - t0 < 4
        assert procs[2].poll() is None  # another step's process is left alone
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_figures_come_from_the_named_file(tmp_path):
    """A step's figures are the keys it names, in the file it names: a log's last JSON line, a results.json, a
    log.jsonl's last record of a kind; a key that is absent says 'missing', never another key's value."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(
        '{"ours": {"tokens_per_s": 999.0}, "epochs": [{"acc": 0.5}, {"acc": 0.75}], "time_to_99": 12.0}')
    (tmp_path / "step.log").write_text(
        'device cuda\n{"ours": {"tokens_per_s": 1.0}}\nours 41 ms\n'
        '{"ours": {"tokens_per_s": 412345.6, "mfu": 0.41234}, "nanogpt_ref": {"tokens_per_s": 380000.0, "mfu": null}}\n'
        'done\n')
    (tmp_path / "run" / "log.jsonl").write_text(
        '{"kind": "train", "iter": 0, "loss": 10.9}\n{"kind": "val", "iter": 0, "val_loss": 10.8}\n'
        '{"kind": "train", "iter": 1, "loss": 9.5}\n')
    (tmp_path / "bench.json").write_text(
        '{"milestones": [{"milestone": "float32", "tok_per_s": 8000.0}, {"milestone": "TF32", "tok_per_s": 20000.4},'
        ' {"milestone": "micro-batch x2", "applies": false}]}')
    r = source('figures - tok_s:ours.tokens_per_s mfu:ours.mfu ref_mfu:nanogpt_ref.mfu; '
                'figures run/results.json t995_s:time_to_995_s acc:epochs.-1.acc; '
                'figures run/log.jsonl loss:kind=train.loss val:kind=val.val_loss hs:kind=hellaswag.acc_norm; '
                'figures bench.json tok_s:milestones.*.tok_per_s; figures - -; figures nothing.json a',
                W=str(tmp_path), LOG=str(tmp_path / "step.log"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "tok_s=412346 mfu=0.4123 ref_mfu=null",  # bench.py's own line, not the work folder's results.json
        "t995_s=missing acc=0.75",
        "loss=9.5 val=10.8 hs=missing",
        "float32.tok_s=8000 TF32.tok_s=20000",
        "done",
        "(no nothing.json)",
    ]


def test_the_printed_summary_fits_the_last_12000_characters(tmp_path):
    tsv = tmp_path / "summary.tsv"
    rows = [f"step-number-{i}\t0\t{i}\t0\t" + " ".join(f"key{j}={j}.5" for j in range(150)) for i in range(50)]
    tsv.write_text("step\texit\tseconds\trecompiles\tfigures\n" + "\n".join(rows) + "\nskipped-one\tskipped (dry run)\n")
    r = subprocess.run(["bash", "-c", 'source gpu_check.sh; "$PY" -c "$TOOL" table "$1"', "_", str(tsv)], cwd=ROOT,
                       capture_output=True, text=True, env={**os.environ, "PY": sys.executable}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) < 12_000
    printed = r.stdout.splitlines()
    assert [line.split()[0] for line in printed] == ["step"] + [f"step-number-{i}" for i in range(50)] + ["skipped-one"]
    assert printed[1].split()[:5] == ["step-number-0", "0", "0", "0", "key0=0.5"]


@pytest.mark.parametrize("env, message", [
    ({"PROJECTS": "ng xx"}, 'PROJECTS="ng xx": use some of ng bn dg'),
    ({"GPU_CHECK_WORK": "{tmp}/mine"}, "is not empty and not a gpu_check work folder"),
])
def test_refusals_touch_nothing(tmp_path, env, message):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("not the check's")
    env = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    r = subprocess.run(["bash", "gpu_check.sh", "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "DATA_DIR": str(tmp_path), "OUT": str(tmp_path / "out"),
                            "GPU_CHECK_CACHE": str(tmp_path / "cache"), **env})
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert (mine / "keep.txt").read_text() == "not the check's"


def test_a_second_run_on_the_same_work_folder_is_refused(tmp_path):
    work = tmp_path / "work"
    with open(f"{work}.lock", "w") as lock:  # what a running gpu_check holds
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        r = subprocess.run(["bash", "gpu_check.sh", "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "DATA_DIR": str(tmp_path), "OUT": str(tmp_path / "out"),
                                "GPU_CHECK_WORK": str(work), "GPU_CHECK_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 2 and "another gpu_check is using" in r.stderr, r.stderr


def run_dry(tmp_path, *args, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "gpu_check.sh", "--dry-run", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"),
                                            "GPU_CHECK_WORK": str(tmp_path / "work"),
                                            "GPU_CHECK_CACHE": str(tmp_path / "cache"), **env})


def test_no_step_starts_past_the_budget(tmp_path):
    """GPU_CHECK_BUDGET: a step that would start later is not run, said so, and the run fails (not covered).
    Each start empties the work folder of the run before and keeps the compile cache."""
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / ".gpu_check_work").touch()
    (tmp_path / "work" / "stale.log").write_text("the run before")
    (tmp_path / "cache" / "inductor").mkdir(parents=True)
    (tmp_path / "cache" / "inductor" / "kernel.py").write_text("built before")
    r = run_dry(tmp_path, PROJECTS="dg", GPU_CHECK_BUDGET="1")
    assert not (tmp_path / "work" / "stale.log").exists()
    assert (tmp_path / "cache" / "inductor" / "kernel.py").read_text() == "built before"
    assert r.returncode == 1, r.stdout + r.stderr
    rows = [line.split("\t") for line in (tmp_path / "out" / "summary.tsv").read_text().splitlines()[1:]]
    ran = [name for name, status, *_ in rows if not status.startswith(("not run (over the 1 s budget)", "skipped"))]
    assert ran == [] and [name for name, *_ in rows][:2] == ["env", "dg-ddp-compile-best"], rows


def test_measure_dry_run_says_what_only_cuda_runs(tmp_path):
    r = run_dry(tmp_path, "--measure", PROJECTS="dg")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["results.tgz", "summary.tsv"]
    rows = [line.split("\t")[:2] for line in (tmp_path / "out" / "summary.tsv").read_text().splitlines()[1:]]
    assert rows == [["env", "0"], ["dg-time-to-995", "skipped (dry run)"]]  # PROJECTS=dg: deep_gradients' only


def test_the_ladder_is_a_part_of_its_own_so_measure_fits_five_minutes(tmp_path):
    """--measure holds the 124M benches and the time to 99.5% (estimated 295 s on one H100); the speedrun
    ladder (estimated 138 s) runs under --ladder only."""
    rows = {}
    for part in ("--measure", "--ladder"):
        r = run_dry(tmp_path / part[2:], part, PROJECTS="bn")
        assert r.returncode == 0, r.stdout + r.stderr
        lines = (tmp_path / part[2:] / "out" / "summary.tsv").read_text().splitlines()[1:]
        rows[part] = [line.split("\t")[0] for line in lines]
    assert rows == {"--measure": ["env", "bn-bench-124m"], "--ladder": ["env", "bn-ladder-shards", "bn-ladder"]}
