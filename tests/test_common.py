"""cli.py and files.py, the two helpers every project folder keeps a copy of (tests/test_repo.py checks that
the four copies are identical, so testing one tests all): ranges beside the knobs, negative numbers, the stop
signal, durable writes, and an out-dir lock that two live runs cannot share."""
import argparse
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "nanogpt"))

import cli  # noqa: E402
import files  # noqa: E402
from cli import UserError, knob  # noqa: E402


@dataclass
class Knobs:
    learning_rate: float = knob(6e-4, "peak lr", lo=0, hi=10)
    seed: int = knob(1337, "seed", lo=0, hi=2**32 - 1)
    lam: float = knob(1e-4, "regularisation", lo=None, hi=1.0)
    name: str = knob("x", "a name")


def parse(*argv):
    return cli.parse_config(Knobs, list(argv), "x.py", "test")


# ---- cli.py -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--learning-rate", "-1"], "--learning-rate -1.0: must be in [0, 10]"),
    (["--learning-rate", "10.5"], "--learning-rate 10.5: must be in [0, 10]"),
    (["--seed", str(2**64)], f"--seed {2**64}: must be in [0, 4294967295]"),
    (["--seed", "-1"], "--seed -1: must be in [0, 4294967295]"),
    (["--lam", "2"], "--lam 2.0: must be in [-inf, 1.0]"),
    (["--learning-rate", "nan"], "argument --learning-rate: expected a finite number, got 'nan'"),
    (["--learning-rate", "-inf"], "argument --learning-rate: expected a finite number, got '-inf'"),
    (["--lr", "1"], "unknown option --lr; did you mean --learning-rate?"),
])
def test_a_value_outside_its_knobs_range_is_one_message(argv, message):
    with pytest.raises(UserError) as e:
        parse(*argv)
    assert str(e.value) == message


@pytest.mark.parametrize("text, value", [("12", 12), ("-3", -3), ("1e3", 1000), ("6e5", 600000), ("2.0", 2)])
def test_an_int_knob_takes_a_whole_number_however_it_is_written(text, value):
    assert cli.whole_number(text) == value and type(cli.whole_number(text)) is int


@pytest.mark.parametrize("text, message", [("1.5", "expected a whole number, got '1.5'"),
                                           ("inf", "expected a finite number, got 'inf'")])
def test_an_int_knob_refuses_a_fraction_or_infinity(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        cli.whole_number(text)


def test_values_at_the_bounds_and_negative_numbers_are_accepted():
    cfg = parse("--learning-rate", "10", "--seed", "0", "--lam", "-1e-8")  # -1e-8 is a value, not a flag
    assert (cfg.learning_rate, cfg.seed, cfg.lam) == (10.0, 0, -1e-8)
    cli.check_ranges(cfg, {"seed": (0, 0)})
    with pytest.raises(UserError, match=r"^--seed 0: must be in \[1, 5\]$"):
        cli.check_ranges(cfg, {"seed": (1, 5)})  # a range known only at run time


def test_a_bound_a_closed_range_cannot_state_has_the_same_format():
    cfg = parse("--learning-rate", "0", "--lam", "0")
    with pytest.raises(UserError, match=r"^--learning-rate 0.0: must be in \(0, 10\]$"):
        cli.check_positive(cfg, "seed", "learning_rate")
    with pytest.raises(UserError, match=r"^--lam 0.0: must be in \(0, 1.0\]$"):
        cli.check_positive(cfg, "lam")
    cli.check_positive(parse(), "learning_rate", "lam", "seed")


def test_run_main_prints_the_signal_that_interrupted():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import cli\n"
            "def main(): raise KeyboardInterrupt('SIGTERM')\n"
            "cli.run_main(main)\n")
    r = subprocess.run([sys.executable, "-c", code, str(ROOT / "nanogpt")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 130 and r.stderr == "-c: interrupted (SIGTERM)\n"


# ---- StopSignal -------------------------------------------------------------------------------------------

def test_the_first_signal_is_announced_at_once_and_only_sets_the_flag(capfd):
    with cli.StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.name == "SIGINT"
        assert capfd.readouterr().err == "SIGINT: stopping after this step (Ctrl-C again to abort)\n"
        time.sleep(stop.grace + 0.05)
        with pytest.raises(KeyboardInterrupt):  # the second Ctrl-C aborts
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is not stop._handle  # the old handlers are back


def test_two_sigterms_milliseconds_apart_are_one_request():
    """torchrun's agent and SLURM's slurmstepd both send SIGTERM to a preempted worker: the checkpoint must
    still be written, so the echo does not abort."""
    with cli.StopSignal(announce=False) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):  # another kind of signal is a second request
            os.kill(os.getpid(), signal.SIGINT)


def test_an_unarmed_stop_signal_interrupts_at_once():
    with cli.StopSignal(armed=False, announce=False) as stop:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
        assert stop.name is None


# ---- durable writes ---------------------------------------------------------------------------------------

def test_atomic_write_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        real_replace(src, dst)
    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    target = tmp_path / "ckpt.pt"
    files.write_text(target, "weights")
    tmp = f"{target}{files.TMP_MARK}{os.getpid()}"
    assert events == [("fsync", tmp), ("replace", str(target)), ("fsync", str(tmp_path))]
    assert target.read_text() == "weights"


# ---- the out-dir lock -------------------------------------------------------------------------------------

def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("error", [
    OSError(28, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file: unexpected pos"),
    RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'),
], ids=["errno", "torch.save", "safetensors"])
def test_a_full_disk_is_named_in_a_few_words_whoever_reports_it(error):
    assert files.why_failed(error) == "no space left on the device"


def test_the_lock_names_host_pid_and_start_and_is_released(tmp_path):
    with files.OutDirLock(tmp_path):
        host, pid, start = (tmp_path / ".lock").read_text().split()
        assert (host, int(pid)) == (socket.gethostname(), os.getpid()) and start.isdigit()
    assert not (tmp_path / ".lock").exists()


@pytest.mark.parametrize("content", ["garbage", "", "a b c d"])
def test_a_damaged_lock_is_taken_over_with_one_line(tmp_path, content, capfd):
    (tmp_path / ".lock").write_text(content)
    with files.OutDirLock(tmp_path):
        assert (tmp_path / ".lock").read_text().split()[1] == str(os.getpid())
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / '.lock'} is damaged" in err and "taking it over" in err


def test_a_lock_held_on_another_host_is_refused_never_taken_over(tmp_path):
    (tmp_path / ".lock").write_text(f"other-node {os.getpid()} 1\n")
    with pytest.raises(UserError, match=f"in use by a run on host other-node \\(pid {os.getpid()}\\); "
                                        f"if no run uses it, remove {tmp_path / '.lock'}"):
        files.OutDirLock(tmp_path).__enter__()
    assert (tmp_path / ".lock").read_text() == f"other-node {os.getpid()} 1\n"


def test_a_live_holder_is_refused_and_a_reused_pid_is_not_a_holder(tmp_path):
    live = subprocess.Popen(["sleep", "60"])
    try:
        time.sleep(0.05)
        (tmp_path / ".lock").write_text(f"{socket.gethostname()} {live.pid} {files.started(live.pid)}")
        with pytest.raises(UserError, match=f"in use by another run \\(pid {live.pid}\\).*remove"):
            files.OutDirLock(tmp_path).__enter__()
        # the same pid, another start time: the run that wrote it died and the pid now names another process
        (tmp_path / ".lock").write_text(f"{socket.gethostname()} {live.pid} 1")
        with files.OutDirLock(tmp_path):
            assert (tmp_path / ".lock").read_text().split()[1] == str(os.getpid())
    finally:
        live.kill()
        live.wait()


def test_a_lock_that_is_a_folder_is_one_line(tmp_path):
    (tmp_path / ".lock").mkdir()
    with pytest.raises(UserError, match=f"{tmp_path / '.lock'} is a folder, not a lock file; remove it"):
        files.OutDirLock(tmp_path).__enter__()


def _race(folders, barrier, results):
    refuse_if_live = files.OutDirLock._refuse_if_live

    def slowly(self, seen):  # widen the window between reading a stale lock and removing it, as a busy
        refuse_if_live(self, seen)  # machine may: the other run can take over in between
        time.sleep(random.random() / 500)
    files.OutDirLock._refuse_if_live = slowly
    for folder in folders:
        barrier.wait()
        try:
            lock = files.OutDirLock(folder).__enter__()
            results.put((str(folder), os.getpid()))
            barrier.wait()  # both have tried before the winner lets go
            lock.__exit__()
        except UserError:
            barrier.wait()


@pytest.mark.parametrize("stale", [False, True], ids=["empty-folder", "stale-lock"])
def test_two_runs_started_at_the_same_instant_never_share_a_folder(tmp_path, stale):
    """200 races of two processes released by one barrier: each folder has exactly one holder, also when both
    find a dead run's lock and take it over at once."""
    folders = [tmp_path / str(i) for i in range(200)]
    if stale:
        pid = dead_pid()
        for folder in folders:
            folder.mkdir()
            (folder / ".lock").write_text(f"{socket.gethostname()} {pid} 1\n")
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(folders, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    holders = {}
    while any(p.is_alive() for p in procs) or not results.empty():
        try:
            folder, pid = results.get(timeout=1)
        except Exception:  # queue.Empty: the racers may still be running
            continue
        holders.setdefault(folder, []).append(pid)
    assert all(p.exitcode == 0 for p in procs)
    assert sorted(holders) == sorted(map(str, folders)) and all(len(h) == 1 for h in holders.values())
