#!/usr/bin/env bash
# The two commands of the README:
#   bash run.sh demo   set up .venv, then train nanoGPT on its offline default (python nanogpt/train.py)
#   bash run.sh test   set up .venv, then run the whole test suite (what CI runs)
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
        # One BLAS/OpenMP thread per process: two-thread BLAS thrashes on a 2-core machine; pytest-xdist
        # uses the cores instead (one worker per core).
        export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MPLBACKEND=Agg
        exec "$VENV/bin/python" -m pytest tests -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
        ;;
    *)
        echo "usage: bash run.sh demo|test [extra args]" >&2
        exit 2
        ;;
esac
