"""The legacy initialisations against the formulas of Lua Torch nn / dcgan.torch / fb.resnet."""

import math

import pytest
import torch
from torch import nn

from ganlab_common.init import (
    dcgan_init,
    fan_out_uniform_init,
    legacy_fan_in,
    legacy_fan_out,
    legacy_torch_init,
)


def _net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 40, 5),  # fan-in 75, fan-out 1000
        nn.BatchNorm2d(40),
        nn.ConvTranspose2d(40, 2, 4),  # fan-in 640; PyTorch 2 bounds it by 2 * 16 = 32
        nn.Flatten(),
        nn.Linear(300, 7),
        nn.BatchNorm1d(7),
        nn.LSTM(7, 16),
        nn.PReLU(),
    )


def _bound(t: torch.Tensor) -> float:
    return t.abs().max().item()


def test_fans_are_torch7s():
    conv, convt, lin = nn.Conv2d(3, 8, (3, 5)), nn.ConvTranspose2d(8, 2, 4), nn.Linear(9, 4)
    assert (legacy_fan_in(conv), legacy_fan_out(conv)) == (45, 120)
    assert (legacy_fan_in(convt), legacy_fan_out(convt)) == (128, 32)
    assert (legacy_fan_in(lin), legacy_fan_out(lin)) == (9, 4)
    with pytest.raises(TypeError):
        legacy_fan_in(nn.ReLU())


def test_legacy_torch_init_bounds_by_input_planes():
    torch.manual_seed(0)
    net = legacy_torch_init(_net())
    for m, fan in ((net[0], 75), (net[2], 640), (net[4], 300)):
        bound = 1 / math.sqrt(fan)
        assert 0.9 * bound < _bound(m.weight) <= bound  # the whole range is used
        assert 0 < _bound(m.bias) <= bound
    # the transposed conv is ~4.5x smaller than PyTorch 2 makes it (1/sqrt(32))
    assert _bound(net[2].weight) < 0.5 / math.sqrt(32)


def test_legacy_torch_init_batchnorm_is_uniform_0_1_and_resets_statistics():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(4000)
    bn.running_mean.fill_(3.0)
    legacy_torch_init(bn)
    assert 0 <= bn.weight.min() and bn.weight.max() <= 1
    assert abs(bn.weight.mean().item() - 0.5) < 0.02
    assert bn.weight.std().item() == pytest.approx(1 / math.sqrt(12), rel=0.05)
    assert bn.bias.abs().max() == 0
    assert bn.running_mean.abs().max() == 0
    legacy_torch_init(nn.BatchNorm1d(3, affine=False))  # no weight: nothing to draw


def test_legacy_torch_init_rnn_prelu_embedding():
    torch.manual_seed(0)
    lstm, prelu, emb = nn.LSTM(5, 25), nn.PReLU(), nn.Embedding(500, 20)
    prelu.weight.data.fill_(3.0)
    legacy_torch_init(nn.ModuleList([lstm, prelu, emb]))
    for p in lstm.parameters():
        assert _bound(p) <= 1 / 5
    assert prelu.weight.item() == 0.25
    assert emb.weight.std().item() == pytest.approx(1.0, rel=0.05)


def test_dcgan_init():
    torch.manual_seed(0)
    net = dcgan_init(_net())
    conv, bn, convt, lin = net[0], net[1], net[2], net[4]
    for m in (conv, convt):
        assert m.weight.std().item() == pytest.approx(0.02, rel=0.1)
        assert m.bias.abs().max() == 0
    assert bn.weight.mean().item() == pytest.approx(1.0, abs=0.01)
    assert bn.weight.std().item() == pytest.approx(0.02, rel=0.3)
    assert _bound(lin.weight) > 0.03  # Linear untouched by default
    dcgan_init(net, linear=True)
    assert lin.weight.std().item() == pytest.approx(0.02, rel=0.2)
    assert lin.bias.abs().max() == 0


def test_fan_out_uniform_init():
    torch.manual_seed(0)
    net = fan_out_uniform_init(_net())
    conv, bn, convt, lin = net[0], net[1], net[2], net[4]
    for m, fan in ((conv, 1000), (convt, 32)):
        assert 0.9 / math.sqrt(fan) < _bound(m.weight) <= 1 / math.sqrt(fan)
        assert m.bias.abs().max() == 0
    assert bn.weight.eq(1).all() and bn.bias.eq(0).all()
    assert lin.bias.abs().max() == 0
    assert _bound(lin.weight) > 0.03


def test_untrained_stack_keeps_its_scale_under_legacy_init():
    """What the init means downstream: a tanh head after a transposed-conv stack is not
    saturated (PyTorch 2 makes it ~sqrt(in/out) x bigger per transposed layer)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.ConvTranspose2d(64, 3, 4, 2, 1), nn.Tanh())
    x = torch.randn(8, 64, 4, 4)
    legacy = legacy_torch_init(net)(x)
    assert (legacy.abs() > 0.99).float().mean() < 0.01
