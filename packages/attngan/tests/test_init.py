"""G starts as trainer.py:97-100 started it (``weights_init``: orthogonal conv/Linear weights,
BN gamma ~ N(1, 0.02)); an untrained G's stages are not saturated."""

import pytest
import torch
from torch import nn

from attngan.config import load_config
from attngan.models import build_discriminators, build_generator


def _fakes(tiny_gan) -> list[torch.Tensor]:
    torch.manual_seed(0)
    net = build_generator(load_config("bird_attn2", tiny_gan))
    words, sent = torch.randn(16, 32, 5), torch.randn(16, 32)
    with torch.no_grad():  # train mode, as the first iterations
        fakes, *_ = net(torch.randn(16, 8), sent, words, torch.zeros(16, 5, dtype=torch.bool))
    return fakes


def test_layers_start_as_weights_init(tiny_gan):
    torch.manual_seed(0)
    cfg = load_config("bird_attn2", tiny_gan)
    for net in [build_generator(cfg), *build_discriminators(cfg)]:
        for m in net.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                w = m.weight.flatten(1)
                gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
                torch.testing.assert_close(gram, torch.eye(len(gram)), atol=1e-4, rtol=0)
            if isinstance(m, nn.Linear) and m.bias is not None:
                assert m.bias.abs().max() == 0
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                assert m.weight.mean().item() == pytest.approx(1.0, abs=0.05)


def test_untrained_generator_is_not_saturated(tiny_gan):
    for fake in _fakes(tiny_gan):
        assert 0.1 < fake.std().item() < 0.8
        assert (fake.abs() > 0.99).float().mean().item() < 0.01
