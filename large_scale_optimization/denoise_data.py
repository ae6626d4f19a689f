"""Data of the denoising experiments: a piecewise-constant 1-D signal or your own, an image, the noise, PSNR.

Images become float64 grayscale in [0, 1]; the default image is scikit-image's cameraman (matplotlib's
bundled grace_hopper.jpg when scikit-image is missing). Nothing is downloaded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.cbook
import matplotlib.image
import numpy as np

from cli import UserError

try:  # optional: the default image (skimage.restoration, for the Chambolle comparison, is imported on use:
    import skimage.data  # it pulls in scipy.stats, ~1.5 s, which only the tv2d comparison needs)
except ImportError:  # pragma: no cover - scikit-image is in requirements.txt
    skimage = None


def piecewise_constant(n: int, seg_len: int, rng: np.random.Generator) -> np.ndarray:
    """A clean test signal: ~n/seg_len constant pieces at uniform random levels in [0, 1]."""
    pieces = max(1, n // max(1, seg_len))
    cuts = np.sort(rng.choice(np.arange(1, n), size=min(pieces - 1, n - 1), replace=False))
    lengths = np.diff(np.concatenate([[0], cuts, [n]]))
    return np.repeat(rng.uniform(0.0, 1.0, size=lengths.size), lengths)


MAX_VALUE = 1e100  # of a clean signal or image: |x| beyond it overflows TV's differences and squares


def load_signal(path: str) -> np.ndarray:
    try:
        x = np.load(path) if path.endswith(".npy") else np.loadtxt(path)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read signal {path!r}: {e}") from None
    x = np.squeeze(np.asarray(x, dtype=np.float64))  # a (1, n) or (n, 1) array is still a 1-D signal
    if x.ndim != 1:  # a table or an image flattened row by row would be denoised as one long signal
        raise UserError(f"signal {path!r} must be 1-D, got shape {x.shape}")
    if x.size < 2:
        raise UserError(f"signal {path!r} has {x.size} samples; need at least 2")
    return x


def to_gray(img: np.ndarray) -> np.ndarray:
    """Any imread result -> float64 grayscale in [0, 1] (Rec. 709 luma, as skimage.color.rgb2gray)."""
    img = np.asarray(img)
    if np.issubdtype(img.dtype, np.integer):
        img = img / float(np.iinfo(img.dtype).max)
    img = img.astype(np.float64)
    if img.ndim == 3:
        img = img[..., :3] @ np.array([0.2125, 0.7154, 0.0721]) if img.shape[2] >= 3 else img[..., 0]
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D or RGB(A) image, got shape {img.shape}")
    return img


def load_image(path: str) -> tuple[np.ndarray, str]:
    """(grayscale image in [0, 1], its name). Offline defaults only: no downloads here."""
    if path:
        try:
            return to_gray(matplotlib.image.imread(path)), Path(path).name
        except Exception as e:  # noqa: BLE001 - PIL/matplotlib raise many kinds for a bad file
            raise UserError(f"cannot read image {path!r}: {type(e).__name__}: {e}".splitlines()[0]) from None
    if skimage is not None:
        return to_gray(skimage.data.camera()), "cameraman"
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        return to_gray(matplotlib.image.imread(f, format="jpg")), "grace_hopper"


def centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    if size <= 0:
        return img
    r0, c0 = max(0, (img.shape[0] - size) // 2), max(0, (img.shape[1] - size) // 2)
    return img[r0:r0 + size, c0:c0 + size]


@dataclass
class Source:
    """Where the clean data comes from: a 1-D signal (file or generated) or an image, and the noise."""
    one_d: bool = True  # a 1-D signal (tv1d), else an image
    signal: str = ""  # a clean 1-D signal file; empty: piecewise_constant(n, seg_len)
    n: int = 100_000
    seg_len: int = 500
    image: str = ""  # empty: load_image's default
    crop: int = 0
    sigma: float = 0.1  # std of the additive Gaussian noise
    seed: int = 0  # seed of the noise (and of the generated signal)


def make_data(src: Source) -> tuple[np.ndarray, np.ndarray, str]:
    """(clean, noisy, description), the noise drawn from src.seed."""
    rng = np.random.default_rng(src.seed)
    if src.one_d:
        if src.signal:
            clean, name = load_signal(src.signal), Path(src.signal).name
        else:
            clean, name = piecewise_constant(src.n, src.seg_len, rng), f"piecewise constant n={src.n}"
    else:
        img, name = load_image(src.image)
        clean = centre_crop(img, src.crop)
    if not np.all(np.isfinite(clean)):
        raise UserError(f"input {name!r} contains NaN or inf values; give finite data")
    if np.max(np.abs(clean)) > MAX_VALUE:  # differences and squares of larger values overflow float64
        raise UserError(f"input {name!r} has values up to {np.max(np.abs(clean)):g}; allowed: at most "
                        f"{MAX_VALUE:g} in absolute value")
    noisy = clean + src.sigma * rng.standard_normal(clean.shape)
    return clean, noisy, name


def psnr(x: np.ndarray, clean: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB, the peak being the clean data's range (1 for images in [0, 1])."""
    peak = float(clean.max() - clean.min()) or 1.0
    mse = float(np.mean((x - clean) ** 2))
    return 10.0 * math.log10(peak**2 / mse) if mse > 0 else float("inf")


