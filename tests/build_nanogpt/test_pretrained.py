"""build_nanogpt/pretrained.py: fine-tuning from a Hugging Face GPT-2 (the step-0 val loss is the one transformers
computes on the same tokens, with the table padded 50,257 -> 50,304), a contradicting shape flag refused, and
nanogpt checkpoints (compile prefixes, exact GELU, no biases) read for HellaSwag."""
import json

import pytest
import torch
from torch.nn import functional as F

import hellaswag as H
import loader as L
import model as M
import pretrained
import train
from helpers import records

FINETUNE = ["--batch-size", "2", "--block-size", "32", "--total-batch", "64", "--max-iters", "2",
            "--warmup-iters", "1", "--eval-interval", "2", "--eval-iters", "3", "--hellaswag-limit", "0",
            "--num-samples", "0", "--dtype", "float32", "--no-compile", "--learning-rate", "1e-4"]


def test_finetune_from_hf_starts_at_transformers_loss(hf_dir, shards, tmp_path):
    path, hf = hf_dir
    out = tmp_path / "ft"
    train.main(FINETUNE + ["--init-from", str(path), "--data-dir", str(shards), "--out-dir", str(out)])
    step0 = records(out, "val")[0]
    assert step0["iter"] == 0
    val = L.ShardLoader(str(shards), "val", 2, 32, shuffle=False)
    with torch.no_grad():
        want = sum(F.cross_entropy(hf(x).logits.flatten(0, 1), y.flatten()).item()
                   for x, y in (val.next_batch() for _ in range(3))) / 3
    assert step0["val_loss"] == pytest.approx(want, abs=1e-5)
    ckpt = torch.load(out / "ckpt.pt", weights_only=True)
    args = ckpt["model_args"]
    assert (args["n_layer"], args["n_embd"], args["block_size"]) == (2, 32, 32)  # from the weights; cropped
    assert args["vocab_size"] == 50304 and args["n_real_tokens"] == 50257  # padded, padding never predicted
    assert ckpt["model"]["lm_head.weight"][50257:].abs().max() == 0


def test_padded_ids_get_no_probability(hf_dir):
    path, hf = hf_dir
    model, _ = pretrained.init_model(train.TrainConfig(init_from=str(path), block_size=64, flash=True))
    x = torch.randint(0, 50257, (2, 20))
    with torch.no_grad():
        logits = model(x)[0]
        torch.testing.assert_close(logits[..., :50257], hf(x).logits, atol=1e-5, rtol=1e-5)
    assert logits.shape[-1] == 50304 and torch.isneginf(logits[..., 50257:]).all()


def test_a_flag_that_contradicts_the_weights_is_refused(hf_dir, shards, tmp_path):
    path, _ = hf_dir
    common = FINETUNE + ["--data-dir", str(shards), "--out-dir", str(tmp_path / "x")]
    with pytest.raises(train.UserError, match="--n-layer 3 contradicts --init-from .*n_layer 2.*leave it out"):
        train.main(common + ["--init-from", str(path), "--n-layer", "3"])
    with pytest.raises(train.UserError, match="--block-size 256 contradicts"):  # longer than its 128 positions
        train.main(common + ["--init-from", str(path), "--block-size", "256", "--total-batch", "512"])
    with pytest.raises(train.UserError, match="nothing.*not a file, a folder"):
        train.main(common + ["--init-from", str(tmp_path / "nothing")])
    assert not (tmp_path / "x").exists()


def nanogpt_checkpoint(path, bias: bool, gelu: str):
    """A checkpoint in nanogpt's layout: compiled-module key prefixes and nanogpt's model_args."""
    torch.manual_seed(1)
    model = M.GPT(M.GPTConfig(block_size=32, vocab_size=50304, n_layer=1, n_head=2, n_embd=16, bias=bias,
                              gelu_approximate=gelu)).eval()
    args = dict(block_size=32, vocab_size=50304, n_layer=1, n_head=2, n_embd=16, dropout=0.1, bias=bias,
                flash=True, layer_norm_eps=1e-5, gelu_approximate=gelu)
    state = {"_orig_mod." + k: v for k, v in model.state_dict().items()}
    torch.save({"model": state, "model_args": args, "iter_num": 7}, path)
    return model


@pytest.mark.parametrize("bias, gelu", [(True, "none"), (False, "tanh")])
def test_hellaswag_reads_a_nanogpt_checkpoint(bias, gelu, tmp_path, shared_file, tiktoken_cache, capsys):
    ref = nanogpt_checkpoint(tmp_path / "ckpt_last.pt", bias, gelu)
    loaded = pretrained.load_weights(str(tmp_path / "ckpt_last.pt")).eval()
    assert loaded.config.gelu_approximate == gelu and loaded.config.bias == bias
    x = torch.randint(0, 50257, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], ref(x)[0])
    H.main(["--model", str(tmp_path / "ckpt_last.pt"), "--limit", "4", "--device", "cpu",
            "--data", str(shared_file("hellaswag/hellaswag_val.jsonl"))])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["examples"] == 4


def test_hellaswag_refuses_a_char_level_model_and_junk(tmp_path, shared_file, tiktoken_cache):
    data = str(shared_file("hellaswag/hellaswag_val.jsonl"))
    char = M.GPT(M.GPTConfig(block_size=16, vocab_size=65, n_layer=1, n_head=2, n_embd=16))
    torch.save({"model": char.state_dict(), "model_args": {"block_size": 16, "vocab_size": 65, "n_layer": 1,
                                                           "n_head": 2, "n_embd": 16}}, tmp_path / "char.pt")
    with pytest.raises(H.UserError, match="65-token vocabulary, not GPT-2's BPE"):
        H.main(["--model", str(tmp_path / "char.pt"), "--data", data, "--device", "cpu"])
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(H.UserError, match="junk.pt is not a checkpoint of train.py or nanogpt"):
        H.main(["--model", str(tmp_path / "junk.pt"), "--data", data, "--device", "cpu"])
