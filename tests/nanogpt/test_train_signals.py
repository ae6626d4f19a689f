"""nanogpt/train.py and Ctrl-C / SIGTERM in every phase of a run.

In the training loop a first signal finishes the step and writes a resumable checkpoint (test_train_resume.py);
a second one, or one outside the loop (automatic data preparation, the final exact evaluation, the samples),
ends the run at once: one line, exit 130, nothing written from the unfinished phase.

Signals are sent from here to this very process (in-process runs) or to a train.py subprocess."""
import json
import os
import shlex
import signal
import time
from pathlib import Path

import torch

import report
import train
from helpers import big_wikitext_source, call_main, read_log, read_records, run_args, signal_once_preparing

ROOT = Path(__file__).resolve().parents[2]


def ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.5)  # the handler runs at once; a run that ignored it would carry on from here


def test_ctrl_c_during_the_final_evaluation_ends_the_run(capsys, tiny_data, tmp_path, monkeypatch):
    real = train.evaluate

    def evaluate(run, splits, *rest):
        if list(splits) == ["val"]:  # the exact evaluation over val.bin after the loop
            ctrl_c()
        return real(run, splits, *rest)

    monkeypatch.setattr(train, "evaluate", evaluate)
    out = tmp_path / "eval"
    r = call_main(train.main, capsys, *run_args(tiny_data, out, "--max-iters", 3))
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"train.py: interrupted; resume from {out / 'ckpt_last.pt'}"
    assert "Traceback" not in r.stderr and not (out / "results.json").exists() and not (out / ".lock").exists()


def test_ctrl_c_during_the_samples_ends_the_run(capsys, tiny_data, tmp_path, monkeypatch):
    real, calls = report.print_samples, []

    def print_samples(*args):
        calls.append(1)
        ctrl_c()
        return real(*args)

    monkeypatch.setattr(report, "print_samples", print_samples)
    out = tmp_path / "samples"
    r = call_main(train.main, capsys, *run_args(tiny_data, out, "--max-iters", 3, "--num-samples", 1))
    assert calls and r.returncode == 130, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("train.py: interrupted")
    assert "sample 1" not in r.stdout and not (out / "results.json").exists()


def test_a_second_ctrl_c_in_the_loop_ends_the_run_at_once(capsys, tiny_data, tmp_path, monkeypatch):
    """The first Ctrl-C asks for a checkpoint at the end of the step; a second one in that step does not wait."""
    real, calls = train.train_step, []

    def train_step(*args):
        calls.append(1)
        if len(calls) == 7:
            ctrl_c()
            time.sleep(1.0)  # past cli.StopSignal's grace: a second request, not a launcher's echo of the first
            ctrl_c()
        return real(*args)

    monkeypatch.setattr(train, "train_step", train_step)
    out = tmp_path / "twice"
    r = call_main(train.main, capsys, *run_args(tiny_data, out, "--max-iters", 20, "--log-interval", 1))
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "train.py: interrupted; nothing to resume"
    assert len(calls) == 7 and max(rec["iter"] for rec in read_records(out)) == 6  # step 7 never finished
    assert not (out / "ckpt_last.pt").exists()


def test_one_ctrl_c_is_answered_at_once_and_the_printed_hint_ends_where_an_uninterrupted_run_ends(
        capfd, tiny_data, tmp_path, monkeypatch):
    """issue 29: one Ctrl-C in step 7: the stopping line is out while that step is still running (before its work),
    the run stops after that very step (iter 7), and the command it prints, run exactly, ends where an
    uninterrupted run ends: the same evaluations and the same weights, bit for bit."""
    real, calls, seen = train.train_step, [], []

    def train_step(*args):
        calls.append(1)
        if len(calls) == 7:
            ctrl_c()
            seen.append(capfd.readouterr().err)  # what the terminal shows before the step's work starts
        return real(*args)

    monkeypatch.setattr(train, "train_step", train_step)
    out, full = tmp_path / "once", tmp_path / "full"
    r = call_main(train.main, capfd, *run_args(tiny_data, out, "--max-iters", 20))
    assert "SIGINT: stopping after this step (Ctrl-C again to abort)" in seen[0]
    assert r.returncode == 0 and "stopped by SIGINT at iter 7" in r.stdout, r.stdout + r.stderr
    assert torch.load(out / "ckpt_last.pt", weights_only=True)["iter_num"] == 7
    stopped = json.loads((out / "results.json").read_text())  # redrawn at the stop: what the checkpoint holds
    assert (stopped["stopped_by"], stopped["final"]["iter"], stopped["samples"]) == ("SIGINT", 7, [])
    assert [e["iter"] for e in read_log(out)] == [0] and (out / "loss.png").stat().st_size > 0
    hint = r.stdout.split("continue with: ", 1)[1].splitlines()[0]
    assert hint == f"python {os.path.relpath(train.__file__)} --resume --out-dir {os.path.relpath(out)}"
    monkeypatch.setattr(train, "train_step", real)
    r = call_main(train.main, capfd, *shlex.split(hint)[2:])  # the hint's arguments, as typed
    assert r.returncode == 0 and "ckpt_last.pt at iter 7 (epoch 0, step 7 of 31)" in r.stdout, r.stderr
    assert call_main(train.main, capfd, *run_args(tiny_data, full, "--max-iters", 20)).returncode == 0
    timeless = [[{k: v for k, v in e.items() if k not in ("elapsed_s", "tokens_per_s", "mfu")} for e in read_log(o)]
                for o in (out, full)]
    assert [e["iter"] for e in timeless[0]] == [0, 10, 20] and timeless[0] == timeless[1]
    assert json.loads((out / "results.json").read_text())["final"]["iter"] == 20  # the resumed run's, at its end
    ours, theirs = (torch.load(o / "ckpt_last.pt", weights_only=True)["model"] for o in (out, full))
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_sigterm_during_automatic_preparation_stops_it_promptly(tmp_path, shared_file, tiktoken_cache):
    """train.py preparing a ~20 MB GPT-2 BPE dataset with 2 workers: SIGTERM ends it within seconds, the pool
    terminated and its temp folder removed, one line, exit 130."""
    src = big_wikitext_source(tmp_path, shared_file)
    data = tmp_path / "data"
    args = ["--dataset", "big", "--data-source", src, "--data-dir", data, "--out-dir", tmp_path / "out",
            "--device", "cpu", "--max-iters", 1]
    rc, err, seconds = signal_once_preparing("train.py", args, data, signal.SIGTERM, 120, 30)
    assert seconds < 15
    assert rc == 130 and err.strip().splitlines() == ["train.py: interrupted; nothing to resume"], err
    assert sorted(p.name for p in data.iterdir()) == [] and not (tmp_path / "out" / ".lock").exists()
