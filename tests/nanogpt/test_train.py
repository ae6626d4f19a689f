"""nanogpt/train.py: config, epochs, schedule, checkpoints, bad input, mixed precision, NaN handling.

Runs on a tiny char-level slice of Tiny Shakespeare (2,048 train tokens) and a 2-layer, 32-wide model, so
an epoch is a few dozen steps and a run takes seconds. Helpers: tests/nanogpt/helpers.py.
"""
import json
import subprocess

import numpy as np
import pytest
import torch

from helpers import call_main, read_log, run_args

# --------------------------------------------------------------------------------------------------
# configuration


def test_precedence_defaults_preset_file_flags(train, tmp_path):
    cfg = train.resolve_config([])
    assert cfg == train.TrainConfig(**train.PRESETS["demo"])  # no arguments: the offline demo preset
    assert cfg.dataset == "python_stdlib" and cfg.device == "auto" and cfg.max_iters > 0
    cfg = train.resolve_config(["--preset", "shakespeare_char"])
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size) == (6, 6, 384, 256)
    assert cfg.dataset == "shakespeare_char" and cfg.beta1 == 0.9  # untouched fields keep the defaults
    gpt2 = train.resolve_config(["--preset", "gpt2"])
    assert (gpt2.n_layer, gpt2.n_embd, gpt2.block_size, gpt2.beta2, gpt2.eps, gpt2.weight_decay) == (
        12, 768, 1024, 0.95, 1e-8, 0.1)
    assert train.resolve_config(["--preset", "finetune_shakespeare"]).init_from == "gpt2"
    toml = tmp_path / "c.toml"
    toml.write_text('preset = "shakespeare_char"\nn-layer = 3\nlearning_rate = 2\ncompile = false\n')
    cfg = train.resolve_config(["--config", str(toml)])
    assert (cfg.n_layer, cfg.n_head, cfg.learning_rate, cfg.compile) == (3, 6, 2.0, False)  # file over preset
    cfg = train.resolve_config(["--config", str(toml), "--n-layer", "5", "--compile"])
    assert (cfg.n_layer, cfg.compile) == (5, True)  # flags over file
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"n_head": 8, "bias": False}))
    cfg = train.resolve_config(["--config", str(js), "--no-bias", "--seed", "7"])
    assert (cfg.n_head, cfg.bias, cfg.seed) == (8, False, 7)


def test_presets_end_on_their_step_budget(train):
    """Presets with a decay length stop at max_iters == lr_decay_iters, not earlier at max_epochs: gpt2's 600k
    steps are ~33 epochs of OpenWebText (9.04B train tokens, as nanoGPT's prepare.py reports)."""
    train_tokens = {"shakespeare_char": 1_003_854, "openwebtext": 9_035_582_198}
    for name, preset in train.PRESETS.items():
        if "lr_decay_iters" not in preset:
            continue
        cfg = train.resolve_config(["--preset", name])
        windows = train.train_windows(train_tokens[cfg.dataset], cfg.block_size)
        steps_per_epoch = windows // (cfg.batch_size * train.check_config(cfg, 1))
        assert min(steps_per_epoch * cfg.max_epochs, cfg.max_iters) == cfg.max_iters == cfg.lr_decay_iters, name


def test_help_lists_every_field(run_script, train):
    r = run_script("nanogpt/train.py", "--help", timeout=60)
    assert r.returncode == 0
    for f in train.TrainConfig.__dataclass_fields__:
        if f != "debug_nan_at_iter":
            assert "--" + f.replace("_", "-") in r.stdout, f


def test_epoch_order_is_seeded_and_ranks_are_disjoint(train):
    order = train.epoch_order(103, seed=1, epoch=0)
    assert sorted(order) == list(range(103))
    assert np.array_equal(order, train.epoch_order(103, 1, 0))
    assert not np.array_equal(order, train.epoch_order(103, 1, 1))  # a new order every epoch
    world, B, accum = 3, 2, 4
    steps = 103 // (world * B * accum)
    seen = np.concatenate([train.step_windows(order, s, r, world, B, accum).ravel()
                           for s in range(steps) for r in range(world)])
    assert len(set(seen)) == len(seen) == steps * world * B * accum  # disjoint shares, nothing repeats
    # what 3 ranks see at a step is exactly what one process with 3x the accumulation sees
    one = train.step_windows(order, 1, 0, 1, B, accum * world).ravel()
    three = np.concatenate([train.step_windows(order, 1, r, world, B, accum).ravel() for r in range(world)])
    assert np.array_equal(one, three)
    assert train.num_windows(1 + 16 * 5, 16) == 5  # windows of block+1 tokens, inputs not overlapping
    # training shifts the grid each epoch (seeded); every window still fits at the largest shift
    shifts = {train.epoch_shift(1, e, 16) for e in range(50)}
    assert shifts <= set(range(16)) and len(shifts) > 5
    data = np.arange(16 * 7 + 3, dtype=np.uint16)
    n = train.train_windows(len(data), 16)
    x, y = train.get_batch(data, np.arange(n), 16, "cpu", shift=15)
    assert n == 6 and y[-1, -1] == len(data) - 4 and x[0, 0] == 15
    with pytest.raises(IndexError):
        train.get_batch(data, np.arange(n + 1), 16, "cpu", shift=15)


def test_batches_shift_by_one(train):
    data = np.arange(200, dtype=np.uint16)
    x, y = train.get_batch(data, np.array([0, 3]), 16, "cpu")
    assert x.shape == y.shape == (2, 16)
    assert x[1, 0] == 48 and torch.equal(y[:, :-1], x[:, 1:]) and y[1, -1] == 64


def test_lr_schedule_warmup_cosine_to_ten_percent(train):
    cfg = train.TrainConfig(learning_rate=1.0, warmup_iters=10, min_lr_ratio=0.1)
    lrs = [train.get_lr(i, cfg, 110) for i in range(120)]
    assert lrs[0] == pytest.approx(1 / 11) and lrs[9] == pytest.approx(10 / 11)
    assert lrs[10] == pytest.approx(1.0) and lrs[60] == pytest.approx(0.55)
    assert lrs[110] == lrs[119] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone decay after warmup


def test_grad_accumulation_from_batch_tokens(train):
    cfg = train.TrainConfig(batch_size=12, block_size=1024, batch_tokens=491_520)
    assert train.check_config(cfg, 1) == 40 and train.check_config(cfg, 8) == 5
    with pytest.raises(train.ConfigError, match="not a multiple"):
        train.check_config(cfg, 3)


def test_dtype_resolution(train, monkeypatch):
    # bf16 only where it is native: torch.cuda.is_bf16_supported() also says yes to V100/T4's emulation
    monkeypatch.setattr(torch.version, "hip", None)
    for capability, native in (((7, 5), False), ((8, 0), True), ((9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert train.native_bf16("cuda:0") is native
    assert train.resolve_dtype("auto", "cpu", False) == "float32"
    assert train.resolve_dtype("auto", "cuda", True) == "bfloat16"
    assert train.resolve_dtype("auto", "cuda", False) == "float16"
    with pytest.raises(train.ConfigError, match="bfloat16 is not supported by this GPU"):
        train.resolve_dtype("bfloat16", "cuda", False)


# --------------------------------------------------------------------------------------------------
# bad input: exit 2, one line, before training


@pytest.mark.parametrize("args, needles", [
    (["--n-embd", 30, "--n-head", 4], ["n_embd 30", "n_head 4"]),
    (["--block-size", 100_000], ["block_size 100000", "larger than the data"]),
    (["--init-from", "gpt2", "--block-size", 2048], ["block_size 2048", "gpt2 allows"]),
    (["--batch-tokens", 100], ["batch_tokens 100", "not a multiple"]),
    (["--init-from", "gpt2"], ["tokenizer", "char"]),
    (["--preset", "nope"], ["unknown preset", "nope"]),
    (["--dataset", "no_such_dataset"], ["no_such_dataset"]),
    (["--dtype", "float64"], ["float64"]),
    (["--n-layer", "abc"], ["n-layer", "abc"]),
    (["--save-epochs", "1,x"], ["save_epochs"]),
    (["--final-eval-tokens", -5], ["final_eval_tokens", "-5"]),
    (["--init-from", "/no/such/file.pt"], ["/no/such/file.pt"]),
    (["--seed", -1], ["seed must be >= 0"]),  # numpy's seeding would crash mid-run
    (["--batch-tokens", -64], ["batch_tokens must be >= 0"]),
    (["--beta2", 1.5], ["beta2", "1.5"]),
    (["--learning-rate", -1], ["learning_rate"]),
])
def test_bad_config_exits_2_with_one_line(train, tiny_data, tmp_path, capsys, clean_error, args, needles):
    r = call_main(train, capsys, *run_args(tiny_data, tmp_path / "out"), *args)
    clean_error(r, *needles)
    assert not (tmp_path / "out" / "ckpt_last.pt").exists()


def test_unavailable_device_exits_2(train, tiny_data, tmp_path, capsys, clean_error):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = call_main(train, capsys, *run_args(tiny_data, tmp_path / "out"), "--device", "cuda")
    clean_error(r, "cuda", "not available")


def test_bad_config_file_exits_2(train, tiny_data, tmp_path, capsys, clean_error):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("n_layers = 3\n")
    clean_error(call_main(train, capsys, "--config", cfg), "n_layers", "unknown setting")
    cfg.write_text('n_layer = "three"\n')
    clean_error(call_main(train, capsys, "--config", cfg), "n_layer must be int")


def test_command_line_error_is_one_line(run_script, clean_error):
    clean_error(run_script("nanogpt/train.py", "--n-embd", "30", "--n-head", "4", timeout=60), "n_embd 30")


def test_tampered_checkpoint_is_refused(train, capsys, clean_error, tmp_path):
    class Evil:  # unpickling this would run a command
        def __reduce__(self):
            return (subprocess.call, (["touch", str(tmp_path / "pwned")],))

    bad = tmp_path / "ckpt_last.pt"
    torch.save({"model": {}, "model_args": {}, "config": {}, "payload": Evil()}, bad)
    r = call_main(train, capsys, "--resume", bad)
    clean_error(r, "refusing to load checkpoint", str(bad))
    assert not (tmp_path / "pwned").exists()
    weights_only = tmp_path / "weights.pt"  # model and model_args, no training state: not resumable
    torch.save({"model": {}, "model_args": {}}, weights_only)
    clean_error(call_main(train, capsys, "--resume", weights_only), "no training state", "'config' is missing")


# --------------------------------------------------------------------------------------------------
# runs


def test_bfloat16_autocast_on_cpu_learns(train, capsys, tiny_data, tmp_path):
    out = tmp_path / "bf16"
    r = call_main(train, capsys, *run_args(tiny_data, out, "--dtype", "bfloat16", "--max-epochs", 2,
                                           "--num-samples", 1, "--sample-tokens", 20))
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    log = read_log(out)
    assert res["device"]["dtype"] == "bfloat16"
    assert log[-1]["val_loss"] < log[0]["val_loss"] - 0.3  # it learns
    counts = np.bincount(np.fromfile(tiny_data / "shakespeare_char" / "train.bin", dtype=np.uint16))
    p = counts[counts > 0] / counts.sum()
    assert res["unigram_baseline_nats"] == pytest.approx(-(p * np.log(p)).sum())
    assert [row["epochs_done"] for row in res["per_epoch"]] == [1, 2]
    assert len(res["samples"]) == 1 and "sample 1" in r.stdout
    assert (out / "loss.png").stat().st_size > 1000 and (out / "ckpt_epoch1.pt").exists()
    assert not (out / "ckpt_epoch2.pt").exists()  # the default --save-epochs 1,5
    ckpt = torch.load(out / "ckpt_last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and not any(k.startswith("_orig_mod.") for k in ckpt["model"])
    for key in ("optimizer", "scaler", "schedule", "data_order", "rng", "config", "losses", "model_args"):
        assert key in ckpt, key
    assert ckpt["rng"]["torch"].dtype == torch.uint8 and ckpt["config"]["dataset"] == "shakespeare_char"


def test_final_val_loss_is_exact_over_every_window(train, load_module, capsys, tiny_data, tmp_path):
    """results.json's val_loss_full equals the loss of the saved model over all of val.bin, recomputed here."""
    out = tmp_path / "full"
    r = call_main(train, capsys, *run_args(tiny_data, out, "--max-iters", 12))
    assert r.returncode == 0, r.stderr
    final = json.loads((out / "results.json").read_text())["final"]
    model = load_module("nanogpt", "model")
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
    # the logged losses of the same weights (the budget-end evaluation) are each split's own fixed windows
    last = read_log(out)[-1]
    assert last["iter"] == 12
    for split, n_windows in (("train", train.train_windows(2048, 16)), ("val", n)):
        data = np.fromfile(tiny_data / "shakespeare_char" / f"{split}.bin", dtype=np.uint16)
        xs, ys = train.get_batch(data, train.eval_windows(n_windows, 2 * 4, 1337, split), 16, "cpu")
        with torch.no_grad():
            assert last[f"{split}_loss"] == pytest.approx(gpt(xs, ys)[1].item(), rel=1e-5), split
    # a budget of 40 tokens: the first 2 windows only
    r = call_main(train, capsys, *run_args(tiny_data, tmp_path / "part", "--max-iters", 1, "--final-eval-tokens", 40))
    assert json.loads((tmp_path / "part" / "results.json").read_text())["final"]["val_tokens_full"] == 32


def test_steps_follow_the_epoch_order_accumulate_and_clip(train, capsys, tiny_data, tmp_path, monkeypatch):
    """Spies on get_batch and clip_grad_norm_ in a 2-epoch run with 2 micro-steps per step: every step trains on
    the next 8 windows of its epoch's own permutation, at that epoch's grid shift; the gradient is clipped once
    per step to --grad-clip; the accumulated gradient is the mean over micro-steps (its norm at step 0 equals a
    single 8-window micro-step's); and the optimizer holds the configured AdamW settings."""
    batches, norms = [], []
    real_get_batch, real_clip = train.get_batch, torch.nn.utils.clip_grad_norm_

    def get_batch(data, windows, block_size, device, shift=0):
        if torch.is_grad_enabled():  # training; evaluation runs under no_grad
            batches.append((windows.tolist(), shift))
        return real_get_batch(data, windows, block_size, device, shift)

    def clip(params, max_norm, *a, **k):
        norm = real_clip(params, max_norm, *a, **k)
        norms.append((max_norm, norm.item()))
        return norm

    monkeypatch.setattr(train, "get_batch", get_batch)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    out = tmp_path / "spy"
    adamw = ["--beta1", 0.8, "--beta2", 0.99, "--eps", 1e-6, "--weight-decay", 0.05, "--grad-clip", 0.5]
    r = call_main(train, capsys, *run_args(tiny_data, out, "--batch-tokens", 2 * 4 * 16, "--max-epochs", 2,
                                           "--eval-interval", 100, "--save-epochs", "", *adamw))
    assert r.returncode == 0, r.stderr
    assert "1 rank(s) x 2 micro-step(s)" in r.stdout
    steps = 127 // 8  # 15 steps per epoch, the last 7 windows dropped
    expect = []
    for epoch in range(2):
        order, shift = train.epoch_order(127, 1337, epoch), train.epoch_shift(1337, epoch, 16)
        expect += [(order[s * 8 + m * 4 : s * 8 + m * 4 + 4].tolist(), shift) for s in range(steps) for m in range(2)]
    assert expect[0][1] != expect[-1][1]  # (the two epochs' shifts differ with this seed)
    assert batches == expect
    assert len(norms) == 2 * steps and all(max_norm == 0.5 for max_norm, _ in norms)
    assert sum(norm > 0.5 for _, norm in norms) > 5  # clipping did act
    groups = torch.load(out / "ckpt_last.pt", weights_only=True)["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert all(tuple(g["betas"]) == (0.8, 0.99) and g["eps"] == 1e-6 for g in groups)
    assert all(g["lr"] == pytest.approx(train.get_lr(2 * steps - 1, train.TrainConfig(learning_rate=3e-3,
                                                                                      warmup_iters=5), 2 * steps))
               for g in groups)
    # one micro-step of the same 8 windows: the same first gradient (accumulation averages, never sums)
    first = norms[0][1]
    norms.clear()
    r = call_main(train, capsys, *run_args(tiny_data, tmp_path / "one", "--batch-size", 8, "--max-iters", 1,
                                           "--final-eval-tokens", 0, *adamw))
    assert r.returncode == 0, r.stderr
    assert norms[0][1] == pytest.approx(first, rel=1e-5)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(train, capsys, tiny_data, tmp_path):
    out = tmp_path / "nan"
    # 2048 tokens / 16 = 127 windows; 4 per step -> 31 steps per epoch; NaN in epoch 2
    r = call_main(train, capsys, *run_args(tiny_data, out, "--max-epochs", 3, "--save-epochs", "1",
                                           "--debug-nan-at-iter", 40))
    assert r.returncode == 3, r.stderr
    assert "loss is nan at iter 40" in r.stderr and "Traceback" not in r.stderr
    ckpt = torch.load(out / "ckpt_last.pt", weights_only=True)
    assert ckpt["iter_num"] == 31 and ckpt["epoch"] == 1  # the epoch-1 checkpoint, untouched
    assert not (out / "results.json").exists()
