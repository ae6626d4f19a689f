"""deep_gradients/train.py: schedule, batching, learning, checkpoint/exact resume, results, CLI errors."""
import json

import pytest
import torch

TINY = dict(depth=8, width=4, train_subset=256, batch_size=64, progress=False)


@pytest.fixture(scope="module")
def tr(load_module):
    return load_module("deep_gradients", "train")


def cfg(tr, tmp_path, name="run", **kw):
    return tr.Config(**{**TINY, "out_dir": str(tmp_path / name), **kw})


def test_onecycle_and_cosine_schedules(tr):
    c = tr.Config(lr=0.4, warmup_frac=0.2)
    lrs = [tr.lr_at(s, 100, c) for s in range(100)]
    assert max(lrs) == pytest.approx(0.4) and lrs.index(max(lrs)) == 19  # peak at the end of warm-up
    assert lrs[0] == pytest.approx(0.4 / 20) and lrs[-1] < 0.4 * 0.02
    assert all(a <= b for a, b in zip(lrs[:20], lrs[1:20])) and all(a >= b for a, b in zip(lrs[20:], lrs[21:]))
    c.schedule = "cosine"
    cos = [tr.lr_at(s, 100, c) for s in range(100)]
    assert cos[20] == pytest.approx(0.4) and cos[60] == pytest.approx(0.2) and cos[-1] < 1e-3
    c.schedule = "constant"
    assert {tr.lr_at(s, 100, c) for s in range(100)} == {0.4}


def test_epoch_batches_shard_the_global_batch(tr):
    one = tr.epoch_batches(100, 24, seed=0, epoch=3)  # (4, 24), last 4 images dropped
    assert one.shape == (4, 24) and len(set(one.flatten().tolist())) == 96
    shards = [tr.epoch_batches(100, 24, seed=0, epoch=3, rank=r, world=3) for r in range(3)]
    assert all(s.shape == (4, 8) for s in shards)
    assert torch.equal(torch.cat(shards, dim=1), one)  # the ranks' slices make up exactly the global batch
    for a in range(3):
        for b in range(a + 1, 3):
            assert not set(shards[a].flatten().tolist()) & set(shards[b].flatten().tolist())  # disjoint
    assert not torch.equal(tr.epoch_batches(100, 24, 0, 4), one)  # reshuffled every epoch
    assert torch.equal(tr.epoch_batches(100, 24, 0, 3), one)  # ... reproducibly


def test_learns_digits_and_writes_results(tr, tmp_path):
    c = cfg(tr, tmp_path, train_subset=512, epochs=4, width=8, batch_size=32, lr=0.1, augment=0, log_every=2)
    res = tr.run(c)
    ep = res["epochs"]
    assert [e["epoch"] for e in ep] == [1, 2, 3, 4]
    assert ep[-1]["train_loss"] < 0.6 * ep[0]["train_loss"]
    assert res["final_test_acc"] > 0.5  # 10 classes: chance is 0.1 (this tiny run reaches ~0.8)
    for key in ("train_loss", "test_loss", "test_acc", "images_per_s", "epoch_time_s", "peak_mem_mb"):
        assert isinstance(ep[0][key], float), key
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["final_test_acc"] == res["final_test_acc"] and on_disk["config"]["width"] == 8
    steps = [s for s, _ in on_disk["train_curve"]]
    assert steps[0] == 0 and steps == sorted(steps) and len(steps) >= 4 * 16 // 2
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    ck = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)
    assert ck["epoch"] == 4 and ck["config"]["depth"] == 8 and set(ck) >= {"model", "optimizer", "rng", "history"}
    group = ck["optimizer"]["param_groups"][0]  # SGD with Nesterov momentum and L2, as the README states
    assert group["nesterov"] is True and group["momentum"] == 0.9 and group["weight_decay"] == 5e-4
    # the recorded test figures are those of the saved weights on the whole held-out split (not train data)
    net = tr.ResNet(8, 8)
    net.load_state_dict(ck["model"])
    _, _, x_test, y_test = tr.mnist.load("digits")
    with torch.no_grad():
        logits = net.eval()(x_test)
    assert ep[-1]["test_acc"] == (logits.argmax(1) == y_test).sum().item() / len(y_test) == res["final_test_acc"]
    assert ep[-1]["test_loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y_test).item(), rel=1e-5)


def test_resume_is_bitwise_exact(tr, tmp_path):
    full = tr.run(cfg(tr, tmp_path, "full", epochs=3))
    tr.run(cfg(tr, tmp_path, "part", epochs=3, stop_after=1))  # "preempted" after one epoch
    part = tr.run(cfg(tr, tmp_path, "part", epochs=3, resume=True))
    a = torch.load(tmp_path / "full" / "ckpt.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "ckpt.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert [e["test_acc"] for e in part["epochs"]] == [e["test_acc"] for e in full["epochs"]]
    assert part["train_curve"] == full["train_curve"]


def test_resume_rejects_flags_that_change_the_steps(tr, tmp_path):
    tr.run(cfg(tr, tmp_path, epochs=3, stop_after=1, eval=False))
    for change, needle in [(dict(batch_size=32), "batch_size=64"), (dict(epochs=4), "epochs=3"),
                           (dict(train_subset=128), "train_subset=256"), (dict(width=8), "width=4"),
                           (dict(seed=1), "seed=0")]:
        with pytest.raises(tr.ConfigError, match=needle):  # would silently re-index the steps and the LR schedule
            tr.run(cfg(tr, tmp_path, **{"epochs": 3, "resume": True, "eval": False, **change}))


def test_resume_unreadable_checkpoint_one_line(tr, tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "ckpt.pt").write_bytes(b"half a checkpoint")
    code, err = run_main(tr, ["--out-dir", str(tmp_path / "o"), "--resume", "--depth", "8"], capsys)
    assert code == 2 and "cannot read" in err and len(err.splitlines()) == 1, err


def test_architecture_switches_reach_the_model(tr, tmp_path, monkeypatch, capsys):
    seen = {}

    class FakeRecorder:  # stands in for evolution.Recorder: check the hook order train.py promises
        def __init__(self, model, out_dir, every, resume=False):
            seen["init"] = (type(model).__name__, every, resume)
            seen["steps"] = []

        def on_step(self, step, epoch, lr):
            p = next(iter(self.model_params))
            seen["steps"].append((step, epoch, lr, p.grad is not None))

        def close(self):
            seen["closed"] = True

    orig_init = FakeRecorder.__init__

    def init(self, model, out_dir, every, resume=False):
        orig_init(self, model, out_dir, every, resume)
        self.model_params = list(model.parameters())

    FakeRecorder.__init__ = init
    monkeypatch.setattr(tr, "Recorder", FakeRecorder)
    res = tr.run(cfg(tr, tmp_path, epochs=2, batch_norm=False, residual=False, record_every=3, eval=False))
    assert seen["init"] == ("ResNet", 3, False) and seen["closed"]
    assert [s[0] for s in seen["steps"]] == list(range(8)) and all(s[3] for s in seen["steps"])  # after backward
    assert seen["steps"][4][1] == 1 and seen["steps"][0][2] > 0
    c = cfg(tr, tmp_path, epochs=2)  # the LR of every step is the schedule over ALL epochs' steps (2 x 4)
    assert [s[2] for s in seen["steps"]] == [tr.lr_at(s, 8, c) for s in range(8)]
    sd = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=True)["model"]
    assert not any("bn" in k or "shortcut" in k or "stem.1" in k for k in sd)
    assert res["final_test_acc"] is None  # --no-eval
    assert "no evaluation (--no-eval) -> " in capsys.readouterr().out  # still says where the run went


def run_main(tr, argv, capsys):
    with pytest.raises(SystemExit) as e:
        tr.main(argv)
    err = capsys.readouterr().err
    return e.value.code, err.strip()


@pytest.mark.parametrize("argv,needles", [
    (["--depth", "18"], ("--depth 18", "8, 20, 56")),
    (["--amp", "fp8"], ("--amp", "none, bf16, fp16")),
    (["--amp", "fp16", "--device", "cpu"], ("fp16", "bf16")),
    (["--sync-bn", "--device", "cpu"], ("--sync-bn", "cuda")),
    (["--schedule", "step"], ("--schedule", "onecycle")),
    (["--batch-size", "0"], ("--batch-size 0", ">= 1")),
    (["--momentum", "-0.9"], ("--momentum -0.9", ">= 0")),
    (["--epochs", "many"], ("--epochs", "many")),
    (["--resume"], ("--resume", "no checkpoint")),
    (["--dataset", "cifar10"], ("--dataset", "digits, mnist")),
])
def test_bad_flags_one_line_exit_2(tr, tmp_path, capsys, argv, needles):
    base = ["--out-dir", str(tmp_path / "o"), "--train-subset", "64", "--batch-size", "32", "--depth", "8"]
    code, err = run_main(tr, [*base, *argv], capsys)  # argv last: it overrides the base flags
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n.lower() in err.lower(), (n, err)


def test_help_lists_the_switches(tr, capsys):
    with pytest.raises(SystemExit) as e:
        tr.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for flag in ("--no-batch-norm", "--no-residual", "--channels-last", "--amp", "--sync-bn", "--compile", "--resume"):
        assert flag in out, flag
    flat = " ".join(out.split())  # argparse wraps the help column
    # every option shows its default and what it does (the Config comments), as the README promises
    for text in ("--epochs EPOCHS passes over", "(default: 6)", "peak learning rate (default: 0.1)",
                 "none | bf16 | fp16", "(default: deep_gradients/out)", "(Goyal et al. 2017) (default: False)"):
        assert text in flat, text
    assert set(tr.field_help(tr.Config)) == {f.name for f in tr.dataclasses.fields(tr.Config)}  # none left bare


def test_cli_end_to_end(run_script, tmp_path):
    r = run_script("deep_gradients/train.py", "--depth", "8", "--width", "4", "--train-subset", "128",
                   "--batch-size", "64", "--epochs", "1", "--channels-last", "--amp", "bf16",
                   "--out-dir", tmp_path / "o", timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    assert res["config"]["amp"] == "bf16" and res["config"]["channels_last"] and len(res["epochs"]) == 1
    assert 0 <= res["final_test_acc"] <= 1 and "final test accuracy" in r.stdout


@pytest.mark.gpu
def test_gpu_run_reports_utilization_memory_and_mfu(tr, tmp_path):
    res = tr.run(cfg(tr, tmp_path, epochs=2, device="cuda", amp="bf16", channels_last=True, cudnn_benchmark=True))
    ep = res["epochs"][-1]
    assert res["device"].startswith("cuda") and ep["peak_mem_mb"] > 0 and "gpu_util" in ep and "mfu" in ep
    assert ep["train_loss"] < res["epochs"][0]["train_loss"] + 1.0 and 0 <= res["final_test_acc"] <= 1
    host = tr.run(cfg(tr, tmp_path, "host", epochs=2, device="cuda", data_on_device=False))
    assert len(host["epochs"]) == 2
    tr.run(cfg(tr, tmp_path, "fp16", epochs=1, device="cuda", amp="fp16", record_every=1))
    rows = [json.loads(line) for line in (tmp_path / "fp16" / "evolution.jsonl").read_text().splitlines()]
    g = [r["params"]["fc.weight"]["g_norm"] for r in rows if r["params"]["fc.weight"]["g_norm"] is not None]
    assert g and max(g) < 100  # the recorder sees unscaled gradients (the GradScaler's factor starts at 65536)


def test_benchmark_plan_and_scaling_formula(load_module):
    bench = load_module("deep_gradients", "benchmark")
    cfg = bench.parse_args(["--quick"])
    rows = bench.plan(cfg, n_gpus=0, cores=2)
    skipped = [r for r in rows if "skip" in r]
    assert skipped and all(r["group"] == "gpu" and "no CUDA" in r["skip"] for r in skipped)
    names = [r["name"] for r in rows if r["group"] == "cpu" and r["net"] == cfg.small]
    assert names[0].endswith("(baseline)") and any("2 processes" in n for n in names)
    gpu_rows = bench.plan(cfg, n_gpus=4, cores=16)
    assert any(r.get("launcher") == "torchrun" and r["workers"] == 4 and r["group"] == "gpu" for r in gpu_rows)
    fake = [dict(group="cpu", net="8x16", name="base", baseline=True, images_per_s=100.0),
            dict(group="cpu", net="8x16", name="2 procs", scale=2, images_per_s=150.0)]
    bench.derive(fake)
    assert fake[1]["speedup"] == pytest.approx(1.5) and fake[1]["scaling_eff"] == pytest.approx(0.75)  # T_N/(N*T_1)


def test_benchmark_row_that_times_out_is_skipped_not_fatal(load_module, tmp_path, monkeypatch):
    bench = load_module("deep_gradients", "benchmark")
    cfg = bench.parse_args(["--quick", "--timeout", "7"])

    def too_slow(cmd, **kw):
        raise bench.subprocess.TimeoutExpired(cmd, kw["timeout"])

    monkeypatch.setattr(bench.subprocess, "run", too_slow)
    row = bench.plan(cfg, n_gpus=0, cores=1)[0]
    out = bench.run_row(row, cfg, "digits", tmp_path)  # the rows measured before it are kept
    assert "timed out after 7 s" in out["skip"] and "images_per_s" not in out
    with pytest.raises(SystemExit) as e:
        bench.parse_args(["--small", "18x16"])
    assert e.value.code == 2


@pytest.mark.parametrize("argv,needle", [(["--epochs", "0"], "--epochs 0"), (["--dataset", "cifar"], "'cifar'"),
                                         (["--workers", "-1"], "--workers -1"), (["--batch-size", "x"], "'x'"),
                                         (["--quick-subset", "0"], "--quick-subset 0")])
def test_benchmark_bad_option_is_one_line_before_any_row(load_module, capsys, argv, needle):
    bench = load_module("deep_gradients", "benchmark")
    with pytest.raises(SystemExit) as e:  # parse_args runs before the first row: no row is started
        bench.parse_args(["--quick", *argv])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and needle in err, err


def test_benchmark_help_shows_defaults(load_module, capsys):
    with pytest.raises(SystemExit):
        load_module("deep_gradients", "benchmark").parse_args(["--help"])
    flat = " ".join(capsys.readouterr().out.split())
    assert "training images per worker with --quick (default: 1024)" in flat and "(default: 8x16)" in flat
