"""What train.py writes as it goes: log.jsonl (one JSON object per record), log.txt (the same, for people),
and curves.png (the per-iter training loss, the val loss, and HellaSwag with its binomial error band)."""
from __future__ import annotations

import json
import math
import os
import sys

from tqdm import tqdm

from files import atomic_write, write_text

REF_VAL_LOSS = 3.2924  # GPT-2 124M (OpenAI weights) on the FineWeb-Edu val shard (build-nanogpt)
REF_HELLASWAG = {"GPT-2 124M": 0.2955, "GPT-3 124M": 0.337}  # acc_norm
CHANCE = 0.25  # four endings


def plot_curves(records: list[dict], path: str) -> None:
    import matplotlib  # noqa: PLC0415 - only rank 0 plots

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    train = [(r["iter"], r["loss"]) for r in records if r["kind"] == "train"]
    val = [(r["iter"], r["val_loss"]) for r in records if r["kind"] == "val"]
    hs = [r for r in records if r["kind"] == "hellaswag"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    if train:
        ax1.plot(*zip(*train), lw=0.8, label="train loss (every iter)")
    if val:
        ax1.plot(*zip(*val), "o-", ms=3, label="val loss")
    ax1.axhline(REF_VAL_LOSS, color="r", ls="--", lw=1, label=f"GPT-2 124M, FineWeb-Edu val ({REF_VAL_LOSS})")
    ax1.set(xlabel="iter", ylabel="cross-entropy (nats/token)", title="loss")
    ax1.legend()
    if hs:
        its, acc = [r["iter"] for r in hs], [r["acc_norm"] for r in hs]
        # 95% binomial interval of an accuracy measured on n examples: +-1.96 sqrt(p (1 - p) / n)
        half = [1.96 * math.sqrt(max(p * (1 - p), 1e-12) / r["n"]) for p, r in zip(acc, hs)]
        ax2.plot(its, acc, "o-", ms=3, label=f"this model ({hs[-1]['n']} examples)")
        ax2.fill_between(its, [a - h for a, h in zip(acc, half)], [a + h for a, h in zip(acc, half)],
                         alpha=0.25, label="95% binomial interval")
    else:
        ax2.text(0.5, 0.5, "not evaluated (--hellaswag-limit 0)", transform=ax2.transAxes, ha="center", color="gray")
    for (name, acc), color in zip(REF_HELLASWAG.items(), ("r", "g")):
        ax2.axhline(acc, color=color, ls="--", lw=1, label=f"{name} ({acc})")
    ax2.axhline(CHANCE, color="gray", ls=":", lw=1, label=f"chance ({CHANCE})")
    ax2.set(xlabel="iter", ylabel="acc_norm", title="HellaSwag")
    ax2.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


class Logger:
    """log.jsonl beside a human-readable log.txt; rank 0 only.

    `keep_before` is the iter the run starts from: 0 starts fresh logs; a resumed run keeps the
    records before that iter and drops the later ones (it writes them again).
    """

    def __init__(self, out_dir: str, enabled: bool, keep_before: int):
        self.enabled = enabled
        self.jsonl, self.txt = os.path.join(out_dir, "log.jsonl"), os.path.join(out_dir, "log.txt")
        self.png = os.path.join(out_dir, "curves.png")
        self.records: list[dict] = []
        if not enabled:
            return
        if keep_before > 0 and os.path.exists(self.jsonl):  # resume: drop what came after the checkpoint
            with open(self.jsonl) as f:
                self.records = [r for r in map(json.loads, f) if r["iter"] < keep_before]
        write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in self.records))
        if keep_before == 0:
            write_text(self.txt, "")
        else:  # log.txt is append-only: mark where the resumed run takes over
            with open(self.txt, "a") as f:
                f.write(f"resumed from the checkpoint at iter {keep_before} (lines above from iter "
                        f"{keep_before} on are superseded)\n")

    def log(self, record: dict, text: str) -> None:
        if not self.enabled:
            return
        tqdm.write(text)  # above the progress bar, when there is one
        sys.stdout.flush()
        self.records.append(record)
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")
        with open(self.txt, "a") as f:
            f.write(text + "\n")

    def plot(self) -> None:
        if self.enabled:
            plot_curves(self.records, self.png)
