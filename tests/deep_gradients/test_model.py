"""deep_gradients/model.py: the ResNet contract (names, shapes, switches, init) and FLOP counting."""
import math

import pytest
import torch
import torch.nn as nn


import model as m


@pytest.mark.parametrize("depth,width", [(8, 4), (8, 16), (20, 8), (56, 4)])
def test_shapes_and_layer_count(depth, width):
    torch.manual_seed(0)
    net = m.ResNet(depth, width)
    x = torch.randn(3, 1, 28, 28)
    assert net(x).shape == (3, 10)
    n = (depth - 2) // 6
    blocks = [mod for mod in net.modules() if isinstance(mod, m.BasicBlock)]
    assert len(blocks) == 3 * n
    convs = [mod for mod in net.modules() if isinstance(mod, nn.Conv2d) and mod.kernel_size == (3, 3)]
    assert len(convs) + 1 == depth  # 6n+1 3x3 convs + the fc layer = the depth in the name
    feats = net.stages(net.stem(x))
    assert feats.shape == (3, 4 * width, 7, 7)  # 28 -> 14 -> 7 at the two stride-2 stages
    assert net.fc.in_features == 4 * width


def test_resnet20_parameter_count():
    # He et al. report 0.27M for CIFAR ResNet-20 (option A); ours has 1 input channel and two 1x1 projections
    assert sum(p.numel() for p in m.ResNet(20, 16).parameters()) == 272_186


def test_bad_depth_names_allowed_values():
    with pytest.raises(ValueError, match="8, 20, 56"):
        m.ResNet(depth=18)


def test_module_names_are_the_contract():
    names = dict(m.ResNet(8, 4).named_modules())
    for key, typ in [("stem.0", nn.Conv2d), ("stem.1", nn.BatchNorm2d), ("stem.2", nn.ReLU),
                     ("stages.0.0.conv1", nn.Conv2d), ("stages.0.0.bn2", nn.BatchNorm2d),
                     ("stages.0.0.shortcut", nn.Identity), ("stages.1.0.shortcut.0", nn.Conv2d),
                     ("stages.1.0.shortcut.1", nn.BatchNorm2d), ("stages.2.0.relu2", nn.ReLU),
                     ("pool", nn.AdaptiveAvgPool2d), ("fc", nn.Linear)]:
        assert isinstance(names[key], typ), key
    proj = names["stages.1.0.shortcut.0"]
    assert proj.kernel_size == (1, 1) and proj.stride == (2, 2) and proj.bias is None
    assert names["stages.1.0.conv1"].stride == (2, 2) and names["stages.1.0.conv2"].stride == (1, 1)


def test_no_batch_norm_switch():
    net = m.ResNet(20, 4, batch_norm=False)
    assert not any(isinstance(mod, nn.modules.batchnorm._BatchNorm) for mod in net.modules())
    convs = [mod for mod in net.modules() if isinstance(mod, nn.Conv2d)]
    assert all(c.bias is not None for c in convs)  # without BN the convs need their own bias
    assert all(c.bias is None for c in m.ResNet(20, 4).modules() if isinstance(c, nn.Conv2d))
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_no_residual_switch():
    torch.manual_seed(0)
    plain = m.ResNet(8, 4, residual=False)
    blocks = [mod for mod in plain.modules() if isinstance(mod, m.BasicBlock)]
    assert all(b.shortcut is None for b in blocks)
    assert not any(isinstance(mod, nn.Conv2d) and mod.kernel_size == (1, 1) for mod in plain.modules())
    torch.manual_seed(0)
    res = m.ResNet(8, 4)
    # same weights for the common layers, so the only difference is the shortcut
    res.load_state_dict({k: v for k, v in plain.state_dict().items()}, strict=False)
    b, x = blocks[0], torch.randn(2, 4, 28, 28)
    expect = b.relu2(b.bn2(b.conv2(b.relu1(b.bn1(b.conv1(x))))))
    assert torch.allclose(b(x), expect)
    rb = res.stages[0][0]
    assert torch.allclose(rb(x), torch.relu(b.bn2(b.conv2(b.relu1(b.bn1(b.conv1(x))))) + x))


def test_init():
    torch.manual_seed(0)
    net = m.ResNet(20, 16)
    w = net.stages[2][1].conv1.weight  # 64 out channels, 3x3: fan_out = 576
    assert w.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.05)
    # Kaiming "fan_out" (He et al. 2015; torchvision's ResNet): where fan_in != fan_out the mode shows
    for conv, fan_out, fan_in in [(net.stages[1][0].conv1, 32 * 9, 16 * 9), (net.stages[2][0].conv1, 64 * 9, 32 * 9),
                                  (net.stages[2][0].shortcut[0], 64, 32)]:
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.05)
        assert abs(conv.weight.std().item() - math.sqrt(2 / fan_in)) > 0.2 * math.sqrt(2 / fan_in)
    for mod in net.modules():
        if isinstance(mod, nn.BatchNorm2d):
            assert torch.all(mod.weight == 1) and torch.all(mod.bias == 0)
            assert mod.eps == 1e-5 and mod.momentum == 0.1


def test_zero_init_residual_makes_blocks_identity():
    net = m.ResNet(8, 4, zero_init_residual=True).eval()
    b = net.stages[0][0]
    assert torch.all(b.bn2.weight == 0)
    x = torch.randn(2, 4, 28, 28).relu()
    assert torch.allclose(b(x), x)  # relu(0 + x) with x >= 0


def test_count_flops_matches_hand_count():
    w = 16
    net = m.ResNet(8, w)
    hw = [28 * 28, 14 * 14, 7 * 7]
    macs = hw[0] * w * 9 * 1  # stem
    macs += hw[0] * (w * w * 9) * 2  # stage 1: two 3x3 convs
    macs += hw[1] * (2 * w * w * 9 + 2 * w * 2 * w * 9 + 2 * w * w)  # stage 2: convs + 1x1 projection
    macs += hw[2] * (4 * w * 2 * w * 9 + 4 * w * 4 * w * 9 + 4 * w * 2 * w)  # stage 3
    macs += 4 * w * 10  # fc
    assert m.count_flops(net, (1, 1, 28, 28)) == 2 * macs
    assert m.count_flops(net, (5, 1, 28, 28)) == 10 * macs
    assert net.training  # the counting pass leaves the mode alone
