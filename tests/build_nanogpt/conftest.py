"""Fixtures of build_nanogpt's tests. `build_nanogpt/` comes first on sys.path, so `import model` is its model.py."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "build_nanogpt"))

from helpers import shakespeare_shards  # noqa: E402


@pytest.fixture(scope="session")
def shards(tmp_path_factory, shared_file, tiktoken_cache):
    """Shards of the first 60,000 characters of Tiny Shakespeare: a val shard and train shards of 4,000 tokens."""
    return shakespeare_shards(tmp_path_factory, shared_file, 60_000, 4000)


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory):
    """A tiny GPT-2 (2 layers, 32 wide, 128 positions) saved by transformers, and the model itself."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=128, n_embd=32, n_layer=2, n_head=2))
    path = tmp_path_factory.mktemp("hf_gpt2")
    model.save_pretrained(path)
    return path, model.eval()
