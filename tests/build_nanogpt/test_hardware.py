"""build_nanogpt/hardware.py: peak FLOP/s by whole-word GPU name, the precision a device affords, the device resolver."""
from pathlib import Path

import pytest
import torch

import hardware as hw


@pytest.mark.parametrize("name, precision, peak", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989.5e12),  # SXM
    ("NVIDIA H100 PCIe", "bf16", 756.5e12),
    ("NVIDIA H100 NVL", "bf16", 835.5e12),  # not the SXM part
    ("NVIDIA H200", "fp32", 67e12),
    ("NVIDIA H200 NVL", "bf16", 835.5e12),
    ("NVIDIA GH200 480GB", "bf16", 989.5e12),
    ("NVIDIA A100-SXM4-40GB", "tf32", 156e12),
    ("NVIDIA A10", "bf16", 125e12),  # not the A10G
    ("NVIDIA A10G", "bf16", None),
    ("NVIDIA L4", "bf16", 121e12),  # not the L40S (3x higher)
    ("NVIDIA L40S", "bf16", 362.05e12),
    ("Tesla T4", "fp16", 65e12),
])
def test_peak_flops_by_whole_word(name, precision, peak):
    assert hw.peak_flops(name, precision) == pytest.approx(peak)


def test_unknown_devices_and_precisions_have_no_peak():
    assert hw.peak_flops("cpu", "bf16") is None and hw.peak_flops("NVIDIA L40", "bf16") is None
    assert hw.peak_flops("Tesla T4", "bf16") is None  # no bf16 tensor cores: no made-up figure
    assert hw.peak_flops("NVIDIA A1000", "bf16") is None  # "A100" is not a word of it


def test_bf16_only_where_native(monkeypatch):
    assert hw.pick_dtype("bfloat16", "cpu") == ("bfloat16", None)
    assert hw.pick_dtype("float32", "cpu") == ("float32", None)
    dtype, note = hw.pick_dtype("float16", "cpu")
    assert dtype == "float32" and "float16" in note
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # a T4
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.version, "hip", None)
    dtype, note = hw.pick_dtype("bfloat16", "cuda:0")
    assert dtype == "float16" and note.count("\n") == 0 and "Tesla T4 has no native bfloat16" in note
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))  # an H100
    assert hw.pick_dtype("bfloat16", "cuda:0") == ("bfloat16", None)
    with pytest.raises(hw.UserError, match="--dtype 'half': use float32, bfloat16, float16"):
        hw.pick_dtype("half", "cpu")


def test_device_resolver():
    assert hw.resolve_device("auto") == "cpu"  # the tests hide CUDA
    assert hw.resolve_device("cpu") == "cpu"
    for bad, needle in (("gpu", "use auto, cpu, cuda, cuda:N or mps"), ("cuda:1", "CUDA is not available"),
                        ("cuda", "CUDA is not available")):
        with pytest.raises(hw.UserError, match=needle):
            hw.resolve_device(bad)
    # under torchrun DDP gets device_ids=[LOCAL_RANK]: another explicit index is refused before anything else
    with pytest.raises(hw.UserError, match=r"--device cuda:1: under torchrun each process uses cuda:LOCAL_RANK "
                                           r"\(here cuda:0\); pass --device cuda"):
        hw.resolve_device("cuda:1", 0, distributed=True)
    assert hw.resolve_device("cpu", 1, distributed=True) == "cpu"


def test_results_name_folders_from_the_repository_root_whatever_the_working_folder(tmp_path, monkeypatch):
    """bench.json's bench_config and ladder.json's settings go through hardware.settings: the default folders
    (absolute, beside the scripts) and relative ones typed elsewhere are named from the repository's root, so a
    results file names no folder of this machine; a folder outside the repository typed absolute stays as typed."""
    import bench
    import ladder

    root = Path(hw.__file__).resolve().parent.parent
    monkeypatch.chdir(root / "build_nanogpt")  # a relative path typed here is relative to this folder
    assert hw.from_repo("out/x") == "build_nanogpt/out/x"
    assert hw.from_repo(str(tmp_path / "o")) == str(tmp_path / "o") and hw.from_repo("") == ""
    assert hw.settings(bench.BenchConfig())["out_dir"] == "build_nanogpt/out/bench"
    got = hw.settings(ladder.LadderConfig(data_dir="data/x"))
    assert got["out_dir"] == "build_nanogpt/out/ladder" and got["data_dir"] == "build_nanogpt/data/x"
    assert all(not str(v).startswith(str(root)) for v in got.values())
    # a folder reached through a symbolic link (../shared beside a clone is one) keeps its name, not the target's
    (tmp_path / "real").mkdir()
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "shared").symlink_to(tmp_path / "real")
    monkeypatch.setattr(hw, "REPO", tmp_path / "repo")
    monkeypatch.chdir(tmp_path / "repo")
    assert hw.from_repo("shared/data") == "shared/data"
