"""OpenAI's GPT-2 weights from the Hugging Face Hub: a hub name becomes a local folder (config.json + weights).

`gpt2_folder("gpt2")` returns the cached snapshot folder, downloading it once with huggingface_hub; a local
folder is returned as it is. model.GPT.from_pretrained reads the folder.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

# OpenAI's GPT-2 sizes: name -> (n_layer, n_head, n_embd); all have 1024 positions and biases
HUB_MODELS = {"gpt2": (12, 12, 768), "gpt2-medium": (24, 16, 1024), "gpt2-large": (36, 20, 1280),
              "gpt2-xl": (48, 25, 1600)}


def gpt2_folder(name_or_path: str) -> Path:
    """A local folder as it is, or a hub name's cached snapshot (downloaded when missing). ValueError, one
    line, for anything else or when offline without a cached copy."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if name_or_path not in HUB_MODELS:
        raise ValueError(f"{name_or_path!r} is neither a directory nor a GPT-2 hub name ({', '.join(HUB_MODELS)})")
    from huggingface_hub import hf_hub_download  # only needed for downloads

    try:
        try:  # already in the local Hugging Face cache: no network needed
            config = hf_hub_download(name_or_path, "config.json", local_files_only=True)
            _weights(hf_hub_download, name_or_path, local_files_only=True)
            return Path(config).parent
        except Exception:  # noqa: BLE001 - not cached: download, if the hub is reachable at all
            pass
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False") or not _reachable():
            raise ConnectionError("no connection to huggingface.co")  # fail fast instead of 5 noisy retries
        config = hf_hub_download(name_or_path, "config.json")
        _weights(hf_hub_download, name_or_path)
    except Exception as e:  # noqa: BLE001 - offline, no such file, hub down: all mean "use a local copy"
        raise ValueError(
            f"could not download {name_or_path!r} from the Hugging Face Hub ({type(e).__name__}); "
            f"offline? pass a local directory holding its config.json and model.safetensors instead"
        ) from None
    return Path(config).parent


def _weights(hf_hub_download, repo: str, **kw) -> str:
    try:
        return hf_hub_download(repo, "model.safetensors", **kw)
    except Exception:  # noqa: BLE001 - older repos only have the pickle
        return hf_hub_download(repo, "pytorch_model.bin", **kw)


def _reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False
