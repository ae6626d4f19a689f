"""FineWeb-Edu (sample-10BT) -> GPT-2 token shards, resumable.

    python build_nanogpt/fineweb.py                          # FineWeb-Edu sample-10BT (streams ~10B tokens)
    python build_nanogpt/fineweb.py --source my_corpus/ --out-dir data/mine --shard-size 1000000

Like karpathy/build-nanogpt's fineweb.py: every document is tokenized with tiktoken's GPT-2 BPE in a
process pool and preceded by <|endoftext|> (50256); tokens go into uint16 shards of `--shard-size`
tokens, `val_000000.npy` first, then `train_000001.npy`, ...; a document may span two shards. New here:
- `manifest.json` lists each complete shard with its token count, sha256, and where the source stood
  after it (documents fully written + tokens of the next document already written). A rerun skips
  exactly that much and continues, so an interrupted run ends with the same shards as an uninterrupted one.
- Shards and the manifest are written to a temp file and renamed: a partial shard is never left behind.
- `--source` takes local text files (.txt, .tokens, .raw, .md, .text: one document per file, as nanogpt reads
  them), .jsonl (one JSON object per line, field `--text-field`) or .parquet (column `--text-field`) files or
  folders of them, for tests and users' own corpora. A text file is read and tokenized in pieces, so memory
  stays bounded whatever its size.
FineWeb-Edu: Penedo et al. 2024, "The FineWeb Datasets" (HuggingFaceFW/fineweb-edu, config sample-10BT).
"""
from __future__ import annotations

import glob
import itertools
import json
import multiprocessing as mp
import os
import signal
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np
from tqdm import tqdm

from cli import UserError, knob, parse_config, run_main, stop_on_sigterm
from files import OutDirLock, atomic_write, sha256_of, write_json
from tokens import EOT, gpt2_encoding

MANIFEST = "manifest.json"
TEXT_SUFFIXES = (".txt", ".tokens", ".raw", ".md", ".text")  # plain text, one document per file (as nanogpt reads)
SUFFIXES = (*TEXT_SUFFIXES, ".jsonl", ".parquet")
TXT_PIECE = 1 << 20  # characters of a .txt read (and tokenized) at a time
MAX_PROC = 256
HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class ShardConfig:
    out_dir: str = knob(os.path.join(HERE, "data", "edu_fineweb10B"), "output folder for the shards")
    source: str = knob("", "local file or folder of text (.txt .tokens .raw .md .text: one document per file), "
                           ".jsonl or .parquet; empty: FineWeb-Edu from the hub")
    dataset: str = knob("HuggingFaceFW/fineweb-edu", "hub dataset (when --source is empty)")
    dataset_config: str = knob("sample-10BT", "hub dataset config name")
    text_field: str = knob("text", "field/column holding the text (.jsonl/.parquet/hub)")
    shard_size: int = knob(100_000_000, "tokens per shard")
    num_proc: int = knob(max(1, (os.cpu_count() or 2) // 2), "tokenizer processes (1: no pool)")
    max_shards: int = knob(-1, "stop after this many complete shards (-1: all); a rerun continues")


def check_config(cfg: ShardConfig) -> None:
    if not 1 <= cfg.shard_size <= 2**31:
        raise UserError(f"--shard-size {cfg.shard_size}: use 1 .. {2**31}")
    if not 1 <= cfg.num_proc <= MAX_PROC:
        raise UserError(f"--num-proc {cfg.num_proc}: use 1 .. {MAX_PROC}")
    if cfg.source:
        source_files(cfg.source)  # check the source before anything is created


# --------------------------------------------------------------------------------------------------
# documents in, tokens out. A piece is (text, first, last): a document is one piece or several in a row.

_enc = None


def tokenize(piece: tuple[str, bool, bool]) -> tuple[np.ndarray, bool]:
    """uint16 tokens of a piece (the first piece of a document starts with <|endoftext|>), and whether
    the document ends with it. A document of only whitespace adds nothing, not even <|endoftext|>."""
    global _enc
    if _enc is None:  # once per worker process
        _enc = gpt2_encoding()
    text, first, last = piece
    if first and last and (not text or not text.strip()):
        return np.empty(0, dtype=np.uint16), last
    ids = _enc.encode_ordinary(text)
    head = [EOT] if first else []
    return np.array(head + ids, dtype=np.uint16), last


def source_files(source: str) -> list[str]:
    """The local files a `--source` names, sorted (the order is part of the shards' identity)."""
    if not os.path.exists(source):
        raise UserError(f"--source {source!r} does not exist")
    if os.path.isdir(source):
        files = sorted(p for p in glob.glob(os.path.join(source, "**", "*"), recursive=True)
                       if p.endswith(SUFFIXES) and os.path.isfile(p))
        if not files:
            raise UserError(f"--source folder {source!r} holds no {'/'.join(SUFFIXES)} files")
        return files
    if not source.endswith(SUFFIXES):
        raise UserError(f"--source {source!r}: unsupported file type; use one of {', '.join(SUFFIXES)}")
    return [source]


def safe_cut(text: str) -> int:
    """The last place to split `text` without changing its tokens (0: none): right after a newline that
    follows a non-space and precedes one. GPT-2's pre-tokenizer never joins such a newline to a neighbour."""
    i = text.rfind("\n", 0, len(text) - 1)
    while i > 0:
        if not text[i - 1].isspace() and not text[i + 1].isspace():
            return i + 1
        i = text.rfind("\n", 0, i)
    return 0


def txt_pieces(path: str, size: int = TXT_PIECE) -> Iterator[tuple[str, bool, bool]]:
    """A .txt file as one document, in pieces of about `size` characters cut where the tokens allow."""
    pending, first = "", True
    with open(path, encoding="utf-8") as f:
        while chunk := f.read(size):
            pending += chunk
            cut = safe_cut(pending)
            if cut:
                yield pending[:cut], first, False
                pending, first = pending[cut:], False
    yield pending, first, True


def jsonl_texts(path: str, text_field: str) -> Iterator[str | None]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                text = json.loads(line)[text_field]
                if not isinstance(text, (str, type(None))):  # null: an empty document, as in parquet
                    raise TypeError
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f"{path}:{lineno}: not a JSON object with a string {text_field!r} field") from None
            yield text


def parquet_texts(path: str, text_field: str) -> Iterator[str | None]:
    import pyarrow as pa  # noqa: PLC0415 - only needed for parquet sources
    import pyarrow.parquet as pq  # noqa: PLC0415

    try:
        pf = pq.ParquetFile(path)
        if text_field not in pf.schema_arrow.names:
            raise UserError(f"{path}: no column {text_field!r}; columns are {pf.schema_arrow.names}")
        kind = pf.schema_arrow.field(text_field).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise UserError(f"{path}: column {text_field!r} holds {kind}, not strings")
        for batch in pf.iter_batches(columns=[text_field]):
            yield from batch.column(0).to_pylist()
    except pa.ArrowException as e:  # not parquet, truncated, a damaged page (ArrowInvalid, ArrowIOError...)
        first = (str(e).strip().splitlines() or [""])[0][:160]
        raise UserError(f"{path}: not a readable parquet file ({type(e).__name__}: {first})") from None


def local_pieces(files: list[str], text_field: str) -> Iterator[tuple[str, bool, bool]]:
    """A text file is one document (in pieces); a .jsonl line or a parquet row is one (None: empty)."""
    for path in files:
        try:
            if path.endswith(TEXT_SUFFIXES):
                yield from txt_pieces(path)
                continue
            texts = jsonl_texts(path, text_field) if path.endswith(".jsonl") else parquet_texts(path, text_field)
            for text in texts:
                yield text or "", True, True
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text ({e.reason}, byte {e.object[e.start:e.start + 1]!r}); "
                            "convert it to UTF-8") from None


def hub_pieces(cfg: ShardConfig, skip: int) -> Iterator[tuple[str, bool, bool]]:
    try:
        import datasets  # noqa: PLC0415 - slow import; only the hub path needs it

        ds = datasets.load_dataset(cfg.dataset, name=cfg.dataset_config, split="train", streaming=True)
        for row in ds.skip(skip) if skip else ds:
            yield row[cfg.text_field] or "", True, True
    except (ConnectionError, OSError) as e:  # offline, hub down, unknown dataset
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"could not stream {cfg.dataset}/{cfg.dataset_config} from the hub ({first}); "
                        "check the network or pass local files with --source") from None


def iter_pieces(cfg: ShardConfig, skip: int) -> Iterator[tuple[str, bool, bool]]:
    """Every document's pieces in a fixed order, after skipping the first `skip` documents."""
    if not cfg.source:
        yield from hub_pieces(cfg, skip)
        return
    pieces = local_pieces(source_files(cfg.source), cfg.text_field)
    while skip:
        skip -= next(pieces)[2]  # a document ends with its last piece
    yield from pieces


def tokenized(pieces: Iterator, pool, num_proc: int) -> Iterator[tuple[np.ndarray, bool]]:
    """tokenize() over the pieces, in order, one batch of 16 pieces per process in flight (bounded memory)."""
    if pool is None:
        yield from map(tokenize, pieces)
        return
    while batch := list(itertools.islice(pieces, 16 * num_proc)):
        yield from pool.map(tokenize, batch, chunksize=16)


# --------------------------------------------------------------------------------------------------
# shards and manifest


def shard_name(index: int) -> str:
    return f"{'val' if index == 0 else 'train'}_{index:06d}.npy"  # the first shard is the val split


def source_id(cfg: ShardConfig) -> str:
    return os.path.abspath(cfg.source) if cfg.source else f"hub:{cfg.dataset}/{cfg.dataset_config}"


def load_manifest(cfg: ShardConfig) -> dict:
    """The manifest of `cfg.out_dir` (checked against cfg), or a new empty one."""
    path = os.path.join(cfg.out_dir, MANIFEST)
    if not os.path.exists(path):
        return {"source": source_id(cfg), "encoding": "gpt2", "eot": EOT, "dtype": "uint16",
                "shard_size": cfg.shard_size, "text_field": cfg.text_field, "shards": [], "complete": False}
    with open(path) as f:
        manifest = json.load(f)
    for key, want in (("source", source_id(cfg)), ("shard_size", cfg.shard_size), ("text_field", cfg.text_field)):
        if manifest.get(key) != want:
            raise UserError(f"{cfg.out_dir} holds shards made with {key}={manifest.get(key)!r}, not {want!r}; "
                            "use another --out-dir folder")
    return manifest


class ShardWriter:
    """Fills shards of `size` tokens in `out_dir`: owns the buffer, the manifest and the progress bar.

    Position in the source: `docs_done` documents fully consumed, plus `doc_pos` tokens of the next one.
    A resumed writer drops the first `skip` tokens of that next document (already in the last shard).
    """

    def __init__(self, out_dir: str, manifest: dict, max_shards: int = -1):
        self.out_dir, self.manifest, self.max_shards = out_dir, manifest, max_shards
        self.size = manifest["shard_size"]
        self.shards = manifest["shards"]
        last = self.shards[-1] if self.shards else {"docs_end": 0, "doc_offset": 0}
        self.docs_done, self.skip, self.doc_pos = last["docs_end"], last["doc_offset"], 0
        self.buf = np.empty(self.size, dtype=np.uint16)
        self.fill = 0
        self.bar = self._new_bar()

    def _new_bar(self):
        return tqdm(total=self.size, unit="tok", unit_scale=True, desc=f"shard {len(self.shards)}",
                    disable=None)

    @property
    def full(self) -> bool:
        """--max-shards reached: stop feeding."""
        return 0 < self.max_shards <= len(self.shards)

    def add(self, tokens: np.ndarray, ends_document: bool) -> None:
        """Append one piece of a document; every full shard is written at once."""
        drop = min(self.skip, len(tokens))
        self.skip -= drop
        self.doc_pos += drop
        start = drop
        while start < len(tokens) and not self.full:
            take = min(self.size - self.fill, len(tokens) - start)
            self.buf[self.fill:self.fill + take] = tokens[start:start + take]
            self.fill, start, self.doc_pos = self.fill + take, start + take, self.doc_pos + take
            self.bar.update(take)
            if self.fill == self.size:
                done = start == len(tokens) and ends_document
                self._write(self.buf, self.docs_done + done, 0 if done else self.doc_pos)
        if ends_document:
            self.docs_done, self.doc_pos = self.docs_done + 1, 0

    def _write(self, tokens: np.ndarray, docs_end: int, doc_offset: int) -> None:
        name = shard_name(len(self.shards))
        path = atomic_write(os.path.join(self.out_dir, name), lambda tmp: _save_npy(tmp, tokens))
        digest = sha256_of(path)
        self.shards.append({"file": name, "split": "val" if len(self.shards) == 0 else "train",
                            "tokens": int(len(tokens)), "sha256": digest, "docs_end": docs_end,
                            "doc_offset": doc_offset})
        write_json(os.path.join(self.out_dir, MANIFEST), self.manifest)
        self.fill = 0
        self.bar.close()
        self.bar = self._new_bar()

    def finish(self) -> None:
        """The remainder becomes a last, shorter shard; the manifest is marked complete."""
        if self.fill:
            self._write(self.buf[:self.fill], self.docs_done, 0)
        self.bar.close()
        self.manifest["complete"] = True
        self.manifest["total_tokens"] = sum(s["tokens"] for s in self.shards)
        write_json(os.path.join(self.out_dir, MANIFEST), self.manifest)


def _save_npy(path, tokens: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, tokens, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def build_shards(cfg: ShardConfig) -> dict:
    """Write (or finish writing) the shards of `cfg.source` into `cfg.out_dir`; returns the manifest."""
    check_config(cfg)
    manifest = load_manifest(cfg)
    shards = manifest["shards"]
    if manifest["complete"]:
        print(f"{cfg.out_dir}: already complete ({len(shards)} shards)")
        return manifest
    if 0 < cfg.max_shards <= len(shards):  # a rerun with the same --max-shards has nothing to add
        print(f"{cfg.out_dir}: already {len(shards)} shards (--max-shards {cfg.max_shards}); rerun without it")
        return manifest
    created = not os.path.exists(cfg.out_dir)
    try:
        with OutDirLock(cfg.out_dir):
            return write_all(cfg, manifest)
    except UserError:
        if created and os.path.isdir(cfg.out_dir) and not os.listdir(cfg.out_dir):
            os.rmdir(cfg.out_dir)  # a source refused before the first shard leaves nothing behind
        raise


def ignore_sigint() -> None:
    """In each pool worker: Ctrl-C reaches the whole process group, and only the parent acts on it (it
    terminates the pool and removes its temp file), so no worker prints a traceback of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def request_stop(stop: list, signum: int) -> None:
    """A first signal is noted in `stop`; a second one ends the script at once."""
    if stop:
        raise KeyboardInterrupt(signal.Signals(signum).name)
    stop.append(signal.Signals(signum))


def write_all(cfg: ShardConfig, manifest: dict) -> dict:
    """Tokenize the source (in a pool) into a ShardWriter, from where the manifest stands."""
    shards = manifest["shards"]
    writer = ShardWriter(cfg.out_dir, manifest, cfg.max_shards)
    if shards:
        print(f"resuming after shard {len(shards) - 1}: skipping {writer.docs_done:,} documents "
              f"(+{writer.skip:,} tokens)")
    # "spawn" everywhere (the only start method on Windows, the default on macOS): workers re-import
    # this module, so it must not do anything at import time
    pool = mp.get_context("spawn").Pool(cfg.num_proc, ignore_sigint) if cfg.num_proc > 1 else None
    # While the pool runs, a first Ctrl-C or SIGTERM only sets a flag, acted on between results: raised inside
    # the pool's own waits, the exception can leave its internal lock held, and terminate() then hangs.
    stop: list[signal.Signals] = []
    previous = {s: signal.signal(s, lambda signum, _: request_stop(stop, signum))
                for s in (signal.SIGINT, signal.SIGTERM)} if pool else {}
    try:
        for tokens, last in tokenized(iter_pieces(cfg, writer.docs_done), pool, cfg.num_proc):
            if stop:
                raise KeyboardInterrupt(*(["SIGTERM"] if stop[0] == signal.SIGTERM else []))
            writer.add(tokens, last)
            if writer.full:
                print(f"stopped after {len(shards)} shards (--max-shards); rerun to continue")
                return manifest
    finally:
        writer.bar.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pool:
            pool.terminate()
    if not shards and not writer.fill:
        raise UserError(f"source {source_id(cfg)!r} holds no text (no non-empty document)")
    writer.finish()
    print(f"wrote {len(shards)} shard{'s' * (len(shards) > 1)}, {manifest['total_tokens']:,} tokens, "
          f"to {cfg.out_dir}")
    return manifest


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(ShardConfig, argv, "fineweb.py", "\n\n".join(__doc__.split("\n\n")[:2]))
    settings = asdict(cfg)
    if cfg.source:  # the hub's dataset is not what this run reads
        del settings["dataset"], settings["dataset_config"]
    print(json.dumps(settings))
    build_shards(cfg)


if __name__ == "__main__":  # the pool's workers re-import this module: nothing may run at import time
    stop_on_sigterm()  # SIGTERM as Ctrl-C: the pool is terminated, the temp file removed, one line
    run_main(main)
