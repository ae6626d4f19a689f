#!/usr/bin/env bash
# The two commands of the README:
#   bash run.sh demo   set up .venv, then train nanoGPT on its offline default (python nanogpt/train.py)
#   bash run.sh test   set up .venv, then run the whole test suite (what CI runs), one project at a time
#   bash run.sh gpu    every CUDA path on one GPU (--dry-run: the same steps on CPU; --measure: the GPU figures;
#                      --ladder: build_nanogpt's speedrun ladder)
# Setup is idempotent: it reinstalls only when requirements.txt has changed.
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.requirements.sha256

setup() {
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    want=$(sha256sum requirements.txt | cut -d' ' -f1)
    if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
        echo "setting up $VENV (pip install -r requirements.txt) ..."
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
        echo "$want" > "$STAMP"
    fi
}

case "${1:-}" in
    demo)
        setup
        shift
        exec "$VENV/bin/python" nanogpt/train.py "$@"
        ;;
    test)
        setup
        shift
        # Each project's tests run in a pytest process of their own (several folders hold a model.py);
        # `bash run.sh test nanogpt` runs one. One BLAS/OpenMP thread per process: two-thread BLAS thrashes
        # on a 2-core machine; pytest-xdist uses the cores instead (one worker per core).
        export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MPLBACKEND=Agg
        suites="nanogpt build_nanogpt deep_gradients large_scale_optimization repo"
        case "${1:-}" in nanogpt|build_nanogpt|deep_gradients|large_scale_optimization|repo) suites=$1; shift ;; esac
        passed=0; failed=0; skipped=0; rc=0; broken=""; log=$(mktemp)
        for s in $suites; do
            target=tests/$s; [ "$s" = repo ] && target="$(echo tests/test_*.py)"  # the repository-wide tests
            echo "=== $s ($target)"
            code=0
            "$VENV/bin/python" -m pytest $target -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@" 2>&1 | tee "$log" \
                || code=$?
            [ "$code" = 5 ] && code=0  # no test selected in this project (e.g. -k): not a failure
            summary=$(tail -n 1 "$log")
            n() { echo "$summary" | grep -oE "[0-9]+ $1" | grep -oE "[0-9]+" || echo 0; }
            passed=$((passed + $(n passed))); skipped=$((skipped + $(n skipped)))
            bad=$(($(n failed) + $(n 'errors?')))
            failed=$((failed + bad))
            if [ "$code" != 0 ]; then
                rc=1
                [ "$bad" = 0 ] && broken="$broken $s (pytest exit $code)"  # no count to add: say so
            fi
        done
        rm -f "$log"
        echo "${passed} passed, ${failed} failed, ${skipped} skipped${broken:+; did not run:$broken}"
        exit $rc
        ;;
    gpu)
        # Every CUDA path on one GPU with the Python this machine has (no venv set-up; see gpu_check.sh).
        shift
        [ -z "${PYTHON:-}" ] && [ -x "$VENV/bin/python" ] && export PYTHON=$VENV/bin/python
        exec bash gpu_check.sh "$@"
        ;;
    *)
        echo "usage: bash run.sh demo|test|gpu [extra args]" >&2
        exit 2
        ;;
esac
