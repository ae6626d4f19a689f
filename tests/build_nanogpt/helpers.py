"""Helpers of build_nanogpt's tests."""
import json


def shakespeare_shards(tmp_path_factory, shared_file, chars: int, shard_size: int):
    """The first `chars` characters of Tiny Shakespeare, one document per paragraph -> a val shard and
    train shards of `shard_size` tokens (written by fineweb.py's own code path)."""
    import fineweb as fw
    text = shared_file("tinyshakespeare/input.txt").read_text()[:chars]
    src = tmp_path_factory.mktemp("src") / "shakespeare.jsonl"
    src.write_text("".join(json.dumps({"text": p}) + "\n" for p in text.split("\n\n")))
    out = tmp_path_factory.mktemp("shards")
    fw.build_shards(fw.ShardConfig(out_dir=str(out), source=str(src), shard_size=shard_size, num_proc=1))
    return out
