"""Sample text from a trained checkpoint or from OpenAI's GPT-2 weights (karpathy/nanoGPT sample.py, plus
top-p, a KV cache and a tokens/s figure).

    python nanogpt/sample.py --init-from nanogpt/out                 # OUT/ckpt_last.pt written by train.py
    python nanogpt/sample.py --init-from gpt2 --start "Hello, I'm a language model,"
    python nanogpt/sample.py --init-from /models/gpt2 --start FILE:prompt.txt --top-p 0.9
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, fields
from pathlib import Path

import torch

import prepare
from model import GPT, GPTConfig, HUB_MODELS, native_bf16


HERE = Path(__file__).resolve().parent


@dataclass
class SampleConfig:
    init_from: str = str(HERE / "out")  # train.py's default --out-dir, wherever this is run from
    start: str = "\n"
    num_samples: int = 3
    max_new_tokens: int = 200
    temperature: float = 0.8
    top_k: int | None = 200
    top_p: float | None = None
    seed: int = 1337
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    dtype: str = "bfloat16" if torch.cuda.is_available() and native_bf16("cuda") else "float32"
    no_cache: bool = False


HELP = {
    "init_from": "training out dir (reads OUT/ckpt_last.pt), a .pt checkpoint, gpt2[-medium|-large|-xl] or a local "
                 "Hugging Face GPT-2 folder",
    "start": "prompt text, or FILE:path to read it from a file (default: %(default)r)",
    "temperature": "0 = greedy (most likely token)",
    "top_k": "keep only the k most likely tokens ('none' = off)",
    "top_p": "nucleus sampling: smallest set of tokens with this much probability ('none' = off)",
    "dtype": "float32, bfloat16 or float16 (autocast)",
    "no_cache": "disable the KV cache (for comparison)",
}


class SampleError(ValueError):
    """A user mistake: one line, exit code 2."""


def load_model(init_from: str, device: str = "cpu"):
    """-> (model in eval mode on device, tokenizer) from a checkpoint (dir or file) or GPT-2 weights."""
    path = Path(init_from)
    ckpt_file = path / "ckpt_last.pt" if path.is_dir() else path
    if ckpt_file.is_file() and ckpt_file.suffix == ".pt":
        try:
            ckpt = torch.load(ckpt_file, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - truncated or foreign file
            raise SampleError(f"cannot read checkpoint {ckpt_file}: {type(e).__name__}") from None
        if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
            raise SampleError(f"{ckpt_file} is not a nanogpt checkpoint (no 'model' / 'model_args')")
        model = GPT(GPTConfig(**ckpt["model_args"]))
        sd = {k.removeprefix("_orig_mod.").removeprefix("module."): v for k, v in ckpt["model"].items()}
        model.load_state_dict(sd)
        cfg = ckpt.get("config", {})
        meta_file = Path(cfg.get("data_dir", "")) / cfg.get("dataset", "") / "meta.json"
        if cfg.get("dataset") and meta_file.is_file():
            tokenizer = prepare.get_tokenizer(json.loads(meta_file.read_text()))
        elif model.config.vocab_size >= 50257:  # GPT-2-sized vocabulary: assume the GPT-2 BPE
            tokenizer = prepare.get_tokenizer({"tokenizer": "gpt2"})
        else:
            raise SampleError(f"cannot find the tokenizer: {meta_file} is missing (prepare the dataset again)")
    elif path.is_dir() or init_from in HUB_MODELS:
        model = GPT.from_pretrained(init_from)  # ValueError with a one-line message when it does not fit
        tokenizer = prepare.get_tokenizer({"tokenizer": "gpt2"})
    else:
        raise SampleError(f"--init-from {init_from!r}: no such checkpoint or directory, and not one of "
                          f"{', '.join(HUB_MODELS)}")
    return model.to(device).eval(), tokenizer


def read_prompt(start: str) -> str:
    if start.startswith("FILE:"):
        try:
            return Path(start[5:]).read_text(encoding="utf-8")
        except OSError as e:
            raise SampleError(f"cannot read prompt file {start[5:]}: {e.strerror}") from None
    return start


def _optional(kind):
    def parse(s: str):
        return None if s.lower() == "none" else kind(s)
    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def main(argv=None):
    defaults = SampleConfig()
    p = prepare.ArgParser(description=__doc__.split("\n\n")[0],
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in fields(SampleConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if f.type == "bool":
            p.add_argument(flag, action="store_true", help=HELP.get(f.name))
        else:
            kind = {"int": int, "float": float, "int | None": _optional(int), "float | None": _optional(float)}.get(f.type, str)
            p.add_argument(flag, type=kind, default=default, help=HELP.get(f.name, f.name.replace("_", " ")))
    cfg = SampleConfig(**vars(p.parse_args(argv)))
    try:
        if cfg.temperature < 0:
            raise SampleError(f"--temperature {cfg.temperature}: must be >= 0 (0 = greedy)")
        if cfg.top_k is not None and cfg.top_k < 1:
            raise SampleError(f"--top-k {cfg.top_k}: must be >= 1, or none")
        if cfg.top_p is not None and not 0 < cfg.top_p <= 1:
            raise SampleError(f"--top-p {cfg.top_p}: must be in (0, 1], or none")
        for name in ("num_samples", "max_new_tokens"):
            if getattr(cfg, name) < 1:
                raise SampleError(f"--{name.replace('_', '-')} {getattr(cfg, name)}: must be >= 1")
        if cfg.dtype not in ("float32", "bfloat16", "float16"):
            raise SampleError(f"--dtype {cfg.dtype!r}: one of float32, bfloat16, float16")
        if cfg.device.split(":")[0] not in ("cpu", "cuda"):
            raise SampleError(f"--device {cfg.device!r}: use cpu, cuda or cuda:N")
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise SampleError(f"--device {cfg.device}: CUDA is not available here; use --device cpu")
        torch.manual_seed(cfg.seed)
        model, tok = load_model(cfg.init_from, cfg.device)
        prompt = read_prompt(cfg.start)
        ids = tok.encode(prompt)
        if not ids:
            raise SampleError("the prompt is empty after tokenization; give --start some text")
        if max(ids) >= model.config.vocab_size:
            raise SampleError(f"prompt token id {max(ids)} is outside the model's vocab of {model.config.vocab_size}")
    except (SampleError, ValueError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)

    device_type = "cuda" if cfg.device.startswith("cuda") else "cpu"
    ptdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.dtype]
    ctx = nullcontext() if ptdtype == torch.float32 else torch.autocast(device_type=device_type, dtype=ptdtype)
    gen = torch.Generator(device=cfg.device).manual_seed(cfg.seed)
    x = torch.tensor(ids, dtype=torch.long, device=cfg.device)[None, :]  # (1, T)
    total_tokens, total_time = 0, 0.0
    with torch.no_grad(), ctx:
        for _ in range(cfg.num_samples):
            t0 = time.perf_counter()
            y = model.generate(x, cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
                               top_p=cfg.top_p, use_cache=not cfg.no_cache, generator=gen)
            if device_type == "cuda":
                torch.cuda.synchronize()
            total_time += time.perf_counter() - t0
            total_tokens += cfg.max_new_tokens
            # a vocabulary padded for speed (50257 -> 50304) has ids no tokenizer can decode: leave them out
            print(tok.decode([t for t in y[0].tolist() if t < tok.vocab_size]))
            print("---------------")
    print(f"{total_tokens} tokens in {total_time:.2f} s: {total_tokens / max(total_time, 1e-9):.1f} tokens/s "
          f"({'no ' if cfg.no_cache else ''}KV cache, {cfg.device}, {cfg.dtype})")


if __name__ == "__main__":
    main()
