"""train.py --wandb: every record of log.jsonl (evaluations and logged steps) reaches Weights & Biases, tested
offline (WANDB_MODE=offline) by reading the run's .wandb file back; wandb is imported only with the flag."""
import json
import struct
import sys
import time
from pathlib import Path

import pytest

import train
from helpers import call_main, read_records, run_args

BLOCK, FULL, LAST = 32768, 1, 4


def wandb_records(run_file: Path) -> list[bytes]:
    """The records of a .wandb file: a 7-byte header (':W&B', magic, version), then LevelDB's log format
    (32 KiB blocks; each record piece has a checksum, its length, and a type: full, first, middle or last)."""
    raw = run_file.read_bytes()
    assert raw[:4] == b":W&B"
    pos, piece, out = 7, b"", []
    while pos + 7 <= len(raw):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        length, kind = struct.unpack("<HB", raw[pos + 4 : pos + 7])
        piece += raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (FULL, LAST):
            out.append(piece)
            piece = b""
    return out


def item_key(item) -> str:
    return item.key or "/".join(item.nested_key)  # W&B writes a name in either field


def wandb_history(wandb_dir: Path) -> tuple[dict, dict]:
    """(config, {step: {key: value}}) of the one offline run under wandb_dir."""
    from wandb.proto import wandb_internal_pb2 as pb

    (run_file,) = (wandb_dir / "wandb").glob("offline-run-*/run-*.wandb")
    for _ in range(300):  # W&B's service process may still be writing the file when finish() returns
        records = [pb.Record.FromString(data) for data in wandb_records(run_file)]
        if any(rec.WhichOneof("record_type") == "exit" for rec in records):
            break
        time.sleep(0.1)
    config, rows = {}, {}
    for rec in records:
        if rec.WhichOneof("record_type") == "history":
            row = rows.setdefault(rec.history.step.num, {})
            row.update({item_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif rec.WhichOneof("record_type") in ("run", "config"):  # the config comes with either
            updates = rec.run.config.update if rec.HasField("run") else rec.config.update
            config.update({item_key(i): json.loads(i.value_json) for i in updates})
            config["run name"] = rec.run.display_name or config.get("run name")
    return config, rows


def test_offline_run_holds_every_logged_value(tiny_data, tmp_path, capsys, monkeypatch):
    for k, v in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "out"
    r = call_main(train, capsys, *run_args(tiny_data, out, "--max-iters", 10, "--wandb", "--wandb-project", "tiny",
                                           "--wandb-run-name", "run-a"))
    assert r.returncode == 0, r.stderr
    config, rows = wandb_history(tmp_path)
    assert config.get("wandb_project") == "tiny" and config["run name"] == "run-a" and config["n_embd"] == 32, config
    records = read_records(out)
    assert {"val_loss" in rec for rec in records} == {True, False}  # evaluations and logged steps
    for rec in records:
        row = rows[rec["iter"]]
        for key, value in rec.items():
            if key != "iter" and value is not None:
                assert row[key] == value, (rec["iter"], key)


def test_wandb_is_imported_only_with_the_flag(tiny_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # any import of wandb fails
    r = call_main(train, capsys, *run_args(tiny_data, tmp_path / "a", "--max-iters", 2))
    assert r.returncode == 0, r.stderr
    r = call_main(train, capsys, *run_args(tiny_data, tmp_path / "b", "--max-iters", 2, "--wandb"))
    assert r.returncode == 2 and "--wandb needs the wandb package" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_wandb_run_that_cannot_start_is_one_line_before_set_up(tiny_data, tmp_path, capsys, monkeypatch):
    """WANDB_DIR under a file (unwritable): one line, exit 2, before any data is read or model built."""
    (tmp_path / "afile").write_text("")
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "afile" / "wandb"), "WANDB_SILENT": "true"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    built = []
    monkeypatch.setattr(train, "setup", lambda *a, **k: built.append(1))
    r = call_main(train, capsys, *run_args(tiny_data, tmp_path / "out", "--max-iters", 2, "--wandb"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "--wandb: cannot start a W&B run" in r.stderr and str(tmp_path / "afile") in r.stderr
    assert not built


@pytest.mark.parametrize("case", ["no API key", "bad project name"])
def test_wandb_refusals_are_one_line_before_set_up(case, tiny_data, tmp_path, run_script, monkeypatch):
    """Online without an API key (no WANDB_MODE=offline, no key, no ~/.netrc), and a project name W&B refuses:
    wandb's UsageError becomes one line, exit 2, before training starts (issue 28). In a process of its own: wandb
    keeps settings between runs in one process."""
    for k in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(k, raising=False)
    env = {"HOME": str(tmp_path), "WANDB_CONFIG_DIR": str(tmp_path / "cfg"), "WANDB_DIR": str(tmp_path),
           "WANDB_SILENT": "true", **({"WANDB_MODE": "offline"} if case == "bad project name" else {})}
    extra = ("--wandb-project", "bad/name#") if case == "bad project name" else ()
    r = run_script("nanogpt/train.py", *run_args(tiny_data, tmp_path / "out", "--max-iters", 2, "--wandb", *extra),
                   env=env)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "--wandb: cannot start a W&B run" in r.stderr
    assert ("API key" if case == "no API key" else "bad/name#") in r.stderr
    assert not (tmp_path / "out" / "log.jsonl").exists()
