"""FineWeb-Edu (sample-10BT) -> GPT-2 token shards, resumable.

    python build_nanogpt/fineweb.py                          # FineWeb-Edu sample-10BT (streams ~10B tokens)
    python build_nanogpt/fineweb.py --source my_corpus/ --out data/mine --shard-size 1000000

Like karpathy/build-nanogpt's fineweb.py: every document is tokenized with tiktoken's GPT-2 BPE in a
process pool and preceded by <|endoftext|> (50256); tokens go into uint16 shards of `--shard-size`
tokens, `val_000000.npy` first, then `train_000001.npy`, ...; a document may span two shards. New here:
- `manifest.json` lists each complete shard with its token count, sha256, and where the source stood
  after it (documents fully written + tokens of the next document already written). A rerun skips
  exactly that much and continues, so an interrupted run ends with the same shards as an uninterrupted one.
- Shards and the manifest are written to a temp file and renamed: a partial shard is never left behind.
- `--source` takes local .txt (one document per file), .jsonl (one JSON object per line, field `--text-field`)
  or .parquet (column `--text-field`) files or folders of them, for tests and users' own corpora.
FineWeb-Edu: Penedo et al. 2024, "The FineWeb Datasets" (HuggingFaceFW/fineweb-edu, config sample-10BT).
"""
from __future__ import annotations

import glob
import hashlib
import json
import multiprocessing as mp
import os
from dataclasses import asdict, dataclass, field
from typing import Iterator

import numpy as np
import tiktoken
from tqdm import tqdm

from cli import UserError, parse_config, run_main

EOT = 50256  # <|endoftext|> in the GPT-2 vocabulary
MANIFEST = "manifest.json"
SUFFIXES = (".txt", ".jsonl", ".parquet")


@dataclass
class ShardConfig:
    out: str = field(default="build_nanogpt/data/edu_fineweb10B", metadata={"help": "output folder for the shards"})
    source: str = field(default="", metadata={"help": "local .txt/.jsonl/.parquet file or folder; empty: FineWeb-Edu from the hub"})
    dataset: str = field(default="HuggingFaceFW/fineweb-edu", metadata={"help": "hub dataset (when --source is empty)"})
    dataset_config: str = field(default="sample-10BT", metadata={"help": "hub dataset config name"})
    text_field: str = field(default="text", metadata={"help": "field/column holding the text (.jsonl/.parquet/hub)"})
    shard_size: int = field(default=100_000_000, metadata={"help": "tokens per shard"})
    workers: int = field(default=max(1, (os.cpu_count() or 2) // 2), metadata={"help": "tokenizer processes (1: no pool)"})
    max_shards: int = field(default=-1, metadata={"help": "stop after this many complete shards (-1: all); a rerun continues"})


# --------------------------------------------------------------------------------------------------
# documents in, tokens out

_enc = None


def tokenize(text: str) -> np.ndarray:
    """<|endoftext|> followed by the document's tokens, as uint16 (the GPT-2 vocabulary fits)."""
    global _enc
    if _enc is None:  # once per worker process
        _enc = tiktoken.get_encoding("gpt2")
    if not text or not text.strip():
        return np.empty(0, dtype=np.uint16)  # an empty document adds nothing, not even a lone <|endoftext|>
    ids = _enc.encode_ordinary(text)
    tokens = np.empty(len(ids) + 1, dtype=np.uint16)
    tokens[0] = EOT
    tokens[1:] = ids
    return tokens


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


def iter_local(files: list[str], text_field: str) -> Iterator[str]:
    """Document texts: a whole .txt file, or one per .jsonl line / parquet row (None for a null)."""
    for path in files:
        if path.endswith(".txt"):
            with open(path, encoding="utf-8") as f:
                yield f.read()
        elif path.endswith(".jsonl"):
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
        else:
            import pyarrow as pa  # only needed for parquet sources
            import pyarrow.parquet as pq
            pf = pq.ParquetFile(path)
            if text_field not in pf.schema_arrow.names:
                raise UserError(f"{path}: no column {text_field!r}; columns are {pf.schema_arrow.names}")
            kind = pf.schema_arrow.field(text_field).type
            if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                raise UserError(f"{path}: column {text_field!r} holds {kind}, not strings")
            for batch in pf.iter_batches(columns=[text_field]):
                yield from batch.column(0).to_pylist()


def iter_documents(cfg: ShardConfig, skip: int) -> Iterator[str]:
    """Every document's text in a fixed order, after skipping the first `skip` of them."""
    if cfg.source:
        it = iter_local(source_files(cfg.source), cfg.text_field)
        for _ in range(skip):
            next(it, None)
        yield from it
        return
    try:
        import datasets  # slow import; only the hub path needs it
        ds = datasets.load_dataset(cfg.dataset, name=cfg.dataset_config, split="train", streaming=True)
        if skip:
            ds = ds.skip(skip)
        for row in ds:
            yield row[cfg.text_field]
    except (ConnectionError, OSError) as e:  # offline, hub down, unknown dataset
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"could not stream {cfg.dataset}/{cfg.dataset_config} from the hub ({first}); "
                        "check the network or pass local files with --source") from None


# --------------------------------------------------------------------------------------------------
# shards and manifest, each written atomically


def shard_name(index: int) -> str:
    return f"{'val' if index == 0 else 'train'}_{index:06d}.npy"  # the first shard is the val split


def _atomic_write(path: str, write) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old file or the new one


def write_shard(out: str, index: int, tokens: np.ndarray) -> dict:
    path = os.path.join(out, shard_name(index))
    _atomic_write(path, lambda f: np.save(f, tokens, allow_pickle=False))
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return {"file": shard_name(index), "split": "val" if index == 0 else "train",
            "tokens": int(len(tokens)), "sha256": digest}


def write_manifest(out: str, manifest: dict) -> None:
    _atomic_write(os.path.join(out, MANIFEST), lambda f: f.write(json.dumps(manifest, indent=1).encode()))


def source_id(cfg: ShardConfig) -> str:
    return os.path.abspath(cfg.source) if cfg.source else f"hub:{cfg.dataset}/{cfg.dataset_config}"


def load_manifest(cfg: ShardConfig) -> dict | None:
    path = os.path.join(cfg.out, MANIFEST)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        manifest = json.load(f)
    for key, want in (("source", source_id(cfg)), ("shard_size", cfg.shard_size), ("text_field", cfg.text_field)):
        if manifest.get(key) != want:
            raise UserError(f"{cfg.out} holds shards made with {key}={manifest.get(key)!r}, not {want!r}; "
                            "use another --out folder")
    return manifest


def build_shards(cfg: ShardConfig) -> dict:
    """Write (or finish writing) the shards of `cfg.source` into `cfg.out`; returns the manifest."""
    if cfg.shard_size < 1 or cfg.workers < 1:
        raise UserError(f"--shard-size ({cfg.shard_size}) and --workers ({cfg.workers}) must be >= 1")
    if cfg.source:
        source_files(cfg.source)  # check the source before anything is created
    manifest = load_manifest(cfg)
    if manifest is None:
        manifest = {"source": source_id(cfg), "encoding": "gpt2", "eot": EOT, "dtype": "uint16",
                    "shard_size": cfg.shard_size, "text_field": cfg.text_field, "shards": [], "complete": False}
    if manifest["complete"]:
        print(f"{cfg.out}: already complete ({len(manifest['shards'])} shards)")
        return manifest
    for stale in glob.glob(os.path.join(cfg.out, "*.tmp")):
        os.remove(stale)  # left by a run killed mid-write; never a shard

    shards = manifest["shards"]
    if 0 < cfg.max_shards <= len(shards):  # a rerun with the same --max-shards has nothing to add
        print(f"{cfg.out}: already {len(shards)} shards (--max-shards {cfg.max_shards}); rerun without it to continue")
        return manifest
    docs_done, offset = (shards[-1]["docs_end"], shards[-1]["doc_offset"]) if shards else (0, 0)
    if shards:
        print(f"resuming after shard {len(shards) - 1}: skipping {docs_done:,} documents (+{offset:,} tokens)")
    index = len(shards)
    buf = np.empty(cfg.shard_size, dtype=np.uint16)
    fill = 0
    # "spawn" everywhere (the only start method on Windows and the default on macOS): workers re-import
    # this module, so it must not do anything at import time
    pool = mp.get_context("spawn").Pool(cfg.workers) if cfg.workers > 1 else None
    try:
        docs = iter_documents(cfg, docs_done)
        tokenized = pool.imap(tokenize, docs, chunksize=16) if pool else map(tokenize, docs)
        bar = tqdm(total=cfg.shard_size, unit="tok", desc=f"shard {index}", disable=None)
        for tokens in tokenized:
            base, offset = offset, 0  # the head of the first document may already be in the last shard
            tokens = tokens[base:]
            start = 0  # how far into `tokens` we are
            while start < len(tokens):
                take = min(cfg.shard_size - fill, len(tokens) - start)
                buf[fill:fill + take] = tokens[start:start + take]
                fill, start = fill + take, start + take
                bar.update(take)
                if fill < cfg.shard_size:
                    break  # document used up, shard not full yet
                # shard full: record where the source stands, so a rerun resumes mid-document if need be
                os.makedirs(cfg.out, exist_ok=True)  # created only once there is something to write
                entry = write_shard(cfg.out, index, buf)
                if start == len(tokens):
                    entry.update(docs_end=docs_done + 1, doc_offset=0)
                else:
                    entry.update(docs_end=docs_done, doc_offset=base + start)
                shards.append(entry)
                write_manifest(cfg.out, manifest)
                index, fill = index + 1, 0
                bar.close()
                if cfg.max_shards > 0 and len(shards) >= cfg.max_shards:
                    print(f"stopped after {len(shards)} shards (--max-shards); rerun to continue")
                    return manifest
                bar = tqdm(total=cfg.shard_size, unit="tok", desc=f"shard {index}", disable=None)
            docs_done += 1
        bar.close()
    finally:
        if pool:
            pool.terminate()
    if fill:  # the remainder becomes a last, shorter shard
        os.makedirs(cfg.out, exist_ok=True)
        entry = write_shard(cfg.out, index, buf[:fill])
        entry.update(docs_end=docs_done, doc_offset=0)
        shards.append(entry)
    if not shards:
        raise UserError(f"source {source_id(cfg)!r} holds no text (no non-empty document)")
    manifest["complete"] = True
    manifest["total_tokens"] = sum(s["tokens"] for s in shards)
    write_manifest(cfg.out, manifest)
    print(f"wrote {len(shards)} shard{'s' * (len(shards) > 1)}, {manifest['total_tokens']:,} tokens, to {cfg.out}")
    return manifest


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(ShardConfig, argv, "\n\n".join(__doc__.split("\n\n")[:2]))
    print(json.dumps(asdict(cfg)))
    build_shards(cfg)


if __name__ == "__main__":  # the pool's workers re-import this module: nothing may run at import time
    run_main(main)
