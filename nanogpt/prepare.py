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

import errno
import hashlib
import itertools
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cli import knob, parse_config, run_main
from files import alive, why_failed, write_json
from sources import (HUB, DataError, hub_rows, local_files, local_rows, python_stdlib_text, sha256_file,
                     sha256_files, shakespeare_file)
from tokenizer import CharTokenizer, get_tokenizer

DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"

# whole-text datasets: name -> tokenizer
WHOLE_TEXT = {"python_stdlib": "byte", "shakespeare_char": "char", "shakespeare": "gpt2"}


# --------------------------------------------------------------------------------------------------
# tokenizing in a pool

_worker_tok = None


def _load_tokenizer(meta: dict):
    global _worker_tok
    _worker_tok = get_tokenizer(meta)


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def start_pool(num_proc: int, tok_meta: dict) -> mp.pool.Pool:
    """num_proc tokenizer workers, each started with SIGINT and SIGTERM blocked until _init_worker has set its
    own handlers: before that a signal would run the parent's handler, inherited by fork, in the worker (e.g. a
    KeyboardInterrupt traceback when pool.terminate() stops a worker that is still starting up)."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return mp.Pool(num_proc, initializer=_init_worker, initargs=(tok_meta,))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _init_worker(meta: dict):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it terminates the pool
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # and pool.terminate() ends a worker without a word
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    _load_tokenizer(meta)


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
        _load_tokenizer(tok_meta)
        for b in batches:
            write(_encode_batch(b))
    else:
        # windows of batches keep memory bounded (Pool.imap would read the whole stream ahead)
        with start_pool(num_proc, tok_meta) as pool:
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
    source = Path(source) if source is not None else None
    if tokenizer is not None and tokenizer not in ("gpt2", "byte", "char"):
        raise DataError(f"unknown tokenizer {tokenizer!r}; one of gpt2, byte, char")
    for flag, value in (("--num-proc", num_proc), ("--val-every", val_every), ("--max-docs", max_docs)):
        if value is not None and value < 1:
            raise DataError(f"{flag} must be >= 1, got {value}")
    if num_proc is not None and num_proc > 256:
        raise DataError(f"--num-proc must be <= 256, got {num_proc}")
    say = print if verbose else (lambda *a, **k: None)
    if dataset in WHOLE_TEXT:
        return _prepare_whole_text(dataset, data_dir, source, tokenizer or WHOLE_TEXT[dataset], say)
    return _prepare_documents(dataset, data_dir, source, tokenizer or "gpt2", num_proc or min(8, os.cpu_count() or 1),
                              val_every, max_docs, text_field, say)


# the text is read in pieces of this many characters; a GPT-2 BPE piece ends where the pre-tokenizer splits for
# certain: between a newline and a non-space, with a non-space before the newline ("a\nB", never "a \n B")
CHUNK = 1 << 20
_BPE_CUT = re.compile(r"(?<=\S\n)(?=\S)")


def _text_chunks(path: Path | None, text: str | None):
    """The text in pieces of CHUNK characters (universal newlines), from a file or a string in memory."""
    if text is not None:
        yield from (text[i : i + CHUNK] for i in range(0, len(text), CHUNK))
        return
    try:
        with open(path, encoding="utf-8") as f:
            while chunk := f.read(CHUNK):
                yield chunk
    except UnicodeDecodeError as e:
        raise DataError(f"source {path} is not UTF-8 text ({e.reason})") from None


def _first_units(chunks, n: int, rest: list):
    """Yield the first n units (characters or bytes) of chunks; the piece beyond n goes to rest."""
    for chunk in chunks:
        if n <= 0:
            rest.append(chunk)
            return
        if len(chunk) > n:
            rest.append(chunk[n:])
            chunk = chunk[:n]
        n -= len(chunk)
        yield chunk


def _encode_pieces(pieces, tok, f) -> int:
    """Tokenize a stream of text (or byte) pieces into the open file f -> tokens written. The tokens equal
    tok.encode of the whole concatenation: BPE text is cut only where its pre-tokenizer splits anyway."""
    pending, count = None, 0
    for piece in pieces:
        pending = piece if pending is None else pending + piece
        cut = len(pending)
        if tok.name == "gpt2":
            cut = max((m.start() for m in _BPE_CUT.finditer(pending, max(0, len(pending) - len(piece) - 2))),
                      default=0)
        if cut:
            count += _write_ids(tok, pending[:cut], f)
            pending = pending[cut:]
    return count + (_write_ids(tok, pending, f) if pending else 0)


def _write_ids(tok, piece, f) -> int:
    ids = np.frombuffer(piece, np.uint8) if isinstance(piece, bytes) else tok.encode(piece)
    arr = np.asarray(ids, dtype=np.uint16)
    f.write(arr.tobytes())
    return len(arr)


def _prepare_whole_text(dataset: str, data_dir: Path, source: Path | None, tok_name: str, say) -> Path:
    """Read the text twice, streaming: once for its size (and characters), once to tokenize the first 90% into
    train.bin and the rest into val.bin, so decode(train + val) is the source exactly."""
    text = path = None
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
        src_desc, digest = str(path), sha256_file(path)
    out = data_dir / dataset
    want = {"dataset": dataset, "tokenizer": tok_name, "sha256": digest, "val_fraction": 0.1}
    if _up_to_date(out, want):
        say(f"{out} is up to date (source sha256 {digest[:12]}...), nothing to do")
        return out
    n_chars, n_bytes, chars = 0, 0, set()
    for chunk in _text_chunks(path, text):
        n_chars, n_bytes = n_chars + len(chunk), n_bytes + len(chunk.encode("utf-8"))
        if tok_name == "char":
            chars.update(chunk)
    if not n_chars:
        raise DataError(f"source {src_desc} is empty")
    tok = CharTokenizer("".join(sorted(chars))) if tok_name == "char" else get_tokenizer({"tokenizer": tok_name})
    by_bytes = tok_name == "byte"  # split on bytes, so train + val is exactly the source's bytes
    units = (c.encode("utf-8") for c in _text_chunks(path, text)) if by_bytes else _text_chunks(path, text)
    rest = []
    tmp = _temp_folder(data_dir, dataset)
    try:
        with open(tmp / "train.bin", "wb") as train_f, open(tmp / "val.bin", "wb") as val_f:
            n_train = _encode_pieces(_first_units(units, int(0.9 * (n_bytes if by_bytes else n_chars)), rest),
                                     tok, train_f)
            n_val = _encode_pieces(itertools.chain(rest, units), tok, val_f)
        meta = {**want, "vocab_size": tok.vocab_size, "train_tokens": n_train, "val_tokens": n_val,
                "source": src_desc, "dtype": "uint16", "eot_token": tok.eot}
        if tok_name == "char":
            meta["chars"] = tok.chars
        write_json(tmp / "meta.json", meta)
        _commit(tmp, out)
    except OSError as e:  # e.g. a full disk (the source was read once already, whole)
        raise DataError(f"cannot prepare {out}: {why_failed(e)}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"{dataset}: {n_train:,} train + {n_val:,} val tokens ({tok_name}, vocab {tok.vocab_size}) -> {out}")
    return out


def _prepare_documents(dataset: str, data_dir: Path, source: Path | None, tok_name: str, num_proc: int,
                       val_every: int | None, max_docs: int | None, text_field: str, say) -> Path:
    """Hugging Face datasets (hub or local files through the same builders), tokenized in a pool."""
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
    out = data_dir / dataset
    want = {"dataset": dataset, "tokenizer": tok_name, "source": src_desc, "sha256": digest,
            "val_every": val_every, "max_docs": max_docs}
    if _up_to_date(out, want):
        say(f"{out} is up to date (source {src_desc}), nothing to do")
        return out
    tok_meta = {"tokenizer": tok_name}
    tok = get_tokenizer(tok_meta)
    tmp = _temp_folder(data_dir, dataset)
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
                    if isinstance(e, OSError) and e.errno == errno.ENOSPC:  # writing, not reading
                        raise DataError(f"cannot write {out}: {why_failed(e)}") from None
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
        write_json(tmp / "meta.json", meta)
        _commit(tmp, out)
    except OSError as e:  # the rows were read above (read errors are DataError): writing failed, e.g. a full disk
        raise DataError(f"cannot write {out}: {why_failed(e)}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"{dataset}: {counts['train_tokens']:,} train + {counts['val_tokens']:,} val tokens "
        f"({tok_name}, vocab {tok.vocab_size}) -> {out}")
    return out


def _temp_folder(data_dir: Path, dataset: str) -> Path:
    """A fresh DATA_DIR/.NAME.tmp-PID-xxxx folder; those of runs that died (their pid is gone) are removed."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        for old in data_dir.glob(f".{dataset}.tmp-*"):
            pid = old.name.split(".tmp-", 1)[1].split("-", 1)[0]
            if pid.isdigit() and not alive(int(pid)):
                shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=data_dir, prefix=f".{dataset}.tmp-{os.getpid()}-"))
    except OSError as e:
        raise DataError(f"cannot write to --data-dir {data_dir}: {why_failed(e)}") from None


@dataclass
class PrepareConfig:
    dataset: str = knob("python_stdlib", f"one of {', '.join([*WHOLE_TEXT, *HUB])}, or any new name with --source")
    source: str | None = knob(None, "local file or folder (.txt/.jsonl/.parquet) instead of a download")
    data_dir: str = knob(str(DEFAULT_DATA_DIR), "outputs go to DATA_DIR/DATASET/")
    tokenizer: str | None = knob(None, "gpt2, byte or char (none: byte for python_stdlib, char for "
                                       "shakespeare_char, else gpt2)", choices=["gpt2", "byte", "char"])
    num_proc: int | None = knob(None, "tokenizer processes (none: the cores, at most 8)")
    val_every: int | None = knob(None, "hold out every N-th row for val when there is no val split "
                                       "(none: 20 local, 1000 hub)")
    max_docs: int | None = knob(None, "read at most this many rows per split")
    text_field: str = knob("text", "column holding the text in .jsonl/.parquet/hub rows")


def interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    cfg = parse_config(PrepareConfig, argv, "prepare.py", __doc__.split("\n\n")[0])
    os.environ.setdefault("USE_TORCH", "0")  # `datasets` need not import torch (seconds) to stream text
    previous = signal.signal(signal.SIGTERM, interrupt)  # SIGTERM stops it as Ctrl-C does
    try:
        prepare(cfg.dataset, cfg.data_dir, cfg.source, tokenizer=cfg.tokenizer, num_proc=cfg.num_proc,
                val_every=cfg.val_every, max_docs=cfg.max_docs, text_field=cfg.text_field)
    except KeyboardInterrupt:
        print(f"prepare.py: interrupted; nothing written to {Path(cfg.data_dir) / cfg.dataset}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    run_main(main)
