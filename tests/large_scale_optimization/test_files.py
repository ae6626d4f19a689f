"""large_scale_optimization/files.py: whole files or nothing, one run per output folder."""
import errno
import os
import subprocess
import sys

import pytest

import files
from cli import UserError


def dead_pid() -> int:
    """The pid of a process that has exited (a lock or temp file left by a killed run)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_is_held_for_the_run_and_released(tmp_path):
    with files.OutDirLock(tmp_path / "out"):
        assert (tmp_path / "out" / ".lock").read_text().split()[1] == str(os.getpid())
    assert not (tmp_path / "out" / ".lock").exists()


def test_stale_lock_and_temp_files_of_a_dead_run_are_taken_over(tmp_path):
    pid = dead_pid()
    (tmp_path / ".lock").write_text(str(pid))
    (tmp_path / f"results.json{files.TMP_MARK}{pid}").write_text("half")
    keep = tmp_path / f"results.json{files.TMP_MARK}{os.getpid()}"  # a live process's temp file stays
    keep.write_text("mine")
    with files.OutDirLock(tmp_path):
        assert (tmp_path / ".lock").read_text().split()[1] == str(os.getpid())
    assert sorted(p.name for p in tmp_path.iterdir()) == [keep.name]


def test_busy_out_dir_is_refused_naming_the_live_pid(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".lock").write_text(str(live.pid))
        with pytest.raises(UserError, match=f"in use by another run \\(pid {live.pid}\\)"):
            files.OutDirLock(tmp_path).__enter__()
        assert (tmp_path / ".lock").read_text() == str(live.pid)  # the live run's lock is left alone
    finally:
        live.kill()
        live.wait()


def test_unwritable_out_dir_is_one_line(tmp_path, monkeypatch):
    """A file where the folder should be; a read-only folder (faked: the tests may run as root, which
    ignores permission bits)."""
    (tmp_path / "afile").write_text("")
    with pytest.raises(UserError, match="is a file, not a folder"):
        files.OutDirLock(tmp_path / "afile").__enter__()

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(files.os, "open", read_only)
    with pytest.raises(UserError, match="cannot write to .*ro: permission denied"):
        files.OutDirLock(tmp_path / "ro").__enter__()


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    """A full disk mid-write: one line naming the file and the cause; the previous results.json survives
    and no temp file is left behind."""
    path = files.write_json(tmp_path / "results.json", {"old": 1})

    def full_disk(tmp):
        tmp.write_text("half of a new fi")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError, match="cannot write .*results.json: no space left on the device"):
        files.atomic_write(path, full_disk)
    assert path.read_text() == '{\n  "old": 1\n}\n' and [p.name for p in tmp_path.iterdir()] == ["results.json"]
