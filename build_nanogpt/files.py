"""Writing outputs safely: whole files or nothing, one run per output folder.

- `atomic_write(path, write)` calls `write(tmp)` on a temp name unique to this process, then renames it over
  `path`: a reader never sees half a file, and a full disk or a read-only folder is one UserError line.
- `OutDirLock(folder)` claims a folder for one run (a second live run on it is refused, naming its pid; a lock
  left by a dead run is taken over) and removes temp files that killed runs left behind.
- `sha256_of(path)`: a file's sha256, read 1 MB at a time.
"""
from __future__ import annotations

import errno
import hashlib
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
            raise UserError(f"cannot write {path}: {_why(e)}") from None
        raise
    return path


def sha256_of(path) -> str:
    """The sha256 of a file, read 1 MB at a time (a 200 MB shard never sits in memory twice)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_text(path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2) + "\n")


def _why(e: BaseException) -> str:
    # torch.save says "unexpected pos", numpy "N requested and M written" (no errno): a short write
    short = "unexpected pos" in str(e) or isinstance(e, OSError) and e.errno is None and "written" in str(e)
    if isinstance(e, OSError) and e.errno == errno.ENOSPC or short:
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
        if self.folder.exists() and not self.folder.is_dir():
            raise UserError(f"cannot write to {self.folder}: it is a file, not a folder")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            text = self.path.read_text().strip()
            pid = int(text) if text.isdigit() else 0  # an empty or damaged lock: taken over
            if pid and pid != os.getpid() and _alive(pid):
                raise UserError(f"{self.folder} is in use by another run (pid {pid}); "
                                "wait for it or choose another --out-dir") from None
            self.path.unlink(missing_ok=True)  # left by a run that died: take it over
            return self.__enter__()
        except OSError as e:
            raise UserError(f"cannot write to {self.folder}: {_why(e)}") from None
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        for tmp in self.folder.glob(f"*{TMP_MARK}*"):  # temp files of killed runs
            pid = tmp.name.rsplit(TMP_MARK, 1)[1]
            if not (pid.isdigit() and _alive(int(pid))):
                tmp.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)
