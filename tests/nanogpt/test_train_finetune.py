"""nanogpt/train.py --init-from a local Hugging Face GPT-2 folder: fine-tuning on GPT-2 BPE tokens.

The folder is a tiny random GPT-2 (2 layers, 32 wide, 64 positions, the real 50257-token vocabulary)
written in the Hugging Face layout (config.json + model.safetensors, Conv1D weights stored (in, out)),
which is what `--init-from gpt2` reads after downloading.
"""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import config
import model
import prepare
import train
from helpers import TINY, call_main

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    torch.manual_seed(0)
    gpt = model.GPT(model.GPTConfig(block_size=64, vocab_size=50257, n_layer=2, n_head=2, n_embd=32))
    tensors = {k: (v.t() if k.endswith(CONV1D) else v).contiguous().clone()
               for k, v in gpt.state_dict().items() if k != "lm_head.weight"}  # lm_head is tied to wte
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(
        {"model_type": "gpt2", "n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 2, "vocab_size": 50257}))
    return folder, gpt.state_dict()


@pytest.fixture(scope="module")
def bpe_data(shared_file, tiktoken_cache, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("bpe")
    prepare.prepare("shakespeare", str(data_dir), source=str(shared_file("tinyshakespeare/input.txt")))
    meta_file = data_dir / "shakespeare" / "meta.json"
    meta = json.loads(meta_file.read_text())
    for split, n in (("train", 4096), ("val", 1024)):  # short epochs
        path = data_dir / "shakespeare" / f"{split}.bin"
        np.fromfile(path, dtype=np.uint16)[:n].tofile(path)
        meta[f"{split}_tokens"] = n
    meta_file.write_text(json.dumps(meta))
    return data_dir


def test_finetune_from_local_gpt2_folder(capsys, hf_folder, bpe_data, tmp_path):
    folder, weights = hf_folder
    base = [*TINY, "--dataset", "shakespeare", "--data-dir", bpe_data, "--init-from", folder]
    # learning rate 0: the checkpoint must hold exactly the loaded weights (wpe cropped to 32 positions)
    out = tmp_path / "lr0"
    r = call_main(train.main, capsys, *base, "--out-dir", out, "--block-size", 32, "--max-iters", 1, "--learning-rate", 0)
    assert r.returncode == 0, r.stderr
    assert "note: on CPU the output layer over 50,257 tokens dominates the step" in r.stdout
    assert f"weights from {folder};" in r.stdout  # the header says where the weights come from
    ckpt = torch.load(out / "ckpt_last.pt", weights_only=True)
    assert ckpt["model_args"]["vocab_size"] == 50257 and ckpt["model_args"]["block_size"] == 32
    assert torch.equal(ckpt["model"]["transformer.h.1.mlp.c_fc.weight"], weights["transformer.h.1.mlp.c_fc.weight"])
    assert torch.equal(ckpt["model"]["transformer.wpe.weight"], weights["transformer.wpe.weight"][:32])
    # and with a learning rate it learns
    out = tmp_path / "ft"
    r = call_main(train.main, capsys, *base, "--out-dir", out, "--block-size", 32, "--max-iters", 10,
                  "--eval-interval", 5, "--learning-rate", 3e-3, "--num-samples", 1, "--sample-tokens", 8)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["dataset"]["tokenizer"] == "gpt2" and len(res["samples"]) == 1
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["val_loss"] < log[0]["val_loss"]


def test_block_size_beyond_pretrained_positions_exits_2(capsys, clean_error, hf_folder, bpe_data, tmp_path):
    r = call_main(train.main, capsys, *TINY, "--dataset", "shakespeare", "--data-dir", bpe_data, "--out-dir", tmp_path,
                  "--init-from", hf_folder[0], "--block-size", 128)
    clean_error(r, "--block-size 128 (typed)", "64 positions")


def test_the_weights_decide_the_shape_and_a_typed_contradiction_is_refused(capsys, clean_error, hf_folder, tmp_path):
    """issue 28/29: --init-from weights fix n_layer, n_head, n_embd and bias. A preset's shape yields to them (and
    its longer block_size is cut to the 64 positions); a flag typed, or set in --config, that contradicts them is
    refused in one line that names it and says where it came from, before anything is loaded or written."""
    folder = hf_folder[0]
    cfg, _ = config.resolve_config(["--preset", "shakespeare_char", "--init-from", str(folder)])
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.bias, cfg.block_size) == (2, 2, 32, True, 64)
    cfg, _ = config.resolve_config(["--init-from", str(folder), "--n-layer", "2", "--block-size", "16"])
    assert (cfg.n_layer, cfg.block_size) == (2, 16)  # agreeing flags, a shorter context: fine
    out = tmp_path / "out"
    r = call_main(train.main, capsys, "--init-from", folder, "--n-layer", 6, "--out-dir", out)
    clean_error(r, f"--n-layer 6 (typed) contradicts --init-from {folder}", "--n-layer 2; leave it out")
    toml = tmp_path / "c.toml"
    toml.write_text("n_embd = 64\n")
    r = call_main(train.main, capsys, "--init-from", folder, "--config", toml, "--out-dir", out)
    clean_error(r, f"--n-embd 64 (in {toml}) contradicts", "whose weights have --n-embd 32")
    assert not out.exists()


def test_the_cpu_fine_tune_preset_learns(capsys, hf_folder, bpe_data, tmp_path):
    """issue 29: --preset finetune_shakespeare_cpu, the CPU-sized fine-tune (here from the tiny stand-in, not the
    124M GPT-2): its short run really fine-tunes, the val loss falls from the loaded weights' loss."""
    assert config.PRESETS["finetune_shakespeare_cpu"]["device"] == "cpu"
    out = tmp_path / "ft-cpu"
    r = call_main(train.main, capsys, "--preset", "finetune_shakespeare_cpu", "--init-from", hf_folder[0],
                  "--data-dir", bpe_data, "--out-dir", out, "--sample-tokens", 8)
    assert r.returncode == 0, r.stderr
    assert "4 x 64 = 256 tokens/step" in r.stdout  # the preset's 128 positions cut to the stand-in's 64
    assert "--preset finetune_shakespeare_cpu is a GPT-2 fine-tune sized for minutes on a CPU" in r.stdout  # the note
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if "val_loss" in line]
    assert [rec["iter"] for rec in log] == [0, 10, 15]  # 4,096 train tokens here: one epoch is 15 steps
    assert log[-1]["val_loss"] < log[0]["val_loss"] - 0.01, [rec["val_loss"] for rec in log]
