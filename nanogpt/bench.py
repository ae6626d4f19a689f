"""Benchmark nanogpt/model.py: a training step (ms/iter, tokens/s, MFU) against a faithful minimal restatement
of karpathy/nanoGPT's model run in the same process, or (--generate) sampling with vs without the KV cache.

    python nanogpt/bench.py                       # nanoGPT README's CPU recipe shape, float32, no compile
    python nanogpt/bench.py --device cuda --dtype bfloat16 --compile --n-layer 12 --n-head 12 --n-embd 768 \
        --block-size 1024 --vocab-size 50304 --batch-size 16
    python nanogpt/bench.py --generate            # GPT-2 124M shape (random weights), 500 new tokens
    OMP_NUM_THREADS=1 python nanogpt/bench.py --threads 1 --out-dir nanogpt/results/bench   # what the README cites

Both models take the same training step (forward, backward, clip to 1.0, AdamW from each model's own
configure_optimizers), alternating in rounds so a busy machine slows both alike; the ratio is the
like-for-like comparison. On CPU each round is also timed in process CPU time, which other jobs on the machine
disturb far less than wall time. Prints one JSON line at the end and writes it, with the command as typed, the
machine, the date and the thread count, to OUT_DIR/train_step.json (--generate: generate.json). It times only;
what the two loops reach in loss is recipe.py's question.
"""
from __future__ import annotations

import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn import functional as F

import hardware
from cli import UserError, knob, parse_config, run_main
from config import MAX_SEED
from files import write_json
from model import GPT, GPTConfig

HERE = Path(__file__).resolve().parent


@dataclass
class BenchConfig:
    # the nanoGPT README's CPU recipe (shakespeare_char): 4 x 4 x 128, block 64, batch 12
    n_layer: int = knob(4, "transformer blocks", lo=1)
    n_head: int = knob(4, "attention heads", lo=1)
    n_embd: int = knob(128, "embedding width", lo=1)
    block_size: int = knob(64, "context length", lo=1)
    batch_size: int = knob(12, "sequences per step", lo=1)
    vocab_size: int = knob(65, "vocabulary size", lo=1)
    device: str = knob("cpu", "cpu | cuda | cuda:N | auto")
    dtype: str = knob("float32", "float32, bfloat16 or float16 (autocast)")
    compile: bool = knob(False, "torch.compile both models")
    iters: int = knob(10, "timed training steps per round", lo=1)
    rounds: int = knob(5, "alternating rounds of ours / baseline; the median round is reported", lo=1)
    warmup: int = knob(3, "untimed steps before the rounds", lo=0)
    threads: int = knob(0, "torch CPU threads (0: as many as torch picks)", lo=0)
    baseline: bool = knob(True, "also time the nanoGPT restatement (--no-baseline: only our model)")
    generate: bool = knob(False, "time greedy sampling, KV cache vs none, on a GPT-2 124M-shaped model "
                                 "(random weights)")
    max_new_tokens: int = knob(500, "tokens to generate in --generate mode", lo=1, hi=1_000_000)
    seed: int = knob(1337, "seed of weights and data", lo=0, hi=MAX_SEED)
    out_dir: str = knob(str(HERE / "out" / "bench"), "folder of train_step.json / generate.json")


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

    times, cpu_times = {name: [] for name in runners}, {name: [] for name in runners}
    for _ in range(cfg.rounds):
        for name, (step, _) in runners.items():
            hardware.synchronize(cfg.device)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(cfg.iters):
                step()
            hardware.synchronize(cfg.device)
            times[name].append((time.perf_counter() - t0) / cfg.iters)
            cpu_times[name].append((time.process_time() - c0) / cfg.iters)

    tokens = cfg.batch_size * cfg.block_size
    result = {"mode": "train", **{k: v for k, v in asdict(cfg).items() if k not in ("generate", "max_new_tokens", "out_dir")},
              "threads_used": torch.get_num_threads()}
    for name, ts in times.items():
        dt = statistics.median(ts)
        ours = runners[name][1] if name == "ours" else None
        mfu = hardware.mfu(ours.flops_per_token(), tokens / dt, cfg.device, ptdtype) if ours else None
        cpu = 1e3 * statistics.median(cpu_times[name])
        result[name] = {"ms_per_iter": 1e3 * dt, "ms_per_iter_min": 1e3 * min(ts), "tokens_per_s": tokens / dt,
                        "mfu": mfu, "cpu_ms_per_iter": cpu}
        print(f"{name:12s} {1e3 * dt:8.2f} ms/iter (best round {1e3 * min(ts):.2f}, CPU time {cpu:.2f})  "
              f"{tokens / dt:10,.0f} tokens/s  "
              f"MFU {'n/a (no datasheet peak for this device)' if mfu is None else f'{100 * mfu:.1f}%'}")
    if "nanogpt_ref" in times:
        ratio = statistics.median(times["nanogpt_ref"]) / statistics.median(times["ours"])
        result["speedup_vs_nanogpt_ref"] = ratio
        result["cpu_time_ratio_nanogpt_ref_over_ours"] = (statistics.median(cpu_times["nanogpt_ref"])
                                                          / statistics.median(cpu_times["ours"]))
        print(f"ours is {ratio:.2f}x the speed of the nanoGPT restatement (>1 = faster); in CPU time "
              f"{result['cpu_time_ratio_nanogpt_ref_over_ours']:.2f}x")
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
            t0, c0 = time.perf_counter(), time.process_time()
            outs[use_cache] = model.generate(prompt, cfg.max_new_tokens, temperature=0, use_cache=use_cache)
            hardware.synchronize(cfg.device)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            key = "kv_cache" if use_cache else "no_cache"
            result[key] = {"seconds": dt, "tokens_per_s": cfg.max_new_tokens / dt, "cpu_seconds": cpu}
            print(f"{key:9s} {cfg.max_new_tokens} tokens in {dt:7.2f} s (CPU time {cpu:.2f} s)  "
                  f"{cfg.max_new_tokens / dt:8.1f} tokens/s")
    result["speedup"] = result["no_cache"]["seconds"] / result["kv_cache"]["seconds"]
    result["cpu_time_speedup"] = result["no_cache"]["cpu_seconds"] / result["kv_cache"]["cpu_seconds"]
    if cfg.dtype != "float32":  # bf16/fp16 round the two paths differently: a near-tie may flip a token
        outs = {c: model.generate(prompt, cfg.max_new_tokens, temperature=0, use_cache=c) for c in (True, False)}
    result["same_tokens"] = bool(torch.equal(outs[True], outs[False]))  # float32: equal when the cache is right
    print(f"KV cache speedup {result['speedup']:.1f}x; identical greedy tokens (float32): {result['same_tokens']}")
    return result


def check_bench_config(cfg: BenchConfig) -> None:
    """The checks the knobs' ranges cannot state (a zero size would divide by zero or time empty batches:
    the knobs refuse it)."""
    if cfg.dtype not in hardware.DTYPES:
        raise UserError(f"--dtype {cfg.dtype!r}: one of {', '.join(hardware.DTYPES)}")
    if cfg.n_embd % cfg.n_head:
        raise UserError(f"--n-embd {cfg.n_embd} is not divisible by --n-head {cfg.n_head}")
    hardware.check_model_fits(cfg.n_layer, cfg.n_embd, cfg.block_size)


def provenance(script: str, argv: list[str] | None) -> dict:
    """How a results file was made: the command as typed (with OMP_NUM_THREADS when it is set), the date, the
    machine and torch's thread count."""
    env = [f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"] if "OMP_NUM_THREADS" in os.environ else []
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    return {"command": shlex.join([*env, "python", f"nanogpt/{script}", *args]),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), {platform.system()}",
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg()}


def main(argv=None):
    cfg = parse_config(BenchConfig, argv, "bench.py", __doc__.split("\n\n")[0])
    check_bench_config(cfg)
    cfg.device = hardware.resolve_device(cfg.device)
    hardware.resolve_dtype(cfg.dtype, cfg.device)  # refuses a dtype the device lacks
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    name = hardware.describe(cfg.device)
    print(f"device {cfg.device} ({name}), {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    result = bench_generate(cfg) if cfg.generate else bench_train(cfg)
    result["device_name"] = name
    path = write_json(Path(cfg.out_dir) / ("generate.json" if cfg.generate else "train_step.json"),
                      {**provenance("bench.py", argv), **result})
    print(f"wrote {path}")
    print(json.dumps(result))


if __name__ == "__main__":
    run_main(main)
