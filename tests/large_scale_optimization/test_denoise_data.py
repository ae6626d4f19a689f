"""large_scale_optimization/denoise_data.py: signal files and PSNR."""
import math

import numpy as np
import pytest

import denoise_data
from cli import UserError


def test_signal_must_be_one_dimensional(tmp_path):
    """A 2-D --signal file was flattened into one long signal: refused; a single row is still a 1-D signal."""
    np.save(tmp_path / "table.npy", np.zeros((3, 3)))
    with pytest.raises(UserError, match="1-D"):
        denoise_data.load_signal(str(tmp_path / "table.npy"))
    np.save(tmp_path / "row.npy", np.zeros((1, 5)))
    assert denoise_data.load_signal(str(tmp_path / "row.npy")).shape == (5,)


def test_psnr_in_decibels():
    """10 log10(peak^2 / MSE), the peak being the clean data's range: an error of 0.1 everywhere on a [0, 1]
    signal is 20 dB, on a [0, 2] one 26.02 dB; a perfect answer is inf."""
    clean = np.linspace(0.0, 1.0, 50)
    assert denoise_data.psnr(clean + 0.1, clean) == pytest.approx(20.0, rel=1e-12)
    assert denoise_data.psnr(2 * clean - 0.1, 2 * clean) == pytest.approx(20 + 20 * math.log10(2), rel=1e-12)
    assert denoise_data.psnr(clean, clean) == math.inf


def test_signal_beyond_1e100_is_one_line_error(tmp_path):
    """A signal of +-1e308 overflowed its differences to inf and ended in a matplotlib traceback: refused,
    naming the largest value and the bound; 1e100 itself is accepted."""
    (tmp_path / "huge.txt").write_text("0\n1e308\n-1e308\n0\n")
    with pytest.raises(UserError, match=r"'huge.txt' has values up to 1e\+308; allowed: at most 1e\+100"):
        denoise_data.make_data(denoise_data.Source(signal=str(tmp_path / "huge.txt")))
    (tmp_path / "edge.txt").write_text("0\n1e100\n0\n")
    clean, _, _ = denoise_data.make_data(denoise_data.Source(signal=str(tmp_path / "edge.txt")))
    assert clean.max() == 1e100
