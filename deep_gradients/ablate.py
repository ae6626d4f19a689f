"""Ablations: BatchNorm on/off x residual on/off x depth x learning rate x seed, all at the same budget.

    python deep_gradients/ablate.py --configs bn+res,plain --depths 8,20,56 --lrs 0.05,0.4 --seeds 0,1

Two claims are put to a test with numbers: that deep "plain" networks (no shortcuts) train worse than
shallow ones while residual networks do not (He et al., "Deep Residual Learning", 2015, figure 1 and 6), and
that BatchNorm allows much higher learning rates (Ioffe & Szegedy 2015, section 3.3; Bjorck et al.,
"Understanding Batch Normalization", 2018). Every run is `train.run(train.Config(...))`, in this process,
one after another; each keeps its own folder (results.json, ckpt.pt). Written into --out-dir:
- ablation.json: every run (config, final numbers, loss curve, per-layer activation std) and the summary;
- ablation.md: the table (mean +- std over seeds) and findings stated with their numbers;
- ablation_curves.png, ablation_acc.png, ablation_actstd.png.
Activation statistics: std of every ReLU's input (the pre-activation) over the first --act-images test images,
at initialisation (model.from_config: the seeded init train.py builds; BN in train mode, i.e. batch
statistics, as the first step sees it) and after training (the saved checkpoint, eval mode).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

import checkpoint  # noqa: E402
import hardware  # noqa: E402
import mnist  # noqa: E402
import model as model_lib  # noqa: E402
import train  # noqa: E402
from cli import UserError, check_ranges, knob, parse_config, run_main  # noqa: E402
from curves import save_figure  # noqa: E402
from files import OutDirLock, write_json, write_text  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "ablation"  # the default --out-dir
CONFIGS = {  # name -> (batch_norm, residual)
    "bn+res": (True, True),
    "bn": (True, False),
    "res": (False, True),
    "plain": (False, False),
}


@dataclass
class AblateConfig:
    configs: str = knob("bn+res,bn,res,plain", "comma list of: bn+res, bn, res, plain")
    depths: str = knob("8,20,56", "comma list of depths (6n+2: 8, 20, 56)")
    lrs: str = knob("0.1", "comma list of peak learning rates (train.py's one-cycle schedule)")
    seeds: str = knob("0", "comma list of seeds")
    max_epochs: int = knob(2, "epochs of every run", lo=1)
    train_subset: int = knob(0, "first N training images (0 = all)", lo=0)
    dataset: str = knob("digits", "digits | mnist")
    data_dir: str = knob("", "folder of the MNIST IDX gz files")
    batch_size: int = knob(128, "global batch of every run", lo=2)
    width: int = knob(16, "channels of the first stage of every run", lo=1)
    record_interval: int = knob(0, "> 0: every run also writes evolution.jsonl every this many steps (slower)",
                                lo=0)
    act_images: int = knob(256, "test images for the activation statistics", lo=2)
    device: str = knob("auto", "auto | cpu | cuda | cuda:N")
    out_dir: str = knob("", "ablation.json, ablation.md, the plots, one folder per run; empty = "
                            "deep_gradients/out/ablation (beside this script, from any working directory)")
    runs_dir: str = knob("", "one train.py output folder per run; empty = OUT_DIR")
    report_only: bool = knob(False, "redraw ablation.md and the plots from an existing OUT_DIR/ablation.json")
    keep_done: bool = knob(True, "keep the runs already in OUT_DIR/ablation.json and skip them (e.g. to add a seed)")


def _list(s: str, typ, flag: str) -> list:
    try:
        out = [typ(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--{flag} {s!r} is not a comma-separated list of {typ.__name__}") from None
    if not out:
        raise UserError(f"--{flag} is empty")
    return out


def grid(cfg: AblateConfig) -> list[dict]:
    """-> one dict per run: name, config, depth, lr, seed (configs x depths x lrs x seeds)."""
    names = _list(cfg.configs, str, "configs")
    for n in names:
        if n not in CONFIGS:
            raise UserError(f"--configs {n!r} is not allowed; one of {', '.join(CONFIGS)}")
    depths = _list(cfg.depths, int, "depths")
    for d in depths:
        if d not in model_lib.DEPTHS:
            raise UserError(f"--depths {d} is not allowed; one of {', '.join(map(str, model_lib.DEPTHS))} (6n+2)")
    lrs, seeds = _list(cfg.lrs, float, "lrs"), _list(cfg.seeds, int, "seeds")
    if any(not 0 < lr < math.inf for lr in lrs):
        raise UserError(f"--lrs {cfg.lrs!r}: every learning rate must be finite and > 0")
    if cfg.dataset not in mnist.DATASETS:
        raise UserError(f"--dataset {cfg.dataset!r} is not allowed; one of {', '.join(mnist.DATASETS)}")
    check_ranges(cfg)  # the knobs' lower bounds; train.check_config below holds the upper ones
    runs = [{"name": f"{c}_d{d}_lr{lr:g}_s{s}", "config": c, "depth": d, "lr": lr, "seed": s}
            for d in depths for c in names for lr in lrs for s in seeds]
    for r in runs:  # every run's train.py settings in range before the first run starts (--width 1e5, --lrs 1e3)
        train.check_config(train_config(cfg, r))
    return runs


def train_config(cfg: AblateConfig, r: dict) -> train.Config:
    bn, res = CONFIGS[r["config"]]
    return train.Config(dataset=cfg.dataset, data_dir=cfg.data_dir, train_subset=cfg.train_subset, depth=r["depth"],
                        width=cfg.width, batch_norm=bn, residual=res, max_epochs=cfg.max_epochs,
                        batch_size=cfg.batch_size, learning_rate=r["lr"], seed=r["seed"],
                        record_interval=cfg.record_interval, device=cfg.device,
                        out_dir=os.path.join(cfg.runs_dir or cfg.out_dir, r["name"]), progress=False)


def activation_std(m: nn.Module, x: torch.Tensor, train_mode: bool) -> list[float]:
    """Std of every ReLU's input (pre-activation), in network order, for one forward pass of x."""
    stds = []
    hooks = [mod.register_forward_hook(lambda mod, i, o: stds.append(i[0].std().item()))
             for mod in m.modules() if isinstance(mod, nn.ReLU)]
    saved = {k: v.clone() for k, v in m.state_dict().items()}
    m.train(train_mode)
    with torch.no_grad():
        m(x)
    for h in hooks:
        h.remove()
    m.load_state_dict(saved)  # a train-mode pass moved the BN running statistics; put them back
    return stds


def act_stats(tc: train.Config, x: torch.Tensor, diverged: bool = False) -> dict:
    """Pre-activation stds at init and of the trained checkpoint (all null for a run that diverged: it saved
    no trained weights)."""
    m = model_lib.from_config(tc)
    init = activation_std(m, x, train_mode=True)
    trained = [None] * len(init)
    if not diverged:
        m.load_state_dict(checkpoint.load(os.path.join(tc.out_dir, "ckpt.pt"), "ablate.py")["model"])
        trained = activation_std(m, x, train_mode=False)
    return {"init": [_finite(v) for v in init], "trained": [_finite(v) for v in trained]}  # NaN -> null in JSON


def _finite(v) -> float | None:
    return float(v) if v is not None and math.isfinite(float(v)) else None


def _nan(v) -> float:
    return float("nan") if v is None else float(v)


def run_all(cfg: AblateConfig, log=print, command: str = "") -> dict:
    runs = grid(cfg)  # checks the whole selection before the first run starts
    os.makedirs(cfg.out_dir, exist_ok=True)
    _, _, x_test, _ = mnist.load(cfg.dataset, cfg.data_dir or None)
    x_act = x_test[:cfg.act_images]
    done = previous_runs(cfg) if cfg.keep_done else []
    names = {r["name"] for r in done}
    todo = [r for r in runs if r["name"] not in names]
    if len(todo) < len(runs):
        log(f"{len(runs) - len(todo)} of {len(runs)} runs already in {cfg.out_dir}/ablation.json: skipped")
    out = save(cfg, done, command)
    for r in tqdm(todo, desc="ablation runs", dynamic_ncols=True):
        row = one_run(cfg, r, x_act)
        done.append(row)
        log(f"{r['name']}: test acc {100 * (row['final_test_acc'] or 0):.2f}%, train loss "
            f"{_loss(row['final_train_loss'])}, {row['seconds']:.0f}s")
        out = save(cfg, done, command)  # after every run, so a long grid that is cut short keeps what it has
    plot_all(out, cfg.out_dir)
    return out


def one_run(cfg: AblateConfig, r: dict, x_act: torch.Tensor) -> dict:
    """Train one cell of the grid -> its row (a run that diverged keeps its curve up to where it stopped)."""
    tc = train_config(cfg, r)
    t0 = time.time()
    try:
        res = train.run(tc)
    except train.Diverged as e:
        res = {"final_test_acc": None, "epochs": [], "train_curve": e.history["train_curve"], "diverged": True}
    if not res.get("finished", True):  # Ctrl-C / SIGTERM stopped train.py mid-run: not a result, stop the grid
        raise KeyboardInterrupt  # the runs done so far are in ablation.json; the same command continues
    ep = res["epochs"]
    row = dict(r, batch_norm=tc.batch_norm, residual=tc.residual, out_dir=hardware.from_repo(tc.out_dir),
               final_test_acc=_finite(res.get("final_test_acc")),
               final_test_loss=_finite(ep[-1].get("test_loss")) if ep else None,
               final_train_loss=_finite(ep[-1].get("train_loss")) if ep else None,
               train_curve=[[s, _finite(v)] for s, v in res.get("train_curve", [])],
               seconds=time.time() - t0, act_std=act_stats(tc, x_act, res.get("diverged", False)))
    # failed to train: NaN, or no better than guessing among 10 classes (loss ln 10 = 2.303)
    row["diverged"] = row["final_train_loss"] is None or row["final_train_loss"] >= math.log(10)
    return row


def previous_runs(cfg: AblateConfig) -> list[dict]:
    """Runs already recorded in OUT/ablation.json with the same budget (so adding a seed reruns nothing)."""
    path = os.path.join(cfg.out_dir, "ablation.json")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        old = json.load(f)
    budget = ("max_epochs", "train_subset", "dataset", "batch_size", "width", "record_interval")
    if any(old["ablate_config"].get(k) != getattr(cfg, k) for k in budget):
        raise UserError(f"{path} was made with another budget ({', '.join(budget)}); use another --out-dir "
                          "or --no-keep-done")
    return old["runs"]


def redraw(out_dir: str) -> dict:
    path = os.path.join(out_dir, "ablation.json")
    if not os.path.isfile(path):
        raise UserError(f"--report-only: no {path}; run the ablation first")
    with open(path) as f:
        out = json.load(f)
    out["summary"] = summarize(out["runs"])
    write_markdown(out, os.path.join(out_dir, "ablation.md"))
    plot_all(out, out_dir)
    return out


def save(cfg: AblateConfig, runs: list[dict], command: str) -> dict:
    """ablation.json and ablation.md, opening with how they were made: the command (as typed at the repository's
    root), the machine, the date and the thread count; paths from the root, so the file names no folder here."""
    out = {**hardware.made_by(command), "ablate_config": hardware.settings_from_repo(asdict(cfg)), "runs": runs,
           "summary": summarize(runs)}
    write_json(os.path.join(cfg.out_dir, "ablation.json"), out)
    write_markdown(out, os.path.join(cfg.out_dir, "ablation.md"))
    return out


# --------------------------------------------------------------------------------------------------
# summary, table, findings, plots


def summarize(runs: list[dict]) -> list[dict]:
    """Mean and std over seeds for every (config, depth, lr)."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["config"], r["depth"], r["lr"]), []).append(r)
    out = []
    for (c, d, lr), rs in groups.items():
        acc = [_nan(r["final_test_acc"]) for r in rs]
        loss = [_nan(r["final_train_loss"]) for r in rs]
        out.append({"config": c, "depth": d, "lr": lr, "n_seeds": len(rs),
                    "acc_mean": _finite(np.mean(acc)), "acc_std": _finite(np.std(acc)),
                    "train_loss_mean": _finite(np.mean(loss)), "diverged": sum(r["diverged"] for r in rs)})
    return out


def _loss(v):
    return "NaN" if v is None else f"{v:.3f}"


def _pct(v):
    return "n/a" if v is None else f"{100 * v:.2f}"


def findings(summary: list[dict]) -> list[str]:
    """Sentences that answer the two questions with the measured numbers (only where the grid has both sides)."""
    s = {(r["config"], r["depth"], r["lr"]): r for r in summary}
    depths = sorted({r["depth"] for r in summary})
    lrs = sorted({r["lr"] for r in summary})
    lines = []
    if len(depths) > 1:
        lo, hi = depths[0], depths[-1]
        for lr in lrs:
            for c in CONFIGS:
                a, b = s.get((c, lo, lr)), s.get((c, hi, lr))
                if a and b and a["acc_mean"] is not None and b["acc_mean"] is not None:
                    delta = 100 * (b["acc_mean"] - a["acc_mean"])
                    lines.append(f"- depth {lo} -> {hi}, `{c}`, lr {lr:g}: test accuracy {_pct(a['acc_mean'])}% -> "
                                 f"{_pct(b['acc_mean'])}% ({delta:+.2f} points); last-epoch train loss "
                                 f"{_loss(a['train_loss_mean'])} -> {_loss(b['train_loss_mean'])}")
    if len(lrs) > 1:
        for d in depths:
            for with_bn, without in (("bn+res", "res"), ("bn", "plain")):
                for lr in lrs:
                    a, b = s.get((with_bn, d, lr)), s.get((without, d, lr))
                    if a and b:
                        lines.append(f"- depth {d}, lr {lr:g}: with BN (`{with_bn}`) {_pct(a['acc_mean'])}% "
                                     f"({a['diverged']}/{a['n_seeds']} diverged) vs without (`{without}`) "
                                     f"{_pct(b['acc_mean'])}% ({b['diverged']}/{b['n_seeds']} diverged)")
    return lines or ["- (no two cells of this grid differ only in depth, or only in BN at the same lr: nothing to compare)"]


def write_markdown(out: dict, path: str) -> None:
    summary, cfg = out["summary"], out["ablate_config"]
    lrs = sorted({r["lr"] for r in summary})
    s = {(r["config"], r["depth"], r["lr"]): r for r in summary}
    lines = ["# Ablation: BatchNorm x residual x depth x learning rate", "",
             f"Dataset `{cfg['dataset']}` (train subset {cfg['train_subset'] or 'all'}), {cfg['max_epochs']} epoch(s), "
             f"batch {cfg['batch_size']}, width {cfg['width']}, seeds {sorted({r['seed'] for r in out['runs']})}; "
             "one-cycle schedule peaking at lr.",
             f"Made by `{out.get('command')}` on {out.get('machine')}, {out.get('date')}, "
             f"{out.get('torch_threads')} thread(s).",
             "Cells: final test accuracy %, mean +- std over seeds (train loss averaged over the last epoch; `div` = "
             "runs whose last-epoch train loss is NaN or >= ln 10 = 2.303, chance level).", "",
             "| config | depth | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |",
             "|---|---|" + "---|" * len(lrs)]
    for c in CONFIGS:
        for d in sorted({r["depth"] for r in summary}):
            cells = []
            for lr in lrs:
                r = s.get((c, d, lr))
                if r is None:
                    cells.append("")
                    continue
                loss = _loss(r["train_loss_mean"])
                std = f" +- {100 * r['acc_std']:.2f}" if r["n_seeds"] > 1 and r["acc_std"] is not None else ""
                div = f", {r['diverged']} div" if r["diverged"] else ""
                cells.append(f"{_pct(r['acc_mean'])}{std} ({loss}{div})")
            if any(cells):
                lines.append(f"| {c} | {d} | " + " | ".join(cells) + " |")
    lines += ["", "## Findings (numbers from the table)", ""] + findings(summary)
    lines += ["", "## Activation std per layer (ReLU inputs)", "",
              "| run | init: first / middle / last | trained: first / middle / last |", "|---|---|---|"]
    for r in out["runs"]:
        if r["seed"] != min(x["seed"] for x in out["runs"]):
            continue
        f = lambda v: " / ".join(f"{_nan(v[i]):.3g}" for i in (0, len(v) // 2, -1))  # noqa: E731
        lines.append(f"| {r['name']} | {f(r['act_std']['init'])} | {f(r['act_std']['trained'])} |")
    lines += ["", "![loss curves](ablation_curves.png)", "", "![final accuracy](ablation_acc.png)", "",
              "![activation std](ablation_actstd.png)", ""]
    write_text(path, "\n".join(lines))


def plot_all(out: dict, out_dir: str) -> list[str]:
    runs, summary = out["runs"], out["summary"]
    depths = sorted({r["depth"] for r in runs})
    lrs = sorted({r["lr"] for r in runs})
    colors = {c: plt.cm.tab10(i) for i, c in enumerate(CONFIGS)}
    paths = []
    # loss curves: rows = lr, columns = depth
    fig, axes = plt.subplots(len(lrs), len(depths), figsize=(4.5 * len(depths), 3.4 * len(lrs)), squeeze=False)
    for i, lr in enumerate(lrs):
        for j, d in enumerate(depths):
            ax = axes[i][j]
            for r in runs:
                if r["lr"] == lr and r["depth"] == d and r["train_curve"]:
                    c = np.array([[s, np.nan if v is None else v] for s, v in r["train_curve"]], dtype=float)
                    ax.plot(c[:, 0], c[:, 1], color=colors[r["config"]], lw=1, alpha=0.8,
                            label=r["config"] if r["seed"] == min(x["seed"] for x in runs) else None)
            ax.set(title=f"depth {d}, lr {lr:g}", xlabel="step", ylabel="train loss", yscale="log")
            ax.set_ylim(top=min(ax.get_ylim()[1], 5.0))  # an exploding run would squash the others; clipped at 5
            ax.legend(fontsize=7)
    paths.append(str(save_figure(fig, os.path.join(out_dir, "ablation_curves.png"))))
    # final accuracy vs depth: one panel per lr
    fig, axes = plt.subplots(1, len(lrs), figsize=(5 * len(lrs), 3.6), squeeze=False)
    for ax, lr in zip(axes[0], lrs):
        for c in CONFIGS:
            pts = sorted((r["depth"], r["acc_mean"], r["acc_std"]) for r in summary if r["config"] == c and r["lr"] == lr)
            if pts:
                d, m, sd = (np.array([np.nan if v is None else v for v in col], dtype=float) for col in zip(*pts))
                ax.errorbar(d, 100 * m, yerr=100 * sd, marker="o", color=colors[c], label=c, capsize=3)
        ax.axhline(10, color="grey", ls=":", lw=1, label="chance (10%)")
        ax.set(title=f"final test accuracy, lr {lr:g}", xlabel="depth", ylabel="test accuracy (%)", xticks=depths)
        ax.legend(fontsize=8)
    paths.append(str(save_figure(fig, os.path.join(out_dir, "ablation_acc.png"))))
    # activation std per layer: one panel per config; colour = depth, dashed = init, solid = trained
    confs = [c for c in CONFIGS if any(r["config"] == c for r in runs)]
    fig, axes = plt.subplots(1, len(confs), figsize=(4.5 * len(confs), 3.6), squeeze=False)
    dcol = {d: plt.cm.viridis(k / max(len(depths) - 1, 1) * 0.9) for k, d in enumerate(depths)}
    lr0, seed0 = lrs[0], min(r["seed"] for r in runs)
    for ax, c in zip(axes[0], confs):
        for r in runs:
            if r["config"] == c and r["lr"] == lr0 and r["seed"] == seed0:
                ax.plot([_nan(v) for v in r["act_std"]["init"]], "--", color=dcol[r["depth"]])
                ax.plot([_nan(v) for v in r["act_std"]["trained"]], "-", color=dcol[r["depth"]])
        ax.set(title=f"{c}: pre-activation std (lr {lr0:g})", xlabel="ReLU index (input -> output)", yscale="log")
    axes[0][0].set_ylabel("std of the ReLU input")
    # one legend beside the last panel: inside, it hid the curves it sits on
    handles = [plt.Line2D([], [], color=dcol[d], label=f"depth {d}") for d in depths]
    handles += [plt.Line2D([], [], color="k", ls="--", label="at init (BN batch stats)"),
                plt.Line2D([], [], color="k", ls="-", label="trained (eval mode)")]
    axes[0][-1].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    paths.append(str(save_figure(fig, os.path.join(out_dir, "ablation_actstd.png"))))
    return paths


# --------------------------------------------------------------------------------------------------


def main(argv=None) -> None:
    cfg = parse_config(AblateConfig, argv, "ablate.py", __doc__.splitlines()[0])
    cfg = replace(cfg, out_dir=cfg.out_dir or str(OUT))
    command = hardware.typed_command(__file__, sys.argv[1:] if argv is None else argv)
    with OutDirLock(cfg.out_dir):
        out = redraw(cfg.out_dir) if cfg.report_only else run_all(cfg, command=command)
    print(f"wrote {os.path.join(cfg.out_dir, 'ablation.json')} and ablation.md ({len(out['runs'])} runs)")


if __name__ == "__main__":
    run_main(main)
