"""deep_gradients/scratch.py: every hand-written backward pass against finite differences and autograd,
and the whole hand-written ResNet against model.py's ResNet under autograd (float64, tolerance 1e-8)."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

TOL = 1e-8


import mnist
import model as M
import scratch as S
from cli import UserError
from helpers import assert_made_here_now


def rand(*shape, seed=0):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def fd_grad(f, x, h=1e-3):
    """Finite differences of the scalar f() with respect to every element of x (changed in place, restored).

    The five-point stencil (error O(h^4)) with h = 1e-3 keeps both truncation and float64 rounding error
    (about 1e-16 * |f| / h) far below the 1e-8 tolerance."""
    g = torch.zeros_like(x)
    flat, gflat = x.view(-1), g.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        vals = []
        for step in (2 * h, h, -h, -2 * h):
            flat[i] = old + step
            vals.append(float(f()))
        flat[i] = old
        gflat[i] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)
    return g


def autograd_grads(f, *xs):
    xs = [x.detach().clone().requires_grad_(True) for x in xs]
    out = f(*xs)
    return out.detach(), torch.autograd.grad(out, xs, allow_unused=True)


def close(a, b, tol=TOL):
    assert a.shape == b.shape, (a.shape, b.shape)
    err = (a - b).abs().max().item()
    assert err < tol, f"max abs error {err:.3g} >= {tol}"


@pytest.mark.parametrize("stride,padding,k,bias,hw", [
    (1, 0, 3, True, 5), (1, 1, 3, False, 5), (2, 1, 3, True, 6), (2, 0, 1, True, 7), (3, 2, 3, False, 7),
    (2, 1, 3, True, 5),
])
def test_conv2d_matches_fd_and_autograd(stride, padding, k, bias, hw):
    x, w, R = rand(2, 3, hw, hw, seed=1), rand(4, 3, k, k, seed=2), None
    b = rand(4, seed=3) if bias else None
    out, cache = S.conv2d_forward(x, w, b, stride, padding)
    close(out, F.conv2d(x, w, b, stride=stride, padding=padding))
    R = rand(*out.shape, seed=4)
    dx, dw, db = S.conv2d_backward(R, cache)
    loss = lambda: (S.conv2d_forward(x, w, b, stride, padding)[0] * R).sum()  # noqa: E731
    close(dx, fd_grad(loss, x))
    close(dw, fd_grad(loss, w))
    args = (x, w) + ((b,) if bias else ())
    _, ag = autograd_grads(lambda *a: (F.conv2d(a[0], a[1], a[2] if bias else None, stride=stride,
                                                 padding=padding) * R).sum(), *args)
    close(dx, ag[0])
    close(dw, ag[1])
    if bias:
        close(db, fd_grad(loss, b))
        close(db, ag[2])
    else:
        assert db is None


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_matches_fd_autograd_and_running_stats(train):
    x, gamma, beta = rand(4, 3, 3, 3, seed=1) * 2 + 0.5, rand(3, seed=2), rand(3, seed=3)
    rm0, rv0 = rand(3, seed=4) * 0.1, rand(3, seed=5).abs() + 0.5
    rm, rv = rm0.clone(), rv0.clone()
    out, cache = S.batchnorm_forward(x, gamma, beta, rm, rv, train, 0.1, 1e-5)
    ref_rm, ref_rv = rm0.clone(), rv0.clone()
    ref = F.batch_norm(x, ref_rm, ref_rv, gamma, beta, training=train, momentum=0.1, eps=1e-5)
    close(out, ref)
    close(rm, ref_rm)  # running stats updated like torch (unbiased variance for running_var)
    close(rv, ref_rv)
    if train:
        assert not torch.equal(rv, rv0)
    R = rand(*out.shape, seed=6)
    dx, dg, db = S.batchnorm_backward(R, cache)

    def loss():
        return (S.batchnorm_forward(x, gamma, beta, rm0.clone(), rv0.clone(), train)[0] * R).sum()

    for mine, t in ((dx, x), (dg, gamma), (db, beta)):
        close(mine, fd_grad(loss, t))
    _, ag = autograd_grads(lambda a, g, b: (F.batch_norm(a, rm0.clone(), rv0.clone(), g, b, training=train)
                                            * R).sum(), x, gamma, beta)
    for mine, a in zip((dx, dg, db), ag):
        close(mine, a)


def test_relu_add_gap_linear_softmax_ce():
    # ReLU (inputs kept away from the kink so finite differences are exact)
    x = rand(3, 4, 2, 2, seed=1)
    x = x + 0.1 * x.sign()  # no input within 2h of the kink
    out, mask = S.relu_forward(x)
    close(out, F.relu(x))
    R = rand(*x.shape, seed=2)
    close(S.relu_backward(R, mask), fd_grad(lambda: (S.relu_forward(x)[0] * R).sum(), x))
    close(S.relu_backward(R, mask), autograd_grads(lambda a: (F.relu(a) * R).sum(), x)[1][0])
    # residual add
    a, b = rand(2, 3, seed=3), rand(2, 3, seed=4)
    out, c = S.add_forward(a, b)
    R = rand(2, 3, seed=5)
    da, db = S.add_backward(R, c)
    f = lambda: (S.add_forward(a, b)[0] * R).sum()  # noqa: E731
    close(da, fd_grad(f, a))
    close(db, fd_grad(f, b))
    # global average pooling
    x = rand(2, 3, 4, 5, seed=6)
    out, c = S.gap_forward(x)
    close(out, F.adaptive_avg_pool2d(x, 1).flatten(1))
    R = rand(2, 3, seed=7)
    dx = S.gap_backward(R, c)
    close(dx, fd_grad(lambda: (S.gap_forward(x)[0] * R).sum(), x))
    close(dx, autograd_grads(lambda t: (F.adaptive_avg_pool2d(t, 1).flatten(1) * R).sum(), x)[1][0])
    # linear
    x, w, b = rand(3, 5, seed=8), rand(4, 5, seed=9), rand(4, seed=10)
    out, c = S.linear_forward(x, w, b)
    close(out, F.linear(x, w, b))
    R = rand(3, 4, seed=11)
    grads = S.linear_backward(R, c)
    f = lambda: (S.linear_forward(x, w, b)[0] * R).sum()  # noqa: E731
    _, ag = autograd_grads(lambda *t: (F.linear(*t) * R).sum(), x, w, b)
    for mine, t, a in zip(grads, (x, w, b), ag):
        close(mine, fd_grad(f, t))
        close(mine, a)
    # softmax cross-entropy (large logits: the max shift must keep it finite)
    logits, y = rand(6, 10, seed=12) * 30, torch.tensor([0, 3, 9, 3, 1, 7])
    loss, c = S.softmax_ce_forward(logits, y)
    close(loss, F.cross_entropy(logits, y))
    d = S.softmax_ce_backward(c)
    close(d, fd_grad(lambda: S.softmax_ce_forward(logits, y)[0], logits))
    close(d, autograd_grads(lambda t: F.cross_entropy(t, y), logits)[1][0])


def _perturbed_resnet(batch_norm, residual, seed=0):
    torch.manual_seed(seed)
    net = M.ResNet(depth=8, width=4, batch_norm=batch_norm, residual=residual).double()
    with torch.no_grad():  # non-trivial BN parameters and running statistics
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
            elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None:
                m.bias.normal_(0, 0.1)
    return net


@pytest.mark.parametrize("batch_norm,residual", [(True, True), (False, True), (True, False), (False, False)])
def test_network_matches_autograd(batch_norm, residual):
    net = _perturbed_resnet(batch_norm, residual)
    scratch = S.ScratchResNet.from_state_dict(net.state_dict())
    x, y = rand(6, 1, 28, 28, seed=1), torch.tensor([0, 1, 2, 3, 4, 5])
    # train mode: loss, every parameter gradient, the input gradient, and the running-statistics update
    xr = x.clone().requires_grad_(True)
    ref_loss = F.cross_entropy(net(xr), y)
    ref_loss.backward()
    logits = scratch.forward(x)
    loss, c = S.softmax_ce_forward(logits, y)
    dx = scratch.backward(S.softmax_ce_backward(c))
    close(loss, ref_loss.detach())
    close(dx, xr.grad)
    names = {n for n, _ in net.named_parameters()}
    assert set(scratch.grads) == names
    for n, p in net.named_parameters():
        close(scratch.grads[n], p.grad)
    for n, buf in net.state_dict().items():  # running_mean / running_var / num_batches_tracked
        if n not in names:
            close(scratch.p[n].double(), buf.double())
    # eval mode: running statistics are used and left alone
    net.eval()
    scratch.train = False
    before = scratch.state_dict()
    close(scratch.forward(x), net(x).detach())
    for k, v in before.items():
        assert torch.equal(v, scratch.p[k])


@pytest.mark.parametrize("nesterov", [False, True])
def test_hand_written_sgd_matches_torch_and_lowers_loss(nesterov):
    x_train, y_train, _, _ = mnist.load("digits")
    x, y = x_train[:64].double(), y_train[:64]
    net = _perturbed_resnet(True, True, seed=1)
    scratch = S.ScratchResNet.from_state_dict(net.state_dict())
    opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9, weight_decay=1e-4, nesterov=nesterov)
    sopt = S.SGD(scratch, lr=0.2, momentum=0.9, weight_decay=1e-4, nesterov=nesterov)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        loss, _ = scratch.loss_and_grads(x, y)
        sopt.step()
        losses.append(loss.item())
    for n, v in net.state_dict().items():
        close(scratch.p[n].double(), v.double())  # weights, running stats and the step counter
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < losses[0] - 0.1, losses


def test_train_loop_lowers_the_loss_and_beats_chance(monkeypatch):
    """scratch.train itself (batching, SGD step, eval): 30 hand-written steps must learn something, each on
    the next 32 images of a shuffled pass (30 x 32 < the training set: no image twice)."""
    logs, seen = [], []
    real = S.ScratchResNet.loss_and_grads

    def spy(self, x, y):
        seen.extend(row.numpy().tobytes() for row in x)
        return real(self, x, y)

    monkeypatch.setattr(S.ScratchResNet, "loss_and_grads", spy)
    losses, acc = S.train(S.ScratchConfig(max_iters=30, batch_size=32, width=4, learning_rate=0.1), log=logs.append)
    assert len(losses) == 30
    assert len(seen) == 30 * 32 and len(set(seen)) >= 30 * 32 - 10  # (the digits hold a few duplicate images)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.15, (first, last)  # measured: 2.29 -> 1.94; without the update it stays at ~2.3
    assert acc > 0.2 and logs[-1].startswith(f"test accuracy {100 * acc:.2f}%"), logs[-1]  # chance: 10% (measured ~31%)


def test_cli_trains_and_writes_what_it_printed(run_script, tmp_path):
    r = run_script("deep_gradients/scratch.py", "--max-iters", "12", "--batch-size", "32", "--log-interval", "4",
                   "--width", "4", "--out-dir", tmp_path)
    assert r.returncode == 0, r.stderr
    losses = [float(line.split("loss")[1].split("|")[0]) for line in r.stdout.splitlines() if "| loss" in line]
    assert len(losses) == 4 and all(v == v for v in losses)
    assert "test accuracy" in r.stdout and "% (359 images)" in r.stdout  # a percentage, as the README quotes it
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["command"] == f"python deep_gradients/scratch.py --max-iters 12 --batch-size 32 --log-interval 4 " \
                             f"--width 4 --out-dir {tmp_path}"
    assert_made_here_now(res)
    assert [round(res["train_losses"][i], 4) for i in (0, 4, 8, 11)] == losses  # the steps it printed
    assert f"test accuracy {100 * res['test_acc']:.2f}% (359 images)" in r.stdout


def test_default_out_dir_is_beside_the_script_whatever_the_working_directory(tmp_path, monkeypatch):
    """No --out-dir: results.json goes to deep_gradients/out/scratch, not the working directory (issue 29 item 6)."""
    assert S.OUT == Path(S.__file__).resolve().parent / "out" / "scratch"
    monkeypatch.setattr(S, "OUT", tmp_path / "default")  # stands for deep_gradients/out/scratch
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    try:
        S.main(["--max-iters", "2", "--batch-size", "16", "--width", "4"])
    finally:
        torch.set_grad_enabled(True)  # main turns autograd off for the whole process
    assert len(json.loads((tmp_path / "default" / "results.json").read_text())["train_losses"]) == 2
    assert list((tmp_path / "cwd").iterdir()) == []


@pytest.mark.parametrize("argv,needles", [(["--depth", "9"], ("--depth 9", "20")),
                                          (["--max-iters", "abc"], ("--max-iters", "'abc'")),
                                          (["--batch-size", "1"], ("--batch-size 1: must be in [2, 65536]",)),
                                          (["--learning-rate", "inf"], ("--learning-rate", "finite")),
                                          (["--learning-rate", "0"], ("--learning-rate 0.0: must be in [1e-12, 100.0]",)),
                                          (["--momentum", "1"], ("--momentum 1.0: must be in [0, 1)",)),
                                          (["--weight-decay", "-1e-8"], ("--weight-decay -1e-08: must be in [0.0, 1.0]",)),
                                          (["--momentum", "nan"], ("--momentum", "finite")),
                                          (["--steps", "5"], ("unknown option --steps",)),
                                          (["--bogus"], ("--bogus",))])
def test_cli_rejects_bad_values_in_one_line(argv, needles):
    with pytest.raises(UserError) as e:
        S.parse_args(argv)
    err = str(e.value)
    assert len(err.splitlines()) == 1 and "usage" not in err, err
    assert all(n in err for n in needles), err


def test_cli_bad_value_exit_2(run_script, clean_error):
    clean_error(run_script("deep_gradients/scratch.py", "--width", "0"), "--width 0")
