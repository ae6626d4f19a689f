"""A run's outputs, all in its out dir and all written by rank 0: log.jsonl (mirrored to Weights & Biases with
--wandb), the checkpoints, and at the end the samples (also on stdout), results.json and loss.png.

log.jsonl holds two kinds of records: evaluations (train_loss and val_loss on fixed windows, val_ppl,
tokens_per_s, mfu) and logged training steps (`loss`: the loss of that step's batch). loss.png draws both.
W&B: wandb is imported only with --wandb; offline (`WANDB_MODE=offline`) the run is written under
`$WANDB_DIR/wandb/` (default: the run's --out-dir) and can be uploaded later with `wandb sync`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

import checkpoint
from cli import UserError
from files import append_line, atomic_write, write_json, write_text
from tokenizer import get_tokenizer


REPO = Path(__file__).resolve().parent.parent  # the folder above nanogpt/


def evaluations(history: list[dict]) -> list[dict]:
    return [r for r in history if "val_loss" in r]


class Outputs:
    """What a run writes, from rank 0 (on other ranks every method writes nothing). A context: W&B's run
    starts on entry and finishes on exit."""

    def __init__(self, cfg, master: bool):
        self.cfg, self.master = cfg, master
        self.out_dir = Path(cfg.out_dir)
        self.last_checkpoint = Path(cfg.resume) if cfg.resume else None  # the newest one known good
        self.wandb = None

    def __enter__(self) -> Outputs:
        if self.master and self.cfg.wandb:
            try:
                import wandb  # noqa: PLC0415 - only with --wandb
            except ImportError:
                raise UserError("--wandb needs the wandb package: pip install wandb") from None
            folder = Path(os.environ.get("WANDB_DIR") or self.cfg.out_dir)
            try:  # before set-up: a run that cannot log does not prepare data or load weights first
                folder.mkdir(parents=True, exist_ok=True)
                self.wandb = wandb.init(project=self.cfg.wandb_project, name=self.cfg.wandb_run_name or None,
                                        config=dataclasses.asdict(self.cfg), dir=str(folder))
            except Exception as e:  # noqa: BLE001 - no API key, offline, a bad project name, an unwritable folder
                why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise UserError(f"--wandb: cannot start a W&B run (WANDB_DIR {folder}): {why}") from None
        return self

    def __exit__(self, exc_type, *exc):
        if self.wandb is not None:
            self.wandb.finish(exit_code=0 if exc_type is None else 1)
            self.wandb = None

    def start_log(self, history: list[dict]) -> None:
        """log.jsonl from these records: empty for a fresh run, the checkpoint's history for a resumed one."""
        if self.master:
            write_text(self.out_dir / "log.jsonl", "".join(json.dumps(rec) + "\n" for rec in history))

    def log(self, rec: dict) -> None:
        """One record (an evaluation or a logged step) appended to log.jsonl and sent to W&B at its iter."""
        if not self.master:
            return
        append_line(self.out_dir / "log.jsonl", json.dumps(rec))
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in rec.items() if isinstance(v, (int, float)) and k != "iter"},
                           step=rec["iter"])

    def save_checkpoint(self, ckpt: dict, names: list[str]) -> None:
        """The checkpoint under each name, each written whole or not at all."""
        if self.master:
            self.last_checkpoint = checkpoint.save(ckpt, self.out_dir, names)

    def write_results(self, results: dict, history: list[dict], unigram: float) -> None:
        """results.json opens with how it was made: the command as typed, the date, and the paths in its config
        written from the repository's root, so that the file names no folder of this machine."""
        if self.master:
            command = shlex.join(["python", portable(os.path.abspath(sys.argv[0])), *sys.argv[1:]])
            made = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "torch_threads": torch.get_num_threads()}
            config = {k: portable(v) for k, v in results["config"].items()}
            write_results(self.out_dir, {**made, **results, "config": config}, history, unigram)


def portable(value):
    """An absolute path inside the repository, written from its root (nanogpt/out); anything else as it is."""
    if isinstance(value, str) and os.path.isabs(value) and Path(value).resolve().is_relative_to(REPO):
        return str(Path(value).resolve().relative_to(REPO))
    return value


def write_results(out_dir: Path, results: dict, history: list[dict], unigram: float) -> None:
    """results.json, and loss.png drawn from the history."""
    write_json(out_dir / "results.json", results)
    import matplotlib  # noqa: PLC0415 - plotting only at the very end; keeps error paths fast

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r for r in history if "loss" in r]
    evals = evaluations(history)
    if steps:
        ax.plot([r["iter"] for r in steps], [r["loss"] for r in steps], "-", color="0.7", lw=1,
                label="train (logged steps)")
    its = [r["iter"] for r in evals]
    ax.plot(its, [r["train_loss"] for r in evals], "o-", label="train (fixed batches)")
    ax.plot(its, [r["val_loss"] for r in evals], "o-", label="val")
    ax.axhline(unigram, color="gray", ls="--", label=f"unigram baseline {unigram:.3f}")
    for r in results.get("per_epoch", []):  # where each epoch ends, so the curve reads epoch by epoch
        ax.axvline(r["iter"], color="0.6", ls=":", lw=1)
        ax.text(r["iter"], 0.98, f" epoch {r['epochs_done']}", transform=ax.get_xaxis_transform(), fontsize=8,
                color="0.4", ha="right", va="top", rotation=90)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(f"{results['config']['dataset']}: {results['n_params'] / 1e6:.2f}M params")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(out_dir / "loss.png", lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def print_samples(model, meta: dict, num_samples: int, tokens: int, seed: int, ctx, device: str) -> list[str]:
    """num_samples continuations of a newline (temperature 0.8, top-k 200), printed and returned."""
    if num_samples < 1:
        return []
    try:
        tokenizer = get_tokenizer(meta)
    except Exception as e:  # noqa: BLE001 - e.g. tiktoken files missing offline: train anyway, no samples
        print(f"(no samples: cannot load tokenizer {meta.get('tokenizer')!r}: {e})")
        return []
    gen = torch.Generator(device=device).manual_seed(seed)
    try:
        start = tokenizer.encode("\n") or [0]
    except ValueError:  # a char vocabulary without a newline
        start = [0]
    idx = torch.tensor([start] * num_samples, dtype=torch.long, device=device)  # (S, len(start))
    print(f"sampling {num_samples} x {tokens} tokens on {device} ...", flush=True)
    with ctx:
        out = model.generate(idx, tokens, temperature=0.8, top_k=200, generator=gen)
    samples = [tokenizer.decode([t for t in row[len(start):] if t < tokenizer.vocab_size]) for row in out.tolist()]
    for i, text in enumerate(samples):
        print(f"---------- sample {i + 1}\n{text}")
    return samples
