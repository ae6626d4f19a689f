"""The root README's Results table quotes committed results files: each figure it prints is that file's value at
the printed precision, so a re-run that changes a result, or a table edited by hand, makes this fail."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
TABLE = README.split("## Results", 1)[1].split("\n## ", 1)[0]


def load(path: str) -> dict:
    return json.loads((ROOT / path).read_text())


def row(project: str, what: str) -> str:
    """The table row of this project whose 'what' column starts with these words."""
    rows = [r for r in TABLE.splitlines() if r.startswith(f"| {project} | {what}")]
    assert len(rows) == 1, f"no single Results row '{project} | {what}...'"
    return rows[0]


def cited(line: str) -> set[str]:
    return set(re.findall(r"\]\(([^)]+)\)", line))


def test_every_row_cites_committed_files_that_say_what_wrote_them():
    lines = [r for r in TABLE.splitlines() if r.startswith("| ") and not r.startswith(("| project", "|---"))]
    assert len(lines) >= 6
    for line in lines:
        files = cited(line)
        assert files, f"a Results row cites no file: {line[:80]}"
        for f in files:
            assert (ROOT / f).is_file(), f"{f} is not in the repository"
            if f.endswith(".json") and "results" in f:
                text = (ROOT / f).read_text()
                assert '"command"' in text, f"{f} does not record the command that wrote it"
                assert "/work/" not in text and "/home/" not in text, f"{f} names a folder of one machine"


@pytest.mark.parametrize("name", ["python_stdlib", "shakespeare_char_cpu"])
def test_nanogpt_five_epoch_losses(name):
    res = load(f"nanogpt/results/{name}/results.json")
    line = row("nanogpt", "5 epochs")
    assert f"nanogpt/results/{name}/results.json" in cited(line)
    losses = " → ".join(f"{e['val_loss']:.3f}" for e in res["per_epoch"])
    assert len(res["per_epoch"]) == 5
    assert f"{losses} (unigram {res['unigram_baseline_nats']:.3f})" in line


def test_nanogpt_step_time_ratio():
    res = load("nanogpt/results/step_time/step_time.json")
    assert f"new/old {float(res['ratio_new_over_old']):.3f}" in row("nanogpt", "CPU time of a training step")


def test_build_nanogpt_ladder():
    res = load("build_nanogpt/results/ladder/ladder.json")
    base, top = res["rungs"][0], res["rungs"][-1]
    line = row("build_nanogpt", "speedrun ladder")
    assert f"{len(res['rungs'])} cumulative rungs x {res['settings']['seeds']} seeds" in line
    assert f"{base['final_val_loss_mean']:.4f} ± {base['final_val_loss_std']:.4f} (GPT-2 baseline)" in line
    assert f"{top['final_val_loss_mean']:.4f} ± {top['final_val_loss_std']:.4f} (every rung on)" in line
    assert f"{top['tokens_to_target_mean']:,.0f} ± {top['tokens_to_target_std']:,.0f} tokens" in line
    assert f"({res['tokens_per_run'] / top['tokens_to_target_mean']:.1f}x fewer)" in line
    assert f"{top['cpu_us_per_token'] / base['cpu_us_per_token']:.2f}x the CPU time per token" in line


def test_deep_gradients_quick_start_accuracy():
    res = load("deep_gradients/results/quickstart_digits/results.json")
    assert res["torch_threads"] == 1
    assert f"{100 * res['final_test_acc']:.2f}% test accuracy" in row("deep_gradients", "the quick start")


def test_large_scale_optimization_first_order_bench():
    res = load("large_scale_optimization/results/first_order_bench.json")
    rows = {r["contender"]: r for r in res["rows"]}
    saga, sk_saga, sk_sag = (rows[c]["to_target"]["0.0001"] for c in ("saga", "sklearn_saga", "sklearn_sag"))
    line = row("large_scale_optimization", "MNIST (λ = 1e-4), CPU time")
    assert f"our SAGA {saga['cpu_s']:.2f} s ({saga['passes']:.0f} passes)" in line
    assert f"scikit-learn saga {sk_saga['cpu_s_lower']:.0f}–{sk_saga['cpu_s']:.0f} s" in line
    assert f"sag {sk_sag['cpu_s_lower']:.0f}–{sk_sag['cpu_s']:.0f} s" in line
    line = row("large_scale_optimization", "MNIST, relative gap after 15 passes")
    assert f"SAGA {rows['saga']['gap_at']:.2e}".replace("e-0", "e-") in line
    assert f"scikit-learn saga (15 epochs) {rows['sklearn_saga']['gap_at']:.2e}".replace("e-0", "e-") in line
    assert f"SVRG {rows['svrg+passes=15']['gap_at']:.2e}".replace("e-0", "e-") in line


def test_deep_gradients_ablation_at_depth_56():
    res = load("deep_gradients/results/ablation/ablation.json")
    cfg = res["ablate_config"]
    runs = {r["config"]: r for r in res["runs"] if r["depth"] == 56 and r["lr"] == 0.05}
    line = row("deep_gradients", "BatchNorm x residual ablation at depth 56")
    assert f"{cfg['train_subset']:,} training images, {cfg['max_epochs']} epoch, width {cfg['width']}" in line
    assert cfg["seeds"] == "0" and "one seed" in line
    accs = ", ".join(f"{c} {100 * runs[c]['final_test_acc']:.2f}%" for c in ("bn+res", "bn", "plain"))
    assert f"test accuracy {accs}, res diverged" in line and runs["res"]["diverged"]
