"""build_nanogpt's CUDA paths on tiny models: `pytest -m gpu tests/build_nanogpt` on a machine with a GPU (skipped
elsewhere). bf16 autocast, torch.compile, flash attention, fused AdamW, float16 with a GradScaler, resume on CUDA,
and torchrun with nccl and one process."""
import pytest
import torch

import model as M
import train
from helpers import TINY, records

pytestmark = pytest.mark.gpu
CUDA = ["--device", "cuda", "--eval-interval", "4", "--max-iters", "8"]


@pytest.fixture(autouse=True)
def full_float32():
    """train.main turns TF32 on for the process; the comparisons here want float32 matmuls."""
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision("highest")


def tiny_gpt(flash: bool = True, seed: int = 0) -> M.GPT:
    torch.manual_seed(seed)
    return M.GPT(M.GPTConfig(block_size=64, vocab_size=512, n_layer=2, n_head=4, n_embd=64, flash=flash)).cuda()


def batch(B: int = 4, T: int = 64):
    g = torch.Generator(device="cuda").manual_seed(1)
    data = torch.randint(0, 512, (B, T + 1), device="cuda", generator=g)
    return data[:, :-1], data[:, 1:]


def test_bf16_autocast_step_is_close_to_float32():
    x, y = batch()
    model = tiny_gpt()
    _, ref = model(x, y)
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        logits, loss = model(x, y)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32  # the loss is taken in float32
    assert loss.item() == pytest.approx(ref.item(), rel=2e-2)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_flash_attention_equals_explicit_softmax():
    x, _ = batch()
    fast, slow = tiny_gpt(flash=True), tiny_gpt(flash=False)
    slow.load_state_dict(fast.state_dict())
    with torch.no_grad(), torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        torch.testing.assert_close(fast(x)[0].float(), slow(x)[0].float(), atol=5e-2, rtol=5e-2)
    with torch.no_grad():  # float32: the SDPA math/efficient kernels agree closely
        torch.testing.assert_close(fast(x)[0], slow(x)[0], atol=1e-4, rtol=1e-4)


def test_compiled_model_equals_eager():
    x, y = batch()
    model = tiny_gpt()
    compiled = torch.compile(model)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, y)[1], model(x, y)[1], atol=1e-4, rtol=1e-4)
    _, loss = compiled(x, y)
    loss.backward()  # the backward graph compiles too
    assert torch.isfinite(model.lm_head.weight.grad).all()


def test_fused_adamw_equals_the_loop_kernel():
    x, y = batch()
    a, b = tiny_gpt(), tiny_gpt()
    opt_a = a.configure_optimizers(0.1, 1e-3, fused=True)
    opt_b = b.configure_optimizers(0.1, 1e-3, fused=False)
    assert opt_a.defaults["fused"] and not opt_b.defaults["fused"]
    for _ in range(3):
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad(set_to_none=True)
            model(x, y)[1].backward()
            opt.step()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_resume_on_cuda_gives_the_same_losses(dtype, shards, tmp_path, capsys):
    """Stop at iter 3, resume: the losses of an uninterrupted run (within rounding: CUDA's embedding backward
    adds with atomics, so the last bits may differ). float16 runs with a GradScaler, saved in the checkpoint."""
    a, b = tmp_path / "a", tmp_path / "b"
    common = TINY + CUDA + ["--data-dir", str(shards), "--dtype", dtype, "--compile", "--fused-adamw"]
    assert train.main(common + ["--out-dir", str(a)]) == 0
    assert train.main(common + ["--out-dir", str(b), "--stop-at", "3"]) == 0
    assert train.main(common + ["--out-dir", str(b), "--resume"]) == 0
    la, lb = records(a, "train"), records(b, "train")
    assert [r["iter"] for r in lb] == list(range(8))
    assert [r["loss"] for r in la] == pytest.approx([r["loss"] for r in lb], abs=2e-3)
    assert la[-1]["loss"] < la[0]["loss"]
    assert all(r["mfu"] is None or 0 < r["mfu"] < 1 for r in la)
    ckpt = torch.load(b / "ckpt.pt", weights_only=True)
    assert ("scale" in ckpt["scaler"]) == (dtype == "float16")
    assert "cuda" in ckpt["rng"]


@pytest.mark.distributed
def test_torchrun_nccl_one_process(torchrun, shards, tmp_path):
    out = tmp_path / "nccl"
    env = {"CUDA_VISIBLE_DEVICES": "0"}
    nodes = torchrun("build_nanogpt/train.py", *TINY, *CUDA, "--data-dir", shards, "--out-dir", out,
                     nproc=1, env=env, timeout=300)
    r = nodes[0]
    assert r.returncode == 0, r.stderr[-3000:]
    assert "world 1" in r.stdout
    val = records(out, "val")
    assert [v["iter"] for v in val] == [0, 4, 8] and val[-1]["val_loss"] < val[0]["val_loss"]
