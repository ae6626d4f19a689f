"""GPT-2's byte-pair encoding (tiktoken "gpt2"), the one tokenizer of this folder.

Every document in a shard starts with <|endoftext|> (EOT); the loader shuffles documents by it.
"""
from __future__ import annotations

from cli import UserError

EOT = 50256  # <|endoftext|>
GPT2_VOCAB = 50257  # token ids 0 .. 50256; the model pads its table to 50,304


def gpt2_encoding():
    """tiktoken's GPT-2 encoding; offline without its cache, one line saying so."""
    import tiktoken  # noqa: PLC0415 - workers and error paths that never tokenize do not pay for it

    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as e:  # noqa: BLE001 - requests' ConnectionError, a proxy error, a corrupt cache
        first = (str(e).splitlines() or [type(e).__name__])[0][:160]
        raise UserError("cannot load the GPT-2 tokenizer (tiktoken downloads it once, then reads it from "
                        f"TIKTOKEN_CACHE_DIR): {type(e).__name__}: {first}") from None
