"""Fixtures of large_scale_optimization's tests. `large_scale_optimization/` comes first on sys.path, so `import model` is its model.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "large_scale_optimization"))
