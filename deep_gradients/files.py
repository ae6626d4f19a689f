"""Writing outputs safely: whole files or nothing, one run per output folder.

- `atomic_write(path, write)` calls `write(tmp)` on a temp name unique to this process, then renames it over
  `path`: a reader never sees half a file, and a full disk or a read-only folder is one UserError line.
- `OutDirLock(folder)` claims a folder for one run (a second live run on it is refused, naming its pid; a lock
  left by a dead run is taken over) and removes temp files that killed runs left behind.
"""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from cli import UserError

TMP_MARK = ".tmp."  # every temp file is NAME.tmp.PID


def atomic_write(path, write) -> Path:
    """`write(tmp_path)` then rename tmp_path -> path; the temp file is removed on any failure."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) or "enforce fail" in str(e):  # torch.save reports a full disk as RuntimeError
            raise UserError(f"cannot write {path}: {why_failed(e)}") from None
        raise
    return path


def write_text(path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2) + "\n")


def why_failed(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno == errno.ENOSPC or "unexpected pos" in str(e):
        return "no space left on the device"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e).splitlines()[0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutDirLock:
    """`with OutDirLock(out_dir):` one run at a time per output folder; stale temp files removed on entry."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / ".lock"

    def __enter__(self):
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # e.g. a file of that name, or a read-only parent
            raise UserError(f"cannot write to {self.folder}: {why_failed(e)}") from None
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            text = self.path.read_text().strip()
            pid = int(text) if text.isdigit() else 0
            if pid and pid != os.getpid() and _alive(pid):
                raise UserError(f"{self.folder} is in use by another run (pid {pid}); "
                                "wait for it or choose another --out-dir") from None
            self.path.unlink(missing_ok=True)  # left by a run that died: take it over
            return self.__enter__()
        except OSError as e:
            raise UserError(f"cannot write to {self.folder}: {why_failed(e)}") from None
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        for tmp in self.folder.glob(f"*{TMP_MARK}*"):  # temp files of killed runs
            pid = tmp.name.rsplit(TMP_MARK, 1)[1]
            if not (pid.isdigit() and _alive(int(pid))):
                tmp.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)
