"""nanogpt/train.py when the numbers go bad: a non-finite loss, evaluation or weights stops the run (exit 3)
before anything is written from them, naming the checkpoint that really is the last good one.

Faults are injected from here, in-process (monkeypatch), never through settings of the production code."""
import pytest
import torch

import model
import train
from helpers import STEPS_PER_EPOCH, call_main, read_log, run_args


@pytest.fixture
def nan_loss_at(monkeypatch):
    """nan_loss_at(it): the training loss of optimizer step `it` becomes NaN (one micro-step per step)."""
    def arm(it: int):
        real, calls = model.GPT.forward, []

        def forward(self, idx, targets=None):
            logits, loss = real(self, idx, targets)
            if torch.is_grad_enabled():
                calls.append(1)
                if len(calls) == it + 1:
                    loss = loss * float("nan")
            return logits, loss

        monkeypatch.setattr(model.GPT, "forward", forward)
    return arm


def test_nan_loss_stops_and_keeps_last_good_checkpoint(capsys, tiny_data, tmp_path, nan_loss_at):
    out = tmp_path / "nan"
    nan_loss_at(40)  # in epoch 2 (31 steps per epoch)
    r = call_main(train.main, capsys, *run_args(tiny_data, out, "--max-epochs", 3, "--save-epochs", "1"))
    assert r.returncode == 3, r.stderr
    assert "loss is not finite at iter 40" in r.stderr and "Traceback" not in r.stderr
    assert f"the last good checkpoint is {out / 'ckpt_last.pt'}" in r.stderr
    ckpt = torch.load(out / "ckpt_last.pt", weights_only=True)
    assert ckpt["iter_num"] == STEPS_PER_EPOCH and ckpt["epoch"] == 1  # the epoch-1 checkpoint, untouched
    assert not (out / "results.json").exists() and read_log(out)[-1]["iter"] == 40


def test_nan_loss_before_any_checkpoint_says_so(capsys, tiny_data, tmp_path, nan_loss_at):
    out = tmp_path / "early"
    nan_loss_at(2)
    r = call_main(train.main, capsys, *run_args(tiny_data, out, "--max-epochs", 2))
    assert r.returncode == 3 and "no checkpoint of this run was written" in r.stderr, r.stderr
    assert not (out / "ckpt_last.pt").exists() and not (out / "ckpt_epoch1.pt").exists()


def test_non_finite_weights_at_an_epoch_end_never_replace_the_checkpoint(capsys, tiny_data, tmp_path, monkeypatch):
    """Weights that go non-finite after the epoch-2 evaluation, just before its save: ckpt_last.pt stays epoch 1's."""
    real = train.log_eval

    def log_eval(run, state, *rest):
        real(run, state, *rest)
        if state.iter_num == 2 * STEPS_PER_EPOCH:
            with torch.no_grad():
                run.raw_model.transformer.ln_f.weight[0] = float("inf")

    monkeypatch.setattr(train, "log_eval", log_eval)
    out = tmp_path / "inf"
    r = call_main(train.main, capsys, *run_args(tiny_data, out, "--max-epochs", 3, "--save-epochs", "all"))
    assert r.returncode == 3, r.stderr
    assert f"weights are not finite at iter {2 * STEPS_PER_EPOCH}" in r.stderr
    assert f"the last good checkpoint is {out / 'ckpt_last.pt'}" in r.stderr
    assert torch.load(out / "ckpt_last.pt", weights_only=True)["epoch"] == 1
    assert not (out / "ckpt_epoch2.pt").exists() and not (out / "results.json").exists()


def test_a_diverging_learning_rate_writes_nothing(capsys, tiny_data, tmp_path):
    """--learning-rate 1e30: huge but finite weights, a non-finite evaluation; no checkpoint, results or samples."""
    out = tmp_path / "div"
    r = call_main(train.main, capsys, *run_args(tiny_data, out, "--learning-rate", 1e30, "--warmup-iters", 0,
                                                "--max-iters", 3, "--num-samples", 1))
    assert r.returncode == 3, r.stderr
    assert "not finite" in r.stderr and "no checkpoint of this run was written" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["log.jsonl"]
    assert "sample 1" not in r.stdout


@pytest.fixture
def inf_weights_after_eval_at(monkeypatch):
    """inf_weights_after_eval_at(it): a weight becomes inf right after the evaluation at iter `it`."""
    def arm(it: int):
        real = train.log_eval

        def log_eval(run, state, *rest):
            real(run, state, *rest)
            if state.iter_num == it:
                with torch.no_grad():
                    run.raw_model.transformer.ln_f.weight[0] = float("inf")

        monkeypatch.setattr(train, "log_eval", log_eval)
    return arm


def test_non_finite_weights_at_the_end_of_the_run_are_not_saved(capsys, tiny_data, tmp_path, inf_weights_after_eval_at):
    """The budget ends mid-epoch (iter 5): its evaluation, then the end-of-run save, which must not happen."""
    inf_weights_after_eval_at(5)
    out = tmp_path / "end"
    r = call_main(train.main, capsys, *run_args(tiny_data, out, "--max-iters", 5, "--num-samples", 1))
    assert r.returncode == 3, r.stderr
    assert "weights are not finite at iter 5" in r.stderr and "no checkpoint of this run was written" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["log.jsonl"] and "sample 1" not in r.stdout


def test_a_resumed_run_names_the_checkpoint_it_resumed_from(capsys, tiny_data, tmp_path, inf_weights_after_eval_at):
    out = tmp_path / "resumed"
    r = call_main(train.main, capsys, *run_args(tiny_data, out, "--max-iters", STEPS_PER_EPOCH, "--save-epochs", "1"))
    assert r.returncode == 0, r.stderr
    epoch1 = out / "ckpt_epoch1.pt"
    before = epoch1.read_bytes()
    inf_weights_after_eval_at(STEPS_PER_EPOCH + 5)
    r = call_main(train.main, capsys, "--resume", epoch1, "--out-dir", out, "--max-epochs", 2, "--max-iters",
                  STEPS_PER_EPOCH + 5)
    assert r.returncode == 3, r.stderr
    assert f"the last good checkpoint is {epoch1}" in r.stderr and epoch1.read_bytes() == before
    assert torch.load(out / "ckpt_last.pt", weights_only=True)["iter_num"] == STEPS_PER_EPOCH
