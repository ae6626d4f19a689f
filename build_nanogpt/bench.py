"""The build-nanogpt speed story, measured: replay each milestone on this device and time a training step.

    python build_nanogpt/bench.py                          # GPT-2 124M on a GPU (B=16, T=1024)
    python build_nanogpt/bench.py --device cpu --skip compile  # CPU: a small config; compile is slow to build

Milestones are cumulative, in the order of karpathy/build-nanogpt's commits: float32 -> TF32 matmuls ->
bf16 autocast -> torch.compile -> flash attention -> vocabulary 50,304 -> fused AdamW -> a larger
micro-batch (what flash attention's memory savings make room for). A milestone that does not apply on
this device (TF32 and fused AdamW are CUDA features) is reported as such, with the reason, and the
following ones build on the last one that ran. Prints a table (ms/step, tokens/s, MFU, speed-up over the
previous milestone and over float32) and writes bench.json (with the command as typed, the machine, the date and
the thread count) and bench.png, by default to build_nanogpt/out/bench. On a CPU, quote the CPU time per step
(`cpu_ms_per_step`: the median over the timed steps of this process's CPU time, one thread), which other jobs on
the machine disturb far less than the wall time.
"""
from __future__ import annotations

import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from cli import UserError, knob, parse_config, run_main, stop_on_sigterm  # noqa: E402
from files import OutDirLock, atomic_write, write_json  # noqa: E402
from hardware import device_name, machine, native_bf16, peak_flops, resolve_device, settings  # noqa: E402
from model import GPT, GPTConfig, flops_per_token  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# name, what changes, why it helps
MILESTONES = [
    ("float32", {}, "baseline: everything in float32, explicit softmax attention, vocabulary 50,257"),
    ("TF32", {"tf32": True},
     "float32 matmuls on tensor cores with a 10-bit mantissa: ~8x peak FLOP/s, same memory"),
    ("bf16 autocast", {"bf16": True},
     "matmuls/activations in bfloat16: 2x tensor-core peak over TF32, half the memory traffic"),
    ("torch.compile", {"compile": True},
     "fuses elementwise ops (GELU, LayerNorm, residual adds) into few kernels: fewer round trips to memory"),
    ("flash attention", {"flash": True},
     "attention in one kernel with online softmax: the (T, T) matrix never reaches memory"),
    ("vocab 50,304", {"vocab": 50304}, "50,304 = 128 * 393: matmul tiles divide evenly, no slow remainder kernels"),
    ("fused AdamW", {"fused": True}, "one kernel updates all parameters instead of a launch per tensor (and op)"),
    ("micro-batch x2", {"batch_mult": 2},
     "flash attention frees the memory for twice the micro-batch: bigger, more efficient matmuls"),
]
CUDA_ONLY = {"TF32": "TF32 is a CUDA tensor-core mode", "fused AdamW": "fused AdamW is a CUDA kernel"}
SIZES = {
    "124m": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024),
    "small": dict(n_layer=4, n_head=4, n_embd=128, block_size=128),
    "tiny": dict(n_layer=1, n_head=2, n_embd=32, block_size=32),  # smoke tests only
}


def milestone_key(name: str, change: dict) -> str:
    """The short name `--skip` takes: the setting the milestone changes (a full name may hold a comma)."""
    return next(iter(change), name.lower())


@dataclass
class BenchConfig:
    device: str = knob("auto", "auto | cpu | cuda | cuda:N")
    size: str = knob("auto", "124m | small | tiny | auto (124m on CUDA, small elsewhere)")
    batch_size: int = knob(-1, "sequences per step (-1: 16 for 124m, 4 for small, 2 for tiny)")
    iters: int = knob(10, "timed steps per milestone")
    warmup: int = knob(3, "untimed steps first (torch.compile builds here)")
    skip: str = knob("", "comma-separated milestones to leave out, by the setting they change: "
                         "tf32, bf16, compile, flash, vocab, fused, batch_mult")
    out_dir: str = knob(os.path.join(HERE, "out", "bench"), "bench.json and bench.png go here")


def time_milestone(settings: dict, size: dict, B: int, device: str, iters: int,
                   warmup: int) -> tuple[float, float, int]:
    """Wall seconds per training step (forward, backward, clip, AdamW) with these settings, the median CPU
    seconds of this process per step, and the parameter count."""
    device_type = device.split(":")[0]
    torch.manual_seed(0)
    torch.set_float32_matmul_precision("high" if settings["tf32"] else "highest")
    torch._dynamo.reset()  # every compiled milestone builds from scratch
    model = GPT(GPTConfig(vocab_size=settings["vocab"], flash=settings["flash"], **size)).to(device)
    opt = model.configure_optimizers(0.1, 6e-4, fused=settings["fused"])
    step_model = torch.compile(model) if settings["compile"] else model
    T = size["block_size"]
    data = torch.randint(0, 50257, (B, T + 1), device=device)
    x, y = data[:, :-1], data[:, 1:]

    def step():
        opt.zero_grad(set_to_none=True)
        if settings["bf16"]:
            with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
                _, loss = step_model(x, y)
        else:
            _, loss = step_model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(warmup):
        step()
    if device_type == "cuda":
        torch.cuda.synchronize(device)
    t0, cpu = time.perf_counter(), []
    for _ in range(iters):
        c0 = time.process_time()
        step()
        cpu.append(time.process_time() - c0)
    if device_type == "cuda":
        torch.cuda.synchronize(device)
    dt = (time.perf_counter() - t0) / iters
    return dt, statistics.median(cpu), model.num_params()


def check_config(cfg: BenchConfig) -> tuple[str, str, set[str]]:
    """Refuse settings that cannot run -> (device, size name, milestones to skip)."""
    device = resolve_device(cfg.device)
    cuda = device.startswith("cuda")
    size_name = cfg.size if cfg.size != "auto" else ("124m" if cuda else "small")
    if size_name not in SIZES:
        raise UserError(f"--size {cfg.size!r}: use one of {sorted(SIZES)} or auto")
    skip = {s.strip().lower() for s in cfg.skip.split(",") if s.strip()}
    keys = [milestone_key(n, change) for n, change, _ in MILESTONES]
    unknown = skip - set(keys) - {n.lower() for n, _, _ in MILESTONES}
    if unknown:
        raise UserError(f"--skip {sorted(unknown)}: unknown milestone; use {', '.join(keys[1:])}")
    if keys[0] in skip:  # "vs fp32" would silently be measured against another milestone
        raise UserError(f"--skip {keys[0]}: it is the baseline of every speed-up; skip any of {', '.join(keys[1:])}")
    if cfg.batch_size == 0 or not -1 <= cfg.batch_size <= 4096:
        raise UserError(f"--batch-size {cfg.batch_size}: use -1 (the size's default) or 1 .. 4096")
    if cfg.iters < 1 or cfg.warmup < 0:
        raise UserError(f"--iters {cfg.iters} must be >= 1 and --warmup {cfg.warmup} >= 0")
    return device, size_name, skip


def run_bench(cfg: BenchConfig) -> dict:
    device, size_name, skip = check_config(cfg)
    cuda = device.startswith("cuda")
    size = SIZES[size_name]
    B0 = cfg.batch_size if cfg.batch_size > 0 else {"124m": 16, "small": 4, "tiny": 2}[size_name]
    name = device_name(device)
    settings = dict(tf32=False, bf16=False, compile=False, flash=False, vocab=50257, fused=False, batch_mult=1)
    rows, prev, base = [], None, None
    for milestone, change, why in MILESTONES:
        row = {"milestone": milestone, "why": why}
        reason = CUDA_ONLY.get(milestone) if not cuda else None
        if milestone == "bf16 autocast" and not native_bf16(device):
            reason = f"{name} has no native bfloat16"
        if reason is None and {milestone_key(milestone, change), milestone.lower()} & skip:
            reason = "skipped with --skip"
        if reason:
            rows.append({**row, "applies": False, "reason": reason})
            print(f"{milestone:16s} n/a: {reason}")
            continue
        settings.update(change)
        B = B0 * settings["batch_mult"]
        dt, cpu, n_params = time_milestone(settings, size, B, device, cfg.iters, cfg.warmup)
        tok_s = B * size["block_size"] / dt
        precision = "bf16" if settings["bf16"] else ("tf32" if settings["tf32"] else "fp32")
        peak = peak_flops(name, precision)
        fpt = flops_per_token(GPTConfig(vocab_size=settings["vocab"], **size), n_params)
        mfu = fpt * tok_s / peak if peak else None
        base = base or tok_s
        row.update(applies=True, settings=dict(settings), micro_batch=B, ms_per_step=1000 * dt,
                   cpu_ms_per_step=1000 * cpu, tok_per_s=tok_s,
                   precision=precision, mfu=mfu, speedup_prev=tok_s / prev if prev else 1.0, speedup_fp32=tok_s / base)
        prev = tok_s
        rows.append(row)
        shown = f"{100 * mfu:.1f}%" if mfu else "n/a"
        print(f"{milestone:16s} {1000 * dt:9.1f} ms/step ({1000 * cpu:.1f} ms CPU) {tok_s:11,.0f} tok/s  MFU {shown}")
    return {"machine": machine(), "torch_threads": torch.get_num_threads(), "device": name, "size": size_name,
            "config": size, "micro_batch": B0, "iters": cfg.iters,
            "torch": torch.__version__, "milestones": rows}


def table(result: dict) -> str:
    lines = [f"device: {result['device']} | model: {result['size']} {result['config']} | "
             f"micro-batch {result['micro_batch']}",
             f"{'milestone':16s} {'ms/step':>9s} {'CPU ms':>9s} {'tokens/s':>11s} {'MFU':>6s} {'vs prev':>8s} "
             f"{'vs fp32':>8s}"]
    for r in result["milestones"]:
        if not r["applies"]:
            lines.append(f"{r['milestone']:16s} {'n/a':>9s}   ({r['reason']})")
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] else "n/a"
        lines.append(f"{r['milestone']:16s} {r['ms_per_step']:9.1f} {r['cpu_ms_per_step']:9.1f} "
                     f"{r['tok_per_s']:11,.0f} {mfu:>6s} "
                     f"{r['speedup_prev']:7.2f}x {r['speedup_fp32']:7.2f}x")
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    rows = result["milestones"]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    xs = range(len(rows))
    ax.bar(xs, [r.get("tok_per_s", 0) for r in rows], color=["C0" if r["applies"] else "lightgray" for r in rows])
    for i, r in enumerate(rows):
        if r["applies"]:
            label = f"{r['speedup_fp32']:.2f}x"
        else:
            label = "skipped" if "--skip" in r["reason"] else "CUDA only"
        ax.text(i, r.get("tok_per_s", 0), label, ha="center", va="bottom", fontsize=9)
    ax.set_xticks(list(xs), [r["milestone"] for r in rows], rotation=20)
    ax.set(xlabel="milestone (each adds to the ones before; bar label: speed-up over float32)",
           ylabel="training tokens / s",
           title=f"build-nanogpt milestones on {result['device']} ({result['size']}, "
                 f"micro-batch {result['micro_batch']})")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Run the milestones; the table goes to stdout, the results to OUT_DIR/bench.json and bench.png."""
    cfg = parse_config(BenchConfig, argv, "bench.py", "\n\n".join(__doc__.split("\n\n")[:2]))
    check_config(cfg)  # before anything is written
    typed = sys.argv[1:] if argv is None else argv
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with OutDirLock(cfg.out_dir):  # one run per --out-dir, taken before the minutes of timing
        result = {"command": " ".join(["python build_nanogpt/bench.py", *map(shlex.quote, typed)]),
                  "started": started, **run_bench(cfg)}
        result["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        result["bench_config"] = settings(cfg)
        print(table(result))
        write_json(os.path.join(cfg.out_dir, "bench.json"), result)
        plot(result, os.path.join(cfg.out_dir, "bench.png"))
    print(f"wrote {cfg.out_dir}/bench.json and bench.png")


if __name__ == "__main__":
    stop_on_sigterm()  # SIGTERM as Ctrl-C: temp files removed, one line
    run_main(main)
