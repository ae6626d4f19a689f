"""nanogpt/recipe.py's restatement of nanoGPT's training loop (the recipe parity run's reference), and
nanogpt/bench.py, the speed bench, running.

The loop trains model.GPT or bench.py's restatement of nanoGPT's model (RefGPT). Given the same seed they
draw the same initial weights and compute the same function, so their whole training runs must agree;
that is what lets recipe.py compare train.py against nanoGPT's own loop and model."""
import json

import numpy as np
import pytest
import torch

import bench
import model
import recipe
from helpers import call_main


SHORT = dict(block_size=16, batch_size=4, n_layer=2, n_head=2, n_embd=32, iters=60, lr=3e-3, min_lr=3e-4,
             warmup=5, beta2=0.99, eval_interval=10, eval_iters=2)


@pytest.fixture(scope="module")
def folder(tiny_data):
    return tiny_data / "shakespeare_char"


def test_our_model_retraces_nanogpts_run(folder):
    ref = recipe.nanogpt_loop(1337, folder, SHORT)
    ours = recipe.nanogpt_loop(1337, folder, SHORT, model_cls=model.GPT)
    assert ours == ref  # bit for bit: same initial weights, same arithmetic, same batches
    assert ref["train_estimate"] < 3.5 and ref["val_full"] < 4.0  # it learned: a uniform guess costs ln 65 = 4.17
    assert recipe.nanogpt_loop(1, folder, SHORT) != pytest.approx(ref, rel=1e-5)  # the seed matters


def test_full_val_loss_is_the_mean_over_every_window(folder):
    torch.manual_seed(0)
    gpt = model.GPT(model.GPTConfig(block_size=16, vocab_size=65, n_layer=1, n_head=1, n_embd=16))
    val = np.fromfile(folder / "val.bin", dtype=np.uint16)
    n = (len(val) - 1) // 16
    with torch.no_grad():
        each = [gpt(torch.from_numpy(val[i * 16 : i * 16 + 16].astype(np.int64))[None],
                    torch.from_numpy(val[i * 16 + 1 : i * 16 + 17].astype(np.int64))[None])[1].item() for i in range(n)]
    assert recipe.full_val_loss(gpt, val, 16) == pytest.approx(sum(each) / n, rel=1e-6)


def test_speed_bench_runs_and_reports(capsys, monkeypatch, tmp_path):
    synced = []  # every timer waits on the device the bench runs on (on a GPU: cuda:N, not the current one)
    monkeypatch.setattr(bench.hardware, "synchronize", synced.append)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    args = ["--iters", "1", "--rounds", "1", "--warmup", "0", "--n-layer", "1", "--threads", "1", "--out-dir", tmp_path]
    r = call_main(bench.main, capsys, *args)
    assert r.returncode == 0, r.stderr
    assert len(synced) >= 6 and set(synced) == {"cpu"}
    result = json.loads(r.stdout.strip().splitlines()[-1])
    written = json.loads((tmp_path / "train_step.json").read_text())  # the line, with how it was made
    assert written == {**written, **result} and written["torch_threads"] == 1 and "out_dir" not in written
    assert written["command"] == f"OMP_NUM_THREADS=1 python nanogpt/bench.py {' '.join(map(str, args))}"
    tokens = result["batch_size"] * result["block_size"]
    for name in ("ours", "nanogpt_ref"):  # both models timed, figures consistent with each other
        row = result[name]
        assert row["ms_per_iter"] >= row["ms_per_iter_min"] > 0
        assert row["tokens_per_s"] == pytest.approx(tokens / (row["ms_per_iter"] / 1e3))
        assert row["mfu"] is None  # no datasheet peak for a CPU
    ratio = result["nanogpt_ref"]["ms_per_iter"] / result["ours"]["ms_per_iter"]
    assert result["speedup_vs_nanogpt_ref"] == pytest.approx(ratio)


def test_generate_compares_the_cache_in_float32(capsys, monkeypatch, tmp_path):
    """bench.py --generate in bfloat16: the timed runs use bf16, the same-tokens check runs in float32."""
    small = model.GPTConfig(block_size=64, vocab_size=50257, n_layer=1, n_head=2, n_embd=16)
    monkeypatch.setattr(bench, "GPTConfig", lambda **kw: small)
    dtypes = []
    real = model.GPT.generate

    def generate(self, idx, n, **kw):
        dtypes.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32)
        return real(self, idx, n, **kw)

    monkeypatch.setattr(model.GPT, "generate", generate)
    r = call_main(bench.main, capsys, "--generate", "--dtype", "bfloat16", "--max-new-tokens", "70",
                  "--out-dir", tmp_path)
    assert r.returncode == 0, r.stderr
    assert dtypes == [torch.bfloat16] * 3 + [torch.float32] * 2  # warm-up, cached, uncached; then the check
    assert json.loads(r.stdout.strip().splitlines()[-1])["same_tokens"] is True
    assert json.loads((tmp_path / "generate.json").read_text())["same_tokens"] is True


@pytest.mark.parametrize("args", [["--dtype", "int8"], ["--n-embd", "30"],
                                  ["--n-head", "0"], ["--batch-size", "0"], ["--threads", "-1"],
                                  ["--device", "tpu"], ["--iters", "x"], ["--max-new-tokens", "1000000000000"],
                                  ["--seed", "-1"], ["--seed", str(2**64)], ["--seed", "1e20"],
                                  ["--max-new-tokens", "1e12"],
                                  ["--n-layer", "1000000"]])
def test_bad_arguments_exit_2(capsys, clean_error, args):
    value = str(int(float(args[-1]))) if args[-1] in ("1e20", "1e12") else args[-1]  # a whole number, as parsed
    clean_error(call_main(bench.main, capsys, *args), value)  # one line naming the bad value


@pytest.mark.parametrize("args", [["--seeds", "a,b"], ["--seeds", f"1,{2**64 - 1}"], ["--threads", "-1"]])
def test_recipe_bad_arguments_exit_2(capsys, clean_error, args):
    clean_error(call_main(recipe.main, capsys, *args), args[-1])  # one line naming the bad value


def test_bench_times_only_and_does_not_import_train():
    """bench.py sits below train.py: timing the model needs neither the training loop nor recipe.py."""
    import ast

    tree = ast.parse(open(bench.__file__).read())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"train", "recipe", "session", "report", "checkpoint"}, imported
