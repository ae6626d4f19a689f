"""build_nanogpt/model.py: HF GPT-2 weights load to the same logits, explicit attention equals flash,
tied weights, init and weight-decay groups."""
import pytest
import torch

import model as M


def test_hf_weights_give_the_same_logits(hf_dir, tmp_path):
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


def test_explicit_attention_equals_flash():
    """bench.py's float32 baseline (explicit softmax, flash=False) computes the same function as SDPA."""
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


def test_tied_weights_init_and_weight_decay_groups():
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
