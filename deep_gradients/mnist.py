"""MNIST from the original IDX gz files (parsed here, no torchvision), and an offline stand-in: sklearn digits.

IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian header, magic 0x00000801 (labels,
1 dim) or 0x00000803 (images, 3 dims), one uint32 per dimension, then the uint8 data.
Each file is checked against its published md5 before it is parsed.

Everything is returned as whole tensors on the training device: 60k x 28 x 28 float32 is 188 MB, small enough
that a per-sample loader would only add overhead. Shuffling and augmentation happen in batch (train.py).
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cli import UserError
from files import atomic_write

MNIST_FILES = {  # split -> (file name, published md5)
    "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
SIZES = {"train-images-idx3-ubyte.gz": 9_912_422, "train-labels-idx1-ubyte.gz": 28_881,
         "t10k-images-idx3-ubyte.gz": 1_648_877, "t10k-labels-idx1-ubyte.gz": 4_542}  # bytes, to name truncation
# canonical mirrors; MNIST_MIRRORS="url1 url2" (space-separated) points --download at your own copy instead
MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # of the 60k training pixels in [0, 1]
DATASETS = ("digits", "mnist")
DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data" / "mnist"  # git-ignored


class DataError(UserError):
    """A problem with the user's data (missing, corrupt, offline): one line on stderr, exit 2."""


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_idx(path: str | os.PathLike) -> np.ndarray:
    """Read a gzipped IDX file -> uint8 array of the shape its header states."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:  # truncated or not gzip at all
        raise DataError(f"{path} is not a readable gzip file ({type(e).__name__}: {e})") from None
    if len(raw) < 4:
        raise DataError(f"{path} is too short for an IDX header ({len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise DataError(f"{path} has a bad IDX magic {raw[:4].hex()}; expected 00000801 (labels) or 00000803 (images)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    want = int(np.prod(shape))
    if len(raw) - header != want:
        raise DataError(f"{path} holds {len(raw) - header} data bytes but its header {shape} needs {want}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def check_file(path: Path, md5: str) -> None:
    if not path.exists():
        raise DataError(f"missing MNIST file {path}; pass --data-dir DIR holding the 4 IDX gz files, or --download")
    if not path.is_file():
        raise DataError(f"{path} is a folder, not the MNIST file {path.name}; pass --data-dir DIR holding the 4 IDX "
                        "gz files")
    got = md5sum(path)
    if got != md5:
        size, want = path.stat().st_size, SIZES.get(path.name)
        why = f"truncated: {size} of {want} bytes" if want and size < want else "corrupt or not the original file"
        raise DataError(f"md5 mismatch for {path}: got {got}, expected {md5} ({why}); delete it and retry --download")


def download(data_dir: str | os.PathLike, mirrors: tuple[str, ...] | None = None, timeout: float = 30.0) -> None:
    """Fetch the missing MNIST files into data_dir, trying each mirror; md5-checked, written atomically."""
    if mirrors is None:
        mirrors = tuple(os.environ.get("MNIST_MIRRORS", "").split()) or MIRRORS
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, md5 in MNIST_FILES.values():
        path = data_dir / name
        if path.is_file() and md5sum(path) == md5:
            continue
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:  # never leaves a half-written file under the real name
                atomic_write(path, lambda tmp, url=url: _fetch(url, tmp, md5, timeout))
                break
            except (UserError, ValueError, http.client.HTTPException) as e:  # incl. a cut-off body
                errors.append(f"{e}")
        else:  # the first mirror's failure, said once (the others usually fail the same way, e.g. offline)
            others = len(errors) - 1
            raise DataError(f"cannot download {errors[0]}"
                            + (f"; {others} other mirror{'s' * (others > 1)} failed too" if others else "")
                            + f"; put the 4 MNIST .gz files in {data_dir} by hand")


def _fetch(url: str, tmp: Path, md5: str, timeout: float) -> None:
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as e:  # the server answered, but not with the file
        raise ValueError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:  # no DNS, refused, timed out: no way to the server
        reason = getattr(e, "reason", e)
        raise ValueError(f"{url}: network unreachable ({getattr(reason, 'strerror', None) or reason})") from None
    with response, open(tmp, "wb") as f:
        while chunk := response.read(1 << 20):
            f.write(chunk)
    got = md5sum(tmp)
    if got != md5:
        raise ValueError(f"{url} sent a file whose md5 is {got}, not {md5}")


def load_mnist(data_dir: str | os.PathLike | None = None, download_missing: bool = False):
    """-> uint8 numpy arrays (x_train (60000,28,28), y_train, x_test (10000,28,28), y_test), md5-checked."""
    data_dir = Path(data_dir) if data_dir else DEFAULT_DATA_DIR
    if download_missing:
        download(data_dir)
    arrays = {}
    for split, (name, md5) in MNIST_FILES.items():
        check_file(data_dir / name, md5)
        arrays[split] = parse_idx(data_dir / name)
    for part in ("train", "test"):
        if arrays[f"{part}_images"].shape[0] != arrays[f"{part}_labels"].shape[0]:
            raise DataError(f"MNIST {part} images and labels disagree in count")
    return arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"]


def load_digits_28(seed: int = 0, test_fraction: float = 0.2):
    """sklearn's 1797 8x8 digits (0..16) framed like MNIST -> float arrays (N,28,28) in [0,1], fixed split.

    MNIST centres each digit in a 20x20 box inside a 28x28 frame, so each 8x8 image is upsampled
    bilinearly to 20x20 and padded by 4 pixels on every side.
    """
    from sklearn.datasets import load_digits  # bundled with sklearn: no download

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)  # (N, 1, 20, 20)
    x = F.pad(x, (4, 4, 4, 4)).squeeze(1).clamp(0, 1).numpy()  # (N, 28, 28)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))  # fixed, seeded split
    n_test = int(round(test_fraction * len(y)))
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


def load(name: str = "digits", data_dir=None, download: bool = False, device="cpu"):
    """-> (x_train, y_train, x_test, y_test): x float32 (N,1,28,28) standardized, y int64, all on `device`."""
    if name == "mnist":
        xtr, ytr, xte, yte = load_mnist(data_dir, download_missing=download)
        mean, std = MNIST_MEAN, MNIST_STD
        xtr, xte = xtr.astype(np.float32) / 255.0, xte.astype(np.float32) / 255.0
    elif name == "digits":
        xtr, ytr, xte, yte = load_digits_28()
        mean, std = float(xtr.mean()), float(xtr.std())  # their own train statistics
    else:
        raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")

    def to(x, y):
        x = (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) - mean) / std  # (N, 28, 28)
        return x.unsqueeze(1).to(device), torch.from_numpy(y.astype(np.int64)).to(device)  # (N,1,28,28), (N,)

    return (*to(xtr, ytr), *to(xte, yte))


def random_shift(x: torch.Tensor, max_shift: int, offsets: torch.Tensor) -> torch.Tensor:
    """Shift each image by its own (dy, dx) in [-max_shift, max_shift], in one batched gather.

    `offsets` (2, B) holds integers in [0, 2*max_shift] (drawn by the caller from a seeded CPU generator, for
    the whole global batch, so a sample gets the same shift on 1 process or N, on CPU or GPU).
    The border is filled by replicating the edge pixel, which for MNIST-framed digits is background.
    """
    if max_shift <= 0:
        return x
    B, C, H, W = x.shape
    s = max_shift
    xp = F.pad(x, (s, s, s, s), mode="replicate")  # (B, C, H+2s, W+2s)
    d = offsets.to(x.device)
    iy = torch.arange(H, device=x.device)[None, :] + d[0][:, None]  # (B, H) rows to read in xp
    ix = torch.arange(W, device=x.device)[None, :] + d[1][:, None]  # (B, W) columns to read in xp
    b = torch.arange(B, device=x.device)[:, None, None, None]
    c = torch.arange(C, device=x.device)[None, :, None, None]
    return xp[b, c, iy[:, None, :, None], ix[:, None, None, :]]  # (B, C, H, W)
