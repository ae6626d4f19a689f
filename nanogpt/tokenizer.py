"""The three tokenizers of a prepared dataset: UTF-8 bytes, the characters of a corpus, GPT-2 BPE (tiktoken).
meta.json names one; get_tokenizer(meta) rebuilds it.
"""
from __future__ import annotations

import tiktoken

from sources import DataError


class ByteTokenizer:
    """UTF-8 bytes, vocab 256: covers any text, nothing is unknown, decode is exact."""

    name = "byte"
    vocab_size = 256
    eot = None

    def encode(self, s: str) -> list[int]:
        return list(s.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


class CharTokenizer:
    """One id per distinct character of the corpus (nanoGPT's shakespeare_char)."""

    name = "char"
    eot = None

    def __init__(self, chars: str):
        self.chars = chars
        self.vocab_size = len(chars)
        self.stoi = {c: i for i, c in enumerate(chars)}

    def encode(self, s: str) -> list[int]:
        try:
            return [self.stoi[c] for c in s]
        except KeyError as e:  # e.g. a sample.py prompt with a character the corpus never had
            raise DataError(f"character {e.args[0]!r} is not in this char-level vocabulary "
                            f"({self.vocab_size} characters)") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


class GPT2Tokenizer:
    """tiktoken's GPT-2 BPE (50257 tokens, <|endoftext|> = 50256). Special tokens in the text stay text."""

    name = "gpt2"

    def __init__(self):
        try:
            self.enc = tiktoken.get_encoding("gpt2")
        except Exception as e:  # noqa: BLE001 - tiktoken downloads its BPE files on first use
            raise DataError(f"cannot load the GPT-2 BPE ({type(e).__name__}); offline? point TIKTOKEN_CACHE_DIR "
                            f"at a folder holding tiktoken's cached gpt2 files") from None
        self.vocab_size = self.enc.n_vocab
        self.eot = self.enc.eot_token

    def encode(self, s: str) -> list[int]:
        return self.enc.encode_ordinary(s)

    def decode(self, ids) -> str:
        return self.enc.decode([int(i) for i in ids])


def get_tokenizer(meta: dict):
    """The tokenizer described by a meta.json dict (keys: tokenizer, and chars for char-level)."""
    name = meta.get("tokenizer")
    if name == "byte":
        return ByteTokenizer()
    if name == "char":
        return CharTokenizer(meta["chars"])
    if name == "gpt2":
        return GPT2Tokenizer()
    raise DataError(f"unknown tokenizer {name!r} in meta.json; expected byte, char or gpt2")
