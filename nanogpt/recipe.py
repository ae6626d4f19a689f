"""The loss nanoGPT README's CPU recipe reaches on Tiny Shakespeare, trained by train.py and by nanoGPT's own
train.py loop restated here, on the same data with the same seeds: the recipe parity run.

    python nanogpt/recipe.py --seeds 1337,1,2 [--data-source input.txt] [--threads 2] [--out-dir DIR]

For each seed: train.py --preset shakespeare_char_cpu (chars, 4 x 4 x 128, block 64, batch 12, 2000 steps), and
nanoGPT's loop step for step (random-offset batches, estimate_loss on 20 random batches per split every 250
steps, all from the one torch RNG stream) with its model (bench.RefGPT); each scored on its own estimate and on
the exact loss over all of val.bin. Prints a table and one JSON line at the end, and writes that line, with the
command as typed, the machine, the date and the thread count, to OUT_DIR/recipe.json.
"""
from __future__ import annotations

import json
import math
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import data
import hardware
import train
from bench import RefGPT, make_optimizer, provenance
from cli import UserError, knob, parse_config, run_main
from config import MAX_SEED
from files import write_json
from model import GPTConfig


@dataclass
class RecipeConfig:
    seeds: str = knob("1337,1,2", "comma-separated seeds")
    data_dir: str = knob(str(Path(__file__).resolve().parent / "data"),
                         "folder holding shakespeare_char/ (prepared by train.py when missing)")
    data_source: str = knob("", "Tiny Shakespeare input.txt to prepare from offline ('' = download)")
    threads: int = knob(0, "torch CPU threads (0: as many as torch picks)", lo=0)
    out_dir: str = knob(str(Path(__file__).resolve().parent / "out" / "recipe"), "folder of recipe.json")


RECIPE = dict(block_size=64, batch_size=12, n_layer=4, n_head=4, n_embd=128, iters=2000, lr=1e-3, min_lr=1e-4,
              warmup=100, beta2=0.99, eval_interval=250, eval_iters=20)


@torch.no_grad()
def full_val_loss(model, val: np.ndarray, block_size: int) -> float:
    """The exact mean loss over every non-overlapping window of val.bin, cut by train.py's num_windows and
    get_batch: what train.py reports at the end as final.val_loss_full when val.bin fits in
    --final-eval-tokens (Tiny Shakespeare's does)."""
    model.eval()
    n = data.num_windows(len(val), block_size)
    total = 0.0
    for start in range(0, n, 256):
        x, y = data.get_batch(val, np.arange(start, min(n, start + 256)), block_size, "cpu")  # (b, T)
        total += model(x, y)[1].item() * len(x)
    return total / n


def nanogpt_loop(seed: int, folder: Path, recipe: dict = RECIPE, model_cls=None) -> dict:
    """karpathy/nanoGPT's train.py with the README's CPU flags, restated: the same calls on the one torch RNG
    stream (seed, model init, first batch, estimate_loss at step 0, 250, ...), so that seed 1337 retraces the
    run behind the README's figure. float32 on CPU, no compile, no dropout. model_cls: RefGPT (default) or
    model.GPT, which draws the same initial weights and computes the same function."""
    r = recipe
    torch.manual_seed(seed)
    data = {split: np.memmap(folder / f"{split}.bin", dtype=np.uint16, mode="r") for split in ("train", "val")}

    def get_batch(split):
        ix = torch.randint(len(data[split]) - r["block_size"], (r["batch_size"],))
        x = torch.stack([torch.from_numpy(data[split][i : i + r["block_size"]].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[split][i + 1 : i + 1 + r["block_size"]].astype(np.int64)) for i in ix])
        return x, y

    def get_lr(it):
        if it < r["warmup"]:
            return r["lr"] * (it + 1) / (r["warmup"] + 1)
        ratio = min(1.0, (it - r["warmup"]) / (r["iters"] - r["warmup"]))
        return r["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (r["lr"] - r["min_lr"])

    @torch.no_grad()
    def estimate_loss():
        model.eval()
        out = {split: sum(model(*get_batch(split))[1].item() for _ in range(r["eval_iters"])) / r["eval_iters"]
               for split in ("train", "val")}
        model.train()
        return out

    model = (model_cls or RefGPT)(GPTConfig(block_size=r["block_size"], vocab_size=65, n_layer=r["n_layer"], n_head=r["n_head"],
                             n_embd=r["n_embd"], dropout=0.0, bias=False))
    opt = make_optimizer(model, "cpu", r["lr"], r["beta2"])
    x, y = get_batch("train")
    for it in range(r["iters"] + 1):  # nanoGPT evaluates at step 2000, then takes that step too
        for group in opt.param_groups:
            group["lr"] = get_lr(it)
        if it % r["eval_interval"] == 0:
            losses = estimate_loss()
        _, loss = model(x, y)
        x, y = get_batch("train")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return {"train_estimate": losses["train"], "val_estimate": losses["val"],
            "val_full": full_val_loss(model, data["val"], r["block_size"])}


def parse_seeds(text: str) -> list[int]:
    """'1337,1,2' -> [1337, 1, 2]; [] when the text holds no seed or a non-integer."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        return []


def bench_recipe(cfg: RecipeConfig, seeds: list[int]) -> dict:
    result = {"mode": "recipe", "recipe": RECIPE, "seeds": seeds, "ours": [], "nanogpt_loop": []}
    print(f"{'seed':>6} {'ours: logged val':>17} {'exact val':>10} | {'nanoGPT loop: val est.':>22} {'exact val':>10}")
    for seed in seeds:
        with tempfile.TemporaryDirectory() as out:
            args = ["--preset", "shakespeare_char_cpu", "--seed", seed, "--out-dir", out, "--data-dir", cfg.data_dir,
                    "--num-samples", 0, "--save-epochs", ""] + (["--data-source", cfg.data_source] * bool(cfg.data_source))
            code = train.main([str(a) for a in args])
            if code:
                raise UserError(f"train.py stopped with exit code {code} at seed {seed}")
            final = json.loads((Path(out) / "results.json").read_text())["final"]
        ours = {"seed": seed, "val_logged": final["val_loss"], "val_full": final["val_loss_full"]}
        ref = {"seed": seed, **nanogpt_loop(seed, Path(cfg.data_dir) / "shakespeare_char")}
        result["ours"].append(ours)
        result["nanogpt_loop"].append(ref)
        print(f"{seed:>6} {ours['val_logged']:17.4f} {ours['val_full']:10.4f} | {ref['val_estimate']:22.4f} "
              f"{ref['val_full']:10.4f}", flush=True)
    for name in ("ours", "nanogpt_loop"):
        vals = [row["val_full"] for row in result[name]]
        result[f"{name}_val_full_mean"] = statistics.fmean(vals)
        result[f"{name}_val_full_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    print(f"exact val loss, mean over {len(seeds)} seeds: ours {result['ours_val_full_mean']:.4f} "
          f"(sd {result['ours_val_full_sd']:.4f}), nanoGPT loop {result['nanogpt_loop_val_full_mean']:.4f} "
          f"(sd {result['nanogpt_loop_val_full_sd']:.4f})")
    return result


def main(argv=None):
    cfg = parse_config(RecipeConfig, argv, "recipe.py", __doc__.split("\n\n")[0])
    seeds = parse_seeds(cfg.seeds)
    if not (seeds and all(0 <= s <= MAX_SEED for s in seeds)):
        raise UserError(f"--seeds {cfg.seeds!r}: comma-separated integers in [0, {MAX_SEED}], e.g. 1337,1,2")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    name = hardware.describe("cpu")
    print(f"device cpu ({name}), {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    result = bench_recipe(cfg, seeds)
    result["device_name"] = name
    print(f"wrote {write_json(Path(cfg.out_dir) / 'recipe.json', {**provenance('recipe.py', argv), **result})}")
    print(json.dumps(result))


if __name__ == "__main__":
    run_main(main)
