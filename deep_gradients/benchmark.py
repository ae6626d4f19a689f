"""Measure training throughput of train.py on what this machine has: 1 CPU, N CPU processes, 1 GPU, all GPUs.

    python deep_gradients/benchmark.py --quick      # CPU: small subset, a few hundred steps in all
    python deep_gradients/benchmark.py              # full MNIST epochs; GPU rows where CUDA exists
    python deep_gradients/benchmark.py --rows gpu   # only the GPU rows (and the time to 99.5%)

Every row is a real `python train.py ...` (or `torchrun ... train.py ...`) subprocess with evaluation off;
its figure is the FASTEST epoch after the first (the first pays for warm-up, cuDNN autotuning and compilation;
taking the fastest of the rest filters out interference from other work on a shared machine).
Writes benchmark.md (table), benchmark.png (bar chart) and benchmark.json (all rows, skipped ones with why).
The time-to-99.5% row compiles and autotunes in train.py's untimed --warmup-steps; that time is reported apart.

Scaling across processes is weak scaling, as with DDP in practice: each process keeps the same per-process
batch, so N processes run a global batch N times larger. The N-threads row is strong scaling instead: one
process, the same batch as the baseline, split over N threads. With T = throughput in images/s,
    scaling efficiency = T_N / (N * T_1)     (1.0 = perfect; T_1 is the same network on one worker)
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import torch
from tqdm import tqdm

import hardware
import mnist
from cli import UserError, check_ranges, knob, parse_config, run_main
from curves import save_figure
from files import OutDirLock, write_json, write_text
from model import DEPTHS

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
TRAIN = HERE / "train.py"
OUT = HERE / "out" / "benchmark"  # the default --out-dir: never the committed results, never the working directory


@dataclass
class BenchConfig:
    quick: bool = knob(False, "CPU smoke-sized: the first --quick-subset training images per worker, no "
                              "time-to-99.5% row")
    quick_subset: int = knob(1024, "training images per worker with --quick", lo=1, hi=1 << 31)
    dataset: str = knob("auto", "auto = mnist when --data-dir holds it, else the offline digits")
    data_dir: str = knob("", "MNIST IDX folder (empty = deep_gradients/data/mnist)")
    max_epochs: int = knob(3, "epochs per row; the fastest epoch after the first is the one reported", lo=1,
                           hi=100_000)
    batch_size: int = knob(128, "per worker (N processes run a global batch N x this)", lo=1, hi=1 << 16)
    small: str = knob("8x16", "depth x width of the small network")
    big: str = knob("", "depth x width of the big one; empty = 20x16 (train.py's default) with --quick, else 56x32")
    num_proc: int = knob(0, "CPU processes / threads for the multi-worker rows (0 = all cores)", lo=0, hi=4096)
    rows: str = knob("all", "all | cpu | gpu: which rows to run (gpu rows need CUDA)")
    timeout: int = knob(1800, "seconds per row; a row that runs longer is listed as skipped", lo=1, hi=7 * 86400)
    out_dir: str = knob("", "where benchmark.md, benchmark.png and benchmark.json go; empty = "
                            "deep_gradients/out/benchmark (beside this script, from any working directory)")
    runs_dir: str = knob("", "one train.py output folder per row; empty = OUT_DIR/runs")


def check_bench_config(cfg: BenchConfig) -> BenchConfig:
    """Checked before the first row: a bad value would otherwise fail every row, one by one."""
    if cfg.dataset not in ("auto", "digits", "mnist"):
        raise UserError(f"--dataset {cfg.dataset!r} is not allowed; one of auto, digits, mnist")
    if cfg.rows not in ("all", "cpu", "gpu"):
        raise UserError(f"--rows {cfg.rows!r} is not allowed; one of all, cpu, gpu")
    check_ranges(cfg)  # the knobs' ranges (parse_config checked them; a BenchConfig built in code was not)
    cfg.big = cfg.big or ("20x16" if cfg.quick else "56x32")
    for key in ("small", "big"):
        try:
            d, w = map(int, getattr(cfg, key).split("x"))
        except ValueError:
            raise UserError(f"--{key} {getattr(cfg, key)!r} must look like DEPTHxWIDTH, e.g. 20x16") from None
        if d not in DEPTHS or not 1 <= w <= 1024:
            raise UserError(f"--{key} {getattr(cfg, key)!r}: depth must be one of {', '.join(map(str, DEPTHS))}, "
                            "width in [1, 1024]")
    return cfg


def folders(cfg: BenchConfig) -> tuple[Path, Path]:
    """-> (the report's folder, the rows' train.py output folders)."""
    out = Path(cfg.out_dir) if cfg.out_dir else OUT
    return out, Path(cfg.runs_dir) if cfg.runs_dir else out / "runs"


def parse_args(argv=None) -> BenchConfig:
    return check_bench_config(parse_config(BenchConfig, argv, "benchmark.py", __doc__.split("\n")[0]))


def net_args(spec: str) -> list[str]:
    d, w = spec.split("x")
    return ["--depth", d, "--width", w]


def mnist_available(data_dir: str) -> bool:
    """Whether all 4 MNIST files are where train.py will look for them (--dataset auto)."""
    d = Path(data_dir) if data_dir else mnist.DEFAULT_DATA_DIR
    return all((d / name).exists() for name, _ in mnist.MNIST_FILES.values())


def plan(cfg: BenchConfig, n_gpus: int, cores: int, bf16: bool = True) -> list[dict]:
    """The rows: {group, name, net, workers, flags, launcher} or {..., skip: reason}. `bf16`: the GPUs have
    native bfloat16 (else their rows use float16 where bfloat16 would be)."""
    rows = []
    n = cfg.num_proc or cores

    def row(group, name, net, flags=(), workers=1, launcher="python", threads=1, baseline=False, **extra):
        rows.append(dict(group=group, name=name, net=net, flags=list(flags), workers=workers, launcher=launcher,
                         threads=threads, baseline=baseline, **extra))

    for net in (cfg.small, cfg.big):
        if cfg.rows != "gpu":
            cpu_rows(row, rows, net, n)
        g = "gpu"
        if cfg.rows == "cpu":
            rows.append(dict(group=g, name="GPU rows", net=net, skip="--rows cpu"))
            continue
        if n_gpus == 0:
            rows.append(dict(group=g, name="1 GPU and all GPUs, each CUDA optimisation", net=net,
                             skip="no CUDA device on this machine"))
            continue
        gpu_rows(row, rows, net, n_gpus, "bfloat16" if bf16 else "float16")
    if cfg.rows != "cpu" and n_gpus and not cfg.quick:  # the headline: wall-clock training time to 99.5% on one GPU
        row("gpu", "time to 99.5% test accuracy (default net, all optimisations)", "20x16",
            ["--device", "cuda", "--dtype", "bfloat16" if bf16 else "float16", "--channels-last",
             "--cudnn-benchmark", "--compile", "--warmup-steps", "30"], eval=True, epochs=6)
    return rows


def cpu_rows(row, rows: list, net: str, n: int) -> None:
    g = "cpu"
    row(g, "1 process, 1 thread, fp32 (baseline)", net, ["--device", "cpu"], baseline=True)
    row(g, "+ channels_last", net, ["--device", "cpu", "--channels-last"])
    row(g, "+ bf16 autocast", net, ["--device", "cpu", "--dtype", "bfloat16"])
    row(g, "+ channels_last + bf16", net, ["--device", "cpu", "--channels-last", "--dtype", "bfloat16"])
    if n > 1:
        row(g, f"1 process, {n} threads", net, ["--device", "cpu"], threads=n, scale=n)
        row(g, f"{n} processes (DDP, gloo), 1 thread each", net, ["--device", "cpu"], workers=n,
            launcher="torchrun", scale=n)
    else:
        rows.append(dict(group=g, name="N processes (DDP, gloo)", net=net, skip="only 1 CPU core"))


def gpu_rows(row, rows: list, net: str, n_gpus: int, half: str) -> None:
    g, cuda = "gpu", ["--device", "cuda"]
    best = ["--dtype", half, "--channels-last", "--cudnn-benchmark"]
    row(g, "1 GPU, fp32/TF32, data on GPU (baseline)", net, cuda, baseline=True)
    row(g, "- data on GPU (host copy per batch)", net, cuda + ["--no-data-on-device"])
    if half == "bfloat16":
        row(g, "+ bf16 autocast", net, cuda + ["--dtype", "bfloat16"])
    else:
        rows.append(dict(group=g, name="+ bf16 autocast", net=net, skip="no native bfloat16 on this GPU"))
    row(g, "+ fp16 autocast + GradScaler", net, cuda + ["--dtype", "float16"])
    row(g, "+ channels_last", net, cuda + ["--channels-last"])
    row(g, "+ cudnn.benchmark", net, cuda + ["--cudnn-benchmark"])
    row(g, f"+ {half[0]}{half[-2:]} + channels_last + cudnn.benchmark", net, cuda + best)
    row(g, "+ all + torch.compile", net, cuda + best + ["--compile"])
    row(g, "+ all + compile reduce-overhead (CUDA graphs)", net, cuda + best + ["--compile", "--compile-mode",
                                                                                 "reduce-overhead"])
    if n_gpus > 1:
        row(g, f"{n_gpus} GPUs (DDP, nccl), all optimisations", net, cuda + best, workers=n_gpus,
            launcher="torchrun", scale=n_gpus, ref=f"+ {half[0]}{half[-2:]} + channels_last + cudnn.benchmark")
    else:
        rows.append(dict(group=g, name="all GPUs (DDP, nccl)", net=net, skip="only 1 GPU"))


def run_row(r: dict, cfg: BenchConfig, dataset: str, run_dir: Path) -> dict:
    epochs = r.get("epochs", cfg.max_epochs)
    args = [*net_args(r["net"]), *r["flags"], "--dataset", dataset, "--max-epochs", str(epochs),
            "--batch-size", str(cfg.batch_size * r["workers"]), "--threads", str(r["threads"]),
            "--out-dir", str(run_dir), "--no-progress", "--log-interval", "0", "--record-interval", "0"]
    if not r.get("eval"):
        args.append("--no-eval")
    if cfg.data_dir:
        args += ["--data-dir", cfg.data_dir]
    if cfg.quick:
        args += ["--train-subset", str(cfg.quick_subset * r["workers"])]
    if r["launcher"] == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={r['workers']}",
               str(TRAIN), *args]
    else:
        cmd = [sys.executable, str(TRAIN), *args]
    env = dict(os.environ, OMP_NUM_THREADS=str(r["threads"]), PYTHONUNBUFFERED="1")
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=cfg.timeout)
    except subprocess.TimeoutExpired:  # one slow row must not lose the rows measured before it
        return {**r, "skip": f"timed out after {cfg.timeout} s (--timeout)", "cmd": shown(cmd)}
    wall = time.time() - t0
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1]
        return {**r, "skip": f"failed (exit {p.returncode}): {tail}", "cmd": shown(cmd)}
    res = json.loads((run_dir / "results.json").read_text())
    timed = res["epochs"][1:] or res["epochs"]
    fastest = max(timed, key=lambda e: e["images_per_s"])
    out = {**r, "cmd": shown(cmd), "wall_s": wall, "images_per_s": fastest["images_per_s"],
           "epoch_time_s": fastest["epoch_time_s"], "peak_mem_mb": fastest.get("peak_mem_mb"),
           "gpu_util": fastest.get("gpu_util"), "mfu": fastest.get("mfu"), "steps_per_epoch": res["steps_per_epoch"],
           "gpu_util_problem": res.get("gpu_util_problem"), "warmup_s": res.get("warmup_s", 0.0)}
    if r.get("eval"):  # train.py's own figure: training time only (no evaluation, warm-up or recorder)
        out["time_to_995_s"] = res["time_to_target_s"] if res["target_acc"] == 0.995 else None
        out["final_test_acc"] = res["final_test_acc"]
    return out


def shown(cmd: list[str]) -> str:
    """A row's command as typed from the repository root: `python`, paths inside the repository relative."""
    def arg(a: str) -> str:
        if a == sys.executable:
            return "python"
        return str(Path(a).relative_to(HERE.parent)) if Path(a).is_absolute() and Path(a).is_relative_to(HERE.parent) \
            else a
    return shlex.join(arg(str(a)) for a in cmd)


def derive(rows: list[dict]) -> None:
    """Speed-up over the group's baseline for the same network; scaling efficiency T_N / (N * T_1)."""
    for r in rows:
        if "images_per_s" not in r:
            continue
        base = next((b for b in rows if b.get("baseline") and b["group"] == r["group"] and b["net"] == r["net"]
                     and "images_per_s" in b), None)
        if base:
            r["speedup"] = r["images_per_s"] / base["images_per_s"]
        if r.get("scale"):
            ref = base
            if r.get("ref"):
                ref = next((b for b in rows if b["name"] == r["ref"] and b["net"] == r["net"] and "images_per_s" in b),
                           base)
            if ref:
                r["scaling_eff"] = r["images_per_s"] / (r["scale"] * ref["images_per_s"])


def fmt(v, spec):
    return "" if v is None else format(v, spec)


def write_report(rows: list[dict], cfg: BenchConfig, dataset: str, header: dict) -> None:
    out = folders(cfg)[0] / "benchmark"
    lines = [
        "# deep_gradients benchmark", "",
        f"- machine: {header['machine']}",
        f"- load average (1 min) at start / end: {header['load_start']:.1f} / {header['load_end']:.1f}",
        f"- date: {header['date']}; data: {dataset}"
        + (f" (first {cfg.quick_subset} images per worker, --quick)" if cfg.quick else "")
        + f"; {cfg.max_epochs} epochs per row, the fastest after the first reported; per-worker batch {cfg.batch_size}",
        "- images/s = training images per second over the measured epoch (no evaluation); speed-up = over the"
        " baseline row of the same group and network",
        "- scaling efficiency = T_N / (N * T_1), T = images/s, N = workers; processes: weak scaling (per-process"
        " batch fixed), threads: strong scaling (one process's batch split over the threads); 1.00 = perfect", "",
        "| device | network (depth x width) | run | images/s | epoch time (s) | speed-up | scaling eff. | GPU util % | MFU % | peak mem (MiB) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "skip" in r:
            lines.append(f"| {r['group']} | {r['net']} | {r['name']} | skipped: {r['skip']} | | | | | | |")
            continue
        lines.append(
            f"| {r['group']} | {r['net']} | {r['name']} | {r['images_per_s']:.0f} | {r['epoch_time_s']:.2f} | "
            f"{fmt(r.get('speedup'), '.2f')} | {fmt(r.get('scaling_eff'), '.2f')} | {fmt(r.get('gpu_util'), '.0f')} | "
            f"{fmt(None if r.get('mfu') is None else 100 * r['mfu'], '.1f')} | {fmt(r.get('peak_mem_mb'), '.0f')} |")
    for r in rows:
        if "time_to_995_s" in r:
            t = r["time_to_995_s"]
            lines += ["", f"Time to 99.5% test accuracy on one GPU: "
                          f"{'not reached' if t is None else f'{t:.1f} s of training'} "
                          f"(final {100 * r['final_test_acc']:.2f}%), not counting {r['warmup_s']:.1f} s of "
                          "compilation and cuDNN autotuning in untimed warm-up steps before epoch 1."]
    problems = sorted({r["gpu_util_problem"] for r in rows if r.get("gpu_util_problem")})
    lines += [f"- GPU util % not measured: {p}" for p in problems]
    lines += ["", "Commands: every row's exact command line is in benchmark.json (`cmd`)."]
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    config = hardware.settings_from_repo(dataclasses.asdict(cfg))  # paths from the repository's root, as in the rows
    write_json(out.with_suffix(".json"), {"header": header, "config": config, "rows": rows})
    plot(rows, out.with_suffix(".png"), header)


def plot(rows, path: Path, header: dict) -> None:
    done = [r for r in rows if "images_per_s" in r]
    if not done:
        return
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(done) + 1.5))
    colors = {"cpu": "tab:blue", "gpu": "tab:green"}
    labels = [f"{r['group']} {r['net']}: {r['name']}" for r in done]
    ax.barh(range(len(done)), [r["images_per_s"] for r in done], color=[colors[r["group"]] for r in done])
    ax.set_yticks(range(len(done)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("training images / s (log scale)")
    ax.set_title(f"ResNet training throughput on 28x28 images (fastest epoch after the first)\n{header['machine']}",
                 fontsize=8)  # the whole machine line: a cut one read as "Python 3"
    for i, r in enumerate(done):
        ax.text(r["images_per_s"], i, f" {r['images_per_s']:.0f}", va="center", fontsize=7)
    save_figure(fig, path, dpi=120)


def main(argv=None) -> int:
    cfg = parse_args(argv)
    with OutDirLock(folders(cfg)[1]):  # one benchmark at a time: rows would disturb each other's timing
        measure(cfg)
    return 0


def measure(cfg: BenchConfig) -> list[dict]:
    dataset = cfg.dataset if cfg.dataset != "auto" else ("mnist" if mnist_available(cfg.data_dir) else "digits")
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    rows = plan(cfg, n_gpus, os.cpu_count() or 1, n_gpus > 0 and hardware.native_bf16(torch.device("cuda", 0)))
    header = {"command": shown([sys.executable, *sys.argv]), "machine": hardware.machine_line(),
              "load_start": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    todo = [r for r in rows if "skip" not in r]
    print(f"{len(todo)} runs ({len(rows) - len(todo)} skipped) on {dataset}: {header['machine']}", flush=True)
    rows_so_far = report(rows, cfg, dataset, header)  # a report even if every row is skipped or none finishes
    for i, r in enumerate(tqdm(rows, desc="benchmark")):
        if "skip" in r:
            continue
        run_dir = folders(cfg)[1] / f"{i:02d}"
        rows[i] = run_row(r, cfg, dataset, run_dir)
        got = rows[i].get("images_per_s")
        tqdm.write(f"{r['group']} {r['net']} {r['name']}: " + (f"{got:.0f} img/s" if got else rows[i]["skip"]))
        rows_so_far = report(rows, cfg, dataset, header)  # after every row: a benchmark cut short keeps its rows
    print((folders(cfg)[0] / "benchmark.md").read_text())
    return rows_so_far


def report(rows: list[dict], cfg: BenchConfig, dataset: str, header: dict) -> list[dict]:
    """benchmark.md, .json and .png of the rows measured so far (the others listed as not run) -> those rows."""
    rows = [r if "images_per_s" in r or "skip" in r else {**r, "skip": "not run: the benchmark stopped before it"}
            for r in rows]
    derive(rows)
    header["load_end"] = os.getloadavg()[0]
    write_report(rows, cfg, dataset, header)
    return rows


if __name__ == "__main__":
    run_main(main)
