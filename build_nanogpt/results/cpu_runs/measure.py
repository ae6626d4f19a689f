"""The CPU figures of build_nanogpt/README.md, measured by running the README's commands: the tiny preset on
Tiny Shakespeare (shards, then 100 iters), the HellaSwag smoke test (a random 2-layer GPT-2, 200 examples) and
fineweb.py's peak memory on a large .txt. Writes build_nanogpt/out/cpu_runs.json, or the --out file (the committed
one: --out build_nanogpt/results/cpu_runs/cpu_runs.json).

    OMP_NUM_THREADS=1 python build_nanogpt/results/cpu_runs/measure.py [--data-dir ../shared/data] [--copies 190] [--out F]

Every command runs from the repository root in a fresh process with one thread (OMP_NUM_THREADS=1) and writes
under build_nanogpt/out/cpu_runs/ (emptied first). For each one the file records the command as run, its exit
code, its wall time, its CPU time (user + system, from wait4) and its peak resident memory; then the figures the
README quotes, read from what the command wrote (log.jsonl, manifest.json, the last line of hellaswag.py).
"""
import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
WORK = "build_nanogpt/out/cpu_runs"  # relative to ROOT, as the commands are recorded
PY = "python"  # as recorded; run with this interpreter

SMOKE_MODEL = ("import torch; from transformers import GPT2Config, GPT2LMHeadModel; torch.manual_seed(0); "
               "GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=64)).save_pretrained('{out}')")


def machine() -> str:
    """hardware.machine() in a child: this process stays small (no torch), since a child's peak memory as wait4
    reports it starts from the memory of the process that forked it."""
    code = "import sys; sys.path.insert(0, 'build_nanogpt'); from hardware import machine; print(machine())"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def run(args: list[str]) -> dict:
    """Run one command from the repository root -> its record (command, exit, wall_s, cpu_s, max_rss_mb)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": "", "MPLBACKEND": "Agg"}
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable if a == PY else a for a in args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    record = {"command": shlex.join(args), "exit": proc.returncode, "wall_s": round(time.monotonic() - t0, 2),
              "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "max_rss_mb": round(usage.ru_maxrss / 1024, 1)}
    if proc.returncode != 0:
        sys.exit(f"measure.py: {record['command']} exited {proc.returncode}:\n{out[-2000:]}")
    lines = out.strip().splitlines()
    record["stdout_tail"] = lines[-1]
    record["header"] = next((line for line in lines if " parameters " in line), None)  # train.py's first line
    print(f"{record['wall_s']:8.1f} s wall {record['cpu_s']:8.1f} s CPU {record['max_rss_mb']:8.1f} MB  "
          f"{record['command']}", flush=True)
    return record


def tiny(data: str) -> dict:
    """The README's CPU quick start: Tiny Shakespeare as paragraphs -> shards -> train.py --preset tiny."""
    text = (ROOT / data / "tinyshakespeare" / "input.txt").read_text()
    paragraphs = [p for p in text.split("\n\n") if p.strip()]  # the README's one-liner
    (ROOT / WORK / "shakespeare.jsonl").write_text("".join(json.dumps({"text": p}) + "\n" for p in paragraphs))
    shards = run([PY, "build_nanogpt/fineweb.py", "--source", f"{WORK}/shakespeare.jsonl", "--out-dir",
                  f"{WORK}/shakespeare", "--shard-size", "100000", "--num-proc", "1"])
    train = run([PY, "build_nanogpt/train.py", "--preset", "tiny", "--data-dir", f"{WORK}/shakespeare",
                 "--hellaswag-data", f"{data}/hellaswag/hellaswag_val.jsonl", "--out-dir", f"{WORK}/tiny"])
    manifest = json.loads((ROOT / WORK / "shakespeare" / "manifest.json").read_text())
    log = [json.loads(line) for line in (ROOT / WORK / "tiny" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if r["kind"] == "train"]
    return {"steps": [shards, train], "paragraphs": len(paragraphs), "tokens": manifest["total_tokens"],
            "shards": len(manifest["shards"]), "val_tokens": manifest["shards"][0]["tokens"],
            "parameters": int(train["header"].split()[0].replace(",", "")), "iters": len(steps),
            "tokens_per_iter": round(steps[0]["tok_per_s"] * steps[0]["dt_ms"] / 1000),
            "train_cpu_s": round(sum(r["cpu_ms"] for r in steps) / 1000, 2),
            "val_loss": {r["iter"]: r["val_loss"] for r in log if r["kind"] == "val"},
            "hellaswag": {r["iter"]: {"n": r["n"], "acc_norm": r["acc_norm"]} for r in log if r["kind"] == "hellaswag"}}


def hellaswag_smoke(data: str) -> dict:
    """A randomly initialised 2-layer, 64-wide GPT-2 (transformers, seed 0) on the first 200 examples."""
    model = run([PY, "-c", SMOKE_MODEL.format(out=f"{WORK}/hf_smoke")])
    score = run([PY, "build_nanogpt/hellaswag.py", "--model", f"{WORK}/hf_smoke", "--data",
                 f"{data}/hellaswag/hellaswag_val.jsonl", "--limit", "200", "--device", "cpu"])
    return {"steps": [model, score], **json.loads(score["stdout_tail"])}


def fineweb_memory(data: str, copies: int) -> dict:
    """fineweb.py's peak resident memory on one large .txt (Tiny Shakespeare `copies` times), one process, with
    the default 100M-token shards and with 10M-token shards."""
    big = ROOT / WORK / "big.txt"
    text = (ROOT / data / "tinyshakespeare" / "input.txt").read_text()
    with open(big, "w") as f:
        for _ in range(copies):
            f.write(text)
    runs = {}
    for name, extra in (("default", []), ("shard_size_1e7", ["--shard-size", "10000000"])):
        runs[name] = run([PY, "build_nanogpt/fineweb.py", "--source", f"{WORK}/big.txt", "--out-dir",
                          f"{WORK}/big_{name}", "--num-proc", "1", *extra])
        runs[name]["tokens"] = json.loads((ROOT / WORK / f"big_{name}" / "manifest.json").read_text())["total_tokens"]
        shutil.rmtree(ROOT / WORK / f"big_{name}")
    size = big.stat().st_size
    big.unlink()
    return {"copies": copies, "txt_bytes": size, **runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="../shared/data", help="the shared data, relative to the repo root")
    parser.add_argument("--copies", type=int, default=190, help="copies of Tiny Shakespeare in the large .txt")
    parser.add_argument("--out", default="build_nanogpt/out/cpu_runs.json", help="the results file, relative to the "
                        "repo root (default: %(default)s; never a committed file unless named)")
    args = parser.parse_args()
    command = shlex.join(["python", os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    shutil.rmtree(ROOT / WORK, ignore_errors=True)
    (ROOT / WORK).mkdir(parents=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    result = {"command": command, "machine": machine(), "threads": 1,
              "started": started.strftime("%Y-%m-%d %H:%M UTC"),
              "load_average": [round(x, 2) for x in os.getloadavg()],
              "tiny": tiny(args.data_dir), "hellaswag_smoke": hellaswag_smoke(args.data_dir),
              "fineweb_memory": fineweb_memory(args.data_dir, args.copies)}
    result["finished"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
