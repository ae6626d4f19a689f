"""nanogpt/train.py: runs, bad input, mixed precision, what the run says, and stopping a diverged run.

Runs on a tiny char-level slice of Tiny Shakespeare (2,048 train tokens) and a 2-layer, 32-wide model, so
an epoch is a few dozen steps and a run takes seconds. Helpers: tests/nanogpt/helpers.py.
"""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import data
import model
import train
from config import TrainConfig
from helpers import call_main, read_log, read_records, run_args

ROOT = Path(__file__).resolve().parents[2]


def test_scripts_run_on_a_torch_without_fully_shard(tiny_data, tmp_path):
    """torch before 2.6 has no torch.distributed.fsdp.fully_shard: train.py, sample.py, bench.py and export.py
    still import, train.py still trains, and --fsdp alone is refused in one line naming the torch it needs."""
    code = ("import sys, torch.distributed.fsdp\n"
            "del torch.distributed.fsdp.fully_shard\n"
            "sys.path.insert(0, 'nanogpt')\n"
            "import bench, export, sample, train, cli\n"
            "cli.run_main(train.main, sys.argv[1:])\n")

    def train_py(*args):
        return subprocess.run([sys.executable, "-c", code, *map(str, run_args(tiny_data, *args))], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    r = train_py(tmp_path / "plain", "--max-iters", 2, "--final-eval-tokens", 0)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "plain" / "results.json").exists()
    r = train_py(tmp_path / "fsdp", "--fsdp")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.strip().endswith(f"error: --fsdp needs torch >= 2.6 (torch.distributed.fsdp.fully_shard); "
                                     f"this is torch {torch.__version__}"), r.stderr


# --------------------------------------------------------------------------------------------------
# bad input: exit 2, one line, before training


@pytest.mark.parametrize("args, needles", [
    (["--n-embd", 30, "--n-head", 4], ["--n-embd 30", "--n-head 4"]),
    (["--block-size", 100_000], ["--block-size 100000", "larger than the data"]),
    (["--batch-tokens", 100], ["--batch-tokens 100", "a multiple of --batch-size"]),
    (["--preset", "nope"], ["unknown preset", "nope"]),
    (["--dataset", "no_such_dataset"], ["no_such_dataset"]),
    (["--dtype", "float64"], ["float64"]),
    (["--n-layer", "abc"], ["n-layer", "abc"]),
    (["--save-epochs", "1,x"], ["--save-epochs '1,x'"]),
    (["--final-eval-tokens", -5], ["--final-eval-tokens -5: must be in [0, inf]"]),
    (["--init-from", "/no/such/file.pt"], ["/no/such/file.pt"]),
    (["--seed", -1], ["--seed -1: must be in [0, 4294967295]"]),  # numpy's seeding would crash mid-run
    (["--batch-tokens", -64], ["--batch-tokens -64: must be in [0, inf]"]),
    (["--beta2", 1.5], ["beta2", "1.5"]),
    (["--learning-rate", -1], ["--learning-rate -1.0: must be in [0, inf]"]),
    (["--n-layer", 100_000, "--n-embd", 4096], ["--n-layer 100000", "GiB in float32", "more than this machine"]),
    (["--block-size", 10**12], ["--block-size 1000000000000", "more than this machine"]),  # not "larger than the data"
])
def test_bad_config_exits_2_with_one_line(tiny_data, tmp_path, capsys, clean_error, args, needles):
    r = call_main(train.main, capsys, *run_args(tiny_data, tmp_path / "out"), *args)
    clean_error(r, *needles)
    fields = [f.name for f in dataclasses.fields(TrainConfig) if "_" in f.name]
    assert not [name for name in fields if name in r.stderr], r.stderr  # flags as typed: --kebab-case
    assert not (tmp_path / "out" / "ckpt_last.pt").exists()


@pytest.mark.parametrize("args, needles", [
    (["--block-size", 2048], ["--block-size 2048 (typed)", "gpt2 allows (1024 positions)"]),
    (["--n-head", 4], ["--n-head 4 (typed) contradicts --init-from gpt2", "--n-head 12; leave it out"]),
    (["--block-size", 16, "--batch-size", 4], ["tokenizer", "char"]),  # GPT-2 weights on a char-level dataset
])
def test_init_from_gpt2_refusals_come_before_any_download(tiny_data, tmp_path, capsys, clean_error, args, needles):
    """What --init-from gpt2 refuses is refused in one line before any download (the tests run offline): a
    contradicting shape from GPT-2's known size, a char-level dataset from its meta.json."""
    r = call_main(train.main, capsys, "--dataset", "shakespeare_char", "--data-dir", tiny_data, "--device", "cpu",
                  "--out-dir", tmp_path / "out", "--init-from", "gpt2", *args)
    clean_error(r, *needles)
    fields = [f.name for f in dataclasses.fields(TrainConfig) if "_" in f.name]
    assert not [name for name in fields if name in r.stderr], r.stderr


def test_eval_interval_0_evaluates_only_at_epoch_ends_and_at_the_end(capsys, tiny_data, tmp_path):
    """issue 29: --eval-interval 0 is no periodic evaluation (as in build_nanogpt): not at iter 0, only where every
    run evaluates, the epoch end (iter 31) and the end of the budget (iter 40)."""
    out = tmp_path / "ev0"
    r = call_main(train.main, capsys, *run_args(tiny_data, out, "--eval-interval", 0, "--max-epochs", 2,
                                                "--max-iters", 40, "--final-eval-tokens", 0))
    assert r.returncode == 0, r.stderr
    assert [rec["iter"] for rec in read_log(out)] == [31, 40]
    assert [rec["iter"] for rec in read_records(out) if "loss" in rec] == list(range(5, 41, 5))  # steps still logged


def test_unavailable_device_exits_2(tiny_data, tmp_path, capsys, clean_error):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = call_main(train.main, capsys, *run_args(tiny_data, tmp_path / "out"), "--device", "cuda")
    clean_error(r, "cuda", "not available")


def test_command_line_error_is_one_line(run_script, clean_error):
    clean_error(run_script("nanogpt/train.py", "--n-embd", "30", "--n-head", "4", timeout=60), "--n-embd 30")


def test_busy_out_dir_is_refused_naming_the_pid(tiny_data, tmp_path, capsys, clean_error):
    out = tmp_path / "busy"
    out.mkdir()
    (out / ".lock").write_text(str(os.getppid()))  # a live process holds it
    r = call_main(train.main, capsys, *run_args(tiny_data, out, "--max-iters", 1))
    clean_error(r, "in use by another run", f"pid {os.getppid()}")
    assert not (out / "log.jsonl").exists()
    (out / ".lock").write_text("999999999")  # left by a run that died: taken over
    assert call_main(train.main, capsys, *run_args(tiny_data, out, "--max-iters", 1)).returncode == 0
    assert not (out / ".lock").exists()


def test_temp_files_of_killed_runs_are_removed_at_the_next_start(tiny_data, tmp_path, capsys):
    """A run killed mid-save leaves NAME.tmp.PID; the next run on the folder removes it, a live process's stays."""
    out = tmp_path / "stale"
    out.mkdir()
    dead, live = out / "ckpt_last.pt.tmp.999999999", out / f"results.json.tmp.{os.getppid()}"
    for f in (dead, live):
        f.write_bytes(b"\0" * 1000)
    assert call_main(train.main, capsys, *run_args(tiny_data, out, "--max-iters", 1)).returncode == 0
    assert not dead.exists() and live.exists()


def test_out_dir_that_is_a_file_is_one_line(tiny_data, tmp_path, capsys, clean_error):
    (tmp_path / "afile").write_text("x")
    clean_error(call_main(train.main, capsys, *run_args(tiny_data, tmp_path / "afile")), "cannot write to",
                "afile")


def test_full_disk_while_logging_is_one_line(tiny_data, tmp_path, capsys, clean_error, monkeypatch):
    import errno

    import files

    def full_disk_open(path, mode="r", *a, **k):
        if "a" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return open(path, mode, *a, **k)

    monkeypatch.setattr(files, "open", full_disk_open, raising=False)  # files.append_line's open
    r = call_main(train.main, capsys, *run_args(tiny_data, tmp_path / "full", "--max-iters", 2))
    last = r.stderr.strip().splitlines()[-1]  # after the progress bar
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "error: cannot write" in last and "log.jsonl: no space left on the device" in last


def test_full_disk_while_saving_a_checkpoint_is_one_line_and_leaves_no_partial_file(tiny_data, tmp_path, capsys,
                                                                                   monkeypatch):
    def full_disk(obj, f, *a, **k):  # what torch.save does when the disk fills up: a partial file, then this
        open(f, "wb").write(b"half a checkpoint")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    out = tmp_path / "full"
    r = call_main(train.main, capsys, *run_args(tiny_data, out, "--max-iters", 2))
    last = r.stderr.strip().splitlines()[-1]  # after the progress bar
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert last.endswith(f": error: cannot write {out / 'ckpt_last.pt'}: no space left on the device")
    assert sorted(p.name for p in out.iterdir()) == ["log.jsonl"]


def test_read_only_out_dir_is_one_line(tiny_data, tmp_path, capsys, clean_error):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        clean_error(call_main(train.main, capsys, *run_args(tiny_data, out / "run")), "cannot write", "ro")
    finally:
        out.chmod(0o700)


# --------------------------------------------------------------------------------------------------
# runs


def test_bfloat16_autocast_on_cpu_learns(capsys, tiny_data, tmp_path, monkeypatch):
    out = tmp_path / "bf16"
    entropy_calls = []  # the unigram baseline is printed at start and written at the end: computed once
    real_entropy = data.unigram_entropy
    monkeypatch.setattr(data, "unigram_entropy", lambda *a, **k: entropy_calls.append(1) or real_entropy(*a, **k))
    r = call_main(train.main, capsys, *run_args(tiny_data, out, "--dtype", "bfloat16", "--max-epochs", 2,
                                                "--num-samples", 1, "--sample-tokens", 20))
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    log = read_log(out)
    assert res["device"]["dtype"] == "bfloat16"
    assert log[-1]["val_loss"] < log[0]["val_loss"] - 0.3  # it learns
    counts = np.bincount(np.fromfile(tiny_data / "shakespeare_char" / "train.bin", dtype=np.uint16))
    p = counts[counts > 0] / counts.sum()
    assert res["unigram_baseline_nats"] == pytest.approx(-(p * np.log(p)).sum())
    assert len(entropy_calls) == 1 and f"unigram baseline {res['unigram_baseline_nats']:.4f} nats/token" in r.stdout
    assert [row["epochs_done"] for row in res["per_epoch"]] == [1, 2]
    assert len(res["samples"]) == 1 and "sample 1" in r.stdout
    assert "sampling 1 x 20 tokens on cpu ..." in r.stdout  # said before the wait, not only after
    # the header names where the weights come from, the dtype and whether the model is compiled
    assert "weights from scratch (seed 1337)" in r.stdout and "device cpu bfloat16 eager" in r.stdout
    assert (out / "loss.png").stat().st_size > 1000 and (out / "ckpt_epoch1.pt").exists()
    assert not (out / "ckpt_epoch2.pt").exists()  # the default --save-epochs 1,5
    ckpt = torch.load(out / "ckpt_last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and not any(k.startswith("_orig_mod.") for k in ckpt["model"])
    for key in ("optimizer", "scaler", "schedule", "data_order", "rng", "config", "losses", "model_args", "dataset"):
        assert key in ckpt, key
    assert ckpt["rng"]["torch"].dtype == torch.uint8 and ckpt["config"]["dataset"] == "shakespeare_char"
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name or p.name == ".lock"]


def test_every_logged_step_loss_is_in_the_log(capsys, tiny_data, tmp_path):
    """log.jsonl holds the loss of every --log-interval step besides the evaluations."""
    out = tmp_path / "steps"
    r = call_main(train.main, capsys, *run_args(tiny_data, out, "--max-iters", 12, "--log-interval", 3))
    assert r.returncode == 0, r.stderr
    steps = [rec for rec in read_records(out) if "loss" in rec]
    assert [s["iter"] for s in steps] == [3, 6, 9, 12]
    assert all(np.isfinite(s["loss"]) and 2.0 < s["loss"] < 5.0 for s in steps)  # ln 65 = 4.17 at the start
    # the lr of the step just taken (iters 2, 5, 8, 11): peak 3e-3, 5 warmup steps, cosine to 3e-4 at iter 12
    lr = [3e-3 * 3 / 6, 3e-3, 3e-4 + 0.5 * (1 + 0.2225209340) * 2.7e-3, 3e-4 + 0.5 * (1 - 0.9009688679) * 2.7e-3]
    assert [s["lr"] for s in steps] == pytest.approx(lr)  # cos(3pi/7) = 0.2225.., cos(6pi/7) = -0.9009..


def test_the_lr_schedule_warms_up_peaks_and_decays_to_a_tenth():
    """GPT-3's schedule, against values worked out by hand: peak 1e-3, 10 warmup steps, cosine decay over iters
    10..110 to the floor min_lr_ratio * peak = 1e-4, flat after; --no-decay-lr is the peak throughout."""
    cfg = TrainConfig(learning_rate=1e-3, warmup_iters=10, min_lr_ratio=0.1)
    its = [0, 4, 9, 10, 35, 60, 110, 10_000]
    want = [1e-3 / 11, 5e-3 / 11, 1e-3 * 10 / 11,  # warmup: (it + 1) / 11 of the peak
            1e-3,  # the peak, where warmup ends
            1e-4 + 9e-4 * (1 + 2**-0.5) / 2,  # a quarter of the decay: cos(pi / 4)
            5.5e-4,  # halfway: halfway between peak and floor
            1e-4, 1e-4]  # the floor, a tenth of the peak (never 0), from the decay's end on
    assert [train.get_lr(it, cfg, 110) for it in its] == pytest.approx(want, rel=1e-12)
    assert train.get_lr(60, TrainConfig(learning_rate=1e-3, decay_lr=False), 110) == 1e-3


def test_final_val_loss_is_exact_over_every_window(capsys, tiny_data, tmp_path):
    """results.json's val_loss_full equals the loss of the saved model over all of val.bin, recomputed here."""
    out = tmp_path / "full"
    r = call_main(train.main, capsys, *run_args(tiny_data, out, "--max-iters", 12))
    assert r.returncode == 0, r.stderr
    final = json.loads((out / "results.json").read_text())["final"]
    ckpt = torch.load(out / "ckpt_last.pt", weights_only=True)
    gpt = model.GPT(model.GPTConfig(**ckpt["model_args"]))
    gpt.load_state_dict(ckpt["model"])
    gpt.eval()
    val = torch.from_numpy(np.fromfile(tiny_data / "shakespeare_char" / "val.bin", dtype=np.uint16).astype(np.int64))
    n = (len(val) - 1) // 16  # 511 // 16 = 31 windows of 16 tokens (+1 target)
    x, y = val[: n * 16].view(n, 16), val[1 : n * 16 + 1].view(n, 16)
    with torch.no_grad():
        logits, _ = gpt(x, y)
        expect = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).item()
    assert final["val_tokens_full"] == n * 16
    assert final["val_loss_full"] == pytest.approx(expect, rel=1e-5)
    assert f"over {n * 16:,} val tokens {expect:.4f}" in r.stdout
    assert "exact val loss" in r.stderr  # its progress bar: over a large val.bin it takes a while
    # the logged losses of the same weights (the budget-end evaluation) are each split's own fixed windows
    last = read_log(out)[-1]
    assert last["iter"] == 12
    for split, n_windows in (("train", data.train_windows(2048, 16)), ("val", n)):
        tokens = np.fromfile(tiny_data / "shakespeare_char" / f"{split}.bin", dtype=np.uint16)
        xs, ys = data.get_batch(tokens, data.eval_windows(n_windows, 2 * 4, 1337, split), 16, "cpu")
        with torch.no_grad():
            assert last[f"{split}_loss"] == pytest.approx(gpt(xs, ys)[1].item(), rel=1e-5), split
    # a budget of 40 tokens: the first 2 windows only
    r = call_main(train.main, capsys, *run_args(tiny_data, tmp_path / "part", "--max-iters", 1,
                                                "--final-eval-tokens", 40))
    assert json.loads((tmp_path / "part" / "results.json").read_text())["final"]["val_tokens_full"] == 32


def test_steps_follow_the_epoch_order_accumulate_and_clip(capsys, tiny_data, tmp_path, monkeypatch):
    """Spies on get_batch and clip_grad_norm_ in a 2-epoch run with 2 micro-steps per step: every step trains on
    the next 8 windows of its epoch's own permutation, at that epoch's grid shift; the gradient is clipped once
    per step to --grad-clip; the accumulated gradient is the mean over micro-steps (its norm at step 0 equals a
    single 8-window micro-step's); and the optimizer holds the configured AdamW settings."""
    batches, norms = [], []
    real_get_batch, real_clip = data.get_batch, torch.nn.utils.clip_grad_norm_

    def get_batch(tokens, windows, block_size, device, shift=0):
        if torch.is_grad_enabled():  # training; evaluation runs under no_grad
            batches.append((windows.tolist(), shift))
        return real_get_batch(tokens, windows, block_size, device, shift)

    def clip(params, max_norm, *a, **k):
        norm = real_clip(params, max_norm, *a, **k)
        norms.append((max_norm, norm.item()))
        return norm

    monkeypatch.setattr(data, "get_batch", get_batch)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    out = tmp_path / "spy"
    adamw = ["--beta1", 0.8, "--beta2", 0.99, "--eps", 1e-6, "--weight-decay", 0.05, "--grad-clip", 0.5]
    r = call_main(train.main, capsys, *run_args(tiny_data, out, "--batch-tokens", 2 * 4 * 16, "--max-epochs", 2,
                                                "--eval-interval", 100, "--save-epochs", "", *adamw))
    assert r.returncode == 0, r.stderr
    assert "1 rank(s) x 2 micro-step(s)" in r.stdout
    steps = 127 // 8  # 15 steps per epoch, the last 7 windows dropped
    expect = []
    for epoch in range(2):
        order, shift = data.epoch_order(127, 1337, epoch), data.epoch_shift(1337, epoch, 16)
        expect += [(order[s * 8 + m * 4 : s * 8 + m * 4 + 4].tolist(), shift) for s in range(steps) for m in range(2)]
    assert expect[0][1] != expect[-1][1]  # (the two epochs' shifts differ with this seed)
    assert batches == expect
    assert len(norms) == 2 * steps and all(max_norm == 0.5 for max_norm, _ in norms)
    assert sum(norm > 0.5 for _, norm in norms) > 5  # clipping did act
    groups = torch.load(out / "ckpt_last.pt", weights_only=True)["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert all(tuple(g["betas"]) == (0.8, 0.99) and g["eps"] == 1e-6 for g in groups)
    # the last step (iter 29 of 30) ran at 3e-4 + (3e-3 - 3e-4) * (1 + cos(0.96 pi)) / 2, cos(0.96 pi) = -0.99211..
    last_lr = 3e-4 + 2.7e-3 * (1 - 0.9921147013) / 2
    assert all(g["lr"] == pytest.approx(last_lr) for g in groups)
    # one micro-step of the same 8 windows: the same first gradient (accumulation averages, never sums)
    first = norms[0][1]
    norms.clear()
    r = call_main(train.main, capsys, *run_args(tiny_data, tmp_path / "one", "--batch-size", 8, "--max-iters", 1,
                                                "--final-eval-tokens", 0, *adamw))
    assert r.returncode == 0, r.stderr
    assert norms[0][1] == pytest.approx(first, rel=1e-5)


def test_first_throughput_window_leaves_out_the_first_step(capsys, tiny_data, tmp_path, monkeypatch):
    """The first step after a start carries torch.compile's tracing (simulated: 1.5 s): it must not drag down the
    tokens/s of the first window."""
    real_step, calls = train.train_step, []

    def slow_first_step(*args):
        calls.append(1)
        if len(calls) == 1:
            import time
            time.sleep(1.5)
        return real_step(*args)

    monkeypatch.setattr(train, "train_step", slow_first_step)
    out = tmp_path / "tps"
    r = call_main(train.main, capsys, *run_args(tiny_data, out, "--max-iters", 10, "--eval-interval", 5))
    assert r.returncode == 0, r.stderr
    first, second = [rec["tokens_per_s"] for rec in read_log(out)[1:3]]
    assert first > 64 * 4 / 1.5  # 4 steps of 64 tokens in well under the 1.5 s of the first step
    assert first > second / 10


def test_a_warmup_longer_than_half_the_run_is_warned_about(capsys, tiny_data, tmp_path):
    r = call_main(train.main, capsys, *run_args(tiny_data, tmp_path / "w", "--max-iters", 6, "--warmup-iters", 5,
                                                "--final-eval-tokens", 0))
    assert r.returncode == 0 and "warning: the warmup (5 iters) is longer than half the run (6 iters)" in r.stderr
    r = call_main(train.main, capsys, *run_args(tiny_data, tmp_path / "w2", "--max-iters", 12, "--warmup-iters", 5,
                                                "--final-eval-tokens", 0))
    assert r.returncode == 0 and "warmup" not in r.stderr


def test_no_host_sync_at_every_step(capsys, tiny_data, tmp_path, monkeypatch):
    """The loss is checked for non-finite values on the device; the host reads it only at logged steps,
    evaluations and saves, so a GPU never idles waiting for a step's loss (30 steps here, a handful of reads)."""
    reads = []
    real_item, real_tolist = torch.Tensor.item, torch.Tensor.tolist

    def item(self):
        reads.append("item")
        return real_item(self)

    def tolist(self):
        reads.append("tolist")
        return real_tolist(self)

    monkeypatch.setattr(torch.Tensor, "item", item)
    monkeypatch.setattr(torch.Tensor, "tolist", tolist)
    r = call_main(train.main, capsys, *run_args(tiny_data, tmp_path / "sync", "--max-iters", 30, "--log-interval",
                                                100, "--eval-interval", 100, "--final-eval-tokens", 0))
    assert r.returncode == 0, r.stderr
    assert len(reads) < 12, reads  # 2 evaluations x 2 splits, one sync point, one check of the weights


def test_loss_plot_marks_where_each_epoch_ends(tmp_path, monkeypatch):
    """loss.png draws a dotted line at the step of each per_epoch record, so the curve reads epoch by epoch."""
    import matplotlib.axes
    import report

    marked = []
    monkeypatch.setattr(matplotlib.axes.Axes, "axvline", lambda ax, x, **kw: marked.append(x))
    history = [{"iter": i, "train_loss": 3.0 - i / 100, "val_loss": 3.1 - i / 100} for i in (0, 10, 20, 30)]
    results = {"config": {"dataset": "d"}, "n_params": 1000,
               "per_epoch": [{"iter": 15, "epochs_done": 1}, {"iter": 30, "epochs_done": 2}]}
    report.write_results(tmp_path, results, history, unigram=3.5)
    assert marked == [15, 30] and (tmp_path / "loss.png").stat().st_size > 1000


def test_results_json_names_no_folder_of_this_machine(tmp_path, monkeypatch):
    """results.json opens with the command as typed and the date, and writes a path inside the repository from
    the repository's root: a committed results.json is the script's output byte for byte, not hand-edited."""
    import report

    monkeypatch.setattr(sys, "argv", [str(report.REPO / "nanogpt" / "train.py"), "--max-iters", "3"])
    outputs = report.Outputs(TrainConfig(out_dir=str(tmp_path)), master=True)
    config = {"out_dir": str(report.REPO / "nanogpt" / "out"), "data_source": "../shared/x.txt",
              "dataset": "d", "other_dir": "/elsewhere/x"}
    outputs.write_results({"config": config, "n_params": 1, "per_epoch": []}, [{"iter": 0, "train_loss": 1.0,
                          "val_loss": 1.0}], unigram=1.0)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["command"] == "python nanogpt/train.py --max-iters 3"
    assert results["config"] == {"out_dir": "nanogpt/out", "data_source": "../shared/x.txt", "dataset": "d",
                                 "other_dir": "/elsewhere/x"}
    assert list(results)[:3] == ["command", "date", "torch_threads"]
