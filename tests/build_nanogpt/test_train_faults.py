"""build_nanogpt/train.py under faults: a diverged run never saves (exit 3, naming the real last good checkpoint),
out-of-range flags, a busy out dir, damaged shards and checkpoints, no tokenizer offline: each one line."""
import hashlib
import math
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

import evaluation
import train
from helpers import TINY, records


def run_tiny(shards, out, *extra):
    return train.main(TINY + ["--data-dir", str(shards), "--out-dir", str(out), "--max-iters", "6", *extra])


def poison_a_weight_after(monkeypatch, iteration: int) -> None:
    """From now on train.train_step makes one weight infinite after step `iteration`."""
    real_step = train.train_step

    def inf_weight(run, it, stop_requested):
        result = real_step(run, it, stop_requested)
        if it == iteration:
            with torch.no_grad():
                next(run.model.parameters())[0, 0] = math.inf
        return result
    monkeypatch.setattr(train, "train_step", inf_weight)


@pytest.mark.parametrize("where", ["loss", "weights", "val"])
def test_non_finite_stops_before_any_save(where, shards, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert run_tiny(shards, out, "--stop-at", "2", "--ckpt-interval", "2") == 0  # a good checkpoint at iter 2
    good = (out / "ckpt.pt").read_bytes()
    real_fb, calls = train.forward_backward, []

    def nan_loss(*args, **kwargs):  # the resumed run's second step is iter 3
        calls.append(1)
        return real_fb(*args, **kwargs) * (float("nan") if len(calls) == 2 else 1.0)
    if where == "loss":
        monkeypatch.setattr(train, "forward_backward", nan_loss)
    elif where == "weights":
        poison_a_weight_after(monkeypatch, 3)
    else:
        monkeypatch.setattr(evaluation, "val_loss", lambda *args: float("nan"))
    capsys.readouterr()
    assert run_tiny(shards, out, "--resume", "--ckpt-interval", "2") == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"the last good checkpoint is {out / 'ckpt.pt'}" in err, err
    assert {"loss": "loss is nan at iter 3", "weights": "a weight is not finite after iter 3",
            "val": "val loss is nan at iter 3"}[where] in err
    assert (out / "ckpt.pt").read_bytes() == good  # never replaced by the diverged model
    assert not list(out.glob("*.tmp.*"))


def test_diverged_without_a_checkpoint_says_so(shards, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(evaluation, "val_loss", lambda *a: float("inf"))
    assert run_tiny(shards, tmp_path / "x") == 3
    assert "no checkpoint was written" in capsys.readouterr().err
    assert not (tmp_path / "x" / "ckpt.pt").exists()


@pytest.mark.parametrize("flag, value, needle", [
    ("--min-lr-ratio", "nan", "expected a finite number"),
    ("--learning-rate", "inf", "expected a finite number"),
    ("--learning-rate", "-1", "must be in [0, 10]"),
    ("--beta2", "1.5", "must be in [0, 1]"),
    ("--grad-clip", "2e6", "--grad-clip 2000000.0: must be in [0, 1000000]"),  # the value as given, the knob's range
    ("--n-layer", "1000000", "must be in [1, 1024]"),
    ("--block-size", "100000000", "must be in [1, 1048576]"),
    ("--sample-tokens", "1000000000000", "must be in [1, 65536]"),  # sampling would never end
    ("--num-samples", "100000", "must be in [0, 1024]"),
    ("--warmup-iters", "-5", "must be in [0, "),
    ("--ckpt-interval", "-3", "must be in [0, "),
    ("--vocab-size", "1000000000", "must be in [1, 1048576]"),
    ("--seed", "-1", "must be in [0, 9223372036854775807]"),
    ("--device", "tpu", "use auto, cpu, cuda, cuda:N or mps"),
    ("--dtype", "fp8", "use float32, bfloat16, float16"),
    ("--max-lr", "1", "unknown option --max-lr"),
    ("--total-batch", "1000000000000", "must be in [1, 1073741824]"),  # would never reach its first step
])
def test_out_of_range_flags_are_refused(flag, value, needle, tmp_path):
    with pytest.raises(train.UserError) as e:
        train.main(TINY + [flag, value, "--out-dir", str(tmp_path / "o")])
    assert flag in str(e.value) and needle in str(e.value) and not (tmp_path / "o").exists()


def test_a_refused_flag_is_one_line(run_script, clean_error, tmp_path):
    clean_error(run_script("build_nanogpt/train.py", "--min-lr-ratio", "nan"), "--min-lr-ratio", "finite")


def test_a_busy_out_dir_is_refused(shards, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    other = subprocess.Popen(["sleep", "60"])
    try:
        (out / ".lock").write_text(str(other.pid))
        with pytest.raises(train.UserError, match=f"in use by another run \\(pid {other.pid}\\)"):
            run_tiny(shards, out)
        assert not (out / "log.jsonl").exists()
    finally:
        other.kill()
        other.wait()
    assert run_tiny(shards, out) == 0  # the lock of a dead run is taken over
    assert not (out / ".lock").exists()


@pytest.mark.parametrize("damage, needle", [
    ("truncate", "not a readable token shard"),
    ("header", "not a readable token shard"),
    ("ids", "token id 60000"),
    ("dtype", "expected a 1-D uint16 token array"),
])
def test_damaged_shards_are_refused_at_start(damage, needle, shards, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(shards, data)
    last = sorted(data.glob("train_*.npy"))[-1]  # the shard a run would reach last
    raw = last.read_bytes()
    if damage == "truncate":
        last.write_bytes(raw[:len(raw) // 2])
    elif damage == "header":
        last.write_bytes(b"\x00" * 16 + raw[16:])
    elif damage == "ids":
        tokens = np.load(last)
        tokens[len(tokens) // 2] = 60000
        np.save(last, tokens)
    else:
        np.save(last, np.load(last).astype(np.int64))
    with pytest.raises(train.UserError, match=needle) as e:
        train.main(TINY + ["--data-dir", str(data), "--out-dir", str(tmp_path / "o")])
    assert last.name in str(e.value) and not (tmp_path / "o").exists()


class Payload:
    def __reduce__(self):
        return (print, ("this ran",))


def test_damaged_or_foreign_checkpoint_on_resume(shards, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "ckpt.pt").write_bytes(b"PK\x03\x04 half a zip file")
    with pytest.raises(train.UserError, match="ckpt.pt is not a readable checkpoint"):
        run_tiny(shards, out, "--resume")
    torch.save({"weights": torch.zeros(3)}, out / "other.pt")
    with pytest.raises(train.UserError, match="other.pt is not a checkpoint of this train.py"):
        run_tiny(shards, out, "--resume", str(out / "other.pt"))
    torch.save({"model": {}, "payload": Payload()}, out / "tampered.pt")  # an object that would run code
    with pytest.raises(train.UserError, match="tampered.pt holds pickled objects besides tensors; refused") as e:
        run_tiny(shards, out, "--resume", str(out / "tampered.pt"))
    assert "weights_only" not in str(e.value)  # no advice to load it unsafely
    assert sorted(p.name for p in out.iterdir()) == ["ckpt.pt", "other.pt", "tampered.pt"]  # nothing else written


def test_offline_without_the_tokenizer_cache(shards, tmp_path, run_script, clean_error):
    empty = tmp_path / "cache"
    empty.mkdir()
    proxy = "http://127.0.0.1:9"  # nothing listens: a download fails at once, as offline
    env = {"TIKTOKEN_CACHE_DIR": empty, "HTTPS_PROXY": proxy, "https_proxy": proxy, "HTTP_PROXY": proxy}
    r = run_script("build_nanogpt/train.py", *TINY, "--data-dir", shards, "--out-dir", tmp_path / "o", env=env)
    clean_error(r, "cannot load the GPT-2 tokenizer", "TIKTOKEN_CACHE_DIR")
    assert os.listdir(empty) == []


def test_resume_on_other_shards_is_refused(shards, tmp_path):
    out = tmp_path / "o"
    assert run_tiny(shards, out, "--stop-at", "2") == 0
    good = (out / "ckpt.pt").read_bytes()
    moved, other = tmp_path / "moved", tmp_path / "other"
    shutil.copytree(shards, moved)
    shutil.copytree(shards, other)
    first = sorted(other.glob("train_*.npy"))[0]
    tokens = np.load(first)
    tokens[5] = (int(tokens[5]) + 1) % 50257  # one token of another corpus
    np.save(first, tokens)
    with pytest.raises(train.UserError, match="--resume: the checkpoint was trained on other shards .* "
                                              "resume with its --data-dir"):
        run_tiny(other, out, "--resume")
    assert (out / "ckpt.pt").read_bytes() == good
    assert run_tiny(moved, out, "--resume") == 0  # the same shards in another folder: resumed


def test_a_float32_run_turns_tf32_off_again(shards, tmp_path):
    """MFU of a float32 run is measured against the fp32 peak: TF32 left on by an earlier run (or bench
    milestone) in the same process would make it wrong."""
    torch.set_float32_matmul_precision("high")
    try:
        assert run_tiny(shards, tmp_path / "o", "--no-tf32") == 0
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        torch.set_float32_matmul_precision("highest")


def test_checkpoints_load_memory_mapped(shards, tmp_path, monkeypatch):
    """torch.load(mmap=True): 8 ranks loading GPT-2 XL do not each copy 6 GB into RAM first."""
    out = tmp_path / "o"
    assert run_tiny(shards, out, "--stop-at", "2") == 0
    real, seen = torch.load, []
    monkeypatch.setattr(torch, "load", lambda *a, **k: seen.append(k.get("mmap")) or real(*a, **k))
    assert run_tiny(shards, out, "--resume") == 0
    assert seen and all(seen), seen


def test_a_run_that_blows_up_but_stays_finite_keeps_the_last_good_checkpoint(shards, tmp_path, monkeypatch,
                                                                             capsys):
    """issue 28: resumed from a good iter-3 checkpoint with --learning-rate 10 --ckpt-interval 1, the losses
    blow up (finite), then a weight goes non-finite: the iter-3 model is still on disk, bit for bit, and the
    message names it."""
    out = tmp_path / "run"
    assert run_tiny(shards, out, "--stop-at", "3") == 0
    ckpt = out / "ckpt.pt"
    before = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    poison_a_weight_after(monkeypatch, 5)
    capsys.readouterr()
    assert run_tiny(shards, out, "--resume", "--learning-rate", "10", "--ckpt-interval", "1") == 3
    captured = capsys.readouterr()
    losses = [r["loss"] for r in records(out, "train") if r["iter"] >= 4]
    assert losses and min(losses) > 2 * math.log(50304)  # it did blow up (the weights of iters 4, 5 are bad)
    assert "iter     4 | val loss" in captured.out and f"{ckpt} (iter 3) kept" in captured.out
    assert f"the last good checkpoint is {ckpt} (iter 3)" in captured.err
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == before


def test_a_good_checkpoint_replaces_the_last_one(shards, tmp_path):
    """The rule lets a run that trains normally save at every interval (the val loss recorded with it)."""
    out = tmp_path / "run"
    assert run_tiny(shards, out, "--ckpt-interval", "2") == 0
    saved = torch.load(out / "ckpt.pt", weights_only=True)
    assert saved["step"] == 6 and 0 < saved["val_loss"] < math.log(50304) + 1


def test_eval_iters_beyond_the_val_shards_are_capped(shards, tmp_path, capsys):
    """issue 28: --eval-iters 1e12 never finished its first evaluation; more batches than the val shards hold
    only repeat them. The val shard here holds 4,000 tokens: 124 batches of 2 x 16 (+1 target token)."""
    assert run_tiny(shards, tmp_path / "o", "--eval-iters", "1000000000000", "--max-iters", "1") == 0
    assert "--eval-iters 1000000000000 is more than the 124 val batches per rank" in capsys.readouterr().out
    assert torch.load(tmp_path / "o" / "ckpt.pt", weights_only=True)["config"]["eval_iters"] == 124


def test_resume_takes_its_settings_from_the_checkpoint(shards, tmp_path, capsys):
    """issue 29: `--resume --out-dir OUT` alone continues the run (data, model, schedule from ckpt.pt); a flag that
    may change overrides with a line; one that may not is refused, naming it. The header names the weights, dtype
    and compile; a warmup longer than half the run is warned about."""
    out = tmp_path / "run"
    assert run_tiny(shards, out, "--stop-at", "2", "--warmup-iters", "4") == 0
    first = capsys.readouterr()
    assert "parameters from scratch (seed 1337) | device cpu | dtype float32 | compile off |" in first.out
    assert "warning: the warmup (4 iters) is longer than half the run (6 iters)" in first.err
    with pytest.raises(train.UserError, match=r"--n-layer 3: a resumed run keeps its checkpoint's n_layer 1 "
                                              r"\(.*ckpt.pt\); leave --n-layer out"):
        train.main(["--resume", "--out-dir", str(out), "--n-layer", "3"])
    assert train.main(["--resume", "--out-dir", str(out), "--max-iters", "8"]) == 0
    printed = capsys.readouterr().out
    assert "resume: --max-iters 8 overrides the checkpoint's 6" in printed
    assert f"parameters resumed from {out / 'ckpt.pt'} |" in printed
    saved = torch.load(out / "ckpt.pt", weights_only=True)
    assert saved["step"] == 8 and saved["config"]["n_embd"] == 16 and saved["config"]["warmup_iters"] == 4
    assert [r["iter"] for r in records(out, "train")] == list(range(8))


def test_issue_28_inputs_are_one_line_and_exit_2_from_the_command_line(shards, tmp_path, run_script, clean_error):
    """issue 28, as a user types them: a batch that would never reach its first step, and a character-level
    nanogpt checkpoint given to --init-from; one line on stderr, exit code 2, nothing written."""
    out = tmp_path / "o"
    r = run_script("build_nanogpt/train.py", *TINY, "--data-dir", shards, "--total-batch", "1000000000000",
                   "--out-dir", out)
    clean_error(r, "--total-batch 1000000000000: must be in [1, 1073741824]")
    import model as M
    char = M.GPT(M.GPTConfig(block_size=16, vocab_size=58, n_layer=1, n_head=2, n_embd=16))
    args = dict(block_size=16, vocab_size=58, n_layer=1, n_head=2, n_embd=16, dropout=0.0, bias=True, flash=True,
                layer_norm_eps=1e-5)
    torch.save({"model": char.state_dict(), "model_args": args, "iter_num": 5}, tmp_path / "ckpt_last.pt")
    for spec in (tmp_path / "ckpt_last.pt", tmp_path):  # the file, and nanogpt's run folder that holds it
        r = run_script("build_nanogpt/train.py", "--init-from", spec, "--data-dir", shards, "--out-dir", out)
        clean_error(r, "a 58-token vocabulary, not GPT-2's 50,257 BPE tokens")
    assert not out.exists()
