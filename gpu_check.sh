#!/usr/bin/env bash
# gpu_check.sh: every CUDA path of nanogpt/, build_nanogpt/ and deep_gradients/ on ONE GPU, offline, with the
# Python this machine already has (a GPU box brings its own CUDA torch), sized for a short GPU lease (15 minutes
# in all, at most 10 a command, 8 small files and the last 12,000 characters of output back). run.sh calls it:
#
#   bash run.sh gpu              the check: every CUDA path on small models           estimate 300 s on one H100
#   bash run.sh gpu --measure    the figures the READMEs lack, one step at a time      estimate 295 s on one H100
#   bash run.sh gpu --ladder     build_nanogpt's speedrun ladder: baseline vs top rung  estimate 138 s on one H100
#   bash run.sh gpu --all        all three, in that order (over 10 minutes: on a lease, run them as three commands)
#   bash run.sh gpu --dry-run    the same steps on CPU (cuda -> cpu, NCCL -> gloo, compile off, tiny sizes): CI
#
# PROJECTS="ng bn dg" (the default) picks nanogpt / build_nanogpt / deep_gradients. The check runs the chosen
# projects side by side, one lane each (one GPU and 16 cores hold three small jobs): its seconds and speeds are
# taken under that contention and are sanity values, not results. --measure runs alone, one step at a time.
# Data: $DATA_DIR (default ../shared/data: tinyshakespeare, mnist, hellaswag, tiktoken_cache). ../shared does
# not travel to a lent machine: copy it into the checkout first (cp -r ../shared/data out/data), carry out/data,
# and run DATA_DIR=out/data bash run.sh gpu.
#
# What is written where:
#   $OUT (default out/gpu_check)  summary.tsv (step, exit code, seconds, recompiles, figures) and results.tgz
#                                 (every step's log, results.json/log.jsonl/bench.json...), nothing else; both
#                                 are replaced after each step, so a run cut short still leaves what it did.
#   $GPU_CHECK_WORK (default out/gpu_check_work)    runs, checkpoints, data: emptied at each start.
#   $GPU_CHECK_CACHE (default out/gpu_check_cache)  Inductor/Triton compile cache: kept, so a second call on the
#                                 same machine (e.g. --measure after the check) skips the kernels already built.
# Ctrl-C (or SIGTERM) stops the running step (SIGINT, then SIGKILL after 5 s, then whatever it left running,
# e.g. torchrun's workers, which start sessions of their own), prints the summary so far and exits 130.
# Every step has a timeout; on a GPU no step starts after $GPU_CHECK_BUDGET s (default 560, --all 1680) and none
# runs past it, so the summary always prints inside a lease's 10-minute command.
#
# Estimates for one H100 from a cold start (fresh machine, empty compile cache), in seconds, and how they were
# made: a process starts in ~5 s (torch import, CUDA context), torchrun + an NCCL rank add ~5 s; torch.compile
# of a small model's forward+backward takes 20-30 s cold (the eval mode adds ~10 s), of GPT-2 124M ~40 s, of the
# MNIST ResNet 30-40 s; a warm cache cuts those to 5-10 s. Compute: a GPT-2 124M step at B=16, T=1024 is
# (6 * 124M + 12 * 12 * 1024 * 768) FLOP/token * 16,384 tokens = 14 TFLOP: ~35 ms at 40% of the H100's 989
# TFLOP/s bf16 (45 ms allowed), ~0.3 s in float32 without TF32, ~0.1 s with TF32. The MNIST ResNet-20 (0.1
# GFLOP per training image) is launch-bound at batch 128: ~3 ms a step, 1.5 s an epoch of 60,000 images. The
# small models of the check are launch-bound too: their steps cost start-up and compile, not FLOPs. pytest-gpu:
# the gpu-marked tests as they stand on main (nanogpt 9 tests, one compiles; build_nanogpt 7, three compile;
# deep_gradients 5 tests of 8 short runs, one compiles) plus ~5 s collecting the folder.
#   preface (alone)  env 10, hf-tiny 8 (transformers import, a 2-layer GPT-2 saved in the work folder)
#   ng lane  prepare 6, ddp-compile-bf16 50, resume 12, fp16-scaler 10, 2ranks-gloo-cuda 20, fsdp-bf16 15,
#            fsdp-resume 12, init-from 12, sample 8, pytest-gpu 70                                       = 215
#   bn lane  shards 6, ddp-compile 45, resume 12, 2ranks-gloo-cuda 20, init-from 12, hellaswag 8, bench-tiny 10,
#            pytest-gpu 120                                                                              = 233
#   dg lane  ddp-compile-best 45, reduce-overhead 45, fp16-recorder-hostdata 12, stop 10, resume 10,
#            2ranks-gloo-cuda-syncbn 25, analyze 6, pytest-gpu 90                                        = 243
#   check = 18 + the longest lane * 1.15 (three lanes share the cores while compiling)                  ~ 300
#   measure  env 10, ng-bench-124m 90 (two compiles, ours and the nanoGPT restatement, 66 steps),
#            bn-bench-124m 140 (float32, TF32, bf16, then compile, flash, vocab: three compiles, fused: cached),
#            dg-time-to-995 55 (compile 35 in the untimed warm-up, 6 epochs)                             = 295
#   ladder   env 10, bn-ladder-shards 8, bn-ladder 120 (baseline and top rung, one compile each, 200 iters) = 138
# Not here: build_nanogpt's micro-batch x2 milestone (+40 s) and deep_gradients/benchmark.py --rows gpu
# (450-650 s): each needs a command of its own.
set -u -o pipefail

# --------------------------------------------------------------------------------------------------
# The figures of a step and the printed table (Python: JSON in, one short line out).
read -r -d '' TOOL <<'EOF'
"""figures SRC SPEC...: SRC a .json, a .jsonl (a list of records) or a log (its last JSON line; '-' in SPEC:
the log's last line as text). SPEC is [label:]path, path a dotted walk where, in a list, an integer indexes,
'*' takes every item (named by its 'milestone' or 'name'), and k=v the last item whose k is v. A path that
finds nothing prints label=missing; $W's path prints as WORK. table TSV [CHARS]: summary.tsv aligned, figures cut to fit CHARS."""
import json, os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # gpu_check.sh handles Ctrl-C itself

def fmt(v):
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
    return str(v).replace(" ", "_") if isinstance(v, str) else json.dumps(v)

def walk(doc, path):
    found = [((), doc)]
    for part in path.split("."):
        nxt = []
        for names, x in found:
            if isinstance(x, dict) and part in x:
                nxt.append((names + (part,), x[part]))
            elif isinstance(x, list) and part == "*":
                for i, item in enumerate(x):
                    name = item.get("milestone", item.get("name", i)) if isinstance(item, dict) else i
                    nxt.append((names + (str(name).replace(" ", "_"),), item))
            elif isinstance(x, list) and "=" in part:
                k, v = part.split("=", 1)
                hits = [item for item in x if isinstance(item, dict) and str(item.get(k)) == v]
                nxt += [(names, hits[-1])] if hits else []
            elif isinstance(x, list):
                try:
                    nxt.append((names, x[int(part)]))
                except (ValueError, IndexError):
                    pass
        found = nxt
    return found

def figures(src, specs):
    try:
        text = open(src, errors="replace").read()
    except OSError:
        return f"(no {src.rsplit('/', 1)[-1]})"
    lines = [line for line in text.splitlines() if line.strip()]
    if specs == ["-"]:
        return lines[-1].strip(" =")[:120] if lines else "(empty log)"
    try:
        if src.endswith(".jsonl"):
            doc = [json.loads(line) for line in lines]
        elif src.endswith(".json"):
            doc = json.loads(text)
        else:
            doc = json.loads(next(line for line in reversed(lines) if line.startswith("{")))
    except (ValueError, StopIteration):
        return f"(no JSON in {src.rsplit('/', 1)[-1]})"
    out = []
    for spec in specs:
        label, _, path = spec.rpartition(":")
        hits = walk(doc, path)
        if not hits and "*" not in path:
            out.append(f"{label or path}=missing")
        for names, v in hits:
            if label:  # the label replaces the keys; the names of '*' items stay in front
                stars = [n for n, p in zip(names, path.split(".")) if p == "*"]
                names = (*stars, label)
            out.append(f"{'.'.join(names)}={fmt(v) if not isinstance(v, (dict, list)) else '...'}")
    return " ".join(out)

def table(tsv, chars):
    rows = [line.split("\t") for line in open(tsv).read().splitlines()]
    width = max(len(r[0]) for r in rows)
    fixed = sum(width + 20 for _ in rows)
    room = max(40, min(400, (chars - fixed) // max(1, len(rows))))
    for r in rows:
        if len(r) < 5:  # skipped / not run
            print(f"{r[0]:{width}}  {' '.join(r[1:])}")
            continue
        fig = r[4] if len(r[4]) <= room else r[4][:room - 3] + "..."
        print(f"{r[0]:{width}}  {r[1]:>4}  {r[2]:>7}  {r[3]:>10}  {fig}")

if sys.argv[1] == "figures":  # the work folder's path is this machine's: WORK stands for it
    print(figures(sys.argv[2], sys.argv[3:]).replace(os.environ.get("W") or "\0", "WORK"))
else:
    table(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 11000)
EOF

# figures SRC SPEC...: SRC relative to $W, or '-' for the step's log ($LOG)
figures() {
    local src=$1; shift
    [ "$src" = - ] && src=$LOG || src=$W/$src
    "$PY" -c "$TOOL" figures "$src" "$@" </dev/null
}

# --------------------------------------------------------------------------------------------------
# Steps. Each runs under `timeout` (its own process group: SIGINT from the terminal does not reach it, so the
# traps below forward it), with GPU_CHECK_STEP in its environment: whatever it leaves running is found by that
# and ended (torchrun starts its workers in sessions of their own; a killed torchrun would leave them behind).

sweep() {  # sweep TAG: end every process whose environment holds GPU_CHECK_STEP=TAG
    local pids i
    for i in 1 2 3 4 5 6 7 8 9 10 11; do
        pids=$(grep -lszxF "GPU_CHECK_STEP=$1" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3)
        [ -z "$pids" ] && return
        # shellcheck disable=SC2086
        if [ "$i" = 1 ]; then kill -TERM $pids 2>/dev/null; elif [ "$i" -ge 5 ]; then kill -KILL $pids 2>/dev/null; fi
        sleep 0.25
    done
}

on_stop() {  # Ctrl-C / SIGTERM: stop the running step (timeout forwards SIGINT to its group, SIGKILL 5 s later)
    STOP=1
    [ -n "$STEP_PID" ] && kill -INT "$STEP_PID" 2>/dev/null
    local pid
    for pid in "${LANES[@]}"; do kill -TERM "$pid" 2>/dev/null; done
}

row() {  # one summary row, kept in $W/rows/$ROWS (the lanes write theirs side by side)
    printf '%s\n' "$1" >>"$W/rows/$ROWS"
    printf '%s\n' "$1"
}

# step NAME TIMEOUT_S "SRC SPEC..." CMD...: run CMD with its output in logs/NAME.log, then one summary row with
# the figures SPEC names in SRC (see TOOL; SRC relative to the work folder, '-' for the step's own log)
step() {
    local name=$1 t=$2 fig=$3; shift 3
    [ -n "$STOP" ] && return
    if [ "$BUDGET" -gt 0 ]; then
        local left=$((BUDGET - SECONDS))
        if [ "$left" -lt 15 ]; then row "$(printf '%s\tnot run (over the %s s budget)' "$name" "$BUDGET")"; return; fi
        [ "$t" -gt "$left" ] && t=$left
    fi
    [ "$GPU" = 0 ] && t=$((t * 4))   # a busy 2-core CPU running the dry run is slower than the GPU it stands in for
    LOG=$W/logs/$name.log
    local s=$SECONDS tag="$RUN.$name" smi="" rc mem=""
    echo "=== $*" >"$LOG"
    echo "--> $name (timeout ${t} s)"
    if [ "$SAMPLE_MEM" = 1 ]; then   # the GPU's memory in use every 200 ms: its peak goes in the summary
        GPU_CHECK_STEP=$tag nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 200 \
            >"$LOG.mem" 2>/dev/null </dev/null &
        smi=$!
    fi
    if declare -F "$1" >/dev/null; then
        GPU_CHECK_STEP=$tag timeout -k 5 "$t" bash -c '"$@"' _ "$@" >>"$LOG" 2>&1 </dev/null 9>&- &
    else
        GPU_CHECK_STEP=$tag timeout -k 5 "$t" "$@" >>"$LOG" 2>&1 </dev/null 9>&- &
    fi
    STEP_PID=$!
    while :; do   # a trapped signal interrupts `wait`: wait again until the step has really ended
        wait "$STEP_PID"; rc=$?
        [ "$rc" -gt 128 ] && kill -0 "$STEP_PID" 2>/dev/null && continue
        break
    done
    STEP_PID=
    if [ -n "$smi" ]; then
        kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
        mem="gpu_mem_peak_mib=$(sort -n "$LOG.mem" | tail -n 1) "; rm -f "$LOG.mem"
    fi
    sweep "$tag"
    local spec figs; read -r -a spec <<<"$fig"   # SRC SPEC... (split on spaces, no globbing of '*')
    figs=$(figures "${spec[@]}")
    [ -n "$STOP" ] && figs="interrupted $figs"
    { [ "$rc" = 124 ] || { [ "$rc" = 137 ] && [ $((SECONDS - s)) -ge "$t" ]; }; } && figs="timed out after $t s $figs"
    row "$(printf '%s\t%s\t%s\t%s\t%s' "$name" "$rc" $((SECONDS - s)) "$(grep -c "Recompiling function" "$LOG")" \
        "$mem$figs")"
    [ "$rc" = 0 ] || tail -n 3 "$LOG" | cut -c1-200 | sed "s/^/    $name: /"
    publish
}
cuda_step() {  # a step only CUDA can run: the dry run says so in its row
    if [ "$GPU" = 1 ]; then step "$@"; elif [ -z "$STOP" ]; then row "$(printf '%s\tskipped (dry run)' "$1")"; fi
}

publish() {  # summary.tsv and results.tgz in $OUT, each replaced by a rename (one writer at a time)
    (
        command -v flock >/dev/null && flock 8
        { printf 'step\texit\tseconds\trecompiles\tfigures\n'; cat "$W"/rows/*.tsv 2>/dev/null; } >"$OUT/.summary.tmp"
        mv -f "$OUT/.summary.tmp" "$OUT/summary.tsv"
        (cd "$W" && find . -type f \( -name '*.log' -o -name '*.json' -o -name '*.jsonl' -o -name '*.md' \
            -o -name '*.txt' -o -name '*.tsv' \) -print0 | tar --null -czf "$OUT/.results.tmp" -T - 2>/dev/null)
        mv -f "$OUT/.results.tmp" "$OUT/results.tgz"
    ) 8>"$W/.publish.lock"
}

finish() {  # the failed steps' last lines, then the summary table: the last thing printed
    publish
    local name code
    while IFS=$'\t' read -r name code _; do
        case $code in 0|exit|skipped*) ;; *) [ -f "$W/logs/$name.log" ] && tail -n 2 "$W/logs/$name.log" \
            | cut -c1-160 | sed "s/^/    $name: /" ;; esac
    done <"$OUT/summary.tsv"
    echo "--- $OUT/summary.tsv (logs and results: $OUT/results.tgz)"
    "$PY" -c "$TOOL" table "$OUT/summary.tsv" </dev/null || cat "$OUT/summary.tsv"
}

# Two simulated torchrun nodes on 127.0.0.1 sharing GPU 0, backend forced to gloo (NCCL refuses two ranks on
# one GPU): the 2-rank CUDA code (DDP device_ids, all_reduce of CUDA tensors, no_sync, object collectives).
read -r -d '' GLOO_WRAP <<'EOF'
import os, runpy, sys
import torch.distributed as dist
_init = dist.init_process_group
dist.init_process_group = lambda backend=None, *a, **k: _init("gloo", *a, **k)
script = sys.argv[1]; sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
runpy.run_path(script, run_name="__main__")
EOF
two_ranks() {  # two_ranks SCRIPT ARGS...
    local port r pids=()
    port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    for r in 0 1; do
        "$PY" -m torch.distributed.run --nnodes=2 --nproc_per_node=1 --node_rank=$r --master_addr=127.0.0.1 \
            --master_port="$port" "$W/gloo_wrap.py" "$@" >"$W/ranks$port.$r.log" 2>&1 &
        pids+=($!)
    done
    # wait for each node by pid: `wait -n` twice returns 127 ("no child") when both end at once and the first
    # wait reaps the two
    wait "${pids[0]}"; local a=$?; wait "${pids[1]}"; local b=$?
    cat "$W/ranks$port.0.log" "$W/ranks$port.1.log"
    echo "two_ranks: torchrun node 0 exited with $a, node 1 with $b"; [ $a = 0 ] && [ $b = 0 ]
}
ng_prepare() {  # ng_prepare DATA_DIR: the char dataset (training) and the GPT-2 BPE one (--init-from)
    "$PY" nanogpt/prepare.py --dataset shakespeare_char --source "$DATA/tinyshakespeare/input.txt" --data-dir "$1" &&
    "$PY" nanogpt/prepare.py --dataset shakespeare --source "$DATA/tinyshakespeare/input.txt" --data-dir "$1"
}

# --------------------------------------------------------------------------------------------------
# The lanes: one project each, its steps in turn.

lane_ng() {
    local SMALL=() ACC=32768 FP16_ITERS=(--max-iters 20 --eval-interval 10)
    [ "$GPU" = 0 ] && SMALL=(--n-layer 2 --n-head 2 --n-embd 64 --block-size 64 --batch-size 8) ACC=1024 \
        FP16_ITERS=(--max-iters 4 --eval-interval 2)   # float16 autocast on a CPU is emulated and slow
    local NGA=(--device "$DEV" --data-dir "$W/ng/data" --eval-iters 4 --final-eval-tokens 20000 --num-samples 1
               --sample-tokens 32 --save-epochs "")
    local F="val_loss:final.val_loss tok_s:throughput.tokens_per_s_mean mfu:throughput.mfu_mean dtype:device.dtype"
    step ng-prepare 90 "- -" ng_prepare "$W/ng/data"
    # torchrun + NCCL (world 1) + compile under DDP + bf16 autocast + SDPA flash with dropout + fused AdamW:
    # set_device, DDP(device_ids), no_sync (2 micro-steps), all_reduce; the preset's 6x384 model
    step ng-ddp-compile-bf16 150 "ng/run/results.json $F compiled:device.compile" "$PY" -m torch.distributed.run \
        --standalone --nproc_per_node=1 nanogpt/train.py --preset shakespeare_char "${NGA[@]}" "${SMALL[@]}" \
        --out-dir "$W/ng/run" --max-iters 60 --eval-interval 30 --batch-tokens $ACC --compile $COMPILE
    # exact resume in one process from the DDP run's checkpoint: fused AdamW state, CUDA RNG states, data position
    step ng-resume 90 "ng/run/results.json $F iter:final.iter" "$PY" nanogpt/train.py --resume \
        --out-dir "$W/ng/run" --max-iters 70 --no-compile
    # float16 + GradScaler (unscale_, clip, fused step) + the explicit-softmax attention
    step ng-fp16-scaler 90 "ng/fp16/results.json $F" "$PY" nanogpt/train.py --preset shakespeare_char \
        "${NGA[@]}" "${SMALL[@]}" --out-dir "$W/ng/fp16" "${FP16_ITERS[@]}" --dtype float16 --no-flash --no-compile
    local BT=(); [ "$GPU" = 0 ] && BT=(--batch-tokens 1024)
    step ng-2ranks-gloo-cuda 120 "ng/ddp2/results.json $F" two_ranks nanogpt/train.py --preset shakespeare_char \
        "${NGA[@]}" "${SMALL[@]}" --out-dir "$W/ng/ddp2" --max-iters 6 --eval-interval 3 --no-compile "${BT[@]}"
    # FSDP2 over NCCL, world 1: bf16 params, fp32 reductions, fused AdamW on DTensors; then an FSDP resume
    step ng-fsdp-bf16 90 "ng/fsdp/results.json $F fsdp:config.fsdp" "$PY" -m torch.distributed.run --standalone \
        --nproc_per_node=1 nanogpt/train.py --preset shakespeare_char "${NGA[@]}" "${SMALL[@]}" \
        --out-dir "$W/ng/fsdp" --max-iters 20 --eval-interval 10 --fsdp --dtype "$BF16" --no-compile
    step ng-fsdp-resume 90 "ng/fsdp/results.json $F iter:final.iter" "$PY" -m torch.distributed.run --standalone \
        --nproc_per_node=1 nanogpt/train.py --resume --out-dir "$W/ng/fsdp" --max-iters 30 --fsdp --no-compile
    # fine-tuning from a Hugging Face GPT-2 folder (hf-tiny: random weights, no download) on the BPE dataset
    step ng-init-from 90 "ng/init/results.json $F" "$PY" nanogpt/train.py --dataset shakespeare \
        --data-dir "$W/ng/data" --init-from "$W/hf" --device "$DEV" --block-size 128 --batch-size 8 \
        --max-iters 10 --eval-interval 5 --eval-iters 2 --final-eval-tokens 4096 --warmup-iters 2 \
        --num-samples 1 --sample-tokens 16 --save-epochs "" --no-compile --out-dir "$W/ng/init"
    # KV-cache sampling on the device with top-p
    step ng-sample 60 "- -" "$PY" nanogpt/sample.py --init-from "$W/ng/run" --device "$DEV" --num-samples 2 \
        --max-new-tokens 100 --top-p 0.9
    cuda_step ng-pytest-gpu 240 "- -" "$PY" -m pytest tests/nanogpt -m gpu -q -p no:cacheprovider
}

lane_bn() {
    local BNS=(--n-layer 4 --n-head 4 --n-embd 256 --block-size 256 --batch-size 8 --total-batch 4096)
    [ "$GPU" = 0 ] && BNS=(--n-layer 2 --n-head 2 --n-embd 64 --block-size 64 --batch-size 4 --total-batch 512)
    local BNA=(--device "$DEV" --data-dir "$W/bn/shards" "${BNS[@]}" --warmup-iters 2 --eval-iters 2
               --hellaswag-data "$DATA/hellaswag/hellaswag_val.jsonl" --hellaswag-limit 32 --num-samples 2
               --sample-tokens 16)
    local F="loss:kind=train.loss tok_s:kind=train.tok_per_s mfu:kind=train.mfu val_loss:kind=val.val_loss"
    step bn-shards 90 "- -" "$PY" build_nanogpt/fineweb.py --source "$DATA/tinyshakespeare/input.txt" \
        --out-dir "$W/bn/shards" --shard-size 100000 --num-proc 2
    # torchrun + NCCL (world 1) + compile under DDP (val through the compiled module) + bf16 + flash + fused AdamW
    # + TF32 + MFU, 2 micro-steps; stop at 4, then resume to 6 in one process
    step bn-ddp-compile 150 "bn/run/log.jsonl $F hellaswag:kind=hellaswag.acc_norm" "$PY" -m torch.distributed.run \
        --standalone --nproc_per_node=1 build_nanogpt/train.py "${BNA[@]}" --out-dir "$W/bn/run" --max-iters 6 \
        --eval-interval 3 --stop-at 4 --compile $COMPILE
    step bn-resume 90 "bn/run/log.jsonl $F iter:kind=train.iter" "$PY" build_nanogpt/train.py "${BNA[@]}" \
        --out-dir "$W/bn/run" --max-iters 6 --eval-interval 3 --resume --no-compile
    step bn-2ranks-gloo-cuda 120 "bn/ddp2/log.jsonl $F" two_ranks build_nanogpt/train.py "${BNA[@]}" \
        --out-dir "$W/bn/ddp2" --max-iters 2 --eval-interval 2 --no-compile
    # fine-tuning from a Hugging Face GPT-2 folder (hf-tiny); the shape comes from the weights
    step bn-init-from 90 "bn/init/log.jsonl $F" "$PY" build_nanogpt/train.py --init-from "$W/hf" --device "$DEV" \
        --data-dir "$W/bn/shards" --block-size 128 --batch-size 4 --total-batch 1024 --max-iters 4 \
        --warmup-iters 1 --eval-interval 2 --eval-iters 2 --hellaswag-limit 0 --num-samples 1 --sample-tokens 16 \
        --no-compile --out-dir "$W/bn/init"
    step bn-hellaswag 60 "- acc_norm examples" "$PY" build_nanogpt/hellaswag.py --model "$W/bn/run/ckpt.pt" \
        --data "$DATA/hellaswag/hellaswag_val.jsonl" --limit 64 --device "$DEV"
    # the milestones' CUDA paths (TF32, bf16, flash, vocab, fused AdamW) eagerly: --measure compiles them at 124M
    step bn-bench-tiny 90 "bn/bench/bench.json tok_s:milestones.*.tok_per_s" "$PY" build_nanogpt/bench.py \
        --device "$DEV" --size tiny --iters 3 --warmup 2 --skip compile,batch_mult --out-dir "$W/bn/bench"
    cuda_step bn-pytest-gpu 300 "- -" "$PY" -m pytest tests/build_nanogpt -m gpu -q -p no:cacheprovider
}

lane_dg() {
    local DGS=(); [ "$GPU" = 0 ] && DGS=(--depth 8 --width 8 --train-subset 2048)
    local DGA=(--dataset mnist --data-dir "$DATA/mnist" --device "$DEV" --no-progress --train-subset 20000 "${DGS[@]}")
    local DGC=(); [ "$GPU" = 1 ] && DGC=(--compile --warmup-steps 20)   # compile outside the timed epochs
    local SYNC=(); [ "$GPU" = 1 ] && SYNC=(--sync-bn)   # SyncBatchNorm has no CPU kernel: the dry run leaves it out
    local F="img_s:epochs.-1.images_per_s mfu:epochs.-1.mfu mem_mb:epochs.-1.peak_mem_mb acc:final_test_acc"
    # torchrun + NCCL (world 1) + compile under DDP + bf16 + channels_last + cudnn.benchmark, warm-up untimed
    step dg-ddp-compile-best 150 "dg/best/results.json $F warmup_s:warmup_s" "$PY" -m torch.distributed.run \
        --standalone --nproc_per_node=1 deep_gradients/train.py "${DGA[@]}" --dtype bfloat16 --channels-last \
        --cudnn-benchmark "${DGC[@]}" --max-epochs 2 --out-dir "$W/dg/best"
    TORCH_LOGS=$TORCH_LOGS,cudagraphs cuda_step dg-reduce-overhead 150 "dg/cg/results.json $F" "$PY" \
        deep_gradients/train.py "${DGA[@]}" --dtype bfloat16 --channels-last --cudnn-benchmark --compile \
        --compile-mode reduce-overhead --max-epochs 2 --out-dir "$W/dg/cg"
    cuda_step dg-fp16-recorder-hostdata 90 "dg/fp16/results.json $F" "$PY" deep_gradients/train.py "${DGA[@]}" \
        --dtype float16 --record-interval 20 --no-data-on-device --max-epochs 1 --out-dir "$W/dg/fp16"
    step dg-stop 90 "dg/resume/results.json $F" "$PY" deep_gradients/train.py "${DGA[@]}" --max-epochs 2 \
        --stop-after 1 --out-dir "$W/dg/resume"
    step dg-resume 90 "dg/resume/results.json $F" "$PY" deep_gradients/train.py "${DGA[@]}" --max-epochs 2 \
        --resume --out-dir "$W/dg/resume"
    step dg-2ranks-gloo-cuda-syncbn 120 "dg/ddp2/results.json $F sync_bn:config.sync_bn" two_ranks \
        deep_gradients/train.py "${DGA[@]}" --max-epochs 1 --batch-size 256 --dtype bfloat16 "${SYNC[@]}" \
        --out-dir "$W/dg/ddp2"
    step dg-analyze 60 "- -" "$PY" deep_gradients/analyze.py "$W/dg/$([ "$GPU" = 1 ] && echo fp16 || echo resume)"
    cuda_step dg-pytest-gpu 240 "- -" "$PY" -m pytest tests/deep_gradients -m gpu -q -p no:cacheprovider
}

measure() {  # the figures the READMEs still lack, one step at a time
    # 124M, B=16, T=1024, bf16, compiled: ours and the nanoGPT restatement in alternating rounds; figures from
    # bench.py's own JSON line
    want ng && cuda_step ng-bench-124m 200 "- ours_tok_s:ours.tokens_per_s ours_mfu:ours.mfu ref_tok_s:nanogpt_ref.tokens_per_s \
ref_mfu:nanogpt_ref.mfu speedup:speedup_vs_nanogpt_ref" "$PY" nanogpt/bench.py --device cuda --dtype bfloat16 \
        --compile --n-layer 12 --n-head 12 --n-embd 768 --block-size 1024 --vocab-size 50304 --batch-size 16 \
        --warmup 3 --iters 10 --rounds 3
    want bn && cuda_step bn-bench-124m 240 "bn_bench124/bench.json tok_s:milestones.*.tok_per_s mfu:milestones.*.mfu" \
        "$PY" build_nanogpt/bench.py --device cuda --size 124m --iters 5 --warmup 2 --skip batch_mult \
        --out-dir "$W/bn_bench124"
    # benchmark.py's time-to-99.5% row: compile and cuDNN autotuning in the untimed warm-up, no recorder, eval on;
    # the time is train.py's results.json key time_to_target_s (training seconds to target_acc = 0.995)
    want dg && cuda_step dg-time-to-995 150 "dg_t995/results.json t995_s:time_to_target_s target:target_acc acc:final_test_acc warmup_s:warmup_s \
img_s:epochs.-1.images_per_s mfu:epochs.-1.mfu" "$PY" deep_gradients/train.py --dataset mnist \
        --data-dir "$DATA/mnist" --device cuda --dtype bfloat16 --channels-last --cudnn-benchmark --compile \
        --warmup-steps 30 --max-epochs 6 --batch-size 128 --no-progress --log-interval 0 --record-interval 0 \
        --out-dir "$W/dg_t995"
}

ladder() {  # build_nanogpt's speedrun ladder on a GPU: a part of its own, so that --measure fits 5 minutes
    # the speedrun ladder (build_nanogpt/ladder.py): its top rung (every switch, Muon, FlexAttention window,
    # compile, bf16) against the GPT-2 baseline, 200 iters of 4,096 tokens on Tiny Shakespeare shards: val loss at
    # the budget and tokens to the baseline's final loss (estimate: shards 8 s, two compiles 45 s each, 200 steps
    # and 5 evaluations ~10 s each run: ~120 s)
    want bn && cuda_step bn-ladder-shards 60 "- -" "$PY" build_nanogpt/fineweb.py --source \
        "$DATA/tinyshakespeare/input.txt" --out-dir "$W/bn_ladder/shards" --shard-size 100000 --num-proc 2
    want bn && cuda_step bn-ladder 240 "bn_ladder/ladder.json val:rungs.*.final_val_loss_mean \
tokens_to_base:rungs.*.tokens_to_target_mean us_per_tok:rungs.*.cpu_us_per_token" "$PY" build_nanogpt/ladder.py \
        --only 0,9 --seeds 1 --data-dir "$W/bn_ladder/shards" --out-dir "$W/bn_ladder" --n-layer 4 --n-head 4 \
        --n-embd 256 --block-size 256 --batch-size 8 --total-batch 4096 --max-iters 200 --warmup-iters 10 \
        --eval-interval 40 --eval-iters 4 --ckpt-interval 100 --extra "--device cuda --dtype bfloat16 --compile true"
}

(return 0 2>/dev/null) && return   # sourced (the tests): the functions only

# --------------------------------------------------------------------------------------------------
# Main.
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
PART=check DEV=cuda
for arg in "$@"; do
    case $arg in
        --dry-run) DEV=cpu ;;
        --measure) PART=measure ;;
        --ladder) PART=ladder ;;
        --all) PART=all ;;
        *) echo "usage: bash run.sh gpu [--dry-run] [--measure|--ladder|--all]" >&2; exit 2 ;;
    esac
done
PROJECTS=${PROJECTS:-ng bn dg}
for p in $PROJECTS; do
    case $p in ng|bn|dg) ;; *) echo "gpu_check: PROJECTS=\"$PROJECTS\": use some of ng bn dg" >&2; exit 2 ;; esac
done
want() { [[ " $PROJECTS " == *" $1 "* ]]; }
DATA=$(cd "${DATA_DIR:-../shared/data}" 2>/dev/null && pwd) || {
    echo "gpu_check: no data folder ${DATA_DIR:-../shared/data} (set DATA_DIR)" >&2; exit 2; }
OUT=$(mkdir -p "${OUT:-out/gpu_check}" && cd "${OUT:-out/gpu_check}" && pwd) || exit 2
W=$(mkdir -p "${GPU_CHECK_WORK:-out/gpu_check_work}" && cd "${GPU_CHECK_WORK:-out/gpu_check_work}" && pwd) || exit 2
CACHE=$(mkdir -p "${GPU_CHECK_CACHE:-out/gpu_check_cache}" && cd "${GPU_CHECK_CACHE:-out/gpu_check_cache}" && pwd) \
    || exit 2
if [ -n "$(ls -A "$W")" ] && [ ! -e "$W/.gpu_check_work" ]; then   # never empty a folder this script did not make
    echo "gpu_check: $W is not empty and not a gpu_check work folder (set GPU_CHECK_WORK)" >&2; exit 2
fi
exec 9>"$W.lock"   # one run per work folder (flock: util-linux; without it, no lock)
if command -v flock >/dev/null && ! flock -n 9; then
    echo "gpu_check: another gpu_check is using $W (set GPU_CHECK_WORK)" >&2; exit 2
fi
rm -rf "$W" "$OUT/summary.tsv" "$OUT/results.tgz" "$OUT/.summary.tmp" "$OUT/.results.tmp"
mkdir -p "$W/logs" "$W/rows" "$W/tiktoken" && touch "$W/.gpu_check_work"
cp "$DATA"/tiktoken_cache/* "$W/tiktoken/" 2>/dev/null   # tiktoken deletes cache files it dislikes: use a copy
printf '%s\n' "$GLOO_WRAP" >"$W/gloo_wrap.py"

export PYTHONUNBUFFERED=1 MPLBACKEND=Agg HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false DATA_DIR="$DATA" TIKTOKEN_CACHE_DIR="$W/tiktoken" \
    TORCHINDUCTOR_CACHE_DIR="$CACHE/inductor" TRITON_CACHE_DIR="$CACHE/triton" TORCHINDUCTOR_FX_GRAPH_CACHE=1 \
    TORCHINDUCTOR_AUTOGRAD_CACHE=1 TORCH_LOGS="recompiles,graph_breaks"
GPU=1 COMPILE=true BF16=bfloat16 BUDGET=${GPU_CHECK_BUDGET:-$([ "$PART" = all ] && echo 1680 || echo 560)}
if [ "$DEV" = cpu ]; then   # one BLAS thread per process: two thrash on a busy 2-core machine
    GPU=0 COMPILE=false BF16=float32 BUDGET=${GPU_CHECK_BUDGET:-0}   # bfloat16 autocast on a CPU is emulated, slow
    export CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi
export PY W DATA DEV
export -f two_ranks ng_prepare
STOP="" STEP_PID="" LANES=() LOG="" SAMPLE_MEM=0 ROWS=0-preface.tsv RUN="$$.$RANDOM"
SECONDS=0
trap on_stop INT TERM

read -r -d '' ENV_PY <<'EOF'
import importlib.metadata as md, json, torch
info = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpus": torch.cuda.device_count()}
if torch.cuda.is_available():
    info.update(gpu=torch.cuda.get_device_name(0), capability="%d.%d" % torch.cuda.get_device_capability(0),
                flash=torch.backends.cuda.flash_sdp_enabled())
missing = []
for name in ("numpy", "tiktoken", "transformers", "safetensors", "matplotlib", "tqdm", "scikit-learn", "pytest",
             "nvidia-ml-py"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        missing.append(name)
info["missing"] = ",".join(missing) or "none"
print(json.dumps(info))
EOF
read -r -d '' HF_PY <<'EOF'
import sys, torch
from transformers import GPT2Config, GPT2LMHeadModel
torch.manual_seed(0)  # a 2-layer GPT-2 with random weights, saved as a hub folder is: config.json + model.safetensors
GPT2LMHeadModel(GPT2Config(vocab_size=50257, n_positions=256, n_embd=64, n_layer=2, n_head=2)).save_pretrained(sys.argv[1])
print("saved", sys.argv[1])
EOF

step env 60 "- torch cuda gpu capability missing" "$PY" -c "$ENV_PY"
if [ "$PART" = check ] || [ "$PART" = all ]; then
    { want ng || want bn; } && step hf-tiny 60 "- -" "$PY" -c "$HF_PY" "$W/hf"
    n=0
    for p in ng bn dg; do   # side by side; each lane's rows go to a file of its own, published in lane order
        n=$((n + 1))
        want $p || continue
        ( trap on_stop TERM; LANES=() ROWS=$n-$p.tsv; lane_$p ) &
        LANES+=($!)
    done
    for pid in "${LANES[@]}"; do   # a trapped signal interrupts `wait`: wait again until each lane has ended
        while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done
    done
    LANES=()
fi
[ "$PART" != check ] && [ "$GPU" = 1 ] && command -v nvidia-smi >/dev/null && SAMPLE_MEM=1
if { [ "$PART" = measure ] || [ "$PART" = all ]; } && [ -z "$STOP" ]; then
    ROWS=4-measure.tsv
    measure
fi
if { [ "$PART" = ladder ] || [ "$PART" = all ]; } && [ -z "$STOP" ]; then
    ROWS=5-ladder.tsv
    ladder
fi

finish
[ -n "$STOP" ] && exit 130
awk -F'\t' 'NR > 1 && $2 != "0" && $2 !~ /^skipped/ {bad = 1} END {exit bad}' "$OUT/summary.tsv"   # 1: a step failed
