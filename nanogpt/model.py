"""A GPT-2 language model in one file, loadable from OpenAI's GPT-2 weights.

References:
1) OpenAI GPT-2 (Radford et al., 2019), "Language Models are Unsupervised Multitask Learners", and its
   TensorFlow code: openai/gpt-2 src/model.py (pre-LayerNorm blocks, tied embeddings, tanh GELU).
2) karpathy/nanoGPT model.py, whose layout and parameter names this file follows, so that a Hugging Face
   GPT-2 checkpoint maps onto it key by key.
3) PaLM (Chowdhery et al., 2022), appendix B, for the FLOPs-per-token estimate behind MFU.

Beyond nanoGPT: a preallocated key/value cache for sampling (the language-model head runs only on the
last position while generating), top-p sampling, and loading any local GPT-2 folder (not just the four
hub sizes; hub.py downloads those) with one-line errors naming the tensor that does not fit.
"""
from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn import functional as F

# --------------------------------------------------------------------------------------------------
# building blocks


class KVCache:
    """Keys and values of every layer for positions [0, max_len), preallocated on first use.

    One (2, B, nh, max_len, hs) buffer per layer; each step writes its new keys/values in place and
    attends over a view of the filled prefix, so decoding allocates no cache memory step by step.
    """

    def __init__(self, n_layer: int, max_len: int):
        self.max_len = max_len
        self.buffers: list[torch.Tensor | None] = [None] * n_layer

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, pos: int):
        B, nh, T, hs = k.shape
        if pos + T > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions, asked for {pos + T}")
        buf = self.buffers[layer]
        if buf is None:  # allocate lazily: dtype follows autocast (bf16 keys under bf16 autocast)
            buf = self.buffers[layer] = torch.empty((2, B, nh, self.max_len, hs), dtype=k.dtype, device=k.device)
        buf[0, :, :, pos : pos + T] = k
        buf[1, :, :, pos : pos + T] = v
        return buf[0, :, :, : pos + T], buf[1, :, :, : pos + T]  # (B, nh, pos+T, hs) views, no copy


class CausalSelfAttention(nn.Module):
    def __init__(self, config: "GPTConfig", layer_idx: int = 0):
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be divisible by n_head"
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v for all heads
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.flash = config.flash
        self.layer_idx = layer_idx

    def forward(self, x, cache: KVCache | None = None, pos: int = 0):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v, pos)  # (B, nh, S, hs) with S = pos + T
        S = k.size(2)
        if self.flash:
            # fused kernel (FlashAttention on GPU). is_causal aligns the mask top-left, which is right
            # only when queries and keys start together (S == T); a single decoding query sees all keys.
            if S == T or T == 1:
                y = F.scaled_dot_product_attention(
                    q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=(S == T and T > 1)
                )
            else:  # a chunk of queries after a cached prefix: explicit bottom-right causal mask
                mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=S - T)
                y = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
                )
        else:
            # the textbook path: softmax(q k^T / sqrt(hs) + causal mask) v
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, S)
            if T > 1:
                mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(diagonal=S - T)  # (T, S)
                att = att.masked_fill(~mask, float("-inf"))
            att = F.softmax(att, dim=-1)
            att = self.attn_dropout(att)
            y = att @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all head outputs side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: "GPTConfig"):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        # GPT-2's weights need its tanh GELU ("gelu_new"; the exact erf GELU is ~1e-3 off), which is ~30%
        # slower than the erf kernel on CPU, so new models default to the exact one (as nanoGPT)
        self.gelu = nn.GELU(approximate=config.gelu_approximate)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block (GPT-2): x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: "GPTConfig", layer_idx: int = 0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, cache: KVCache | None = None, pos: int = 0):
        x = x + self.attn(self.ln_1(x), cache, pos)
        x = x + self.mlp(self.ln_2(x))
        return x


# --------------------------------------------------------------------------------------------------
# the model


@dataclass
class GPTConfig:
    block_size: int = 1024  # context length (GPT-2: n_positions)
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for faster matmuls
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm, as GPT-2; False is a bit better and faster
    flash: bool = True  # F.scaled_dot_product_attention; False = explicit masked softmax (same numbers)
    layer_norm_eps: float = 1e-5  # GPT-2's layer_norm_epsilon
    gelu_approximate: str = "none"  # "none" = exact erf GELU; "tanh" = GPT-2's (from_pretrained sets it)


# Conv1D layers of the Hugging Face / OpenAI checkpoint store weights as (in, out); nn.Linear wants (out, in)
_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.vocab_size is not None and config.block_size is not None
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embeddings
                wpe=nn.Embedding(config.block_size, config.n_embd),  # learned absolute positions
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying (Press & Wolf, 2017), as GPT-2: the output projection is the token embedding
        self.transformer.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        # GPT-2 scales the init of projections that write into the residual stream by 1/sqrt(2 * n_layer)
        # (two such writes per block), so the residual's variance does not grow with depth
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameter count. The position embedding is left out by default; the token embedding stays in
        because, tied to lm_head, it is also the last layer's weight."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
        return n

    def _trunk(self, idx, cache: KVCache | None = None, pos: int = 0):
        """Token ids (B, T) at positions [pos, pos+T) -> final hidden states (B, T, C)."""
        B, T = idx.size()
        if pos + T > self.config.block_size:
            raise ValueError(f"sequence of length {pos + T} is longer than block_size {self.config.block_size}")
        positions = torch.arange(pos, pos + T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(positions))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x, cache, pos)
        return self.transformer.ln_f(x)  # (B, T, C)

    def forward(self, idx, targets=None):
        """idx (B, T) token ids -> (logits (B, T, vocab), mean cross-entropy or None).

        Targets equal to -1 are ignored (padding)."""
        x = self._trunk(idx)
        logits = self.lm_head(x)  # (B, T, vocab)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    def crop_block_size(self, block_size: int):
        """Shrink the context length (e.g. load GPT-2's 1024 and train with 256)."""
        assert block_size <= self.config.block_size, f"can only crop: {block_size} > {self.config.block_size}"
        self.config.block_size = block_size
        self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])

    # ----------------------------------------------------------------------------------------------
    # loading GPT-2 weights

    @classmethod
    def from_pretrained(cls, folder, override_args: dict | None = None) -> "GPT":
        """GPT-2 from a local Hugging Face GPT-2 folder (config.json + model.safetensors or pytorch_model.bin)
        of any size (hub.gpt2_folder turns a hub name into one). Raises ValueError, with a one-line message,
        for anything that is not a GPT-2 checkpoint or whose tensors do not fit."""
        override_args = dict(override_args or {})
        allowed = {"dropout", "flash"}
        bad = set(override_args) - allowed
        if bad:
            raise ValueError(f"override_args may only set {sorted(allowed)}, got {sorted(bad)}")
        config = pretrained_config(folder)
        for k, v in override_args.items():
            setattr(config, k, v)
        model = cls(config)
        weights_file = _checkpoint_files(Path(folder))[1]
        _copy_gpt2_weights(model, _read_weights(weights_file), weights_file)
        return model

    # ----------------------------------------------------------------------------------------------
    # training helpers

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type, eps=1e-8):
        """AdamW with weight decay on matrices and embeddings (dim >= 2) only, never biases or LayerNorm."""
        params = [p for p in self.parameters() if p.requires_grad]  # tied weight appears once
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        # fused kernels do the whole update in one pass: one launch on CUDA, and ~3x faster than the default
        # per-tensor loop on CPU (torch >= 2.4), ~5% of a small model's CPU training step
        use_fused = device_type in ("cuda", "cpu") and "fused" in inspect.signature(torch.optim.AdamW).parameters
        extra = {"fused": True} if use_fused else {}
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps, **extra)

    def flops_per_token(self) -> int:
        """Training FLOPs per token (forward + backward): 6N for the weights plus 12*L*H*Q*T for attention
        (PaLM appendix B), with N the non-embedding parameter count."""
        cfg = self.config
        N = self.get_num_params()
        L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.block_size
        return 6 * N + 12 * L * H * Q * T

    # ----------------------------------------------------------------------------------------------
    # sampling

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, use_cache=True,
                 generator=None):
        """Continue each row of idx (B, T) by max_new_tokens tokens -> (B, T + max_new_tokens).

        temperature 0 picks the most likely token (greedy). With use_cache the prompt is run once and
        each new token costs one position; once the sequence outgrows block_size, learned absolute
        positions make cached keys stale (every token moves one position left), so from there on each
        step re-runs the last block_size tokens, exactly like the uncached path.
        """
        was_training = self.training
        self.eval()
        B, T0 = idx.shape
        if T0 < 1:
            raise ValueError("generate needs a prompt of at least one token")
        out = torch.empty((B, T0 + max_new_tokens), dtype=torch.long, device=idx.device)  # no per-step cat
        out[:, :T0] = idx
        bs = self.config.block_size
        cache = KVCache(self.config.n_layer, bs) if use_cache and T0 <= bs else None
        try:
            for T in range(T0, T0 + max_new_tokens):
                if cache is not None and T <= bs:
                    if T == T0:  # prefill: the whole prompt in one pass
                        x = self._trunk(out[:, :T], cache, 0)
                    else:  # decode: only the newest token, attending to the cached prefix
                        x = self._trunk(out[:, T - 1 : T], cache, T - 1)
                else:
                    x = self._trunk(out[:, max(0, T - bs) : T])
                logits = self.lm_head(x[:, -1, :])  # (B, vocab): the head runs on the last position only
                out[:, T] = sample_next(logits, temperature, top_k, top_p, generator)
        finally:
            self.train(was_training)
        return out


# --------------------------------------------------------------------------------------------------
# sampling helpers (plain functions, tested on their own)


def filter_logits(logits, top_k=None, top_p=None):
    """Set to -inf every logit outside the top-k and outside the top-p nucleus (Holtzman et al., 2020).

    logits (B, V). The nucleus is the smallest set of most likely tokens whose probability reaches top_p;
    the most likely token always stays."""
    if top_k is not None:
        k = min(int(top_k), logits.size(-1))
        if k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        kth = torch.topk(logits, k, dim=-1).values[:, [-1]]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = F.softmax(sorted_logits, dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass of the strictly more likely tokens
        drop_sorted = before >= top_p  # already reached top_p without this token
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """logits (B, V) -> next token ids (B,). temperature 0 = argmax."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


# --------------------------------------------------------------------------------------------------
# GPT-2 checkpoint loading helpers


def pretrained_config(folder) -> GPTConfig:
    """The GPTConfig of a Hugging Face GPT-2 folder, from its config.json alone (ValueError, one line)."""
    config_file = _checkpoint_files(Path(folder))[0]
    try:
        hf = json.loads(Path(config_file).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {config_file}: {e}") from None
    return _config_from_hf(hf, config_file)


def _checkpoint_files(path: Path) -> tuple[Path, Path]:
    """-> (config.json, weights file) of a Hugging Face GPT-2 folder."""
    if not path.is_dir():
        raise ValueError(f"{path} is not a folder holding a GPT-2 checkpoint")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{path} is not a GPT-2 checkpoint: it has no config.json")
    for fname in ("model.safetensors", "pytorch_model.bin"):
        if (path / fname).is_file():
            return config_file, path / fname
    raise ValueError(f"{path} is not a GPT-2 checkpoint: no model.safetensors or pytorch_model.bin")


# Hugging Face's activation_function -> nn.GELU's approximate: GPT-2's weights use the tanh form, models
# trained from scratch here (and exported by export.py) the exact one
GELUS = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}


def _config_from_hf(hf: dict, where) -> GPTConfig:
    if hf.get("model_type") != "gpt2":
        raise ValueError(f"{where} is not a GPT-2 config: model_type is {hf.get('model_type')!r}, expected 'gpt2'")
    n_embd = hf.get("n_embd", 768)
    if hf.get("n_inner") not in (None, 4 * n_embd):
        raise ValueError(f"{where}: n_inner={hf['n_inner']} is not supported (only 4 * n_embd = {4 * n_embd})")
    activation = hf.get("activation_function", "gelu_new")
    if activation not in GELUS:
        raise ValueError(f"{where}: activation_function={activation!r} is not supported ({', '.join(GELUS)})")
    if hf.get("scale_attn_by_inverse_layer_idx", False) or not hf.get("scale_attn_weights", True):
        raise ValueError(f"{where}: non-standard attention scaling is not supported")
    return GPTConfig(
        block_size=hf.get("n_positions", hf.get("n_ctx", 1024)),
        vocab_size=hf.get("vocab_size", 50257),
        n_layer=hf.get("n_layer", 12),
        n_head=hf.get("n_head", 12),
        n_embd=n_embd,
        dropout=0.0,
        bias=True,  # GPT-2 always has biases
        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        gelu_approximate=GELUS[activation],
    )


def _read_weights(weights_file: Path) -> dict:
    try:
        if str(weights_file).endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(str(weights_file))
        return torch.load(weights_file, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated or foreign file
        raise ValueError(f"cannot read weights {weights_file}: {type(e).__name__}: {e}".splitlines()[0]) from None


def _copy_gpt2_weights(model: GPT, sd_hf: dict, where) -> None:
    """Asserted key-by-key copy of a Hugging Face GPT-2 state dict into model."""
    ours = model.state_dict()
    theirs = {}
    for k, v in sd_hf.items():
        if k.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # causal-mask buffers of old checkpoints, not weights
        if not k.startswith(("transformer.", "lm_head.")):
            k = "transformer." + k  # GPT2Model checkpoints (e.g. the hub's gpt2) lack the prefix
        theirs[k] = v
    # lm_head is tied to wte; when a checkpoint stores it, it must agree in shape
    if "lm_head.weight" in theirs:
        lm = theirs.pop("lm_head.weight")
        if tuple(lm.shape) != tuple(ours["lm_head.weight"].shape):
            raise ValueError(
                f"{where}: key 'lm_head.weight' has shape {tuple(lm.shape)}, "
                f"model expects {tuple(ours['lm_head.weight'].shape)}"
            )
    wanted = [k for k in ours if k != "lm_head.weight"]
    missing = [k for k in wanted if k not in theirs]
    if missing:
        raise ValueError(f"{where} is not a matching GPT-2 checkpoint: key {missing[0]!r} is missing "
                         f"({len(missing)} missing in all)")
    extra = [k for k in theirs if k not in ours]
    if extra:
        raise ValueError(f"{where} is not a matching GPT-2 checkpoint: unexpected key {extra[0]!r} "
                         f"with shape {tuple(theirs[extra[0]].shape)}")
    with torch.no_grad():
        for k in wanted:
            src = theirs[k]
            if k.endswith(_TRANSPOSED):
                src = src.t()
            if src.shape != ours[k].shape:
                shape = tuple(theirs[k].shape)
                expect = tuple(ours[k].shape[::-1]) if k.endswith(_TRANSPOSED) else tuple(ours[k].shape)
                raise ValueError(f"{where}: key {k!r} has shape {shape}, model expects {expect}")
            ours[k].copy_(src)
