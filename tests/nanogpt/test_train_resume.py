"""nanogpt/train.py: exact resume (bit for bit on CPU float32), what a resumed run says, what it refuses, and
SIGTERM leaving a resumable checkpoint."""
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import train
from helpers import STEPS_PER_EPOCH, call_main, read_log, run_args, weights_args

ROOT = Path(__file__).resolve().parents[2]


def test_resume_is_bitwise_exact(capsys, tiny_data, tmp_path):
    # dropout on, so the per-step dropout noise must line up too; the schedule length is fixed because
    # the stopped run has a smaller budget than the uninterrupted one
    common = ["--dropout", 0.1, "--lr-decay-iters", 2 * STEPS_PER_EPOCH, "--save-epochs", "1,2"]
    full, part = tmp_path / "full", tmp_path / "part"
    # in this process (train.main) rather than 4 interpreter starts; the SIGTERM test below uses the CLI
    r = call_main(train.main, capsys, *run_args(tiny_data, full, *common, "--max-epochs", 2))
    assert r.returncode == 0, r.stderr
    # stop after epoch 1; resume to the middle of epoch 2 (a data position inside an epoch); resume to the end
    r = call_main(train.main, capsys, *run_args(tiny_data, part, *common, "--max-epochs", 1))
    assert r.returncode == 0, r.stderr
    assert torch.load(part / "ckpt_epoch1.pt", weights_only=True)["iter_num"] == STEPS_PER_EPOCH
    for budget in (STEPS_PER_EPOCH + 7, 0):  # 0: no step budget (the checkpoint's config holds 38)
        r = call_main(train.main, capsys, "--out-dir", part, "--resume", "--max-epochs", 2, "--max-iters", budget)
        assert r.returncode == 0, r.stderr
        at = STEPS_PER_EPOCH if budget else STEPS_PER_EPOCH + 7
        assert f"resuming from {part / 'ckpt_last.pt'} at iter {at} (epoch 1, step {at - STEPS_PER_EPOCH} of 31)" \
            in r.stdout
        assert "lr schedule" not in r.stderr  # --lr-decay-iters fixes it

    def losses(log):
        return [(e["iter"], e["epochs_done"], e["lr"], e["train_loss"], e["val_loss"]) for e in log]

    a, b = read_log(full), read_log(part)
    assert [e["iter"] for e in a] == [0, 10, 20, 30, 31, 40, 50, 60, 62]  # every 10 steps and at epoch ends
    # the budget-end evaluation at iter 38 is the only extra line in the interrupted run
    assert [e["iter"] for e in b] == [0, 10, 20, 30, 31, 38, 40, 50, 60, 62]
    b = [e for e in b if e["iter"] != STEPS_PER_EPOCH + 7]
    assert losses(a) == losses(b)  # exact equality of floats: bit for bit
    wa = torch.load(full / "ckpt_last.pt", weights_only=True)["model"]
    wb = torch.load(part / "ckpt_last.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_sigterm_writes_resumable_checkpoint(capsys, tiny_data, tmp_path):
    # start the real command line, wait for its second log line (iter 5: training is under way), SIGTERM it
    out = tmp_path / "sig"
    args = [sys.executable, str(ROOT / "nanogpt/train.py"),
            *map(str, run_args(tiny_data, out, "--max-epochs", 1000, "--eval-interval", 5))]
    err_file = tmp_path / "stderr.txt"
    with open(err_file, "w") as err:  # a file, not a pipe: the progress bar must never block on a full pipe
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            deadline = time.time() + 90
            while not ((out / "log.jsonl").exists() and len((out / "log.jsonl").read_text().splitlines()) >= 2):
                assert proc.poll() is None and time.time() < deadline, "no log line, stderr in " + str(err_file)
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            stdout, _ = proc.communicate(timeout=60)
        finally:
            proc.kill()
    stderr = err_file.read_text()
    assert proc.returncode == 0, stderr
    assert "stopped by SIGTERM" in stdout
    ckpt = torch.load(out / "ckpt_last.pt", weights_only=True)
    it = ckpt["iter_num"]
    assert it >= 5 and ckpt["epoch"] * STEPS_PER_EPOCH + ckpt["epoch_step"] == it
    r = call_main(train.main, capsys, "--out-dir", out, "--resume", "--max-iters", it + 3)
    assert r.returncode == 0, r.stderr
    log = read_log(out)
    assert log[-1]["iter"] == it + 3 and torch.load(out / "ckpt_last.pt", weights_only=True)["iter_num"] == it + 3


def test_resume_checks_step_size_and_restores_the_grad_scaler(capsys, clean_error, tiny_data, tmp_path):
    """A float32 run resumed under float16 (no scaler state yet), then resumed again (the scaler's state comes
    back); --dropout may change on resume; a different number of windows per step is refused (its saved
    position would point elsewhere: it used to loop forever)."""
    out = tmp_path / "run"
    r = call_main(train.main, capsys, *run_args(tiny_data, out, "--max-iters", 4))
    assert r.returncode == 0, r.stderr
    assert torch.load(out / "ckpt_last.pt", weights_only=True)["scaler"] == {}
    r = call_main(train.main, capsys, "--out-dir", out, "--resume", "--max-iters", 6, "--dtype", "float16")
    assert r.returncode == 0, r.stderr
    scale = torch.load(out / "ckpt_last.pt", weights_only=True)["scaler"]["scale"]
    tracker = torch.load(out / "ckpt_last.pt", weights_only=True)["scaler"]["_growth_tracker"]
    r = call_main(train.main, capsys, "--out-dir", out, "--resume", "--max-iters", 8, "--dropout", 0.2)
    assert r.returncode == 0, r.stderr
    ckpt = torch.load(out / "ckpt_last.pt", weights_only=True)
    assert ckpt["iter_num"] == 8 and ckpt["config"]["dtype"] == "float16" and ckpt["scaler"]["scale"] > 0
    # the scaler continued (2 more finite steps on its growth tracker), it did not start afresh
    assert (ckpt["scaler"]["scale"], ckpt["scaler"]["_growth_tracker"]) == (scale, tracker + 2)
    assert scale > 0 and ckpt["model_args"]["dropout"] == 0.2  # the model runs with the new dropout
    before = (out / "ckpt_last.pt").read_bytes()
    r = call_main(train.main, capsys, "--out-dir", out, "--resume", "--batch-size", 8, "--max-epochs", 3)
    clean_error(r, "cannot resume", "8 of 127 windows", "4 of 127", "--batch-tokens")
    r = call_main(train.main, capsys, "--out-dir", out, "--resume", "--n-layer", 3)  # the architecture is the checkpoint's
    clean_error(r, "--n-layer 3 differs from the checkpoint's 2", "keeps its architecture")
    assert (out / "ckpt_last.pt").read_bytes() == before


def test_init_from_our_checkpoint_takes_weights_not_state(capsys, tiny_data, tmp_path):
    src = tmp_path / "src"
    assert call_main(train.main, capsys, *run_args(tiny_data, src, "--max-iters", 3)).returncode == 0
    out = tmp_path / "ft"
    r = call_main(train.main, capsys, *run_args(tiny_data, out, "--init-from", src / "ckpt_last.pt", "--max-iters", 1,
                                           "--learning-rate", 0, "--dropout", 0.1))
    assert r.returncode == 0, r.stderr
    a = torch.load(src / "ckpt_last.pt", weights_only=True)
    b = torch.load(out / "ckpt_last.pt", weights_only=True)
    assert b["iter_num"] == 1 and b["model_args"]["dropout"] == 0.1  # a fresh run, the source's weights
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_a_resumed_budget_that_replans_the_schedule_is_warned_about(capsys, tiny_data, tmp_path):
    out = tmp_path / "replan"
    assert call_main(train.main, capsys, *run_args(tiny_data, out, "--max-iters", 10)).returncode == 0
    r = call_main(train.main, capsys, "--out-dir", out, "--resume", "--max-iters", 20)
    assert r.returncode == 0, r.stderr
    assert "warning: the lr schedule now decays over 20 iters, the checkpoint's over 10" in r.stderr
    assert "--lr-decay-iters 10" in r.stderr


def test_resume_on_changed_data_is_refused(capsys, clean_error, tiny_data, tmp_path):
    """Another dataset under the same name, even with the same number of windows: refused, saying so."""
    data_dir = tmp_path / "d"
    shutil.copytree(tiny_data / "shakespeare_char", data_dir / "shakespeare_char")
    out = tmp_path / "run"
    assert call_main(train.main, capsys, *run_args(data_dir, out, "--max-iters", 3)).returncode == 0
    train_bin = data_dir / "shakespeare_char" / "train.bin"
    tokens = np.fromfile(train_bin, dtype=np.uint16)
    np.roll(tokens, 1).tofile(train_bin)  # same size, other content
    before = (out / "ckpt_last.pt").read_bytes()
    r = call_main(train.main, capsys, "--out-dir", out, "--resume", "--max-iters", 6)
    clean_error(r, "cannot resume", "not the data the checkpoint trained on", "head_sha256")
    assert (out / "ckpt_last.pt").read_bytes() == before


def test_a_gpt2_bpe_checkpoint_is_not_fine_tuned_on_char_ids(capsys, clean_error, tiny_data, tmp_path):
    import model

    gpt = model.GPT(model.GPTConfig(block_size=16, vocab_size=50304, n_layer=1, n_head=2, n_embd=16))
    torch.save({"model": gpt.state_dict(), "model_args": json.loads(json.dumps(gpt.config.__dict__))},
               tmp_path / "bpe.pt")
    r = call_main(train.main, capsys, *weights_args(tiny_data, tmp_path / "ft", "--init-from", tmp_path / "bpe.pt"))
    clean_error(r, "tokenizer char", "does not match the model's vocabulary of 50304")
