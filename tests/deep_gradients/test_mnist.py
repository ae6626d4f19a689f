"""deep_gradients/mnist.py: IDX parsing, md5 checks, download against a local server, digits, shifts."""
import gzip
import hashlib
import http.server
import socket
import struct
import threading
from functools import partial

import numpy as np
import pytest
import torch

import mnist as mn

MNIST_ARGS = ("--dataset", "mnist", "--depth", "8", "--width", "4", "--max-epochs", "1", "--no-progress",
              "--device", "cpu")


def write_idx(path, arr: np.ndarray, magic: bytes | None = None):
    arr = np.asarray(arr, dtype=np.uint8)
    header = magic or bytes([0, 0, 0x08, arr.ndim])
    header += struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())
    return path


def test_parse_synthetic_idx(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 3, 4), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    assert np.array_equal(mn.parse_idx(write_idx(tmp_path / "i.gz", imgs)), imgs)
    assert np.array_equal(mn.parse_idx(write_idx(tmp_path / "l.gz", labels)), labels)


@pytest.mark.parametrize("case", ["bad_magic", "short_data", "long_data", "truncated_gzip", "not_gzip", "empty"])
def test_parse_rejects_broken_files(tmp_path, case):
    path = tmp_path / "x.gz"
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    if case == "bad_magic":
        write_idx(path, arr, magic=bytes([0, 0, 0x0D, 3]))  # float32 code: not an MNIST file
    elif case in ("short_data", "long_data"):
        header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 3, 4)
        body = arr.tobytes()[:-1] if case == "short_data" else arr.tobytes() + b"\0"
        path.write_bytes(gzip.compress(header + body))
    elif case == "truncated_gzip":
        path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 200]) + bytes(200))[:30])
    elif case == "not_gzip":
        path.write_bytes(b"this is not gzip at all")
    else:
        path.write_bytes(gzip.compress(b""))
    with pytest.raises(mn.DataError, match="x.gz"):
        mn.parse_idx(path)


def test_parse_shared_test_set(shared_file):
    labels = mn.parse_idx(shared_file("mnist/t10k-labels-idx1-ubyte.gz"))
    images = mn.parse_idx(shared_file("mnist/t10k-images-idx3-ubyte.gz"))
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8 and labels.shape == (10000,)
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test digits
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert images.max() == 255 and images[:, 0, :].max() == 0  # the 20x20 digits are centred in a 28x28 frame
    assert images[:, :4].mean() < 0.02 * images[:, 10:18, 10:18].mean()


def test_load_mnist_shared_standardized(shared_file):
    d = shared_file("mnist/train-images-idx3-ubyte.gz").parent
    xtr, ytr, xte, yte = mn.load("mnist", d)
    assert xtr.shape == (60000, 1, 28, 28) and xte.shape == (10000, 1, 28, 28)
    assert xtr.dtype == torch.float32 and ytr.dtype == torch.int64
    assert ytr[:5].tolist() == [5, 0, 4, 1, 9]
    assert abs(xtr.mean().item()) < 1e-3 and abs(xtr.std().item() - 1) < 1e-3  # published mean/std of train
    assert xtr.min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)


def test_md5_mismatch_and_truncation_named(tmp_path, shared_file):
    src = shared_file("mnist/t10k-labels-idx1-ubyte.gz")
    name, md5 = mn.MNIST_FILES["test_labels"]
    (tmp_path / name).write_bytes(src.read_bytes()[:1000])
    with pytest.raises(mn.DataError, match="truncated: 1000 of 4542"):
        mn.check_file(tmp_path / name, md5)
    mn.check_file(src, md5)  # the real file passes


def make_bad_dir(shared_file, tmp_path, kind):
    """Copy the shared MNIST files, then spoil the test labels: truncated, corrupted (same size) or missing."""
    d = tmp_path / kind
    d.mkdir()
    src_dir = shared_file("mnist/t10k-labels-idx1-ubyte.gz").parent
    for f in src_dir.iterdir():
        if f.name.endswith(".gz"):
            (d / f.name).symlink_to(f)
    target = d / "t10k-labels-idx1-ubyte.gz"
    data = target.read_bytes()
    target.unlink()
    if kind == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif kind == "corrupt":
        target.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    elif kind == "folder":
        target.mkdir()
    return d


def test_corrupt_file_named(shared_file, tmp_path):
    d = make_bad_dir(shared_file, tmp_path, "corrupt")  # one flipped byte, same size
    with pytest.raises(mn.DataError, match="md5 mismatch .*t10k-labels.*corrupt"):
        mn.load("mnist", d)


@pytest.mark.parametrize("kind,needles", [("truncated", ("md5", "t10k-labels", "truncated")),
                                          ("missing", ("missing", "t10k-labels", "--data-dir")),
                                          ("folder", ("t10k-labels-idx1-ubyte.gz is a folder", "--data-dir"))])
def test_bad_files_give_one_line_error(run_script, clean_error, shared_file, tmp_path, kind, needles):
    d = make_bad_dir(shared_file, tmp_path, kind)
    r = run_script("deep_gradients/train.py", *MNIST_ARGS, "--data-dir", d, "--out-dir", tmp_path / "out", timeout=120)
    clean_error(r, *needles)
    assert not (tmp_path / "out" / "ckpt.pt").exists()


# ---------------------------------------------------------------------------------------------------
# download, against a local http.server


def serve(folder):
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def dead_url():
    with socket.socket() as s:  # a port nobody listens on: connection refused, at once
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


def test_download_from_local_mirror(shared_file, tmp_path):
    src = shared_file("mnist/train-images-idx3-ubyte.gz").parent
    server, url = serve(src)
    try:
        dest = tmp_path / "dl"
        dest.mkdir()
        name = mn.MNIST_FILES["test_labels"][0]
        (dest / name).write_bytes((src / name).read_bytes()[:1000])  # left over from a cut-off download
        mn.download(dest, mirrors=(dead_url(), url))  # the first mirror fails, the second one serves
        for name, md5 in mn.MNIST_FILES.values():
            assert hashlib.md5((dest / name).read_bytes()).hexdigest() == md5
        assert sorted(p.name for p in dest.iterdir()) == sorted(n for n, _ in mn.MNIST_FILES.values())  # no temp files
    finally:
        server.shutdown()


def test_download_rejects_wrong_content(tmp_path):
    bad = tmp_path / "bad_mirror"
    bad.mkdir()
    for name, _ in mn.MNIST_FILES.values():
        (bad / name).write_bytes(b"not mnist")
    server, url = serve(bad)
    try:
        with pytest.raises(mn.DataError, match="md5"):
            mn.download(tmp_path / "dl", mirrors=(url,))
        assert not any((tmp_path / "dl").iterdir())  # nothing half-written left behind
    finally:
        server.shutdown()


def test_download_offline_one_line_error(run_script, clean_error, tmp_path):
    """No DNS (a .invalid host never resolves) and a refused connection: one short line naming the first URL,
    saying the network is unreachable and where to put the files by hand (not 'cannot write FILE', not once per
    mirror)."""
    mirrors = f"http://no-such-host.invalid/mnist/ {dead_url()}"
    r = run_script("deep_gradients/train.py", *MNIST_ARGS, "--download", "--data-dir", tmp_path / "dl",
                   "--out-dir", tmp_path / "out", env={"MNIST_MIRRORS": mirrors}, timeout=120)
    url = "http://no-such-host.invalid/mnist/train-images-idx3-ubyte.gz"
    clean_error(r, f"cannot download {url}: network unreachable (", "; 1 other mirror failed too",
                f"; put the 4 MNIST .gz files in {tmp_path / 'dl'} by hand")
    line = r.stderr.strip()
    assert "\n" not in line and len(line) - len(str(tmp_path / "dl")) - len(url) < 150, line  # was 400 chars
    assert "cannot write" not in line and line.count("unreachable") == 1, line


def test_download_names_a_server_that_answers_without_the_file(tmp_path):
    """A mirror that answers 404 is reachable: the line says HTTP 404, not that the network is unreachable."""
    (tmp_path / "empty").mkdir()
    server, url = serve(tmp_path / "empty")
    try:
        with pytest.raises(mn.DataError) as e:
            mn.download(tmp_path / "dl", mirrors=(url,))
    finally:
        server.shutdown()
    assert str(e.value) == (f"cannot download {url}train-images-idx3-ubyte.gz: HTTP 404 File not found; "
                            f"put the 4 MNIST .gz files in {tmp_path / 'dl'} by hand")


# ---------------------------------------------------------------------------------------------------
# offline digits and the on-device shift augmentation


def test_digits_framed_standardized_and_split_fixed():
    xtr, ytr, xte, yte = mn.load("digits")
    assert xtr.shape[1:] == (1, 28, 28) and len(xtr) + len(xte) == 1797 and len(xte) == 359
    assert abs(xtr.mean().item()) < 1e-4 and abs(xtr.std().item() - 1) < 1e-4
    border = torch.cat([xtr[:, :, :4].flatten(), xtr[:, :, -4:].flatten(), xtr[..., :4].flatten(), xtr[..., -4:].flatten()])
    assert torch.all(border == xtr.min())  # 4-pixel empty frame like MNIST: digit in the central 20x20
    assert set(ytr.tolist()) == set(range(10)) and ytr.dtype == torch.int64
    again = mn.load("digits")
    assert torch.equal(again[3], yte) and torch.equal(again[2], xte)


def test_unknown_dataset():
    with pytest.raises(mn.DataError, match="digits, mnist"):
        mn.load("cifar")


def test_random_shift_moves_each_image_by_its_offset():
    x = torch.randn(3, 1, 10, 10)
    s = 2
    offsets = torch.tensor([[2, 0, 4], [2, 3, 1]])  # rows: dy, dx as indices into the 2-pixel padded image
    out = mn.random_shift(x, s, offsets)
    assert out.shape == x.shape
    assert torch.equal(out[0], x[0])  # offset (2, 2) = no shift
    # out[b, :, i, j] = x[b, :, i + dy - s, j + dx - s] where that lies inside the image
    assert torch.equal(out[1, :, 2:, :9], x[1, :, :8, 1:])
    assert torch.equal(out[2, :, :8, 1:], x[2, :, 2:, :9])
    # where the shift uncovers the frame, the edge pixel is repeated (MNIST's background), not a 0
    assert torch.equal(out[1, :, :2, :9], x[1, :, :1, 1:].expand(1, 2, 9))  # top rows: row 0 again
    assert torch.equal(out[1, :, 2:, 9], x[1, :, :8, 9])  # last column: column 9 again
    assert torch.equal(mn.random_shift(x, 0, offsets), x)
