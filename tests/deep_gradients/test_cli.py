"""deep_gradients/cli.py: run_main's fallbacks, a user mistake (exit 2) and a Ctrl-C (exit 130), one line each."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import cli

ROOT = Path(__file__).resolve().parents[2]


def exit_of(main, capsys):
    with pytest.raises(SystemExit) as e:
        cli.run_main(main)
    return e.value.code, capsys.readouterr().err


def test_user_error_and_ctrl_c_are_one_line(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["x.py"])

    def mistake():
        raise cli.UserError("--width 0: must be\n  in [1, 1024]")

    def ctrl_c():
        raise KeyboardInterrupt

    assert exit_of(mistake, capsys) == (2, "x.py: error: --width 0: must be in [1, 1024]\n")
    assert exit_of(ctrl_c, capsys) == (130, "x.py: interrupted\n")
    assert exit_of(lambda: 3, capsys) == (3, "")
    assert exit_of(lambda: {"final_test_acc": 0.9}, capsys) == (0, "")  # a result is not an exit code
    assert exit_of(lambda: None, capsys) == (0, "")


def test_sigint_to_a_running_script_ends_it_in_one_line():
    """scratch.py keeps no state worth saving: Ctrl-C reaches run_main, which says so without a traceback."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "deep_gradients/scratch.py"), "--max-iters", "100000",
                             "--log-interval", "1"], text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout.readline().startswith("step     0")  # training: past the imports and the data
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and err == "scratch.py: interrupted\n", err
