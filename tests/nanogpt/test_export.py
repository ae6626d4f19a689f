"""nanogpt/export.py: a checkpoint becomes a Hugging Face GPT-2 folder with the same logits.

Two models: a GPT-2 BPE one with the padded vocabulary (50304 rows for 50257 tokens), tanh GELU and every
parameter random, saved as a checkpoint dict with compile's `_orig_mod.` prefixes; and a char-level one
trained for a few steps by train.py with bias=False (exact GELU). Both are loaded back by transformers,
offline, and compared on the same token ids.
"""
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

import export
import prepare
import train
from helpers import call_main, run_args, weights_args
from model import GPT, GPTConfig

transformers = pytest.importorskip("transformers")

TOL = 1e-5


def hf_logits(folder, idx):
    """transformers' logits; every weight it expects is in the file (none left to its random init)."""
    hf, info = transformers.AutoModelForCausalLM.from_pretrained(str(folder), output_loading_info=True)
    assert not any(info.values()), info  # missing, unexpected, mismatched keys, errors
    hf.eval()
    with torch.no_grad():
        return hf(idx).logits


def our_logits(model, idx, vocab_size):
    with torch.no_grad():
        return model.eval()(idx)[0][..., :vocab_size]


@pytest.fixture(scope="module")
def bpe_data(shared_file, tiktoken_cache, tmp_path_factory):
    """A small GPT-2 BPE dataset (the first 20k characters of Tiny Shakespeare)."""
    root = tmp_path_factory.mktemp("bpe")
    source = root / "input.txt"
    source.write_text(shared_file("tinyshakespeare/input.txt").read_text()[:20_000])
    prepare.prepare("shakespeare", str(root / "data"), source=str(source), verbose=False)
    return root / "data"


def make_bpe_ckpt(folder, data_dir, gelu: str, layer_norm_eps: float = 1e-5):
    """(checkpoint file, model): vocab padded to 50304, 32 positions, every parameter random."""
    torch.manual_seed(0)
    config = GPTConfig(block_size=32, vocab_size=50304, n_layer=2, n_head=2, n_embd=16, gelu_approximate=gelu,
                       layer_norm_eps=layer_norm_eps)
    model = GPT(config)
    with torch.no_grad():
        for p in model.parameters():  # LayerNorm weights and biases too, not just their 1 / 0 init
            p.normal_(0.0, 0.5)
    file = folder / "ckpt.pt"
    torch.save({"model": {"_orig_mod." + k: v for k, v in model.state_dict().items()},
                "model_args": dataclasses.asdict(config),
                "config": {"dataset": "shakespeare", "data_dir": str(data_dir)}}, file)
    return file, model


@pytest.fixture(scope="module")
def bpe_ckpt(bpe_data, tmp_path_factory):
    """A model with GPT-2's tanh GELU, as fine-tuned from GPT-2's weights."""
    return make_bpe_ckpt(tmp_path_factory.mktemp("ckpt"), bpe_data, "tanh")


@pytest.fixture(scope="module")
def bpe_export(bpe_ckpt, tmp_path_factory):
    return export.export(bpe_ckpt[0], tmp_path_factory.mktemp("hf") / "gpt2-bpe")


@pytest.fixture(scope="module")
def char_run(tiny_data, tmp_path_factory):
    """A train.py output folder: char-level Shakespeare (65 tokens), bias=False, 20 steps."""
    out = tmp_path_factory.mktemp("char-run")
    code = train.main([str(a) for a in run_args(tiny_data, out, "--max-iters", 20, "--no-bias",
                                                  "--final-eval-tokens", 0)])
    assert code == 0
    return out


def test_bpe_export_matches_transformers_logits(bpe_ckpt, bpe_export):
    _, model = bpe_ckpt
    config = json.loads((bpe_export / "config.json").read_text())
    assert (config["vocab_size"], config["n_positions"], config["activation_function"]) == (50257, 32, "gelu_new")
    idx = torch.randint(0, 50257, (2, 32), generator=torch.Generator().manual_seed(1))
    theirs, ours = hf_logits(bpe_export, idx), our_logits(model, idx, 50257)
    assert theirs.shape == ours.shape == (2, 32, 50257)
    assert (theirs - ours).abs().max().item() < TOL


def test_bpe_tokenizer_files_are_tiktokens(bpe_export, tiktoken_cache):
    import tiktoken

    encoder = json.loads((bpe_export / "vocab.json").read_text())
    assert len(encoder) == 50257 and encoder["<|endoftext|>"] == 50256
    digest = hashlib.sha256((bpe_export / "merges.txt").read_bytes()).hexdigest()
    assert digest == export.GPT2_BPE["merges.txt"][1]
    text = "ROMEO: But, soft! what light through yonder window breaks?\n  It is the east."
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(bpe_export))
    assert tokenizer(text).input_ids == tiktoken.get_encoding("gpt2").encode(text)
    assert tokenizer.eos_token_id == 50256


def test_bpe_export_runs_in_a_text_generation_pipeline(bpe_export):
    generate = transformers.pipeline("text-generation", model=str(bpe_export), device="cpu")
    out = generate("Hello, my lord", max_new_tokens=5, do_sample=False)[0]["generated_text"]
    assert out.startswith("Hello, my lord") and len(out) > len("Hello, my lord")


def test_char_export_matches_transformers_logits(char_run, tiny_data, tmp_path):
    out = export.export(char_run, tmp_path / "hf-char")  # a run's folder means its ckpt_last.pt
    ckpt = torch.load(char_run / "ckpt_last.pt", weights_only=True)
    assert ckpt["model_args"]["bias"] is False
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict(ckpt["model"])
    config = json.loads((out / "config.json").read_text())
    assert (config["vocab_size"], config["activation_function"], config["eos_token_id"]) == (65, "gelu", None)
    assert not (out / "vocab.json").exists()
    idx = torch.randint(0, 65, (3, 16), generator=torch.Generator().manual_seed(2))
    assert (hf_logits(out, idx) - our_logits(model, idx, 65)).abs().max().item() < TOL
    # the ids decode with the dataset's tokenizer, whose description the folder carries
    meta = json.loads((out / "meta.json").read_text())
    dataset_meta = json.loads((tiny_data / "shakespeare_char" / "meta.json").read_text())
    assert meta["chars"] == dataset_meta["chars"]
    assert prepare.get_tokenizer(meta).decode(prepare.get_tokenizer(meta).encode("To be, or")) == "To be, or"


def init_from_export_logits_diff(model, folder, data_dir, capsys, out) -> float:
    """train.py --init-from folder, learning rate 0: the largest logit difference between the checkpoint it
    writes and model."""
    r = call_main(train, capsys, *weights_args(data_dir, out, "--dataset", "shakespeare", "--init-from", folder,
                                               "--block-size", 32, "--max-iters", 1, "--learning-rate", 0,
                                               "--final-eval-tokens", 0))
    assert r.returncode == 0, r.stderr
    ckpt = torch.load(out / "ckpt_last.pt", weights_only=True)
    back = GPT(GPTConfig(**ckpt["model_args"]))
    back.load_state_dict(ckpt["model"])
    assert back.config.vocab_size == 50257 and back.config.gelu_approximate == model.config.gelu_approximate
    idx = torch.randint(0, 50257, (2, 32), generator=torch.Generator().manual_seed(3))
    return (our_logits(back, idx, 50257) - our_logits(model, idx, 50257)).abs().max().item()


def test_init_from_the_exported_folder_gives_the_same_logits(bpe_ckpt, bpe_export, bpe_data, capsys, tmp_path):
    """GPT-2's tanh GELU ("gelu_new"): a model fine-tuned from GPT-2 weights comes back as it was."""
    assert init_from_export_logits_diff(bpe_ckpt[1], bpe_export, bpe_data, capsys, tmp_path) < TOL


def test_a_from_scratch_model_round_trips_with_its_exact_gelu(bpe_data, capsys, tmp_path):
    """The exact GELU of a model trained from scratch is exported as "gelu" and read back as exact: the
    tanh form would be ~1e-3 off, far outside the tolerance, with these weights (std 0.5)."""
    file, model = make_bpe_ckpt(tmp_path, bpe_data, "none")
    folder = export.export(file, tmp_path / "hf-exact")
    assert json.loads((folder / "config.json").read_text())["activation_function"] == "gelu"
    idx = torch.randint(0, 50257, (2, 32), generator=torch.Generator().manual_seed(4))
    assert (hf_logits(folder, idx) - our_logits(model, idx, 50257)).abs().max().item() < TOL
    assert init_from_export_logits_diff(model, folder, bpe_data, capsys, tmp_path / "back") < TOL
    tanh = GPT.from_pretrained(folder)  # the same weights with the other GELU: visibly different logits
    tanh.transformer.h.apply(lambda m: setattr(m, "approximate", "tanh") if isinstance(m, torch.nn.GELU) else None)
    assert (our_logits(tanh, idx, 50257) - our_logits(model, idx, 50257)).abs().max().item() > 100 * TOL


def test_a_non_default_layer_norm_epsilon_is_exported(bpe_data, tmp_path):
    """layer_norm_epsilon is the model's own: with eps 0.1 (not GPT-2's 1e-5) LayerNorm normalizes these
    activations (variance ~0.5) about 10% less, so a wrong epsilon would be far outside the tolerance."""
    file, model = make_bpe_ckpt(tmp_path, bpe_data, "none", layer_norm_eps=0.1)
    folder = export.export(file, tmp_path / "hf-eps")
    assert json.loads((folder / "config.json").read_text())["layer_norm_epsilon"] == 0.1
    idx = torch.randint(0, 50257, (2, 32), generator=torch.Generator().manual_seed(5))
    assert (hf_logits(folder, idx) - our_logits(model, idx, 50257)).abs().max().item() < TOL
    back = GPT.from_pretrained(folder)
    assert back.config.layer_norm_eps == 0.1
    assert (our_logits(back, idx, 50257) - our_logits(model, idx, 50257)).abs().max().item() < TOL


def test_existing_out_dir_is_refused_unless_force(bpe_ckpt, capsys, clean_error, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    clean_error(call_main(export, capsys, bpe_ckpt[0], out), str(out), "--force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert call_main(export, capsys, bpe_ckpt[0], out, "--force").returncode == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "merges.txt", "meta.json", "model.safetensors", "tokenizer_config.json", "vocab.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no temp folder left behind


KILL = """
import os, pathlib, signal, sys
sys.path.insert(0, sys.argv[1])
import export
where, real_rename, real_save = sys.argv[2], pathlib.Path.rename, export.save_file
def rename(self, target):  # kill -9 right after the first rename: the old OUT_DIR moved aside, the new one not in
    out = real_rename(self, target)
    if where == "between renames":
        os.kill(os.getpid(), signal.SIGKILL)
    return out
def save_file(tensors, path, **kw):  # kill -9 in the middle of writing the weights
    real_save(tensors, path, **kw)
    if where == "writing":
        os.kill(os.getpid(), signal.SIGKILL)
pathlib.Path.rename, export.save_file = rename, save_file
export.main(sys.argv[3:])
"""


@pytest.mark.parametrize("where", ["between renames", "writing"])
def test_what_a_killed_export_left_is_undone(where, bpe_ckpt, capsys, clean_error, tmp_path):
    """export.py --force killed (SIGKILL) between its two renames, or while writing: the next export puts the
    user's old OUT_DIR back (so it is refused without --force), says so, and removes the temp folders."""
    out = tmp_path / "hf"
    out.mkdir()
    (out / "config.json").write_text("the user's")
    nanogpt = str(export.Path(export.__file__).parent)
    r = subprocess.run([sys.executable, "-c", KILL, nanogpt, where, str(bpe_ckpt[0]), str(out), "--force"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stderr
    left = sorted(p.name for p in tmp_path.iterdir())
    if where == "between renames":  # nothing under OUT_DIR's name: the old folder and the new one lie aside
        assert left == [f"hf.old.tmp.{r_pid(left)}", f"hf.tmp.{r_pid(left)}"], left
    else:
        assert left == ["hf", f"hf.tmp.{r_pid(left)}"], left
    again = call_main(export, capsys, bpe_ckpt[0], out)
    clean_error(again, "not empty", "--force")
    assert ("put back" in again.stdout) == (where == "between renames"), again.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
    assert (out / "config.json").read_text() == "the user's"


def test_the_export_is_on_the_disk_before_it_takes_its_name(bpe_ckpt, monkeypatch, tmp_path):
    """Every file and the temp folder are fsynced before the rename to OUT_DIR, and OUT_DIR's parent folder after
    it: after a power cut OUT_DIR is the old folder or the whole new one, never a partial one (issue 28)."""
    events, real_rename = [], Path.rename

    def rename(self, target):
        events.append(("rename", Path(target).name))
        return real_rename(self, target)

    monkeypatch.setattr(export, "fsync_path", lambda p: events.append(("fsync", Path(p).name)))
    monkeypatch.setattr(Path, "rename", rename)
    out = export.export(bpe_ckpt[0], tmp_path / "hf")
    at = events.index(("rename", "hf"))
    synced = {name for kind, name in events[:at] if kind == "fsync"}
    assert synced == {p.name for p in out.iterdir()} | {f"hf.tmp.{os.getpid()}"}, events
    assert events[at + 1:] == [("fsync", tmp_path.name)], events


def test_a_full_disk_is_one_line_and_leaves_nothing(bpe_ckpt, capsys, clean_error, monkeypatch, tmp_path):
    """safetensors reports a full disk as its own SafetensorError, not an OSError: still one line, exit 2, no
    folder or temp folder left."""
    def full_disk(tensors, path, **kw):
        Path(path).write_bytes(b"part of the weights")
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                              '"No space left on device" })')

    monkeypatch.setattr(export, "save_file", full_disk)
    clean_error(call_main(export, capsys, bpe_ckpt[0], tmp_path / "hf"), str(tmp_path / "hf"),
                "no space left on the device")
    assert list(tmp_path.iterdir()) == []


def r_pid(names: list[str]) -> str:
    """The pid in the temp names a killed export left (NAME.tmp.PID)."""
    return next(n.rsplit(".", 1)[1] for n in names if ".tmp." in n)


def test_out_dir_holding_the_checkpoint_is_refused_even_with_force(char_run, capsys, clean_error):
    before = sorted(p.name for p in char_run.iterdir())
    clean_error(call_main(export, capsys, char_run, char_run, "--force"), "holds the checkpoint")
    clean_error(call_main(export, capsys, char_run / "ckpt_last.pt", char_run, "--force"), "holds the checkpoint")
    assert sorted(p.name for p in char_run.iterdir()) == before


def test_a_meta_of_other_data_or_non_finite_weights_are_refused(bpe_ckpt, tiny_data, capsys, clean_error, tmp_path):
    """The char dataset's meta.json (65 tokens) for a GPT-2 BPE checkpoint would crop its vocabulary to 65 ids
    and mislabel them; an inf weight would export a model that computes NaN. Both one line, nothing written."""
    char_meta = tiny_data / "shakespeare_char" / "meta.json"
    clean_error(call_main(export, capsys, bpe_ckpt[0], tmp_path / "a", "--meta", char_meta), "vocab 65",
                "does not fit", "50304")
    ckpt = torch.load(bpe_ckpt[0], weights_only=True)
    ckpt["model"]["_orig_mod.transformer.h.1.mlp.c_fc.weight"][0, 0] = float("inf")
    torch.save(ckpt, tmp_path / "inf.pt")
    clean_error(call_main(export, capsys, tmp_path / "inf.pt", tmp_path / "b"), "transformer.h.1.mlp.c_fc.weight",
                "not finite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inf.pt"]


def test_missing_checkpoint_exits_2(run_script, clean_error, tmp_path):
    r = run_script("nanogpt/export.py", tmp_path / "nope.pt", tmp_path / "out")
    clean_error(r, "nope.pt")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, needle", [
    ("text", "is not a PyTorch checkpoint"), ("list", "not a nanogpt checkpoint"),
    ("code", "objects other than tensors"), ("no-meta", "meta.json")])
def test_foreign_files_exit_2(bpe_ckpt, content, needle, capsys, clean_error, tmp_path):
    bad = tmp_path / "bad.pt"
    ckpt = torch.load(bpe_ckpt[0], weights_only=True)
    if content == "text":
        bad.write_text("not a checkpoint")
    elif content == "list":
        torch.save([1, 2, 3], bad)
    elif content == "code":  # a pickled callable: loading it with weights_only=False could run code
        torch.save({**ckpt, "hook": os.getcwd}, bad)
    else:  # a real checkpoint whose dataset is gone
        torch.save({**ckpt, "config": {"dataset": "gone", "data_dir": str(tmp_path)}}, bad)
    r = call_main(export, capsys, bad, tmp_path / "out")
    clean_error(r, needle)
    assert not (tmp_path / "out").exists()
