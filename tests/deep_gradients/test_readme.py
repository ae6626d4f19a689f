"""deep_gradients/README.md's measured figures are those of the committed results files they cite (to their
printed precision): a re-run that changes a result, or a README edited by hand, makes this fail."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "deep_gradients" / "README.md").read_text()
RESULTS = ROOT / "deep_gradients" / "results"


def test_quick_start_accuracy_and_recorder_cost_are_the_committed_run():
    res = json.loads((RESULTS / "quickstart_digits" / "results.json").read_text())
    assert res["torch_threads"] == 1 and res["command"].startswith("python deep_gradients/train.py")
    assert f"quick start's accuracy: **{100 * res['final_test_acc']:.2f}%** with one thread" in README
    train_s = sum(e["epoch_time_s"] for e in res["epochs"])
    cost = re.search(r"recorded for\s+([\d.]+) s against ([\d.]+) s of training \(([\d.]+)%\)", README)
    assert cost, "the recorder's cost is not quoted"
    assert cost.groups() == (f"{res['record_s']:.2f}", f"{train_s:.1f}", f"{100 * res['record_s'] / train_s:.1f}")


def test_benchmark_figures_are_the_committed_ones():
    """The benchmark section cites its committed output; any row of the table it quotes is that output's."""
    section = README.split("## Benchmark", 1)[1].split("\n## ", 1)[0]
    table = (RESULTS / "benchmark_cpu_quick" / "benchmark.md").read_text().splitlines()
    assert "(results/benchmark_cpu_quick/benchmark.md)" in section
    assert all(line in table for line in section.splitlines() if line.startswith("| cpu "))
