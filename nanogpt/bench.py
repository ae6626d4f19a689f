"""Benchmark nanogpt/model.py: a training step (ms/iter, tokens/s, MFU) against a faithful minimal restatement
of karpathy/nanoGPT's model run in the same process, or (--generate) sampling with vs without the KV cache.

    python nanogpt/bench.py                       # nanoGPT README's CPU recipe shape, float32, no compile
    python nanogpt/bench.py --device cuda --dtype bfloat16 --compile --n-layer 12 --n-head 12 --n-embd 768 \
        --block-size 1024 --vocab-size 50304 --batch-size 16
    python nanogpt/bench.py --generate            # GPT-2 124M shape (random weights), 500 new tokens
    python nanogpt/bench.py --recipe --seeds 1337,1,2 [--data-source input.txt]   # loss, not speed (below)

Both models take the same training step (forward, backward, clip to 1.0, AdamW from each model's own
configure_optimizers), alternating in rounds so a busy machine slows both alike; the ratio is the
like-for-like comparison. Prints one JSON line at the end.

--recipe compares what the runs reach instead: nanoGPT README's CPU recipe on Tiny Shakespeare (chars, 4 x 4 x
128, block 64, batch 12, 2000 steps) trained per seed by train.py and by nanoGPT's own train.py loop restated
step for step (random-offset batches, estimate_loss on 20 random batches per split every 250 steps, all from
the one torch RNG stream), each scored on its own estimate and on the exact loss over all of val.bin.
"""
from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

import data
import hardware
import train  # --recipe runs train.py itself
from cli import UserError, knob, parse_config, run_main
from config import MAX_SEED
from model import GPT, GPTConfig


@dataclass
class BenchConfig:
    # the nanoGPT README's CPU recipe (shakespeare_char): 4 x 4 x 128, block 64, batch 12
    n_layer: int = knob(4, "transformer blocks")
    n_head: int = knob(4, "attention heads")
    n_embd: int = knob(128, "embedding width")
    block_size: int = knob(64, "context length")
    batch_size: int = knob(12, "sequences per step")
    vocab_size: int = knob(65, "vocabulary size")
    device: str = knob("cpu", "cpu | cuda | cuda:N | auto")
    dtype: str = knob("float32", "float32, bfloat16 or float16 (autocast)")
    compile: bool = knob(False, "torch.compile both models")
    iters: int = knob(10, "timed training steps per round")
    rounds: int = knob(5, "alternating rounds of ours / baseline; the median round is reported")
    warmup: int = knob(3, "untimed steps before the rounds")
    threads: int = knob(0, "torch CPU threads (0 = torch's default)")
    baseline: bool = knob(True, "also time the nanoGPT restatement (--no-baseline: only our model)")
    generate: bool = knob(False, "time greedy sampling, KV cache vs none, on a GPT-2 124M-shaped model "
                                 "(random weights)")
    max_new_tokens: int = knob(500, "tokens to generate in --generate mode")
    seed: int = knob(1337, "seed of weights and data")
    recipe: bool = knob(False, "instead of speed: val loss of the Shakespeare CPU recipe, train.py vs "
                               "nanoGPT's loop restated")
    seeds: str = knob("1337,1,2", "--recipe: comma-separated seeds")
    data_dir: str = knob(str(Path(__file__).resolve().parent / "data"),
                         "--recipe: folder holding shakespeare_char/ (prepared by train.py when missing)")
    data_source: str = knob("", "--recipe: Tiny Shakespeare input.txt to prepare from offline ('' = download)")


# --------------------------------------------------------------------------------------------------
# karpathy/nanoGPT's model.py (training path), restated minimally as the baseline: hand-written
# LayerNorm, SDPA attention, exact GELU, full-sequence logits, weight tying, same init.


class RefLayerNorm(nn.Module):
    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class RefAttention(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.resid_dropout = nn.Dropout(c.dropout)
        self.n_head, self.dropout = c.n_head, c.dropout

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0, is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class RefMLP(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class RefBlock(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln_1, self.attn = RefLayerNorm(c.n_embd, c.bias), RefAttention(c)
        self.ln_2, self.mlp = RefLayerNorm(c.n_embd, c.bias), RefMLP(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class RefGPT(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(c.vocab_size, c.n_embd), wpe=nn.Embedding(c.block_size, c.n_embd),
            drop=nn.Dropout(c.dropout), h=nn.ModuleList([RefBlock(c) for _ in range(c.n_layer)]),
            ln_f=RefLayerNorm(c.n_embd, c.bias)))
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        for n, p in self.named_parameters():
            if n.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * c.n_layer))

    def forward(self, idx, targets):
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)


# --------------------------------------------------------------------------------------------------


def make_optimizer(model, device_type, lr=6e-4, beta2=0.95):
    """nanoGPT's configure_optimizers: AdamW, decay on dim >= 2, fused only on CUDA."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, beta2), **({"fused": True} if device_type == "cuda" else {}))


def bench_train(cfg: BenchConfig) -> dict:
    device_type = torch.device(cfg.device).type
    ptdtype, ctx = hardware.DTYPES[cfg.dtype], hardware.autocast(cfg.device, cfg.dtype)
    if device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # as nanoGPT's train.py
        torch.backends.cudnn.allow_tf32 = True
    gcfg = GPTConfig(block_size=cfg.block_size, vocab_size=cfg.vocab_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
                     n_embd=cfg.n_embd, dropout=0.0, bias=False)  # nanoGPT's default bias=False
    g = torch.Generator().manual_seed(cfg.seed)
    x = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.block_size), generator=g).to(cfg.device)
    y = torch.randint(0, cfg.vocab_size, (cfg.batch_size, cfg.block_size), generator=g).to(cfg.device)

    runners = {}
    for name, cls in [("ours", GPT), ("nanogpt_ref", RefGPT)]:
        if name == "nanogpt_ref" and not cfg.baseline:
            continue
        torch.manual_seed(cfg.seed)
        model = cls(gcfg).to(cfg.device)
        # ours: its own configure_optimizers (what train.py uses); the baseline: nanoGPT's (fused on CUDA only)
        if name == "ours":
            opt = model.configure_optimizers(0.1, 6e-4, (0.9, 0.95), device_type)
        else:
            opt = make_optimizer(model, device_type)
        scaler = torch.amp.GradScaler(device_type, enabled=ptdtype == torch.float16)
        fwd = torch.compile(model) if cfg.compile else model

        def step(fwd=fwd, model=model, opt=opt, scaler=scaler):
            with ctx:
                _, loss = fwd(x, y)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)

        for _ in range(cfg.warmup):
            step()
        hardware.synchronize(cfg.device)
        runners[name] = (step, model)

    times = {name: [] for name in runners}
    for _ in range(cfg.rounds):
        for name, (step, _) in runners.items():
            hardware.synchronize(cfg.device)
            t0 = time.perf_counter()
            for _ in range(cfg.iters):
                step()
            hardware.synchronize(cfg.device)
            times[name].append((time.perf_counter() - t0) / cfg.iters)

    tokens = cfg.batch_size * cfg.block_size
    result = {"mode": "train", **{k: v for k, v in asdict(cfg).items() if k not in ("generate", "max_new_tokens")},
              "threads_used": torch.get_num_threads()}
    for name, ts in times.items():
        dt = statistics.median(ts)
        ours = runners[name][1] if name == "ours" else None
        mfu = hardware.mfu(ours.flops_per_token(), tokens / dt, cfg.device, ptdtype) if ours else None
        result[name] = {"ms_per_iter": 1e3 * dt, "ms_per_iter_min": 1e3 * min(ts), "tokens_per_s": tokens / dt,
                        "mfu": mfu}
        print(f"{name:12s} {1e3 * dt:8.2f} ms/iter (best round {1e3 * min(ts):.2f})  {tokens / dt:10,.0f} tokens/s  "
              f"MFU {'n/a (no datasheet peak for this device)' if mfu is None else f'{100 * mfu:.1f}%'}")
    if "nanogpt_ref" in times:
        ratio = statistics.median(times["nanogpt_ref"]) / statistics.median(times["ours"])
        result["speedup_vs_nanogpt_ref"] = ratio
        print(f"ours is {ratio:.2f}x the speed of the nanoGPT restatement (>1 = faster)")
    return result


def bench_generate(cfg: BenchConfig) -> dict:
    """GPT-2 124M shape with random weights: time max_new_tokens greedy tokens with and without the cache."""
    torch.manual_seed(cfg.seed)
    model = GPT(GPTConfig(block_size=1024, vocab_size=50257, n_layer=12, n_head=12, n_embd=768)).to(cfg.device).eval()
    prompt = torch.randint(0, 50257, (1, 8), device=cfg.device)
    result = {"mode": "generate", "device": cfg.device, "dtype": cfg.dtype, "max_new_tokens": cfg.max_new_tokens,
              "params": model.get_num_params(non_embedding=False), "threads_used": torch.get_num_threads()}
    outs = {}
    with hardware.autocast(cfg.device, cfg.dtype):
        model.generate(prompt, 4, temperature=0)  # warm-up
        for use_cache in (True, False):
            hardware.synchronize(cfg.device)
            t0 = time.perf_counter()
            outs[use_cache] = model.generate(prompt, cfg.max_new_tokens, temperature=0, use_cache=use_cache)
            hardware.synchronize(cfg.device)
            dt = time.perf_counter() - t0
            key = "kv_cache" if use_cache else "no_cache"
            result[key] = {"seconds": dt, "tokens_per_s": cfg.max_new_tokens / dt}
            print(f"{key:9s} {cfg.max_new_tokens} tokens in {dt:7.2f} s  {cfg.max_new_tokens / dt:8.1f} tokens/s")
    result["speedup"] = result["no_cache"]["seconds"] / result["kv_cache"]["seconds"]
    if cfg.dtype != "float32":  # bf16/fp16 round the two paths differently: a near-tie may flip a token
        outs = {c: model.generate(prompt, cfg.max_new_tokens, temperature=0, use_cache=c) for c in (True, False)}
    result["same_tokens"] = bool(torch.equal(outs[True], outs[False]))  # float32: equal when the cache is right
    print(f"KV cache speedup {result['speedup']:.1f}x; identical greedy tokens (float32): {result['same_tokens']}")
    return result


# --------------------------------------------------------------------------------------------------
# --recipe: the loss the Shakespeare CPU recipe reaches, ours against nanoGPT's loop

RECIPE = dict(block_size=64, batch_size=12, n_layer=4, n_head=4, n_embd=128, iters=2000, lr=1e-3, min_lr=1e-4,
              warmup=100, beta2=0.99, eval_interval=250, eval_iters=20)


@torch.no_grad()
def full_val_loss(model, val: np.ndarray, block_size: int) -> float:
    """The exact mean loss over every non-overlapping window of val.bin, cut by train.py's num_windows and
    get_batch: what train.py reports at the end as final.val_loss_full when val.bin fits in
    --final-eval-tokens (Tiny Shakespeare's does)."""
    model.eval()
    n = data.num_windows(len(val), block_size)
    total = 0.0
    for start in range(0, n, 256):
        x, y = data.get_batch(val, np.arange(start, min(n, start + 256)), block_size, "cpu")  # (b, T)
        total += model(x, y)[1].item() * len(x)
    return total / n


def nanogpt_loop(seed: int, folder: Path, recipe: dict = RECIPE, model_cls=None) -> dict:
    """karpathy/nanoGPT's train.py with the README's CPU flags, restated: the same calls on the one torch RNG
    stream (seed, model init, first batch, estimate_loss at step 0, 250, ...), so that seed 1337 retraces the
    run behind the README's figure. float32 on CPU, no compile, no dropout. model_cls: RefGPT (default) or
    model.GPT, which draws the same initial weights and computes the same function."""
    r = recipe
    torch.manual_seed(seed)
    data = {split: np.memmap(folder / f"{split}.bin", dtype=np.uint16, mode="r") for split in ("train", "val")}

    def get_batch(split):
        ix = torch.randint(len(data[split]) - r["block_size"], (r["batch_size"],))
        x = torch.stack([torch.from_numpy(data[split][i : i + r["block_size"]].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[split][i + 1 : i + 1 + r["block_size"]].astype(np.int64)) for i in ix])
        return x, y

    def get_lr(it):
        if it < r["warmup"]:
            return r["lr"] * (it + 1) / (r["warmup"] + 1)
        ratio = min(1.0, (it - r["warmup"]) / (r["iters"] - r["warmup"]))
        return r["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (r["lr"] - r["min_lr"])

    @torch.no_grad()
    def estimate_loss():
        model.eval()
        out = {split: sum(model(*get_batch(split))[1].item() for _ in range(r["eval_iters"])) / r["eval_iters"]
               for split in ("train", "val")}
        model.train()
        return out

    model = (model_cls or RefGPT)(GPTConfig(block_size=r["block_size"], vocab_size=65, n_layer=r["n_layer"], n_head=r["n_head"],
                             n_embd=r["n_embd"], dropout=0.0, bias=False))
    opt = make_optimizer(model, "cpu", r["lr"], r["beta2"])
    x, y = get_batch("train")
    for it in range(r["iters"] + 1):  # nanoGPT evaluates at step 2000, then takes that step too
        for group in opt.param_groups:
            group["lr"] = get_lr(it)
        if it % r["eval_interval"] == 0:
            losses = estimate_loss()
        _, loss = model(x, y)
        x, y = get_batch("train")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return {"train_estimate": losses["train"], "val_estimate": losses["val"],
            "val_full": full_val_loss(model, data["val"], r["block_size"])}


def parse_seeds(text: str) -> list[int]:
    """'1337,1,2' -> [1337, 1, 2]; [] when the text holds no seed or a non-integer."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        return []


def bench_recipe(cfg: BenchConfig, seeds: list[int]) -> dict:
    result = {"mode": "recipe", "recipe": RECIPE, "seeds": seeds, "ours": [], "nanogpt_loop": []}
    print(f"{'seed':>6} {'ours: logged val':>17} {'exact val':>10} | {'nanoGPT loop: val est.':>22} {'exact val':>10}")
    for seed in seeds:
        with tempfile.TemporaryDirectory() as out:
            args = ["--preset", "shakespeare_char_cpu", "--seed", seed, "--out-dir", out, "--data-dir", cfg.data_dir,
                    "--num-samples", 0, "--save-epochs", ""] + (["--data-source", cfg.data_source] * bool(cfg.data_source))
            code = train.main([str(a) for a in args])
            if code:
                raise UserError(f"train.py stopped with exit code {code} at seed {seed}")
            final = json.loads((Path(out) / "results.json").read_text())["final"]
        ours = {"seed": seed, "val_logged": final["val_loss"], "val_full": final["val_loss_full"]}
        ref = {"seed": seed, **nanogpt_loop(seed, Path(cfg.data_dir) / "shakespeare_char")}
        result["ours"].append(ours)
        result["nanogpt_loop"].append(ref)
        print(f"{seed:>6} {ours['val_logged']:17.4f} {ours['val_full']:10.4f} | {ref['val_estimate']:22.4f} "
              f"{ref['val_full']:10.4f}", flush=True)
    for name in ("ours", "nanogpt_loop"):
        vals = [row["val_full"] for row in result[name]]
        result[f"{name}_val_full_mean"] = statistics.fmean(vals)
        result[f"{name}_val_full_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    print(f"exact val loss, mean over {len(seeds)} seeds: ours {result['ours_val_full_mean']:.4f} "
          f"(sd {result['ours_val_full_sd']:.4f}), nanoGPT loop {result['nanogpt_loop_val_full_mean']:.4f} "
          f"(sd {result['nanogpt_loop_val_full_sd']:.4f})")
    return result


def check_bench_config(cfg: BenchConfig) -> list[int]:
    """Range checks (a zero size would divide by zero or time empty batches). -> the --recipe seeds."""
    for name in ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "vocab_size", "iters", "rounds",
                 "max_new_tokens"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} {getattr(cfg, name)}: must be >= 1")
    if cfg.threads < 0 or cfg.warmup < 0:
        raise UserError(f"--threads {cfg.threads} and --warmup {cfg.warmup} must be >= 0 (--threads 0: torch's default)")
    if cfg.max_new_tokens > 1_000_000:
        raise UserError(f"--max-new-tokens {cfg.max_new_tokens}: must be <= 1000000")
    if cfg.dtype not in hardware.DTYPES:
        raise UserError(f"--dtype {cfg.dtype!r}: one of {', '.join(hardware.DTYPES)}")
    if cfg.n_embd % cfg.n_head:
        raise UserError(f"--n-embd {cfg.n_embd} is not divisible by --n-head {cfg.n_head}")
    hardware.check_model_fits(cfg.n_layer, cfg.n_embd, cfg.block_size)
    if not 0 <= cfg.seed <= MAX_SEED:
        raise UserError(f"--seed {cfg.seed}: must be in [0, {MAX_SEED}]")
    seeds = parse_seeds(cfg.seeds)
    if cfg.recipe and not (seeds and all(0 <= s <= MAX_SEED for s in seeds)):
        raise UserError(f"--seeds {cfg.seeds!r}: comma-separated integers in [0, {MAX_SEED}], e.g. 1337,1,2")
    return seeds


def main(argv=None):
    cfg = parse_config(BenchConfig, argv, "bench.py", __doc__.split("\n\n")[0])
    seeds = check_bench_config(cfg)
    cfg.device = hardware.resolve_device(cfg.device)
    hardware.resolve_dtype(cfg.dtype, cfg.device)  # refuses a dtype the device lacks
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    name = hardware.describe(cfg.device)
    print(f"device {cfg.device} ({name}), {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    result = bench_recipe(cfg, seeds) if cfg.recipe else bench_generate(cfg) if cfg.generate else bench_train(cfg)
    result["device_name"] = name
    print(json.dumps(result))


if __name__ == "__main__":
    run_main(main)
