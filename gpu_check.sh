#!/usr/bin/env bash
# gpu_check.sh: every CUDA path of nanogpt/, build_nanogpt/ and deep_gradients/ on small models, on ONE GPU,
# offline, with the Python this machine already has (a GPU box brings its own CUDA torch). Called by run.sh:
#
#   bash run.sh gpu              every CUDA branch, small models (about 6 min on one H100/H200, not yet measured)
#   bash run.sh gpu --measure    the GPU figures the READMEs still lack (124M tokens/s + MFU, time to 99.5%)
#   bash run.sh gpu --all        both, in that order
#   bash run.sh gpu --dry-run    the same check steps on CPU (cuda -> cpu, compile off, tiny sizes): part of CI
#
# Data comes from $DATA_DIR (default ../shared/data: tinyshakespeare, mnist, hellaswag, tiktoken_cache).
# Writes to $OUT (default out/gpu_check): summary.tsv (step, exit code, seconds, recompiles, the GPU memory peak
# (nvidia-smi), and the figures the step reported: tok/s, MFU, memory, accuracy), logs/STEP.log, results.tgz.
# A run cut short still leaves its log. PROJECTS="ng bn dg" selects nanogpt / build_nanogpt / deep_gradients.
set -u -o pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
PART=check DEV=cuda
for arg in "$@"; do
    case $arg in
        --dry-run) DEV=cpu ;;
        --measure) PART=measure ;;
        --all) PART=all ;;
        *) echo "usage: bash run.sh gpu [--dry-run] [--measure|--all]" >&2; exit 2 ;;
    esac
done
DATA=$(cd "${DATA_DIR:-../shared/data}" 2>/dev/null && pwd) || { echo "gpu_check: no data folder ${DATA_DIR:-../shared/data} (set DATA_DIR)" >&2; exit 2; }
OUT=$(mkdir -p "${OUT:-out/gpu_check}" && cd "${OUT:-out/gpu_check}" && pwd)
W=$OUT/work
rm -rf "$W" "$OUT/logs"; mkdir -p "$W/tiktoken" "$OUT/logs"
cp "$DATA"/tiktoken_cache/* "$W/tiktoken/"   # tiktoken deletes cache files it dislikes: use a copy
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false DATA_DIR="$DATA"
export TIKTOKEN_CACHE_DIR="$W/tiktoken" TORCHINDUCTOR_CACHE_DIR="$W/inductor"
SUM=$OUT/summary.tsv
printf 'step\texit\tseconds\trecompiles\tfigures\n' >"$SUM"
GPU=1 COMPILE=true
if [ "$DEV" = cpu ]; then   # one BLAS thread per process: two thrash on a busy 2-core machine
    GPU=0 COMPILE=false; export CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi
PROJECTS=" ${PROJECTS:-ng bn dg} "; want() { [[ "$PROJECTS" == *" $1 "* ]]; }
export TORCH_LOGS="recompiles,graph_breaks"

# the figures of the results.json files a step wrote under its folder, as "key=value ..."
figures() {
    "$PY" - "$1" "$2" <<'EOF'
import json, pathlib, sys
keys = ("tokens_per_s", "tok_per_s", "acc_norm", "mfu", "peak_mem", "images_per_s", "gpu_util", "test_acc", "val_loss", "time_to", "compile_s",
        "ms_per_iter", "speedup", "epoch_time")
found = {}
def walk(x, prefix=""):
    if isinstance(x, dict):
        for k, v in x.items():
            walk(v, k)
    elif isinstance(x, list):  # every item: the last that has a figure wins
        for item in x:
            walk(item, prefix)
    elif isinstance(x, (int, float)) and any(k in prefix for k in keys):
        found[prefix] = round(x, 4) if isinstance(x, float) else x
def lines(p):
    return [line for line in p.read_text(errors="replace").splitlines() if line.startswith("{")]
if sys.argv[1] != "-":  # results.json / bench.json under DIR, or a log.jsonl's records (the last of each key wins)
    d = pathlib.Path(sys.argv[1])
    docs = [p.read_text() for p in sorted(q for n in ("results", "bench", "benchmark") for q in d.glob(f"**/{n}.json"))]
    docs += [line for p in sorted(d.glob("**/log.jsonl")) for line in lines(p)]
else:  # the last JSON line the step printed
    docs = lines(pathlib.Path(sys.argv[2]))[-1:]
for doc in docs:
    try:
        walk(json.loads(doc))
    except ValueError:
        pass
print(" ".join(f"{k}={v}" for k, v in found.items()))
EOF
}

# step NAME TIMEOUT_S DIR CMD...: run CMD (output to logs/NAME.log), then one summary line with the figures
# of the results.json files under DIR (-: of the last JSON line it printed)
step() {
    local name=$1 t=$2 dir=$3; shift 3
    local log=$OUT/logs/$name.log s=$SECONDS
    [ "$GPU" = 0 ] && t=$((t * 3))   # a 2-core CPU running the dry run is slower than the GPU it stands in for
    echo "=== $*" >"$log"
    local smi=""  # the GPU's memory in use, sampled every 200 ms while the step runs: its peak goes in the summary
    if [ "$GPU" = 1 ] && command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 200 >"$log.mem" 2>/dev/null &
        smi=$!
    fi
    if declare -F "$1" >/dev/null; then timeout "$t" bash -c '"$@"' _ "$@" >>"$log" 2>&1
    else timeout "$t" "$@" >>"$log" 2>&1; fi
    local rc=$? mem=""
    if [ -n "$smi" ]; then
        kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
        mem="gpu_mem_peak_mib=$(sort -n "$log.mem" | tail -n 1) "; rm -f "$log.mem"
    fi
    local recompiles; recompiles=$(grep -c "Recompiling function" "$log")
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" $((SECONDS - s)) "$recompiles" "$mem$(figures "$dir" "$log")" | tee -a "$SUM"
    [ "$rc" = 0 ] || tail -n 5 "$log" | sed 's/^/    /'
}
gpu_step() { if [ "$GPU" = 1 ]; then step "$@"; else printf '%s\tskipped (dry run)\n' "$1" | tee -a "$SUM"; fi; }

# Two simulated torchrun nodes on 127.0.0.1 sharing GPU 0, backend forced to gloo (NCCL refuses two ranks on
# one GPU): the 2-rank CUDA code (DDP device_ids, all_reduce of CUDA tensors, no_sync, object collectives).
cat >"$W/gloo_wrap.py" <<'EOF'
import os, runpy, sys
import torch.distributed as dist
_init = dist.init_process_group
dist.init_process_group = lambda backend=None, *a, **k: _init("gloo", *a, **k)
script = sys.argv[1]; sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
runpy.run_path(script, run_name="__main__")
EOF
two_ranks() {  # two_ranks PORT SCRIPT ARGS...
    local port=$1; shift
    for r in 0 1; do
        "$PY" -m torch.distributed.run --nnodes=2 --nproc_per_node=1 --node_rank=$r --master_addr=127.0.0.1 \
            --master_port="$port" "$W/gloo_wrap.py" "$@" >"$W/rank$r.log" 2>&1 &
    done
    wait -n; local a=$?; wait -n; local b=$?; cat "$W/rank0.log" "$W/rank1.log"; [ $a = 0 ] && [ $b = 0 ]
}
export -f two_ranks; export PY W

if [ "$PART" != measure ]; then
step env 60 "$W" "$PY" - <<'EOF'
import importlib.util, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0), torch.cuda.device_count(), "GPU(s)")
    print("flash sdp", torch.backends.cuda.flash_sdp_enabled(), "nvidia-ml-py", importlib.util.find_spec("pynvml") is not None)
EOF
for p in ng:nanogpt bn:build_nanogpt dg:deep_gradients; do   # the gpu-marked tests of each project
    want "${p%%:*}" && gpu_step "pytest-gpu-${p#*:}" 240 "$W" "$PY" -m pytest "tests/${p#*:}" -m gpu -q -p no:cacheprovider
done

if want ng; then
NG=$W/ng
"$PY" nanogpt/prepare.py --dataset shakespeare_char --source "$DATA/tinyshakespeare/input.txt" --data-dir "$NG/data" \
    >"$OUT/logs/ng-prepare.log" 2>&1
SMALL=(); [ "$GPU" = 0 ] && SMALL=(--n-layer 2 --n-head 2 --n-embd 64 --block-size 64 --batch-size 8)
NGA=(--device "$DEV" --data-dir "$NG/data" --eval-iters 4 --final-eval-tokens 20000 --num-samples 1 --sample-tokens 32
     --save-epochs "")
# bf16 autocast + compile + SDPA flash with dropout + fused AdamW + pinned batches + MFU; the preset's 6x384 model
step ng-train-bf16-compile 240 "$NG/bf16" "$PY" nanogpt/train.py --preset shakespeare_char "${NGA[@]}" "${SMALL[@]}" \
    --out-dir "$NG/bf16" --max-iters 60 --eval-interval 30 --compile $COMPILE
# exact resume on CUDA: fused AdamW state, CUDA RNG states, data position
step ng-resume 120 "$NG/bf16" "$PY" nanogpt/train.py --resume --out-dir "$NG/bf16" --max-iters 70 --no-compile
# float16 + GradScaler (unscale_, clip, fused step) + the explicit-softmax attention
# (float16 autocast on a CPU is emulated and slow: the dry run takes 4 steps)
FP16_ITERS=(--max-iters 20 --eval-interval 10); [ "$GPU" = 0 ] && FP16_ITERS=(--max-iters 4 --eval-interval 2)
step ng-fp16-scaler 120 "$NG/fp16" "$PY" nanogpt/train.py --preset shakespeare_char "${NGA[@]}" "${SMALL[@]}" \
    --out-dir "$NG/fp16" "${FP16_ITERS[@]}" --dtype float16 --no-flash --no-compile
# torchrun + NCCL (world 1): set_device, DDP(device_ids), no_sync (accumulation 2), all_reduce
step ng-torchrun-nccl 150 "$NG/ddp" "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 nanogpt/train.py \
    --preset shakespeare_char "${NGA[@]}" "${SMALL[@]}" --out-dir "$NG/ddp" --max-iters 10 --eval-interval 5 \
    --batch-size 32 --batch-tokens 16384 --no-compile
NGBT=(); [ "$GPU" = 0 ] && NGBT=(--batch-tokens 1024)
step ng-2ranks-gloo-cuda 180 "$NG/ddp2" two_ranks 29611 nanogpt/train.py --preset shakespeare_char "${NGA[@]}" \
    "${SMALL[@]}" --out-dir "$NG/ddp2" --max-iters 6 --eval-interval 3 --no-compile "${NGBT[@]}"
# KV-cache sampling on the device, top-p, and the uncached path
step ng-sample 90 - "$PY" nanogpt/sample.py --init-from "$NG/bf16" --device "$DEV" --num-samples 2 \
    --max-new-tokens 100 --top-p 0.9
step ng-sample-nocache 90 - "$PY" nanogpt/sample.py --init-from "$NG/bf16" --device "$DEV" --num-samples 1 \
    --max-new-tokens 50 --no-cache
BF16=bfloat16; [ "$GPU" = 0 ] && BF16=float32   # bfloat16 autocast on a CPU is emulated and slow
step ng-bench-train 120 - "$PY" nanogpt/bench.py --device "$DEV" --dtype $BF16 --iters 5 --rounds 2
step ng-bench-generate 120 - "$PY" nanogpt/bench.py --generate --device "$DEV" --dtype $BF16 \
    --max-new-tokens $([ "$GPU" = 1 ] && echo 100 || echo 4)
fi

if want bn; then
BN=$W/bn
step bn-shards 120 "$BN/shards" "$PY" build_nanogpt/fineweb.py --source "$DATA/tinyshakespeare/input.txt" \
    --out-dir "$BN/shards" --shard-size 100000 --num-proc 2
BNS=(--n-layer 4 --n-head 4 --n-embd 256 --block-size 256 --batch-size 8 --total-batch 4096)
[ "$GPU" = 0 ] && BNS=(--n-layer 2 --n-head 2 --n-embd 64 --block-size 64 --batch-size 4 --total-batch 512)
BNA=(--device "$DEV" --data-dir "$BN/shards" "${BNS[@]}" --warmup-iters 2 --eval-iters 2
     --hellaswag-data "$DATA/hellaswag/hellaswag_val.jsonl" --hellaswag-limit 32 --num-samples 2 --sample-tokens 16)
# bf16 + compile (val through the compiled module) + flash + fused AdamW + TF32 + MFU; stop at 4, resume to 6
step bn-train-compile 240 "$BN/run" "$PY" build_nanogpt/train.py "${BNA[@]}" --out-dir "$BN/run" --max-iters 6 \
    --eval-interval 3 --stop-at 4 --compile $COMPILE
step bn-resume 120 "$BN/run" "$PY" build_nanogpt/train.py "${BNA[@]}" --out-dir "$BN/run" --max-iters 6 \
    --eval-interval 3 --resume --no-compile
step bn-torchrun-nccl 150 "$BN/ddp" "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 \
    build_nanogpt/train.py "${BNA[@]}" --out-dir "$BN/ddp" --max-iters 2 --eval-interval 2 --no-compile
step bn-2ranks-gloo-cuda 180 "$BN/ddp2" two_ranks 29612 build_nanogpt/train.py "${BNA[@]}" --out-dir "$BN/ddp2" \
    --max-iters 2 --eval-interval 2 --no-compile
step bn-hellaswag 90 - "$PY" build_nanogpt/hellaswag.py --model "$BN/run/ckpt.pt" \
    --data "$DATA/hellaswag/hellaswag_val.jsonl" --limit 64 --device "$DEV"
BNK=(--skip batch_mult); [ "$GPU" = 0 ] && BNK=(--skip compile,batch_mult)
step bn-bench-tiny 240 "$BN/bench" "$PY" build_nanogpt/bench.py --device "$DEV" --size tiny --iters 3 --warmup 2 \
    "${BNK[@]}" --out-dir "$BN/bench"
fi

if want dg; then
DG=$W/dg
DGS=(); [ "$GPU" = 0 ] && DGS=(--depth 8 --width 8 --train-subset 2048)
DGA=(--dataset mnist --data-dir "$DATA/mnist" --device "$DEV" --no-progress --train-subset 20000 "${DGS[@]}")
DGC=(); [ "$GPU" = 1 ] && DGC=(--compile --warmup-steps 20)   # compile outside the timed epochs
step dg-best-compile 240 "$DG/best" "$PY" deep_gradients/train.py "${DGA[@]}" --dtype bfloat16 --channels-last \
    --cudnn-benchmark "${DGC[@]}" --max-epochs 2 --out-dir "$DG/best"
TORCH_LOGS=$TORCH_LOGS,cudagraphs gpu_step dg-reduce-overhead 240 "$DG/cg" "$PY" deep_gradients/train.py "${DGA[@]}" \
    --dtype bfloat16 --channels-last --cudnn-benchmark --compile --compile-mode reduce-overhead --max-epochs 2 \
    --out-dir "$DG/cg"
gpu_step dg-fp16-recorder-hostdata 120 "$DG/fp16" "$PY" deep_gradients/train.py "${DGA[@]}" --dtype float16 \
    --record-interval 20 --no-data-on-device --max-epochs 1 --out-dir "$DG/fp16"
step dg-stop 120 "$DG/resume" "$PY" deep_gradients/train.py "${DGA[@]}" --max-epochs 2 --stop-after 1 \
    --out-dir "$DG/resume"
step dg-resume 120 "$DG/resume" "$PY" deep_gradients/train.py "${DGA[@]}" --max-epochs 2 --resume \
    --out-dir "$DG/resume"
step dg-2ranks-gloo-cuda 180 "$DG/ddp2" two_ranks 29613 deep_gradients/train.py "${DGA[@]}" --max-epochs 1 \
    --batch-size 256 --dtype bfloat16 --out-dir "$DG/ddp2"
step dg-analyze 120 - "$PY" deep_gradients/analyze.py "$([ "$GPU" = 1 ] && echo "$DG/fp16" || echo "$DG/resume")"
fi
fi

if [ "$PART" != check ]; then   # the figures the READMEs still lack
gpu_step ng-bench-124m 300 "$W" "$PY" nanogpt/bench.py --device cuda --dtype bfloat16 --compile --n-layer 12 \
    --n-head 12 --n-embd 768 --block-size 1024 --vocab-size 50304 --batch-size 16 --iters 10 --rounds 3 --no-baseline
gpu_step bn-bench-124m 420 "$W/bn_bench124" "$PY" build_nanogpt/bench.py --device cuda --size 124m --iters 5 \
    --warmup 2 --out-dir "$W/bn_bench124"
gpu_step dg-time-to-995 300 "$W/dg_t995" "$PY" deep_gradients/train.py --dataset mnist --data-dir "$DATA/mnist" \
    --device cuda --dtype bfloat16 --channels-last --cudnn-benchmark --max-epochs 6 --no-progress --out-dir "$W/dg_t995"
gpu_step dg-benchmark-gpu-rows 420 "$W/dg_bench" "$PY" deep_gradients/benchmark.py --rows gpu \
    --data-dir "$DATA/mnist" --out-dir "$W/dg_bench"
fi

(cd "$W" && find . \( -name '*.json' -o -name '*.jsonl' -o -name '*.md' \) -not -path './inductor/*' -print0 \
    | tar -czf "$OUT/results.tgz" --null -T -) 2>/dev/null
echo "--- $SUM"; column -t -s $'\t' "$SUM" 2>/dev/null || cat "$SUM"
awk -F'\t' 'NR > 1 && $2 != "0" && $2 !~ /^skipped/ {bad = 1} END {exit bad}' "$SUM"   # 1 if a step failed
