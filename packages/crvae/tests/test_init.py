"""The networks start as the Lua models' ``ConvInit``/``BNInit`` started them, and an untrained
decoder's output has the scale that init gives (not PyTorch 2's, ~4x smaller)."""

import math

import pytest
import torch
from torch import nn

from crvae.models import ModelSpec, StepLinear, build_models


def _models(latent_type: str, size: int, init: str = "original"):
    torch.manual_seed(0)
    spec = ModelSpec(latent_type=latent_type, image_size=size, channels=1 if size == 28 else 3,
                     base_channels=16, nf=64, attr_dim=10 if latent_type == "acvaegan" else 0,
                     gan=size != 28, init=init)
    return build_models(spec)


@pytest.mark.parametrize("latent_type,size", [("lstm", 28), ("acvaegan", 64)])
def test_layers_start_as_convinit_bninit(latent_type, size):
    g, d = _models(latent_type, size)
    nets = [g] + ([d] if d is not None else [])
    for m in (m for net in nets for m in net.modules()):
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            bound = 1 / math.sqrt(m.out_channels * math.prod(m.kernel_size))
            assert m.weight.abs().max().item() <= bound
            if m.weight.numel() >= 500:
                assert m.weight.abs().max().item() > 0.9 * bound
            assert m.bias is None or m.bias.abs().max() == 0
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            assert m.weight.eq(1).all() and m.bias.eq(0).all()
        elif isinstance(m, nn.Linear | StepLinear) and m.bias is not None:
            assert m.bias.abs().max() == 0
    assert 0 < g.decoder.u0.abs().max().item() <= 0.01 * math.sqrt(3)


def _decoded(latent_type: str, size: int, init: str) -> torch.Tensor:
    g, _ = _models(latent_type, size, init)
    y = torch.eye(10).repeat(7, 1)[:64] * 2 - 1 if latent_type == "acvaegan" else None
    with torch.no_grad():
        out, _ = g.decode(g.sample_prior(64, y), y)  # train mode, as the first batches
    return out


@pytest.mark.parametrize("latent_type", ["lstm", "conv", "baseline", "acvaegan"])
def test_untrained_mnist_decoder_scale(latent_type):
    """The 3x3 conv to one plane is bounded by 1/sqrt(9 * 1) instead of 1/sqrt(9 * c): the
    Bernoulli logits start with a std of ~1.3-1.6 (PyTorch 2: ~0.35, every pixel ~grey),
    yet few pixels are saturated."""
    logits = _decoded(latent_type, 28, "original")
    assert 0.8 < logits.std().item() < 3.0
    p = torch.sigmoid(logits)
    assert ((p < 0.01) | (p > 0.99)).float().mean().item() < 0.05
    assert _decoded(latent_type, 28, "pytorch").std().item() < 0.6


def test_untrained_64px_decoder_scale():
    """At 64 px the tanh head starts at std ~0.7 (some saturation, as in the original)."""
    x = _decoded("acvaegan", 64, "original")
    assert 0.5 < x.std().item() < 0.95
    assert _decoded("acvaegan", 64, "pytorch").std().item() < 0.45
