"""build_nanogpt/train.py with torch.compile ON together with evaluation (val loss through the compiled
module, HellaSwag) and sampling, on a tiny model. The one compile test of this project."""
import json

import pytest
import torch

from helpers import shakespeare_shards

import loader as L
import model as M


@pytest.fixture(scope="module")
def shards(tmp_path_factory, shared_file, tiktoken_cache):
    return shakespeare_shards(tmp_path_factory, shared_file, 30_000, 3000)


def test_compile_with_eval_and_sampling(run_script, shards, shared_file, tmp_path):
    out = tmp_path / "out"
    r = run_script(
        "build_nanogpt/train.py", "--preset", "tiny", "--compile", "true", "--n-layer", "1", "--n-head", "2",
        "--n-embd", "16", "--block-size", "16", "--batch-size", "2", "--total-batch", "32", "--max-iters", "2",
        "--warmup-iters", "1", "--eval-interval", "2", "--eval-iters", "2", "--num-samples", "2", "--sample-tokens", "5",
        "--hellaswag-limit", "4", "--hellaswag-data", shared_file("hellaswag/hellaswag_val.jsonl"),
        "--data-dir", shards, "--out-dir", out, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    kinds = [(x["kind"], x["iter"]) for x in recs]
    assert kinds == [("val", 0), ("hellaswag", 0), ("sample", 0), ("train", 0), ("train", 1),
                     ("val", 2), ("hellaswag", 2), ("sample", 2)]
    hs = [x for x in recs if x["kind"] == "hellaswag"][-1]
    assert hs["n"] == 4 and 0 <= hs["acc_norm"] <= 1
    samples = [x for x in recs if x["kind"] == "sample"][-1]["texts"]
    assert len(samples) == 2 and all(s.startswith("Hello, I'm a language model,") for s in samples)
    assert all(len(s) > len("Hello, I'm a language model,") for s in samples)

    # the val loss the compiled module reported equals an eager recomputation with the final weights
    ckpt = torch.load(out / "ckpt.pt", weights_only=True)
    model = M.GPT(M.GPTConfig(**ckpt["model_args"])).eval()
    model.load_state_dict(ckpt["model"])
    val = L.ShardLoader(str(shards), "val", 2, 16, shuffle=False)
    with torch.no_grad():
        eager = sum(model(*val.next_batch())[1].item() for _ in range(2)) / 2
    logged = [x["val_loss"] for x in recs if x["kind"] == "val"][-1]
    assert logged == pytest.approx(eager, abs=1e-4)
