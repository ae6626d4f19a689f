"""build_nanogpt/bench.py on CPU: the milestones that apply run, the CUDA-only ones are marked n/a with the
reason, speed-ups are consistent, bench.json/bench.png are written."""
import json
import re
import shlex
import time
import types

import pytest
import torch

import bench


def test_cpu_bench_marks_cuda_only_milestones(tmp_path, capsys, monkeypatch):
    out = tmp_path / "bench"
    clip, real_clip = [], torch.nn.utils.clip_grad_norm_  # every timed step is a full training step, clip included

    def counting_clip(*args, **kwargs):
        clip.append(1)
        return real_clip(*args, **kwargs)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", counting_clip)
    bench.main(["--device", "cpu", "--size", "tiny", "--iters", "1", "--warmup", "1", "--skip", "compile",
                "--out-dir", str(out)])
    result = json.loads((out / "bench.json").read_text())
    rows = {r["milestone"]: r for r in result["milestones"]}
    assert [r["milestone"] for r in result["milestones"]] == [m[0] for m in bench.MILESTONES]
    assert not rows["TF32"]["applies"] and "CUDA" in rows["TF32"]["reason"]
    assert not rows["fused AdamW"]["applies"] and "CUDA" in rows["fused AdamW"]["reason"]
    assert not rows["torch.compile"]["applies"] and "--skip" in rows["torch.compile"]["reason"]
    ran = [r for r in result["milestones"] if r["applies"]]
    assert [r["milestone"] for r in ran] == ["float32", "bf16 autocast", "flash attention", "vocab 50,304", "micro-batch x2"]
    assert len(clip) == len(ran) * 2  # (--warmup 1 + --steps 1) per milestone
    assert [r["precision"] for r in ran] == ["fp32"] + ["bf16"] * 4
    assert rows["vocab 50,304"]["settings"] == dict(tf32=False, bf16=True, compile=False, flash=True, vocab=50304,
                                                    fused=False, batch_mult=1)  # cumulative, n/a ones left out
    for prev, r in zip(ran, ran[1:]):
        assert r["speedup_prev"] == pytest.approx(r["tok_per_s"] / prev["tok_per_s"])
        assert r["speedup_fp32"] == pytest.approx(r["tok_per_s"] / ran[0]["tok_per_s"])
        assert r["mfu"] is None  # no peak FLOP/s for a CPU
    assert (out / "bench.png").stat().st_size > 5_000
    assert "vs fp32" in capsys.readouterr().out


def test_the_command_line_exits_0_and_bench_json_says_what_wrote_it(run_script, tmp_path):
    """bench.json holds the command as typed, the machine, the dates and the thread count (issue 26), and the CPU
    time of each step beside its wall time."""
    args = ["--device", "cpu", "--size", "tiny", "--iters", "2", "--warmup", "0", "--skip",
            "bf16,compile,flash,vocab,batch_mult", "--out-dir", str(tmp_path)]
    r = run_script("build_nanogpt/bench.py", *args, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0 and r.stderr == "", r.stderr[-500:]  # the results are not an exit status
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["command"] == "python build_nanogpt/bench.py " + shlex.join(args)
    assert "OMP_NUM_THREADS=1" in result["machine"] and result["torch_threads"] == 1
    for key in ("started", "finished"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", result[key]), result[key]
    first = result["milestones"][0]
    assert first["applies"] and 0 < first["cpu_ms_per_step"] < 60_000 and first["ms_per_step"] > 0


def test_skip_by_setting_name(monkeypatch):
    """`--skip` takes the setting a milestone changes ("vocab 50,304" holds the list separator)."""
    def seconds(settings):  # float32 0.5 s a step, bf16 half that, then twice the micro-batch in half again
        return 0.5 / settings["batch_mult"] / (2 if settings["bf16"] else 1)
    monkeypatch.setattr(bench, "time_milestone", lambda settings, *a: (seconds(settings), 0.1, 1000))
    # an H100's name: MFU against its peak for the milestone's precision (the CUDA-only rows stay n/a: device cpu)
    monkeypatch.setattr(bench, "device_name", lambda device: "NVIDIA H100 80GB HBM3")
    result = bench.run_bench(bench.BenchConfig(device="cpu", size="tiny", skip="compile, vocab,Flash Attention"))
    skipped = [r["milestone"] for r in result["milestones"] if r.get("reason") == "skipped with --skip"]
    assert skipped == ["torch.compile", "flash attention", "vocab 50,304"]
    assert result["milestones"][-1]["settings"]["vocab"] == 50257
    ran = [r for r in result["milestones"] if r["applies"]]
    assert [(r["milestone"], r["micro_batch"]) for r in ran] == [("float32", 2), ("bf16 autocast", 2), ("micro-batch x2", 4)]
    tiny = bench.SIZES["tiny"]
    for r in ran:  # tokens/s from the micro-batch this milestone really ran
        assert r["tok_per_s"] == pytest.approx(r["micro_batch"] * tiny["block_size"] / seconds(r["settings"]))
        fpt = bench.flops_per_token(bench.GPTConfig(vocab_size=50257, **tiny), 1000)
        peak = {"fp32": 67e12, "bf16": 989.5e12}[r["precision"]]
        assert r["mfu"] == pytest.approx(fpt * r["tok_per_s"] / peak)
    assert [r["precision"] for r in ran] == ["fp32", "bf16", "bf16"]
    # 128, 256 and 1,024 tokens/s by hand: 2x then 4x over the previous row, 2x then 8x over float32
    assert [r["tok_per_s"] for r in ran] == pytest.approx([64 / 0.5, 64 / 0.25, 128 / 0.125])
    assert [r["speedup_prev"] for r in ran] == pytest.approx([1.0, 2.0, 4.0])
    assert [r["speedup_fp32"] for r in ran] == pytest.approx([1.0, 2.0, 8.0])
    with pytest.raises(bench.UserError, match="'warp'.*vocab"):
        bench.run_bench(bench.BenchConfig(device="cpu", size="tiny", skip="warp"))
    with pytest.raises(bench.UserError, match="float32: it is the baseline"):  # "vs fp32" needs it
        bench.run_bench(bench.BenchConfig(device="cpu", size="tiny", skip="float32"))
    with pytest.raises(bench.UserError, match="--batch-size 0: use -1"):  # not silently the default
        bench.run_bench(bench.BenchConfig(device="cpu", size="tiny", batch_size=0))
    with pytest.raises(bench.UserError, match="--batch-size 100000: use -1 .* 1 .. 4096"):
        bench.run_bench(bench.BenchConfig(device="cpu", size="tiny", batch_size=100_000))


def test_a_busy_out_dir_is_refused_before_timing(tmp_path, monkeypatch):
    import subprocess

    monkeypatch.setattr(bench, "time_milestone", lambda *a: pytest.fail("timed on a busy out dir"))
    other = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / ".lock").write_text(str(other.pid))
        with pytest.raises(bench.UserError, match=f"in use by another run \\(pid {other.pid}\\)"):
            bench.main(["--device", "cpu", "--size", "tiny", "--out-dir", str(tmp_path)])
    finally:
        other.kill()
        other.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


def test_cpu_time_per_step_is_the_median_of_the_timed_steps(monkeypatch):
    """cpu_ms_per_step is one step's CPU time, the median over the timed steps (here 1, 7 and 2 s: 2 s), read
    around each timed step only (the warm-up steps are not counted)."""
    clock = iter([0.0, 1.0, 10.0, 17.0, 20.0, 22.0])
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=time.perf_counter,
                                                             process_time=lambda: next(clock)))
    settings = dict(tf32=False, bf16=False, compile=False, flash=False, vocab=50257, fused=False, batch_mult=1)
    dt, cpu, n_params = bench.time_milestone(settings, bench.SIZES["tiny"], 2, "cpu", iters=3, warmup=1)
    assert cpu == 2.0 and dt > 0 and n_params == sum(p.numel() for p in bench.GPT(
        bench.GPTConfig(vocab_size=50257, **bench.SIZES["tiny"])).parameters())


def test_bench_json_names_its_folders_from_the_repository_root(tmp_path, monkeypatch):
    """bench_config records --out-dir from the repository's root (here a stand-in root), not as this machine's
    absolute path: the default out dir is absolute, beside the script."""
    import hardware

    monkeypatch.setattr(hardware, "REPO", tmp_path)
    monkeypatch.setattr(bench, "run_bench", lambda cfg: {"milestones": []})
    monkeypatch.setattr(bench, "table", lambda result: "")
    monkeypatch.setattr(bench, "plot", lambda result, path: None)
    bench.main(["--device", "cpu", "--size", "tiny", "--out-dir", str(tmp_path / "out" / "bench")])
    assert json.loads((tmp_path / "out" / "bench" / "bench.json").read_text())["bench_config"]["out_dir"] == "out/bench"
