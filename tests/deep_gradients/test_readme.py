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


ANALYSIS = (ROOT / "deep_gradients" / "ANALYSIS.md").read_text()


def section(text: str, title: str) -> str:
    return text.split(title, 1)[1].split("\n## ", 1)[0]


def test_results_files_name_no_folder_of_this_machine():
    """Every committed results file is script output whose paths are written from the repository's root (or as
    typed relative to it): no absolute path of the machine that wrote it; each says how it was made (a command
    from the root, the machine, the date, the thread count), none of which may be missing."""
    def strings(v):
        if isinstance(v, dict):
            return [s for x in v.values() for s in strings(x)]
        return [s for x in v for s in strings(x)] if isinstance(v, list) else [v] if isinstance(v, str) else []
    files = sorted(RESULTS.glob("*/*.json"))
    assert len(files) >= 4, files
    for path in files:
        data = json.loads(path.read_text())
        assert not [s for s in strings(data) if s.startswith("/") or "/work/" in s or "/tmp/" in s], path
        made = data.get("header", data)  # benchmark.json: in its header, the thread count in each row
        assert made["command"].startswith("python deep_gradients/"), path
        assert re.fullmatch(r"\d+ CPU cores \(.+\); GPUs: .+; torch \S+; Python \S+", made["machine"]), path
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", made["date"]), path
        assert "header" in data or made["torch_threads"] >= 1, path


def test_ablation_report_is_ablate_py_output_of_the_command_analysis_quotes(tmp_path):
    """ablation.md is what ablate.py writes from the committed ablation.json (so neither was edited by hand),
    and ANALYSIS.md quotes the command recorded in the file, run on one thread."""
    import ablate

    res = json.loads((RESULTS / "ablation" / "ablation.json").read_text())
    assert res["torch_threads"] == 1 and res["summary"] == ablate.summarize(res["runs"])
    assert len(res["runs"]) == 24 and {r["seed"] for r in res["runs"]} == {0}
    minutes = sum(r["seconds"] for r in res["runs"]) / 60
    assert f"24 runs, on a 2-core AMD EPYC VM ({minutes:.0f} min in all)" in ANALYSIS
    assert res["machine"].startswith("2 CPU cores (AMD EPYC)")
    written = RESULTS / "ablation" / "ablation.md"
    ablate.write_markdown(res, str(tmp_path / "ablation.md"))
    assert (tmp_path / "ablation.md").read_text() == written.read_text()
    text = section(ANALYSIS, "## 3. Ablations on MNIST")
    quoted = text.split("```\n", 2)[1].replace("\\\n", " ").split()
    assert quoted[0] == "OMP_NUM_THREADS=1" and " ".join(quoted[1:]) == res["command"]


def test_ablation_figures_in_analysis_are_those_of_ablation_json():
    """ANALYSIS.md section 3 (and the README's summary of it): its tables are ablation.md's rows, and every
    accuracy in its prose is a cell of ablation.json (2 decimals) or the difference of two cells."""
    res = json.loads((RESULTS / "ablation" / "ablation.json").read_text())
    table = (RESULTS / "ablation" / "ablation.md").read_text().splitlines()
    text = section(ANALYSIS, "## 3. Ablations on MNIST")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 2 + 12 + 4 and all(line in table for line in rows), [r for r in rows if r not in table]
    cells = {round(100 * s["acc_mean"], 2) for s in res["summary"] if s["acc_mean"] is not None}
    diffs = {round(abs(a - b), 2) for a in cells for b in cells}
    prose = "\n".join(line for line in text.splitlines() if not line.startswith("|") and "--" not in line)
    prose = re.sub(r"(lr|e\.g\.) \d+\.\d+", "", prose)  # learning rates, not accuracies
    quoted = [float(v) for v in re.findall(r"(?<![\d.])(\d+\.\d\d)(?![\d])", prose)]
    stds = {float(v) for v in re.findall(r"[\d.]+", "".join(line for line in table if "_s0 |" in line))}
    wrong = [v for v in quoted if v not in cells | diffs | stds]  # stds: the activation std table's values
    assert len(quoted) > 20 and not wrong, wrong
    acc = {(s["config"], s["depth"], s["lr"]): s["acc_mean"] for s in res["summary"]}
    assert (f"depth 56 and lr 0.05 reaches {100 * acc['bn+res', 56, 0.05]:.2f}% test accuracy and BN\n  without "
            f"shortcuts {100 * acc['bn', 56, 0.05]:.2f}%") in README
    assert "](results/ablation/ablation.json)" in README and "](results/ablation/ablation.json)" in text


def test_scratch_figures_are_the_committed_run():
    res = json.loads((RESULTS / "scratch_digits" / "results.json").read_text())
    losses = res["train_losses"]
    assert res["torch_threads"] == 1 and len(losses) == 200
    assert res["machine"].startswith("2 CPU cores (AMD EPYC)")  # the machine ANALYSIS.md names
    assert res["command"] in section(ANALYSIS, "## 1. Backpropagation by hand").replace("\n", " ")
    assert (f"loss {losses[0]:.3f} (step 0) → {losses[50]:.3f} (step 50) → {losses[100]:.3f} (step 100) → "
            f"{losses[199]:.3f} (step 199), **{100 * res['test_acc']:.2f} % test accuracy**") in \
        ANALYSIS.replace("\n", " ")
    assert f"{res['cpu_s']:.0f} s of CPU time, 1 thread" in ANALYSIS
    assert f"**{100 * res['test_acc']:.2f}%** on the 359 test digits after 200 steps" in README.replace("\n  ", " ")
