"""Experiment tracking: log.jsonl's records also go to Weights & Biases, from rank 0, with --wandb.

wandb is imported only when the flag is on. Offline (`WANDB_MODE=offline`) the run is written under
`$WANDB_DIR/wandb/` (default: the run's --out-dir) and can be uploaded later with `wandb sync`.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from cli import UserError


class Tracker:
    """A W&B run when enabled and on rank 0; otherwise every call does nothing."""

    def __init__(self, cfg=None, master: bool = False):
        self.cfg = cfg if cfg is not None and cfg.wandb and master else None
        self.run = None

    def __enter__(self):
        if self.cfg is None:
            return self
        try:
            import wandb  # noqa: PLC0415 - only with --wandb
        except ImportError:
            raise UserError("--wandb needs the wandb package: pip install wandb") from None
        folder = Path(os.environ.get("WANDB_DIR") or self.cfg.out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=self.cfg.wandb_project, name=self.cfg.wandb_run_name or None,
                              config=dataclasses.asdict(self.cfg), dir=str(folder))
        return self

    def log(self, rec: dict) -> None:
        """One record of log.jsonl (an evaluation or a logged step), at its iter."""
        if self.run is not None:
            self.run.log({k: v for k, v in rec.items() if isinstance(v, (int, float)) and k != "iter"},
                         step=rec["iter"])

    def __exit__(self, exc_type, *exc):
        if self.run is not None:
            self.run.finish(exit_code=0 if exc_type is None else 1)
            self.run = None
