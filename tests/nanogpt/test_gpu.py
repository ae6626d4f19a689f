"""nanogpt's CUDA paths on tiny models: `pytest -m gpu tests/nanogpt` on a machine with a GPU (skipped elsewhere).

bf16 and fp16 + GradScaler training, torch.compile, the SDPA flash kernel, fused AdamW, resume on CUDA,
torchrun with nccl and one process, sampling with the KV cache, and the benchmarks' device timing.
"""
import json

import pytest
import torch

import bench
import hardware
import sample
import train
from helpers import call_main, read_log, read_records, run_args, tiny_gpt

pytestmark = pytest.mark.gpu

CUDA = ["--device", "cuda"]


def cuda_args(data_dir, out_dir, *extra):
    """The tiny CPU run of helpers.run_args, moved to the GPU (later flags win)."""
    return [*run_args(data_dir, out_dir), *CUDA, *extra]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_mixed_precision_training_learns(capsys, tiny_data, tmp_path, dtype):
    if dtype == "bfloat16" and not hardware.native_bf16("cuda"):
        pytest.skip("this GPU has no native bfloat16")
    out = tmp_path / dtype
    r = call_main(train.main, capsys, *cuda_args(tiny_data, out, "--dtype", dtype, "--max-epochs", 2))
    assert r.returncode == 0, r.stderr
    log = read_log(out)
    assert log[-1]["val_loss"] < log[0]["val_loss"] - 0.3
    res = json.loads((out / "results.json").read_text())
    assert res["device"]["dtype"] == dtype and res["device"]["device"].startswith("cuda")
    assert all(torch.isfinite(torch.tensor(s["loss"])) for s in read_records(out) if "loss" in s)
    scaler = torch.load(out / "ckpt_last.pt", weights_only=True)["scaler"]
    if dtype == "float16":  # the GradScaler ran and its state is saved
        assert scaler["scale"] > 0 and "_growth_tracker" in scaler
    else:
        assert scaler == {}


def test_compile_trains_and_saves_plain_names(capsys, tiny_data, tmp_path):
    out = tmp_path / "compiled"
    r = call_main(train.main, capsys, *cuda_args(tiny_data, out, "--compile", "--max-iters", 20,
                                                 "--eval-interval", 10))
    assert r.returncode == 0, r.stderr
    assert " compiled" in r.stdout
    res = json.loads((out / "results.json").read_text())
    assert res["device"]["compile"] is True
    ckpt = torch.load(out / "ckpt_last.pt", weights_only=True)
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in ckpt["model"])
    log = read_log(out)
    assert log[-1]["val_loss"] < log[0]["val_loss"]
    assert log[1]["tokens_per_s"] and log[1]["tokens_per_s"] > 0  # the compile step is not in the window


def test_flash_attention_matches_the_explicit_path():
    """SDPA with the flash kernel forced (bf16, causal) against the textbook softmax path."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    gpt = tiny_gpt(n_head=2, n_embd=64, block_size=64).cuda()
    idx = torch.randint(0, 61, (4, 64), device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            fast, _ = gpt(idx)
        for block in gpt.transformer.h:
            block.attn.flash = False
        slow, _ = gpt(idx)
    assert (fast.float() - slow.float()).abs().max().item() < 5e-2  # bf16 rounding, not a different function


def test_fused_adamw_on_cuda_steps():
    gpt = tiny_gpt().cuda().train()
    opt = gpt.configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cuda")
    assert opt.defaults.get("fused") is True
    before = gpt.lm_head.weight.detach().clone()
    _, loss = gpt(torch.randint(0, 61, (2, 32), device="cuda"), torch.randint(0, 61, (2, 32), device="cuda"))
    loss.backward()
    opt.step()
    assert not torch.equal(before, gpt.lm_head.weight) and torch.isfinite(gpt.lm_head.weight).all()


def test_resume_on_cuda_continues_the_run(capsys, tiny_data, tmp_path):
    """float32 without TF32: a run stopped after epoch 1 and resumed logs the losses of the uninterrupted run
    (within float tolerance: some CUDA backward kernels accumulate with atomics), and its RNG state comes back."""
    common = ["--dtype", "float32", "--no-tf32", "--lr-decay-iters", 62, "--dropout", 0.1]
    full, part = tmp_path / "full", tmp_path / "part"
    assert call_main(train.main, capsys, *cuda_args(tiny_data, full, *common, "--max-epochs", 2)).returncode == 0
    assert call_main(train.main, capsys, *cuda_args(tiny_data, part, *common, "--max-epochs", 1)).returncode == 0
    ckpt = torch.load(part / "ckpt_last.pt", weights_only=True)
    assert ckpt["rng"]["cuda"], "the CUDA RNG state is saved"
    r = call_main(train.main, capsys, "--out-dir", part, "--resume", "--max-epochs", 2)
    assert r.returncode == 0, r.stderr
    a, b = read_log(full), read_log(part)
    assert [e["iter"] for e in a] == [e["iter"] for e in b]
    for x, y in zip(a, b):
        assert x["val_loss"] == pytest.approx(y["val_loss"], rel=1e-4), x["iter"]


@pytest.mark.distributed
def test_torchrun_with_nccl_and_one_process(torchrun, tiny_data, tmp_path):
    out = tmp_path / "nccl"
    (r,) = torchrun("nanogpt/train.py", *cuda_args(tiny_data, out, "--max-iters", 8), nproc=1, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "1 rank(s) x 1 micro-step(s)" in r.stdout and "device cuda:0" in r.stdout
    assert json.loads((out / "results.json").read_text())["final"]["iter"] == 8


def test_kv_cache_sampling_on_cuda(capsys, tmp_path):
    gpt = tiny_gpt(vocab_size=256).cuda()
    prompt = torch.randint(0, 256, (2, 5), device="cuda")
    cached = gpt.generate(prompt, 60, temperature=0)  # past block_size 32
    assert torch.equal(cached, gpt.generate(prompt, 60, temperature=0, use_cache=False))
    (tmp_path / "data" / "b").mkdir(parents=True)
    (tmp_path / "data" / "b" / "meta.json").write_text(json.dumps({"tokenizer": "byte", "vocab_size": 256}))
    torch.save({"model": gpt.state_dict(), "model_args": gpt.config.__dict__,
                "config": {"dataset": "b", "data_dir": str(tmp_path / "data")}}, tmp_path / "b.pt")
    r = call_main(sample.main, capsys, "--init-from", tmp_path / "b.pt", "--device", "cuda", "--num-samples", 1,
                  "--max-new-tokens", 20)
    assert r.returncode == 0, r.stderr
    dtype = "bfloat16" if hardware.native_bf16("cuda") else "float16"  # --dtype auto on a GPU
    assert r.stdout.rstrip().endswith(f"(KV cache, cuda, {dtype})")


def test_bench_on_cuda(capsys, tmp_path):
    r = call_main(bench.main, capsys, "--device", "cuda", "--dtype", "bfloat16" if hardware.native_bf16("cuda")
                  else "float16", "--iters", 2, "--rounds", 1, "--warmup", 1, "--out-dir", tmp_path)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["ours"]["ms_per_iter"] > 0 and result["device_name"] == torch.cuda.get_device_name()
    r = call_main(bench.main, capsys, "--generate", "--device", "cuda", "--dtype", "bfloat16", "--max-new-tokens", 32,
                  "--out-dir", tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["same_tokens"] is True  # compared in float32
