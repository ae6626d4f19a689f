"""The committed 5-epoch runs (nanogpt/results/<run>/): each folder's README table, its quoted samples and the
row of nanogpt/README.md's table are the committed files' figures at their printed precision, and the files are
train.py's and sample.py's output for the command the README gives."""
import json
import re
import shlex
from pathlib import Path

import pytest

NANOGPT = Path(__file__).resolve().parents[2] / "nanogpt"
RUNS = ("shakespeare_char_cpu",)


def minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s"


@pytest.fixture(params=RUNS)
def run(request):
    folder = NANOGPT / "results" / request.param
    res = json.loads((folder / "results.json").read_text())
    return request.param, folder, res, (folder / "README.md").read_text()


def test_the_readme_gives_the_command_the_results_record(run):
    name, _, res, readme = run
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    train = next(line for line in block.splitlines() if "nanogpt/train.py" in line)
    typed = shlex.split(train)
    assert typed[0] == f"OMP_NUM_THREADS={res['torch_threads']}" and shlex.join(typed[1:]) == res["command"]
    assert res["config"]["max_epochs"] == 5 and f"--out-dir {res['config']['out_dir']}" in res["command"]


def test_the_epoch_table_is_the_results_and_the_log(run):
    _, folder, res, readme = run
    init = json.loads((folder / "log.jsonl").read_text().splitlines()[0])
    assert init["iter"] == 0
    tokens = res["throughput"]["tokens_per_step"]
    rows = [f"| 0 (init) | 0 | 0 | {init['train_loss']:.4f} | {init['val_loss']:.4f} | {init['val_ppl']:.1f} | 0 |"]
    rows += [f"| {e['epochs_done']} | {e['iter']:,} | {e['iter'] * tokens:,} | {e['train_loss']:.4f} | "
             f"{e['val_loss']:.4f} | {e['val_ppl']:.2f} | {minutes(e['elapsed_s'])} |" for e in res["per_epoch"]]
    table = [line for line in readme.splitlines() if re.match(r"\| \d", line)]
    assert table == rows
    assert f"is **{res['final']['val_loss_full']:.4f}**" in readme
    assert f"**{res['unigram_baseline_nats']:.3f}**" in readme


def test_the_quoted_samples_are_sample_py_output(run):
    _, folder, _, readme = run
    quoted = re.findall(r"```text\n(.*?)```", readme, re.S)
    files = [folder / f"sample_epoch{e}.txt" for e in (1, 5)]
    assert len(quoted) == 2
    for text, file in zip(quoted, files):
        out = file.read_text()
        assert re.search(r"^\d+ tokens in [\d.]+ s: ", out, re.M), f"{file.name} is not sample.py's output"
        assert out.split("\n---------------\n", 1)[0] + "\n" == text


def test_the_nanogpt_readme_row_is_the_results(run):
    name, _, res, _ = run
    row = next(line for line in (NANOGPT / "README.md").read_text().splitlines()
               if line.startswith(f"| [`{name}`](results/{name}/README.md)"))
    losses = " | ".join(f"{e['val_loss']:.3f}" for e in res["per_epoch"])
    assert f"| {losses} | {res['final']['val_loss_full']:.3f} | {res['unigram_baseline_nats']:.3f} |" in row
