"""The networks start as the author's Torch code started them (``trainGAN.lua:36-45``,
``trainEncoder.lua`` without an init), and an untrained G is not saturated."""

import math

import pytest
import torch
from torch import nn

from icgan.models import Discriminator, Encoder, Generator, init_weights


def _layers(net: nn.Module, kind) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, kind)]


def test_generator_and_discriminator_start_with_dcgan_weights():
    torch.manual_seed(0)
    for net in (Generator(100, 10, 32, 1, 32), Discriminator(10, 32, 1, 32)):
        for conv in _layers(net, nn.Conv2d | nn.ConvTranspose2d):
            assert conv.weight.std().item() == pytest.approx(0.02, rel=0.25)
        for bn in _layers(net, nn.BatchNorm2d):
            assert bn.weight.mean().item() == pytest.approx(1.0, abs=0.02)
            assert bn.bias.abs().max() == 0


def test_encoder_starts_with_torch_nn_defaults():
    torch.manual_seed(0)
    enc = Encoder(10, nc=1, image_size=32, n_conv=3, nf=32, fc_size=512)
    for m in _layers(enc, nn.Conv2d | nn.Linear):
        fan = m.weight[0].numel()  # nInputPlane * kH * kW, or inputSize
        assert 0.9 / math.sqrt(fan) < m.weight.abs().max().item() <= 1 / math.sqrt(fan)
        assert 0 < m.bias.abs().max().item() <= 1 / math.sqrt(fan)
    for bn in _layers(enc, nn.BatchNorm2d | nn.BatchNorm1d):
        assert 0 <= bn.weight.min() and bn.weight.max() <= 1  # U(0, 1), not 1
        assert bn.weight.std().item() > 0.2


def _g_output(init: str) -> torch.Tensor:
    torch.manual_seed(1)
    netG = Generator(100, 10, 32, 1, 32, init=init)  # the MNIST recipe of the README
    z, y = torch.randn(64, 100), torch.eye(10).repeat(7, 1)[:64] * 2 - 1
    with torch.no_grad():
        return netG(z, y)  # train mode, as trainGAN.lua's first batches


def test_untrained_generator_is_not_saturated():
    """DCGAN's N(0, 0.02) on the last full convolution gives a pre-tanh std of ~0.2: grey,
    slightly noisy images, no pixel near +-1.  PyTorch 2's default bounds that layer by its
    one output plane (1/sqrt(16)) and saturates a good share of the pixels."""
    x = _g_output("original")
    assert 0.05 < x.std().item() < 0.4
    assert abs(x.mean().item()) < 0.1
    assert (x.abs() > 0.99).float().mean().item() < 0.001
    saturated_pytorch = (_g_output("pytorch").abs() > 0.99).float().mean().item()
    assert saturated_pytorch > 0.01


def test_unknown_init_is_refused():
    with pytest.raises(ValueError, match="init must be one of"):
        init_weights(nn.Linear(2, 2), "xavier")
