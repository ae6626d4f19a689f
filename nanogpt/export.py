"""Export a nanogpt checkpoint as a Hugging Face GPT-2 folder that transformers loads offline.

    python nanogpt/export.py nanogpt/out/demo/ckpt_last.pt hf-model   # or the run's folder: nanogpt/out/demo
    python nanogpt/export.py CKPT OUT_DIR --force --meta DATA_DIR/shakespeare/meta.json

OUT_DIR gets config.json and model.safetensors (GPT2LMHeadModel), meta.json (the dataset's tokenizer), and
for GPT-2 BPE data the tokenizer files vocab.json and merges.txt: the very encoder.json and vocab.bpe that
tiktoken's gpt2 encoding reads (from its cache, TIKTOKEN_CACHE_DIR). What differs between the layouts:
- Hugging Face's Conv1D stores a linear layer's weight as (in, out); nn.Linear as (out, in): transposed.
- the vocabulary padded for speed (50257 -> 50304) is cropped back to the dataset's; the rows past it are
  never targets, so the logits of the real tokens are unchanged;
- the context is the checkpoint's block_size (n_positions), cropped or not;
- GPT-2 always has biases: a bias=False model gets zero biases, which computes the same function;
- the GELU is the checkpoint's: exact erf ("gelu") for models trained from scratch, tanh ("gelu_new") for
  GPT-2 weights.
The folder is written under a temp name and renamed into place; an existing non-empty OUT_DIR is replaced
only with --force: moved aside, the new folder renamed in, the old one removed. What a killed export leaves
(the temp folders, an old OUT_DIR moved aside) is undone by the next export.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

import checkpoint
from cli import Parser, UserError, run_main
from files import TMP_MARK, alive, fsync_path, why_failed
from model import GPT, GPTConfig

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
HF_GELU = {"none": "gelu", "tanh": "gelu_new"}  # our nn.GELU(approximate=...) -> transformers' activation
# the two files of tiktoken's gpt2 encoding (tiktoken_ext/openai_public.py), with the sha256 it checks
GPT2_BPE = {
    "vocab.json": ("https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
                   "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"),
    "merges.txt": ("https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
                   "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"),
}
EOT = "<|endoftext|>"
EMBEDDINGS = ("transformer.wte.weight", "transformer.wpe.weight")


# --------------------------------------------------------------------------------------------------
# reading: the checkpoint and its dataset's meta.json


def load_checkpoint(path: Path) -> checkpoint.Checkpoint:
    """A checkpoint file, or a run's folder (its ckpt_last.pt)."""
    file = checkpoint.in_folder(path)
    if not file.is_file():
        raise UserError(f"no checkpoint at {file}")
    return checkpoint.read(file)


def read_meta(saved: checkpoint.Checkpoint, meta_file: Path | None) -> dict:
    """The dataset's meta.json: --meta, else the one the checkpoint was trained on."""
    if meta_file is None:
        meta_file = checkpoint.dataset_meta(saved) or Path("meta.json")
    try:
        meta = json.loads(meta_file.read_text())
        vocab_size = int(meta["vocab_size"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot read the dataset's meta.json at {meta_file} ({type(e).__name__}); "
                        f"pass --meta DATA_DIR/DATASET/meta.json") from None
    if meta.get("tokenizer") not in ("gpt2", "char", "byte"):
        raise UserError(f"{meta_file}: unknown tokenizer {meta.get('tokenizer')!r}; expected gpt2, char or byte")
    keep = ("dataset", "tokenizer", "vocab_size", "eot_token", "chars")
    return {k: meta[k] for k in keep if k in meta} | {"vocab_size": vocab_size}


def check_fits(saved: checkpoint.Checkpoint, model: GPTConfig, meta: dict) -> None:
    """Refuse a meta.json that is not the checkpoint's dataset's (its vocabulary is neither the model's nor
    the model's before padding to a multiple of vocab_multiple) and weights that are not finite."""
    vocab, multiple = meta["vocab_size"], max(1, int(saved.config.get("vocab_multiple", 64)))  # train.py's default
    if model.vocab_size not in (vocab, -(-vocab // multiple) * multiple):
        raise UserError(f"the dataset's meta.json (tokenizer {meta['tokenizer']}, vocab {vocab}) does not fit the "
                        f"checkpoint's vocabulary of {model.vocab_size} tokens; pass the --meta of the data it "
                        f"trained on")
    bad = [k for k, v in saved.model.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise UserError(f"the checkpoint's weight {bad[0]!r} is not finite (a diverged run?); export one whose "
                        f"weights are finite")


# --------------------------------------------------------------------------------------------------
# converting: config.json, the tensors, the tokenizer files


def hf_config(model: GPTConfig, meta: dict) -> dict:
    """config.json of a GPT2LMHeadModel with this architecture and the dataset's real vocabulary."""
    eot = meta.get("eot_token")
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": meta["vocab_size"], "n_positions": model.block_size, "n_ctx": model.block_size,
        "n_embd": model.n_embd, "n_layer": model.n_layer, "n_head": model.n_head, "n_inner": None,
        "activation_function": HF_GELU[model.gelu_approximate], "layer_norm_epsilon": model.layer_norm_eps,
        "resid_pdrop": model.dropout, "embd_pdrop": model.dropout, "attn_pdrop": model.dropout,
        "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True, "bos_token_id": eot, "eos_token_id": eot, "initializer_range": 0.02,
    }


def hf_tensors(state_dict: dict, model: GPTConfig, vocab_size: int) -> dict[str, torch.Tensor]:
    """Our state dict -> GPT2LMHeadModel's: Conv1D weights transposed, the token embedding cropped to the
    real vocabulary (lm_head is tied to it, so it is not stored), zero biases where the model has none."""
    sd = checkpoint.clean_state_dict(state_dict)
    with torch.device("meta"):  # shapes only: no memory, no init
        want = {k: v.shape for k, v in GPT(model).state_dict().items()}
    misfit = [k for k in want.keys() | sd.keys() if k not in sd or k not in want or sd[k].shape != want[k]]
    if misfit:
        raise UserError(f"the checkpoint's weights do not fit its model_args ({len(misfit)} tensors missing, "
                        f"extra or misshapen, e.g. {sorted(misfit)[0]!r})")
    if vocab_size > model.vocab_size:
        raise UserError(f"the dataset's vocab_size {vocab_size} exceeds the model's {model.vocab_size}")
    out = {}
    for k, v in sd.items():
        if k == "lm_head.weight":
            continue
        if k == "transformer.wte.weight":
            v = v[:vocab_size]  # drop the padding rows (50304 -> 50257)
        out[k] = (v.t() if k.endswith(CONV1D) else v).contiguous().clone()
        if not model.bias and k.endswith(".weight") and k not in EMBEDDINGS:
            rows = v.shape[0] if v.dim() == 2 else v.numel()  # Linear (out, in) or LayerNorm (C,)
            out[k.removesuffix("weight") + "bias"] = torch.zeros(rows, dtype=v.dtype)
    return out


def gpt2_bpe_files() -> dict[str, bytes]:
    """vocab.json and merges.txt: tiktoken's cached encoder.json and vocab.bpe (sha256 checked)."""
    import tiktoken.load

    try:
        return {name: tiktoken.load.read_file_cached(url, sha) for name, (url, sha) in GPT2_BPE.items()}
    except Exception as e:  # noqa: BLE001 - not cached and offline, or a damaged cache file
        raise UserError(f"cannot read the GPT-2 BPE files ({type(e).__name__}); offline? point TIKTOKEN_CACHE_DIR "
                        f"at a folder holding tiktoken's cached gpt2 files") from None


def tokenizer_files(meta: dict, n_positions: int) -> dict[str, bytes]:
    """meta.json always (how to decode the ids); for GPT-2 BPE also the Hugging Face tokenizer files."""
    files = {"meta.json": _json(meta)}
    if meta["tokenizer"] == "gpt2":
        files |= gpt2_bpe_files()
        files["tokenizer_config.json"] = _json({
            "tokenizer_class": "GPT2Tokenizer", "model_max_length": n_positions, "add_prefix_space": False,
            "bos_token": EOT, "eos_token": EOT, "unk_token": EOT})
    return files


def _json(obj) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()


# --------------------------------------------------------------------------------------------------
# writing: the whole folder or nothing


def recover(out_dir: Path) -> None:
    """Undo what a killed export left beside OUT_DIR: an old OUT_DIR moved aside (OUT_DIR.old.tmp.PID) goes back
    where it was if nothing replaced it; a half-written OUT_DIR.tmp.PID is removed. Folders of a live export
    are left alone."""
    for p in sorted(out_dir.parent.glob(f"{out_dir.name}*{TMP_MARK}*")):
        stem, pid = p.name.rsplit(TMP_MARK, 1)
        if stem not in (out_dir.name, f"{out_dir.name}.old") or not pid.isdigit() or alive(int(pid)):
            continue
        if stem == f"{out_dir.name}.old" and not out_dir.exists():
            p.rename(out_dir)
            print(f"put back {out_dir}, which a killed export had moved to {p.name}")
        else:
            shutil.rmtree(p, ignore_errors=True)


def check_out_dir(out_dir: Path, force: bool, ckpt_path: Path) -> None:
    """OUT_DIR may be replaced: it is missing, empty, or --force was given, and it does not hold the input."""
    src, dst = ckpt_path.resolve(), out_dir.resolve()
    if src == dst or dst in src.parents:
        raise UserError(f"{out_dir} holds the checkpoint {ckpt_path}; export to another folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise UserError(f"{out_dir} exists and is not empty; pass --force to replace it")


def write_folder(out_dir: Path, files: dict[str, bytes], tensors: dict[str, torch.Tensor]) -> None:
    """Everything into OUT_DIR.tmp.PID, flushed to the disk, then renamed to OUT_DIR (an old OUT_DIR is removed
    after): a power cut leaves the old folder or the whole new one, never a partial one under the final name."""
    tmp = out_dir.with_name(f"{out_dir.name}{TMP_MARK}{os.getpid()}")
    old = out_dir.with_name(f"{out_dir.name}.old{TMP_MARK}{os.getpid()}")
    try:
        tmp.mkdir(parents=True)
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        for path in (*tmp.iterdir(), tmp):
            fsync_path(path)
        if out_dir.exists():
            out_dir.rename(old)
        tmp.rename(out_dir)
        fsync_path(out_dir.parent)
    except (OSError, SafetensorError) as e:  # safetensors reports a full disk as SafetensorError
        raise UserError(f"cannot write {out_dir}: {why_failed(e)}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def export(ckpt_path, out_dir, force: bool = False, meta_file=None) -> Path:
    """Write the Hugging Face folder for a checkpoint; returns OUT_DIR."""
    out_dir, ckpt_path = Path(out_dir), Path(ckpt_path)
    recover(out_dir)
    check_out_dir(out_dir, force, ckpt_path)
    saved = load_checkpoint(ckpt_path)
    meta = read_meta(saved, Path(meta_file) if meta_file else None)
    try:
        model = GPTConfig(**saved.model_args)
    except TypeError as e:
        raise UserError(f"{ckpt_path}: model_args do not describe a GPT ({e})") from None
    check_fits(saved, model, meta)
    tensors = hf_tensors(saved.model, model, meta["vocab_size"])
    files = {"config.json": _json(hf_config(model, meta)), **tokenizer_files(meta, model.block_size)}
    write_folder(out_dir, files, tensors)
    return out_dir


def main(argv=None) -> int:
    p = Parser(prog="export.py", description=__doc__.split("\n\n")[0])
    p.add_argument("ckpt", metavar="CKPT", help="a checkpoint file, or a training --out-dir (its ckpt_last.pt)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="the Hugging Face folder to write")
    p.add_argument("--force", action="store_true", help="replace OUT_DIR when it exists and is not empty")
    p.add_argument("--meta", metavar="FILE", help="the dataset's meta.json (default: the one of the "
                                                 "checkpoint's config.data_dir / config.dataset)")
    args = p.parse_args(argv)
    out = export(args.ckpt, args.out_dir, args.force, args.meta)
    print(f"wrote {out} (transformers: AutoModelForCausalLM.from_pretrained({str(out)!r}))")
    return 0


if __name__ == "__main__":
    run_main(main)
