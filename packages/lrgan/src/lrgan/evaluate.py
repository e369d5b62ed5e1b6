"""Fidelity measures for a trained LR-GAN generator.

* FID of the composites against real training images (``ganlab_common.metrics``).
* How often each foreground layer -- the un-warped appearance times its mask, on
  black -- is read as a digit with confidence >= 0.9 by the held-out digit
  classifier. On MNIST-ONE/TWO this is the evidence that the layers separate objects;
  the background, scored the same way, is the control.
"""

from __future__ import annotations

import torch

from ganlab_common import metrics

from .models import Decomposition, Generator

__all__ = ["digit_rates", "generate", "layer_on_black"]


@torch.no_grad()
def generate(netG: Generator, n: int, batch: int = 64, seed: int = 0) -> Decomposition:
    """``n`` samples with every layer, on the CPU, from a seeded generator."""
    netG.eval()
    gen = torch.Generator().manual_seed(seed)
    device = netG.pose_device()
    parts = []
    for start in range(0, n, batch):
        z = netG.sample_noise(min(batch, n - start), generator=gen, device=torch.device("cpu"))
        layers = netG.decompose(z.to(device))
        parts.append(layers)
    cat = lambda xs: torch.cat([x.cpu() for x in xs])  # noqa: E731
    steps = range(len(parts[0].foregrounds))
    return Decomposition(
        background=cat([p.background for p in parts]),
        foregrounds=[cat([p.foregrounds[t] for p in parts]) for t in steps],
        masks=[cat([p.masks[t] for p in parts]) for t in steps],
        canvases=[cat([p.canvases[t] for p in parts]) for t in steps],
        poses=[cat([p.poses[t] for p in parts]) for t in steps],
    )


def layer_on_black(foreground: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Appearance x mask on a black background, in [-1, 1]: [N, C, H, W]."""
    return mask * foreground + (1 - mask) * -1.0


def digit_rates(
    layers: Decomposition, classifier: torch.nn.Module, threshold: float = 0.9
) -> dict[str, float]:
    """Fraction of samples whose layer is classified as some digit with prob >= threshold.

    Keys: ``fg1`` .. ``fg<T-1>``, ``background`` (control) and ``composite``.
    """
    rates = {}
    for t, (fg, mask) in enumerate(zip(layers.foregrounds, layers.masks), start=1):
        probs = metrics.classify_digits(classifier, layer_on_black(fg, mask))
        rates[f"fg{t}"] = (probs.max(1).values >= threshold).float().mean().item()
    for name, images in [("background", layers.background), ("composite", layers.image)]:
        probs = metrics.classify_digits(classifier, images)
        rates[name] = (probs.max(1).values >= threshold).float().mean().item()
    return rates
