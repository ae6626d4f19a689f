"""Tests of the tests: each mutant below is a deliberate bug, the shape of a real one, and names the test that
must catch it. This script applies each mutant to a scratch copy of its project, runs that test there (and,
first, on the unchanged copy: a test that fails anyway catches nothing), and writes what happened to
tests/mutants.json with the command, machine and date.

    python tests/mutants.py                     # every mutant (a few minutes)
    python tests/mutants.py --only ng-ddp-loss  # one
    python tests/mutants.py --list

A mutant is (name, project file, the exact text it replaces, its replacement, what the bug is, the test that
must fail). The text must occur exactly once in the file: a mutant that no longer applies is reported, not
skipped, so the list is kept in step with the code.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

T = "tests/"
MUTANTS = [
    # (name, file, old, new, bug, test that must fail)
    # ---- the five deliberate bugs of issue 26 ----
    ("ng-ddp-step-loss-summed", "nanogpt/train.py", "        stats[0] /= run.world_size\n", "",
     "DDP's per-step logged loss summed over ranks instead of averaged", T + "nanogpt/test_train_ddp.py -k two_processes_match_one"),
    ("ng-export-eps-fixed", "nanogpt/export.py", '"layer_norm_epsilon": model.layer_norm_eps',
     '"layer_norm_epsilon": 1e-5', "export writes layer_norm_epsilon 1e-5 whatever the model's",
     T + "nanogpt/test_export.py -k non_default_layer_norm_epsilon"),
    ("ng-cosine-to-zero", "nanogpt/train.py", "min_lr = cfg.learning_rate * cfg.min_lr_ratio", "min_lr = 0.0",
     "the cosine schedule decays to 0 instead of min_lr_ratio (10%) of the peak", T + "nanogpt/test_train.py -k lr_schedule"),
    ("dg-signal-save-unchecked", "deep_gradients/train.py",
     "    if not math.isfinite(p.loss_sum) or not checkpoint.finite(t.raw_model):\n        raise Diverged(",
     "    if False:\n        raise Diverged(", "a checkpoint saved (on a signal) without the finite-weights check",
     T + "deep_gradients/test_train.py -k finite"),
    ("lso-svrg-average-t+1", "large_scale_optimization/solvers.py", "W_avg / t)", "W_avg / (t + 1))",
     "SVRG's average snapshot divides by t + 1", T + "large_scale_optimization/test_solvers.py -k average"),
    # ---- the loudest claims of build_nanogpt's speedrun ladder (issue 27) ----
    ("bn-muon-coefficients", "build_nanogpt/muon.py", "NS_COEFFS = (3.4445, -4.7750, 2.0315)",
     "NS_COEFFS = (3.4445, -4.7750, 2.3315)", "a wrong Newton-Schulz coefficient (singular values leave the band)",
     T + "build_nanogpt/test_muon.py"),
    ("bn-rotary-sign", "build_nanogpt/modern.py", "return torch.cat((x1 * cos + x2 * sin, -x1 * sin + x2 * cos), dim=-1)",
     "return torch.cat((x1 * cos + x2 * sin, x1 * sin + x2 * cos), dim=-1)",
     "rotary's second half with the wrong sign (no longer a rotation)",
     T + "build_nanogpt/test_modern.py -k rotary"),
    ("bn-window-off-by-one", "build_nanogpt/modern.py", "return (j <= i) & (i - j < window)",
     "return (j <= i) & (i - j <= window)", "the sliding window lets a query see one key too far back",
     T + "build_nanogpt/test_modern.py -k window"),
    ("bn-softcap-clamp", "build_nanogpt/modern.py", "logits = c.softcap * torch.tanh(logits / c.softcap)",
     "logits = logits.clamp(-2 * c.softcap, 2 * c.softcap)", "the logit soft-cap replaced by a looser clamp",
     T + "build_nanogpt/test_modern.py -k softcap"),
    # ---- what the READMEs claim most loudly ----
    ("ng-resume-forgets-position", "nanogpt/checkpoint.py", 'ckpt["epoch"], ckpt["epoch_step"], list(', 'ckpt["epoch"], 0, list(',
     "a resumed run restarts its epoch's data order from the first step", T + "nanogpt/test_train_resume.py -k bitwise"),
    ("ng-accum-not-averaged", "nanogpt/train.py", "loss = loss / accum  #", "loss = loss  #",
     "gradient accumulation sums the micro-steps' gradients instead of averaging them",
     T + "nanogpt/test_train.py -k accumulate"),
    ("dg-mfu-3x-again", "deep_gradients/train.py", "t.flops_per_image / peak", "3 * t.flops_per_image / peak",
     "MFU counts the backward pass twice (the bug of issue 25)", T + "deep_gradients/test_train.py -k mfu"),
    ("lso-saga-table-mean-stale", "large_scale_optimization/solvers.py", "    G += delta_g / A.shape[0]\n", "",
     "SAGA's stored-gradient mean not updated with the table", T + "large_scale_optimization/test_solvers.py -k saga"),
    ("bn-muon-no-nesterov", "build_nanogpt/muon.py", 'update = g.add(buf, alpha=mu) if group["nesterov"] else buf',
     "update = buf", "Muon's Nesterov momentum dropped", T + "build_nanogpt/test_muon.py -k nesterov"),
    # ---- the shared helpers (issue 24) ----
    ("common-lock-not-exclusive", "nanogpt/files.py", "            os.link(tmp, self.path)\n            return True",
     "            if self.path.exists():\n                raise FileExistsError\n            os.replace(tmp, self.path)\n"
     "            return True", "the lock created by check-then-rename instead of an exclusive link",
     T + "test_common.py -k same_instant"),
    ("common-range-hi-ignored", "nanogpt/cli.py", "(hi is not None and value > hi)", "False",
     "a knob's upper bound not checked", T + "test_common.py -k range"),
    # ---- nanogpt README claims (issue 26, second pass) ----
    ("ng-weight-decay-on-biases", "nanogpt/model.py", '{"params": no_decay, "weight_decay": 0.0}',
     '{"params": no_decay, "weight_decay": weight_decay}',
     "weight decay on biases and LayerNorm gains too (the README: dim >= 2 only)",
     T + "nanogpt/test_model.py -k configure_optimizers"),
    ("ng-adamw-unfused-on-cpu", "nanogpt/model.py", 'device_type in ("cuda", "cpu")', 'device_type == "cuda"',
     "AdamW not fused on CPU (the README: fused on CUDA and on CPU)", T + "nanogpt/test_model.py -k configure_optimizers"),
    ("ng-top-p-drops-the-top-token", "nanogpt/model.py", "before = probs.cumsum(dim=-1) - probs",
     "before = probs.cumsum(dim=-1)", "top-p counts a token's own probability before keeping it (the top token can go)",
     T + "nanogpt/test_model.py -k filter_logits"),
    ("ng-kv-cache-position-off-by-one", "nanogpt/model.py", "x = self._trunk(out[:, T - 1 : T], cache, T - 1)",
     "x = self._trunk(out[:, T - 1 : T], cache, T - 2)", "a decoded token written one cache position early",
     T + "nanogpt/test_model.py -k greedy_same_with_and_without_cache"),
    ("ng-no-epoch-grid-shift", "nanogpt/train.py", "shift = data.epoch_shift(cfg.seed, state.epoch, cfg.block_size)",
     "shift = 0", "the window grid never shifts between epochs", T + "nanogpt/test_train.py -k epoch_order"),
    ("ng-eval-windows-not-fixed", "nanogpt/data.py", "default_rng([seed, 7919, tag])", "default_rng()",
     "the logged losses are measured on new random windows at each evaluation, not on fixed ones",
     T + "nanogpt/test_train_resume.py -k bitwise"),
    ("ng-results-json-absolute-paths", "nanogpt/report.py", "return str(Path(value).resolve().relative_to(REPO))",
     "return value", "results.json names this machine's folders (the hand edits of issue 26)",
     T + "nanogpt/test_train.py -k names_no_folder"),
    ("ng-bench-file-without-threads", "nanogpt/bench.py", '"OMP_NUM_THREADS" in os.environ else []',
     '"OMP_NUM_THREADS" in {} else []', "bench.py's results file drops the OMP_NUM_THREADS the command was typed with",
     T + "nanogpt/test_bench.py -k speed_bench_runs"),
    ("ng-typed-shape-yields-to-weights", "nanogpt/config.py", "        if k in given and getattr(cfg, k) != have[k]:",
     "        if False:", "a typed --n-layer that contradicts the --init-from weights is silently replaced (issue 29)",
     T + "nanogpt/test_train_finetune.py -k typed_contradiction"),
    ("ng-stop-hint-without-out-dir", "nanogpt/train.py", 'return f"{launch} --resume --out-dir {out_dir}"',
     'return f"{launch} --resume"', "the command printed at a stop resumes the default folder, not this run's",
     T + "nanogpt/test_train_signals.py -k printed_hint"),
    ("ng-stop-keeps-stale-results", "nanogpt/train.py", "            finish(job, state, outputs, stopped_by)\n",
     "            if not stopped_by:\n                finish(job, state, outputs)\n",
     "a stop leaves results.json and loss.png of an earlier run beside the newer checkpoint (issue 29)",
     T + "nanogpt/test_train_signals.py -k printed_hint"),
    ("ng-killed-export-not-put-back", "nanogpt/export.py", 'if stem == f"{out_dir.name}.old" and not out_dir.exists():',
     "if False:", "the user's folder moved aside by a killed export --force is deleted, not put back (issue 28)",
     T + "nanogpt/test_export.py -k killed_export"),
    ("ng-every-rank-prepares", "nanogpt/data.py", "    if local_rank == 0:\n        return prepare_if_missing(",
     "    if True:\n        return prepare_if_missing(", "every rank of a node prepares a missing dataset at once (issue 25)",
     T + "nanogpt/test_data.py -k wait_for_the_prepared_dataset"),
    ("ng-eval-interval-0-every-step", "nanogpt/train.py", "(cfg.eval_interval > 0 and state.iter_num % cfg.eval_interval == 0)",
     "state.iter_num % max(cfg.eval_interval, 1) == 0", "--eval-interval 0 evaluates after every step, not only at "
     "epoch ends and the end (issue 29)", T + "nanogpt/test_train.py -k eval_interval_0"),
    ("ng-export-not-durable", "nanogpt/export.py", "        for path in (*tmp.iterdir(), tmp):\n            fsync_path(path)\n",
     "", "an export renamed into place before its files reach the disk (a power cut can leave a partial OUT_DIR)",
     T + "nanogpt/test_export.py -k on_the_disk"),
    # ---- build_nanogpt README claims (issue 26, second pass) ----
    ("bn-loader-tail-dropped", "build_nanogpt/loader.py",
     "            self.carry = self.buffer[self.pos:]  # too short", "            self.carry = self.buffer[:0]  # too short",
     "a shard's tail too short for a batch is dropped, not carried into the next shard (tokens of an epoch lost)",
     T + "build_nanogpt/test_loader.py -k every_token_once"),
    ("bn-resume-loader-from-shard-start", "build_nanogpt/loader.py", '        self.pos = int(state["pos"])',
     "        self.pos = 0", "a resumed run reads its shard again from the start (not bitwise the uninterrupted run)",
     T + "build_nanogpt/test_train.py -k exact_resume_is_bitwise"),
    ("bn-accum-summed", "build_nanogpt/train.py", "            loss = loss / len(batches)\n", "",
     "gradient accumulation sums the micro-batches' gradients instead of averaging them (4 x 2 != 1 x 8)",
     T + "build_nanogpt/test_train.py -k gradient_accumulation"),
    ("bn-padded-ids-predicted", "build_nanogpt/model.py",
     '            logits[..., self.config.n_real_tokens:] = float("-inf")', "            pass",
     "the 47 padded ids of a pretrained table get probability (the first val loss is no longer GPT-2's)",
     T + "build_nanogpt/test_pretrained.py -k padded_ids"),
    ("bn-acc-norm-is-sum", "build_nanogpt/hellaswag.py", "correct_norm += int((mean.argmin(1) == labels).sum())",
     "correct_norm += int((total.argmin(1) == labels).sum())", "HellaSwag acc_norm picks the lowest sum, not the lowest mean",
     T + "build_nanogpt/test_hellaswag.py -k match_transformers"),
    ("bn-no-eot-before-documents", "build_nanogpt/fineweb.py", "    head = [EOT] if first else []", "    head = []",
     "documents are not preceded by <|endoftext|> in the shards", T + "build_nanogpt/test_fineweb.py -k eot_first"),
    ("bn-txt-cut-anywhere", "build_nanogpt/fineweb.py",
     "        if not text[i - 1].isspace() and not text[i + 1].isspace():", "        if True:",
     "a large .txt cut at any newline (its pieces' tokens differ from the whole text's)",
     T + "build_nanogpt/test_fineweb.py -k in_pieces"),
    ("bn-any-finite-checkpoint-kept", "build_nanogpt/train.py", "    if vl > limit:", "    if False:",
     "a run that blows up but stays finite replaces the last good checkpoint",
     T + "build_nanogpt/test_train_faults.py -k blows_up_but_stays_finite"),
    ("bn-stop-one-step-late", "build_nanogpt/train.py", "train_step(run, it, lambda: signals.name is not None)",
     "train_step(run, it, (lambda now: lambda: now)(signals.name is not None))",
     "a signal that comes during a step is acted on after the next one (the flag read before the step)",
     T + "build_nanogpt/test_train_signals.py -k slow_step"),
    ("bn-weight-decay-on-biases", "build_nanogpt/model.py",
     '{"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}',
     '{"params": [p for p in params if p.dim() < 2], "weight_decay": weight_decay}',
     "weight decay on biases and LayerNorm gains too (not only the >=2-D tensors)",
     T + "build_nanogpt/test_model.py -k weight_decay"),
    ("bn-cosine-to-zero", "build_nanogpt/train.py", "    low = top * cfg.min_lr_ratio\n", "    low = 0.0\n",
     "the cosine schedule decays to 0 instead of 10% of the peak", T + "build_nanogpt/test_train.py -k lr_schedule"),
    ("bn-eval-interval-0-every-iter", "build_nanogpt/train.py",
     "if (cfg.eval_interval > 0 and it % cfg.eval_interval == 0) or it == cfg.max_iters:",
     "if it % max(cfg.eval_interval, 1) == 0 or it == cfg.max_iters:",
     "--eval-interval 0 evaluates every iter instead of only at the end",
     T + "build_nanogpt/test_train.py -k eval_interval_0"),
    ("bn-val-set-shuffled", "build_nanogpt/train.py",
     'val_loader = ShardLoader(cfg.data_dir, "val", cfg.batch_size, cfg.block_size, rank, world, shuffle=False)',
     'val_loader = ShardLoader(cfg.data_dir, "val", cfg.batch_size, cfg.block_size, rank, world, shuffle=True)',
     "the val loss is measured on a shuffled val set instead of the first --eval-iters batches",
     T + "build_nanogpt/test_train.py -k first_batches_of_the_val_shard"),
    ("bn-hf-conv1d-not-transposed", "build_nanogpt/model.py", "                    w = w.t()", "                    w = w",
     "Hugging Face Conv1D weights loaded without the transpose", T + "build_nanogpt/test_model.py -k hf_weights"),
    ("bn-bench-speedup-inverted", "build_nanogpt/bench.py", "speedup_fp32=tok_s / base", "speedup_fp32=base / tok_s",
     "bench.py's speed-up over float32 inverted", T + "build_nanogpt/test_bench.py -k skip_by_setting"),
    ("bn-resume-changes-the-model", "build_nanogpt/train.py", "        if name not in MAY_CHANGE_ON_RESUME:", "        if False:",
     "a flag typed with --resume that may not change (the model's shape) is taken instead of refused",
     T + "build_nanogpt/test_train_faults.py -k resume_takes_its_settings"),
    ("bn-char-init-accepted", "build_nanogpt/pretrained.py", "    if real < GPT2_VOCAB:  # e.g. a character-level",
     "    if False:  # e.g. a character-level", "a character-level --init-from is accepted, to end later as 'val loss is "
     "inf' (issue 28)", T + "build_nanogpt/test_train_faults.py -k issue_28_inputs"),
    ("bn-preset-shape-as-typed", "build_nanogpt/pretrained.py", "        if name in typed and given != have",
     "        if given != have", "a preset's model shape that differs from the --init-from weights is refused as if "
     "typed (issue 28)", T + "build_nanogpt/test_pretrained.py -k preset_shape_yields"),
    ("bn-eval-iters-uncapped", "build_nanogpt/train.py", "        cfg = replace(cfg, eval_iters=distinct)",
     "        cfg = replace(cfg, eval_iters=min(cfg.eval_iters, 10 * distinct))",
     "--eval-iters beyond the val batches is not capped to them (repeats them; 1e12 never ends, issue 28; here "
     "bounded to 10x so that the test ends)",
     T + "build_nanogpt/test_train_faults.py -k eval_iters_beyond"),
    ("bn-tokens-files-refused", "build_nanogpt/fineweb.py", 'TEXT_SUFFIXES = (".txt", ".tokens", ".raw", ".md", ".text")',
     'TEXT_SUFFIXES = (".txt",)', "fineweb.py refuses WikiText's .tokens files that nanogpt reads (issue 29)",
     T + "build_nanogpt/test_fineweb.py -k pool_and_mixed"),
    ("bn-settings-name-the-hub", "build_nanogpt/fineweb.py", "    if cfg.source:  # the hub's dataset is not",
     "    if not cfg.source:  # the hub's dataset is not", "fineweb's settings line names the hub dataset for a local "
     "--source (issue 29)", T + "build_nanogpt/test_fineweb.py -k pool_and_mixed"),
    ("bn-run-folder-refused", "build_nanogpt/pretrained.py", '            runs = [os.path.join(spec, n) for n in ("ckpt.pt", ',
     '            runs = [] and [os.path.join(spec, n) for n in ("ckpt.pt", ', "hellaswag.py --model RUN_FOLDER and "
     "--init-from RUN_FOLDER refused (issue 29)", T + "build_nanogpt/test_train.py -k exact_resume_is_bitwise"),
    ("bn-outputs-relative-to-cwd", "build_nanogpt/train.py", "HERE = os.path.dirname(os.path.abspath(__file__))  # default",
     'HERE = "build_nanogpt"  # default', "train.py's default folders are relative to the current folder (issue 29)",
     T + "build_nanogpt/test_train.py -k default_folders"),
    ("bn-replica-diff-in-one-process", "build_nanogpt/evaluation.py", "    if run.world > 1:  # only where there are replicas",
     '    record["replica_max_diff"] = 0.0\n    if run.world > 1:  # only where there are replicas',
     "a one-process run logs a replica difference of 0 (issue 29)", T + "build_nanogpt/test_train.py -k exact_resume_is_bitwise"),
    ("bn-readme-figure-edited", "build_nanogpt/README.md", "| bf16 autocast | 4 | 483.1 |", "| bf16 autocast | 4 | 483.2 |",
     "a figure of the README's CPU milestone table edited by hand (not bench.json's)",
     T + "build_nanogpt/test_readme.py -k milestone_table"),
    ("bn-bench-cpu-time-of-all-steps", "build_nanogpt/bench.py", "statistics.median(cpu), model.num_params()",
     "sum(cpu), model.num_params()", "bench.json's CPU time per step is the sum over the timed steps, not a step's",
     T + "build_nanogpt/test_bench.py -k median_of_the_timed_steps"),
    # ---- deep_gradients README claims (issue 26, second pass) ----
    ("dg-onecycle-floor", "deep_gradients/schedule.py", "return cfg.learning_rate * max(0.0, 1.0 - t)",
     "return cfg.learning_rate * max(0.1, 1.0 - t)", "the one-cycle schedule decays to 10% of the peak, not to 0",
     T + "deep_gradients/test_schedule.py -k onecycle"),
    ("dg-warmup-starts-at-0", "deep_gradients/schedule.py", "cfg.learning_rate * (step + 1) / warm",
     "cfg.learning_rate * step / warm", "the warm-up's first step has lr 0 (off by one)",
     T + "deep_gradients/test_schedule.py -k onecycle"),
    ("dg-ranks-same-slice", "deep_gradients/schedule.py", "[:, rank]  # (steps, b)", "[:, 0]  # (steps, b)",
     "every rank trains on rank 0's slice of the global batch", T + "deep_gradients/test_schedule.py -k shard"),
    ("dg-shifts-not-sliced", "deep_gradients/train.py", "offsets[:, :, r.rank * b:(r.rank + 1) * b]",
     "offsets[:, :, :b]", "every rank shifts its images by rank 0's offsets (1 process and N differ)",
     T + "deep_gradients/test_ddp.py -k two_processes"),
    ("dg-bn-buffers-not-averaged", "deep_gradients/distributed.py", "    if world == 1:\n        return\n    for m in",
     "    if world >= 1:\n        return\n    for m in", "BN running statistics left per rank: replicas differ",
     T + "deep_gradients/test_ddp.py -k batch_norm_replicas"),
    ("dg-md5-unchecked", "deep_gradients/mnist.py", "    if got != md5:\n        size, want", "    if False:\n        size, want",
     "an MNIST file is parsed without its md5 check", T + "deep_gradients/test_mnist.py -k corrupt_file_named"),
    ("dg-shift-border-zero", "deep_gradients/mnist.py", 'F.pad(x, (s, s, s, s), mode="replicate")', "F.pad(x, (s, s, s, s))",
     "a shift fills the uncovered frame with 0 (not MNIST's background) instead of the edge pixel",
     T + "deep_gradients/test_mnist.py -k random_shift"),
    ("dg-resume-drops-optimizer", "deep_gradients/checkpoint.py", '        optimizer.load_state_dict(ck["optimizer"])\n', "",
     "a resumed run restarts SGD's momentum from zero", T + "deep_gradients/test_train.py -k bitwise"),
    ("dg-resume-takes-any-flag", "deep_gradients/checkpoint.py", "if key not in MAY_CHANGE and hasattr(cfg, key)",
     "if False and hasattr(cfg, key)", "--resume takes a flag that changes the steps already taken (e.g. --depth)",
     T + "deep_gradients/test_train.py -k rejects_flags"),
    ("dg-flops-count-macs", "deep_gradients/model.py", "total += 2 * out.numel() * k", "total += out.numel() * k",
     "count_flops counts a conv's multiply-adds once (MFU halved)", T + "deep_gradients/test_model.py -k count_flops"),
    ("dg-results-machine-paths", "deep_gradients/hardware.py", "    return os.path.relpath(full, REPO)",
     "    return path", "results.json records paths as typed in another folder (or this machine's absolute ones)",
     T + "deep_gradients/test_train.py -k repository_root"),
    ("dg-offline-cannot-write", "deep_gradients/mnist.py", 'raise ValueError(f"{url}: network unreachable',
     'raise OSError(f"{url}: network unreachable', "an offline --download reported as 'cannot write FILE' (issue 29)",
     T + "deep_gradients/test_mnist.py -k offline"),
    ("dg-benchmark-no-report", "deep_gradients/benchmark.py",
     "    rows_so_far = report(rows, cfg, dataset, header)  # a report even if every row is skipped or none finishes\n",
     "", "benchmark.py with every row skipped ends in a traceback, writing no report",
     T + "deep_gradients/test_benchmark.py -k all_skipped"),
    ("dg-http-error-as-offline", "deep_gradients/mnist.py", 'raise ValueError(f"{url}: HTTP {e.code} {e.reason}")',
     'raise ValueError(f"{url}: network unreachable ({e.reason})")',
     "a mirror that answers 404 is reported as an unreachable network", T + "deep_gradients/test_mnist.py -k answers"),
    ("dg-train-out-cwd", "deep_gradients/train.py", 'OUT = Path(__file__).resolve().parent / "out"  # the default',
     'OUT = Path("out")  # the default', "train.py's default out dir is relative to the working directory (issue 29)",
     T + "deep_gradients/test_train.py -k default_out_dir"),
    ("dg-scratch-out-cwd", "deep_gradients/scratch.py", 'OUT = Path(__file__).resolve().parent / "out" / "scratch"',
     'OUT = Path("out") / "scratch"', "scratch.py writes results.json relative to the working directory (issue 29)",
     T + "deep_gradients/test_scratch.py -k default_out_dir"),
    ("dg-ablate-runs-dir-ignored", "deep_gradients/ablate.py",
     'out_dir=os.path.join(cfg.runs_dir or cfg.out_dir, r["name"])', 'out_dir=os.path.join(cfg.out_dir, r["name"])',
     "ablate.py puts the run folders beside ablation.json whatever --runs-dir says (the committed grid's runs "
     "would land in results/)", T + "deep_gradients/test_ablate.py -k how_it_was_made"),
    ("dg-ablation-md-edited", "deep_gradients/ablate.py", '"one-cycle schedule peaking at lr.",',
     '"one-cycle schedule peaking at the lr.",', "the committed ablation.md is not ablate.py's rendering of "
     "ablation.json (edited by hand, or the renderer changed without a re-run)",
     T + "deep_gradients/test_readme.py -k ablate_py_output"),
    # ---- large_scale_optimization README claims (issue 26, second pass) ----
    ("lso-hessian-offdiag-sign", "large_scale_optimization/model.py", "((k == l) - P[:, l]) / n",
     "((k == l) + P[:, l]) / n", "Newton's explicit Hessian with the softmax Jacobian's off-diagonal sign flipped",
     T + "large_scale_optimization/test_model.py -k hessian_matches_finite_differences"),
    ("lso-svrg-snapshot-half-data", "large_scale_optimization/solvers.py",
     "mu = model.gradient(W_snap, X, y, lam)", "mu = model.gradient(W_snap, X[: n // 2], y[: n // 2], lam)",
     "SVRG's snapshot gradient over half the data, not the full gradient (a biased estimator)",
     T + "large_scale_optimization/test_solvers.py -k svrg"),
    ("lso-soft-threshold-one-sided", "large_scale_optimization/prox.py",
     "return np.sign(v) * np.maximum(np.abs(v) - t, 0.0)", "return np.maximum(v - t, 0.0)",
     "the l1 prox (soft threshold) drops negative entries", T + "large_scale_optimization/test_prox.py -k soft_threshold"),
    ("lso-tv2d-fstar-upper-bound", "large_scale_optimization/first_order.py", '{"f_star": dual, "how"',
     '{"f_star": primal, "how"', "tv2d's f* is the primal value of the reference run, not its certified lower bound D(p)",
     T + "large_scale_optimization/test_first_order.py -k certified_lower_bound"),
    ("lso-tracker-times-monitoring", "large_scale_optimization/solvers.py",
     "        if self._t0 is not None:\n            self._t0 = self.clock()\n        return rec",
     "        return rec", "the Tracker's clock runs on while it evaluates f, the gradient and two accuracies "
     "(the README: monitoring excluded, as in scikit-learn's times)", T + "large_scale_optimization/test_solvers.py -k tracker"),
]


def copy_project(project: str, into: Path) -> Path:
    """The project folder, its tests and the root test files, as the test runner sees them."""
    repo = into / "repo"
    shutil.copytree(ROOT / project, repo / project, ignore=shutil.ignore_patterns("out", "data", "__pycache__"))
    shutil.copytree(ROOT / "tests" / project, repo / "tests" / project, ignore=shutil.ignore_patterns("__pycache__"))
    for path in (ROOT / "tests").glob("*.py"):  # the root conftest and the repository-wide tests
        shutil.copy2(path, repo / "tests" / path.name)
    return repo


def run_test(repo: Path, test: str) -> tuple[int, float, str]:
    env = {**os.environ, "DATA_DIR": os.environ.get("DATA_DIR", str(ROOT.parent / "shared" / "data")),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *test.split()],
                       cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    tail = (r.stdout + r.stderr).strip().splitlines()[-1:] or [""]
    return r.returncode, round(time.monotonic() - start, 1), tail[0]


def try_mutant(name: str, path: str, old: str, new: str, bug: str, test: str) -> dict:
    project = path.split("/")[0]
    record = {"name": name, "file": path, "bug": bug, "test": test}
    with tempfile.TemporaryDirectory() as tmp:
        repo = copy_project(project, Path(tmp))
        source = (repo / path).read_text()
        if source.count(old) != 1:
            return {**record, "outcome": f"does not apply ({source.count(old)} matches): update the mutant"}
        code, seconds, tail = run_test(repo, test)
        if code != 0:
            return {**record, "outcome": "the test fails without the mutant", "detail": tail}
        (repo / path).write_text(source.replace(old, new))
        code, seconds, tail = run_test(repo, test)
    caught = code == 1
    return {**record, "outcome": "caught" if caught else f"missed (pytest exit {code})", "seconds": seconds,
            "detail": tail}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="mutant names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--out", default=str(ROOT / "tests" / "mutants.json"))
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.only or m[0] in args.only]
    if args.list or not chosen:
        for m in MUTANTS:
            print(f"{m[0]:28s} {m[1]}: {m[4]}")
        return 0 if args.list else 2
    records = []
    for i, m in enumerate(chosen, 1):
        record = try_mutant(*m)
        records.append(record)
        print(f"[{i}/{len(chosen)}] {record['name']}: {record['outcome']}", flush=True)
    caught = sum(r["outcome"] == "caught" for r in records)
    doc = {"command": "python tests/mutants.py" + (f" --only {' '.join(args.only)}" if args.only else ""),
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
           "date": datetime.date.today().isoformat(), "caught": caught, "tried": len(records), "mutants": records}
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"{caught} of {len(records)} mutants caught; {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0 if caught == len(records) else 1


if __name__ == "__main__":
    sys.exit(main())
