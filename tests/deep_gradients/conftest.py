"""Fixtures of deep_gradients's tests. `deep_gradients/` comes first on sys.path, so `import model` is its model.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deep_gradients"))
