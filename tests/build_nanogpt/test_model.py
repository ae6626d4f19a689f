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
    # GPT-2's GELU is the tanh approximation ("gelu_new"); with weights this small the logits above
    # cannot tell it from the exact GELU, so compare the activations themselves over a wide range
    z = torch.linspace(-6, 6, 241)
    torch.testing.assert_close(ours.transformer.h[0].mlp.gelu(z), hf.transformer.h[0].mlp.act(z), atol=1e-6, rtol=1e-6)
    assert ours.lm_head.weight is ours.transformer.wte.weight  # still tied after loading


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


def test_explicit_attention_equals_flash(load_module):
    """bench.py's float32 baseline (explicit softmax, flash=False) computes the same function as SDPA."""
    M = load_module("build_nanogpt", "model")
    torch.manual_seed(0)
    cfg = dict(block_size=16, vocab_size=128, n_layer=2, n_head=2, n_embd=32)
    fast, slow = M.GPT(M.GPTConfig(**cfg, flash=True)), M.GPT(M.GPTConfig(**cfg, flash=False))
    with torch.no_grad():
        for block in fast.transformer.h:  # sharp attention, so that the scale and the causal mask matter
            block.attn.c_attn.weight.mul_(30)
    slow.load_state_dict(fast.state_dict())
    x = torch.randint(0, 128, (3, 16))
    with torch.no_grad():
        torch.testing.assert_close(slow(x)[0], fast(x)[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(slow(x[:, :9])[0], fast(x)[0][:, :9], atol=1e-5, rtol=1e-5)  # causal


def test_tied_weights_init_and_weight_decay_groups(load_module):
    M = load_module("build_nanogpt", "model")
    torch.manual_seed(0)
    V, T, L, C = 96, 32, 4, 64
    model = M.GPT(M.GPTConfig(block_size=T, vocab_size=V, n_layer=L, n_head=2, n_embd=C))
    assert model.lm_head.weight is model.transformer.wte.weight  # weight tying: one tensor
    # wte (= lm_head) + wpe + per block (2 LayerNorms, qkv, attn proj, fc, mlp proj) + ln_f
    assert model.num_params() == V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C
    # GPT-2 124M: 124,475,904 parameters (vocab 50,304); 6N (N without wpe) + 12*L*C*T FLOPs per token
    assert M.flops_per_token(M.GPTConfig(), 124_475_904) == 6 * (124_475_904 - 1024 * 768) + 12 * 12 * 768 * 1024
    # init: std 0.02, residual projections 0.02 / sqrt(2 * n_layer), biases 0, LayerNorms (1, 0)
    proj = torch.cat([w.flatten() for n, w in model.named_parameters() if n.endswith("c_proj.weight")])
    other = torch.cat([w.flatten() for n, w in model.named_parameters() if n.endswith(("c_attn.weight", "c_fc.weight"))])
    assert proj.std().item() == pytest.approx(0.02 / (2 * L) ** 0.5, rel=0.05)
    assert other.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.transformer.wpe.weight.std().item() == pytest.approx(0.02, rel=0.05)
    for n, p in model.named_parameters():
        if n.endswith(".bias"):
            assert not p.any(), n
    # AdamW decays exactly the >= 2-D tensors (matmuls, embeddings), never biases or LayerNorm gains
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=1e-3)
    groups = {g["weight_decay"]: {id(p) for p in g["params"]} for g in opt.param_groups}
    assert sorted(groups) == [0.0, 0.1]
    assert groups[0.1] == {id(p) for p in model.parameters() if p.dim() >= 2}
    assert groups[0.0] == {id(p) for p in model.parameters() if p.dim() < 2}
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == model.num_params()  # each once


def test_no_sync_on_all_but_the_last_micro_batch(load_module):
    """Under DDP only the last backward of an optimizer step may all-reduce: the earlier ones run in
    no_sync(), or rank-local gradients of later micro-batches would never be averaged."""
    import contextlib

    M = load_module("build_nanogpt", "model")
    train = load_module("build_nanogpt", "train")

    class FakeDDP(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module, self.syncing, self.seen = module, True, []

        @contextlib.contextmanager
        def no_sync(self):
            self.syncing = False
            try:
                yield
            finally:
                self.syncing = True

        def forward(self, x, y):
            self.seen.append(self.syncing)
            return self.module(x, y)

    torch.manual_seed(0)
    model = FakeDDP(M.GPT(M.GPTConfig(block_size=8, vocab_size=64, n_layer=1, n_head=2, n_embd=16)))
    x = torch.randint(0, 64, (4, 8))
    train.forward_backward(model, [(x, x)] * 4, ddp=True)
    assert model.seen == [False, False, False, True]
