"""build_nanogpt/files.py and the scripts writing through it: a full disk, a read-only folder or an out dir that is a
file is one line and leaves no partial file; temp files of killed runs are removed at the next start."""
import errno
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import files
from helpers import TINY

ROOT = Path(__file__).resolve().parents[2]


def file_size_limit(limit: int):
    """A preexec_fn: files of this process may not grow past `limit` bytes (a full disk, as writes see it)."""
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    return apply


def run_limited(script, *args, limit: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          preexec_fn=file_size_limit(limit), timeout=300)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if files.TMP_MARK in p.name or p.name == ".lock")


def test_train_on_a_full_disk_is_one_line(shards, tmp_path, clean_error):
    out = tmp_path / "out"
    r = run_limited("build_nanogpt/train.py", *TINY, "--data-dir", shards, "--out-dir", out, "--max-iters", "2",
                    "--warmup-iters", "1", limit=1 << 20)  # the 3 MB checkpoint does not fit
    clean_error(r, f"cannot write {out / 'ckpt.pt'}: no space left on the device")
    assert not (out / "ckpt.pt").exists() and leftovers(out) == []


def test_fineweb_on_a_full_disk_is_one_line(shared_file, tiktoken_cache, tmp_path, clean_error):
    out = tmp_path / "shards"
    r = run_limited("build_nanogpt/fineweb.py", "--source", shared_file("tinyshakespeare/input.txt"),
                    "--out-dir", out, "--shard-size", 100_000, "--num-proc", 1, limit=100_000)  # a shard: 200 kB
    clean_error(r, f"cannot write {out / 'val_000000.npy'}: no space left on the device")
    assert not out.exists()  # created by this run and left empty: removed


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "ckpt.pt"
    path.write_text("good")

    def full(tmp):
        Path(tmp).write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(files.UserError, match="cannot write .*ckpt.pt: no space left on the device"):
        files.atomic_write(path, full)
    assert path.read_text() == "good" and os.listdir(tmp_path) == ["ckpt.pt"]


def test_a_read_only_folder_or_a_file_as_out_dir(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(files.UserError, match="cannot write to .*file: it is a file, not a folder"):
        files.OutDirLock(tmp_path / "file").__enter__()

    def read_only(*args, **kwargs):  # as root, chmod does not stop a write: patch the call that would fail
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(files.os, "open", read_only)
    with pytest.raises(files.UserError, match="cannot write to .*ro: read-only file system"):
        files.OutDirLock(tmp_path / "ro").__enter__()


def test_stale_temp_files_and_locks_are_cleared_at_the_next_start(tmp_path):
    live = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        stale = [tmp_path / f"ckpt.pt{files.TMP_MARK}{dead.pid}", tmp_path / f"val_000003.npy{files.TMP_MARK}x"]
        busy = tmp_path / f"manifest.json{files.TMP_MARK}{live.pid}"  # a live process may still write it
        for p in (*stale, busy):
            p.write_text("partial")
        (tmp_path / ".lock").write_text("garbage")  # a damaged lock: no live run holds it
        with files.OutDirLock(tmp_path):
            assert (tmp_path / ".lock").read_text().split()[1] == str(os.getpid())
            assert not any(p.exists() for p in stale) and busy.exists()
        assert not (tmp_path / ".lock").exists()
    finally:
        live.kill()
        live.wait()
