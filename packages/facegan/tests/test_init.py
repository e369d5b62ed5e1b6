"""G starts as train.lua:137-138 started it (``NN_UTILS.initializeWeights``): a flat grey
image, the sigmoid head far from saturation."""

import torch

from facegan.models import sample_noise
from facegan.train import TrainConfig, build_models


def _g_output(init: str) -> torch.Tensor:
    torch.manual_seed(0)
    G, _ = build_models(1, 16, 100, init, width=0.25)
    with torch.no_grad():
        return G(sample_noise(64, 100))  # train mode, as the first batches


def test_default_init_is_the_originals():
    assert TrainConfig().init == "eyescream"


def test_untrained_generator_is_flat_grey_as_in_the_original():
    """N(0, 0.005) on every top-level weight, BatchNorm gains and PReLU slopes included: the
    last conv's input is ~0, so every pixel starts at sigmoid(~0) = 0.5."""
    x = _g_output("eyescream")
    assert abs(x.mean().item() - 0.5) < 0.01
    assert x.std().item() < 0.005
    assert ((x < 0.02) | (x > 0.98)).sum() == 0


def test_pytorch_init_starts_elsewhere():
    """The modern default starts with structured, higher-contrast noise (not the original)."""
    assert _g_output("default").std().item() > 10 * _g_output("eyescream").std().item()
