"""build_nanogpt/README.md's measured figures are those of the committed results files they cite, to their printed
precision: a re-run that changes a result, or a README edited by hand, makes this fail. Each file holds the command
that wrote it (as typed, from the repository root), the machine, the date and the thread count."""
import json
import math
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "build_nanogpt" / "README.md").read_text()
TEXT = " ".join(README.split())  # prose wraps anywhere: compare with single spaces
RESULTS = ROOT / "build_nanogpt" / "results"


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def section(title: str) -> str:
    return " ".join(README.split(title, 1)[1].split("\n## ", 1)[0].split())


def test_every_results_file_says_what_wrote_it():
    for name in ("ladder/ladder.json", "bench/bench.json", "cpu_runs/cpu_runs.json"):
        res = load(name)
        assert res["command"].startswith("python build_nanogpt/"), name
        assert "OMP_NUM_THREADS=1" in res["machine"] and re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", res["started"])
        assert "/work/" not in json.dumps(res), name  # paths relative to the repository, not this machine's
        assert f"({name})" in README or f"`results/{name}`" in README, f"README does not cite results/{name}"


def test_the_ladder_table_and_its_headline_are_ladder_json():
    lad = load("ladder/ladder.json")
    rungs = lad["rungs"]
    for r in rungs:
        row = f"| {r['rung']} {r['name']} | {r['final_val_loss_mean']:.4f} ± {r['final_val_loss_std']:.4f} |"
        if r["rung"]:
            row += (f" {r['vs_previous']:+.4f} ± {r['vs_previous_se']:.4f} ({r['verdict']}) |"
                    f" {r['tokens_to_target_mean']:,.0f} ± {r['tokens_to_target_std']:,.0f} |")
        assert row in README, row
        assert README.split(row, 1)[1].split("\n", 1)[0].endswith(f" {r['cpu_us_per_token']:.1f} |"), r["name"]
    base, top = rungs[0], rungs[-1]
    assert f"baseline's mean final val loss, {lad['target_val_loss']:.4f}" in TEXT
    assert f"| {base['tokens_to_target_mean']:,.0f} ({base['seeds_reaching_target']} of 3 seeds;" in README
    tokens = lad["tokens_per_run"]
    headline = section("**The headline.**")
    assert f"{top['final_val_loss_mean']:.4f} ± {top['final_val_loss_std']:.4f} against the baseline's " \
           f"{base['final_val_loss_mean']:.4f} ± {base['final_val_loss_std']:.4f}: " \
           f"{base['final_val_loss_mean'] - top['final_val_loss_mean']:.3f} nats lower, " \
           f"{abs(top['vs_baseline_in_seed_std']):.1f} times" in headline
    assert f"says {tokens / top['tokens_to_target_mean']:.1f}x" in headline
    assert f"costs {top['cpu_us_per_token'] / base['cpu_us_per_token']:.2f}x the CPU time " \
           f"({top['cpu_us_per_token']:,.0f} vs {base['cpu_us_per_token']:,.0f} µs)" in headline
    top_s = top["tokens_to_target_mean"] * top["cpu_us_per_token"] / 1e6
    base_s = tokens * base["cpu_us_per_token"] / 1e6
    assert f"only {base_s / top_s:.1f}x ({top_s:.1f} s against {base_s:.1f} s" in headline
    cpu_minutes = sum(r["cpu_us_per_token"] * tokens * r["seeds_done"] for r in rungs) / 1e6 / 60
    assert f"about {cpu_minutes:.0f} CPU-minutes" in TEXT
    assert f"Measured {lad['started'][11:16]}-{lad['finished'][11:16]} UTC on {lad['started'][:10]}" in TEXT
    assert lad["command"].startswith("python build_nanogpt/ladder.py --preset cpu ")
    assert f" {lad['command']} " in TEXT.replace(" \\ ", " ")  # the README's command is ladder.json's, as typed


def test_the_ladder_rung_by_rung_figures_are_ladder_json():
    rungs = load("ladder/ladder.json")["rungs"]
    text = section("**Rung by rung, here.**")
    for r in rungs[1:]:
        assert f"{r['vs_previous']:+.3f} ± {r['vs_previous_se']:.3f}".lstrip("+") in text, r["name"]
    spread = [x["final_val_loss"] for x in rungs[1]["runs"]]
    assert f"({min(spread):.2f} .. {max(spread):.2f})" in text
    r3, r9 = rungs[3], rungs[9]
    diff = r9["final_val_loss_mean"] - r3["final_val_loss_mean"]
    se = math.sqrt(r3["final_val_loss_std"] ** 2 / 3 + r9["final_val_loss_std"] ** 2 / 3)
    assert f"{r3['final_val_loss_mean']:.4f} -> {r9['final_val_loss_mean']:.4f}, {diff:.3f} with a standard " \
           f"error of {se:.3f} ({abs(diff) / se:.1f} s.e." in text
    assert f"({rungs[4]['cpu_us_per_token']:,.0f} -> {rungs[5]['cpu_us_per_token']:,.0f} µs at rung 5)" in text


def test_the_milestone_table_is_bench_json():
    """The CPU times per step, per token (micro-batch x T tokens a step) and the speed-ups in tokens per CPU second."""
    bench = load("bench/bench.json")
    text = section("### Measured on CPU")
    assert f" {bench['command']} " in text and bench["command"].endswith("--out-dir build_nanogpt/results/bench")
    assert bench["torch_threads"] == 1 and bench["device"] == "cpu" and bench["machine"].split(",")[0] in text
    assert f"({bench['started'][:10]}, {bench['started'][11:16]}-{bench['finished'][11:16]} UTC)" in text
    ran = [m for m in bench["milestones"] if m["applies"]]
    assert len(ran) >= 2
    T = bench["config"]["block_size"]
    per_token = {m["milestone"]: 1000 * m["cpu_ms_per_step"] / (m["micro_batch"] * T) for m in ran}
    prev = None
    for m in bench["milestones"]:
        if not m["applies"]:
            assert f"| {m['milestone']} | n/a ({m['reason']}) |" in README, m["milestone"]
            continue
        us = per_token[m["milestone"]]
        row = (f"| {m['milestone']} | {m['micro_batch']} | {m['cpu_ms_per_step']:.1f} | {us:,.1f} | "
               f"{(prev or us) / us:.2f}x | {per_token[ran[0]['milestone']] / us:.2f}x |")
        assert row in README, row
        prev = us
    said = section("On a CPU the GPU story").split("TF32 and fused AdamW")[0]  # the prose under the table
    quoted = re.findall(r"(\d+\.\d\d)x", said)
    vs_prev = {f"{per_token[a['milestone']] / per_token[b['milestone']]:.2f}" for a, b in zip(ran, ran[1:])}
    assert len(quoted) >= 4 and set(quoted) <= vs_prev, (quoted, vs_prev)
    ratios = [m["ms_per_step"] / m["cpu_ms_per_step"] for m in ran]
    assert f"wall time was {min(ratios):.1f} to {max(ratios):.0f} times the CPU time" in text
    assert f"median of the {bench['iters']} timed steps" in text and f"micro-batch {bench['micro_batch']}" in text
    assert f"{bench['bench_config']['warmup']} warm-up + {bench['iters']} timed steps" in text


def test_the_tiny_run_hellaswag_smoke_and_fineweb_memory_are_cpu_runs_json():
    res = load("cpu_runs/cpu_runs.json")
    assert res["threads"] == 1 and all(s["exit"] == 0 for part in ("tiny", "hellaswag_smoke")
                                       for s in res[part]["steps"])
    tiny, val, hs = res["tiny"], res["tiny"]["val_loss"], res["tiny"]["hellaswag"]
    train = tiny["steps"][1]
    assert train["command"].startswith("python build_nanogpt/train.py --preset tiny")
    assert f"{tiny['paragraphs']:,} paragraphs -> {tiny['tokens']:,} tokens in {tiny['shards']} shards " \
           f"(val = the first {tiny['val_tokens']:,})" in TEXT
    assert f"{tiny['parameters'] / 1e6:.1f}M parameters" in TEXT and f"{tiny['iters']} iters)" in TEXT
    assert f", {tiny['tokens_per_iter']} tokens/iter, {tiny['iters']} iters)" in TEXT
    assert f"took {train['cpu_s']:.0f} s of CPU time ({tiny['train_cpu_s']:.0f} s in the training steps" in TEXT
    assert f"and {train['wall_s']:.0f} s of wall time" in TEXT
    assert f"val loss {val['0']:.2f} (iter 0) -> {val['50']:.2f} (iter 50) -> {val['100']:.2f} (iter 100)" in TEXT
    assert f"HellaSwag acc_norm {hs['0']['acc_norm']:.2f} -> {hs['50']['acc_norm']:.2f} -> " \
           f"{hs['100']['acc_norm']:.2f} on {hs['0']['n']} examples" in TEXT
    smoke = res["hellaswag_smoke"]
    assert f"acc {smoke['acc']:.4f}, acc_norm {smoke['acc_norm']:.4f}" in TEXT and smoke["examples"] == 200
    assert f"{smoke['steps'][1]['cpu_s']:.1f} s of CPU time" in section("Smoke figure")
    assert f"({smoke['steps'][1]['wall_s']:.1f} s wall)" in section("Smoke figure")
    mem = res["fineweb_memory"]
    assert f"a {mem['txt_bytes'] / 1e6:.0f} MB `.txt` (Tiny Shakespeare {mem['copies']} times, " \
           f"{mem['default']['tokens'] / 1e6:.0f}M tokens) peaks at **{mem['default']['max_rss_mb']:.0f} MB** with " \
           f"the default 100M-token shards (most of it the shard buffer) and at " \
           f"{mem['shard_size_1e7']['max_rss_mb']:.0f} MB with `--shard-size 10000000`" in TEXT
    assert mem["default"]["tokens"] == mem["shard_size_1e7"]["tokens"] and all(
        s["exit"] == 0 for s in (mem["default"], mem["shard_size_1e7"]))
    assert f" {res['command']} " in TEXT and f"{res['machine'].split(',')[0]}, no GPU" in TEXT
    assert f"({res['started'][:10]}, {res['started'][11:16]}-{res['finished'][11:16]} UTC)" in TEXT
    assert "cpu_runs/cpu_runs.json" in TEXT and res["command"].startswith("python build_nanogpt/results/cpu_runs/")
