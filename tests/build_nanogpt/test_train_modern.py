"""train.py --arch modern / --optimizer muon: GPT-2's losses with every switch off, exact resume of a Muon run
with every switch on (window and momentum warm-ups included), checkpoints that load for HellaSwag and sampling,
2 gloo ranks = 1 process under Muon, the schedules, and refusals."""
import json

import pytest
import torch

import hellaswag as H
import modern
import pretrained
import train
from helpers import TINY, records

# 2 layers (U-net, value embeddings), rotary needs an even head size: 16 wide, 2 heads of 8
EVERY = ["--arch", "modern", "--n-layer", "2", "--rotary", "--rmsnorm", "--no-bias", "--relu2", "--zero-init",
         "--qk-norm", "--untied", "--embed-skip", "--softcap", "15", "--unet", "--window", "12", "--window-start", "4",
         "--value-embeds", "1", "--optimizer", "muon", "--momentum-warmup-iters", "4", "--schedule", "wsd"]


def test_every_switch_off_gives_gpt2s_losses(shards, tmp_path):
    common = TINY + ["--data-dir", str(shards), "--max-iters", "4"]
    train.main(common + ["--out-dir", str(tmp_path / "gpt2")])
    train.main(common + ["--out-dir", str(tmp_path / "modern"), "--arch", "modern"])
    for kind, key in (("train", "loss"), ("val", "val_loss")):
        a = [r[key] for r in records(tmp_path / "gpt2", kind)]
        b = [r[key] for r in records(tmp_path / "modern", kind)]
        assert a == b and len(a) >= 2  # bit for bit
    ca, cb = (torch.load(tmp_path / d / "ckpt.pt", weights_only=True) for d in ("gpt2", "modern"))
    assert cb["model_args"]["arch"] == "modern" and "arch" not in ca["model_args"]
    for k, v in ca["model"].items():
        assert torch.equal(v, cb["model"][k]), k


def test_muon_run_with_every_switch_resumes_exactly(shards, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    common = TINY + EVERY + ["--data-dir", str(shards), "--max-iters", "8"]
    train.main(common + ["--out-dir", str(a), "--ckpt-interval", "0"])
    train.main(common + ["--out-dir", str(b), "--stop-at", "3"])
    train.main(common + ["--out-dir", str(b), "--resume"])
    ca, cb = (torch.load(p / "ckpt.pt", weights_only=True) for p in (a, b))
    for k, v in ca["model"].items():
        assert torch.equal(v, cb["model"][k]), k
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    assert len(sa) == len(sb) and any("momentum_buffer" in s for s in sa.values())
    for i in sa:
        for name, t in sa[i].items():
            assert torch.equal(t, sb[i][name]), (i, name)
    la, lb = records(a, "train"), records(b, "train")
    assert [r["loss"] for r in la] == [r["loss"] for r in lb] and la[-1]["loss"] < la[0]["loss"] - 0.2
    assert [r["val_loss"] for r in records(a, "val")] == [r["val_loss"] for r in records(b, "val")]
    # the checkpoint says what it is: the architecture and every switch
    args = ca["model_args"]
    assert args["arch"] == "modern" and args["window"] == 12 and args["softcap"] == 15.0 and args["unet"]
    assert ca["config"]["optimizer"] == "muon"
    groups = ca["optimizer"]["param_groups"]
    assert [g["muon"] for g in groups] == [True, False, False]
    cfg = train.TrainConfig(learning_rate=1e-2, max_iters=8, warmup_iters=2, schedule="wsd", momentum_warmup_iters=4)
    assert groups[0]["lr"] == pytest.approx(train.get_lr(7, cfg, 0.02)) and groups[0]["momentum"] == 0.95


def test_modern_checkpoint_loads_for_hellaswag_and_sampling(shards, tmp_path, shared_file, tiktoken_cache):
    out = tmp_path / "m"
    train.main(TINY + EVERY + ["--data-dir", str(shards), "--max-iters", "2", "--out-dir", str(out)])
    ckpt = torch.load(out / "ckpt.pt", weights_only=True)
    model = pretrained.load_weights(str(out / "ckpt.pt"))
    assert isinstance(model, modern.ModernGPT) and model.config.window == 12 and model.config.unet
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["model"][k]), k
    examples = H.load_examples(str(shared_file("hellaswag/hellaswag_val.jsonl")), 2)
    r = H.evaluate(model.eval(), examples, H.gpt2_encoding(), "cpu")
    assert r["n"] == 2
    out_ids = model.generate(torch.tensor([[50256]]), 5, generator=torch.Generator().manual_seed(0))
    assert out_ids.shape == (1, 6)


def test_schedules_momentum_and_window():
    cfg = train.TrainConfig(learning_rate=1.0, min_lr_ratio=0.1, warmup_iters=10, max_iters=110, schedule="wsd",
                            cooldown_frac=0.4, momentum_warmup_iters=20, window=64, window_start=16)
    lr = [train.get_lr(s, cfg) for s in range(120)]
    assert lr[0] == pytest.approx(0.1) and lr[9] == lr[10] == lr[65] == 1.0  # warm-up, then flat up to 110 - 44
    assert lr[66] == 1.0 and lr[88] == pytest.approx(1.0 - 0.9 * 22 / 44)  # half way down the decay
    assert lr[110] == lr[119] == pytest.approx(0.1)  # the floor
    assert train.get_lr(66, cfg, peak=0.02) == 0.02 and train.get_lr(110, cfg, peak=0.02) == pytest.approx(0.002)
    assert [train.get_momentum(s, cfg) for s in (0, 10, 20, 50)] == pytest.approx([0.85, 0.90, 0.95, 0.95])
    assert [train.get_window(s, cfg) for s in (0, 55, 110)] == [16, 40, 64]
    assert train.get_window(5, train.TrainConfig(window=64)) == 64  # no warm-up


@pytest.mark.parametrize("flags, needle", [
    (["--rotary"], "--rotary is a switch of --arch modern"),
    (["--optimizer", "muon"], "--optimizer is a switch of --arch modern"),
    (["--arch", "modern", "--window", "4", "--window-start", "8"], "--window-start 8 <= --window 4"),
    (["--arch", "modern", "--n-layer", "2", "--value-embeds", "2"], "value_embeds 2: use 0 .. n_layer // 2 = 1"),
    (["--arch", "modern", "--init-from", "gpt2"], "trains from scratch only"),
    (["--arch", "transformer"], "--arch transformer: use gpt2 | modern"),
])
def test_bad_modern_settings_are_one_line(flags, needle, tmp_path):
    with pytest.raises(train.UserError, match=needle.replace("|", "\\|").replace(".", "\\.")):
        train.main(TINY + flags + ["--out-dir", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


@pytest.mark.distributed
def test_ddp_muon_step_equals_one_process(torchrun, shards, tmp_path):
    """2 gloo ranks (accumulation 2 each) against 1 process (accumulation 4): the same Muon updates."""
    one, two = tmp_path / "one", tmp_path / "two"
    flags = TINY + EVERY + ["--data-dir", str(shards), "--max-iters", "3", "--total-batch", "128",
                            "--eval-interval", "0"]
    nodes = torchrun("build_nanogpt/train.py", *flags, "--out-dir", two, nproc=2, timeout=240)
    for r in nodes:
        assert r.returncode == 0, r.stderr[-3000:]
    train.main(flags + ["--out-dir", str(one), "--eval-iters", "4"])
    log = lambda out: [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    l1 = [r["loss"] for r in log(one) if r["kind"] == "train"]
    l2 = [r["loss"] for r in log(two) if r["kind"] == "train"]
    assert len(l1) == 3 and l1 == pytest.approx(l2, abs=1e-5)
    assert [r["replica_max_diff"] for r in log(two) if r["kind"] == "val"] == [0.0]
    w1 = torch.load(one / "ckpt.pt", weights_only=True)["model"]
    w2 = torch.load(two / "ckpt.pt", weights_only=True)["model"]
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-5, rtol=1e-4)
