"""Step time of train.py's CPU recipe at two commits, in one run: process CPU time of each call of
train.train_step, 1 thread, the two trees alternating A B, B A in fresh processes.

    OMP_NUM_THREADS=1 python nanogpt/results/step_time/measure.py --base 436a7c5 --new HEAD \
        --data-source PATH/input.txt [--rounds 8 --steps 60]

Each round runs `train.py --preset shakespeare_char_cpu --max-iters STEPS` once per tree (no evaluations after
the first, no checkpoints, no samples); the first 5 steps of each run are left out (allocator warm-up). Writes
step_time.json beside this file: each round's median step time per tree, and new/old as the ratio of the
medians and as the median of the rounds' ratios.
"""
import argparse
import datetime
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
WARMUP = 5

# runs in a fresh interpreter: argv = [tree, out_file, train.py's arguments...]
TIMED = """
import json, sys, time
import torch
torch.set_num_threads(1)
sys.path.insert(0, sys.argv[1])
import train
real, times = train.train_step, []
def timed(*args, **kwargs):
    t0 = time.process_time()
    loss = real(*args, **kwargs)
    times.append(time.process_time() - t0)
    return loss
train.train_step = timed
code = train.main(sys.argv[3:])
assert code == 0, code
open(sys.argv[2], "w").write(json.dumps(times))
"""


def run_tree(tree: Path, data_dir: Path, source: str, steps: int, tmp: Path) -> float:
    out, times_file = tmp / "out", tmp / "times.json"
    args = ["--preset", "shakespeare_char_cpu", "--data-dir", data_dir, "--data-source", source, "--out-dir", out,
            "--max-iters", steps, "--eval-interval", 10**6, "--log-interval", 10**6, "--save-epochs", "",
            "--num-samples", 0, "--final-eval-tokens", 0]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MPLBACKEND": "Agg", "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([sys.executable, "-c", TIMED, str(tree), str(times_file), *map(str, args)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    for f in out.iterdir():
        f.unlink()
    return statistics.median(json.loads(times_file.read_text())[WARMUP:])


def _torch_version() -> str:
    return subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                          text=True).stdout.strip()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="436a7c5", help="the old commit")
    p.add_argument("--new", default="HEAD", help="the new commit")
    p.add_argument("--data-source", required=True, help="Tiny Shakespeare's input.txt")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=60)
    args = p.parse_args()
    commits = {c: subprocess.run(["git", "rev-parse", "--short", c], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip() for c in (args.base, args.new)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trees = {}
        for name, commit in (("old", commits[args.base]), ("new", commits[args.new])):
            archive = subprocess.run(["git", "archive", commit, "nanogpt"], cwd=ROOT, check=True,
                                     capture_output=True).stdout
            tarfile.open(fileobj=io.BytesIO(archive)).extractall(tmp / name)
            trees[name] = tmp / name / "nanogpt"
        rounds = []
        for i in range(args.rounds):
            order = ("old", "new") if i % 2 == 0 else ("new", "old")  # A B, then B A
            row = {name: run_tree(trees[name], tmp / "data", args.data_source, args.steps, tmp) for name in order}
            rounds.append({k: round(1e3 * v, 3) for k, v in row.items()})
            print(f"round {i + 1}: old {rounds[-1]['old']:.2f} ms, new {rounds[-1]['new']:.2f} ms", flush=True)
    old, new = (statistics.median(r[k] for r in rounds) for k in ("old", "new"))
    ratios = [r["new"] / r["old"] for r in rounds]
    result = {
        "what": "median process CPU time of train.train_step, ms, per round (each round one run per tree)",
        "command": (f"OMP_NUM_THREADS=1 python nanogpt/results/step_time/measure.py --base {args.base} "
                    f"--new {args.new} --data-source PATH/input.txt --rounds {args.rounds} --steps {args.steps}"),
        "old": commits[args.base], "new": commits[args.new], "threads": 1, "torch": _torch_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average": os.getloadavg(),
        "rounds": rounds, "old_ms_median": old, "new_ms_median": new, "ratio_new_over_old": round(new / old, 4),
        "median_of_round_ratios": round(statistics.median(ratios), 4),
    }
    (HERE / "step_time.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"median step: old {old:.2f} ms, new {new:.2f} ms; new/old {new / old:.3f} (median of the rounds' "
          f"ratios {statistics.median(ratios):.3f})")


if __name__ == "__main__":
    main()
