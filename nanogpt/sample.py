"""Sample text from a trained checkpoint or from OpenAI's GPT-2 weights (karpathy/nanoGPT sample.py, plus
top-p, a KV cache and a tokens/s figure).

    python nanogpt/sample.py --init-from nanogpt/out/demo            # OUT/ckpt_last.pt written by train.py
    python nanogpt/sample.py --init-from gpt2 --start "Hello, I'm a language model,"
    python nanogpt/sample.py --init-from DIR/gpt2 --start FILE:prompt.txt --top-p 0.9
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import checkpoint
import hardware
from cli import UserError, check_positive, knob, parse_config, run_main
from config import MAX_SEED
from hub import HUB_MODELS, gpt2_folder
from model import GPT, GPTConfig
from tokenizer import get_tokenizer

HERE = Path(__file__).resolve().parent
MAX_NEW_TOKENS = 1_000_000


def optional(kind):
    """A flag type where 'none' means None (top-k / top-p off)."""
    def parse(text: str):
        return None if text.lower() == "none" else kind(text)
    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


@dataclass
class SampleConfig:
    init_from: str = knob(str(HERE / "out" / "demo"), "training out dir (reads OUT/ckpt_last.pt), a .pt checkpoint, "
                                                      "gpt2[-medium|-large|-xl] or a local Hugging Face GPT-2 folder")
    start: str = knob("\n", "prompt text, or FILE:path to read it from a file")
    num_samples: int = knob(3, "samples to draw", lo=1, hi=1000)
    max_new_tokens: int = knob(200, "tokens per sample", lo=1, hi=MAX_NEW_TOKENS)
    temperature: float = knob(0.8, "0 = greedy (most likely token)", lo=0)
    top_k: int | None = knob(200, "keep only the k most likely tokens ('none' = off)", lo=1, type=optional(int))
    top_p: float | None = knob(None, "nucleus sampling: smallest set of tokens with this much probability "
                                     "('none' = off)", hi=1, type=optional(float))
    seed: int = knob(1337, "seed of the sampling", lo=0, hi=MAX_SEED)
    device: str = knob("auto", "auto (cuda if present, else cpu) | cpu | cuda | cuda:N")
    dtype: str = knob("auto", "auto (bfloat16 on a GPU that has it, float16 on older GPUs, float32 on CPU) | "
                              "float32 | bfloat16 | float16 (autocast)")
    cache: bool = knob(True, "KV cache (--no-cache for comparison)")


def check_sample_config(cfg: SampleConfig) -> None:
    if cfg.top_p is not None:
        check_positive(cfg, "top_p")


def load_model(init_from: str, device: str = "cpu"):
    """-> (model in eval mode on device, tokenizer) from a checkpoint (dir or file) or GPT-2 weights."""
    path = Path(init_from)
    ckpt_file = checkpoint.in_folder(path)
    if ckpt_file.is_file():  # whatever its name: checkpoint.load says what it is not
        saved = checkpoint.read(ckpt_file)
        model = GPT(GPTConfig(**saved.model_args))
        model.load_state_dict(saved.model)
        meta_file = checkpoint.dataset_meta(saved)
        if meta_file is not None and meta_file.is_file():
            tokenizer = get_tokenizer(json.loads(meta_file.read_text()))
        elif model.config.vocab_size >= 50257:  # GPT-2-sized vocabulary: assume the GPT-2 BPE
            tokenizer = get_tokenizer({"tokenizer": "gpt2"})
        else:
            raise UserError(f"cannot find the tokenizer: {meta_file} is missing (prepare the dataset again)")
    elif path.is_dir() or init_from in HUB_MODELS:
        try:
            model = GPT.from_pretrained(gpt2_folder(init_from))
        except ValueError as e:
            raise UserError(str(e).splitlines()[0]) from None
        tokenizer = get_tokenizer({"tokenizer": "gpt2"})
    else:
        raise UserError(f"--init-from {init_from!r}: no such checkpoint or directory, and not one of "
                        f"{', '.join(HUB_MODELS)}")
    return model.to(device).eval(), tokenizer


def read_prompt(start: str) -> str:
    if start.startswith("FILE:"):
        try:
            return Path(start[5:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read prompt file {start[5:]}: {getattr(e, 'strerror', None) or e}") from None
    return start


def main(argv=None):
    cfg = parse_config(SampleConfig, argv, "sample.py", __doc__.split("\n\n")[0])
    check_sample_config(cfg)
    device = hardware.resolve_device(cfg.device)
    dtype = hardware.resolve_dtype(cfg.dtype, device)
    torch.manual_seed(cfg.seed)
    model, tok = load_model(cfg.init_from, device)
    ids = tok.encode(read_prompt(cfg.start))
    if not ids:
        raise UserError("the prompt is empty after tokenization; give --start some text")
    if max(ids) >= model.config.vocab_size:
        raise UserError(f"prompt token id {max(ids)} is outside the model's vocab of {model.config.vocab_size}")
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    x = torch.tensor(ids, dtype=torch.long, device=device)[None, :]  # (1, T)
    total_tokens, total_time = 0, 0.0
    with torch.no_grad(), hardware.autocast(device, dtype):
        for _ in range(cfg.num_samples):
            t0 = time.perf_counter()
            y = model.generate(x, cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
                               top_p=cfg.top_p, use_cache=cfg.cache, generator=gen)
            hardware.synchronize(device)
            total_time += time.perf_counter() - t0
            total_tokens += cfg.max_new_tokens
            # a vocabulary padded for speed (50257 -> 50304) has ids no tokenizer can decode: leave them out
            print(tok.decode([t for t in y[0].tolist() if t < tok.vocab_size]))
            print("---------------")
    print(f"{total_tokens} tokens in {total_time:.2f} s: {total_tokens / max(total_time, 1e-9):.1f} tokens/s "
          f"({'' if cfg.cache else 'no '}KV cache, {device}, {dtype})")


if __name__ == "__main__":
    run_main(main)
