"""build_nanogpt/fineweb.py: token counts, <|endoftext|> placement, resume after a crash, no partial shard."""
import hashlib
import json

import numpy as np
import pytest

import fineweb as fw

EOT = 50256


@pytest.fixture
def corpus(tmp_path, tiktoken_cache):
    """Documents of varied length (one empty) as a .jsonl file, and their expected token stream."""
    import tiktoken

    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat,", "and", "then", "ran", "away.", "Hello", "world!"]
    docs = [" ".join(rng.choice(words, size=int(n))) for n in rng.integers(3, 40, size=60)]
    docs[7] = ""  # an empty document contributes nothing
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    enc = tiktoken.get_encoding("gpt2")
    stream = [t for d in docs if d for t in [EOT] + enc.encode_ordinary(d)]
    return path, docs, np.array(stream, dtype=np.uint16)


def read_all(out):
    manifest = json.loads((out / "manifest.json").read_text())
    arrays = [np.load(out / s["file"]) for s in manifest["shards"]]
    return manifest, arrays


def test_shards_hold_every_document_with_eot_first(corpus, tmp_path):
    path, docs, stream = corpus
    out = tmp_path / "shards"
    fw.build_shards(fw.ShardConfig(out_dir=str(out), source=str(path), shard_size=97, num_proc=1))
    manifest, arrays = read_all(out)
    assert manifest["complete"] and manifest["total_tokens"] == len(stream)
    names = [s["file"] for s in manifest["shards"]]
    assert names[0] == "val_000000.npy" and names[1] == "train_000001.npy"
    assert [len(a) for a in arrays[:-1]] == [97] * (len(arrays) - 1) and 0 < len(arrays[-1]) <= 97
    assert all(a.dtype == np.uint16 for a in arrays)
    np.testing.assert_array_equal(np.concatenate(arrays), stream)
    assert arrays[0][0] == EOT and (stream == EOT).sum() == sum(1 for d in docs if d)
    for s, a in zip(manifest["shards"], arrays):
        assert s["tokens"] == len(a)
        assert s["sha256"] == hashlib.sha256((out / s["file"]).read_bytes()).hexdigest()


def test_resume_after_crash_gives_the_same_shards(corpus, tmp_path, monkeypatch):
    path, _, _ = corpus
    ref, out = tmp_path / "ref", tmp_path / "out"
    fw.build_shards(fw.ShardConfig(out_dir=str(ref), source=str(path), shard_size=97, num_proc=1))

    # crash while the third shard is being written: half its bytes are on disk when the error hits
    real_save, calls = np.save, []

    def crashing_save(f, arr, **kw):
        calls.append(1)
        if len(calls) == 3:
            f.write(b"\x93NUMPY partial")
            raise KeyboardInterrupt("killed")
        real_save(f, arr, **kw)

    monkeypatch.setattr(fw.np, "save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        fw.build_shards(fw.ShardConfig(out_dir=str(out), source=str(path), shard_size=97, num_proc=1))
    monkeypatch.setattr(fw.np, "save", real_save)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["file"] for s in manifest["shards"]] == ["val_000000.npy", "train_000001.npy"]
    assert not manifest["complete"]
    assert not (out / "train_000002.npy").exists()  # the partial shard only ever existed as a temp file

    fw.build_shards(fw.ShardConfig(out_dir=str(out), source=str(path), shard_size=97, num_proc=1))
    assert not list(out.glob("*.tmp*"))
    assert (out / "manifest.json").read_text() == (ref / "manifest.json").read_text()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ref.iterdir())
    for p in ref.glob("*.npy"):
        assert (out / p.name).read_bytes() == p.read_bytes()


def test_cli_pool_and_mixed_sources_then_resume(run_script, corpus, tmp_path):
    """The real command line with a 2-process pool (spawn-safety), .txt + .jsonl + .parquet + .tokens (WikiText's
    plain text, as nanogpt reads it) sources, --max-shards to stop early and a rerun that continues. The settings
    line names the local source, not the hub dataset it does not read (issue 29)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, docs, stream = corpus
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jsonl").write_text(path.read_text())
    (src / "b.txt").write_text("A plain text file is one document.")
    pq.write_table(pa.table({"text": ["parquet row one", "parquet row two"]}), src / "c.parquet")
    (src / "d.tokens").write_text(" = Robert <unk> = \n \n Robert <unk> is an English film actor . \n")
    out = tmp_path / "out"
    args = ["--source", src, "--out-dir", out, "--shard-size", 64, "--num-proc", 2]
    r = run_script("build_nanogpt/fineweb.py", *args, "--max-shards", 2, timeout=120)
    assert r.returncode == 0, r.stderr
    settings = json.loads(r.stdout.splitlines()[0])
    assert settings["source"] == str(src) and "dataset" not in settings and "fineweb-edu" not in r.stdout
    assert len(json.loads((out / "manifest.json").read_text())["shards"]) == 2
    r = run_script("build_nanogpt/fineweb.py", *args, timeout=120)
    assert r.returncode == 0, r.stderr
    manifest, arrays = read_all(out)
    tokens = np.concatenate(arrays)
    assert manifest["complete"] and len(tokens) == manifest["total_tokens"]
    np.testing.assert_array_equal(tokens[:len(stream)], stream)  # a.jsonl first (sorted file order)
    assert (tokens == EOT).sum() == (stream == EOT).sum() + 4  # + b.txt + two parquet rows + d.tokens
    import tiktoken
    tail = tiktoken.get_encoding("gpt2").encode_ordinary((src / "d.tokens").read_text())
    np.testing.assert_array_equal(tokens[-len(tail) - 1:], [EOT] + tail)  # d.tokens last, as one document


def test_empty_source_is_a_clean_error(run_script, clean_error, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = run_script("build_nanogpt/fineweb.py", "--source", empty, "--out-dir", tmp_path / "out", "--num-proc", 1)
    clean_error(r, "no text")
    assert not (tmp_path / "out").exists()
    r = run_script("build_nanogpt/fineweb.py", "--source", tmp_path / "nope.csv", "--out-dir", tmp_path / "out")
    clean_error(r, "nope.csv", "does not exist")
    assert not (tmp_path / "out").exists()


def test_max_shards_rerun_adds_nothing_and_non_text_is_a_user_error(corpus, tmp_path):
    path, _, _ = corpus
    out = tmp_path / "out"
    for _ in range(2):  # the same command twice: still 2 shards, not 3
        fw.build_shards(fw.ShardConfig(out_dir=str(out), source=str(path), shard_size=97, num_proc=1, max_shards=2))
        assert len(json.loads((out / "manifest.json").read_text())["shards"]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": null}\n{"text": 5}\n')  # null: an empty document; 5: an error
    with pytest.raises(fw.UserError, match=r"bad.jsonl:3: .*string 'text'"):
        fw.build_shards(fw.ShardConfig(out_dir=str(tmp_path / "bad"), source=str(bad), num_proc=1))
    # the manifest pins the shard size: continuing with another one would mix two layouts
    with pytest.raises(fw.UserError, match="shard_size=97, not 50"):
        fw.build_shards(fw.ShardConfig(out_dir=str(out), source=str(path), shard_size=50, num_proc=1))


def test_resume_after_every_shard_gives_the_same_shards(corpus, tmp_path):
    """Stop after each shard in turn (--max-shards 1, 2, 3, ...) and rerun: the resume point must be exact
    also for a document that spans three shards and for one that ends exactly where a shard ends."""
    path, docs, stream = corpus
    size = 23
    starts = np.flatnonzero(stream == EOT)
    lengths = np.diff(np.append(starts, len(stream)))
    assert (lengths > 2 * size).any() and (starts[1:] % size == 0).any()  # both cases are in this corpus
    ref, out = tmp_path / "ref", tmp_path / "out"
    fw.build_shards(fw.ShardConfig(out_dir=str(ref), source=str(path), shard_size=size, num_proc=1))
    for k in range(1, 200):
        if fw.build_shards(fw.ShardConfig(out_dir=str(out), source=str(path), shard_size=size, num_proc=1,
                                          max_shards=k))["complete"]:
            break
        assert len(json.loads((out / "manifest.json").read_text())["shards"]) == k
    assert (out / "manifest.json").read_text() == (ref / "manifest.json").read_text()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ref.iterdir())
    for p in ref.glob("*.npy"):
        assert (out / p.name).read_bytes() == p.read_bytes(), p.name


def test_a_txt_file_in_pieces_gives_the_tokens_of_the_whole_text(shared_file, tiktoken_cache, tmp_path, monkeypatch):
    """A .txt is read and tokenized a piece at a time (bounded memory); cut where GPT-2's pre-tokenizer never
    joins two characters, the pieces give exactly the tokens of the whole text in one call."""
    import tiktoken

    text = shared_file("tinyshakespeare/input.txt").read_text()[:40_000]
    text += "\n\n  trailing   spaces \n\t\n" + "x" * 3000 + "\n\nend"  # a long line with no cut inside
    src = tmp_path / "play.txt"
    src.write_text(text)
    monkeypatch.setattr(fw, "TXT_PIECE", 500)
    pieces = list(fw.txt_pieces(str(src), 500))
    assert len(pieces) > 40 and "".join(p[0] for p in pieces) == text
    assert [p[1] for p in pieces] == [True] + [False] * (len(pieces) - 1) and pieces[-1][2]
    out = tmp_path / "out"
    fw.build_shards(fw.ShardConfig(out_dir=str(out), source=str(src), shard_size=997, num_proc=1))
    _, arrays = read_all(out)
    want = [EOT] + tiktoken.get_encoding("gpt2").encode_ordinary(text)
    np.testing.assert_array_equal(np.concatenate(arrays), np.array(want, dtype=np.uint16))
    again = tmp_path / "again"  # stopped after every shard and resumed: the same shards
    for k in range(1, 100):
        if fw.build_shards(fw.ShardConfig(out_dir=str(again), source=str(src), shard_size=997, num_proc=1,
                                          max_shards=k))["complete"]:
            break
    assert (again / "manifest.json").read_text() == (out / "manifest.json").read_text()


def test_non_utf8_and_out_of_range_settings_are_one_line(tmp_path, run_script, clean_error):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\u00e9 au lait".encode("latin-1"))
    with pytest.raises(fw.UserError, match="latin1.txt: not UTF-8 text"):
        fw.build_shards(fw.ShardConfig(out_dir=str(tmp_path / "o"), source=str(bad), num_proc=1))
    assert not (tmp_path / "o").exists()  # nothing left behind
    with pytest.raises(fw.UserError, match="--num-proc 100000: use 1 .. 256"):
        fw.build_shards(fw.ShardConfig(out_dir=str(tmp_path / "o"), source=str(bad), num_proc=100_000))
    r = run_script("build_nanogpt/fineweb.py", "--source", bad, "--out-dir", tmp_path / "o", "--num-proc", 1)
    clean_error(r, "latin1.txt", "not UTF-8")


def test_a_damaged_parquet_source_is_one_line(tmp_path, run_script, clean_error, tiktoken_cache):
    """issue 28: pyarrow's ArrowInvalid was a traceback."""
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"this is not a parquet file")
    r = run_script("build_nanogpt/fineweb.py", "--source", bad, "--out-dir", tmp_path / "o", "--num-proc", 1)
    clean_error(r, "bad.parquet: not a readable parquet file (ArrowInvalid")
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*.npy"))
