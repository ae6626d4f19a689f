"""large_scale_optimization/datasets.py and the command line's bad-input handling (exit 2, one line)."""
import gzip
import shutil

import numpy as np
import pytest

PROJECT = "large_scale_optimization"
SCRIPT = "large_scale_optimization/train.py"
MNIST = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="module")
def datasets(load_module):
    return load_module(PROJECT, "datasets")


def test_read_idx_gz_parses_mnist_test_files(datasets, shared_file):
    labels = datasets.read_idx_gz(shared_file("mnist/t10k-labels-idx1-ubyte.gz"))
    images = datasets.read_idx_gz(shared_file("mnist/t10k-images-idx3-ubyte.gz"))
    assert labels.shape == (10000,) and images.shape == (10000, 28, 28)
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the well-known first test digits
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert images.dtype == np.uint8 and images.max() == 255


def test_mnist_download_path_md5_and_scaling(datasets, shared_file, tmp_path):
    """The user-facing download (temp file, md5, rename) exercised offline through a file:// mirror."""
    src = shared_file("mnist/t10k-labels-idx1-ubyte.gz").parent
    data = datasets.load_mnist(tmp_path, mirror=src.as_uri() + "/")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(MNIST)  # no .part leftovers
    assert data.X_train.shape == (60000, 785) and data.X_test.shape == (10000, 785)
    assert data.X_train[:, :-1].max() == 1.0 and data.X_train.min() == 0.0
    assert np.all(data.X_train[:, -1] == 1.0)
    assert data.n_classes == 10


def test_mnist_corrupt_file_is_a_clean_error(run_script, clean_error, shared_file, tmp_path):
    src = shared_file("mnist/t10k-labels-idx1-ubyte.gz").parent
    for name in MNIST:
        shutil.copy(src / name, tmp_path / name)
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x01" + b"\x00" * 8)
    r = run_script(SCRIPT, "--dataset", "mnist", "--data-dir", tmp_path, "--out-dir", tmp_path / "o")
    clean_error(r, "md5", "t10k-labels")


def test_csv_and_npz_loaders(datasets, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((40, 3))
    y = np.arange(40) % 4
    csv = tmp_path / "d.csv"
    np.savetxt(csv, np.column_stack([y, X]), delimiter=",", header="label,a,b,c", comments="")
    d = datasets.load_file(csv)
    assert d.X_train.shape[1] == 4 and len(d.y_train) + len(d.y_test) == 40 and d.n_classes == 4
    npz = tmp_path / "d.npz"
    np.savez(npz, X_train=X[:30], y_train=y[:30], X_test=X[30:], y_test=y[30:])
    d = datasets.load_file(npz)
    np.testing.assert_array_equal(d.X_train[:, :3], X[:30])
    np.testing.assert_array_equal(d.y_test, y[30:])


def test_synthetic_generator(datasets):
    d = datasets.make_synthetic(n=300, d=8, K=4, cond=1e3, seed=1)
    assert d.X_train.shape == (300, 9) and d.n_classes == 4
    s = np.linalg.svd(d.X_train[:, :-1], compute_uv=False)
    assert (s[0] / s[-1]) ** 2 > 100  # the requested ill-conditioning shows up


@pytest.mark.parametrize("case", ["method", "dataset", "lam", "labels", "shapes", "nan", "flag"])
def test_bad_input_exits_2_with_one_line(case, run_script, clean_error, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((20, 3))
    y = np.arange(20) % 2
    args, needles = [], []
    if case == "method":
        args, needles = ["--methods", "gd,adam"], ["adam", "allowed", "svrg"]
    elif case == "dataset":
        args, needles = ["--dataset", "cifar"], ["cifar", "allowed"]
    elif case == "lam":
        args, needles = ["--lam", "0", "--methods", "newton"], ["--lam", "> 0"]
    elif case == "flag":
        args, needles = ["--passes", "many"], ["--passes"]
    else:
        if case == "labels":
            y = y + 1  # labels 1..2: class 0 never occurs
            needles = ["labels", "0..K-1"]
        elif case == "shapes":
            y = y[:-1]
            needles = ["mismatched", "(20, 3)", "(19,)"]
        elif case == "nan":
            X[3, 1] = np.nan
            needles = ["nan"]
        np.savez(tmp_path / "bad.npz", X=X, y=y)
        args = ["--data", tmp_path / "bad.npz"]
    r = run_script(SCRIPT, *args, "--out-dir", tmp_path / "out", "--no-plots")
    clean_error(r, *needles)
    assert not (tmp_path / "out" / "results.json").exists()
