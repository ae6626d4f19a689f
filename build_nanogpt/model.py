"""GPT-2 (124M) in plain PyTorch, in the spirit of karpathy/build-nanogpt.

References: Radford et al. 2019, "Language Models are Unsupervised Multitask Learners" (GPT-2);
Brown et al. 2020 (GPT-3, the optimizer and schedule settings); Dao et al. 2022 (FlashAttention).
Parameter names mirror the Hugging Face GPT-2 checkpoint so weights load with a key-by-key copy.
Two switches exist so the build can be replayed (`bench.py`, and train.py's `--flash`/`--vocab-size`):
`flash` (SDPA vs the explicit softmax attention) and the vocabulary size (50,257 vs the padded 50,304).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
from safetensors.torch import load_file
from torch.nn import functional as F


@dataclass
class GPTConfig:
    block_size: int = 1024  # max sequence length
    vocab_size: int = 50304  # 50,257 GPT-2 tokens padded up to a multiple of 128 (faster kernels)
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    flash: bool = True  # scaled_dot_product_attention (flash kernel) instead of the explicit softmax
    bias: bool = True  # biases in Linear and LayerNorm (GPT-2 has them; nanogpt can train without)
    gelu_approximate: str = "tanh"  # GPT-2's GELU; "none" is the exact one (nanogpt's default)
    n_real_tokens: int = 0  # > 0: ids from here up pad a pretrained table (for speed) and are never predicted


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj.SCALE_INIT = 1  # residual projection: std scaled down by depth (GPT-2 paper, 2.3)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.flash = config.flash
        if not self.flash:
            mask = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))
            self.register_buffer("mask", mask.view(1, 1, config.block_size, config.block_size), persistent=False)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        if self.flash:
            # the (T, T) attention matrix never reaches main memory: one fused kernel
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T)
            att = att.masked_fill(~self.mask[:, :, :T, :T], float("-inf"))
            att = F.softmax(att, dim=-1)
            y = att @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate=config.gelu_approximate)  # GPT-2: the tanh approximation ("gelu_new")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj.SCALE_INIT = 1

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))  # pre-norm: the residual stream itself is never normalized
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying (GPT-2 does it; saves 38M params)
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            std = 0.02
            if hasattr(module, "SCALE_INIT"):
                std *= (2 * self.config.n_layer) ** -0.5  # two residual additions per layer
            torch.nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weights are counted once

    def forward(self, idx, targets=None):
        B, T = idx.size()
        assert T <= self.config.block_size, f"sequence of {T} > block size {self.config.block_size}"
        pos = torch.arange(0, T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, C)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)  # (B, T, vocab_size)
        if self.config.n_real_tokens:
            logits[..., self.config.n_real_tokens:] = float("-inf")  # padded ids: probability 0, loss unchanged
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))
        return logits, loss

    def configure_optimizers(self, weight_decay: float, learning_rate: float, betas=(0.9, 0.95),
                             eps: float = 1e-8, fused: bool = False):
        """AdamW with weight decay on the >=2-D tensors (matmuls, embeddings) only, not biases/norms."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        # fused=True runs one CUDA kernel for all tensors instead of a loop of small kernels
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps, fused=fused)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens: int, top_k: int = 50, generator: torch.Generator | None = None):
        """Top-k sampling; each step re-runs the whole (cropped) context: simple, no KV cache."""
        for _ in range(max_new_tokens):
            idx_cond = idx[:, -self.config.block_size:]
            logits, _ = self(idx_cond)
            probs = F.softmax(logits[:, -1, :].float(), dim=-1)  # (B, vocab)
            topk_probs, topk_idx = torch.topk(probs, min(top_k, probs.size(-1)), dim=-1)  # (B, k)
            choice = torch.multinomial(topk_probs, 1, generator=generator)  # (B, 1)
            idx = torch.cat((idx, torch.gather(topk_idx, -1, choice)), dim=1)
        return idx

    @classmethod
    def from_hf(cls, path: str) -> "GPT":
        """Load GPT-2 weights saved by Hugging Face (`save_pretrained` folder) into this model.

        Reads `config.json` and `model.safetensors` or `pytorch_model.bin`. HF's GPT-2 stores its
        linear layers as `Conv1D` with (in, out) weights, so those are transposed.
        """
        with open(os.path.join(path, "config.json")) as f:
            config = config_from_hf(json.load(f))
        st_file = os.path.join(path, "model.safetensors")
        if os.path.exists(st_file):
            sd_hf = load_file(st_file)
        else:
            sd_hf = torch.load(os.path.join(path, "pytorch_model.bin"), map_location="cpu", weights_only=True)
        # keys come with or without the "transformer." prefix (GPT2LMHeadModel vs GPT2Model)
        sd_hf = {(k if k.startswith(("transformer.", "lm_head.")) else "transformer." + k): v
                 for k, v in sd_hf.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
        sd_hf.setdefault("lm_head.weight", sd_hf["transformer.wte.weight"])  # tied: often not saved
        model = cls(config)
        sd = model.state_dict()
        keys = list(sd)  # the causal mask of flash=False is a non-persistent buffer: not in the state dict
        assert set(keys) == set(sd_hf), f"key mismatch: {sorted(set(keys) ^ set(sd_hf))[:6]}"
        transposed = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        with torch.no_grad():
            for k in keys:
                w = sd_hf[k]
                if k.endswith(transposed):
                    w = w.t()
                assert w.shape == sd[k].shape, f"{k}: {tuple(w.shape)} vs {tuple(sd[k].shape)}"
                sd[k].copy_(w)
        return model


HF_GELU = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}  # transformers' name -> nn.GELU's


def config_from_hf(hf: dict) -> GPTConfig:
    """A Hugging Face GPT-2 config.json -> GPTConfig; ValueError for a setting this model does not have.
    The GELU is the config's: GPT-2's is tanh ("gelu_new"); an export of a model trained with the exact
    GELU (nanogpt's default) says "gelu"."""
    act = hf.get("activation_function", "gelu_new")
    unsupported = {"model_type": hf.get("model_type") != "gpt2", "activation_function": act not in HF_GELU,
                   "n_inner": hf.get("n_inner") not in (None, 4 * hf["n_embd"]),
                   "layer_norm_epsilon": hf.get("layer_norm_epsilon", 1e-5) != 1e-5,
                   "scale_attn_by_inverse_layer_idx": bool(hf.get("scale_attn_by_inverse_layer_idx")),
                   "scale_attn_weights": not hf.get("scale_attn_weights", True)}
    bad = [k for k, v in unsupported.items() if v]
    if bad:
        raise ValueError(f"{bad[0]} {hf.get(bad[0])!r} is not what this GPT-2 model implements")
    return GPTConfig(block_size=hf["n_positions"], vocab_size=hf["vocab_size"], n_layer=hf["n_layer"],
                     n_head=hf["n_head"], n_embd=hf["n_embd"], gelu_approximate=HF_GELU[act])


def flops_per_token(config: GPTConfig, n_params: int) -> float:
    """Training FLOPs per token: 6N for the matmuls with weights + 12*L*C*T for attention
    (PaLM paper, appendix B). N excludes the position embedding (no matmul)."""
    n = n_params - config.block_size * config.n_embd
    return 6 * n + 12 * config.n_layer * config.n_embd * config.block_size
