"""large_scale_optimization/data_sources.py and the command line's bad-input handling (exit 2, one line)."""
import gzip
import shutil
import subprocess
import warnings

import numpy as np
import pytest


SCRIPT = "large_scale_optimization/train.py"
MNIST = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="module")
def data_sources(load_module):
    return load_module("large_scale_optimization", "data_sources")


def test_read_idx_gz_parses_mnist_test_files(data_sources, shared_file):
    labels = data_sources.read_idx_gz(shared_file("mnist/t10k-labels-idx1-ubyte.gz"))
    images = data_sources.read_idx_gz(shared_file("mnist/t10k-images-idx3-ubyte.gz"))
    assert labels.shape == (10000,) and images.shape == (10000, 28, 28)
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the well-known first test digits
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert images.dtype == np.uint8 and images.max() == 255


def test_mnist_download_is_atomic_and_md5_checked(data_sources, shared_file, tmp_path):
    """The user-facing download (temp file, md5, rename) exercised offline through a file:// mirror."""
    src = shared_file("mnist/t10k-labels-idx1-ubyte.gz").parent
    name = "t10k-labels-idx1-ubyte.gz"
    path = data_sources.mnist_file(tmp_path, name, mirror=src.as_uri() + "/")
    assert path.read_bytes() == (src / name).read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no .part leftovers
    with pytest.raises(data_sources.DataError, match="md5"):  # a mirror serving the wrong bytes
        data_sources.download((src / "t10k-images-idx3-ubyte.gz").as_uri(), tmp_path / "x.gz", data_sources.MNIST_FILES[name])
    assert not (tmp_path / "x.gz").exists() and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(data_sources.DataError, match="cannot download"):
        data_sources.download((tmp_path / "missing.gz").as_uri(), tmp_path / "y.gz", "0" * 32)


def test_mnist_corrupt_file_is_a_clean_error(run_script, clean_error, shared_file, tmp_path):
    src = shared_file("mnist/t10k-labels-idx1-ubyte.gz").parent
    for name in MNIST:
        shutil.copy(src / name, tmp_path / name)
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x01" + b"\x00" * 8)
    r = run_script(SCRIPT, "--dataset", "mnist", "--data-dir", tmp_path, "--out-dir", tmp_path / "o")
    clean_error(r, "md5", "t10k-labels")


def test_csv_and_npz_loaders(data_sources, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((40, 3))
    y = np.arange(40) % 4
    csv = tmp_path / "d.csv"
    np.savetxt(csv, np.column_stack([y, X]), delimiter=",", header="label,a,b,c", comments="")
    d = data_sources.load_file(csv)
    assert d.X_train.shape[1] == 4 and len(d.y_train) + len(d.y_test) == 40 and d.n_classes == 4
    npz = tmp_path / "d.npz"
    np.savez(npz, X_train=X[:30], y_train=y[:30], X_test=X[30:], y_test=y[30:])
    d = data_sources.load_file(npz)
    np.testing.assert_array_equal(d.X_train[:, :3], X[:30])
    np.testing.assert_array_equal(d.y_test, y[30:])
    y_bad = y.copy()
    y_bad[35] = 4  # a test label no training sample has: the model has no row for it
    np.savez(npz, X_train=X[:30], y_train=y[:30], X_test=X[30:], y_test=y_bad[30:])
    with pytest.raises(data_sources.DataError, match="test labels must be in 0..3"):
        data_sources.load_file(npz)


def test_tiny_csv_splits_without_stratifying(data_sources, tmp_path):
    """4 rows, 2 classes: a stratified 75/25 split cannot hold both classes in its one test row, and
    scikit-learn raised (a traceback); now the split is plain."""
    csv = tmp_path / "tiny.csv"
    csv.write_text("0,1\n1,2\n0,3\n1,4\n")
    d = data_sources.load_file(csv)
    assert len(d.y_train) == 3 and len(d.y_test) == 1
    csv.write_text("label,a\n")  # header only: our one-line error, and no numpy warning printed before it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(data_sources.DataError, match="no data rows"):
            data_sources.load_file(csv)


def test_synthetic_generator(data_sources):
    d = data_sources.make_synthetic(n=300, d=8, K=4, cond=1e3, seed=1)
    assert d.X_train.shape == (300, 9) and d.n_classes == 4
    s = np.linalg.svd(d.X_train[:, :-1], compute_uv=False)
    assert 300 < (s[0] / s[-1]) ** 2 < 3000  # the requested condition number 1e3 shows up (945 measured)


def bad_input_args(case, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((20, 3))
    y = np.arange(20) % 2
    if case == "method":
        return ["--methods", "gd,adam"], ["adam", "allowed", "svrg"]
    if case == "dataset":
        return ["--dataset", "cifar"], ["cifar", "allowed"]
    if case == "lam":
        return ["--lam", "0", "--methods", "newton"], ["--lam", "> 0"]
    if case == "flag":
        return ["--passes", "many"], ["--passes"]
    if case == "labels":
        y, needles = y + 1, ["labels", "0..K-1"]  # labels 1..2: class 0 never occurs
    elif case == "shapes":
        y, needles = y[:-1], ["mismatched", "(20, 3)", "(19,)"]
    elif case == "nan":
        X[3, 1] = np.nan
        needles = ["nan"]
    elif case == "npz":
        (tmp_path / "bad.npz").write_text("not a zip archive")
        return ["--data", tmp_path / "bad.npz"], ["bad.npz", "not a readable .npz"]
    elif case == "threads":
        return ["--threads", "0"], ["--threads", "positive"]
    elif case == "newton_max_iter":  # 0 would stop the f* solve at W = 0: every gap wrong, no error
        return ["--newton-max-iter", "0"], ["--newton-max-iter", "positive", "got 0"]
    elif case == "precond_size":  # was a traceback from rng.choice
        return ["--precond-size", "-5", "--methods", "newton_cg"], ["--precond-size", "positive", "-5"]
    elif case == "empty_csv":  # header only: was numpy's UserWarning (two more lines) before the error
        (tmp_path / "empty.csv").write_text("label,a,b\n")
        return ["--data", tmp_path / "empty.csv"], ["empty.csv", "no data rows"]
    elif case == "filetype":
        (tmp_path / "data.txt").write_text("0,1\n1,2\n")
        return ["--data", tmp_path / "data.txt"], ["unknown file type", ".csv, .npz"]
    np.savez(tmp_path / "bad.npz", X=X, y=y)
    return ["--data", tmp_path / "bad.npz"], needles


@pytest.mark.parametrize("case", ["method", "nan"])
def test_bad_input_exits_2_with_one_line_cli(case, run_script, clean_error, tmp_path):
    args, needles = bad_input_args(case, tmp_path)
    r = run_script(SCRIPT, *args, "--out-dir", tmp_path / "out", "--no-plots")
    clean_error(r, *needles)
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.parametrize("case", ["method", "dataset", "lam", "labels", "shapes", "nan", "flag", "filetype", "npz",
                                  "threads", "newton_max_iter", "precond_size", "empty_csv"])
def test_bad_input_exits_2_with_one_line(case, load_module, clean_error, capsys, tmp_path):
    """The same checks in-process through main(argv) (cheaper than a subprocess per case)."""
    train = load_module("large_scale_optimization", "train")
    args, needles = bad_input_args(case, tmp_path)
    with pytest.raises(SystemExit) as exc:
        train.main([str(a) for a in args] + ["--out-dir", str(tmp_path / "out"), "--no-plots"])
    captured = capsys.readouterr()
    clean_error(subprocess.CompletedProcess(args, exc.value.code, captured.out, captured.err), *needles)
    assert not (tmp_path / "out" / "results.json").exists()
