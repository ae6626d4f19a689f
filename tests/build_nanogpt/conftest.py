"""Fixtures of build_nanogpt's tests. `build_nanogpt/` comes first on sys.path, so `import model` is its model.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "build_nanogpt"))
