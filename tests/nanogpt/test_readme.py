"""nanogpt's README figures are those of the committed results files they cite, at their printed precision: a
re-run that changes a result, or a figure edited by hand, makes this fail. Every committed results file is a
script's output as written: it records the command as typed, the date and the thread count, and names no
folder of the machine that wrote it."""
import json
import re
import statistics
from pathlib import Path

import pytest
import torch

from model import GPT, GPTConfig

ROOT = Path(__file__).resolve().parents[2]
NANOGPT = ROOT / "nanogpt"
RESULTS = NANOGPT / "results"
README = (NANOGPT / "README.md").read_text()
EPOCH_RUNS = ("python_stdlib", "shakespeare_char_cpu")


def load(rel: str) -> dict:
    return json.loads((RESULTS / rel).read_text())


def flat(text: str) -> str:
    """Markdown prose with its line breaks as spaces, so a phrase may wrap anywhere."""
    return re.sub(r"\s+", " ", text)


def says(phrase: str, text: str = README) -> None:
    assert flat(phrase) in flat(text), f"not in the README: {phrase!r}"


def strings(obj, skip=("samples",)):
    """Every string in a JSON document (keys' values, lists), the generated text samples left out."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if k not in skip:
                yield from strings(v, skip)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings(v, skip)


# ---- the committed files ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(p.relative_to(RESULTS).as_posix() for p in RESULTS.rglob("*.json")))
def test_results_files_record_their_command_and_name_no_folder_of_the_machine(path):
    doc = load(path)
    command = re.match(r"(OMP_NUM_THREADS=(\d+) )?python nanogpt/\S+\.py( |$)", doc["command"])
    assert command, doc["command"]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC$", doc["date"]), doc["date"]
    threads = doc.get("torch_threads", doc.get("threads"))  # step_time.json calls it threads
    assert (threads == int(command[2])) if command[2] else (threads >= 1), (threads, doc["command"])  # as typed
    absolute = [s for s in strings(doc) if re.search(r"(^|[\s='\"])(/|~/|[A-Z]:\\)\w", s)]
    assert not absolute, absolute
    if path.endswith("results.json"):  # train.py's: the folders it wrote and read are the ones typed
        cfg = doc["config"]
        assert f"--out-dir {cfg['out_dir']}" in doc["command"] and not cfg["data_dir"].isupper(), cfg


def test_every_results_file_the_readmes_cite_exists():
    for readme in [NANOGPT / "README.md", *RESULTS.glob("*/README.md")]:
        for link in re.findall(r"\]\(([^)]+\.(?:json|jsonl|png|txt))\)", readme.read_text()):
            assert (readme.parent / link).is_file(), f"{readme.relative_to(ROOT)} cites a missing {link}"


# ---- nanogpt/README.md ----------------------------------------------------------------------------------------
def test_step_time_against_the_old_code():
    st = load("step_time/step_time.json")
    says(f"old **{st['old_ms_median']:.1f} ms**, new **{st['new_ms_median']:.1f} ms** per step, new/old "
         f"**{st['ratio_new_over_old']:.3f}** (median of the rounds' ratios {st['median_of_round_ratios']:.3f})")
    assert st["command"].replace("OMP_NUM_THREADS=1 python ", "") in flat(README).replace("\\ ", "")


def test_prepare_peak_memory():
    runs = {(r["dataset"], r["copies"]): r for r in load("prepare_memory/prepare_memory.json")["runs"]}
    char, bpe = "shakespeare_char", "shakespeare"
    says(f"on Tiny Shakespeare once ({runs[char, 1]['text_mb']:.1f} MB) and 40 times over "
         f"({runs[char, 40]['text_mb']:.1f} MB): **{runs[char, 1]['peak_rss_mb']:.1f} MB and "
         f"{runs[char, 40]['peak_rss_mb']:.1f} MB** as `shakespeare_char`, **{runs[bpe, 1]['peak_rss_mb']:.1f} MB and "
         f"{runs[bpe, 40]['peak_rss_mb']:.1f} MB** as GPT-2 BPE")


def test_train_step_bench_table():
    b = load("bench/train_step.json")
    ours, ref = b["ours"], b["nanogpt_ref"]
    says(f"written by `{b['command']}`")
    assert (b["n_layer"], b["n_embd"], b["block_size"], b["batch_size"], b["vocab_size"], b["dtype"]) == (
        4, 128, 64, 12, 65, "float32")  # nanoGPT's CPU recipe shape, as the table says
    wall = [f"{r['ms_per_iter']:.1f} ms/iter (best round {r['ms_per_iter_min']:.1f}), {r['tokens_per_s']:,.0f} tok/s"
            for r in (ours, ref)]
    says(f"| wall time, median of {b['rounds']} rounds of {b['iters']} steps | {wall[0]} | {wall[1]} | "
         f"{b['speedup_vs_nanogpt_ref']:.2f}x |")
    says(f"| process CPU time per step | {ours['cpu_ms_per_iter']:.1f} ms | {ref['cpu_ms_per_iter']:.1f} ms | "
         f"{b['cpu_time_ratio_nanogpt_ref_over_ours']:.2f}x |")


def test_step_parts():
    p = load("step_parts/step_parts.json")
    says(f"takes {p['adamw_step_ms']['fused']:.2f} ms fused against {p['adamw_step_ms']['per_tensor_loop']:.2f} ms "
         f"for torch's per-tensor loop, {p['adamw_loop_over_fused']:.2f}x")
    says(f"alone it costs {p['gelu_tanh_over_exact']:.2f}x the exact GELU's forward and backward; in the whole step, "
         f"{p['train_step_tanh_over_exact']:.3f}x")
    says(f"the tanh kernel's forward and backward take {p['gelu_tanh_over_exact']:.2f}x the exact one's, a training "
         f"step {p['train_step_tanh_over_exact']:.3f}x")
    says(f"where the fused kernel is {p['adamw_loop_over_fused']:.2f}x faster")
    says(f"`{p['command']}` ({p['rounds']} alternating rounds of {p['iters']} calls, medians)")


def test_generate_bench_table():
    g = load("bench/generate.json")
    kv, full = g["kv_cache"], g["no_cache"]
    assert g["same_tokens"] is True and g["params"] == 124_439_808  # OpenAI GPT-2 small's count (tied embeddings)
    says(f"{g['max_new_tokens']} new tokens greedy, 8-token prompt, {g['torch_threads']} thread |")
    says(f"| KV cache (`use_cache=True`) | {kv['seconds']:.2f} | {kv['tokens_per_s']:.3g} | {kv['cpu_seconds']:.2f} |")
    says(f"as nanoGPT's `generate`) | {full['seconds']:.2f} | {full['tokens_per_s']:.3g} | {full['cpu_seconds']:.2f} |")
    says(f"| **speedup** | **{g['speedup']:.2f}x** | identical tokens: yes | {g['cpu_time_speedup']:.2f}x |")
    says(f"written under load by `{g['command']}`")


def test_recipe_seed_1337():
    r = load("recipe/recipe.json")
    ours, theirs = r["ours"][0], r["nanogpt_loop"][0]
    assert ours["seed"] == theirs["seed"] == 1337 and r["recipe"]["iters"] == 2000
    says(f"written by `{r['command']}`")
    says(f"| 1337 | {ours['val_logged']:.4f} | {ours['val_full']:.4f} | **{theirs['val_estimate']:.4f}** (the README's "
         f"1.88) | {theirs['val_full']:.4f} |")
    says(f"seed 1337 logs val **{ours['val_logged']:.4f}** (exact over the whole val split: **{ours['val_full']:.4f}**)")
    says(f"`step 2000: train loss {theirs['train_estimate']:.4f}, val loss {theirs['val_estimate']:.4f}`")
    says(f"the same model scores **{theirs['val_full']:.4f}** on the whole val split")
    says(f"says {theirs['val_estimate']:.4f} where the exact loss is {theirs['val_full']:.4f}")
    says(f"exact val losses differ by {ours['val_full'] - theirs['val_full']:.4f}")
    table = README.split("| seed | ours: logged val", 1)[1].split("\n\n", 1)[0]
    assert len(table.strip().splitlines()) == 2 + len(r["seeds"])  # header rule + one row per committed seed


def test_fsdp_bytes_per_rank_are_the_parameter_count_times_their_bytes():
    with torch.device("meta"):
        n = sum(p.numel() for p in GPT(GPTConfig()).parameters())  # GPT-2 124M shape, padded vocabulary
    says(f"GPT-2 124M shape ({n:,} parameters with the padded vocabulary")
    for ranks, label in ((1, "1 (one process, or `--fsdp` on 1 rank)"), (2, "2, `--fsdp`")):
        mb = [4 * n / ranks / 1e6, 4 * n / ranks / 1e6, 8 * n / ranks / 1e6, 16 * n / ranks / 1e6]
        says(f"| {label} | " + " | ".join(f"{x:,.1f} MB" for x in mb))


# ---- the 5-epoch runs: nanogpt/results/<run>/README.md and the table in nanogpt/README.md -----------------------
def wall(seconds: float) -> str:
    return "0" if seconds == 0 else f"{int(seconds) // 60} min {int(seconds) % 60} s"


def epoch_rows(run: str) -> list[str]:
    """The rows the run's README prints, rebuilt from its results.json and log.jsonl."""
    res = load(f"{run}/results.json")
    first = json.loads((RESULTS / run / "log.jsonl").read_text().splitlines()[0])  # the evaluation at step 0
    per_token = res["throughput"]["tokens_per_step"]
    rows = [f"| 0 (init) | 0 | 0 | {first['train_loss']:.4f} | {first['val_loss']:.4f} | {first['val_ppl']:.2f} | 0 |"]
    rows += [f"| {e['epochs_done']} | {e['iter']:,} | {e['iter'] * per_token:,} | {e['train_loss']:.4f} | "
             f"{e['val_loss']:.4f} | {e['val_ppl']:.2f} | {wall(e['elapsed_s'])} |" for e in res["per_epoch"]]
    return rows


@pytest.mark.parametrize("run", EPOCH_RUNS)
def test_a_run_folder_prints_its_own_files(run):
    res, text = load(f"{run}/results.json"), (RESULTS / run / "README.md").read_text()
    assert f"OMP_NUM_THREADS={res['torch_threads']} {res['command']}\n" in text  # the command, as typed
    for row in epoch_rows(run):
        assert row in text, row
    says(f"exact val loss over all {res['final']['val_tokens_full']:,} val tokens is "
         f"**{res['final']['val_loss_full']:.4f}**", text)
    says(f"unigram baseline (each token by its frequency) is **{res['unigram_baseline_nats']:.3f}**", text)
    says(f"{res['n_params']:,} parameters", text)
    assert res["date"][:10] in text and res["device"]["torch"] in text
    for epoch in (1, 5):  # the samples quoted are the committed output of the sample.py command shown
        sample = (RESULTS / run / f"sample_epoch{epoch}.txt").read_text()
        assert f"> nanogpt/results/{run}/sample_epoch{epoch}.txt\n" in text
        quoted = text.split(f"## Sample after epoch {epoch}", 1)[1].split("```text\n", 1)[1].split("\n```", 1)[0]
        assert quoted.strip() and quoted in sample


def test_the_epoch_table_of_the_readme_is_the_runs():
    section = README.split("### Results by epoch", 1)[1].split("\n## ", 1)[0]
    for run in EPOCH_RUNS:
        res = load(f"{run}/results.json")
        cells = [f"{e['val_loss']:.3f}" for e in res["per_epoch"]]
        cells += [f"{res['final']['val_loss_full']:.3f}", f"{res['unigram_baseline_nats']:.3f}"]
        row = next(line for line in section.splitlines() if line.startswith(f"| [`{run}`]"))
        assert row.endswith(" | ".join(cells) + " |"), (row, cells)
        tokens = res["per_epoch"][0]["iter"] * res["throughput"]["tokens_per_step"]  # an epoch's training tokens
        assert f"{res['n_params'] / 1e6:.2f}M params" in row and f"| {tokens / 1e6:.2f}M |" in row


def test_five_epochs_against_the_2000_step_recipe():
    five = load("shakespeare_char_cpu/results.json")["final"]["val_loss_full"]
    recipe = load("recipe/recipe.json")["ours"][0]["val_full"]
    says(f"recipe (exact val loss {five:.3f}) beat its 2000-step run ({recipe:.3f} exact, "
         f"[`results/recipe/recipe.json`](results/recipe/recipe.json)) by {recipe - five:.2f} nats.")


def test_cpu_fine_tune_preset_figures():
    """The CPU fine-tune's sizes as the README states them are the preset's (not measured: counted)."""
    from config import PRESETS

    cpu, gpu = PRESETS["finetune_shakespeare_cpu"], PRESETS["finetune_shakespeare"]
    per_step = cpu["batch_size"] * cpu["block_size"]
    says(f"block {cpu['block_size']}, batch {cpu['batch_size']} ({per_step} tokens/step), {cpu['max_iters']} steps")
    says(f"`--preset finetune_shakespeare_cpu`: {cpu['max_iters']} steps of {per_step} tokens, "
         f"{per_step * cpu['max_iters']:,} training tokens against `finetune_shakespeare`'s "
         f"{gpu['batch_tokens'] * gpu['max_iters']:,}")
