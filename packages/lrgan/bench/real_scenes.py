"""The layer metrics of *real* MNIST-TWO scenes: what a perfect generator would score.

    uv run python packages/lrgan/bench/real_scenes.py [--n 1000] [--imageSize 32 64]

Draws canvases exactly as ``lrgan-train --dataset mnist-two`` does (``lrgan.data.digit_boxes``,
the same digit sides, grey range and layouts), but keeps each digit as its own layer: the
background is the flat grey, foreground t is a white image whose mask is digit t's ink
(alpha), placed where the canvas put it, with the identity pose. The canvas and every layer are
resized to ``--imageSize`` as the training data is. ``lrgan.evaluate.layer_metrics`` then judges
these decompositions with the same judge (v6) and the same scene rules as a generator's, so the
figures are the metric's ceiling: the judge's errors on real digits at that size, and the scene
rules' on real layouts. Digits: the 1,000 embedded held-out ones (never seen by the judge) and
the 4,000 training ones (those the GAN learns from).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from lrgan.data import BACKGROUND, CANVAS_SIZE, digit_boxes, draw_canvas, paste_digit
from lrgan.evaluate import layer_metrics
from lrgan.judge import load_judge
from lrgan.models import Decomposition


def _alpha(digit: torch.Tensor, size: int, box: tuple[int, int, int]) -> torch.Tensor:
    """Digit (uint8 [28, 28]) as an alpha layer of a ``size`` canvas: ``lrgan-train``'s own
    paste onto black (``region * (1 - alpha) + alpha`` is the alpha there)."""
    top, left, side = box
    layer = torch.zeros(size, size)
    paste_digit(layer, digit, side, top, left)
    return layer


def real_decomposition(digits: torch.Tensor, n: int, image_size: int,
                       seed: int = 0) -> Decomposition:
    """``n`` two-digit scenes as layers, in [-1, 1] at ``image_size``."""
    size = CANVAS_SIZE[2]
    greys, alphas = [], []
    for i in range(n):
        rng = np.random.default_rng([seed, 0, i])
        greys.append(float(rng.uniform(*BACKGROUND)))
        picks = rng.integers(len(digits), size=2)
        boxes = digit_boxes(2, rng)
        alphas.append(torch.stack([_alpha(digits[p], size, b) for p, b in zip(picks, boxes)]))
    alpha = torch.stack(alphas)  # [n, 2, S, S]
    if image_size != size:
        alpha = F.interpolate(alpha, size=(image_size, image_size), mode="bilinear",
                              antialias=True).clamp(0, 1)
    background = torch.tensor(greys)[:, None, None, None].expand(n, 1, image_size, image_size)
    background = background * 2 - 1
    white = torch.ones(n, 1, image_size, image_size)
    identity = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(n, 2, 3)
    canvas, canvases, masks = background, [], []
    for t in range(2):
        mask = alpha[:, t : t + 1]
        canvas = canvas * (1 - mask) + white * mask
        canvases.append(canvas)
        masks.append(mask)
    return Decomposition(background=background.clone(), foregrounds=[white, white],
                         masks=masks, canvases=canvases, poses=[identity, identity])


def check_against_training_canvases(digits: torch.Tensor, n: int = 50) -> float:
    """Largest difference between these composites and ``draw_canvas``'s (64 px, the same
    seeds): the layers must add up to the very canvases the GAN trains on."""
    layers = real_decomposition(digits, n, CANVAS_SIZE[2])
    labels = torch.zeros(len(digits), dtype=torch.long)
    drawn = torch.stack([draw_canvas(digits, labels, 2, np.random.default_rng([0, 0, i]))[0]
                         for i in range(n)])
    return (layers.image - (drawn.float() / 127.5 - 1)).abs().max().item()


def main() -> None:
    from ganlab_common.data import MNIST

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--imageSize", type=int, nargs="+", default=[32, 64])
    args = parser.parse_args()
    judge = load_judge()
    gap = check_against_training_canvases(MNIST(split="test").data)
    if gap > 2 / 255 + 1e-6:
        raise SystemExit(f"layers do not add up to the training canvases (max gap {gap:.4f})")
    for split in ("test", "train"):
        digits = MNIST(split=split).data
        for image_size in args.imageSize:
            layers = real_decomposition(digits, args.n, image_size)
            result = layer_metrics(layers, judge)
            print(json.dumps({"digits": "held-out" if split == "test" else "training",
                              "imageSize": image_size, "n": args.n, **result}), flush=True)


if __name__ == "__main__":
    main()
