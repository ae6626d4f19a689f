"""What two choices of model.py cost on CPU, in process CPU time, one thread, the nanoGPT README's CPU recipe shape
(4 x 4 x 128, block 64, batch 12, vocab 65, float32, no bias): fused AdamW against the per-tensor loop (torch's
CPU default, what nanoGPT gets there), and the tanh GELU (GPT-2's) against the exact one (nanoGPT's).

    OMP_NUM_THREADS=1 python nanogpt/results/step_parts/measure.py --out-dir nanogpt/results/step_parts

Each pair is timed in alternating rounds (A B, then B A), ITERS calls per round, and reported as the median of
the rounds: the AdamW step alone, the GELU's forward and backward alone (on the MLP's activations, 12 x 64 x 512),
and a whole training step (forward, backward, clip, fused AdamW) with each GELU. Writes step_parts.json
(default folder: nanogpt/out/step_parts) with the command as typed, the machine, the date and the thread count.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # nanogpt/
from bench import provenance  # noqa: E402
from files import write_json  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402

SHAPE = dict(block_size=64, vocab_size=65, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False)
BATCH = 12


def cpu_ms(fn, iters: int) -> float:
    """Process CPU time of one call of fn, ms, averaged over iters calls."""
    c0 = time.process_time()
    for _ in range(iters):
        fn()
    return 1e3 * (time.process_time() - c0) / iters


def interleaved(pair: dict, rounds: int, iters: int) -> dict:
    """Median over rounds of each callable's CPU ms per call; the order flips every round."""
    names, times = list(pair), {name: [] for name in pair}
    for name in names:  # warm-up
        cpu_ms(pair[name], 3)
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            times[name].append(cpu_ms(pair[name], iters))
    return {name: round(statistics.median(ts), 3) for name, ts in times.items()}


def training_step(gelu: str):
    torch.manual_seed(1337)
    model = GPT(GPTConfig(**SHAPE, gelu_approximate=gelu))
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99), "cpu")
    x, y = torch.randint(0, 65, (2, BATCH, 64)).unbind(0)

    def step():
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def adamw_step(fused: bool):
    torch.manual_seed(1337)
    model = GPT(GPTConfig(**SHAPE))
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99), **({"fused": True} if fused else {"foreach": False}))
    return opt.step


def gelu_pass(approximate: str):
    x = torch.randn(BATCH, 64, 4 * SHAPE["n_embd"], requires_grad=True)
    gelu, grad = torch.nn.GELU(approximate=approximate), torch.randn(BATCH, 64, 4 * SHAPE["n_embd"])

    def run():
        gelu(x).backward(grad)
        x.grad = None
    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--out-dir", default=str(HERE.parents[1] / "out" / "step_parts"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    made = provenance("results/step_parts/measure.py", argv)
    adamw = interleaved({"per_tensor_loop": adamw_step(False), "fused": adamw_step(True)}, args.rounds, args.iters)
    gelu = interleaved({"exact": gelu_pass("none"), "tanh": gelu_pass("tanh")}, args.rounds, args.iters)
    step = interleaved({"exact": training_step("none"), "tanh": training_step("tanh")}, args.rounds, args.iters)
    result = {
        "what": "process CPU time, ms per call, median of the rounds; nanoGPT README's CPU recipe shape, float32",
        "rounds": args.rounds, "iters": args.iters,
        "adamw_step_ms": adamw, "adamw_loop_over_fused": round(adamw["per_tensor_loop"] / adamw["fused"], 2),
        "gelu_fwd_bwd_ms": gelu, "gelu_tanh_over_exact": round(gelu["tanh"] / gelu["exact"], 3),
        "train_step_ms": step, "train_step_tanh_over_exact": round(step["tanh"] / step["exact"], 3),
        "gelu_share_of_step": round(SHAPE["n_layer"] * gelu["exact"] / step["exact"], 3),  # one GELU per block
    }
    path = write_json(Path(args.out_dir) / "step_parts.json", {**made, **result})
    print(result, f"\nwrote {path}", sep="")


if __name__ == "__main__":
    main()
