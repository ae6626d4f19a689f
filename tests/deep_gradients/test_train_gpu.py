"""deep_gradients/train.py on CUDA (marked gpu: skipped without a GPU; `pytest -m gpu tests/deep_gradients`):
bf16, fp16 + GradScaler, torch.compile, channels_last + cudnn.benchmark, exact resume, torchrun with nccl."""
import pytest
import torch
from helpers import LEARNS, config, read_jsonl, results, training_flops_per_image, weights

import hardware
import train

pytestmark = pytest.mark.gpu
GPU = dict(device="cuda")


def max_diff(a: dict, b: dict) -> float:
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def learned(res: dict) -> bool:
    """Real progress, as the CPU test of the same tiny run demands: the loss down by 40%, well above chance."""
    ep = res["epochs"]
    return ep[-1]["train_loss"] < 0.6 * ep[0]["train_loss"] and res["final_test_acc"] > 0.5


def test_bf16_channels_last_cudnn_benchmark_learns_and_reports_memory_util_and_mfu(tmp_path, monkeypatch):
    if not hardware.native_bf16(torch.device("cuda")):
        pytest.skip("this GPU has no native bfloat16")
    res = train.run(config(tmp_path / "bf16", **LEARNS, dtype="bfloat16", channels_last=True, cudnn_benchmark=True,
                           **GPU))
    assert learned(res), res["epochs"]
    ep = res["epochs"][-1]
    assert res["device"].startswith("cuda") and ep["peak_mem_mb"] > 0
    assert (ep["gpu_util"] is None) == (res["gpu_util_problem"] is not None)  # a missing NVML is said
    assert res["warmup_s"] > 0  # --cudnn-benchmark: the autotuning ran in untimed warm-up steps
    # MFU: the training FLOPs of an image (counted by torch on a real backward) x images/s per GPU / its peak
    flops, peak = training_flops_per_image(res["config"]), hardware.peak_flops(res["device_name"], "bfloat16")
    assert res["flops_per_image_train"] == flops
    if peak is None:
        assert ep["mfu"] is None  # a GPU missing from hardware.PEAK_FLOPS has no MFU, not a made-up one
    else:
        assert ep["mfu"] == pytest.approx(ep["images_per_s"] / res["world_size"] * flops / peak) and 0 < ep["mfu"] < 1
    pinned, pin = [], torch.Tensor.pin_memory
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda x, *a: (pinned.append(x.shape), pin(x, *a))[1])
    host = train.run(config(tmp_path / "host", max_epochs=2, data_on_device=False, **GPU))
    assert len(host["epochs"]) == 2
    assert len(pinned) == 2 * 8  # --no-data-on-device: images and labels of all 8 steps copied from pinned memory


def test_fp16_with_grad_scaler_learns_and_the_recorder_sees_true_gradients(tmp_path):
    res = train.run(config(tmp_path / "fp16", **LEARNS, dtype="float16", record_interval=1, **GPU))
    assert learned(res), res["epochs"]
    rows = read_jsonl(tmp_path / "fp16" / "evolution.jsonl")
    g = [r["params"]["fc.weight"]["g_norm"] for r in rows if r["params"]["fc.weight"]["g_norm"] is not None]
    assert g and max(g) < 100  # unscaled: the GradScaler's factor starts at 65536
    ck = torch.load(tmp_path / "fp16" / "ckpt.pt", weights_only=True)
    assert ck["scaler"]["scale"] > 0  # the scaler's state is saved for an exact resume


def test_compile_in_the_untimed_warmup_matches_eager(tmp_path):
    eager = train.run(config(tmp_path / "eager", max_epochs=1, **GPU))
    compiled = train.run(config(tmp_path / "compiled", max_epochs=1, compile=True, **GPU))  # auto warm-up
    assert compiled["finished"] and eager["warmup_s"] == 0
    # compilation (tens of seconds) happened in the warm-up: the timed epoch of 4 steps is a small part of it
    assert compiled["epochs"][0]["epoch_time_s"] < compiled["warmup_s"] / 5, (compiled["warmup_s"], compiled["epochs"])
    assert compiled["epochs"][0]["train_loss"] == pytest.approx(eager["epochs"][0]["train_loss"], rel=1e-2)
    assert max_diff(weights(tmp_path / "eager"), weights(tmp_path / "compiled")) < 1e-2


def test_resume_on_cuda_is_exact(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    full = train.run(config(tmp_path / "full", max_epochs=3, **GPU))
    train.run(config(tmp_path / "part", max_epochs=3, stop_after=1, **GPU))
    part = train.run(config(tmp_path / "part", max_epochs=3, resume="last", **GPU))
    assert max_diff(weights(tmp_path / "full"), weights(tmp_path / "part")) < 1e-6
    assert [e["train_loss"] for e in part["epochs"]] == pytest.approx([e["train_loss"] for e in full["epochs"]],
                                                                       rel=1e-6)


def test_torchrun_nccl_one_process_matches_a_plain_run(torchrun, tmp_path):
    args = ("--depth", "8", "--width", "4", "--train-subset", "256", "--batch-size", "64", "--max-epochs", "2",
            "--no-progress", "--no-batch-norm", "--device", "cuda")
    (r,) = torchrun("deep_gradients/train.py", *args, "--out-dir", tmp_path / "ddp", nproc=1, timeout=300)
    assert r.returncode == 0, r.stderr
    assert results(tmp_path / "ddp")["world_size"] == 1
    train.run(config(tmp_path / "one", max_epochs=2, batch_norm=False, **GPU))
    assert max_diff(weights(tmp_path / "ddp"), weights(tmp_path / "one")) < 1e-4
