"""Fixtures of large_scale_optimization's tests. `large_scale_optimization/` comes first on sys.path, so
`import model` is its model.py."""
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "large_scale_optimization"))

from cli import run_main  # noqa: E402


@pytest.fixture
def run_main_here(capsys):
    """``run_main_here(main, argv)`` -> CompletedProcess: a script's main() through cli.run_main in this
    process (cheaper than a subprocess), its exit code, stdout and stderr captured."""

    def run(main, argv):
        with pytest.raises(SystemExit) as exc:
            run_main(main, [str(a) for a in argv])
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(argv, exc.value.code, captured.out, captured.err)

    return run
