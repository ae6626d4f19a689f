"""Data for the logistic-regression experiments: digits, MNIST (IDX gz), your own .csv/.npz, synthetic.

Every loader returns a ``Dataset`` whose feature matrices already end in the constant-1 bias column
(the objective penalises the bias like any other weight, see model.py). Pixel features are scaled to
[0, 1] (digits: /16, MNIST: /255); features from a .csv/.npz are used as given.

Bad data raises ``cli.UserError`` with a one-line message (exit code 2 on the command line).
MNIST: LeCun, Cortes, Burges, http://yann.lecun.com/exdb/mnist/ (IDX format described there).
"""
from __future__ import annotations

import gzip
import hashlib
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import model
from cli import UserError
from files import atomic_write

DATASETS = ("digits", "mnist", "synthetic")
SPLIT_SEED = 0  # the digits / file train-test split is fixed, independent of --seed
MAX_FEATURE = 1e100  # larger features overflow X^T X and the smoothness constants

MNIST_FILES = {  # name -> published md5 (the values torchvision checks as well)
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # the mirror PyTorch uses


@dataclass
class Dataset:
    name: str
    X_train: np.ndarray  # (n, d+1), last column = 1
    y_train: np.ndarray  # (n,) int64 in 0..K-1
    X_test: np.ndarray  # (n_test, d+1)
    y_test: np.ndarray  # (n_test,)

    @property
    def n_classes(self) -> int:
        return int(self.y_train.max()) + 1


def add_bias(X: np.ndarray) -> np.ndarray:
    return np.hstack([X, np.ones((X.shape[0], 1), dtype=X.dtype)])  # (n, d+1)


def check_arrays(X, y, what: str):
    """Shapes, finiteness and labels; returns float64 X and int64 y."""
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2:
        raise UserError(f"{what}: features must be a 2-D array (n, d), got shape {X.shape}")
    if y.ndim != 1 or len(y) != len(X):
        raise UserError(f"{what}: mismatched shapes, features {X.shape} but labels {y.shape}")
    if len(y) == 0:
        raise UserError(f"{what}: no samples")
    try:
        X = X.astype(np.float64)
        yf = y.astype(np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{what}: features and labels must be numeric") from None
    if not np.all(np.isfinite(X)):
        raise UserError(f"{what}: features contain NaN or inf ({int(np.sum(~np.isfinite(X)))} entries)")
    if np.abs(X).max() > MAX_FEATURE:
        raise UserError(f"{what}: features must be at most {MAX_FEATURE:g} in absolute value (their squares "
                        f"must not overflow), got {np.abs(X).max():g}; scale them")
    if not np.all(np.isfinite(yf)) or np.any(yf != np.round(yf)) or yf.min() < 0 or yf.max() >= 2**31:
        raise UserError(f"{what}: labels must be integers 0..K-1, got values in [{yf.min():g}, {yf.max():g}]"
                        f" (is the first column the label?)")
    return X, yf.astype(np.int64)


def check_labels(y_train, y_test):
    """Every class 0..K-1 occurs in the training labels, K >= 2, and the test labels are among them."""
    classes = np.unique(y_train)
    K = int(classes[-1]) + 1
    if K < 2:
        raise UserError(f"need at least 2 classes in the training set; every training label is {classes[0]}")
    if len(classes) != K:  # then one of 0..len(classes) is missing: never build range(K) for a huge K
        missing = np.setdiff1d(np.arange(len(classes) + 1), classes)[:5].tolist()
        raise UserError(f"labels must be integers 0..K-1 with every class in the training set; K={K} (the "
                        f"largest label + 1) but only {len(classes)} distinct labels, {missing} never occur "
                        f"(is the first column the label?)")
    if len(y_test) and y_test.max() >= K:
        raise UserError(f"test labels must be in 0..{K - 1} (the training classes), got {int(y_test.max())}")


def finish(name, X_train, y_train, X_test, y_test) -> Dataset:
    X_train, y_train = check_arrays(X_train, y_train, f"{name} train")
    X_test, y_test = check_arrays(X_test, y_test, f"{name} test")
    if X_test.shape[1] != X_train.shape[1]:
        raise UserError(f"{name}: mismatched shapes, train has {X_train.shape[1]} features, "
                        f"test has {X_test.shape[1]}")
    check_labels(y_train, y_test)
    return Dataset(name, add_bias(X_train), y_train, add_bias(X_test), y_test)


# ------------------------------------------------------------------------------------------------
# scikit-learn digits (1797 x 8 x 8, bundled with scikit-learn: offline)


def load_digits_dataset(test_size: float = 0.25) -> Dataset:
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X / 16.0, y, test_size=test_size, random_state=SPLIT_SEED,
                                              stratify=y)
    return finish("digits", X_tr, y_tr, X_te, y_te)


# ------------------------------------------------------------------------------------------------
# MNIST from the original IDX gz files


def md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: Path, expected_md5: str):
    """Fetch url into dest atomically (temp file + rename), checking the md5 before the rename."""

    def fetch(tmp: Path):
        try:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=30) as resp:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
        except OSError as e:  # URLError is an OSError: offline, DNS, 404, ...
            raise UserError(f"cannot download {url} into {dest.parent} ({e}); put the MNIST .gz files there "
                            f"by hand (--data-dir)") from None
        got = md5(tmp)
        if got != expected_md5:
            raise UserError(f"downloaded {url} has md5 {got}, expected {expected_md5}")

    atomic_write(dest, fetch)


def read_idx_gz(path: Path) -> np.ndarray:
    """Parse a gzipped IDX file: 2 zero bytes, dtype code (0x08 = uint8), ndim, ndim big-endian
    uint32 sizes, then the data in C order."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path}: not a uint8 IDX file (magic {raw[:4].hex()})")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(dims)):
        raise UserError(f"{path}: IDX header says {dims} but holds {len(raw) - offset} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def mnist_file(data_dir: Path, name: str, mirror: str) -> Path:
    path = data_dir / name
    if path.is_dir():  # open() would raise IsADirectoryError
        raise UserError(f"{path}: is a folder; --data-dir must hold the MNIST file {name}")
    if not path.exists():
        download(mirror + name, path, MNIST_FILES[name])
    got = md5(path)
    if got != MNIST_FILES[name]:
        raise UserError(f"{path} has md5 {got}, expected {MNIST_FILES[name]} (corrupt or wrong file)")
    return path


def load_mnist(data_dir: str | Path, mirror: str = MNIST_MIRROR) -> Dataset:
    data_dir = Path(data_dir)
    arrays = {name: read_idx_gz(mnist_file(data_dir, name, mirror)) for name in MNIST_FILES}
    X_tr = arrays["train-images-idx3-ubyte.gz"].reshape(-1, 784) / 255.0  # (60000, 784) in [0, 1]
    X_te = arrays["t10k-images-idx3-ubyte.gz"].reshape(-1, 784) / 255.0  # (10000, 784)
    return finish("mnist", X_tr, arrays["train-labels-idx1-ubyte.gz"], X_te, arrays["t10k-labels-idx1-ubyte.gz"])


# ------------------------------------------------------------------------------------------------
# your own data


def read_npz(path: Path):
    """(X, y) or (X_train, y_train, X_test, y_test) from an .npz with those keys."""
    try:
        with np.load(path, allow_pickle=False) as z:
            z = {key: z[key] for key in z.files}
    except (OSError, ValueError, TypeError, zipfile.BadZipFile) as e:  # not a zip, object arrays, a .npy
        raise UserError(f"{path}: not a readable .npz ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    keys = set(z)
    if {"X_train", "y_train", "X_test", "y_test"} <= keys:
        return z["X_train"], z["y_train"], z["X_test"], z["y_test"]
    if {"X_train", "y_train"} <= keys:
        return z["X_train"], z["y_train"]
    if {"X", "y"} <= keys:
        return z["X"], z["y"]
    raise UserError(f"{path}: expected keys X_train, y_train [X_test, y_test] or X, y; found {sorted(keys)}")


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_csv(path: Path):
    """(X, y) from a csv: the first column is the label. The first row is a header when every one of its
    fields is text (non-empty, not a number); a row with an empty or a bad field is an error, not a header."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
            f.read()  # the whole file must be UTF-8, not only its first line
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
    fields = [v.strip() for v in first.strip().split(",")]
    header = all(fields) and not any(is_number(v) for v in fields)
    try:
        with warnings.catch_warnings():  # an empty file: our one-line error below, not numpy's warning
            warnings.simplefilter("ignore", UserWarning)
            table = np.loadtxt(path, delimiter=",", skiprows=int(header), ndmin=2, encoding="utf-8")
    except ValueError as e:
        raise UserError(f"{path}: not a numeric csv ({str(e).splitlines()[0]})") from None
    if table.shape[0] == 0:
        raise UserError(f"{path}: no data rows")
    if table.shape[1] < 2:
        raise UserError(f"{path}: need a label column and at least one feature column")
    return table[:, 1:], table[:, 0]


def load_file(path: str | Path, test_size: float = 0.25) -> Dataset:
    """.npz: keys X_train, y_train and optionally X_test, y_test (else X, y; split 75/25, seeded).
    .csv: one sample per row, the FIRST column is the label (0..K-1), the rest are features; a header row
    (all text) is skipped. Features are used as given (scale them yourself)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"--data {path}: no such file")
    if path.is_dir():
        raise UserError(f"--data {path}: is a folder; give a .csv or .npz file")
    if path.suffix not in (".npz", ".csv"):
        raise UserError(f"--data {path}: unknown file type {path.suffix!r}; allowed: .csv, .npz")
    arrays = read_npz(path) if path.suffix == ".npz" else read_csv(path)
    if len(arrays) == 4:
        return finish(path.name, *arrays)
    X_tr, y_tr = check_arrays(*arrays, path.name)
    check_labels(y_tr, y_tr[:0])
    if len(y_tr) < 2:
        raise UserError(f"{path}: {len(y_tr)} sample; need at least 2 to split into train and test")
    n_test = int(np.ceil(test_size * len(y_tr)))  # train_test_split's rounding
    K = int(y_tr.max()) + 1  # stratify only where both splits can hold every class (sklearn raises otherwise)
    strat = y_tr if np.min(np.bincount(y_tr)) >= 2 and min(n_test, len(y_tr) - n_test) >= K else None
    X_tr, X_te, y_tr, y_te = train_test_split(X_tr, y_tr, test_size=test_size, random_state=SPLIT_SEED,
                                              stratify=strat)
    return finish(path.name, X_tr, y_tr, X_te, y_te)


# ------------------------------------------------------------------------------------------------
# synthetic: Gaussian features with a chosen condition number, labels drawn from a softmax model


def make_synthetic(n: int = 5000, d: int = 50, K: int = 5, cond: float = 100.0, seed: int = 0,
                   n_test: int | None = None) -> Dataset:
    """x ~ N(0, S) with S's eigenvalues log-spaced from 1 down to 1/cond (so ||X||_2^2 / n ~ 1 and the
    data term's conditioning ~ cond), then y ~ softmax(W_true x) with a random W_true."""
    if min(n, d, K) < 1 or K < 2 or cond < 1:
        raise UserError(f"synthetic: need n, d >= 1, K >= 2, cond >= 1; got n={n} d={d} K={K} cond={cond}")
    rng = np.random.default_rng(seed)
    n_test = n_test if n_test is not None else max(n // 4, 1)
    scales = np.logspace(0, -0.5 * np.log10(cond), d)  # std devs: variances span cond
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))  # random rotation
    X = (rng.standard_normal((n + n_test, d)) * scales) @ Q.T  # (n + n_test, d)
    W_true = rng.standard_normal((K, d)) * 3.0 / np.sqrt(np.mean(scales**2) * d)
    P = model.probabilities(W_true, X)  # (n + n_test, K)
    y = (P.cumsum(1) < rng.random((n + n_test, 1))).sum(1)  # inverse-CDF sample per row
    y = np.minimum(y, K - 1)
    for k in range(min(K, n)):  # a class the draw missed gets one training sample, so labels are 0..K-1
        if not np.any(y[:n] == k):
            y[k] = k
    return finish("synthetic", X[:n], y[:n], X[n:], y[n:])


def load_dataset(name: str, data_dir: str | Path | None = None, data_file: str | Path | None = None,
                 seed: int = 0, **synthetic) -> Dataset:
    if data_file:
        return load_file(data_file)
    if name == "digits":
        return load_digits_dataset()
    if name == "mnist":
        if data_dir is None:
            raise UserError("--dataset mnist needs --data-dir DIR (folder of the four IDX .gz files)")
        return load_mnist(data_dir)
    if name == "synthetic":
        return make_synthetic(seed=seed, **synthetic)
    raise UserError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)} (or --data FILE.csv/.npz)")
