"""HellaSwag evaluation, completion style (Zellers et al. 2019, "HellaSwag: Can a Machine Really Finish
Your Sentence?"), as in karpathy/build-nanogpt.

    python build_nanogpt/hellaswag.py --model gpt2                  # GPT-2 124M from the hub
    python build_nanogpt/hellaswag.py --model path/to/hf_dir --limit 200
    python build_nanogpt/hellaswag.py --model build_nanogpt/out/tiny --data hellaswag_val.jsonl   # a run folder

Each example is a context and 4 candidate endings. The model scores every ending by the cross-entropy
of its tokens given the context; `acc` picks the ending with the lowest SUM of token losses, `acc_norm`
the lowest MEAN (sum divided by the ending's length in tokens), which removes the bias towards short
endings. Reference figures (validation set, 10,042 examples, acc_norm): GPT-2 124M 0.2955, GPT-3 124M 0.337.
"""
from __future__ import annotations

import json
import os
import urllib.request
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch.nn import functional as F
from tqdm import tqdm

from cli import UserError, knob, parse_config, run_main, stop_on_sigterm
from files import atomic_write, sha256_of
from hardware import autocast_for, pick_dtype, resolve_device
from pretrained import load_weights
from tokens import GPT2_VOCAB, gpt2_encoding

URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl"
SHA256 = "0aa3b88843990f3f10a97b9575c94d7b71fb2205240ba04ae4884d9e9c992588"
CACHE_DIR = os.environ.get("BUILD_NANOGPT_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "build_nanogpt"))


@dataclass
class EvalConfig:
    model: str = knob("gpt2", "gpt2* hub name, a Hugging Face folder, a checkpoint of train.py or nanogpt, or "
                              "their run folder (its ckpt.pt / ckpt_last.pt)")
    data: str = knob("", "hellaswag_val.jsonl; empty: download once (sha256-checked) to "
                         "~/.cache/build_nanogpt/hellaswag (or $BUILD_NANOGPT_CACHE/hellaswag)")
    limit: int = knob(-1, "evaluate the first N examples only (-1: all 10,042)")
    batch_size: int = knob(8, "examples per forward pass (x4 endings)")
    device: str = knob("auto", "auto | cpu | cuda | cuda:N | mps")
    dtype: str = knob("auto", "auto (bfloat16 on CUDA) | float32 | bfloat16 | float16")


# --------------------------------------------------------------------------------------------------
# data


def download(cache_dir: str = CACHE_DIR, hint: str = "pass a local copy with --data PATH") -> str:
    """The validation file, downloaded once and checked against its sha256; `hint` says what to do offline."""
    path = os.path.join(cache_dir, "hellaswag", "hellaswag_val.jsonl")
    if os.path.exists(path) and sha256_of(path) == SHA256:
        return path

    def fetch(tmp):  # a temp name per process: several ranks may download at once
        try:
            urllib.request.urlretrieve(URL, tmp)
        except OSError as e:
            raise UserError(f"could not download {URL} ({e}); {hint}") from None
        if sha256_of(tmp) != SHA256:
            raise UserError(f"{URL}: sha256 mismatch (expected {SHA256}); not cached")
    return str(atomic_write(path, fetch))


def _lines(f, path: str):
    try:
        yield from f
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason}); HellaSwag files are UTF-8 JSON lines") from None


def load_examples(path: str, limit: int = -1) -> list[dict]:
    """The examples of a HellaSwag jsonl file; a malformed line is a UserError naming its number."""
    if not os.path.isfile(path):
        raise UserError(f"HellaSwag file {path!r} does not exist")
    examples = []
    with open(path, encoding="utf-8", errors="strict") as f:
        for lineno, line in enumerate(_lines(f, path), 1):
            if 0 <= limit <= len(examples):  # limit -1: read them all
                break
            if not line.strip():
                continue
            try:
                ex = json.loads(line)
                ok = (isinstance(ex, dict) and isinstance(ex.get("ctx"), str) and isinstance(ex.get("label"), int)
                      and isinstance(ex.get("endings"), list) and len(ex["endings"]) == 4
                      and all(isinstance(e, str) for e in ex["endings"]) and 0 <= ex["label"] < 4)
            except json.JSONDecodeError:
                ok = False
            if not ok:
                raise UserError(f"{path}:{lineno}: malformed HellaSwag example "
                                "(need JSON with 'ctx', 4 'endings' and a 'label' in 0..3)")
            examples.append({"ctx": ex["ctx"], "endings": ex["endings"], "label": ex["label"]})
    if not examples:
        raise UserError(f"HellaSwag file {path!r} holds no examples")
    return examples


def render(example: dict, enc, block_size: int) -> tuple[list[list[int]], list[list[int]]]:
    """Token rows (context + ending) and masks (1 on the ending's tokens) for the 4 endings.
    A row longer than the model's block size keeps its last block_size tokens (tiny models only)."""
    ctx = enc.encode(example["ctx"])
    rows, masks = [], []
    for ending in example["endings"]:
        end = enc.encode(" " + ending)  # the space belongs to the ending in GPT-2's BPE
        rows.append((ctx + end)[-block_size:])
        masks.append(([0] * len(ctx) + [1] * len(end))[-block_size:])
    return rows, masks


# --------------------------------------------------------------------------------------------------
# scoring


@torch.no_grad()
def ending_losses(model, rows: list[list[int]], masks: list[list[int]], device: str,
                  autocast=nullcontext) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and mean cross-entropy over each row's masked (ending) tokens: two (n_rows,) tensors."""
    L = max(len(r) for r in rows)
    tokens = torch.zeros(len(rows), L, dtype=torch.long)  # right padding: causal, so it changes nothing before it
    mask = torch.zeros(len(rows), L, dtype=torch.long)
    for i, (r, m) in enumerate(zip(rows, masks)):
        tokens[i, :len(r)] = torch.tensor(r)
        mask[i, :len(m)] = torch.tensor(m)
    tokens, mask = tokens.to(device), mask.to(device)
    with autocast():
        logits, _ = model(tokens)  # (N, L, V)
    losses = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), tokens[:, 1:].flatten(), reduction="none")
    losses = losses.view(len(rows), L - 1)  # (N, L-1): loss of predicting token t+1
    m = mask[:, 1:].float()
    total = (losses * m).sum(1)  # (N,)
    return total, total / m.sum(1)


def evaluate(model, examples: list[dict], enc, device: str, batch_size: int = 8, autocast=nullcontext,
             rank: int = 0, world: int = 1, progress: bool = False) -> dict:
    """Counts over this rank's share (every world-th example): sum them across ranks for the total."""
    mine = examples[rank::world]
    n = correct = correct_norm = 0
    block = model.config.block_size
    for i in tqdm(range(0, len(mine), batch_size), desc="hellaswag", disable=not progress):
        batch = mine[i:i + batch_size]
        rows, masks = [], []
        for ex in batch:
            r, m = render(ex, enc, block)
            rows += r
            masks += m
        total, mean = ending_losses(model, rows, masks, device, autocast)
        total, mean = total.view(-1, 4).cpu(), mean.view(-1, 4).cpu()  # (examples, 4 endings)
        labels = torch.tensor([ex["label"] for ex in batch])
        correct += int((total.argmin(1) == labels).sum())
        correct_norm += int((mean.argmin(1) == labels).sum())
        n += len(batch)
    return {"n": n, "correct": correct, "correct_norm": correct_norm}


def evaluate_all(model, examples: list[dict], enc, device: str, batch_size: int = 8, autocast=nullcontext,
                 rank: int = 0, world: int = 1) -> tuple[int, int, int]:
    """(n, correct, correct_norm) over all examples: each rank scores its share, the counts are summed."""
    r = evaluate(model, examples, enc, device, batch_size, autocast, rank, world)
    # nccl reduces CUDA tensors, gloo (CPU and MPS runs) CPU tensors
    counts = torch.tensor([r["n"], r["correct"], r["correct_norm"]], dtype=torch.long,
                          device=device if device.startswith("cuda") else "cpu")
    if world > 1:
        torch.distributed.all_reduce(counts)
    n, c, cn = counts.tolist()
    return n, c, cn


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(EvalConfig, argv, "hellaswag.py", "\n\n".join(__doc__.split("\n\n")[:2]))
    if cfg.limit == 0 or cfg.limit < -1:
        raise UserError(f"--limit {cfg.limit}: use -1 (all examples) or N >= 1")
    if not 1 <= cfg.batch_size <= 1024:  # x4 rows of logits over 50k tokens: more would not fit any GPU
        raise UserError(f"--batch-size {cfg.batch_size}: use 1 .. 1024")
    device = resolve_device(cfg.device)
    dtype, note = pick_dtype("bfloat16" if cfg.dtype == "auto" and device.startswith("cuda") else
                             "float32" if cfg.dtype == "auto" else cfg.dtype, device)
    if note:
        print(note)
    examples = load_examples(cfg.data or download(), cfg.limit)
    enc = gpt2_encoding()
    model = load_weights(cfg.model)
    if model.config.vocab_size < GPT2_VOCAB:
        raise UserError(f"--model {cfg.model}: a {model.config.vocab_size}-token vocabulary, not GPT-2's BPE; "
                        "HellaSwag needs a GPT-2 tokenizer model")
    model = model.to(device).eval()
    r = evaluate(model, examples, enc, device, cfg.batch_size, autocast_for(dtype, device), progress=True)
    acc, acc_norm = r["correct"] / r["n"], r["correct_norm"] / r["n"]
    print(f"hellaswag {cfg.model}: {r['n']} examples | acc {acc:.4f} (sum of ending losses) | "
          f"acc_norm {acc_norm:.4f} (per-token mean)")
    print(json.dumps({"model": cfg.model, "examples": r["n"], "acc": acc, "acc_norm": acc_norm}))


if __name__ == "__main__":
    stop_on_sigterm()  # SIGTERM as Ctrl-C: temp files removed, one line
    run_main(main)
