"""build_nanogpt/pretrained.py: fine-tuning from a Hugging Face GPT-2 (the step-0 val loss is the one transformers
computes on the same tokens, with the table padded 50,257 -> 50,304), a contradicting shape flag refused,
nanogpt checkpoints (compile prefixes, exact GELU, no biases, padded table) read for HellaSwag with the scores
of their Hugging Face export, and any other file refused in one line."""
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
    with pytest.raises(train.UserError, match=r"--n-layer 3 \(typed on the command line\) contradicts --init-from .*n_layer 2.*leave it out"):
        train.main(common + ["--init-from", str(path), "--n-layer", "3"])
    with pytest.raises(train.UserError, match=r"--block-size 256 \(typed on the command line\) contradicts"):  # longer than its 128 positions
        train.main(common + ["--init-from", str(path), "--block-size", "256", "--total-batch", "512"])
    with pytest.raises(train.UserError, match="nothing.*not a file, a folder"):
        train.main(common + ["--init-from", str(tmp_path / "nothing")])
    assert not (tmp_path / "x").exists()


def test_a_preset_shape_yields_to_the_weights_a_typed_one_is_refused(hf_dir, shards, tmp_path, capsys):
    """issue 28: --preset tiny (n_embd 64, 2 heads, block 64) with a 32-wide folder: the weights' shape wins and
    the preset's shorter block crops the positions; a --n-embd the user typed is refused, and the message says so."""
    path, _ = hf_dir
    common = ["--preset", "tiny", "--init-from", str(path), "--data-dir", str(shards), "--hellaswag-limit", "0",
              "--num-samples", "0", "--max-iters", "1", "--eval-iters", "1"]
    assert train.main(common + ["--out-dir", str(tmp_path / "ok")]) == 0
    args = torch.load(tmp_path / "ok" / "ckpt.pt", weights_only=True)["model_args"]
    assert (args["n_embd"], args["n_layer"], args["block_size"]) == (32, 2, 64)
    with pytest.raises(train.UserError, match=r"--n-embd 64 \(typed on the command line\) contradicts --init-from"):
        train.main(common + ["--out-dir", str(tmp_path / "no"), "--n-embd", "64"])
    assert not (tmp_path / "no").exists()


def test_init_from_a_char_level_checkpoint_is_refused_up_front(shards, tmp_path):
    """issue 28: nanogpt's char checkpoint (vocab 58) was accepted and the run stopped at iter 0 with 'val loss
    is inf', a divergence message for a vocabulary that cannot embed the shards' GPT-2 tokens."""
    char = M.GPT(M.GPTConfig(block_size=16, vocab_size=58, n_layer=1, n_head=2, n_embd=16))
    args = dict(block_size=16, vocab_size=58, n_layer=1, n_head=2, n_embd=16, dropout=0.0, bias=True,
                flash=True, layer_norm_eps=1e-5)
    torch.save({"model": char.state_dict(), "model_args": args}, tmp_path / "char.pt")
    with pytest.raises(train.UserError, match="char.pt: a 58-token vocabulary, not GPT-2's 50,257 BPE tokens"):
        train.main(FINETUNE + ["--init-from", str(tmp_path / "char.pt"), "--data-dir", str(shards),
                               "--out-dir", str(tmp_path / "x")])
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
        got = loaded(x)[0]
        torch.testing.assert_close(got[..., :50257], ref(x)[0][..., :50257])
    assert torch.isneginf(got[..., 50257:]).all()  # nanogpt's padded GPT-2 table: the padding is never predicted
    H.main(["--model", str(tmp_path / "ckpt_last.pt"), "--limit", "4", "--device", "cpu",
            "--data", str(shared_file("hellaswag/hellaswag_val.jsonl"))])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["examples"] == 4


def nanogpt_pair(tmp_path):
    """One tiny model in the two forms nanogpt writes: the Hugging Face folder of its export.py (exact GELU,
    "gelu"; 50,257 tokens) and its training checkpoint (50,304-token table whose 47 padded rows were trained,
    so are not zero; torch.compile's key prefixes; nanogpt's model_args and training state). Weights larger
    than GPT-2's init make the GELU variant and the padded rows visible in the scores."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(2)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=64, n_embd=16, n_layer=2, n_head=2,
                                    activation_function="gelu", initializer_range=0.3)).eval()
    hf.save_pretrained(tmp_path / "export")
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    state = {k: (v.t() if k.endswith(conv1d) else v).contiguous() for k, v in hf.state_dict().items()
             if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    wte = torch.cat([state["transformer.wte.weight"], 3 * torch.randn(47, 16)])
    state["transformer.wte.weight"] = state["lm_head.weight"] = wte
    args = dict(block_size=64, vocab_size=50304, n_layer=2, n_head=2, n_embd=16, dropout=0.0, bias=True,
                flash=True, layer_norm_eps=1e-5, gelu_approximate="none")
    torch.save({"model": {"_orig_mod." + k: v for k, v in state.items()}, "model_args": args,
                "optimizer": {"state": {}, "param_groups": []}, "iter_num": 5, "config": {"dataset": "x"},
                "rng": {"python": (3, (1, 2), None)}}, tmp_path / "ckpt_last.pt")
    return hf


def test_a_nanogpt_checkpoint_scores_as_its_hf_export(tmp_path, shared_file, tiktoken_cache, capsys):
    import tiktoken

    hf = nanogpt_pair(tmp_path)
    enc = tiktoken.get_encoding("gpt2")
    data = str(shared_file("hellaswag/hellaswag_val.jsonl"))
    rows, masks = [], []
    for ex in H.load_examples(data, limit=4):
        r, m = H.render(ex, enc, 64)
        rows, masks = rows + r, masks + m
    scores = {}
    for form in ("export", "ckpt_last.pt"):
        model = pretrained.load_weights(str(tmp_path / form)).eval()
        scores[form] = torch.stack(H.ending_losses(model, rows, masks, "cpu"))  # (2: sum, mean, 16 endings)
    want = []
    for r, m in zip(rows, masks):  # transformers itself, one ending at a time
        with torch.no_grad():
            loss = F.cross_entropy(hf(torch.tensor([r])).logits[0, :-1], torch.tensor(r[1:]), reduction="none")
        sel = torch.tensor(m[1:]).bool()
        want.append((loss[sel].sum(), loss[sel].mean()))
    want = torch.tensor(want).T
    torch.testing.assert_close(scores["export"], want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores["ckpt_last.pt"], want, atol=1e-5, rtol=1e-5)
    results = []
    for form in ("export", "ckpt_last.pt", ""):  # "": nanogpt's run folder, which means its ckpt_last.pt (issue 29)
        H.main(["--model", str(tmp_path / form), "--data", data, "--limit", "12", "--device", "cpu"])
        results.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert results[0]["examples"] == 12
    same = [{k: v for k, v in r.items() if k != "model"} for r in results]
    assert same[0] == same[1] == same[2]


def test_finetuning_from_a_nanogpt_checkpoint_starts_where_its_export_does(tmp_path):
    nanogpt_pair(tmp_path)
    models = [pretrained.init_model(train.TrainConfig(init_from=str(tmp_path / form), block_size=32))[0].eval()
              for form in ("export", "ckpt_last.pt")]
    x = torch.randint(0, 50257, (2, 32))
    with torch.no_grad():
        a, b = (m(x)[0] for m in models)
    assert a.shape == b.shape == (2, 32, 50304)  # padded to --vocab-size, positions cropped to 32
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert torch.isneginf(b[..., 50257:]).all()


class Payload:
    def __reduce__(self):
        return (print, ("this ran",))


WRONG = {  # file name -> (what it holds, the message)
    "junk.pt": (b"not a torch file", "junk.pt is not a readable checkpoint"),
    "empty.pt": (b"", "empty.pt is not a readable checkpoint"),
    "list.pt": ([1, 2, 3], "list.pt is not a checkpoint of train.py or nanogpt \\(no model, model_args\\)"),
    "args.pt": ({"model": {}, "model_args": "gpt2"}, "args.pt is not a checkpoint.*'model_args' not a dict"),
    "heads.pt": ({"model": {}, "model_args": dict(block_size=8, vocab_size=50304, n_layer=1, n_head=3,
                                                   n_embd=16)}, "heads.pt: model_args .* do not describe a GPT"),
    "shape.pt": ({"model": {"transformer.wte.weight": torch.zeros(50304, 8)},
                  "model_args": dict(block_size=8, vocab_size=50304, n_layer=1, n_head=2, n_embd=16)},
                 "shape.pt: the weights do not fit .*size mismatch for transformer.wte.weight"),
    "nothing.pt": ({"model": {}, "model_args": dict(block_size=8, vocab_size=50304, n_layer=1, n_head=2, n_embd=16)},
                   "nothing.pt: the weights do not fit .*missing \\['transformer"),
    "tampered.pt": ({"model": {}, "model_args": {}, "x": Payload()}, "tampered.pt holds pickled objects"),
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_a_wrong_file_is_refused_in_one_line(name, tmp_path, capsys):
    content, needle = WRONG[name]
    path = tmp_path / name
    path.write_bytes(content) if isinstance(content, bytes) else torch.save(content, path)
    with pytest.raises(H.UserError, match=needle) as e:
        pretrained.load_weights(str(path))
    assert "\n" not in str(e.value) and "weights_only" not in str(e.value)
    assert capsys.readouterr().out == ""  # the payload never ran


def test_hellaswag_refuses_a_char_level_model_a_file_of_a_folder_and_a_list(tmp_path, shared_file, tiktoken_cache,
                                                                           run_script, clean_error):
    data = str(shared_file("hellaswag/hellaswag_val.jsonl"))
    char = M.GPT(M.GPTConfig(block_size=16, vocab_size=65, n_layer=1, n_head=2, n_embd=16))
    torch.save({"model": char.state_dict(), "model_args": {"block_size": 16, "vocab_size": 65, "n_layer": 1,
                                                           "n_head": 2, "n_embd": 16}}, tmp_path / "char.pt")
    with pytest.raises(H.UserError, match="65-token vocabulary, not GPT-2's BPE"):
        H.main(["--model", str(tmp_path / "char.pt"), "--data", data, "--device", "cpu"])
    nanogpt_pair(tmp_path)
    with pytest.raises(H.UserError, match="model.safetensors is part of a Hugging Face folder: pass the folder"):
        H.main(["--model", str(tmp_path / "export" / "model.safetensors"), "--data", data, "--device", "cpu"])
    torch.save([1, 2, 3], tmp_path / "list.pt")  # was a bare "(TypeError)"
    r = run_script("build_nanogpt/hellaswag.py", "--model", tmp_path / "list.pt", "--data", data)
    clean_error(r, "list.pt is not a checkpoint of train.py or nanogpt (no model, model_args)")
