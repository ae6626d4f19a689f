"""Fixtures of deep_gradients's tests. `deep_gradients/` comes first on sys.path, so `import model` is its model.py.
Shared plain helpers (the tiny run's settings, readers of its outputs) are in helpers.py."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deep_gradients"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# a tiny recorded run: 192 digits, 6 steps of 32 per epoch, 2 epochs (steps 0..11), a record every 2 steps
RECORDED = dict(dataset="digits", train_subset=192, max_epochs=2, batch_size=32, depth=8, width=4,
                record_interval=2, progress=False, device="cpu")


@pytest.fixture(scope="session")
def recorded_run(tmp_path_factory) -> Path:
    """The out dir of a tiny train.py run with evolution recorded (made once per test process)."""
    import train

    out = tmp_path_factory.mktemp("recorded_run")
    train.run(train.Config(**RECORDED, out_dir=str(out)))
    return out
