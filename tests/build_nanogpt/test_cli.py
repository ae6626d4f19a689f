"""build_nanogpt/cli.py: a Ctrl-C that reaches run_main is one line and exit code 130, no traceback; fineweb.py
stopped by SIGINT or SIGTERM mid-pool exits within seconds, its workers gone, no temp file or lock left."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate, proc, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None and not predicate():
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    assert predicate(), "timed out"


def test_ctrl_c_reaching_run_main_is_one_line():
    code = ("import sys, time; sys.path.insert(0, 'build_nanogpt'); import cli\n"
            "def main():\n    print('ready', flush=True)\n    time.sleep(60)\n"
            "cli.run_main(main)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err.strip() == "-c: interrupted"


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"  # a zombie has finished
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_fineweb_pool_stops_on_a_signal(sig, shared_file, tiktoken_cache, tmp_path):
    paragraphs = shared_file("tinyshakespeare/input.txt").read_text().split("\n\n")
    src = tmp_path / "many.jsonl"
    src.write_text("".join(json.dumps({"text": p}) + "\n" for p in paragraphs * 20))  # ~6.6M tokens
    out = tmp_path / "shards"
    proc = subprocess.Popen([sys.executable, "build_nanogpt/fineweb.py", "--source", str(src), "--out-dir", str(out),
                             "--shard-size", "20000", "--num-proc", "2"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(lambda: (out / "train_000002.npy").exists(), proc)  # the pool is busy
    workers = children(proc.pid)
    assert workers
    if sig == signal.SIGINT:  # Ctrl-C at a terminal: the whole process group, pool workers included
        os.killpg(proc.pid, sig)
    else:  # kill PID
        proc.send_signal(sig)
    t0 = time.time()
    _, err = proc.communicate(timeout=60)
    assert time.time() - t0 < 20 and proc.returncode == 130
    assert err.strip() == "fineweb.py: interrupted" + (" (SIGTERM)" if sig == signal.SIGTERM else "")
    for pid in workers:
        for _ in range(100):
            if gone(pid):
                break
            time.sleep(0.05)
        assert gone(pid), f"worker {pid} still runs"
    assert not [p.name for p in out.iterdir() if ".tmp." in p.name or p.name == ".lock"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["complete"] and len(manifest["shards"]) >= 3  # a rerun continues from here
