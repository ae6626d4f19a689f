"""build_nanogpt/train.py: exact (bitwise) resume on CPU float32, loss going down, outputs, clean errors, the
progress bar."""
import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import hellaswag as H
import model as M
import pretrained
import train
from helpers import TINY, records


def test_exact_resume_is_bitwise(shards, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    common = TINY + ["--data-dir", str(shards), "--max-iters", "8"]
    train.main(common + ["--out-dir", str(a), "--ckpt-interval", "0"])  # 0: one checkpoint, at the end
    train.main(common + ["--out-dir", str(b), "--stop-at", "3"])  # "interrupted" after 3 steps
    assert torch.load(b / "ckpt.pt", weights_only=True)["step"] == 3
    assert "stopped at iter 3 (--stop-at); continue with: python " in capsys.readouterr().out
    train.main(common + ["--out-dir", str(b), "--resume"])
    ca, cb = (torch.load(p / "ckpt.pt", weights_only=True) for p in (a, b))
    assert ca["step"] == cb["step"] == 8
    for k, v in ca["model"].items():
        assert torch.equal(v, cb["model"][k]), k
    for s, t in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values()):
        assert torch.equal(s["exp_avg"], t["exp_avg"]) and torch.equal(s["exp_avg_sq"], t["exp_avg_sq"])
    assert ca["loader"]["pos"] == cb["loader"]["pos"] and ca["loader"]["cursor"] == cb["loader"]["cursor"]
    la, lb = records(a, "train"), records(b, "train")
    assert [r["iter"] for r in lb] == list(range(8))  # the log continues without gaps or repeats
    assert [r["loss"] for r in la] == [r["loss"] for r in lb]
    assert la[-1]["loss"] < la[0]["loss"] - 0.5  # it learns
    va = records(a, "val")
    assert [r["iter"] for r in va] == [0, 3, 6, 8] and va[-1]["val_loss"] < va[0]["val_loss"]
    assert records(b, "val") == va  # the resumed log holds each evaluation once (step 3 not twice)
    want_lr = [train.get_lr(s, train.TrainConfig(learning_rate=1e-2, warmup_iters=2, max_iters=8)) for s in range(8)]
    assert [r["lr"] for r in la] == [r["lr"] for r in lb] == pytest.approx(want_lr, rel=1e-12)
    assert (a / "curves.png").stat().st_size > 10_000 and "val loss" in (a / "log.txt").read_text()
    assert "resumed from the checkpoint at iter 3" in (b / "log.txt").read_text()
    # hellaswag.py --model ckpt.pt reads train.py's checkpoint format; --model RUN_FOLDER means its ckpt.pt
    for spec in (a / "ckpt.pt", a):
        for k, v in pretrained.load_weights(str(spec)).state_dict().items():
            assert torch.equal(v, ca["model"][k]), k
    # one process: no replicas, so no replica difference is logged or printed (issue 29)
    assert all("replica_max_diff" not in r for r in va) and "replicas" not in (a / "log.txt").read_text()


def test_bad_input_is_a_clean_error(run_script, clean_error, tmp_path, shards, monkeypatch):

    def offline(*args, **kwargs):
        raise OSError("offline")
    monkeypatch.setattr(H.urllib.request, "urlretrieve", offline)
    monkeypatch.setattr(H.download, "__defaults__", (str(tmp_path / "cache"), H.download.__defaults__[1]))
    with pytest.raises(train.UserError, match="offline.*--hellaswag-data PATH"):  # train.py's flag, not --data
        train.main(TINY + ["--data-dir", str(shards), "--hellaswag-limit", "2", "--out-dir", str(tmp_path / "h")])
    with pytest.raises(train.UserError, match="vocab-size 1000"):  # GPT-2 ids would index past the table
        train.main(TINY + ["--vocab-size", "1000", "--out-dir", str(tmp_path / "v")])
    for flag, value, allowed in (("--hellaswag-limit", "-5", "must be in \\[-1, inf\\]"), ("--stop-at", "0", "iter >= 1")):
        with pytest.raises(train.UserError, match=f"{flag} {value}: .*{allowed}"):  # not silently "all" / no checkpoint
            train.main(TINY + [flag, value, "--out-dir", str(tmp_path / "v")])
    out = tmp_path / "out"
    r = run_script("build_nanogpt/train.py", *TINY, "--data-dir", tmp_path / "missing", "--out-dir", out)
    clean_error(r, "missing", "does not exist")
    r = run_script("build_nanogpt/train.py", "--preset", "huge", "--out-dir", out)
    clean_error(r, "huge", "tiny")
    assert not out.exists()  # nothing written


def test_lr_schedule():
    """Linear warmup from max_lr/warmup (never 0) to max_lr, cosine down to min_lr_ratio * max_lr, then flat."""
    cfg = train.TrainConfig(learning_rate=1.0, min_lr_ratio=0.1, warmup_iters=10, max_iters=110)
    lr = [train.get_lr(s, cfg) for s in range(130)]
    assert lr[0] == pytest.approx(0.1) and lr[4] == pytest.approx(0.5) and lr[9] == lr[10] == pytest.approx(1.0)
    assert lr[60] == pytest.approx(0.55)  # half way through the cosine: the mean of max and min
    assert lr[35] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + 2 ** -0.5))  # a quarter of the way
    assert lr[110] == lr[129] == pytest.approx(0.1)  # 10% of the peak, not 0
    assert all(a >= b for a, b in zip(lr[10:], lr[11:])) and all(a < b for a, b in zip(lr[:9], lr[1:10]))


def test_first_step_clips_the_gradient(shards, tmp_path):
    """After one step AdamW's first moment is (1 - beta1) * the gradient it was given, so its global norm
    shows whether the gradient was clipped to --grad-clip; lr and weight decay groups are in the checkpoint."""
    out = tmp_path / "clip"
    clip = 0.05
    train.main(TINY + ["--data-dir", str(shards), "--out-dir", str(out), "--max-iters", "1", "--stop-at", "1",
                       "--grad-clip", str(clip), "--warmup-iters", "4"])
    norm = records(out, "train")[0]["norm"]  # before clipping
    assert norm > 4 * clip
    opt = torch.load(out / "ckpt.pt", weights_only=True)["optimizer"]
    m1 = torch.cat([s["exp_avg"].flatten() for s in opt["state"].values()]).norm().item()
    assert m1 == pytest.approx((1 - 0.9) * clip, rel=1e-4)
    assert [g["lr"] for g in opt["param_groups"]] == [1e-2 / 4] * 2  # warmup step 0: max_lr / warmup
    assert [g["weight_decay"] for g in opt["param_groups"]] == [0.1, 0.0]


def test_gradient_accumulation_equals_one_big_batch():
    torch.manual_seed(0)
    cfg = M.GPTConfig(block_size=16, vocab_size=128, n_layer=2, n_head=2, n_embd=32)
    a, b = M.GPT(cfg), M.GPT(cfg)
    b.load_state_dict(a.state_dict())
    x, y = torch.randint(0, 128, (8, 16)), torch.randint(0, 128, (8, 16))
    loss_a = train.forward_backward(a, [(x[i:i + 2], y[i:i + 2]) for i in range(0, 8, 2)])  # 4 x micro-batch 2
    loss_b = train.forward_backward(b, [(x, y)])  # 1 x micro-batch 8
    torch.testing.assert_close(loss_a, loss_b, atol=1e-6, rtol=1e-6)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-6, rtol=1e-5, msg=name)
    assert any(p.grad.abs().sum() > 0 for p in a.parameters())


def test_no_sync_on_all_but_the_last_micro_batch():
    """Under DDP only the last backward of an optimizer step may all-reduce: the earlier ones run in
    no_sync(), or rank-local gradients of later micro-batches would never be averaged."""
    import contextlib


    class FakeDDP(torch.nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module, self.syncing, self.seen = module, True, []

        @contextlib.contextmanager
        def no_sync(self):
            self.syncing = False
            try:
                yield
            finally:
                self.syncing = True

        def forward(self, x, y):
            self.seen.append(self.syncing)
            return self.module(x, y)

    torch.manual_seed(0)
    model = FakeDDP(M.GPT(M.GPTConfig(block_size=8, vocab_size=64, n_layer=1, n_head=2, n_embd=16)))
    x = torch.randint(0, 64, (4, 8))
    train.forward_backward(model, [(x, x)] * 4, ddp=True)
    assert model.seen == [False, False, False, True]



def test_progress_bar_on_a_terminal_shows_loss_tokens_per_second_and_eta(shards, tmp_path):
    """On a terminal (stderr a pty) the bar shows iter/total, elapsed<ETA, the loss and tokens/s."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 120 columns (0: no bar)
    proc = subprocess.Popen([sys.executable, "build_nanogpt/train.py", *TINY, "--data-dir", str(shards),
                             "--out-dir", str(tmp_path / "o"), "--max-iters", "6"],
                            cwd=Path(__file__).resolve().parents[2], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        seen += data
    os.close(master)
    assert proc.wait(timeout=120) == 0, seen[-2000:]
    bar = seen.decode(errors="replace").replace("\r", "\n").splitlines()
    final = [line for line in bar if re.search(r"\b6/6 \[\d\d:\d\d<\d\d:\d\d", line)]  # elapsed<ETA
    assert final and re.search(r"loss \d+\.\d{4} [\d,]+ tok/s", final[-1]), bar[-5:]


def test_eval_interval_0_evaluates_only_at_the_end(shards, tmp_path):
    """--eval-interval 0 means what it means in nanogpt: no periodic evaluation, only the one every run makes
    (build_nanogpt has no epoch ends: the end)."""
    out = tmp_path / "o"
    assert train.main(TINY + ["--data-dir", str(shards), "--max-iters", "4", "--eval-interval", "0",
                              "--out-dir", str(out)]) == 0
    assert [r["iter"] for r in records(out, "val")] == [4]
    assert "0: at the end only" in train.build_parser(train.TrainConfig, "train.py", "", train.PRESETS).format_help()


def test_default_folders_are_beside_the_scripts_whatever_the_working_directory(tmp_path, monkeypatch):
    """issue 29: a preset's default output folder is build_nanogpt/out/PRESET, bench's out/bench, the ladder's
    out/ladder (no more out-tiny, out-bench, out-ladder), data under build_nanogpt/data; never relative to the
    current folder; --help says so."""
    import bench
    import fineweb
    import ladder
    from cli import parse_config

    monkeypatch.chdir(tmp_path)
    bn = Path(train.__file__).resolve().parent
    for name in train.PRESETS:
        cfg = parse_config(train.TrainConfig, ["--preset", name], "train.py", "", train.PRESETS)
        assert Path(cfg.out_dir) == bn / "out" / name
    assert Path(train.TrainConfig().out_dir) == bn / "out" / "gpt2-124m"  # no --preset: the 124M recipe's
    assert Path(train.TrainConfig().data_dir) == Path(fineweb.ShardConfig().out_dir) == bn / "data" / "edu_fineweb10B"
    assert Path(bench.BenchConfig().out_dir) == bn / "out" / "bench"
    assert Path(ladder.LadderConfig().out_dir) == bn / "out" / "ladder"
    cfg = parse_config(ladder.LadderConfig, ["--preset", "gpt2-124m"], "ladder.py", "", ladder.PRESETS)
    assert Path(cfg.out_dir) == bn / "out" / "ladder-gpt2-124m"
    help_text = " ".join(train.build_parser(train.TrainConfig, "train.py", "", train.PRESETS).format_help().split())
    assert "with --preset P the default is build_nanogpt/out/P" in help_text


def test_the_val_loss_is_on_the_first_batches_of_the_val_shard(shards, tmp_path):
    """README: the val loss is measured on a fixed set, the first --eval-iters batches of the val shard; here it is
    recomputed by hand from the shard's first tokens with the weights saved at the end (those it evaluated)."""
    out, B, T, n = tmp_path / "o", 2, 16, 3
    assert train.main(TINY + ["--data-dir", str(shards), "--max-iters", "2", "--eval-iters", str(n),
                              "--out-dir", str(out)]) == 0
    model = pretrained.load_weights(str(out / "ckpt.pt")).eval()
    tokens = torch.from_numpy(np.load(shards / "val_000000.npy").astype(np.int64))
    want = 0.0
    with torch.no_grad():
        for i in range(n):
            buf = tokens[i * B * T:(i + 1) * B * T + 1]
            logits = model(buf[:-1].view(B, T))[0]
            want += F.cross_entropy(logits.reshape(-1, logits.size(-1)), buf[1:]).item() / n
    assert records(out, "val")[-1]["iter"] == 2
    assert records(out, "val")[-1]["val_loss"] == pytest.approx(want, rel=1e-5)
