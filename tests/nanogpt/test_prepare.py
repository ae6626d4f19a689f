"""nanogpt/prepare.py: exact round trips, checksums, no-op re-runs, the datasets path on local files,
the download code against a local HTTP server, and clean one-line errors with nothing left behind."""
import hashlib
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import prepare as P
from helpers import big_wikitext_source, signal_once_preparing
import sources
from tokenizer import get_tokenizer

SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def load(out: Path):
    meta = json.loads((out / "meta.json").read_text())
    train = np.memmap(out / "train.bin", dtype=np.uint16, mode="r")
    val = np.memmap(out / "val.bin", dtype=np.uint16, mode="r")
    assert (len(train), len(val)) == (meta["train_tokens"], meta["val_tokens"])
    return meta, train, val


def leftovers(data_dir: Path):
    """Everything in data_dir (recursively), to prove a failed run wrote nothing."""
    return sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*")) if data_dir.exists() else []


# --------------------------------------------------------------------------------------------------
# whole-text datasets


def test_python_stdlib_round_trip_and_noop(tmp_path, capsys):
    out = P.prepare("python_stdlib", tmp_path)
    meta, train, val = load(out)
    text = sources.python_stdlib_text()
    assert meta["tokenizer"] == "byte" and meta["vocab_size"] == 256
    assert meta["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert len(train) + len(val) == len(text.encode())
    assert len(text.encode()) > 2_000_000  # a few MB of real code
    tok = get_tokenizer(meta)
    assert tok.decode(np.concatenate([train, val])) == text
    # re-running is a no-op: files untouched
    stamp = [(out / f).stat().st_mtime_ns for f in ("train.bin", "val.bin", "meta.json")]
    P.prepare("python_stdlib", tmp_path)
    assert "up to date" in capsys.readouterr().out
    assert stamp == [(out / f).stat().st_mtime_ns for f in ("train.bin", "val.bin", "meta.json")]


@pytest.mark.parametrize("dataset, tokenizer, counts", [
    ("shakespeare_char", "char", (1_003_854, 111_540)),  # the counts nanoGPT's README prints
    ("shakespeare", "gpt2", (301_966, 36_059)),
])
def test_shakespeare_from_source(tmp_path, shared_file, tiktoken_cache, dataset, tokenizer, counts):
    src = shared_file("tinyshakespeare/input.txt")
    out = P.prepare(dataset, tmp_path, source=src)
    meta, train, val = load(out)
    assert meta["tokenizer"] == tokenizer and meta["sha256"] == SHAKESPEARE_SHA256
    assert (len(train), len(val)) == counts
    text = src.read_text()
    assert get_tokenizer(meta).decode(np.concatenate([train, val])) == text
    if tokenizer == "char":
        assert meta["vocab_size"] == 65 and int(train.max()) < 65


def test_rerun_rebuilds_when_the_source_changes(tmp_path, capsys):
    src = tmp_path / "corpus.txt"
    src.write_text("hello world\n" * 50)
    out = P.prepare("shakespeare_char", tmp_path / "d", source=src)
    first = load(out)[0]
    P.prepare("shakespeare_char", tmp_path / "d", source=src)
    assert "up to date" in capsys.readouterr().out
    src.write_text("goodbye moon\n" * 50)
    P.prepare("shakespeare_char", tmp_path / "d", source=src)
    meta, train, val = load(out)
    assert meta["sha256"] != first["sha256"] and meta["sha256"] == sources.sha256_file(src)
    assert get_tokenizer(meta).decode(np.concatenate([train, val])) == src.read_text()
    assert not [p for p in (tmp_path / "d").iterdir() if p.name.startswith(".")]  # no temp folders left


# --------------------------------------------------------------------------------------------------
# the datasets (documents) path on local files


def test_local_text_file_custom_name(tmp_path, tiktoken_cache):
    lines = [f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(2000)]
    src = tmp_path / "mine.txt"
    src.write_text("".join(lines))
    data = tmp_path / "data"
    # val_every larger than the number of passages: the first passage is val, all the rest is train
    P.main(["--dataset", "mycorpus", "--source", str(src), "--data-dir", str(data), "--val-every", "10000",
            "--num-proc", "1"])
    meta, train, val = load(data / "mycorpus")
    tok = get_tokenizer(meta)
    assert meta["sha256"] == sources.sha256_file(src) and meta["val_rows"] == 1 and meta["train_rows"] > 5
    assert tok.decode(np.concatenate([val, train])) == src.read_text()  # lines of running text: no EOT
    assert tok.eot not in set(train.tolist())


def test_jsonl_and_parquet_documents(tmp_path, tiktoken_cache):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    docs = [f"Document {i}. " + "word " * (i % 7) + "end." for i in range(45)]
    folder = tmp_path / "src"
    folder.mkdir()
    with open(folder / "a.jsonl", "w") as f:
        for d in docs[:30]:
            f.write(json.dumps({"id": 1, "text": d}) + "\n")
    pq.write_table(pa.table({"text": docs[30:]}), folder / "b.parquet")
    out = P.prepare("docs", tmp_path / "data", source=folder, val_every=10, num_proc=1, verbose=False)
    meta, train, val = load(out)
    tok = get_tokenizer(meta)
    eot = tok.eot
    # every document closed by <|endoftext|>; rows 0, 10, 20, ... held out, order kept
    split = lambda ids: tok.decode(ids).split("<|endoftext|>")[:-1]  # noqa: E731
    assert split(val) == docs[::10]
    assert split(train) == [d for i, d in enumerate(docs) if i % 10]
    assert meta["train_tokens"] + meta["val_tokens"] == sum(len(tok.encode(d)) + 1 for d in docs)
    assert int(train[-1]) == eot and meta["eot_token"] == eot
    assert (meta["train_rows"], meta["val_rows"]) == (40, 5)


def test_wikitext2_folder_pool_matches_single_process(tmp_path, shared_file, tiktoken_cache, run_script):
    folder = shared_file("wikitext-2/wiki.valid.tokens").parent
    one = P.prepare("wt2", tmp_path / "a", source=folder, num_proc=1, verbose=False)
    # the pool in the real command line (in-process, the harness may have re-imported prepare.py under the
    # same name, and the pool pickles its worker function by name)
    r = run_script("nanogpt/prepare.py", "--dataset", "wt2", "--source", folder, "--data-dir", tmp_path / "b",
                   "--num-proc", 2)
    assert r.returncode == 0, r.stderr
    two = tmp_path / "b" / "wt2"
    for f in ("train.bin", "val.bin"):
        assert (one / f).read_bytes() == (two / f).read_bytes()
    meta, train, val = load(two)
    assert meta["source"] == str(folder.resolve())
    assert 400_000 < len(train) + len(val) < 800_000  # ~2.4 MB of English
    # both files, in name order (test before valid), and nothing else
    text = "".join((folder / n).read_text() for n in ("wiki.test.tokens", "wiki.valid.tokens"))
    tok = get_tokenizer(meta)
    assert len(tok.decode(np.concatenate([train, val]))) == len(text)


# --------------------------------------------------------------------------------------------------
# download: checksum, cache, offline


@pytest.fixture
def http_server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1 in a thread; yields (base_url, list of requested paths)."""
    root = tmp_path / "www"
    root.mkdir()
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *a):
            hits.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root, hits
    server.shutdown()
    server.server_close()


def test_download_checksum_and_cache(tmp_path, http_server):
    base, root, hits = http_server
    payload = b"to be or not to be\n" * 100
    (root / "input.txt").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "cache" / "input.txt"
    assert sources.download(f"{base}/input.txt", dest, digest).read_bytes() == payload
    assert len(hits) == 1
    sources.download(f"{base}/input.txt", dest, digest)  # cached: no second request
    assert len(hits) == 1
    # wrong checksum: error naming both digests, nothing written
    with pytest.raises(sources.DataError, match="checksum mismatch") as e:
        sources.download(f"{base}/input.txt", tmp_path / "other" / "x.txt", "0" * 64)
    assert digest in str(e.value) and not (tmp_path / "other").exists()


def test_shakespeare_download_cli_and_offline(tmp_path, http_server, shared_file, run_script, clean_error):
    base, root, hits = http_server
    (root / "input.txt").write_bytes(shared_file("tinyshakespeare/input.txt").read_bytes())
    data = tmp_path / "data"
    r = run_script("nanogpt/prepare.py", "--dataset", "shakespeare_char", "--data-dir", data,
                   env={"NANOGPT_SHAKESPEARE_URL": f"{base}/input.txt"})
    assert r.returncode == 0, r.stderr
    assert (data / "downloads" / "tinyshakespeare" / "input.txt").is_file()
    assert json.loads((data / "shakespeare_char" / "meta.json").read_text())["sha256"] == SHAKESPEARE_SHA256
    # a second dataset from the same cached file, with the network gone
    dead = "http://127.0.0.1:9/input.txt"
    r = run_script("nanogpt/prepare.py", "--dataset", "shakespeare", "--data-dir", data,
                   env={"NANOGPT_SHAKESPEARE_URL": dead, "TIKTOKEN_CACHE_DIR": shared_file("tiktoken_cache")})
    assert r.returncode == 0, r.stderr
    assert len(hits) == 1
    # offline without a cache: one line saying where to put input.txt, nothing left behind
    fresh = tmp_path / "fresh"
    r = run_script("nanogpt/prepare.py", "--dataset", "shakespeare_char", "--data-dir", fresh,
                   env={"NANOGPT_SHAKESPEARE_URL": dead})
    clean_error(r, "cannot download", str(fresh / "downloads" / "tinyshakespeare" / "input.txt"), "--source")
    assert leftovers(fresh) == []


# --------------------------------------------------------------------------------------------------
# user mistakes


@pytest.mark.parametrize("case", ["bad_name", "unsafe_name", "missing_file", "empty_file", "empty_folder",
                                  "bad_option_value"])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, run_script, clean_error, case):
    data = tmp_path / "data"
    data.mkdir()
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    (tmp_path / "emptydir").mkdir()
    args, needles = {
        "bad_name": (["--dataset", "shakespear"], ["unknown dataset", "shakespear", "shakespeare_char"]),
        "unsafe_name": (["--dataset", "../x", "--source", empty], ["bad dataset name", "../x"]),
        "missing_file": (["--dataset", "mine", "--source", tmp_path / "nope.txt"], ["nope.txt", "does not exist"]),
        "empty_file": (["--dataset", "mine", "--source", empty], ["empty.txt", "empty"]),
        "empty_folder": (["--dataset", "shakespeare_char", "--source", tmp_path / "emptydir"], ["emptydir"]),
        "bad_option_value": (["--num-proc", "abc"], ["--num-proc", "abc"]),  # argparse's error, on one line
    }[case]
    r = run_script("nanogpt/prepare.py", *args, "--data-dir", data)
    clean_error(r, *needles)
    assert leftovers(data) == []


def test_hub_dataset_offline_is_clean(tmp_path, run_script, clean_error, tiktoken_cache):
    r = run_script("nanogpt/prepare.py", "--dataset", "tinystories", "--data-dir", tmp_path, "--max-docs", 5)
    clean_error(r, "TinyStories", "--source")
    assert leftovers(tmp_path) == []


def test_char_vocabulary_and_non_utf8_source_are_one_line_errors(tmp_path):
    tok = get_tokenizer({"tokenizer": "char", "chars": "\nab"})
    assert tok.decode(tok.encode("ab\nba")) == "ab\nba"
    with pytest.raises(sources.DataError, match="character 'c' is not in this char-level vocabulary"):
        tok.encode("abc")  # a sample.py prompt from outside the corpus: exit 2, not a KeyError traceback
    binary = tmp_path / "latin1.txt"
    binary.write_bytes("caf\u00e9\n".encode("latin-1") * 10)
    with pytest.raises(sources.DataError, match="not UTF-8 text"):
        P.prepare("shakespeare_char", tmp_path / "data", source=binary, verbose=False)
    assert leftovers(tmp_path / "data") == []


# --------------------------------------------------------------------------------------------------
# whole text in bounded memory; interrupting a pooled preparation


@pytest.mark.parametrize("dataset, tok_name", [("shakespeare", "gpt2"), ("shakespeare_char", "char"),
                                               ("bytes", "byte")])
def test_streamed_whole_text_gives_the_tokens_of_the_whole_text(tmp_path, shared_file, tiktoken_cache, monkeypatch,
                                                                dataset, tok_name):
    """Read in pieces of 997 characters (~1,100 pieces), the tokens equal encode(first 90%) + encode(rest)."""
    src = shared_file("tinyshakespeare/input.txt")
    monkeypatch.setattr(P, "CHUNK", 997)
    name = "shakespeare_char" if dataset == "bytes" else dataset
    meta, train, val = load(P.prepare(name, tmp_path, source=src, tokenizer=tok_name, verbose=False))
    text = src.read_text()
    if tok_name == "byte":
        raw = text.encode()
        n = int(0.9 * len(raw))
        expect = list(raw[:n]), list(raw[n:])
    else:
        tok = get_tokenizer(meta)
        n = int(0.9 * len(text))
        expect = tok.encode(text[:n]), tok.encode(text[n:])
    assert train.tolist() == expect[0] and val.tolist() == expect[1]


def test_sigint_during_pooled_preparation_exits_promptly_leaving_nothing(tmp_path, shared_file, tiktoken_cache):
    """Ctrl-C while 2 workers tokenize: the pool is terminated, the temp folder removed, one line, exit 130."""
    import signal

    src = big_wikitext_source(tmp_path, shared_file)
    data = tmp_path / "data"
    rc, err, seconds = signal_once_preparing("prepare.py", ["--dataset", "big", "--source", src, "--data-dir", data,
                                                            "--num-proc", "2"], data, signal.SIGINT, 60, 20)
    assert seconds < 10
    assert rc == 130 and err.strip().splitlines() == [f"prepare.py: interrupted; nothing written to "
                                                      f"{data / 'big'}"], err
    assert leftovers(data) == []


def test_temp_folders_of_dead_runs_are_removed(tmp_path):
    """A preparation killed with -9 leaves its temp folder; the next one removes it (a live run's stays)."""
    import os

    dead = tmp_path / ".shakespeare_char.tmp-999999999-abcd"
    live = tmp_path / f".shakespeare_char.tmp-{os.getppid()}-efgh"
    for folder in (dead, live):
        folder.mkdir()
        (folder / "train.bin").write_bytes(b"\0" * 10)
    src = tmp_path / "t.txt"
    src.write_text("hello world\n" * 50)
    P.prepare("shakespeare_char", tmp_path, source=src, verbose=False)
    assert not dead.exists() and live.exists()


def test_a_pool_worker_stopped_while_starting_up_dies_quietly(tmp_path):
    """pool.terminate() sends SIGTERM to its workers. One still starting up (slowed here: a loaded machine) must
    not run the parent's handler inherited by fork (prepare.main's and train.py's raise KeyboardInterrupt):
    start_pool's workers hold the stop signals blocked until their own handlers are set."""
    code = ("import signal, sys, time\n"
            "sys.path.insert(0, 'nanogpt')\n"
            "import prepare\n"
            "def interrupt(signum, frame):\n"
            "    raise KeyboardInterrupt\n"
            "signal.signal(signal.SIGTERM, interrupt)\n"
            "real = prepare._init_worker\n"
            "def slow_start(meta):\n"
            "    time.sleep(1.0)\n"
            "    real(meta)\n"
            "prepare._init_worker = slow_start\n"
            "pool = prepare.start_pool(2, {'tokenizer': 'byte'})\n"
            "time.sleep(0.2)\n"
            "pool.terminate()\n"
            "pool.join()\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr and "KeyboardInterrupt" not in r.stderr, r.stderr


def test_an_unwritable_data_dir_or_a_full_disk_is_one_line(tmp_path, shared_file, monkeypatch, capsys):
    """--data-dir under a file (what a read-only folder does for a non-root user), and a disk that fills up while
    the tokens are written: one line, exit 2, no temp folder left."""
    import errno

    from cli import run_main

    source = shared_file("tinyshakespeare/input.txt")
    (tmp_path / "afile").write_text("")
    with pytest.raises(SystemExit) as e:
        run_main(P.main, ["--dataset", "shakespeare_char", "--source", str(source), "--data-dir",
                          str(tmp_path / "afile" / "data")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "cannot write to --data-dir" in err[0], err

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(P, "_encode_pieces", full)
    with pytest.raises(sources.DataError, match="no space left on the device"):
        P.prepare("shakespeare_char", tmp_path / "data", source=source, verbose=False)
    assert leftovers(tmp_path / "data") == []
