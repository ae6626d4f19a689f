"""Where a figure came from: the command as typed (from the repository root), the date, the machine and the
thread settings. Every results.json / bench.json of this folder opens with this record, so a README figure
that cites the file can be traced to the run that made it."""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys

import numpy as np
from threadpoolctl import threadpool_info

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def command(script: str, argv: list[str] | None) -> str:
    """`OMP_NUM_THREADS=1 python large_scale_optimization/SCRIPT ARGS`: the thread variables that are set,
    then the script from the repository root, then the arguments as given (argv None: sys.argv's)."""
    env = [f"{k}={os.environ[k]}" for k in THREAD_VARS if k in os.environ]
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join([*env, "python", f"large_scale_optimization/{script}", *args])


def provenance(script: str, argv: list[str] | None, threads) -> dict:
    """The record that opens a results file: command, UTC date, BLAS threads, machine (no paths)."""
    blas = [dict(api=i.get("internal_api"), threads=i.get("num_threads")) for i in threadpool_info()]
    try:
        import sklearn
        sk = sklearn.__version__
    except ImportError:  # the denoising half needs no scikit-learn
        sk = None
    machine = dict(platform=platform.platform(), machine=platform.machine(), cpu_count=os.cpu_count(),
                   python=platform.python_version(), numpy=np.__version__, sklearn=sk, blas_under_limit=blas,
                   load_average=[round(x, 2) for x in os.getloadavg()],
                   env_threads={k: os.environ.get(k) for k in THREAD_VARS})
    return dict(command=command(script, argv),
                date_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                threads=threads, machine=machine)
