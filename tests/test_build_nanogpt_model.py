"""build_nanogpt model + HellaSwag: HF GPT-2 weights load to the same logits, scoring equals losses computed
with `transformers` directly, gradient accumulation equals one big batch."""
import json

import pytest
import torch
from torch.nn import functional as F


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=128, n_embd=32, n_layer=2, n_head=2))
    path = tmp_path_factory.mktemp("hf_gpt2")
    model.save_pretrained(path)
    return path, model.eval()


def test_hf_weights_give_the_same_logits(load_module, hf_dir, tmp_path):
    M = load_module("build_nanogpt", "model")
    path, hf = hf_dir
    # the older pytorch_model.bin layout: the same state dict, pickled by torch.save
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    x = torch.randint(0, 50257, (2, 50))
    for folder in (path, tmp_path):
        ours = M.GPT.from_hf(str(folder)).eval()
        with torch.no_grad():
            torch.testing.assert_close(ours(x)[0], hf(x).logits, atol=1e-5, rtol=1e-5)


def test_hellaswag_scores_match_transformers(load_module, hf_dir, shared_file, tiktoken_cache):
    import tiktoken

    H = load_module("build_nanogpt", "hellaswag")
    M = load_module("build_nanogpt", "model")
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


def test_hellaswag_bad_model_folder_and_limit(load_module, shared_file, tmp_path):
    H = load_module("build_nanogpt", "hellaswag")
    (tmp_path / "config.json").write_text("{}")  # a folder with a config but no GPT-2 weights
    with pytest.raises(H.UserError, match="not a Hugging Face GPT-2 checkpoint"):
        H.load_model(str(tmp_path))
    with pytest.raises(H.UserError, match="--limit 0"):
        H.main(["--model", str(tmp_path), "--limit", "0", "--data", str(shared_file("hellaswag/hellaswag_val.jsonl"))])


def test_gradient_accumulation_equals_one_big_batch(load_module):
    M = load_module("build_nanogpt", "model")
    train = load_module("build_nanogpt", "train")
    torch.manual_seed(0)
    cfg = M.GPTConfig(block_size=16, vocab_size=128, n_layer=2, n_head=2, n_embd=32)
    a, b = M.GPT(cfg), M.GPT(cfg)
    b.load_state_dict(a.state_dict())
    x, y = torch.randint(0, 128, (8, 16)), torch.randint(0, 128, (8, 16))
    loss_a = train.forward_backward(a, [(x[i:i + 2], y[i:i + 2]) for i in range(0, 8, 2)])  # 4 x micro-batch 2
    loss_b = train.forward_backward(b, [(x, y)])  # 1 x micro-batch 8
    torch.testing.assert_close(loss_a, loss_b, atol=1e-6, rtol=1e-6)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-6, rtol=1e-5, msg=name)
    assert any(p.grad.abs().sum() > 0 for p in a.parameters())
