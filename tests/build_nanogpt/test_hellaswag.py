"""build_nanogpt/hellaswag.py: scoring equals losses computed with `transformers` directly, the command
line, bad input in one line."""
import json
import shutil

import pytest
import torch
from torch.nn import functional as F

import hellaswag as H
import model as M
import pretrained


def test_hellaswag_scores_match_transformers(hf_dir, shared_file, tiktoken_cache):
    import tiktoken

    path, hf = hf_dir
    ours = M.GPT.from_hf(str(path)).eval()
    enc = tiktoken.get_encoding("gpt2")
    examples = H.load_examples(str(shared_file("hellaswag/hellaswag_val.jsonl")), limit=6)
    want_sum, want_mean = [], []
    for ex in examples:  # one ending at a time, straight through transformers: no batching, no padding
        rows, masks = H.render(ex, enc, 128)
        for r, m in zip(rows, masks):
            with torch.no_grad():
                logits = hf(torch.tensor([r])).logits[0]
            tok_loss = F.cross_entropy(logits[:-1], torch.tensor(r[1:]), reduction="none")
            sel = torch.tensor(m[1:]).bool()
            assert sel.sum() == len(enc.encode(" " + ex["endings"][len(want_sum) % 4]))
            want_sum.append(tok_loss[sel].sum())
            want_mean.append(tok_loss[sel].mean())
    rows, masks = [], []
    for ex in examples:
        r, m = H.render(ex, enc, 128)
        rows, masks = rows + r, masks + m
    got_sum, got_mean = H.ending_losses(ours, rows, masks, "cpu")  # all 24 endings in one padded batch
    torch.testing.assert_close(got_sum, torch.stack(want_sum), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(got_mean, torch.stack(want_mean), atol=1e-4, rtol=1e-5)
    # the accuracies follow from those losses
    labels = torch.tensor([ex["label"] for ex in examples])
    r = H.evaluate(ours, examples, enc, "cpu", batch_size=4)
    assert r["n"] == 6
    assert r["correct"] == int((torch.stack(want_sum).view(-1, 4).argmin(1) == labels).sum())
    assert r["correct_norm"] == int((torch.stack(want_mean).view(-1, 4).argmin(1) == labels).sum())


def test_hellaswag_cli(run_script, hf_dir, shared_file, tiktoken_cache, clean_error, tmp_path):
    path, _ = hf_dir
    data = shared_file("hellaswag/hellaswag_val.jsonl")
    r = run_script("build_nanogpt/hellaswag.py", "--model", path, "--data", data, "--limit", 8, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["examples"] == 8 and 0 <= result["acc"] <= 1 and 0 <= result["acc_norm"] <= 1
    bad = tmp_path / "bad.jsonl"
    lines = data.read_text().splitlines()[:3]
    bad.write_text(lines[0] + "\n" + lines[1] + "\n{\"ctx\": \"no endings\"}\n")
    r = run_script("build_nanogpt/hellaswag.py", "--model", path, "--data", bad)
    clean_error(r, "bad.jsonl:3", "malformed")


def test_without_data_the_file_comes_from_the_cache_the_help_names(run_script, hf_dir, shared_file, tiktoken_cache,
                                                                   tmp_path, monkeypatch):
    """issue 29: --help names where the downloaded file is kept; a valid file there is used, nothing is fetched
    (there is no network here)."""
    monkeypatch.delenv("BUILD_NANOGPT_CACHE", raising=False)
    r = run_script("build_nanogpt/hellaswag.py", "--help")
    assert "~/.cache/build_nanogpt/hellaswag (or $BUILD_NANOGPT_CACHE/hellaswag)" in " ".join(r.stdout.split())
    cache = tmp_path / "home" / ".cache" / "build_nanogpt" / "hellaswag"
    cache.mkdir(parents=True)
    shutil.copy(shared_file("hellaswag/hellaswag_val.jsonl"), cache / "hellaswag_val.jsonl")
    r = run_script("build_nanogpt/hellaswag.py", "--model", hf_dir[0], "--limit", 4, "--device", "cpu",
                   env={"HOME": str(tmp_path / "home")})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["examples"] == 4


def test_hellaswag_bad_model_folder_and_limit(shared_file, tmp_path):
    with pytest.raises(H.UserError, match="no config.json .*, ckpt.pt .* or ckpt_last.pt"):  # neither HF nor a run
        pretrained.load_weights(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")  # a folder with a config but no GPT-2 weights
    with pytest.raises(H.UserError, match="not a Hugging Face GPT-2 checkpoint"):
        pretrained.load_weights(str(tmp_path))
    with pytest.raises(H.UserError, match="--limit 0"):
        H.main(["--model", str(tmp_path), "--limit", "0", "--data", str(shared_file("hellaswag/hellaswag_val.jsonl"))])
    with pytest.raises(H.UserError, match="--batch-size 1000000: use 1 .. 1024"):
        H.main(["--model", str(tmp_path), "--batch-size", "1000000"])


def test_hellaswag_non_utf8_file_is_one_line(tmp_path):
    bad = tmp_path / "hs.jsonl"
    bad.write_bytes(b'{"ctx": "caf\xe9", "endings": ["a", "b", "c", "d"], "label": 0}\n')
    with pytest.raises(H.UserError, match="hs.jsonl: not UTF-8 text"):
        H.load_examples(str(bad))
