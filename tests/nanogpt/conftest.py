"""Fixtures of nanogpt's tests. `nanogpt/` comes first on sys.path, so `import model` is its model.py."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "nanogpt"))

from helpers import make_tiny_dataset  # noqa: E402


@pytest.fixture(scope="module")
def tiny_data(shared_file, tmp_path_factory) -> Path:
    return make_tiny_dataset(shared_file("tinyshakespeare/input.txt"), tmp_path_factory.mktemp("data"))
