"""Where a dataset's text comes from: a local file or folder, a checksum-verified download, the Python standard
library, or a Hugging Face dataset streamed row by row. Each source reads lazily, in bounded memory.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import socket
import sysconfig
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cli import UserError

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


@dataclass(frozen=True)
class HubDataset:
    path: str  # Hugging Face dataset id
    name: str | None  # its config
    val_split: str | None  # None: hold out every val_every-th row of train
    lines: bool = False  # rows are lines of running text (no end-of-text between them)


HUB = {
    "fineweb_edu": HubDataset("HuggingFaceFW/fineweb-edu", "sample-10BT", None),
    "tinystories": HubDataset("roneneldan/TinyStories", None, "validation"),
    "wikitext103": HubDataset("Salesforce/wikitext", "wikitext-103-raw-v1", "validation", lines=True),
    "openwebtext": HubDataset("Skylion007/openwebtext", None, None),
}

TEXT_SUFFIXES = {".txt", ".tokens", ".raw", ".md", ".text"}
TABLE_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


class DataError(UserError, ValueError):
    """A user mistake (bad name, missing or empty file, offline download): one line, exit code 2."""



def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def python_stdlib_text() -> str:
    """Every top-level .py module of this Python's standard library, sorted by name, each after a header
    line. About 4.7 MB of real, varied code on CPython 3.11; the exact text depends on the Python version,
    which is why meta.json records its sha256."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts = []
    for f in sorted(root.glob("*.py")):
        try:
            parts.append(f"# ===== {f.name} =====\n" + f.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue  # the same files fail every time, so the selection stays deterministic
    return "\n".join(parts)


def download(url: str, dest: Path, sha256: str, timeout: float = 30.0) -> Path:
    """Fetch url to dest once (atomic, checksum-verified); later calls return the cached file."""
    dest = Path(dest)
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    created = [d for d in [dest.parent, *dest.parent.parents] if not d.exists()]  # removed again on failure
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as r:
            shutil.copyfileobj(r, f)
        got = sha256_file(Path(tmp))
        if got != sha256:
            raise DataError(f"checksum mismatch for {url}: sha256 {got}, expected {sha256}")
        os.replace(tmp, dest)
    except Exception as e:  # noqa: BLE001 - offline, DNS, HTTP error: all mean "put the file there yourself"
        os.remove(tmp)
        for d in created:  # innermost first; leave no empty cache folders behind
            d.rmdir()
        if isinstance(e, DataError):
            raise
        raise DataError(
            f"cannot download {url} ({type(e).__name__}: {e}); put the file at {dest} or pass --source FILE"
            .replace("\n", " ")
        ) from None
    return dest


def shakespeare_file(data_dir: Path) -> Path:
    """Tiny Shakespeare, cached under DATA_DIR/downloads/ (URL overridable for mirrors)."""
    url = os.environ.get("NANOGPT_SHAKESPEARE_URL", SHAKESPEARE_URL)
    return download(url, Path(data_dir) / "downloads" / "tinyshakespeare" / "input.txt", SHAKESPEARE_SHA256)


def local_files(source: Path) -> list[Path]:
    """A file, or the text/jsonl/parquet files of a folder (recursively, sorted)."""
    if not source.exists():
        raise DataError(f"source {source} does not exist")
    if source.is_file():
        files = [source]
    else:
        known = TEXT_SUFFIXES | set(TABLE_SUFFIXES)
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix in known
                       and not any(part.startswith(".") for part in p.relative_to(source).parts))
        if not files:
            raise DataError(f"source folder {source} holds no {', '.join(sorted(known))} files")
    if sum(f.stat().st_size for f in files) == 0:
        raise DataError(f"source {source} is empty")
    return files


def sha256_files(files: list[Path]) -> str:
    if len(files) == 1:
        return sha256_file(files[0])  # the same digest sha256sum prints
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()


def _merge_lines(rows, text_field: str, chars: int = 2048):
    """Lines of running text -> chunks of whole lines of about `chars` characters (bigger work units,
    and a held-out row is then a passage rather than a single line)."""
    buf, n = [], 0
    for row in rows:
        buf.append(row[text_field])
        n += len(buf[-1])
        if n >= chars:
            yield "".join(buf)
            buf, n = [], 0
    if buf:
        yield "".join(buf)


def local_rows(files: list[Path], text_field: str):
    """Yield (text, is_document) through the `datasets` builders: text files line by line (kept line
    breaks, merged into passages), .jsonl / .parquet one document per row."""
    import datasets  # heavy import, only for the documents path

    groups = itertools.groupby(files, key=lambda f: TABLE_SUFFIXES.get(f.suffix, "text"))
    for builder, group in groups:
        data_files = [str(f) for f in group]
        if builder == "text":
            ds = datasets.load_dataset("text", data_files=data_files, split="train", streaming=True,
                                       keep_linebreaks=True)
            for chunk in _merge_lines(ds, "text"):
                yield chunk, False
        else:
            ds = datasets.load_dataset(builder, data_files=data_files, split="train", streaming=True)
            for row in ds:
                if text_field not in row:
                    raise DataError(f"{data_files[0]} has no {text_field!r} column (columns: "
                                    f"{', '.join(row)}); pass --text-field")
                yield row[text_field], True


def hub_rows(spec: HubDataset, split: str, text_field: str):
    offline = any(os.environ.get(v, "0") not in ("", "0", "false", "False")
                  for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    try:  # fail fast offline, instead of the hub client's five noisy retries
        if offline:
            raise OSError("offline mode is set")
        socket.create_connection(("huggingface.co", 443), timeout=3.0).close()
    except OSError:
        raise DataError(f"cannot reach huggingface.co to stream {spec.path}; offline? download its files "
                        f"and pass --source FILE_OR_DIR") from None
    import datasets

    ds = datasets.load_dataset(spec.path, spec.name, split=split, streaming=True)
    if spec.lines:
        for chunk in _merge_lines(ds, text_field):
            yield chunk, False
    else:
        for row in ds:
            yield row[text_field], True
