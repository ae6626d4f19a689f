"""nanogpt/model.py (and hub.py): parity with Hugging Face GPT-2, attention paths, KV cache, sampling filters,
loading errors."""
import json
import math

import pytest
import torch

import hub
import model as M
from helpers import tiny_gpt

transformers = pytest.importorskip("transformers")


def save_hf(path, safe=True, seed=0, **cfg):
    """A tiny random HF GPT-2 with every parameter (biases, LayerNorm too) randomised, saved to path."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(bos_token_id=0, eos_token_id=0, **cfg)
    hf = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "wte" in name or "wpe" in name:
                continue  # keep GPT-2-like embeddings
            p.add_(0.1 * torch.randn_like(p))
    hf.save_pretrained(path)
    if not safe:  # the hub's original gpt2 pickle: GPT2Model keys (no "transformer."), mask buffers, no lm_head
        (path / "model.safetensors").unlink()
        sd = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
        n = cfg["n_positions"]
        for i in range(cfg["n_layer"]):
            sd[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
        torch.save(sd, path / "pytorch_model.bin")
    return hf


# --------------------------------------------------------------------------------------------------
# parity with Hugging Face


@pytest.mark.parametrize(
    "cfg, safe",
    [
        (dict(n_positions=40, vocab_size=97, n_embd=32, n_layer=2, n_head=4), True),
        # non-default vocab and context, another LayerNorm epsilon, the pickle format
        (dict(n_positions=17, vocab_size=301, n_embd=24, n_layer=3, n_head=3, layer_norm_epsilon=1e-3), False),
    ],
)
def test_logits_match_huggingface(tmp_path, cfg, safe):
    hf = save_hf(tmp_path, safe=safe, **cfg)
    assert (tmp_path / ("model.safetensors" if safe else "pytorch_model.bin")).is_file()
    model = M.GPT.from_pretrained(str(tmp_path)).eval()
    assert model.config.block_size == cfg["n_positions"] and model.config.vocab_size == cfg["vocab_size"]
    assert model.lm_head.weight is model.transformer.wte.weight  # tied
    idx = torch.randint(0, cfg["vocab_size"], (3, cfg["n_positions"]), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(idx).logits
        logits, loss = model(idx)
    assert loss is None and logits.shape == ref.shape
    assert (logits - ref).abs().max().item() < 1e-5
    # and the loss agrees with HF's shifted cross-entropy
    with torch.no_grad():
        _, ours = model(idx[:, :-1], idx[:, 1:])
        theirs = hf(idx, labels=idx).loss
    assert abs(ours.item() - theirs.item()) < 1e-5


def test_wrong_shape_tensor_names_key_and_shapes(tmp_path):
    from safetensors.torch import load_file, save_file

    save_hf(tmp_path, n_positions=16, vocab_size=50, n_embd=16, n_layer=1, n_head=2)
    sd = load_file(str(tmp_path / "model.safetensors"))
    key = next(k for k in sd if k.endswith("h.0.mlp.c_fc.weight"))
    sd[key] = torch.zeros(16, 48)  # should be (16, 64)
    save_file(sd, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError) as e:
        M.GPT.from_pretrained(str(tmp_path))
    msg = str(e.value)
    assert len(msg.splitlines()) == 1
    assert "h.0.mlp.c_fc.weight" in msg and "(16, 48)" in msg and "(16, 64)" in msg


def test_not_gpt2_directory(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 16}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="model_type is 'bert'"):
        M.GPT.from_pretrained(str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        M.GPT.from_pretrained(str(empty))
    with pytest.raises(ValueError, match="neither a directory nor a GPT-2 hub name"):
        hub.gpt2_folder(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="is not a folder"):
        M.GPT.from_pretrained(tmp_path / "missing")


def test_missing_key_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    save_hf(tmp_path, n_positions=16, vocab_size=50, n_embd=16, n_layer=1, n_head=2)
    sd = load_file(str(tmp_path / "model.safetensors"))
    del sd[next(k for k in sd if k.endswith("ln_f.bias"))]
    save_file(sd, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"'transformer\.ln_f\.bias' is missing"):
        M.GPT.from_pretrained(str(tmp_path))


def test_hub_name_offline_says_pass_local_directory(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")  # nothing cached
    with pytest.raises(ValueError) as e:
        hub.gpt2_folder("gpt2-xl")
    assert "local directory" in str(e.value) and len(str(e.value).splitlines()) == 1


# --------------------------------------------------------------------------------------------------
# architecture


def test_sdpa_matches_explicit_attention():
    model = tiny_gpt()
    idx = torch.randint(0, 61, (4, 32))
    with torch.no_grad():
        fast, _ = model(idx)
        for block in model.transformer.h:
            block.attn.flash = False
        slow, _ = model(idx)
    assert (fast - slow).abs().max().item() < 1e-5
    # flash=False in the config gives the same model
    cfg = M.GPTConfig(**{**model.config.__dict__, "flash": False})
    other = M.GPT(cfg).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert (other(idx)[0] - fast).abs().max().item() < 1e-5


def test_init_tying_and_param_count():
    torch.manual_seed(0)
    model = M.GPT(M.GPTConfig(block_size=64, vocab_size=512, n_layer=8, n_head=4, n_embd=256))
    assert model.lm_head.weight is model.transformer.wte.weight
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight"):
            assert abs(p.std().item() - 0.02 / math.sqrt(2 * 8)) < 0.0005, name
        elif name.endswith("c_fc.weight") or name.endswith("c_attn.weight"):
            assert abs(p.std().item() - 0.02) < 0.001, name
        elif name.endswith("bias") and "ln" not in name:
            assert p.abs().max() == 0
    total = sum(p.numel() for p in model.parameters())
    assert model.get_num_params(non_embedding=False) == total
    assert model.get_num_params() == total - 64 * 256
    # 6N + 12 L H Q T
    assert model.flops_per_token() == 6 * model.get_num_params() + 12 * 8 * 4 * 64 * 64


def test_forward_all_positions_and_ignore_index():
    model = tiny_gpt()
    idx = torch.randint(0, 61, (2, 10))
    targets = torch.randint(0, 61, (2, 10))
    targets[:, :4] = -1
    logits, loss = model(idx, targets)
    assert logits.shape == (2, 10, 61)
    ref = torch.nn.functional.cross_entropy(logits[:, 4:].reshape(-1, 61), targets[:, 4:].reshape(-1))
    assert torch.allclose(loss, ref)


def test_configure_optimizers_decays_only_matrices():
    model = tiny_gpt()
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cpu")
    assert opt.defaults.get("fused")  # fused AdamW on CPU too (torch >= 2.4)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())


def test_crop_block_size():
    model = tiny_gpt()
    model.crop_block_size(8)
    assert model.transformer.wpe.weight.shape == (8, 32)
    logits, _ = model(torch.zeros(1, 8, dtype=torch.long))
    assert logits.shape == (1, 8, 61)
    with pytest.raises(ValueError):
        model(torch.zeros(1, 9, dtype=torch.long))


# --------------------------------------------------------------------------------------------------
# KV cache and sampling


def test_kv_cache_logits_match_full_forward():
    model = tiny_gpt()
    idx = torch.randint(0, 61, (2, 20))
    with torch.no_grad():
        full = model.lm_head(model._trunk(idx))  # (2, 20, V)
        for flash in (True, False):
            for block in model.transformer.h:
                block.attn.flash = flash
            cache = M.KVCache(model.config.n_layer, model.config.block_size)
            parts = [model._trunk(idx[:, :7], cache, 0), model._trunk(idx[:, 7:12], cache, 7)]  # prompt, chunk
            parts += [model._trunk(idx[:, t : t + 1], cache, t) for t in range(12, 20)]  # one token at a time
            stepped = model.lm_head(torch.cat(parts, dim=1))
            assert (stepped - full).abs().max().item() < 1e-5


@pytest.mark.parametrize("new_tokens", [20, 60])  # 60 runs past block_size (32)
def test_greedy_same_with_and_without_cache(new_tokens):
    model = tiny_gpt()
    prompt = torch.randint(0, 61, (3, 5), generator=torch.Generator().manual_seed(3))
    a = model.generate(prompt, new_tokens, temperature=0, use_cache=True)
    b = model.generate(prompt, new_tokens, temperature=0, use_cache=False)
    assert a.shape == (3, 5 + new_tokens) and torch.equal(a[:, :5], prompt)
    assert torch.equal(a, b)
    # top_k=1 sampling is greedy too
    c = model.generate(prompt, new_tokens, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, c)


def test_sampling_is_reproducible_with_a_generator():
    model = tiny_gpt()
    prompt = torch.zeros(2, 1, dtype=torch.long)
    a = model.generate(prompt, 15, top_p=0.9, generator=torch.Generator().manual_seed(5))
    b = model.generate(prompt, 15, top_p=0.9, use_cache=False, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_filter_logits_exact():
    probs = torch.tensor([[0.05, 0.4, 0.1, 0.3, 0.15]])
    logits = probs.log()
    kept = lambda out: set(torch.isfinite(out[0]).nonzero().flatten().tolist())  # noqa: E731
    assert kept(M.filter_logits(logits, top_k=2)) == {1, 3}
    assert kept(M.filter_logits(logits, top_k=10)) == {0, 1, 2, 3, 4}
    # nucleus: smallest set of most likely tokens reaching p: 0.4 (<0.5) -> +0.3 = 0.7
    assert kept(M.filter_logits(logits, top_p=0.5)) == {1, 3}
    assert kept(M.filter_logits(logits, top_p=0.7)) == {1, 3}  # 0.4 + 0.3 reaches 0.7 exactly
    assert kept(M.filter_logits(logits, top_p=0.71)) == {1, 3, 4}
    assert kept(M.filter_logits(logits, top_p=0.01)) == {1}  # the top token always stays
    assert kept(M.filter_logits(logits, top_p=1.0)) == {0, 1, 2, 3, 4}
    assert kept(M.filter_logits(logits, top_k=3, top_p=0.5)) == {1, 3}
    # the boundary for real: 0.4 + 0.3 is 0.70000005 in float32, so use dyadic probabilities, whose
    # softmax and cumulative sums are exact; a token whose predecessors already reach top_p is dropped
    dyadic = torch.tensor([[0.125, 0.5, 0.125, 0.25]]).log()
    assert kept(M.filter_logits(dyadic, top_p=0.5)) == {1}
    assert kept(M.filter_logits(dyadic, top_p=0.75)) == {1, 3}
    assert len(kept(M.filter_logits(dyadic, top_p=0.875))) == 3  # only one of the two 0.125s is needed
    # kept logits are unchanged
    out = M.filter_logits(logits, top_k=3)
    assert torch.equal(out[0, [1, 3, 4]], logits[0, [1, 3, 4]])


def test_sampling_never_leaves_the_allowed_set():
    torch.manual_seed(0)
    logits = torch.randn(4, 50) * 2  # (B, V)
    gen = torch.Generator().manual_seed(0)
    n = 4000
    for top_k, top_p in [(5, None), (None, 0.6), (10, 0.8)]:
        allowed = torch.isfinite(M.filter_logits(logits, top_k, top_p))  # (B, V)
        draws = M.sample_next(logits.repeat(n, 1), 1.0, top_k, top_p, gen).view(n, 4)  # n independent rows each
        for b in range(4):
            counts = torch.bincount(draws[:, b], minlength=50)
            assert counts[~allowed[b]].sum() == 0  # never outside
            # frequencies follow the renormalised distribution (4000 draws: within 4 sigma)
            p = torch.softmax(logits[b].masked_fill(~allowed[b], float("-inf")), dim=-1)
            sigma = (p * (1 - p) / n).sqrt()
            assert ((counts / n - p).abs() <= 4 * sigma + 1e-3).all()
    with pytest.raises(ValueError):
        M.filter_logits(logits, top_p=0.0)
