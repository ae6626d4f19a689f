"""Writing outputs safely: whole files or nothing, one run per output folder.

This file is the same, byte for byte, in all four project folders (tests/test_repo.py checks it).

- `atomic_write(path, write)` calls `write(tmp)` on a temp name unique to this process, flushes it to the
  disk, renames it over `path` and flushes the folder: a reader never sees half a file, a crash of the
  machine leaves the old file or the new one, and a full disk or a read-only folder is one UserError line.
- `OutDirLock(folder)` claims a folder for one run: a second live run is refused, naming its host and pid;
  a lock left by a dead run on this host is taken over; temp files that killed runs left behind are removed.
- `append_line`, `write_text`, `write_json`, `write_png`, `sha256_of`: the small writers and readers the
  scripts share.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import sys
from pathlib import Path

from cli import UserError

TMP_MARK = ".tmp."  # every temp file is NAME.tmp.PID


def fsync_path(path) -> None:
    """Flush a file's (or a folder's) data to the disk: after it, a power cut keeps what was written."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, write) -> Path:
    """`write(tmp_path)`, fsync it, rename tmp_path -> path, fsync the folder; the temp file is removed on
    any failure."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) or "enforce fail" in str(e):  # torch.save reports a full disk as RuntimeError
            raise UserError(f"cannot write {path}: {why_failed(e)}") from None
        raise
    return path


def write_text(path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path, obj) -> Path:
    """JSON with 2-space indents; numpy scalars are written as numbers."""
    return write_text(path, json.dumps(obj, indent=2, default=float) + "\n")


def write_png(path, fig, dpi: int) -> Path:
    """A matplotlib figure as a PNG file."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


def append_line(path, line: str) -> None:
    """Append one line to a log; a full disk or a read-only folder is one UserError line."""
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
    except OSError as e:
        raise UserError(f"cannot write {path}: {why_failed(e)}") from None


def sha256_of(path) -> str:
    """The sha256 of a file, read 1 MB at a time (a 200 MB shard never sits in memory twice)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def why_failed(e: BaseException) -> str:
    """An OSError (or a library's report of one) in a few words: "no space left on the device"."""
    # torch.save says "unexpected pos", numpy "N requested and M written" (no errno): a short write; safetensors
    # wraps the OS's message in its own error
    short = ("unexpected pos" in str(e) or "No space left on device" in str(e)
             or isinstance(e, OSError) and e.errno is None and "written" in str(e))
    if isinstance(e, OSError) and e.errno == errno.ENOSPC or short:
        return "no space left on the device"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e).splitlines()[0]


def alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def started(pid: int) -> str:
    """When process `pid` started, in clock ticks since boot ("" where /proc does not say): with the pid it
    names one process, so a lock of a dead run is not mistaken for a live one when the pid is reused."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


class OutDirLock:
    """`with OutDirLock(out_dir):` one run at a time per output folder.

    The lock file `.lock` holds `HOST PID START` (START: the process's start time, see `started`). It is
    written under a temp name and hard-linked into place, which fails if `.lock` exists: two runs started at
    the same instant cannot both succeed, and nobody ever reads a half-written lock. A lock held on another
    host is refused (its pid cannot be checked from here); a lock of a dead process on this host is taken
    over; a damaged lock (not three fields) is taken over with a warning, since no live run writes one.
    On entry, temp files of killed runs are removed."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / ".lock"
        self.me = f"{socket.gethostname()} {os.getpid()} {started(os.getpid())}".strip()

    def __enter__(self):
        if self.folder.exists() and not self.folder.is_dir():
            raise UserError(f"cannot write to {self.folder}: it is a file, not a folder")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            while not self._claim():
                pass
        except OSError as e:  # e.g. a read-only folder
            raise UserError(f"cannot write to {self.folder}: {why_failed(e)}") from None
        for tmp in self.folder.glob(f"*{TMP_MARK}*"):  # temp files of killed runs
            pid = tmp.name.rsplit(TMP_MARK, 1)[1]
            if not (pid.isdigit() and alive(int(pid))):
                tmp.unlink(missing_ok=True)
        return self

    def _claim(self) -> bool:
        """Try once to create the lock: True when this run holds it, False to try again (a stale lock was
        removed); UserError when a live run holds it."""
        tmp = self.folder / f".lock{TMP_MARK}{os.getpid()}"
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY)
        try:
            os.write(fd, (self.me + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        if self.path.is_dir():
            raise UserError(f"{self.path} is a folder, not a lock file; remove it")
        try:
            seen = self.path.read_text()
        except FileNotFoundError:  # its run just ended
            return False
        self._refuse_if_live(seen)
        self._remove_if_unchanged(seen)
        return False

    def _refuse_if_live(self, seen: str) -> None:
        fields = seen.split()
        if len(fields) == 1 and fields[0].isdigit():  # written by an older version of this file: a pid
            fields = [socket.gethostname(), fields[0], ""]
        if len(fields) == 2:
            fields.append("")
        if len(fields) != 3 or not fields[1].isdigit():
            print(f"warning: {self.path} is damaged ({seen.strip()[:40]!r}); taking it over", file=sys.stderr)
            return
        host, pid, start = fields[0], int(fields[1]), fields[2]
        fix = f"if no run uses it, remove {self.path}"
        if host != socket.gethostname():
            raise UserError(f"{self.folder} is in use by a run on host {host} (pid {pid}); {fix}")
        if pid != os.getpid() and alive(pid) and (not start or start == started(pid)):
            raise UserError(f"{self.folder} is in use by another run (pid {pid}); wait for it, choose another "
                            f"--out-dir, or, {fix}")

    def _remove_if_unchanged(self, seen: str) -> None:
        """Remove the stale lock we read, and only it: another run may have taken it over meanwhile."""
        grabbed = self.folder / f".lock.stale{TMP_MARK}{os.getpid()}"
        try:
            os.rename(self.path, grabbed)
        except FileNotFoundError:
            return
        if grabbed.read_text() != seen:  # a fresh lock of a run that took over first: put it back
            try:
                os.link(grabbed, self.path)
            except FileExistsError:
                pass
        grabbed.unlink()

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)
