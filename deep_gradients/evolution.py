"""Weight evolution recorder (stub; being filled in). See ANALYSIS.md."""
from __future__ import annotations

import os


class Recorder:
    """Records per-layer statistics every `every` steps into OUT/evolution.jsonl."""

    def __init__(self, model, out_dir, every: int = 10):
        self.model, self.out_dir, self.every = model, out_dir, max(1, int(every))
        os.makedirs(out_dir, exist_ok=True)

    def on_step(self, step: int, epoch: int, lr: float) -> None:
        pass

    def close(self) -> None:
        pass
