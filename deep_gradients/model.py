"""A CIFAR-style ResNet for 28x28 digits, with switches that remove BatchNorm and the residual paths.

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition" (2015), section 4.2: depth = 6n + 2,
three stages of n BasicBlocks at widths w, 2w, 4w, the first block of stages 2 and 3 halving the grid.
Here the shortcut that changes shape is a 1x1 projection ("option B"), not zero-padding.

The module names (stem.0, stages.1.0.conv1, ..., fc) are a contract: scratch.py re-implements this network
with hand-written backprop and copies these weights by name.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn as nn
import torch.nn.functional as F

DEPTHS = {8: 1, 20: 3, 56: 9}  # depth -> n blocks per stage (depth = 6n + 2)


def conv3x3(c_in: int, c_out: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=bias)


def conv1x1(c_in: int, c_out: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, padding=0, bias=bias)


def norm(c: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(c) if batch_norm else nn.Identity()


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, batch_norm: bool = True, residual: bool = True):
        super().__init__()
        bias = not batch_norm  # a conv bias right before BN is cancelled by the BN mean; keep it only without BN
        self.conv1 = conv3x3(c_in, c_out, stride, bias=bias)
        self.bn1 = norm(c_out, batch_norm)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv2 = conv3x3(c_out, c_out, 1, bias=bias)
        self.bn2 = norm(c_out, batch_norm)
        if not residual:
            self.shortcut = None
        elif stride == 1 and c_in == c_out:
            self.shortcut = nn.Identity()
        else:  # projection shortcut: match channels and grid so the sum is defined
            self.shortcut = nn.Sequential(conv1x1(c_in, c_out, stride, bias=bias), norm(c_out, batch_norm))
        self.relu2 = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))  # (B, c_out, H/stride, W/stride)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu2(out)


class ResNet(nn.Module):
    def __init__(self, depth: int = 20, width: int = 16, batch_norm: bool = True, residual: bool = True,
                 num_classes: int = 10, in_channels: int = 1, zero_init_residual: bool = False):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"depth {depth} is not supported; allowed depths (6n+2): {sorted(DEPTHS)}")
        if width < 1:
            raise ValueError(f"width {width} must be a positive integer")
        n = DEPTHS[depth]
        self.depth, self.width, self.batch_norm, self.residual = depth, width, batch_norm, residual
        self.stem = nn.Sequential(conv3x3(in_channels, width, bias=not batch_norm), norm(width, batch_norm), nn.ReLU())
        stages, c_in = [], width
        for i, c_out in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(c_in, c_out, stride, batch_norm, residual))
                c_in = c_out
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:  # Goyal et al. 2017: each block starts as the identity
            for m in self.modules():
                if isinstance(m, BasicBlock) and isinstance(m.bn2, nn.BatchNorm2d):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, w, 28, 28)
        x = self.stages(x)  # (B, 4w, 7, 7)
        x = self.pool(x).flatten(1)  # (B, 4w)
        return self.fc(x)  # (B, num_classes)


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward FLOPs of one pass over a batch of `input_shape`: 2 x multiply-adds of convs and linears.

    Counted with forward hooks on a real pass, so it follows whatever the model builds. BN, ReLU, adds and
    pooling are left out (they are memory-bound and a few % of the total), the usual MFU convention.
    One training step costs about 3x this (forward + backward for inputs and weights).
    """
    total = 0

    def conv_hook(m: nn.Conv2d, inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += 2 * out.numel() * k

    def linear_hook(m: nn.Linear, inp, out):
        nonlocal total
        total += 2 * out.numel() * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    p = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape, device=p.device, dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total


def from_config(config) -> ResNet:
    """The network at initialisation, exactly as train.py builds it: the run's seed, then ResNet. `config` is a
    train.py Config or the "config" dict of its results.json (missing keys take train.py's defaults)."""
    get = config.get if isinstance(config, dict) else lambda key, default: getattr(config, key, default)
    torch.manual_seed(int(get("seed", 0)))
    return ResNet(int(get("depth", 20)), int(get("width", 16)), bool(get("batch_norm", True)),
                  bool(get("residual", True)), zero_init_residual=bool(get("zero_init_residual", False)))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device="cpu", autocast=nullcontext,
             channels_last: bool = False, batch_size: int = 1000) -> torch.Tensor:
    """-> float64 tensor [summed cross-entropy, number correct, count] over (x, y); all-reduce it over ranks."""
    was_training = model.training
    model.eval()
    acc = torch.zeros(3, device=device, dtype=torch.float64)
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device, non_blocking=True)
        yb = y[i:i + batch_size].to(device, non_blocking=True)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = model(xb)  # (b, 10)
        acc[0] += F.cross_entropy(logits.float(), yb, reduction="sum")
        acc[1] += (logits.argmax(1) == yb).sum()
        acc[2] += len(yb)
    model.train(was_training)
    return acc
