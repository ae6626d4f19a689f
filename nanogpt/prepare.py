"""Turn a text corpus into train.bin / val.bin token files (np.uint16) plus meta.json.

    python nanogpt/prepare.py                              # python_stdlib: offline, ships with Python
    python nanogpt/prepare.py --dataset shakespeare_char   # Tiny Shakespeare, downloaded once, char-level
    python nanogpt/prepare.py --dataset tinystories        # Hugging Face dataset, streamed, GPT-2 BPE
    python nanogpt/prepare.py --dataset wikitext2 --source /path/to/wikitext-2/   # any local files

Two paths, following karpathy/nanoGPT's data/*/prepare.py:
- whole text (python_stdlib, shakespeare_char, shakespeare): read the text, first 90% -> train, last 10%
  -> val, so decode(train + val) gives back the source exactly.
- documents (Hugging Face datasets, and any local .txt/.jsonl/.parquet file or folder of them): rows are
  streamed with `datasets` (the same builders for hub and local files), tokenized with tiktoken GPT-2 in a
  multiprocessing pool, and an end-of-text token closes every document. Validation is the dataset's own
  validation split when it has one, else every `val_every`-th row.

Outputs go to DATA_DIR/NAME/ (default nanogpt/data, git-ignored), written to a temp folder and renamed,
so a failed or interrupted run leaves nothing behind. Re-running on the same source is a no-op (meta.json
remembers the source's sha256 and the settings).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing as mp
import os
import re
import shutil
import socket
import sys
import sysconfig
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tiktoken
from tqdm import tqdm

from cli import UserError, knob, parse_config, run_main

DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

# whole-text datasets: name -> tokenizer
WHOLE_TEXT = {"python_stdlib": "byte", "shakespeare_char": "char", "shakespeare": "gpt2"}


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


# --------------------------------------------------------------------------------------------------
# tokenizers


class ByteTokenizer:
    """UTF-8 bytes, vocab 256: covers any text, nothing is unknown, decode is exact."""

    name = "byte"
    vocab_size = 256
    eot = None

    def encode(self, s: str) -> list[int]:
        return list(s.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


class CharTokenizer:
    """One id per distinct character of the corpus (nanoGPT's shakespeare_char)."""

    name = "char"
    eot = None

    def __init__(self, chars: str):
        self.chars = chars
        self.vocab_size = len(chars)
        self.stoi = {c: i for i, c in enumerate(chars)}

    def encode(self, s: str) -> list[int]:
        try:
            return [self.stoi[c] for c in s]
        except KeyError as e:  # e.g. a sample.py prompt with a character the corpus never had
            raise DataError(f"character {e.args[0]!r} is not in this char-level vocabulary "
                            f"({self.vocab_size} characters)") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


class GPT2Tokenizer:
    """tiktoken's GPT-2 BPE (50257 tokens, <|endoftext|> = 50256). Special tokens in the text stay text."""

    name = "gpt2"

    def __init__(self):
        try:
            self.enc = tiktoken.get_encoding("gpt2")
        except Exception as e:  # noqa: BLE001 - tiktoken downloads its BPE files on first use
            raise DataError(f"cannot load the GPT-2 BPE ({type(e).__name__}); offline? point TIKTOKEN_CACHE_DIR "
                            f"at a folder holding tiktoken's cached gpt2 files") from None
        self.vocab_size = self.enc.n_vocab
        self.eot = self.enc.eot_token

    def encode(self, s: str) -> list[int]:
        return self.enc.encode_ordinary(s)

    def decode(self, ids) -> str:
        return self.enc.decode([int(i) for i in ids])


def get_tokenizer(meta: dict):
    """The tokenizer described by a meta.json dict (keys: tokenizer, and chars for char-level)."""
    name = meta.get("tokenizer")
    if name == "byte":
        return ByteTokenizer()
    if name == "char":
        return CharTokenizer(meta["chars"])
    if name == "gpt2":
        return GPT2Tokenizer()
    raise DataError(f"unknown tokenizer {name!r} in meta.json; expected byte, char or gpt2")


# --------------------------------------------------------------------------------------------------
# sources


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


# --------------------------------------------------------------------------------------------------
# tokenizing in a pool

_worker_tok = None


def _init_worker(meta: dict):
    global _worker_tok
    _worker_tok = get_tokenizer(meta)


def _encode_batch(batch: list[tuple[str, bool, bool]]) -> tuple[np.ndarray, np.ndarray, int, int]:
    """[(text, is_document, is_val)] -> (train tokens, val tokens, train rows, val rows) as uint16."""
    out = {False: [], True: []}
    for text, is_doc, is_val in batch:
        ids = _worker_tok.encode(text)
        if is_doc and _worker_tok.eot is not None:
            ids.append(_worker_tok.eot)  # documents are separated by <|endoftext|>, as GPT-2 was trained
        out[is_val].extend(ids)
    n_val = sum(1 for _, _, v in batch if v)
    return (np.array(out[False], dtype=np.uint16), np.array(out[True], dtype=np.uint16),
            len(batch) - n_val, n_val)


def _batches(rows, batch_size: int):
    it = iter(rows)
    while batch := list(itertools.islice(it, batch_size)):
        yield batch


def tokenize_rows(rows, tok_meta: dict, train_f, val_f, num_proc: int, desc: str) -> dict:
    """Stream (text, is_doc, is_val) rows through num_proc workers (in order) into two open files."""
    counts = {"train_tokens": 0, "val_tokens": 0, "train_rows": 0, "val_rows": 0}
    batches = _batches(rows, 64)
    bar = tqdm(desc=desc, unit=" rows", disable=None)

    def write(res):
        tr, va, ntr, nva = res
        train_f.write(tr.tobytes())
        val_f.write(va.tobytes())
        counts["train_tokens"] += len(tr)
        counts["val_tokens"] += len(va)
        counts["train_rows"] += ntr
        counts["val_rows"] += nva
        bar.update(ntr + nva)

    if num_proc <= 1:
        _init_worker(tok_meta)
        for b in batches:
            write(_encode_batch(b))
    else:
        # windows of batches keep memory bounded (Pool.imap would read the whole stream ahead)
        with mp.Pool(num_proc, initializer=_init_worker, initargs=(tok_meta,)) as pool:
            while window := list(itertools.islice(batches, 4 * num_proc)):
                for res in pool.map(_encode_batch, window):
                    write(res)
    bar.close()
    return counts


# --------------------------------------------------------------------------------------------------
# prepare


def _check_name(dataset: str):
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", dataset or ""):
        raise DataError(f"bad dataset name {dataset!r}: use letters, digits, '_', '.', '-'")


def _up_to_date(out: Path, want: dict) -> bool:
    try:
        meta = json.loads((out / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if any(meta.get(k) != v for k, v in want.items()):
        return False
    itemsize = np.dtype(np.uint16).itemsize
    return all((out / f"{s}.bin").is_file() and (out / f"{s}.bin").stat().st_size == meta[f"{s}_tokens"] * itemsize
               for s in ("train", "val"))


def _commit(tmp: Path, out: Path):
    """Move the finished files into place; meta.json last, so its presence means the set is whole."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").unlink(missing_ok=True)  # an old meta.json must not vouch for half-replaced files
    for name in ("train.bin", "val.bin", "meta.json"):
        os.replace(tmp / name, out / name)


def prepare(dataset: str, data_dir=DEFAULT_DATA_DIR, source=None, *, tokenizer: str | None = None,
            num_proc: int | None = None, val_every: int | None = None, max_docs: int | None = None,
            text_field: str = "text", verbose: bool = True) -> Path:
    """Write DATA_DIR/dataset/{train.bin,val.bin,meta.json} and return that folder (see module doc)."""
    _check_name(dataset)
    data_dir = Path(data_dir)
    out = data_dir / dataset
    source = Path(source) if source is not None else None
    if tokenizer is not None and tokenizer not in ("gpt2", "byte", "char"):
        raise DataError(f"unknown tokenizer {tokenizer!r}; one of gpt2, byte, char")
    for flag, value in (("--num-proc", num_proc), ("--val-every", val_every), ("--max-docs", max_docs)):
        if value is not None and value < 1:
            raise DataError(f"{flag} must be >= 1, got {value}")
    num_proc = num_proc or min(8, os.cpu_count() or 1)
    say = print if verbose else (lambda *a, **k: None)

    if dataset in WHOLE_TEXT:
        tok_name = tokenizer or WHOLE_TEXT[dataset]
        if dataset == "python_stdlib":
            if source is not None:
                raise DataError("python_stdlib reads this Python's standard library; it takes no --source")
            text = python_stdlib_text()
            src_desc = f"python {sys.version.split()[0]} stdlib: {sysconfig.get_paths()['stdlib']}/*.py"
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        else:
            if source is not None and source.is_dir():
                raise DataError(f"{dataset} needs one text file, got folder {source}")
            path = local_files(source)[0] if source is not None else shakespeare_file(data_dir)
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"source {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
            src_desc, digest = str(path), sha256_file(path)
        if not text:
            raise DataError(f"source {src_desc} is empty")
        want = {"dataset": dataset, "tokenizer": tok_name, "sha256": digest, "val_fraction": 0.1}
        if _up_to_date(out, want):
            say(f"{out} is up to date (source sha256 {digest[:12]}...), nothing to do")
            return out
        tok = CharTokenizer("".join(sorted(set(text)))) if tok_name == "char" else get_tokenizer({"tokenizer": tok_name})
        if tok_name == "byte":  # split on bytes so train + val is exactly the source's bytes
            data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)
            n = int(0.9 * len(data))
            train, val = data[:n], data[n:]
        else:
            n = int(0.9 * len(text))
            train = np.array(tok.encode(text[:n]), dtype=np.uint16)
            val = np.array(tok.encode(text[n:]), dtype=np.uint16)
        tmp = Path(tempfile.mkdtemp(dir=_mkdir(data_dir), prefix=f".{dataset}.tmp-"))
        try:
            train.tofile(tmp / "train.bin")
            val.tofile(tmp / "val.bin")
            meta = {**want, "vocab_size": tok.vocab_size, "train_tokens": len(train), "val_tokens": len(val),
                    "source": src_desc, "dtype": "uint16", "eot_token": tok.eot}
            if tok_name == "char":
                meta["chars"] = tok.chars
            _write_json(tmp / "meta.json", meta)
            _commit(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        say(f"{dataset}: {len(train):,} train + {len(val):,} val tokens ({tok_name}, vocab {tok.vocab_size}) -> {out}")
        return out

    # documents path: Hugging Face datasets (hub or local files through the same builders)
    tok_name = tokenizer or "gpt2"
    if tok_name == "char":
        raise DataError("the char tokenizer needs the whole text up front; use --tokenizer gpt2 or byte")
    spec = HUB.get(dataset)
    if source is None and spec is None:
        raise DataError(f"unknown dataset {dataset!r}; known: {', '.join([*WHOLE_TEXT, *HUB])} "
                        f"(or pass --source FILE_OR_DIR to prepare your own text)")
    if source is not None:
        files = local_files(source)
        src_desc, digest = str(source.resolve()), sha256_files(files)
        val_every = val_every or 20  # 5% of rows
        splits = [("train", lambda: local_rows(files, text_field))]
    else:
        src_desc = f"hf:{spec.path}" + (f"/{spec.name}" if spec.name else "")
        digest = None  # a stream has no checksum before it is read; the hub revision pins it
        val_every = val_every or 1000  # 0.1% of documents when there is no validation split
        splits = [("train", lambda: hub_rows(spec, "train", text_field))]
        if spec.val_split:
            splits.append((spec.val_split, lambda: hub_rows(spec, spec.val_split, text_field)))
    want = {"dataset": dataset, "tokenizer": tok_name, "source": src_desc, "sha256": digest,
            "val_every": val_every, "max_docs": max_docs}
    if _up_to_date(out, want):
        say(f"{out} is up to date (source {src_desc}), nothing to do")
        return out
    tok_meta = {"tokenizer": tok_name}
    tok = get_tokenizer(tok_meta)
    tmp = Path(tempfile.mkdtemp(dir=_mkdir(data_dir), prefix=f".{dataset}.tmp-"))
    try:
        counts = {"train_tokens": 0, "val_tokens": 0, "train_rows": 0, "val_rows": 0}
        with open(tmp / "train.bin", "wb") as train_f, open(tmp / "val.bin", "wb") as val_f:
            for split, make_rows in splits:
                held_out = len(splits) == 1  # no validation split: hold out every val_every-th row
                is_val_split = split != "train"
                rows = itertools.islice(make_rows(), max_docs)
                rows = ((t, d, is_val_split or (held_out and i % val_every == 0)) for i, (t, d) in enumerate(rows))
                try:
                    c = tokenize_rows(rows, tok_meta, train_f, val_f, num_proc, f"{dataset}/{split}")
                except DataError:
                    raise
                except Exception as e:  # noqa: BLE001 - offline, no such dataset, bad file: one line
                    hint = "pass --source FILE_OR_DIR with local copies" if source is None else "check the files"
                    raise DataError(f"cannot read {src_desc} ({type(e).__name__}: {e}".splitlines()[0]
                                    + f"); {hint}") from None
                for k in counts:
                    counts[k] += c[k]
        if counts["train_tokens"] == 0 or counts["val_tokens"] == 0:
            raise DataError(f"source {src_desc} is too small: {counts['train_rows']} train and "
                            f"{counts['val_rows']} val rows after splitting")
        meta = {**want, "vocab_size": tok.vocab_size, **counts, "dtype": "uint16", "eot_token": tok.eot,
                "text_field": text_field}
        _write_json(tmp / "meta.json", meta)
        _commit(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"{dataset}: {counts['train_tokens']:,} train + {counts['val_tokens']:,} val tokens "
        f"({tok_name}, vocab {tok.vocab_size}) -> {out}")
    return out


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _write_json(path: Path, obj: dict):
    path.write_text(json.dumps(obj, indent=2) + "\n")


@dataclass
class PrepareConfig:
    dataset: str = knob("python_stdlib", f"one of {', '.join([*WHOLE_TEXT, *HUB])}, or any new name with --source")
    source: str | None = knob(None, "local file or folder (.txt/.jsonl/.parquet) instead of a download")
    data_dir: str = knob(str(DEFAULT_DATA_DIR), "outputs go to DATA_DIR/DATASET/")
    tokenizer: str | None = knob(None, "gpt2, byte or char (default: byte for python_stdlib, char for "
                                       "shakespeare_char, else gpt2)", choices=["gpt2", "byte", "char"])
    num_proc: int | None = knob(None, "tokenizer processes (default: cores, at most 8)")
    val_every: int | None = knob(None, "hold out every N-th row for val when there is no val split "
                                       "(default 20 local, 1000 hub)")
    max_docs: int | None = knob(None, "read at most this many rows per split")
    text_field: str = knob("text", "column holding the text in .jsonl/.parquet/hub rows")


def main(argv=None):
    cfg = parse_config(PrepareConfig, argv, "prepare.py", __doc__.split("\n\n")[0])
    os.environ.setdefault("USE_TORCH", "0")  # `datasets` need not import torch (seconds) to stream text
    prepare(cfg.dataset, cfg.data_dir, cfg.source, tokenizer=cfg.tokenizer, num_proc=cfg.num_proc,
            val_every=cfg.val_every, max_docs=cfg.max_docs, text_field=cfg.text_field)


if __name__ == "__main__":
    run_main(main)
