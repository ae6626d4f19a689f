"""Helpers of build_nanogpt's tests."""
import json

# a 1-layer, 16-wide model on 16-token windows, evaluated every 3 iters, no HellaSwag or samples: seconds on a CPU
TINY = ["--preset", "tiny", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "2", "--total-batch", "64", "--warmup-iters", "2", "--eval-iters", "2",
        "--num-samples", "0", "--hellaswag-limit", "0", "--eval-interval", "3", "--learning-rate", "1e-2"]


def records(out, kind):
    """The log.jsonl records of one kind (train, val, hellaswag, sample) that a run wrote to `out`."""
    return [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r["kind"] == kind]


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
