"""deep_gradients/train.py: learning, results, checkpoint and exact resume, the CLI and its one-line errors."""
import os
import select
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import LEARNS, TINY_ARGS, assert_made_here_now, config, results, training_flops_per_image, weights

import checkpoint
import cli
import distributed
import evolution
import files
import mnist
import model
import schedule
import train
from cli import UserError

ROOT = Path(__file__).resolve().parents[2]


def run_main(argv, capsys):
    """train.py's command line in this process -> (exit code, stderr)."""
    with pytest.raises(SystemExit) as e:
        cli.run_main(train.main, argv)
    return e.value.code, capsys.readouterr().err.strip()


def test_learns_digits_and_writes_results(tmp_path):
    c = config(tmp_path / "run", **LEARNS, log_interval=2)
    res = train.run(c)
    ep = res["epochs"]
    assert [e["epoch"] for e in ep] == [1, 2, 3, 4]
    assert ep[-1]["train_loss"] < 0.6 * ep[0]["train_loss"]
    assert res["final_test_acc"] > 0.5  # 10 classes: chance is 0.1 (this tiny run reaches ~0.8)
    for key in ("train_loss", "test_loss", "test_acc", "images_per_s", "epoch_time_s", "peak_mem_mb"):
        assert isinstance(ep[0][key], float), key
    on_disk = results(tmp_path / "run")
    assert on_disk["final_test_acc"] == res["final_test_acc"] and on_disk["config"]["width"] == 8
    assert [s for s, _ in on_disk["train_curve"]] == list(range(4 * 16))  # the loss of every step
    # the epoch's train loss is the mean of its steps' losses
    assert ep[0]["train_loss"] == pytest.approx(sum(v for _, v in on_disk["train_curve"][:16]) / 16, rel=1e-5)
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    ck = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    assert ck["epoch"] == 4 and ck["config"]["depth"] == 8 and set(ck) >= {"model", "optimizer", "rng", "progress"}
    group = ck["optimizer"]["param_groups"][0]  # SGD with Nesterov momentum and L2, as the README states
    assert group["nesterov"] is True and group["momentum"] == 0.9 and group["weight_decay"] == 5e-4
    # the recorded test figures are those of the saved weights on the whole held-out split (not train data)
    net = model.ResNet(8, 8)
    net.load_state_dict(ck["model"])
    _, _, x_test, y_test = mnist.load("digits")
    with torch.no_grad():
        logits = net.eval()(x_test)
    assert ep[-1]["test_acc"] == (logits.argmax(1) == y_test).sum().item() / len(y_test) == res["final_test_acc"]
    assert ep[-1]["test_loss"] == pytest.approx(F.cross_entropy(logits, y_test).item(), rel=1e-5)


def test_model_and_optimizer_built_once_from_the_seed():
    c = config("unused", seed=3, optimizer="adamw", learning_rate=0.01)
    net, opt, flops = train.build_model_and_optimizer(c, torch.device("cpu"))
    again = model.from_config({"seed": 3, "depth": 8, "width": 4})  # what analyze.py and ablate.py rebuild
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["lr"] == 0.01
    assert flops == model.count_flops(again, (1, 1, 28, 28))


def test_resume_is_bitwise_exact(tmp_path):
    full = train.run(config(tmp_path / "full", max_epochs=3))
    train.run(config(tmp_path / "part", max_epochs=3, stop_after=1))  # "preempted" after one epoch
    part = train.run(config(tmp_path / "part", max_epochs=3, resume="last"))
    a, b = (torch.load(tmp_path / d / "ckpt.pt", weights_only=True) for d in ("full", "part"))
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert [e["test_acc"] for e in part["epochs"]] == [e["test_acc"] for e in full["epochs"]]
    assert part["train_curve"] == full["train_curve"]


def test_warmup_steps_are_untimed_and_leave_the_run_unchanged(tmp_path):
    """--warmup-steps (where compile and cuDNN autotuning happen) runs before epoch 1 and is undone: the same
    steps and weights as without it, its time reported apart from the epochs'."""
    plain = train.run(config(tmp_path / "plain", max_epochs=1))
    warm = train.run(config(tmp_path / "warm", max_epochs=1, warmup_steps=3))
    assert warm["warmup_s"] > 0 and plain["warmup_s"] == 0
    assert warm["train_curve"] == plain["train_curve"]
    a, b = weights(tmp_path / "plain"), weights(tmp_path / "warm")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_mfu_counts_the_training_flops_of_an_image_once(tmp_path, monkeypatch):
    """mfu * peak * world / images_per_s is the training FLOPs of one image: forward + backward, counted here
    by torch's FlopCounterMode on a real backward (gradients of the input included: PaLM's 3x forward)."""
    peak = 1e12  # a CPU has no peak in hardware.PEAK_FLOPS: give it one
    monkeypatch.setattr(train.hardware, "peak_flops", lambda name, dtype: peak)
    res = train.run(config(tmp_path / "o", max_epochs=1, eval=False, record_interval=0))
    ep = res["epochs"][0]
    assert ep["mfu"] * peak * res["world_size"] / ep["images_per_s"] == pytest.approx(training_flops_per_image(res["config"]))
    line = train.curves.epoch_line
    assert "MFU" not in line({**ep, "mfu": None}, cuda=False) and "MFU 0.1%" in line({**ep, "mfu": 1e-3}, cuda=False)


def test_time_to_target_accuracy(tmp_path, monkeypatch):
    """time_to_target_s sums the training time of the epochs up to the first that reaches the target accuracy;
    the recorder's time and the warm-up's (compilation, cuDNN autotuning: here a slow first step) are not in it."""
    epochs = [dict(epoch=1, epoch_time_s=2.0, test_acc=0.9), dict(epoch=2, epoch_time_s=3.0, test_acc=0.996),
              dict(epoch=3, epoch_time_s=5.0, test_acc=0.999)]
    assert train.time_to_target(epochs, 0.995) == (5.0, 2)
    assert train.time_to_target(epochs, 0.9995) == (None, None)
    assert train.time_to_target([dict(epoch=1, epoch_time_s=2.0)], 0.0) == (None, None)  # --no-eval

    clock, real_clock = [0.0], time.perf_counter  # a clock that a fake slow part moves on at no cost

    def pause(seconds):
        clock[0] += seconds

    real_step, real_stats, calls = train.train_step, evolution.Recorder._write_stats, []

    def slow_first_step(*args):  # as torch.compile or cuDNN's autotuning would be
        calls.append(1)
        pause(100.0 if len(calls) == 1 else 0.0)
        return real_step(*args)

    def slow_record(self, *args):
        pause(100.0)
        return real_stats(self, *args)

    monkeypatch.setattr(time, "perf_counter", lambda: real_clock() + clock[0])
    monkeypatch.setattr(train, "train_step", slow_first_step)
    monkeypatch.setattr(evolution.Recorder, "_write_stats", slow_record)
    monkeypatch.setattr(train, "TARGET_ACC", 0.12)
    res = train.run(config(tmp_path / "o", max_epochs=2, cudnn_benchmark=True, record_interval=1))
    times = [e["epoch_time_s"] for e in res["epochs"]]
    assert res["warmup_s"] >= 100 and len(calls) == 2 * 4 + train.AUTO_WARMUP  # the slow step was a warm-up step
    assert res["record_s"] >= 8 * 100 and max(times) < 50, times  # neither slow part in an epoch's time
    first = next(e["epoch"] for e in res["epochs"] if e["test_acc"] >= 0.12)  # epoch 2 here (11.7%, 12.8%)
    assert res["target_acc"] == 0.12 and res["target_epoch"] == first
    assert res["time_to_target_s"] == pytest.approx(sum(times[:first]))


def test_resume_from_a_given_file(tmp_path):
    train.run(config(tmp_path / "a", max_epochs=2, stop_after=1))
    res = train.run(config(tmp_path / "b", max_epochs=2, resume=str(tmp_path / "a" / "ckpt.pt")))
    assert [e["epoch"] for e in res["epochs"]] == [1, 2] and res["finished"]


def test_resume_rejects_flags_that_change_the_steps(tmp_path):
    train.run(config(tmp_path / "run", max_epochs=3, stop_after=1, eval=False))
    for change, needle in [(dict(batch_size=32), "batch_size=64"), (dict(learning_rate=0.2), "learning_rate=0.1"),
                           (dict(train_subset=128), "train_subset=256"), (dict(width=8), "width=4"),
                           (dict(seed=1), "seed=0")]:
        with pytest.raises(UserError, match=needle):  # would silently re-index the steps and the LR schedule
            train.run(config(tmp_path / "run", **{"max_epochs": 3, "resume": "last", "eval": False, **change}))


def test_resume_takes_the_checkpoints_settings(tmp_path, capsys):
    """Bare --resume continues with the checkpoint's settings (not the defaults); a flag that may change
    (--max-epochs) is said, one that may not (--width) is refused naming the flag."""
    out = tmp_path / "o"
    code, err = run_main([*TINY_ARGS, "--max-epochs", "1", "--no-eval", "--out-dir", str(out)], capsys)
    assert code == 0, err
    code, err = run_main(["--resume", "--out-dir", str(out), "--width", "8"], capsys)
    assert code == 2 and "--width 8: a resumed run keeps its checkpoint's width=4; leave --width out" in err, err
    with pytest.raises(SystemExit) as e:
        cli.run_main(train.main, ["--resume", "--out-dir", str(out), "--max-epochs", "2", "--width", "4"])
    printed = capsys.readouterr().out
    assert e.value.code == 0, printed
    assert "--resume: --max-epochs 2 instead of the checkpoint's 1" in printed and "--width" not in printed
    assert f"resumed from {out / 'ckpt.pt'} at epoch 2, step 0" in printed
    res = results(out)
    assert [e["epoch"] for e in res["epochs"]] == [1, 2] and res["config"]["depth"] == 8 and not res["config"]["eval"]
    code, err = run_main(["--resume", "--out-dir", str(out), "--max-epochs", "1"], capsys)
    assert code == 2 and "--max-epochs 1: the checkpoint" in err and "has done 2 epochs" in err, err


class Payload:  # a pickled object: torch.load(weights_only=True) must refuse it without running anything
    pass


@pytest.mark.parametrize("content,needle", [
    (b"half a checkpoint", "cannot read"), ({"weights": 1}, "not a deep_gradients train.py checkpoint"),
    (Payload(), "cannot read")])
def test_damaged_or_foreign_checkpoint_is_one_line(tmp_path, capsys, content, needle):
    (tmp_path / "o").mkdir()
    path = tmp_path / "o" / "ckpt.pt"
    path.write_bytes(content) if isinstance(content, bytes) else torch.save(content, path)
    code, err = run_main(["--out-dir", str(tmp_path / "o"), "--resume", "--depth", "8", "--device", "cpu"], capsys)
    assert code == 2 and needle in err and len(err.splitlines()) == 1 and "weights_only" not in err, err


def test_architecture_switches_and_recorder_hook_order(tmp_path, monkeypatch, capsys):
    seen = {"steps": []}

    class FakeRecorder:  # stands in for evolution.Recorder: check the hook order train.py promises
        def __init__(self, model, out_dir, every, resume=False, **kw):
            seen["init"] = (type(model).__name__, every, resume)
            self.params = list(model.parameters())
            self.seconds = 0.0

        def on_step(self, step, epoch, lr):
            seen["steps"].append((step, epoch, lr, self.params[0].grad is not None))

        def close(self, final_histograms=True):
            seen["closed"] = final_histograms

    monkeypatch.setattr(train, "Recorder", FakeRecorder)
    res = train.run(config(tmp_path / "run", max_epochs=2, batch_norm=False, residual=False, record_interval=3,
                           eval=False))
    assert seen["init"] == ("ResNet", 3, False) and seen["closed"]
    assert [s[0] for s in seen["steps"]] == list(range(8)) and all(s[3] for s in seen["steps"])  # after backward
    assert seen["steps"][4][1] == 1 and seen["steps"][0][2] > 0
    c = config(tmp_path, max_epochs=2)  # the LR of every step is the schedule over ALL epochs' steps (2 x 4)
    assert [s[2] for s in seen["steps"]] == [schedule.lr_at(s, 8, c) for s in range(8)]
    sd = weights(tmp_path / "run")
    assert not any("bn" in k or "shortcut" in k or "stem.1" in k for k in sd)
    assert res["final_test_acc"] is None  # --no-eval
    assert "no evaluation (--no-eval) -> " in capsys.readouterr().out  # still says where the run went


@pytest.mark.parametrize("argv,needles", [
    (["--depth", "18"], ("--depth 18", "8, 20, 56")),
    (["--dtype", "fp8"], ("--dtype", "float32, bfloat16, float16")),
    (["--dtype", "float16"], ("float16", "bfloat16")),
    (["--sync-bn"], ("--sync-bn", "cuda")),
    (["--schedule", "step"], ("--schedule", "onecycle")),
    (["--batch-size", "0"], ("--batch-size 0", "[1,")),
    (["--momentum", "-0.9"], ("--momentum -0.9: must be in [0, 1)",)),
    (["--momentum", "1"], ("--momentum 1.0: must be in [0, 1)",)),
    (["--max-epochs", "many"], ("--max-epochs", "many")),
    (["--resume"], ("--resume", "no checkpoint")),
    (["--dataset", "cifar10"], ("--dataset", "digits, mnist")),
    (["--learning-rate", "nan"], ("--learning-rate", "finite")),
    (["--learning-rate", "inf"], ("--learning-rate", "finite")),
    (["--learning-rate", "-1"], ("--learning-rate -1.0: must be in",)),
    (["--momentum", "nan"], ("--momentum", "finite")),
    (["--weight-decay", "nan"], ("--weight-decay", "finite")),
    (["--width", "100000"], ("--width 100000", "1024")),
    (["--width", "1e5"], ("--width 100000", "1024")),  # a whole number written as a float: its range judges it
    (["--seed", "-1"], ("--seed -1: must be in [0, 2147483647]",)),
    (["--lr", "0.1"], ("--lr", "did you mean --learning-rate?")),
    (["--epochs", "3"], ("--epochs", "did you mean --max-epochs?")),
    (["--out", "x"], ("--out",)),
])
def test_bad_flags_one_line_exit_2(tmp_path, capsys, argv, needles):
    base = ["--out-dir", str(tmp_path / "o"), "--train-subset", "64", "--batch-size", "32", "--depth", "8",
            "--device", "cpu"]
    code, err = run_main([*base, *argv], capsys)  # argv last: it overrides the base flags
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n.lower() in err.lower(), (n, err)
    assert not (tmp_path / "o" / "ckpt.pt").exists()


def test_results_name_a_command_that_repeats_the_run(tmp_path):
    """results.json's command, parsed by train.py's own parser, gives back the run's settings (bar --resume)."""
    cfg = config(tmp_path / "o", max_epochs=1, eval=False, batch_norm=False, learning_rate=0.05, record_interval=0)
    res = train.run(cfg)
    words = shlex.split(res["command"])
    assert words[:2] == ["python", "deep_gradients/train.py"] and "--no-batch-norm" in words
    again = cli.parse_config(train.Config, words[2:], "train.py", "")
    assert again == cfg
    assert_made_here_now(res)


def test_results_name_paths_from_the_repository_root(tmp_path, monkeypatch):
    """results.json names no folder of this machine: a path inside the repository is written from its root,
    whatever the working directory; a relative path outside it too (../shared/...); an absolute one outside it
    stays as typed. So the recorded command repeats the run when typed at the root."""
    monkeypatch.chdir(ROOT / "deep_gradients")
    cfg = train.Config(out_dir="out/x", data_dir=str(ROOT.parent / "shared" / "data" / "mnist"), resume="last")
    assert train.portable(cfg)["out_dir"] == "deep_gradients/out/x"
    assert train.portable(cfg)["data_dir"] == str(ROOT.parent / "shared" / "data" / "mnist")  # absolute, outside
    assert train.portable(cfg)["resume"] == "last"
    monkeypatch.chdir(tmp_path)
    cfg = train.Config(out_dir=str(ROOT / "deep_gradients" / "out" / "y"), data_dir="mnist", resume="o/ckpt.pt")
    p = train.portable(cfg)
    up = os.path.relpath(tmp_path, ROOT)  # e.g. ../../tmp/pytest-.../test_x0
    assert (p["out_dir"], p["data_dir"], p["resume"]) == ("deep_gradients/out/y", f"{up}/mnist", f"{up}/o/ckpt.pt")
    assert "--out-dir deep_gradients/out/y" in train.command_line(cfg) and str(ROOT) not in train.command_line(cfg)


def test_default_out_dir_is_beside_the_script_whatever_the_working_directory(tmp_path, monkeypatch):
    """No --out-dir: the run goes to deep_gradients/out (git-ignored), never into the folder the command was
    started from (issue 29 item 6)."""
    assert train.OUT == ROOT / "deep_gradients" / "out"
    monkeypatch.setattr(train, "OUT", tmp_path / "default")  # stands for deep_gradients/out: a test writes no
    (tmp_path / "cwd").mkdir()                                 # file into the repository
    monkeypatch.chdir(tmp_path / "cwd")
    train.run(config("", max_epochs=1, record_interval=0))
    assert (tmp_path / "default" / "results.json").is_file() and (tmp_path / "default" / "ckpt.pt").is_file()
    assert list((tmp_path / "cwd").iterdir()) == []


def test_help_lists_the_switches_with_their_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for flag in ("--batch-norm [BOOL]", "--residual [BOOL]", "--channels-last", "--dtype", "--sync-bn", "--compile",
                 "--resume", "--learning-rate", "--max-epochs", "--out-dir", "--record-interval"):
        assert flag in out, flag
    flat = " ".join(out.split())  # argparse wraps the help column
    for text in ("--max-epochs MAX_EPOCHS passes over", "(default: 6)", "peak learning rate (default: 0.1)",
                 "float32 | bfloat16 | float16", "empty = deep_gradients/out, beside this script", "(Goyal et al. 2017) (default: False)"):
        assert text in flat, text
    assert "source" not in flat and "comment" not in flat  # the help is complete, it points nowhere else
    no_bn = cli.parse_config(train.Config, ["--no-batch-norm", "--residual", "false"], "train.py", "")
    assert no_bn.batch_norm is False and no_bn.residual is False


def test_cli_end_to_end(run_script, tmp_path):
    r = run_script("deep_gradients/train.py", *TINY_ARGS, "--train-subset", "128", "--max-epochs", "1",
                   "--channels-last", "--dtype", "bfloat16", "--out-dir", tmp_path / "o", timeout=120)
    assert r.returncode == 0, r.stderr
    res = results(tmp_path / "o")
    assert res["config"]["dtype"] == "bfloat16" and res["config"]["channels_last"] and len(res["epochs"]) == 1
    assert 0 <= res["final_test_acc"] <= 1 and "final test accuracy" in r.stdout


# --------------------------------------------------------------------------------------------------
# faults: a diverged model is never saved, one run per out dir, unwritable out dir


def poison_weights_after(monkeypatch, epoch: int):
    """Make the weights non-finite at the end of epoch `epoch` (1-based), as a diverging run would."""
    real = train.train_epoch

    def poisoned(t, p, stop):
        stopped = real(t, p, stop)
        if p.epoch + 1 == epoch:
            with torch.no_grad():
                next(t.raw_model.parameters()).fill_(float("nan"))
        return stopped

    monkeypatch.setattr(train, "train_epoch", poisoned)


def test_non_finite_weights_never_replace_the_checkpoint(tmp_path, monkeypatch, capsys):
    """A run resumed from a good checkpoint diverges: the message names that checkpoint, still on disk bit for bit."""
    out = tmp_path / "o"
    code, err = run_main([*TINY_ARGS, "--max-epochs", "3", "--stop-after", "1", "--no-eval", "--out-dir", str(out)],
                         capsys)
    good = files.sha256_of(out / "ckpt.pt")
    poison_weights_after(monkeypatch, epoch=2)
    code, err = run_main(["--resume", "--out-dir", str(out)], capsys)
    assert code == 3 and "weights are not finite after epoch 2" in err, err
    assert f"the last good checkpoint is {out / 'ckpt.pt'} (epoch 1, step 0)" in err and len(err.splitlines()) == 1
    assert files.sha256_of(out / "ckpt.pt") == good


def test_a_signal_never_saves_non_finite_weights(tmp_path, monkeypatch, capsys):
    """Ctrl-C just after the weights went non-finite, mid-epoch (before any epoch-end check): nothing is saved,
    the good checkpoint stays bit for bit, and the run ends as diverged (exit 3), not as resumable."""
    out = tmp_path / "o"
    code, err = run_main([*TINY_ARGS, "--max-epochs", "2", "--stop-after", "1", "--log-interval", "0", "--out-dir",
                          str(out)], capsys)
    good = files.sha256_of(out / "ckpt.pt")
    real = train.train_step

    def poisoned_then_ctrl_c(t, xb, yb, step, epoch, lr):
        loss = real(t, xb, yb, step, epoch, lr)
        if step == 5:  # epoch 2's second step (4 steps per epoch)
            with torch.no_grad():
                next(t.raw_model.parameters()).fill_(float("nan"))
            os.kill(os.getpid(), signal.SIGINT)
        return loss

    monkeypatch.setattr(train, "train_step", poisoned_then_ctrl_c)
    code, err = run_main(["--resume", "--out-dir", str(out)], capsys)
    assert code == 3 and "not finite at epoch 2, step 2" in err and "(epoch 1, step 0)" in err, err
    assert files.sha256_of(out / "ckpt.pt") == good


def test_diverged_first_epoch_says_no_checkpoint(tmp_path, monkeypatch, capsys):
    poison_weights_after(monkeypatch, epoch=1)
    code, err = run_main([*TINY_ARGS, "--max-epochs", "2", "--out-dir", str(tmp_path / "o")], capsys)
    assert code == 3 and "no checkpoint was written" in err and not (tmp_path / "o" / "ckpt.pt").exists(), err


def test_non_finite_loss_stops_at_the_next_log_step(tmp_path, monkeypatch, capsys):
    real = train.train_step

    def nan_at_step_5(t, xb, yb, step, epoch, lr):
        loss = real(t, xb, yb, step, epoch, lr)
        return loss * float("nan") if step == 5 else loss

    monkeypatch.setattr(train, "train_step", nan_at_step_5)
    code, err = run_main([*TINY_ARGS, "--max-epochs", "3", "--log-interval", "1", "--out-dir", str(tmp_path / "o")],
                         capsys)
    assert code == 3 and "training loss is nan at step 5" in err and "(epoch 1, step 0)" in err, err
    assert torch.load(tmp_path / "o" / "ckpt.pt", weights_only=True)["epoch"] == 1


def _net(ck):
    net = model.ResNet(8, 4)
    net.load_state_dict(ck["model"])
    return net


def test_second_run_on_a_busy_out_dir_is_refused(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    other = subprocess.Popen(["sleep", "30"])  # a live process holding the lock
    try:
        (out / ".lock").write_text(str(other.pid))
        code, err = run_main([*TINY_ARGS, "--max-epochs", "1", "--out-dir", str(out)], capsys)
        assert code == 2 and f"in use by another run (pid {other.pid})" in err and len(err.splitlines()) == 1, err
    finally:
        other.kill()
        other.wait()
    (out / "ckpt.pt.tmp.999999999").write_bytes(b"left by a killed run")
    code, err = run_main([*TINY_ARGS, "--max-epochs", "1", "--out-dir", str(out)], capsys)  # stale lock: taken over
    assert code == 0, err
    assert not (out / ".lock").exists() and not list(out.glob("*.tmp.*"))


def test_unwritable_out_dir_and_full_disk_are_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    code, err = run_main([*TINY_ARGS, "--max-epochs", "1", "--out-dir", str(tmp_path / "file")], capsys)
    assert code == 2 and str(tmp_path / "file") in err and len(err.splitlines()) == 1, err

    def full_disk(obj, f, *a, **kw):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError(28, "No space left on device")

    real_open = files.os.open

    def read_only(path, *args, **kw):  # as root a chmod does not stop a write: refuse the lock file instead
        if ".lock" in str(path):  # the lock, and the temp file it is written to
            raise OSError(30, "Read-only file system")
        return real_open(path, *args, **kw)

    monkeypatch.setattr(files.os, "open", read_only)
    code, err = run_main([*TINY_ARGS, "--max-epochs", "1", "--out-dir", str(tmp_path / "ro")], capsys)
    assert code == 2 and err.endswith(f"cannot write to {tmp_path / 'ro'}: read-only file system"), err
    assert len(err.splitlines()) == 1
    monkeypatch.setattr(files.os, "open", real_open)

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    code, err = run_main([*TINY_ARGS, "--max-epochs", "1", "--record-interval", "0", "--out-dir",
                          str(tmp_path / "o")], capsys)
    assert code == 2 and "no space left" in err and "ckpt.pt" in err and len(err.splitlines()) == 1, err
    assert not list((tmp_path / "o").glob("ckpt.pt*"))  # no partial file left


# --------------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM


SIGNAL_RUN = dict(train_subset=256, batch_size=32, max_epochs=2, log_interval=0)  # 8 steps per epoch


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    return train.run(config(out, **SIGNAL_RUN)), weights(out)


def start_train(*args, code: str = "") -> subprocess.Popen:
    """train.py ARGS in a subprocess (after `code`, e.g. a slow train_step) once its header is printed: from
    then on a first signal stops the run after its step."""
    script = f"import sys; sys.path.insert(0, {str(ROOT / 'deep_gradients')!r}); import cli, time, train\n{code}\n" \
             "cli.run_main(train.main, sys.argv[1:])"
    proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    header = proc.stdout.readline()
    assert header.startswith("ResNet-8"), header + proc.stderr.read()
    return proc


@pytest.mark.parametrize("sigs", [["SIGINT"], ["SIGTERM"], ["SIGTERM", "SIGTERM"]])
def test_signal_saves_a_checkpoint_that_resumes_exactly(tmp_path, sigs, whole_run):
    """Ctrl-C or SIGTERM: a checkpoint mid-epoch that resumes to the uninterrupted run's weights, bit for bit.
    Two SIGTERMs 5 ms apart (torchrun's agent and SLURM's slurmstepd on a preemption) are one request."""
    args = [*TINY_ARGS, "--train-subset", "256", "--batch-size", "32", "--max-epochs", "2", "--log-interval", "0"]
    proc = start_train(*args, "--out-dir", tmp_path / "cut")
    for k, sig in enumerate(sigs):
        time.sleep(0.005 * k)
        proc.send_signal(getattr(signal, sig))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert err.count(f"{sigs[0]}: stopping after this step (Ctrl-C again to abort)") == 1, err
    assert f"stopped by {sigs[0]} at epoch 1, step " in out and "continue with" in out, out
    ck = torch.load(tmp_path / "cut" / "ckpt.pt", weights_only=True)
    assert ck["epoch"] == 0 and 0 < ck["progress"]["step"] < 8  # mid-epoch
    at_stop = results(tmp_path / "cut")  # redrawn at the stop from what was saved, not left from an earlier run
    assert not at_stop["finished"] and at_stop["train_curve"] == ck["progress"]["history"]["train_curve"]
    if sigs == ["SIGINT"]:  # the hint printed at the stop, run exactly as printed
        hint = out.split("continue with: ", 1)[1].strip()
        r = subprocess.run(hint, shell=True, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and f"at epoch 1, step {ck['progress']['step']}" in r.stdout, r.stdout + r.stderr
        resumed = results(tmp_path / "cut")
    else:
        resumed = train.run(config(tmp_path / "cut", resume="last", **SIGNAL_RUN))
    whole, whole_weights = whole_run
    assert resumed["train_curve"] == whole["train_curve"]
    assert [e["train_loss"] for e in resumed["epochs"]] == [e["train_loss"] for e in whole["epochs"]]
    assert [e["test_loss"] for e in resumed["epochs"]] == [e["test_loss"] for e in whole["epochs"]]
    a = weights(tmp_path / "cut")
    assert all(torch.equal(a[k], whole_weights[k]) for k in a)


def test_ctrl_c_is_answered_at_once_during_a_slow_step(tmp_path):
    """A step of 3 s: the first Ctrl-C prints the stopping line within a second; the run then ends after that
    step with a checkpoint (exit 0), not at once."""
    slow = "real = train.train_step\ntrain.train_step = lambda *a: (time.sleep(3), real(*a))[1]"
    proc = start_train(*TINY_ARGS, "--max-epochs", "1", "--log-interval", "0", "--out-dir", tmp_path / "o",
                       code=slow)
    time.sleep(0.5)  # inside the first step's 3 s
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    ready, _, _ = select.select([proc.stderr], [], [], 1.0)
    line = proc.stderr.readline() if ready else ""
    assert line == "SIGINT: stopping after this step (Ctrl-C again to abort)\n" and time.monotonic() - sent < 1.0, line
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "stopped by SIGINT at epoch 1, step 1" in out, out + err
    assert torch.load(tmp_path / "o" / "ckpt.pt", weights_only=True)["progress"]["step"] == 1


def test_bfloat16_only_where_the_gpu_has_it_natively(monkeypatch):
    """A GPU below compute capability 8 (T4, V100) emulates bfloat16 slowly: refused, float16 (with the
    GradScaler) suggested and accepted; an Ampere or newer GPU takes bfloat16."""
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 5))
    ranks = distributed.Ranks(0, 0, 1, torch.device("cuda", 0))
    with pytest.raises(UserError, match="Tesla T4 has no native bfloat16.*use --dtype float16"):
        train.check_for_device(config("unused", dtype="bfloat16"), ranks)
    train.check_for_device(config("unused", dtype="float16"), ranks)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (8, 0))
    train.check_for_device(config("unused", dtype="bfloat16"), ranks)


def test_second_signal_ends_the_run_at_once():
    """The first Ctrl-C / SIGTERM only asks the loop to stop after its step; a second one raises at once
    (run_main turns it into `interrupted`, exit 130); the previous handlers come back afterwards."""
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with cli.StopSignal(announce=False) as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.name == "SIGTERM"  # only noted
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("the second signal did not interrupt")
    assert signal.getsignal(signal.SIGINT) is before
