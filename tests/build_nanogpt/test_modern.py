"""build_nanogpt/modern.py: every switch off is model.py's GPT-2; each switch has its defining property."""
import math

import pytest
import torch

import model as M
import modern as N

SMALL = dict(block_size=16, vocab_size=128, n_layer=4, n_head=2, n_embd=32)
ALL = dict(rotary=True, rmsnorm=True, bias=False, relu2=True, zero_init=True, qk_norm=True, untied=True,
           embed_skip=True, softcap=15.0, unet=True, window=6, value_embeds=2)


def test_all_switches_off_is_gpt2_weights_and_losses():
    """Same seed -> the same weights under the same names; then the same AdamW losses step by step."""
    torch.manual_seed(3)
    gpt = M.GPT(M.GPTConfig(**SMALL))
    torch.manual_seed(3)
    mod = N.ModernGPT(N.ModernConfig(**SMALL))
    a, b = gpt.state_dict(), mod.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    opts = [m.configure_optimizers(0.1, 1e-2) for m in (gpt, mod)]
    x, y = torch.randint(0, 128, (4, 16)), torch.randint(0, 128, (4, 16))
    for _ in range(3):
        losses = []
        for m, opt in zip((gpt, mod), opts):
            opt.zero_grad()
            _, loss = m(x, y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[0] == losses[1]


def test_every_switch_on_trains_and_samples():
    torch.manual_seed(0)
    m = N.ModernGPT(N.ModernConfig(**SMALL, **ALL))
    assert "transformer.wpe.weight" not in m.state_dict() and m.lm_head.weight is not m.transformer.wte.weight
    opt = m.configure_optimizers(0.0, 1e-2, optimizer="muon")
    x = torch.randint(0, 128, (4, 16))
    first = None
    for _ in range(8):
        opt.zero_grad()
        _, loss = m(x, x)
        loss.backward()
        opt.step()
        first = first or loss.item()
    assert loss.item() < first - 0.5
    out = m.generate(x[:1, :3], 20)  # longer than block_size: the context is cropped
    assert out.shape == (1, 23)


def test_rotary_scores_depend_only_on_relative_position():
    """The same q at every position and the same k at every position: score(m, n) is a function of m - n."""
    T, hs = 12, 8
    cos, sin = N.rotary_tables(T, hs)
    torch.manual_seed(0)
    q = torch.randn(hs).expand(1, 1, T, hs)
    k = torch.randn(hs).expand(1, 1, T, hs)
    s = (N.apply_rotary(q, cos, sin) @ N.apply_rotary(k, cos, sin).transpose(-2, -1))[0, 0]  # (T, T)
    for d in range(-T + 1, T):
        diag = torch.diagonal(s, d)
        torch.testing.assert_close(diag, diag[:1].expand_as(diag), atol=1e-5, rtol=1e-5)
    assert len({round(torch.diagonal(s, d)[0].item(), 4) for d in range(-3, 4)}) == 7  # yet not constant
    # a rotation: the norms are kept
    torch.testing.assert_close(N.apply_rotary(q, cos, sin).norm(dim=-1), q.norm(dim=-1))


@pytest.mark.parametrize("qk_norm", [True, False])
def test_qk_norm_gives_unit_rms_q_and_k_per_head(qk_norm):
    torch.manual_seed(0)
    m = N.ModernGPT(N.ModernConfig(**SMALL, rotary=True, qk_norm=qk_norm))
    x = 5 * torch.randn(2, 16, 32)
    q, k, v = m.transformer.h[0].attn.qkv(x, m.rotary_cos, m.rotary_sin)  # (B, nh, T, hs), after the rotation
    rms = torch.cat([q, k]).pow(2).mean(-1).sqrt()
    if qk_norm:
        torch.testing.assert_close(rms, torch.ones_like(rms), atol=1e-4, rtol=0)
    else:
        assert (rms - 1).abs().max() > 0.1


def test_softcap_bounds_every_logit():
    torch.manual_seed(0)
    for cap in (15.0, 30.0):
        m = N.ModernGPT(N.ModernConfig(**SMALL, untied=True, softcap=cap))
        with torch.no_grad():
            m.lm_head.weight.mul_(1000)  # raw logits in the hundreds
            raw = m.lm_head(m.transformer.ln_f(torch.randn(2, 16, 32)))
        assert raw.abs().max() > 3 * cap
        logits, _ = m(torch.randint(0, 128, (2, 16)))
        # <= : in float32, tanh of anything beyond ~9 rounds to exactly 1
        assert logits.abs().max() <= cap and logits.abs().max() > 0.9 * cap


def test_zero_init_makes_a_fresh_block_the_identity():
    torch.manual_seed(0)
    m = N.ModernGPT(N.ModernConfig(**SMALL, **ALL))
    x, x0, ve = torch.randn(3, 2, 16, 32)
    for i, block in enumerate(m.transformer.h):
        v = ve if N.value_embed_of_layer(m.config)[i] is not None else None
        assert torch.equal(block(x, x0, m.rotary_cos, m.rotary_sin, v, m.window), x)
    logits, loss = m(torch.randint(0, 128, (2, 16)), torch.randint(0, 128, (2, 16)))
    assert torch.equal(logits, torch.zeros_like(logits)) and loss.item() == pytest.approx(math.log(128))
    # without the switch the block changes its input
    block = N.ModernGPT(N.ModernConfig(**SMALL)).transformer.h[0]
    assert not torch.allclose(block(x), x)


def test_unet_skip_weights_reach_the_right_blocks():
    """4 blocks: block 1's output joins block 2's input (weight w0), block 0's output block 3's input (w1)."""
    torch.manual_seed(0)
    m = N.ModernGPT(N.ModernConfig(**SMALL, unet=True))
    with torch.no_grad():
        m.skip_weights.copy_(torch.tensor([0.3, -2.0]))
    ins, outs = {}, {}

    def record(i):
        def hook(mod, args, out):
            ins[i], outs[i] = args[0], out
        return hook
    for i, block in enumerate(m.transformer.h):
        block.register_forward_hook(record(i))
    _, loss = m(torch.randint(0, 128, (2, 16)), torch.randint(0, 128, (2, 16)))
    torch.testing.assert_close(ins[1], outs[0])  # encoder: no skips in
    torch.testing.assert_close(ins[2], outs[1] + 0.3 * outs[1])
    torch.testing.assert_close(ins[3], outs[2] - 2.0 * outs[0])
    loss.backward()
    assert (m.skip_weights.grad.abs() > 0).all()


def test_sliding_window_no_position_attends_beyond_its_window():
    w, T = 4, 16
    mask = N.window_mask(T, torch.tensor(w), "cpu")
    assert [[int(mask[i, j]) for j in range(T)] for i in range(T)] == \
           [[int(i - w < j <= i) for j in range(T)] for i in range(T)]
    # in the model (one block: its position i reads the tokens in (i - w, i]): change token 3 and see who moves
    torch.manual_seed(0)
    m = N.ModernGPT(N.ModernConfig(**{**SMALL, "n_layer": 1}, rotary=True, window=w))
    x = torch.randint(0, 128, (1, T))
    x2 = x.clone()
    x2[0, 3] = (x[0, 3] + 1) % 128
    moved = ((m(x)[0] - m(x2)[0]).abs().amax(-1) > 1e-6)[0].tolist()
    assert moved == [3 <= i < 3 + w for i in range(T)]
    m.set_window(8)  # the warm-up widens it: now 8 positions see token 3
    moved = ((m(x)[0] - m(x2)[0]).abs().amax(-1) > 1e-6)[0].tolist()
    assert moved == [3 <= i < 3 + 8 for i in range(T)]
    m.set_window(T)  # a window of the whole block is causal attention
    full = N.ModernGPT(N.ModernConfig(**{**SMALL, "n_layer": 1}, rotary=True))
    full.load_state_dict(m.state_dict())
    torch.testing.assert_close(m(x)[0], full(x)[0], atol=1e-5, rtol=1e-5)


def test_value_embeddings_follow_the_unet_pattern_and_reach_v():
    assert N.value_embed_of_layer(N.ModernConfig(n_layer=6, value_embeds=2)) == [0, 1, None, None, 1, 0]
    assert N.value_embed_of_layer(N.ModernConfig(n_layer=4, value_embeds=0)) == [None] * 4
    torch.manual_seed(0)
    m = N.ModernGPT(N.ModernConfig(**SMALL, value_embeds=1))
    x = torch.randint(0, 128, (2, 16))
    before = m(x)[0]
    with torch.no_grad():
        m.value_embeds[0].weight.add_(1.0)
    assert not torch.allclose(before, m(x)[0])
    assert [hasattr(b.attn, "value_lambdas") for b in m.transformer.h] == [True, False, False, True]


def test_embed_skip_mixes_the_token_embedding_into_every_block():
    """A block with embed_skip computes the plain block of l0 * x + l1 * x0; it starts at (1, 0)."""
    torch.manual_seed(0)
    block = N.ModernGPT(N.ModernConfig(**SMALL, embed_skip=True)).transformer.h[2]
    plain = N.ModernGPT(N.ModernConfig(**SMALL)).transformer.h[2]
    plain.load_state_dict(block.state_dict(), strict=False)
    x, x0 = torch.randn(2, 2, 16, 32)
    torch.testing.assert_close(block(x, x0), plain(x))
    with torch.no_grad():
        block.lambdas.copy_(torch.tensor([0.5, 2.0]))
    torch.testing.assert_close(block(x, x0), plain(0.5 * x + 2.0 * x0))


def test_relu2_mlp():
    torch.manual_seed(0)
    mlp = N.ModernGPT(N.ModernConfig(**SMALL, relu2=True)).transformer.h[0].mlp
    x = torch.randn(2, 16, 32)
    h = x @ mlp.c_fc.weight.T + mlp.c_fc.bias
    want = (h.clamp(min=0) ** 2) @ mlp.c_proj.weight.T + mlp.c_proj.bias
    torch.testing.assert_close(mlp(x), want)


def test_bad_config_is_named():
    assert "value_embeds 3" in N.check_config(N.ModernConfig(n_layer=4, value_embeds=3))
    assert "even head size" in N.check_config(N.ModernConfig(n_embd=12, n_head=4, rotary=True))


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flexattention_window_equals_the_masked_sdpa():
    """The CUDA path (FlexAttention's block mask from the same rule) computes what the CPU path computes;
    FlexAttention also runs, eagerly, on a CPU."""
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 2, 40, 8)
    for w in (1, 5, 40):
        window = torch.tensor(w)
        want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=N.window_mask(40, window, "cpu"))
        torch.testing.assert_close(N.flex_window_attention(q, k, v, window), want, atol=1e-5, rtol=1e-5)


def test_attention_gets_one_dtype_under_autocast(monkeypatch):
    """bf16 autocast: q, k (normalised) and v (a float32 value embedding mixed in) reach the kernel as bf16."""
    seen = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):
        seen.append((q.dtype, k.dtype, v.dtype))
        return sdpa(q, k, v, **kwargs)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    torch.manual_seed(0)
    m = N.ModernGPT(N.ModernConfig(**SMALL, **ALL))
    x = torch.randint(0, 128, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, loss = m(x, x)
    loss.backward()
    assert set(seen) == {(torch.bfloat16,) * 3}
    seen.clear()
    m(x, x)
    assert set(seen) == {(torch.float32,) * 3}
