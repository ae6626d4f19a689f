"""What a finished run leaves for a person: samples on stdout, results.json and loss.png in the out dir.

log.jsonl holds two kinds of records: evaluations (train_loss and val_loss on fixed windows, val_ppl,
tokens_per_s, mfu) and logged training steps (`loss`: the loss of that step's batch). loss.png draws both.
"""
from __future__ import annotations

import torch

from files import atomic_write, write_json
from tokenizer import get_tokenizer


def evaluations(history: list[dict]) -> list[dict]:
    return [r for r in history if "val_loss" in r]


def write_results(out_dir, results: dict, history: list[dict], unigram: float) -> None:
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
    with ctx:
        out = model.generate(idx, tokens, temperature=0.8, top_k=200, generator=gen)
    samples = [tokenizer.decode([t for t in row[len(start):] if t < tokenizer.vocab_size]) for row in out.tolist()]
    for i, text in enumerate(samples):
        print(f"---------- sample {i + 1}\n{text}")
    return samples
