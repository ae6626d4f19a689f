"""large_scale_optimization/data.py: MNIST IDX parsing and download, .csv / .npz files, the synthetic generator."""
import warnings

import numpy as np
import pytest

import data
from cli import UserError


def test_read_idx_gz_parses_mnist_test_files(shared_file):
    labels = data.read_idx_gz(shared_file("mnist/t10k-labels-idx1-ubyte.gz"))
    images = data.read_idx_gz(shared_file("mnist/t10k-images-idx3-ubyte.gz"))
    assert labels.shape == (10000,) and images.shape == (10000, 28, 28)
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the well-known first test digits
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert images.dtype == np.uint8 and images.max() == 255


def test_mnist_download_is_atomic_and_md5_checked(shared_file, tmp_path):
    """The user-facing download (temp file, md5, rename) exercised offline through a file:// mirror."""
    src = shared_file("mnist/t10k-labels-idx1-ubyte.gz").parent
    name = "t10k-labels-idx1-ubyte.gz"
    path = data.mnist_file(tmp_path, name, mirror=src.as_uri() + "/")
    assert path.read_bytes() == (src / name).read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no .part leftovers
    with pytest.raises(UserError, match="md5"):  # a mirror serving the wrong bytes
        data.download((src / "t10k-images-idx3-ubyte.gz").as_uri(), tmp_path / "x.gz", data.MNIST_FILES[name])
    assert not (tmp_path / "x.gz").exists() and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(UserError, match="cannot download"):
        data.download((tmp_path / "missing.gz").as_uri(), tmp_path / "y.gz", "0" * 32)


def test_csv_and_npz_loaders(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((40, 3))
    y = np.arange(40) % 4
    csv = tmp_path / "d.csv"
    np.savetxt(csv, np.column_stack([y, X]), delimiter=",", header="label,a,b,c", comments="")
    d = data.load_file(csv)
    assert d.X_train.shape[1] == 4 and len(d.y_train) + len(d.y_test) == 40 and d.n_classes == 4
    npz = tmp_path / "d.npz"
    np.savez(npz, X_train=X[:30], y_train=y[:30], X_test=X[30:], y_test=y[30:])
    d = data.load_file(npz)
    np.testing.assert_array_equal(d.X_train[:, :3], X[:30])
    np.testing.assert_array_equal(d.y_test, y[30:])
    y_bad = y.copy()
    y_bad[35] = 4  # a test label no training sample has: the model has no row for it
    np.savez(npz, X_train=X[:30], y_train=y[:30], X_test=X[30:], y_test=y_bad[30:])
    with pytest.raises(UserError, match="test labels must be in 0..3"):
        data.load_file(npz)


def test_tiny_csv_splits_without_stratifying(tmp_path):
    """4 rows, 2 classes: a stratified 75/25 split cannot hold both classes in its one test row, and
    scikit-learn raised (a traceback); now the split is plain."""
    csv = tmp_path / "tiny.csv"
    csv.write_text("0,1\n1,2\n0,3\n1,4\n")
    d = data.load_file(csv)
    assert len(d.y_train) == 3 and len(d.y_test) == 1
    csv.write_text("label,a\n")  # header only: our one-line error, and no numpy warning printed before it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserError, match="no data rows"):
            data.load_file(csv)


def test_synthetic_generator():
    d = data.make_synthetic(n=300, d=8, K=4, cond=1e3, seed=1)
    assert d.X_train.shape == (300, 9) and d.n_classes == 4
    s = np.linalg.svd(d.X_train[:, :-1], compute_uv=False)
    assert 300 < (s[0] / s[-1]) ** 2 < 3000  # the requested condition number 1e3 shows up (945 measured)




def test_csv_header_is_detected_not_guessed(tmp_path):
    """A first row of text is a header; a first row of numbers is data (all four rows kept); a first row with
    an empty field is bad data, refused, not dropped as a header."""
    csv = tmp_path / "h.csv"
    for text in ("0,1.5\n1,2.5\n0,3.5\n1,4.5\n", "label,x\n0,1.5\n1,2.5\n0,3.5\n1,4.5\n"):
        csv.write_text(text)
        d = data.load_file(csv)
        assert sorted(np.concatenate([d.X_train[:, 0], d.X_test[:, 0]]).tolist()) == [1.5, 2.5, 3.5, 4.5]
    csv.write_text("0,\n1,2.5\n0,3.5\n1,4.5\n")
    with pytest.raises(UserError, match="not a numeric csv"):
        data.load_file(csv)


def test_large_labels_are_refused_without_building_range_k():
    """K = 2^30 + 1 from one large label: refused by counting the distinct labels (a set(range(K)) took
    gigabytes); the message names the first labels that never occur."""
    y = np.array([0, 1, 2**30, 1])
    with pytest.raises(UserError, match=r"K=1073741825 .* 3 distinct labels, \[2, 3\] never occur"):
        data.check_labels(y, y[:0])
