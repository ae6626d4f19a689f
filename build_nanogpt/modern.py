"""The modern GPT of the NanoGPT speedrun (KellerJordan/modded-nanogpt): every technique a named switch.

model.py is the 2019 GPT-2; this module is the same network with the architectural records of the speedrun
(github.com/KellerJordan/modded-nanogpt, its README's record table) as switches of `ModernConfig`. Every switch
defaults to GPT-2's behaviour, and the parameter names, creation order and initialisation are model.py's, so
with every switch off this model draws the same initial weights from the same seed and computes the same
losses as model.GPT (tested). The switches, in the order the speedrun introduced them:

  rotary        rotary position embeddings (Su et al. 2021, RoFormer) instead of the learned wpe table  [31.4 min]
  rmsnorm       parameter-free RMSNorm instead of LayerNorm (and `bias=False`: no biases)              [31.4 min]
  relu2         MLP activation relu(x)^2 instead of GELU (So et al. 2021, Primer)                      [15.2 min]
  zero_init     output projections (and an untied head) start at zero: a fresh block is the identity   [15.2 min]
  qk_norm       q and k RMS-normalised per head before the scores (Dehghani et al. 2023)               [15.2 min]
  untied        a separate lm_head instead of the token embedding reused as the head                  [10.8 min]
  embed_skip    x = a*x + b*x0 before every block: the token embedding x0 mixed in, a=1, b=0 learned   [8.2 min]
  softcap       logits = cap * tanh(logits / cap) (Gemma 2); 0 is off; 30 at 8.2 min, 15 at 3.4 min  [8.2, 3.4]
  unet          the first half's block outputs added to the second half's inputs in reverse, weighted [7.2 min]
  window        sliding-window causal attention: position i sees j in (i - window, i]; the trainer
                grows it during training ("window warm-up"); 0 is full causal attention              [5.0, 4.7]
  value_embeds  N extra token-embedding tables mixed into the values v of the first N and, mirrored,
                the last N blocks (U-net pattern): v = l0*v + l1*ve                                 [4.4, 3.95]

Attention is F.scaled_dot_product_attention: causal (is_causal) without a window; with a window, a boolean
mask built from the window buffer on a CPU, FlexAttention (torch.nn.attention.flex_attention, a block-sparse
kernel that skips the masked tiles) on CUDA. The window is a buffer, not a config value, so changing it during
training never recompiles the compiled model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F


@dataclass
class ModernConfig:
    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    bias: bool = True  # biases in Linear and LayerNorm (GPT-2's); the speedrun has none
    rotary: bool = False
    rmsnorm: bool = False
    relu2: bool = False
    zero_init: bool = False
    qk_norm: bool = False
    untied: bool = False
    embed_skip: bool = False
    softcap: float = 0.0
    unet: bool = False
    window: int = 0
    value_embeds: int = 0


SWITCHES = ("bias", "rotary", "rmsnorm", "relu2", "zero_init", "qk_norm", "untied", "embed_skip", "softcap",
            "unet", "window", "value_embeds")


def check_config(c: ModernConfig) -> str | None:
    """None when the config can be built, else what is wrong (one line)."""
    if c.n_embd % c.n_head:
        return f"n_embd {c.n_embd} is not divisible by n_head {c.n_head}"
    if c.rotary and (c.n_embd // c.n_head) % 2:
        return f"rotary needs an even head size, not {c.n_embd // c.n_head}"
    if not 0 <= c.value_embeds <= c.n_layer // 2:
        return f"value_embeds {c.value_embeds}: use 0 .. n_layer // 2 = {c.n_layer // 2}"
    if c.softcap < 0 or c.window < 0:
        return "softcap and window must be >= 0"
    return None


def make_norm(config: ModernConfig) -> nn.Module:
    """LayerNorm (GPT-2), or parameter-free RMSNorm x / rms(x) (rmsnorm switch)."""
    if config.rmsnorm:
        return nn.RMSNorm(config.n_embd, elementwise_affine=False)
    return nn.LayerNorm(config.n_embd, bias=config.bias)


def rotary_tables(T: int, hs: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the angles t * base^(-2i/hs), t < T, i < hs/2: each (T, hs/2)."""
    freqs = base ** (-torch.arange(0, hs, 2, dtype=torch.float32) / hs)  # (hs/2,)
    angles = torch.outer(torch.arange(T, dtype=torch.float32), freqs)  # (T, hs/2)
    return angles.cos(), angles.sin()


def apply_rotary(x, cos, sin):
    """Rotate each pair (x[i], x[i + hs/2]) of a (B, nh, T, hs) tensor by the angle of its position.
    A rotation keeps the norm, and q_m . k_n then depends on m - n only (R_m^T R_n = R_(n-m))."""
    d = x.size(-1) // 2
    x1, x2 = x[..., :d], x[..., d:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos + x2 * sin, -x1 * sin + x2 * cos), dim=-1)


def window_mask(T: int, window, device) -> torch.Tensor:
    """(T, T) bool: query i may attend to key j iff i - window < j <= i (window a 0-d tensor or int)."""
    i = torch.arange(T, device=device).view(T, 1)
    j = torch.arange(T, device=device).view(1, T)
    return (j <= i) & (i - j < window)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModernConfig, value_embed: bool):
        super().__init__()
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj.SCALE_INIT = 1
        self.n_head, self.n_embd = config.n_head, config.n_embd
        self.config = config
        if value_embed:  # this block mixes a value embedding in: v = l0 * v + l1 * ve, (0.5, 0.5) as in the speedrun
            self.value_lambdas = nn.Parameter(torch.tensor([0.5, 0.5]))

    def qkv(self, x, cos=None, sin=None):
        """q, k, v as (B, nh, T, hs): k and q RMS-normalised per head (qk_norm), then rotated (rotary)."""
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if self.config.qk_norm:
            q, k = F.rms_norm(q, (q.size(-1),)), F.rms_norm(k, (k.size(-1),))
        if self.config.rotary:
            q, k = apply_rotary(q, cos[:T], sin[:T]), apply_rotary(k, cos[:T], sin[:T])
        return q, k, v

    def forward(self, x, cos=None, sin=None, ve=None, window=None):
        B, T, C = x.size()
        q, k, v = self.qkv(x, cos, sin)
        if ve is not None:
            v = self.value_lambdas[0] * v + self.value_lambdas[1] * ve.view_as(v.transpose(1, 2)).transpose(1, 2)
        # one dtype for the kernels: under autocast the norms and the (float32) value embedding may promote q, k
        # or v to float32 while the matmuls give bfloat16
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        if window is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif x.is_cuda:
            y = flex_window_attention(q, k, v, window)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=window_mask(T, window, x.device))
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


def flex_window_attention(q, k, v, window):
    """Sliding-window attention with FlexAttention (CUDA): tiles wholly outside the window are skipped."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # noqa: PLC0415

    def sliding(b, h, qi, kj):
        return (kj <= qi) & (qi - kj < window)
    T = q.size(-2)
    block_mask = create_block_mask(sliding, None, None, T, T, device=q.device)
    return flex_attention(q, k, v, block_mask=block_mask)


class MLP(nn.Module):
    def __init__(self, config: ModernConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.relu2 = config.relu2
        if not self.relu2:
            self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.c_proj.SCALE_INIT = 1

    def forward(self, x):
        h = self.c_fc(x)
        return self.c_proj(F.relu(h).square() if self.relu2 else self.gelu(h))


class Block(nn.Module):
    def __init__(self, config: ModernConfig, value_embed: bool):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config, value_embed)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)
        if config.embed_skip:  # x = l0 * x + l1 * x0: starts as x (1, 0)
            self.lambdas = nn.Parameter(torch.tensor([1.0, 0.0]))

    def forward(self, x, x0=None, cos=None, sin=None, ve=None, window=None):
        if x0 is not None:
            x = self.lambdas[0] * x + self.lambdas[1] * x0
        x = x + self.attn(self.ln_1(x), cos, sin, ve, window)
        x = x + self.mlp(self.ln_2(x))
        return x


def value_embed_of_layer(config: ModernConfig) -> list[int | None]:
    """Which value-embedding table each block uses: table i in block i and block n_layer-1-i (U-net)."""
    n, L = config.value_embeds, config.n_layer
    return [i if i < n else (L - 1 - i if L - 1 - i < n else None) for i in range(L)]


class ModernGPT(nn.Module):
    def __init__(self, config: ModernConfig):
        super().__init__()
        problem = check_config(config)
        assert problem is None, problem
        self.config = config
        parts = dict(wte=nn.Embedding(config.vocab_size, config.n_embd))
        if not config.rotary:
            parts["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        parts["h"] = nn.ModuleList([Block(config, t is not None) for t in value_embed_of_layer(config)])
        parts["ln_f"] = make_norm(config)
        self.transformer = nn.ModuleDict(parts)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if not config.untied:
            self.transformer.wte.weight = self.lm_head.weight
        if config.value_embeds:
            self.value_embeds = nn.ModuleList(nn.Embedding(config.vocab_size, config.n_embd)
                                              for _ in range(config.value_embeds))
        # U-net: the outputs of blocks 0 .. n_encoder-1 join the inputs of blocks n_encoder .. 2*n_encoder-1 in
        # reverse (the last encoder block's output feeds the first decoder block), each with a learned weight
        self.n_encoder = config.n_layer // 2
        if config.unet:
            self.skip_weights = nn.Parameter(torch.ones(self.n_encoder))
        if config.rotary:
            cos, sin = rotary_tables(config.block_size, config.n_embd // config.n_head)
            self.register_buffer("rotary_cos", cos, persistent=False)
            self.register_buffer("rotary_sin", sin, persistent=False)
        # the window now in use (the trainer warms it up); a buffer, so changing it never recompiles
        self.register_buffer("window", torch.tensor(config.window or config.block_size), persistent=False)
        self.apply(self._init_weights)
        if config.zero_init:
            for block in self.transformer.h:
                nn.init.zeros_(block.attn.c_proj.weight)
                nn.init.zeros_(block.mlp.c_proj.weight)
            if config.untied:
                nn.init.zeros_(self.lm_head.weight)

    def _init_weights(self, module):  # model.GPT's, so that all switches off draws the same weights
        if isinstance(module, nn.Linear):
            std = 0.02
            if hasattr(module, "SCALE_INIT"):
                std *= (2 * self.config.n_layer) ** -0.5
            torch.nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def set_window(self, window: int) -> None:
        """The sliding window for the next forward passes (clamped to 1 .. block_size)."""
        self.window.fill_(max(1, min(int(window), self.config.block_size)))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx, targets=None):
        B, T = idx.size()
        assert T <= self.config.block_size, f"sequence of {T} > block size {self.config.block_size}"
        c = self.config
        x = self.transformer.wte(idx)  # (B, T, C)
        if not c.rotary:
            x = x + self.transformer.wpe(torch.arange(0, T, dtype=torch.long, device=idx.device))
        x0 = x if c.embed_skip else None
        cos, sin = (self.rotary_cos, self.rotary_sin) if c.rotary else (None, None)
        window = self.window if c.window else None
        ves = [ve(idx) for ve in self.value_embeds] if c.value_embeds else []
        table = value_embed_of_layer(c)
        skips = []
        for i, block in enumerate(self.transformer.h):
            if c.unet and i >= self.n_encoder and skips:
                x = x + self.skip_weights[i - self.n_encoder] * skips.pop()
            ve = ves[table[i]] if table[i] is not None else None
            x = block(x, x0, cos, sin, ve, window)
            if c.unet and i < self.n_encoder:
                skips.append(x)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)  # (B, T, vocab_size)
        if c.softcap:
            logits = c.softcap * torch.tanh(logits / c.softcap)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))
        return logits, loss

    def hidden_matrices(self) -> list[nn.Parameter]:
        """The 2-D weights inside the blocks (attention and MLP matmuls): what Muon orthogonalises."""
        return [p for p in self.transformer.h.parameters() if p.dim() == 2]

    def configure_optimizers(self, weight_decay: float, learning_rate: float, betas=(0.9, 0.95),
                             eps: float = 1e-8, fused: bool = False, optimizer: str = "adamw",
                             muon_lr: float = 0.02, muon_momentum: float = 0.95):
        """adamw: model.GPT's AdamW (decay on >=2-D tensors). muon: Muon on the hidden matrices, AdamW (no
        decay on <2-D tensors) on the embeddings, head and scalars; every group records its peak lr."""
        params = [p for p in self.parameters() if p.requires_grad]
        if optimizer == "adamw":
            groups = [
                {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
            ]
            return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps, fused=fused)
        from muon import Muon  # noqa: PLC0415 - only the muon runs need it

        hidden = {id(p) for p in self.hidden_matrices()}
        groups = [
            {"params": [p for p in params if id(p) in hidden], "muon": True, "lr": muon_lr, "peak_lr": muon_lr,
             "momentum": muon_momentum, "weight_decay": 0.0},
            {"params": [p for p in params if id(p) not in hidden and p.dim() >= 2], "muon": False,
             "peak_lr": learning_rate, "weight_decay": weight_decay},
            {"params": [p for p in params if id(p) not in hidden and p.dim() < 2], "muon": False,
             "peak_lr": learning_rate, "weight_decay": 0.0},
        ]
        return Muon([g for g in groups if g["params"]], lr=learning_rate, betas=betas, eps=eps)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens: int, top_k: int = 50, generator: torch.Generator | None = None):
        """Top-k sampling, as model.GPT.generate (the whole cropped context each step)."""
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.config.block_size:])
            probs = F.softmax(logits[:, -1, :].float(), dim=-1)
            topk_probs, topk_idx = torch.topk(probs, min(top_k, probs.size(-1)), dim=-1)
            choice = torch.multinomial(topk_probs, 1, generator=generator)
            idx = torch.cat((idx, torch.gather(topk_idx, -1, choice)), dim=1)
        return idx


def flops_per_token(config: ModernConfig, n_params: int) -> float:
    """6N + 12*L*C*T as model.flops_per_token; N without the tables that are only looked up (no matmul):
    positions, value embeddings, and the token embedding when the head is untied."""
    n = n_params - (0 if config.rotary else config.block_size * config.n_embd)
    n -= (config.value_embeds + config.untied) * config.vocab_size * config.n_embd  # untied: wte is a lookup
    return 6 * n + 12 * config.n_layer * config.n_embd * config.block_size
