"""Peak memory of prepare.py on a whole-text dataset as the text grows: Tiny Shakespeare repeated 1 and N times,
prepared as shakespeare_char (characters) and as shakespeare (GPT-2 BPE), each in a fresh process.

    OMP_NUM_THREADS=1 TIKTOKEN_CACHE_DIR=DIR python nanogpt/results/prepare_memory/measure.py \
        --source ../shared/data/tinyshakespeare/input.txt --copies 1,190 --out-dir nanogpt/results/prepare_memory

The text is streamed in 1M-character pieces, so the peak should not grow with the text. For each run: the peak
resident set size of the prepare.py process (VmHWM), its CPU time, the text's size and the
tokens written. Writes prepare_memory.json (default folder: nanogpt/out/prepare_memory) with the command as
typed, the machine, the date and the thread count.
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
NANOGPT = HERE.parents[1]
sys.path.insert(0, str(NANOGPT))
from bench import provenance  # noqa: E402
from files import write_json  # noqa: E402


# runs prepare.py in a fresh interpreter and prints its peak RSS: VmHWM starts afresh at exec, where the
# rusage of a child forked from this (torch-sized) process would count the fork's copy too
CHILD = """
import resource, runpy, sys
sys.path.insert(0, sys.argv[1])
sys.argv = sys.argv[2:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as e:
    if e.code:
        raise
usage = resource.getrusage(resource.RUSAGE_SELF)
hwm = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(int(hwm), usage.ru_utime + usage.ru_stime)
"""


def prepare_once(dataset: str, source: Path, data_dir: Path) -> dict:
    """One prepare.py run in a fresh process: its peak RSS (MB) and CPU seconds, and the tokens it wrote."""
    cmd = [sys.executable, "-c", CHILD, str(NANOGPT), str(NANOGPT / "prepare.py"), "--dataset", dataset,
           "--source", str(source), "--data-dir", str(data_dir)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split("\n")[-2].split()
    tokens = sum((data_dir / dataset / f"{split}.bin").stat().st_size // 2 for split in ("train", "val"))
    return {"peak_rss_mb": round(int(out[0]) / 1024, 1), "cpu_s": round(float(out[1]), 2), "tokens": tokens}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", required=True, help="Tiny Shakespeare's input.txt")
    p.add_argument("--copies", default="1,190", help="comma-separated repeat counts of the text")
    p.add_argument("--out-dir", default=str(NANOGPT / "out" / "prepare_memory"))
    args = p.parse_args(argv)
    made = provenance("results/prepare_memory/measure.py", argv)
    text = Path(args.source).read_text()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for copies in (int(c) for c in args.copies.split(",")):
            source = Path(tmp) / f"input_x{copies}.txt"
            source.write_text(text * copies)
            for dataset in ("shakespeare_char", "shakespeare"):
                run = {"dataset": dataset, "copies": copies, "text_mb": round(source.stat().st_size / 1e6, 1),
                       **prepare_once(dataset, source, Path(tmp) / f"data_x{copies}")}
                print(run, flush=True)
                runs.append(run)
            source.unlink()
    path = write_json(Path(args.out_dir) / "prepare_memory.json", {**made, "runs": runs})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
