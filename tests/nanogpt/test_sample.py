"""nanogpt/sample.py: text from a training checkpoint, padding ids skipped, one-line errors naming the value."""
import json

import pytest
import torch

import config
import sample
from helpers import call_main, tiny_gpt


def test_sample_cli_wrong_checkpoint_is_clean_error(tmp_path, run_script, clean_error):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    clean_error(run_script("nanogpt/sample.py", "--init-from", tmp_path, "--device", "cpu"), "model_type", "llama")
    notes = tmp_path / "notes.txt"  # a file that is no checkpoint, whatever its name
    notes.write_text("loss 1.9 at step 2000\n")
    clean_error(run_script("nanogpt/sample.py", "--init-from", notes, "--device", "cpu"),
                f"{notes} is not a PyTorch checkpoint")


def test_sample_script_from_training_checkpoint(tmp_path, run_script):
    """sample.py on OUT/ckpt_last.pt (train.py's layout): greedy text equals model.generate decoded."""
    data = tmp_path / "data" / "tinychars"
    data.mkdir(parents=True)
    (data / "meta.json").write_text(json.dumps({"tokenizer": "byte", "vocab_size": 256}))  # as prepare.py writes
    model = tiny_gpt(vocab_size=256)
    model_args = dict(block_size=32, vocab_size=256, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    (tmp_path / "out").mkdir()
    torch.save({"model": model.state_dict(), "model_args": model_args,
                "config": {"dataset": "tinychars", "data_dir": str(tmp_path / "data")}},
               tmp_path / "out" / "ckpt_last.pt")
    r = run_script("nanogpt/sample.py", "--init-from", tmp_path / "out", "--start", "abc", "--num-samples", 1,
                   "--max-new-tokens", 40, "--temperature", 0, "--device", "cpu", "--dtype", "float32")
    assert r.returncode == 0, r.stderr
    ids = model.generate(torch.tensor([list(b"abc")]), 40, temperature=0)[0].tolist()
    expected = bytes(ids).decode("utf-8", errors="replace")
    assert r.stdout.startswith(expected + "\n---------------\n")
    assert "tokens/s" in r.stdout


def test_sample_script_skips_padding_ids_and_rejects_unknown_characters(tmp_path, capsys):
    """A vocabulary padded past the tokenizer's (as train.py pads GPT-2's 50257 to 50304) can sample ids no
    tokenizer decodes: they are left out instead of crashing. A prompt character outside a char vocabulary
    is a one-line error."""
    data = tmp_path / "data"
    for name, meta in (("bytes", {"tokenizer": "byte", "vocab_size": 256}),
                       ("chars", {"tokenizer": "char", "chars": "\nab", "vocab_size": 3})):
        (data / name).mkdir(parents=True)
        (data / name / "meta.json").write_text(json.dumps(meta))
    model = tiny_gpt(vocab_size=320)  # 64 padding ids: about 1 in 5 uniform-ish draws
    args = dict(block_size=32, vocab_size=320, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    torch.save({"model": model.state_dict(), "model_args": args, "config": {"dataset": "bytes", "data_dir": str(data)}},
               tmp_path / "bytes.pt")
    r = call_main(sample.main, capsys, "--init-from", tmp_path / "bytes.pt", "--start", "abc", "--num-samples", 1,
                  "--max-new-tokens", 40, "--temperature", 2, "--top-k", "none", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    ids = model.generate(torch.tensor([list(b"abc")]), 40, temperature=2.0,
                         generator=torch.Generator().manual_seed(1337))[0].tolist()
    assert max(ids) >= 256  # the run did draw padding ids
    assert r.stdout.startswith(bytes(t for t in ids if t < 256).decode("utf-8", errors="replace") + "\n---")
    torch.save({"model": tiny_gpt(vocab_size=3).state_dict(), "model_args": {**args, "vocab_size": 3},
                "config": {"dataset": "chars", "data_dir": str(data)}}, tmp_path / "chars.pt")
    r = call_main(sample.main, capsys, "--init-from", tmp_path / "chars.pt", "--start", "abc", "--device", "cpu")
    assert r.returncode == 2
    assert r.stderr.strip().endswith("error: character 'c' is not in this char-level vocabulary (3 characters)")


@pytest.mark.parametrize("args, needle", [
    (["--top-p", "2"], "--top-p 2.0"), (["--top-k", "0"], "--top-k 0"), (["--temperature", "-1"], "--temperature -1.0"),
    (["--max-new-tokens", "0"], "--max-new-tokens 0"), (["--num-samples", "x"], "'x'"),
    (["--max-new-tokens", str(10**12)], str(10**12)), (["--temperature", "nan"], "nan"), (["--seed", "-1"], "-1"),
    (["--max-new-tokens", "1e12"], "--max-new-tokens 1000000000000"), (["--seed", "1e20"], "--seed 100000000000000000000"),
    (["--seed", str(2**64 - 1)], str(2**64 - 1)),
    (["--seed", str(2**32)], "--seed 4294967296: must be in [0, 4294967295]"),  # train.py's range (MAX_SEED)
    (["--tempreature", "1"], "did you mean --temperature?"),
])
def test_sample_bad_option_names_the_value(capsys, clean_error, args, needle):
    """Checked before any model is loaded: one line naming the flag and its value, exit 2."""
    clean_error(call_main(sample.main, capsys, *args), needle)


def test_sample_default_init_from_is_train_default_out_dir():
    """The default checkpoint folder is train.py's default --out-dir, whatever the working directory."""
    assert sample.SampleConfig().init_from == config.TrainConfig().out_dir


def test_sample_dtype_follows_the_device(capsys, tmp_path, monkeypatch):
    """--dtype auto is decided for the device in use, after it is known: float32 on --device cpu, whatever GPU 0 is."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    (tmp_path / "data" / "b").mkdir(parents=True)
    (tmp_path / "data" / "b" / "meta.json").write_text(json.dumps({"tokenizer": "byte", "vocab_size": 256}))
    torch.save({"model": tiny_gpt(vocab_size=256).state_dict(), "model_args": dict(
        block_size=32, vocab_size=256, n_layer=2, n_head=2, n_embd=32), "config": {
        "dataset": "b", "data_dir": str(tmp_path / "data")}}, tmp_path / "b.pt")
    synced = []  # the timer waits on the device in use
    monkeypatch.setattr(sample.hardware, "synchronize", synced.append)
    r = call_main(sample.main, capsys, "--init-from", tmp_path / "b.pt", "--device", "cpu", "--num-samples", 2,
                  "--max-new-tokens", 3)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("(KV cache, cpu, float32)"), r.stdout
    assert synced == ["cpu", "cpu"]


def test_ctrl_c_while_sampling_is_one_line_exit_130(tmp_path):
    """Ctrl-C in the middle of sampling: `sample.py: interrupted`, exit 130, no traceback."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "data" / "b").mkdir(parents=True)
    (tmp_path / "data" / "b" / "meta.json").write_text(json.dumps({"tokenizer": "byte", "vocab_size": 256}))
    torch.save({"model": tiny_gpt(vocab_size=256).state_dict(), "model_args": dict(
        block_size=32, vocab_size=256, n_layer=2, n_head=2, n_embd=32), "config": {
        "dataset": "b", "data_dir": str(tmp_path / "data")}}, tmp_path / "b.pt")
    root = Path(__file__).resolve().parents[2]
    args = ["--init-from", tmp_path / "b.pt", "--device", "cpu", "--num-samples", 1000, "--max-new-tokens", 100]
    proc = subprocess.Popen([sys.executable, str(root / "nanogpt/sample.py"), *map(str, args)], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""})
    try:
        while proc.stdout.readline() != "---------------\n":  # the first sample is out: sampling goes on
            assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and err.strip().splitlines() == ["sample.py: interrupted"], err
