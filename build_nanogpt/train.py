"""Train GPT-2 (124M) on FineWeb-Edu shards: the recipe of karpathy/build-nanogpt, made resumable.

    python build_nanogpt/train.py --preset tiny --data-dir build_nanogpt/data/shakespeare   # CPU
    python build_nanogpt/train.py                                                            # 1 GPU
    torchrun --standalone --nproc_per_node=8 build_nanogpt/train.py                          # 8 GPUs

Recipe (GPT-3 paper, table 2.1, "Small"): 524,288 tokens per step reached by gradient accumulation,
AdamW (0.9, 0.95, eps 1e-8, weight decay 0.1 on >=2-D tensors), peak LR 6e-4 after 715 warmup steps,
cosine decay to 10% at step 19,073 (one epoch of 10B tokens), gradient clipping at 1.0, bf16 autocast,
TF32 matmuls, torch.compile, flash attention, vocabulary padded to 50,304.

torch.compile and evaluation: the training forward runs through `torch.compile(model)`. The validation
loss runs through the SAME compiled module, with the same (B, T) shape as training, so it reuses the
compiled code (one extra graph for no_grad mode, no shape-driven recompiles). HellaSwag (every batch a
different length) and sampling (the sequence grows by one token per step) run on the uncompiled module
that the compiled one wraps: the very same parameters, no copy, no recompilation storm, no dynamic-shape
graph breaks; both are a small part of the run's time. The reference turned compile off to get these
two working; here compile stays on for all of training.
"""
from __future__ import annotations

import gc
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import tiktoken  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402

from cli import UserError, parse_config, run_main  # noqa: E402
from hardware import device_name, peak_flops  # noqa: E402
from hellaswag import download as download_hellaswag  # noqa: E402
from hellaswag import evaluate as hellaswag_evaluate  # noqa: E402
from hellaswag import load_examples  # noqa: E402
from loader import ShardLoader  # noqa: E402
from model import GPT, GPTConfig, flops_per_token  # noqa: E402

REF_VAL_LOSS = 3.2924  # GPT-2 124M (OpenAI weights) on the FineWeb-Edu val shard (build-nanogpt)
REF_HELLASWAG = {"GPT-2 124M": 0.2955, "GPT-3 124M": 0.337}  # acc_norm
GPT2_VOCAB = 50257


@dataclass
class TrainConfig:
    # data and outputs
    data_dir: str = field(default="build_nanogpt/data/edu_fineweb10B", metadata={"help": "folder of {val,train}_NNNNNN.npy shards (fineweb.py)"})
    out_dir: str = field(default="build_nanogpt/out", metadata={"help": "log.jsonl, log.txt, curves.png, ckpt.pt go here"})
    resume: bool = field(default=False, metadata={"help": "continue exactly from out_dir/ckpt.pt"})
    seed: int = field(default=1337, metadata={"help": "model init, data shuffling and sampling"})
    # model
    n_layer: int = field(default=12, metadata={"help": "transformer blocks"})
    n_head: int = field(default=12, metadata={"help": "attention heads"})
    n_embd: int = field(default=768, metadata={"help": "embedding width"})
    block_size: int = field(default=1024, metadata={"help": "sequence length T"})
    vocab_size: int = field(default=50304, metadata={"help": "50,257 padded to a multiple of 128"})
    # batch and schedule
    micro_batch: int = field(default=64, metadata={"help": "sequences per forward pass per rank (B)"})
    total_batch: int = field(default=524_288, metadata={"help": "tokens per optimizer step (2**19); accumulation = total / (B*T*world)"})
    max_lr: float = field(default=6e-4, metadata={"help": "peak learning rate"})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "final LR as a fraction of the peak"})
    warmup_steps: int = field(default=715, metadata={"help": "linear warmup steps (375M tokens, GPT-3)"})
    max_steps: int = field(default=19_073, metadata={"help": "steps of the cosine schedule and of the run (10B tokens)"})
    stop_at: int = field(default=-1, metadata={"help": "stop (and checkpoint) at this step without changing the schedule; resume later"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay on >=2-D tensors"})
    beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    beta2: float = field(default=0.95, metadata={"help": "AdamW beta2"})
    eps: float = field(default=1e-8, metadata={"help": "AdamW eps"})
    grad_clip: float = field(default=1.0, metadata={"help": "clip the global gradient norm (0: off)"})
    # evaluation and checkpoints
    eval_every: int = field(default=250, metadata={"help": "val loss, HellaSwag and samples every N steps (and at the end)"})
    val_steps: int = field(default=20, metadata={"help": "val batches per rank per evaluation (always the same ones)"})
    hellaswag_limit: int = field(default=-1, metadata={"help": "HellaSwag examples per evaluation (-1: all 10,042; 0: off)"})
    hellaswag_data: str = field(default="", metadata={"help": "hellaswag_val.jsonl; empty: download once (sha256-checked)"})
    num_samples: int = field(default=4, metadata={"help": "samples printed per evaluation (0: off)"})
    sample_tokens: int = field(default=32, metadata={"help": "tokens per sample"})
    sample_prompt: str = field(default="Hello, I'm a language model,", metadata={"help": "prompt for the samples"})
    ckpt_every: int = field(default=5000, metadata={"help": "checkpoint every N steps (and at the end; 0: at the end only)"})
    # system
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | mps"})
    dtype: str = field(default="bfloat16", metadata={"help": "autocast dtype: bfloat16 | float32 (no autocast)"})
    tf32: bool = field(default=True, metadata={"help": "TF32 matmuls for float32 (CUDA)"})
    compile: bool = field(default=True, metadata={"help": "torch.compile the model"})
    flash: bool = field(default=True, metadata={"help": "flash attention (scaled_dot_product_attention)"})
    fused_adamw: bool = field(default=True, metadata={"help": "fused AdamW kernel (CUDA only; ignored elsewhere)"})


PRESETS = {
    "gpt2-124m": {},  # the defaults above
    "tiny": dict(  # about 30 s of CPU time (README: 100 steps on Tiny Shakespeare)
        data_dir="build_nanogpt/data/shakespeare", out_dir="build_nanogpt/out-tiny", n_layer=2, n_head=2,
        n_embd=64, block_size=64, micro_batch=4, total_batch=512, max_lr=3e-3, warmup_steps=10, max_steps=100,
        eval_every=50, val_steps=4, hellaswag_limit=20, num_samples=2, sample_tokens=16, ckpt_every=50,
        dtype="float32", compile=False,
    ),
}


def check_config(cfg: TrainConfig, world: int) -> int:
    """Validate the config; return the gradient accumulation steps."""
    if cfg.dtype not in ("bfloat16", "float32"):
        raise UserError(f"--dtype {cfg.dtype!r}: use bfloat16 or float32")
    if cfg.device not in ("auto", "cpu", "cuda", "mps"):
        raise UserError(f"--device {cfg.device!r}: use auto, cpu, cuda or mps")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda, but CUDA is not available")
    if cfg.device == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps, but MPS is not available")
    for name in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "micro_batch", "max_steps", "val_steps"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} {getattr(cfg, name)}: must be >= 1")
    if cfg.vocab_size < GPT2_VOCAB:  # the shards hold GPT-2 token ids: a smaller table cannot embed them
        raise UserError(f"--vocab-size {cfg.vocab_size}: must be >= {GPT2_VOCAB} (the GPT-2 tokens)")
    if cfg.hellaswag_limit < -1:
        raise UserError(f"--hellaswag-limit {cfg.hellaswag_limit}: use -1 (all), 0 (off) or N >= 1")
    if cfg.stop_at == 0 or cfg.stop_at < -1:  # step 0 has nothing to checkpoint yet
        raise UserError(f"--stop-at {cfg.stop_at}: use -1 (run to --max-steps) or a step >= 1")
    if cfg.n_embd % cfg.n_head:
        raise UserError(f"--n-embd {cfg.n_embd} is not divisible by --n-head {cfg.n_head}")
    per_step = cfg.micro_batch * cfg.block_size * world
    if cfg.total_batch < per_step or cfg.total_batch % per_step:
        raise UserError(f"--total-batch {cfg.total_batch} must be a multiple of micro_batch*block_size*world "
                        f"= {cfg.micro_batch}*{cfg.block_size}*{world} = {per_step}")
    return cfg.total_batch // per_step


def get_lr(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine from max_lr down to min_lr_ratio*max_lr at max_steps."""
    min_lr = cfg.max_lr * cfg.min_lr_ratio
    if step < cfg.warmup_steps:
        return cfg.max_lr * (step + 1) / cfg.warmup_steps
    if step >= cfg.max_steps:
        return min_lr
    ratio = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.max_lr - min_lr)


def forward_backward(model, batches, autocast=nullcontext, ddp: bool = False) -> torch.Tensor:
    """Accumulate the gradient of the mean loss over `batches` (micro-batches); return that loss.

    Each micro-loss is divided by the number of micro-batches, so the summed gradient equals the
    gradient of one big batch. Under DDP only the last backward all-reduces (no_sync on the others).
    """
    loss_accum = torch.zeros((), device=batches[0][0].device)
    for i, (x, y) in enumerate(batches):
        sync = i == len(batches) - 1
        with model.no_sync() if ddp and not sync else nullcontext():
            with autocast():
                _, loss = model(x, y)
            loss = loss / len(batches)
            loss.backward()
        loss_accum += loss.detach()
    return loss_accum


def all_reduce_mean(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)  # gloo has no AVG
        t = t / world
    return t


@torch.no_grad()
def val_loss(model, loader: ShardLoader, steps: int, device: str, autocast, world: int) -> float:
    """Mean loss over the first `steps` val batches of every rank (a fixed set: the loader is reset)."""
    loader.reset()
    total = torch.zeros((), device=device)
    for _ in range(steps):
        x, y = loader.next_batch()
        with autocast():
            _, loss = model(x.to(device), y.to(device))
        total += loss.float() / steps
    return all_reduce_mean(total, world).item()


@torch.no_grad()
def samples(model, enc, cfg: TrainConfig, step: int, device: str, autocast, rank: int, world: int) -> list[str]:
    """`num_samples` continuations of the prompt, split across ranks, gathered on every rank."""
    mine = list(range(rank, cfg.num_samples, world))
    texts = []
    if mine:
        gen = torch.Generator(device=device).manual_seed(cfg.seed + 1000 * step + rank)
        ids = enc.encode(cfg.sample_prompt) or [enc.eot_token]  # an empty prompt: start a new document
        prompt = torch.tensor(ids, dtype=torch.long, device=device)
        prompt = prompt[-cfg.block_size:].unsqueeze(0).repeat(len(mine), 1)  # (n, t)
        with autocast():
            out = model.generate(prompt, cfg.sample_tokens, generator=gen)  # (n, t + sample_tokens)
        texts = [enc.decode([t for t in row if t < enc.n_vocab]) for row in out.tolist()]
    if world > 1:
        parts = [None] * world
        dist.all_gather_object(parts, texts)
        texts = [t for p in parts for t in p]
    return texts


def replica_max_diff(model, world: int) -> float:
    """Largest difference between rank 0's and any rank's per-tensor parameter sums (0.0 = in sync)."""
    if world == 1:
        return 0.0
    fp = torch.stack([p.detach().double().sum() for p in model.parameters()])  # on the model's device
    if dist.get_backend() != "nccl":
        fp = fp.cpu()  # gloo gathers CPU tensors; nccl gathers CUDA tensors
    parts = [torch.zeros_like(fp) for _ in range(world)]
    dist.all_gather(parts, fp)
    return max((p.cpu() - parts[0].cpu()).abs().max().item() for p in parts)


def save_checkpoint(path: str, state: dict) -> None:
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a crash mid-save leaves the previous checkpoint intact


def plot_curves(records: list[dict], path: str) -> None:
    train = [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]
    val = [(r["step"], r["val_loss"]) for r in records if r["kind"] == "val"]
    hs = [(r["step"], r["acc_norm"]) for r in records if r["kind"] == "hellaswag"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    if train:
        ax1.plot(*zip(*train), lw=0.8, label="train loss")
    if val:
        ax1.plot(*zip(*val), "o-", ms=3, label="val loss")
    ax1.axhline(REF_VAL_LOSS, color="r", ls="--", lw=1, label=f"GPT-2 124M, FineWeb-Edu val ({REF_VAL_LOSS})")
    ax1.set(xlabel="step", ylabel="cross-entropy (nats/token)", title="loss")
    ax1.legend()
    if hs:
        n = [r["n"] for r in records if r["kind"] == "hellaswag"][-1]  # few examples: a noisy estimate
        ax2.plot(*zip(*hs), "o-", ms=3, label=f"this model ({n} examples)")
    else:
        ax2.text(0.5, 0.5, "not evaluated (--hellaswag-limit 0)", transform=ax2.transAxes, ha="center", color="gray")
    for (name, acc), color in zip(REF_HELLASWAG.items(), ("r", "g")):
        ax2.axhline(acc, color=color, ls="--", lw=1, label=f"{name} ({acc})")
    ax2.axhline(0.25, color="gray", ls=":", lw=1, label="chance (0.25)")
    ax2.set(xlabel="step", ylabel="acc_norm", title="HellaSwag")
    ax2.legend()
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


class Logger:
    """log.jsonl (one JSON object per record) beside a human-readable log.txt; rank 0 only.

    `keep_before` is the step the run starts from: 0 starts fresh logs; a resumed run keeps the
    records before that step and drops the later ones (it writes them again).
    """

    def __init__(self, out_dir: str, enabled: bool, keep_before: int):
        self.enabled = enabled
        self.jsonl, self.txt = os.path.join(out_dir, "log.jsonl"), os.path.join(out_dir, "log.txt")
        self.png = os.path.join(out_dir, "curves.png")
        self.records: list[dict] = []
        if not enabled:
            return
        if keep_before > 0 and os.path.exists(self.jsonl):  # resume: drop what came after the checkpoint
            with open(self.jsonl) as f:
                self.records = [r for r in map(json.loads, f) if r["step"] < keep_before]
        with open(self.jsonl, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in self.records)
        if keep_before == 0:
            open(self.txt, "w").close()
        else:  # log.txt is append-only: mark where the resumed run takes over
            with open(self.txt, "a") as f:
                f.write(f"resumed from the checkpoint at step {keep_before} (lines above from step "
                        f"{keep_before} on are superseded)\n")

    def log(self, record: dict, text: str) -> None:
        if not self.enabled:
            return
        print(text, flush=True)
        self.records.append(record)
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")
        with open(self.txt, "a") as f:
            f.write(text + "\n")

    def plot(self) -> None:
        if self.enabled:
            plot_curves(self.records, self.png)


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(TrainConfig, argv, "\n\n".join(__doc__.split("\n\n")[:2]), PRESETS)
    ddp = "RANK" in os.environ  # started by torchrun
    rank, local_rank, world = (int(os.environ.get(k, d)) for k, d in (("RANK", 0), ("LOCAL_RANK", 0), ("WORLD_SIZE", 1)))
    grad_accum = check_config(cfg, world)
    master = rank == 0

    if cfg.device == "auto":
        device = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    else:
        device = cfg.device
    if device == "cuda":
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    device_type = device.split(":")[0]

    # everything a user can get wrong is checked before anything is written
    train_loader = ShardLoader(cfg.data_dir, "train", cfg.micro_batch, cfg.block_size, rank, world, cfg.seed)
    val_loader = ShardLoader(cfg.data_dir, "val", cfg.micro_batch, cfg.block_size, rank, world, shuffle=False)
    ckpt_path = os.path.join(cfg.out_dir, "ckpt.pt")
    if cfg.resume and not os.path.exists(ckpt_path):
        raise UserError(f"--resume: no checkpoint at {ckpt_path!r}")
    hs_path = cfg.hellaswag_data
    if cfg.hellaswag_limit != 0 and not hs_path:
        # cached after the first time (each rank checks the sha256)
        hs_path = download_hellaswag(hint="pass a local copy with --hellaswag-data PATH, or --hellaswag-limit 0")
    examples = load_examples(hs_path, cfg.hellaswag_limit) if cfg.hellaswag_limit != 0 else []

    if ddp:
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    if master:
        os.makedirs(cfg.out_dir, exist_ok=True)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    if cfg.tf32 and device_type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 tensor cores for float32 matmuls

    model_args = dict(block_size=cfg.block_size, vocab_size=cfg.vocab_size, n_layer=cfg.n_layer,
                      n_head=cfg.n_head, n_embd=cfg.n_embd, flash=cfg.flash)
    model = GPT(GPTConfig(**model_args)).to(device)
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.max_lr, (cfg.beta1, cfg.beta2), cfg.eps,
                                           fused=cfg.fused_adamw and device_type == "cuda")
    start_step = 0
    if cfg.resume:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)  # load_state_dict moves to device
        if ckpt["model_args"] != model_args:
            raise UserError(f"--resume: {ckpt_path} holds a model {ckpt['model_args']}, not {model_args}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        train_loader.load_state_dict(ckpt["loader"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if device_type == "cuda" and "cuda" in ckpt["rng"]:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
        start_step = ckpt["step"]
    compiled = torch.compile(model) if cfg.compile else model  # wraps `model`: same parameters
    train_model = DDP(compiled, device_ids=[local_rank] if device_type == "cuda" else None) if ddp else compiled

    use_bf16 = cfg.dtype == "bfloat16"
    autocast = (lambda: torch.autocast(device_type=device_type, dtype=torch.bfloat16)) if use_bf16 else nullcontext
    enc = tiktoken.get_encoding("gpt2")
    peak = peak_flops(device_name(device), "bf16" if use_bf16 else ("tf32" if cfg.tf32 else "fp32"))
    flops_step = flops_per_token(model.config, model.num_params()) * cfg.total_batch
    logger = Logger(cfg.out_dir, master, start_step)
    if master:
        print(f"{model.num_params():,} parameters | device {device_name(device)} | world {world} | "
              f"grad accumulation {grad_accum} | {cfg.total_batch:,} tokens/step | start step {start_step}")
        if cfg.device == "auto" and device_type == "cpu" and model.num_params() > 20e6:
            print("note: no GPU found, so this model trains on the CPU (very slowly); --preset tiny is sized for a CPU")

    stop = cfg.max_steps if cfg.stop_at < 0 else min(cfg.stop_at, cfg.max_steps)
    for step in range(start_step, stop + 1):
        # ---- evaluation (the compiled module for val; the eager one for variable shapes) ----
        if (cfg.eval_every > 0 and step % cfg.eval_every == 0) or step == cfg.max_steps:
            model.eval()
            vl = val_loss(compiled, val_loader, cfg.val_steps, device, autocast, world)
            diff = replica_max_diff(model, world)
            logger.log({"kind": "val", "step": step, "val_loss": vl, "replica_max_diff": diff},
                       f"step {step:5d} | val loss {vl:.4f} | replicas max diff {diff:.3g}")
            if examples:
                result = hellaswag_evaluate(model, examples, enc, device, batch_size=8, autocast=autocast,
                                            rank=rank, world=world)
                # nccl reduces CUDA tensors, gloo (CPU and MPS runs) CPU tensors
                counts = torch.tensor([result["n"], result["correct"], result["correct_norm"]], dtype=torch.long,
                                      device=device if device_type == "cuda" else "cpu")
                if ddp:
                    dist.all_reduce(counts)
                n, c, cn = counts.tolist()
                logger.log({"kind": "hellaswag", "step": step, "n": n, "acc": c / n, "acc_norm": cn / n},
                           f"step {step:5d} | hellaswag acc_norm {cn / n:.4f} acc {c / n:.4f} ({n} examples)")
            if cfg.num_samples > 0:
                texts = samples(model, enc, cfg, step, device, autocast, rank, world)
                logger.log({"kind": "sample", "step": step, "texts": texts},
                           "\n".join(f"step {step:5d} | sample {i}: {t!r}" for i, t in enumerate(texts)))
            logger.plot()
            model.train()
        if step == stop:
            break

        # ---- one optimizer step over total_batch tokens ----
        t0 = time.time()
        optimizer.zero_grad(set_to_none=True)
        batches = [tuple(t.to(device, non_blocking=True) for t in train_loader.next_batch()) for _ in range(grad_accum)]
        loss = all_reduce_mean(forward_backward(train_model, batches, autocast, ddp), world)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else torch.zeros(())
        lr = get_lr(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        if device_type == "cuda":
            torch.cuda.synchronize()
        dt = time.time() - t0
        tok_s = cfg.total_batch / dt
        mfu = flops_step / dt / (peak * world) if peak else None
        logger.log({"kind": "train", "step": step, "loss": loss.item(), "lr": lr, "norm": float(norm),
                    "dt_ms": 1000 * dt, "tok_per_s": tok_s, "mfu": mfu},
                   f"step {step:5d} | loss {loss.item():.6f} | lr {lr:.4e} | norm {float(norm):.4f} | "
                   f"dt {1000 * dt:.2f}ms | tok/sec {tok_s:,.0f}" + (f" | mfu {100 * mfu:.1f}%" if mfu else ""))

        done = step + 1
        if master and ((cfg.ckpt_every > 0 and done % cfg.ckpt_every == 0) or done == stop):
            save_checkpoint(ckpt_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": done,
                "loader": train_loader.state_dict(), "config": asdict(cfg), "model_args": model_args,
                "rng": {"torch": torch.get_rng_state(),
                        **({"cuda": torch.cuda.get_rng_state()} if device_type == "cuda" else {})},
            })
    logger.plot()
    if master:
        what = f"stopped at step {stop} (--stop-at); continue with --resume true" if stop < cfg.max_steps else "done"
        print(f"{what} | log.txt, log.jsonl, curves.png, ckpt.pt in {cfg.out_dir}")
    if ddp:
        dist.barrier()
        # free the DDP reducer (it holds the gloo group) before tearing the group down: torn down under it,
        # a rank can abort at exit (SIGABRT) and leave the other node's torchrun waiting in its exit barrier
        del train_model
        gc.collect()
        dist.destroy_process_group()


if __name__ == "__main__":
    run_main(main)
