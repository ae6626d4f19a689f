"""The ResNet of model.py with every forward and backward pass written by hand: no autograd anywhere.

Each layer is a pair of plain functions, `*_forward(...) -> (out, cache)` and `*_backward(dout, cache) ->
grads`, in the style of CS231n (Karpathy & Johnson, Stanford, 2016) and of Ioffe & Szegedy, "Batch
Normalization" (2015) for the BN gradient. Convolution is im2col: `F.unfold` lays every receptive field
out as a column, so the convolution is one matrix product, and its backward is another matrix product plus
`F.fold` (col2im), which adds the overlapping patches back together. `F.unfold`/`F.fold` are plain tensor
copies here; nothing records a graph.

`ScratchResNet.from_state_dict(model.ResNet(...).state_dict())` builds the same network by parameter name
(`stem.0.weight`, `stages.1.0.conv1.weight`, ..., `fc.bias`), so a test can check loss, every gradient and
the BN running statistics against autograd. `python deep_gradients/scratch.py --max-iters 200` trains it with
hand-written SGD on the offline digits set, prints the loss and writes results.json (the command, machine, date,
thread count, every step's loss and the test accuracy) into --out-dir.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import hardware
import mnist
import model as model_lib
from cli import UserError, check_ranges, knob, parse_config, run_main
from files import write_json

OUT = Path(__file__).resolve().parent / "out" / "scratch"  # the default --out-dir

# --------------------------------------------------------------------------------------------------
# layers: forward returns (out, cache); backward takes d(loss)/d(out) and returns the input gradients


def conv2d_forward(x, w, b, stride: int = 1, padding: int = 0):
    """x (N, C, H, W), w (F, C, kh, kw), b (F,) or None -> (N, F, Ho, Wo)."""
    N, C, H, W = x.shape
    Fo, _, kh, kw = w.shape
    Ho = (H + 2 * padding - kh) // stride + 1
    Wo = (W + 2 * padding - kw) // stride + 1
    cols = F.unfold(x, (kh, kw), padding=padding, stride=stride)  # (N, C*kh*kw, Ho*Wo)
    out = w.reshape(Fo, -1) @ cols  # (N, F, Ho*Wo)
    if b is not None:
        out = out + b.view(1, Fo, 1)
    out = out.view(N, Fo, Ho, Wo)
    return out, (cols, x.shape, w, b is not None, stride, padding)


def conv2d_backward(dout, cache):
    """dout (N, F, Ho, Wo) -> dx (N, C, H, W), dw (F, C, kh, kw), db (F,) or None."""
    cols, x_shape, w, has_bias, stride, padding = cache
    N, Fo, Ho, Wo = dout.shape
    kh, kw = w.shape[2:]
    d = dout.reshape(N, Fo, Ho * Wo)  # (N, F, L)
    dw = torch.einsum("nfl,nkl->fk", d, cols).view_as(w)  # sum over images and positions
    db = dout.sum(dim=(0, 2, 3)) if has_bias else None
    dcols = w.reshape(Fo, -1).t() @ d  # (N, C*kh*kw, L)
    # col2im: every input pixel collects the gradient of each window it appeared in
    dx = F.fold(dcols, x_shape[2:], (kh, kw), padding=padding, stride=stride)  # (N, C, H, W)
    return dx, dw, db


def batchnorm_forward(x, gamma, beta, running_mean, running_var, train: bool,
                      momentum: float = 0.1, eps: float = 1e-5):
    """Per-channel BN of x (N, C, H, W). In train mode it normalises with the batch statistics and updates
    running_mean / running_var IN PLACE the way torch does: new = (1 - momentum) * old + momentum * batch,
    with the unbiased (n / (n - 1)) batch variance for running_var, the biased one for normalising."""
    C = x.shape[1]
    if train:
        n = x.numel() // C
        mean = x.mean(dim=(0, 2, 3))  # (C,)
        var = x.var(dim=(0, 2, 3), unbiased=False)  # (C,)
        running_mean.mul_(1 - momentum).add_(momentum * mean)
        running_var.mul_(1 - momentum).add_(momentum * var * n / max(n - 1, 1))
    else:
        mean, var = running_mean, running_var
    inv_std = 1.0 / torch.sqrt(var + eps)  # (C,)
    xhat = (x - mean.view(1, C, 1, 1)) * inv_std.view(1, C, 1, 1)  # (N, C, H, W)
    out = gamma.view(1, C, 1, 1) * xhat + beta.view(1, C, 1, 1)
    return out, (xhat, gamma, inv_std, train)


def batchnorm_backward(dout, cache):
    """-> dx, dgamma, dbeta. In train mode the mean and variance depend on x too, which gives the usual
    dx = gamma / sigma * (dout - mean(dout) - xhat * mean(dout * xhat)) (means over N, H, W)."""
    xhat, gamma, inv_std, train = cache
    C = xhat.shape[1]
    dgamma = (dout * xhat).sum(dim=(0, 2, 3))
    dbeta = dout.sum(dim=(0, 2, 3))
    g = (gamma * inv_std).view(1, C, 1, 1)
    if train:
        dx = g * (dout - dout.mean(dim=(0, 2, 3), keepdim=True)
                  - xhat * (dout * xhat).mean(dim=(0, 2, 3), keepdim=True))
    else:  # running statistics are constants: BN is just a per-channel affine map
        dx = g * dout
    return dx, dgamma, dbeta


def relu_forward(x):
    out = x.clamp_min(0)
    return out, out > 0


def relu_backward(dout, mask):
    return dout * mask  # the subgradient at exactly 0 is taken as 0, like torch


def add_forward(a, b):
    return a + b, None


def add_backward(dout, cache):
    return dout, dout  # a sum hands the same gradient to both branches


def gap_forward(x):
    """Global average pooling: (N, C, H, W) -> (N, C)."""
    return x.mean(dim=(2, 3)), x.shape


def gap_backward(dout, shape):
    N, C, H, W = shape
    return (dout / (H * W)).view(N, C, 1, 1).expand(N, C, H, W).contiguous()


def linear_forward(x, w, b):
    """x (N, D), w (K, D), b (K,) -> (N, K), like nn.Linear."""
    return x @ w.t() + b, (x, w)


def linear_backward(dout, cache):
    x, w = cache
    return dout @ w, dout.t() @ x, dout.sum(dim=0)  # dx (N, D), dw (K, D), db (K,)


def softmax_ce_forward(logits, y):
    """Mean cross-entropy of logits (N, K) against integer labels y (N,); log-sum-exp shifted by the max."""
    N = logits.shape[0]
    shifted = logits - logits.max(dim=1, keepdim=True).values
    logp = shifted - shifted.exp().sum(dim=1, keepdim=True).log()  # (N, K)
    loss = -logp[torch.arange(N), y].mean()
    return loss, (logp, y)


def softmax_ce_backward(cache):
    """d(loss)/d(logits) = (softmax - onehot) / N."""
    logp, y = cache
    N = logp.shape[0]
    d = logp.exp()
    d[torch.arange(N), y] -= 1
    return d / N


# --------------------------------------------------------------------------------------------------
# the network, assembled from the layers above and driven by model.py's parameter names


class ScratchResNet:
    """model.ResNet re-implemented on plain tensors: `forward` keeps the caches, `backward` fills `grads`.

    The architecture (width, blocks per stage, BN on/off, residual on/off) is read off the state_dict's
    keys and shapes, so whatever model.py built is what this builds."""

    def __init__(self, state: dict[str, torch.Tensor], momentum: float = 0.1, eps: float = 1e-5):
        self.p = {k: v.detach().clone() for k, v in state.items()}
        self.momentum, self.eps = momentum, eps
        self.batch_norm = "stem.1.weight" in self.p
        self.residual = any(".shortcut." in k for k in self.p)
        self.blocks = []  # (prefix, stride, shortcut kind: None | "identity" | "proj")
        for i in range(3):
            j = 0
            while f"stages.{i}.{j}.conv1.weight" in self.p:
                pre = f"stages.{i}.{j}"
                stride = 2 if (i > 0 and j == 0) else 1
                if not self.residual:
                    kind = None
                else:
                    kind = "proj" if f"{pre}.shortcut.0.weight" in self.p else "identity"
                self.blocks.append((pre, stride, kind))
                j += 1
        self.train = True
        self.grads: dict[str, torch.Tensor] = {}

    @classmethod
    def from_state_dict(cls, state, **kw):
        return cls(state, **kw)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.p.items()}

    # ---- building blocks with parameter lookup by name
    def _conv(self, name, x, stride, padding):
        return conv2d_forward(x, self.p[f"{name}.weight"], self.p.get(f"{name}.bias"), stride, padding)

    def _bn(self, name, x):
        if not self.batch_norm:
            return x, None
        if self.train:
            self.p[f"{name}.num_batches_tracked"] += 1
        return batchnorm_forward(x, self.p[f"{name}.weight"], self.p[f"{name}.bias"],
                                 self.p[f"{name}.running_mean"], self.p[f"{name}.running_var"],
                                 self.train, self.momentum, self.eps)

    def _conv_bn_back(self, d, conv, bn, cconv, cbn):
        if cbn is not None:
            d, self.grads[f"{bn}.weight"], self.grads[f"{bn}.bias"] = batchnorm_backward(d, cbn)
        d, self.grads[f"{conv}.weight"], db = conv2d_backward(d, cconv)
        if db is not None:
            self.grads[f"{conv}.bias"] = db
        return d

    # ---- forward / backward
    def forward(self, x):
        """x (N, C, 28, 28) -> logits (N, K); keeps what backward needs."""
        h, c_conv = self._conv("stem.0", x, 1, 1)
        h, c_bn = self._bn("stem.1", h)
        h, m = relu_forward(h)
        stem_cache, block_caches = (c_conv, c_bn, m), []
        for pre, stride, kind in self.blocks:
            a, c1 = self._conv(f"{pre}.conv1", h, stride, 1)
            a, b1 = self._bn(f"{pre}.bn1", a)
            a, m1 = relu_forward(a)
            a, c2 = self._conv(f"{pre}.conv2", a, 1, 1)
            a, b2 = self._bn(f"{pre}.bn2", a)
            cs = bs = None
            if kind == "identity":
                a, _ = add_forward(a, h)
            elif kind == "proj":
                s, cs = self._conv(f"{pre}.shortcut.0", h, stride, 0)
                s, bs = self._bn(f"{pre}.shortcut.1", s)
                a, _ = add_forward(a, s)
            h, m2 = relu_forward(a)
            block_caches.append((pre, kind, c1, b1, m1, c2, b2, cs, bs, m2))
        pooled, c_gap = gap_forward(h)  # (N, 4w)
        logits, c_fc = linear_forward(pooled, self.p["fc.weight"], self.p["fc.bias"])  # (N, K)
        self._caches = (stem_cache, block_caches, c_gap, c_fc)
        return logits

    def backward(self, dlogits):
        """dlogits (N, K) -> fills self.grads for every trainable tensor; returns d(loss)/d(input)."""
        stem_cache, block_caches, c_gap, c_fc = self._caches
        self.grads = {}
        d, self.grads["fc.weight"], self.grads["fc.bias"] = linear_backward(dlogits, c_fc)
        d = gap_backward(d, c_gap)
        for pre, kind, c1, b1, m1, c2, b2, cs, bs, m2 in reversed(block_caches):
            d = relu_backward(d, m2)
            d_main, d_skip = add_backward(d, None) if kind is not None else (d, None)
            d_main = self._conv_bn_back(d_main, f"{pre}.conv2", f"{pre}.bn2", c2, b2)
            d_main = relu_backward(d_main, m1)
            d_in = self._conv_bn_back(d_main, f"{pre}.conv1", f"{pre}.bn1", c1, b1)
            if kind == "identity":
                d_in = d_in + d_skip
            elif kind == "proj":
                d_in = d_in + self._conv_bn_back(d_skip, f"{pre}.shortcut.0", f"{pre}.shortcut.1", cs, bs)
            d = d_in
        c_conv, c_bn, m = stem_cache
        d = relu_backward(d, m)
        d = self._conv_bn_back(d, "stem.0", "stem.1", c_conv, c_bn)
        self._caches = None  # free the activations
        return d

    def loss_and_grads(self, x, y):
        """One forward + backward: -> (loss, logits); gradients in self.grads."""
        logits = self.forward(x)
        loss, c = softmax_ce_forward(logits, y)
        self.backward(softmax_ce_backward(c))
        return loss, logits


class SGD:
    """torch.optim.SGD's update, written out: g += wd * w; buf = momentum * buf + g;
    w -= lr * (g + momentum * buf) with Nesterov (as train.py uses), else w -= lr * buf."""

    def __init__(self, net: ScratchResNet, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False):
        self.net, self.lr, self.momentum, self.wd, self.nesterov = net, lr, momentum, weight_decay, nesterov
        self.buf: dict[str, torch.Tensor] = {}

    def step(self):
        for k, g in self.net.grads.items():
            w = self.net.p[k]
            if self.wd:
                g = g + self.wd * w
            if self.momentum:
                b = self.buf.get(k)
                b = g.clone() if b is None else b.mul_(self.momentum).add_(g)  # the first step: buf = g
                self.buf[k] = b
                g = g + self.momentum * b if self.nesterov else b
            w.sub_(self.lr * g)


# --------------------------------------------------------------------------------------------------
# command line: train the scratch network on the digits


@dataclass
class ScratchConfig:
    dataset: str = knob("digits", "digits (offline, sklearn) | mnist")
    data_dir: str = knob("", "for mnist; empty = mnist.py's default folder")
    max_iters: int = knob(200, "hand-written SGD steps", lo=1, hi=10**7)
    batch_size: int = knob(64, "images per step (>= 2: batch norm needs a batch)", lo=2, hi=1 << 16)
    learning_rate: float = knob(0.05, "SGD learning rate", lo=1e-12, hi=100.0)
    momentum: float = knob(0.9, "SGD momentum, in [0, 1)")
    nesterov: bool = knob(True, "Nesterov momentum, as train.py uses")
    weight_decay: float = knob(5e-4, "L2 weight decay", lo=0.0, hi=1.0)
    depth: int = knob(8, "6n+2: 8, 20 or 56")
    width: int = knob(8, "channels of the first stage", lo=1, hi=256)
    batch_norm: bool = knob(True, "off: no BatchNorm, the convs get biases")
    residual: bool = knob(True, "off: no shortcuts")
    seed: int = knob(0, "fixes the init and the order of the batches", lo=0, hi=2**31 - 1)
    log_interval: int = knob(10, "print the loss every this many steps", lo=1, hi=10**7)
    out_dir: str = knob("", "where results.json goes; empty = deep_gradients/out/scratch (beside this script)")


def check_config(cfg: ScratchConfig) -> ScratchConfig:
    """UserError for the first value out of its allowed set or range."""
    if cfg.dataset not in mnist.DATASETS:
        raise UserError(f"--dataset {cfg.dataset!r} is not supported; allowed: {', '.join(mnist.DATASETS)}")
    if cfg.depth not in model_lib.DEPTHS:
        raise UserError(f"--depth {cfg.depth} is not supported; allowed: {sorted(model_lib.DEPTHS)}")
    check_ranges(cfg)  # the knobs' ranges (parse_config checked them; a ScratchConfig built in code was not)
    if not 0 <= cfg.momentum < 1:  # a half-open range, which a knob's [lo, hi] cannot state
        raise UserError(f"--momentum {cfg.momentum}: must be in [0, 1)")
    return cfg


def train(cfg: ScratchConfig, log=print) -> tuple[list[float], float]:
    """Hand-written SGD on the scratch network -> (the per-step training losses, the test accuracy)."""
    torch.manual_seed(cfg.seed)
    x_train, y_train, x_test, y_test = mnist.load(cfg.dataset, data_dir=cfg.data_dir or None)
    ref = model_lib.ResNet(depth=cfg.depth, width=cfg.width, batch_norm=cfg.batch_norm, residual=cfg.residual)
    net = ScratchResNet.from_state_dict(ref.state_dict())
    opt = SGD(net, cfg.learning_rate, cfg.momentum, cfg.weight_decay, cfg.nesterov)
    g = torch.Generator().manual_seed(cfg.seed)
    perm, pos = torch.randperm(len(x_train), generator=g), 0  # walk a permutation; reshuffle when it runs out
    losses, t0 = [], time.time()
    for step in range(cfg.max_iters):
        if pos + cfg.batch_size > len(perm):
            perm, pos = torch.randperm(len(x_train), generator=g), 0
        idx = perm[pos:pos + cfg.batch_size]
        pos += cfg.batch_size
        loss, _ = net.loss_and_grads(x_train[idx], y_train[idx])
        if not math.isfinite(loss.item()):
            raise UserError(f"loss became {loss.item()} at step {step}; lower --learning-rate (now {cfg.learning_rate})")
        opt.step()
        losses.append(loss.item())
        if step % cfg.log_interval == 0 or step == cfg.max_iters - 1:
            log(f"step {step:5d} | loss {loss.item():.4f} | {time.time() - t0:.1f}s")
    net.train = False
    correct = 0
    for i in range(0, len(x_test), 256):
        correct += (net.forward(x_test[i:i + 256]).argmax(1) == y_test[i:i + 256]).sum().item()
    log(f"test accuracy {100 * correct / len(x_test):.2f}% ({len(x_test)} images)")
    return losses, correct / len(x_test)


def parse_args(argv=None) -> ScratchConfig:
    return check_config(parse_config(ScratchConfig, argv, "scratch.py", __doc__.splitlines()[0]))


def main(argv=None) -> None:
    cfg = parse_args(argv)
    torch.set_grad_enabled(False)  # proof that nothing here leans on autograd
    cpu = time.process_time()
    losses, acc = train(cfg)
    command = hardware.typed_command(__file__, sys.argv[1:] if argv is None else argv)
    path = Path(cfg.out_dir or OUT) / "results.json"
    write_json(path, {**hardware.made_by(command), "config": hardware.settings_from_repo(asdict(cfg)),
                      "cpu_s": time.process_time() - cpu, "train_losses": losses, "test_acc": acc})
    print(f"-> {path}")


if __name__ == "__main__":
    run_main(main)
