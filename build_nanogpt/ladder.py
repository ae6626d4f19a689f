"""The speedrun ladder: the NanoGPT speedrun's records as cumulative rungs of one trainer, each measured.

    python build_nanogpt/ladder.py --preset cpu --data-dir build_nanogpt/data/shakespeare     # the committed one
    python build_nanogpt/ladder.py --preset gpt2-124m --data-dir build_nanogpt/data/edu_fineweb10B  # 1 GPU each

Rung k runs train.py with the switches of rungs 1..k on (RUNGS below: what each adds, and the record of
KellerJordan/modded-nanogpt that introduced it), at the same token budget on the same data, for every seed.
Each run is a train.py process in RUNS_DIR/<k>-<rung>-s<seed>/; its log.jsonl gives the val loss against
tokens and the CPU time of its training steps. After every finished run ladder.json is rewritten with:
per run, the val-loss curve, the final val loss, the tokens (and training seconds) it needs to reach the
target (the baseline's mean final val loss, or --target-loss), and the CPU seconds per token; per rung, their
mean and seed spread. ladder.md (a table, also rewritten after every run) and, at the end, ladder.png (val
loss against tokens per rung; final val loss per rung with its seed spread) come from the same summary.

Stop it at any time (Ctrl-C, SIGTERM, a crash): rerun the same command and it goes on at its first unfinished
run (train.py --resume where that run left a checkpoint). Runs go seed by seed, every rung of seed 0 first, so
a ladder cut short still compares every rung.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cli import UserError, knob, parse_config, run_main, stop_on_sigterm
from files import OutDirLock, atomic_write, write_json, write_text
from hardware import machine, settings

HERE = os.path.dirname(os.path.abspath(__file__))

# (name, speedrun record that introduced it, what it adds). The flags each rung adds are in `rung_flags`.
RUNGS = [
    ("gpt2", "llm.c baseline (45 min)", "GPT-2: learned positions, LayerNorm, GELU, tied head, AdamW, cosine"),
    ("rotary+lr", "31.4 min", "rotary embeddings, RMSNorm, no biases, 3x learning rate, trapezoidal (WSD) schedule"),
    ("muon", "24.9 / 22.3 min", "Muon on the hidden matrices (AdamW on embeddings, head, scalars)"),
    ("relu2+qknorm+zero", "15.2 min", "ReLU^2 MLP, QK-norm, zero-initialised output projections"),
    ("untied", "10.8 min", "a head of its own instead of the token embedding"),
    ("skips+softcap", "8.2 min", "embedding skip into every block, logit soft-cap 30, Muon momentum warm-up"),
    ("unet", "7.2 min", "U-net skips from the first half of the blocks to the second"),
    ("window", "5.0 / 4.7 min", "sliding-window attention whose window warms up from T/8 to T"),
    ("value-embeds", "4.4 / 3.95 min", "value embeddings in the first and last blocks (U-net pattern)"),
    ("softcap15+floor", "3.4 / 3.1 min", "soft-cap 15, lr decay to a floor of 0.1 instead of 0"),
]


def rung_flags(k: int, cfg: "LadderConfig") -> list[str]:
    """train.py flags of rung k: those of rungs 1..k (each rung keeps what the rungs below it turned on)."""
    lr3 = f"{3 * cfg.learning_rate:g}"
    steps = [
        [],
        ["--arch", "modern", "--rotary", "--rmsnorm", "--no-bias", "--learning-rate", lr3, "--schedule", "wsd",
         "--min-lr-ratio", "0"],
        ["--optimizer", "muon", "--muon-lr", f"{cfg.muon_lr:g}"],
        ["--relu2", "--qk-norm", "--zero-init"],
        ["--untied"],
        ["--embed-skip", "--softcap", "30", "--momentum-warmup-iters", str(max(1, cfg.max_iters // 10))],
        ["--unet"],
        ["--window", str(cfg.block_size), "--window-start", str(max(1, cfg.block_size // 8))],
        ["--value-embeds", "1"],
        ["--softcap", "15", "--min-lr-ratio", "0.1"],
    ]
    return [flag for step in steps[:k + 1] for flag in step]  # a later value of a flag overrides an earlier one


@dataclass
class LadderConfig:
    data_dir: str = knob(os.path.join(HERE, "data", "shakespeare"), "the token shards every run trains and "
                                                                   "validates on")
    out_dir: str = knob(os.path.join(HERE, "out", "ladder"), "ladder.json, ladder.md, ladder.png go here; "
                        "with --preset gpt2-124m the default is build_nanogpt/out/ladder-gpt2-124m")
    runs_dir: str = knob("", "each run's train.py output folder goes here (empty: OUT_DIR/runs)")
    keep_ckpt: bool = knob(False, "keep each finished run's ckpt.pt (else removed once its log is read)")
    seeds: int = knob(3, "seeds per rung (0 .. N-1)", lo=1, hi=1000)
    rungs: int = knob(len(RUNGS), f"run rungs 0 .. N-1 of the {len(RUNGS)}", lo=1, hi=len(RUNGS))
    only: str = knob("", "run just these rungs, e.g. 0,9 (the baseline against the top rung); empty: --rungs")
    jobs: int = knob(1, "runs at a time (each a train.py process)", lo=1, hi=256)
    n_layer: int = knob(4, "transformer blocks")
    n_head: int = knob(2, "attention heads")
    n_embd: int = knob(64, "embedding width")
    block_size: int = knob(128, "sequence length T")
    batch_size: int = knob(4, "sequences per micro-batch")
    total_batch: int = knob(512, "tokens per iter")
    max_iters: int = knob(100, "iters per run: the token budget is max_iters * total_batch", lo=1)
    warmup_iters: int = knob(10, "lr warm-up iters")
    learning_rate: float = knob(1.5e-3, "the baseline's AdamW peak lr (rung 1 on: 3x, as the 31.4-minute record)")
    muon_lr: float = knob(0.02, "Muon's peak lr (rung 2 on)")
    eval_interval: int = knob(10, "val loss every N iters: the points of the curves", lo=1)
    eval_iters: int = knob(4, "val batches per evaluation (the same ones every time)")
    ckpt_interval: int = knob(25, "a checkpoint every N iters: where a killed run resumes")
    target_loss: float = knob(0.0, "the val loss whose tokens-to-reach is reported (0: the baseline's final)",
                              lo=0)
    extra: str = knob("--device cpu --dtype float32 --no-compile",
                      "more train.py flags for every run (e.g. --device cuda --dtype bfloat16 --compile)")


PRESETS = {
    "cpu": {},  # the defaults: 4 blocks x 64 wide, T=128, 100 iters of 512 tokens (51,200 tokens a run)
    "gpt2-124m": dict(  # the real ladder: GPT-2 124M's shape on FineWeb-Edu, one GPU per run
        data_dir=os.path.join(HERE, "data", "edu_fineweb10B"), out_dir=os.path.join(HERE, "out", "ladder-gpt2-124m"),
        n_layer=12,
        n_head=12, n_embd=768, block_size=1024, batch_size=64, total_batch=524_288, max_iters=5000,
        warmup_iters=250, learning_rate=6e-4, muon_lr=0.02, eval_interval=125, eval_iters=20,
        ckpt_interval=500, target_loss=3.28, extra="--device cuda --dtype bfloat16 --compile"),
}


def train_command(cfg: LadderConfig, k: int, seed: int, out: str, resume: bool) -> list[str]:
    base = ["--n-layer", cfg.n_layer, "--n-head", cfg.n_head, "--n-embd", cfg.n_embd, "--block-size", cfg.block_size,
            "--batch-size", cfg.batch_size, "--total-batch", cfg.total_batch, "--max-iters", cfg.max_iters,
            "--warmup-iters", cfg.warmup_iters, "--learning-rate", f"{cfg.learning_rate:g}", "--eval-interval",
            cfg.eval_interval, "--eval-iters", cfg.eval_iters, "--ckpt-interval", cfg.ckpt_interval,
            "--hellaswag-limit", "0", "--num-samples", "0", "--seed", seed, "--data-dir", cfg.data_dir,
            "--out-dir", out]
    cmd = [sys.executable, os.path.join(HERE, "train.py"), *map(str, base), *shlex.split(cfg.extra),
           *rung_flags(k, cfg)]
    return cmd + (["--resume"] if resume else [])


# --------------------------------------------------------------------------------------------------
# one run: start or resume it, then read what it measured from its log


def read_log(out: str) -> list[dict]:
    path = os.path.join(out, "log.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def finished(out: str, max_iters: int) -> bool:
    return any(r["kind"] == "val" and r["iter"] == max_iters for r in read_log(out))


def run_dir(cfg: LadderConfig, k: int, seed: int) -> str:
    return os.path.join(cfg.runs_dir or os.path.join(cfg.out_dir, "runs"), f"{k}-{RUNGS[k][0]}-s{seed}")


def run_one(cfg: LadderConfig, k: int, seed: int) -> None:
    """train.py for rung k and `seed`, resumed where a checkpoint is; its output in runs/<rung>-s<seed>/."""
    out = run_dir(cfg, k, seed)
    if finished(out, cfg.max_iters):
        return
    resume = os.path.exists(os.path.join(out, "ckpt.pt"))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "stdout.txt"), "a") as log:
        proc = subprocess.Popen(train_command(cfg, k, seed, out, resume), stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                start_new_session=True)  # a terminal's Ctrl-C reaches the ladder only: one signal each
        RUNNING.add(proc)
        try:
            code = proc.wait()
        finally:
            RUNNING.discard(proc)
    if code != 0 or not finished(out, cfg.max_iters):
        raise UserError(f"rung {k} seed {seed} stopped (exit {code}); see {out}/stdout.txt; rerun to resume")
    if not cfg.keep_ckpt:
        os.remove(os.path.join(out, "ckpt.pt"))  # tens of MB a run; the log holds what the ladder reads


RUNNING: set[subprocess.Popen] = set()  # the train.py processes now running


def stop_running() -> None:
    """SIGTERM to every running train.py (each writes a checkpoint at the end of its iter), then wait."""
    for proc in list(RUNNING):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in list(RUNNING):
        proc.wait()


def crossing(curve: list[tuple[float, float]], target: float) -> float | None:
    """The first x at which the piecewise-linear curve of (x, loss) comes down to `target`; None if never."""
    for (x0, y0), (x1, y1) in zip(curve, curve[1:]):
        if y1 <= target:
            return x0 + (x1 - x0) * (y0 - target) / (y0 - y1) if y0 > target else x0
    return curve[0][0] if curve and curve[0][1] <= target else None


def measure(out: str, total_batch: int) -> dict:
    """From a finished run's log: the val curve in tokens, its end, the training seconds to each point, the
    median CPU seconds per token of its training steps, and when it ended (the log's last write)."""
    log = read_log(out)
    train = [r for r in log if r["kind"] == "train"]
    wall = [0.0]
    for r in train:
        wall.append(wall[-1] + r["dt_ms"] / 1000)
    val = [r for r in log if r["kind"] == "val"]
    cpu = [r["cpu_ms"] / 1000 / total_batch for r in train if "cpu_ms" in r]
    return {"curve": [[r["iter"] * total_batch, r["val_loss"]] for r in val],
            "train_seconds": [wall[r["iter"]] for r in val], "final_val_loss": val[-1]["val_loss"],
            "cpu_s_per_token": statistics.median(cpu) if cpu else None,
            "ended": os.path.getmtime(os.path.join(out, "log.jsonl"))}


# --------------------------------------------------------------------------------------------------
# the summary: ladder.json, ladder.md, ladder.png


def spread(xs: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None where there are too few values)."""
    if not xs:
        return None, None
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None


def summarise(cfg: LadderConfig, runs: dict, command: str, started: str) -> dict:
    """ladder.json's content from the finished runs {(k, seed): measure(...)}."""
    base = [runs[(0, s)]["final_val_loss"] for s in range(cfg.seeds) if (0, s) in runs]
    target = cfg.target_loss or (statistics.fmean(base) if base else None)
    rungs = []
    for k in selected(cfg):
        mine = [dict(seed=s, **runs[(k, s)]) for s in range(cfg.seeds) if (k, s) in runs]
        for r in mine:
            r["tokens_to_target"] = crossing(r["curve"], target) if target else None
            seconds = [[t, y] for t, (_, y) in zip(r["train_seconds"], r["curve"])]
            r["train_seconds_to_target"] = crossing(seconds, target) if target else None
        finals = [r["final_val_loss"] for r in mine]
        reached = [r["tokens_to_target"] for r in mine if r["tokens_to_target"] is not None]
        cpu = [r["cpu_s_per_token"] for r in mine if r["cpu_s_per_token"]]
        mean, std = spread(finals)
        tok_mean, tok_std = spread(reached)
        rungs.append({"rung": k, "name": RUNGS[k][0], "record": RUNGS[k][1], "adds": RUNGS[k][2],
                      "flags": rung_flags(k, cfg), "seeds_done": len(mine), "final_val_loss_mean": mean,
                      "final_val_loss_std": std, "tokens_to_target_mean": tok_mean, "tokens_to_target_std": tok_std,
                      "seeds_reaching_target": len(reached),
                      "cpu_us_per_token": 1e6 * statistics.fmean(cpu) if cpu else None, "runs": mine})
    compare(rungs)
    ended = max((r["ended"] for r in runs.values()), default=time.time())
    return {"command": command, "machine": machine(), "started": started,
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ended)), "settings": settings(cfg),
            "tokens_per_run": cfg.max_iters * cfg.total_batch, "target_val_loss": target,
            "target_is": "--target-loss" if cfg.target_loss else "the baseline's mean final val loss",
            "rungs": rungs}


def compare(rungs: list[dict]) -> None:
    """Add to each rung its final val loss against the rung below and against the baseline (the first rung):
    the difference of the means, its standard error sqrt(s1^2/n1 + s2^2/n2), and a verdict: "helps" or
    "hurts" beyond two standard errors, else "within noise"; against the baseline, the gap in units of the
    larger of the two seed standard deviations."""
    for below, r in zip([None] + rungs[:-1], rungs):
        for key, other in (("vs_previous", below), ("vs_baseline", rungs[0] if r is not rungs[0] else None)):
            ok = other is not None and r["final_val_loss_std"] is not None and other["final_val_loss_std"] is not None
            diff = r["final_val_loss_mean"] - other["final_val_loss_mean"] if ok else None
            se = math.sqrt(r["final_val_loss_std"] ** 2 / r["seeds_done"]
                           + other["final_val_loss_std"] ** 2 / other["seeds_done"]) if ok else None
            r[key] = diff
            r[key + "_se"] = se
            if key == "vs_previous":
                r["verdict"] = None if diff is None else ("helps" if diff < -2 * se else "hurts" if diff > 2 * se
                                                          else "within noise")
            else:
                r["vs_baseline_in_seed_std"] = (diff / max(r["final_val_loss_std"], other["final_val_loss_std"])
                                                if ok else None)


def fmt(x, spec: str, none: str = "n/a") -> str:
    return none if x is None else format(x, spec)


def table(summary: dict) -> str:
    """ladder.md: one row per rung."""
    n = summary["tokens_per_run"]
    lines = [f"Speedrun ladder: {n:,} tokens per run, target val loss {fmt(summary['target_val_loss'], '.4f')} "
             f"({summary['target_is']}).", "",
             "| rung | adds | record | seeds | final val loss (mean ± std) | vs previous rung (± s.e.) | vs baseline "
             "(seed stds) | tokens to target (mean ± std, seeds reaching) | CPU µs/token |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in summary["rungs"]:
        m, s = r["final_val_loss_mean"], r["final_val_loss_std"]
        prev = "" if r.get("vs_previous") is None else \
            f"{r['vs_previous']:+.4f} ± {r['vs_previous_se']:.4f} ({r['verdict']})"
        base = "" if r.get("vs_baseline") is None else \
            f"{r['vs_baseline']:+.4f} ({r['vs_baseline_in_seed_std']:+.1f})"
        tok = (f"{fmt(r['tokens_to_target_mean'], ',.0f')} ± {fmt(r['tokens_to_target_std'], ',.0f')} "
               f"({r['seeds_reaching_target']}/{r['seeds_done']})")
        lines.append(f"| {r['rung']} {r['name']} | {r['adds']} | {r['record']} | {r['seeds_done']} | "
                     f"{fmt(m, '.4f')} ± {fmt(s, '.4f')} | {prev} | {base} | {tok} | "
                     f"{fmt(r['cpu_us_per_token'], '.1f')} |")
    lines += ["", f"Command: `{summary['command']}`", f"Machine: {summary['machine']}",
              f"Started {summary['started']}, last run finished {summary['finished']}."]
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: str) -> None:
    import matplotlib  # noqa: PLC0415 - only for the figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5))
    cmap = plt.get_cmap("viridis")
    rungs = [r for r in summary["rungs"] if r["runs"]]
    for r in rungs:
        color = cmap(r["rung"] / max(1, len(summary["rungs"]) - 1))
        curves = [run["curve"] for run in r["runs"]]
        x = [t for t, _ in curves[0]]
        mean = [statistics.fmean(c[i][1] for c in curves) for i in range(len(x))]
        ax1.plot(x, mean, "o-", ms=2, color=color, label=f"{r['rung']} {r['name']}")
    if summary["target_val_loss"]:
        ax1.axhline(summary["target_val_loss"], color="r", ls="--", lw=1, label="target")
    low = min((y for r in rungs for run in r["runs"] for _, y in run["curve"]), default=0)
    ax1.set_ylim(low - 0.1, low + 3)
    ax1.set(xlabel="tokens", ylabel="val loss (mean over seeds)", title="val loss against tokens, per rung")
    ax1.legend(fontsize=7)
    for r in rungs:
        finals = [run["final_val_loss"] for run in r["runs"]]
        ax2.scatter([r["rung"]] * len(finals), finals, s=12, color="gray")
        ax2.errorbar(r["rung"], r["final_val_loss_mean"], yerr=r["final_val_loss_std"] or 0, fmt="o", color="k",
                     capsize=4)
    ax2.set_xticks([r["rung"] for r in rungs], [f"{r['rung']} {r['name']}" for r in rungs], rotation=40,
                   ha="right", fontsize=8)
    ax2.set(ylabel="final val loss", title="final val loss per rung (mean ± std; dots: seeds)")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def first_start(cfg: LadderConfig) -> str | None:
    """When this ladder first started: a resumed ladder (same settings) keeps its ladder.json's start time."""
    path = os.path.join(cfg.out_dir, "ladder.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        old = json.load(f)
    return old.get("started") if old.get("settings") == settings(cfg) else None


def write_outputs(cfg: LadderConfig, runs: dict, command: str, started: str, figure: bool = False) -> dict:
    """ladder.json and ladder.md (after every run), ladder.png (at the end)."""
    summary = summarise(cfg, runs, command, started)
    write_json(os.path.join(cfg.out_dir, "ladder.json"), summary)
    write_text(os.path.join(cfg.out_dir, "ladder.md"), table(summary))
    if figure and runs:
        plot(summary, os.path.join(cfg.out_dir, "ladder.png"))
    return summary


def selected(cfg: LadderConfig) -> list[int]:
    """The rungs this ladder runs: --only's list, else 0 .. --rungs - 1."""
    if cfg.only:
        return sorted({int(k) for k in cfg.only.split(",")})
    return list(range(cfg.rungs))


def check(cfg: LadderConfig) -> None:
    """What the knobs' ranges cannot say (parse_config checked those)."""
    parts = cfg.only.split(",") if cfg.only else []
    if not all(p.strip().isdigit() and int(p) < len(RUNGS) for p in parts):
        raise UserError(f"--only {cfg.only}: use rung numbers 0 .. {len(RUNGS) - 1} separated by commas")
    if not os.path.isdir(cfg.data_dir):
        raise UserError(f"--data-dir {cfg.data_dir!r} does not exist (write shards with fineweb.py first)")


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(LadderConfig, argv, "ladder.py", __doc__.split("\n\n")[0], PRESETS)
    check(cfg)
    stop_on_sigterm()  # SIGTERM as Ctrl-C: the running train.py processes checkpoint, nothing new starts
    command = "python build_nanogpt/ladder.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None
                                                                                   else argv))
    started = first_start(cfg) or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    order = [(k, s) for s in range(cfg.seeds) for k in selected(cfg)]  # seed 0's rungs first
    os.makedirs(cfg.out_dir, exist_ok=True)
    with OutDirLock(cfg.out_dir):
        runs = {}
        pool = ThreadPoolExecutor(cfg.jobs)
        try:
            futures = {pool.submit(run_one, cfg, k, s): (k, s) for k, s in order}
            for future, (k, s) in futures.items():  # in order: the summary grows run by run
                future.result()
                runs[(k, s)] = measure(run_dir(cfg, k, s), cfg.total_batch)
                print(f"ladder: rung {k} ({RUNGS[k][0]}) seed {s}: final val loss "
                      f"{runs[(k, s)]['final_val_loss']:.4f}", flush=True)
                write_outputs(cfg, runs, command, started)
        except BaseException:  # Ctrl-C, SIGTERM, a failed run: start nothing new, let the running ones checkpoint
            pool.shutdown(wait=False, cancel_futures=True)
            stop_running()
            raise
        pool.shutdown()
        summary = write_outputs(cfg, runs, command, started, figure=True)
    print(table(summary))
    return summary


if __name__ == "__main__":
    run_main(main)
