"""Fidelity measures for a trained LR-GAN generator.

* Foreground separation: each foreground layer, warped by its pose and pasted on a
  flat black canvas, is judged by :class:`lrgan.judge.Judge` ("digit d" or "not a
  single digit").
* Scene accuracy: a sample counts when every foreground layer is judged one digit,
  each is visible in the final image (not hidden by a later layer, and different from
  the background-only image where it lies) and the layers sit in different places.
* FID of the composites against fresh real canvases (``ganlab_common.metrics.fid``,
  computed by ``lrgan-train --evaluate``).
"""

from __future__ import annotations

import torch

from .judge import NOT_A_DIGIT, Judge
from .models import Decomposition, Generator
from .ops import affine_grid_yx, stnm_reference

__all__ = ["generate", "generate_layers", "layer_metrics", "warped_layers"]

VISIBLE = 0.5  # a pixel belongs to a layer where its warped mask is above this
MIN_CONTRAST = 0.15  # mean |final - background| over a layer's visible pixels, in [-1, 1]
MAX_OVERLAP = 0.5  # intersection over the smaller of two layers' visible areas


@torch.no_grad()
def generate_layers(netG: Generator, z: torch.Tensor, mode: str = "train") -> Decomposition:
    """``netG.decompose(z)`` with BatchNorm in ``mode`` ("train" as the original sampled,
    or "eval"); the module's own mode is restored afterwards."""
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
    was_training = netG.training
    netG.train(mode == "train")
    try:
        return netG.decompose(z)
    finally:
        netG.train(was_training)


def generate(netG: Generator, n: int, batch: int = 64, seed: int = 0,
             mode: str = "train") -> Decomposition:
    """``n`` samples with every layer (on the CPU), from a seeded generator, in batches
    of ``batch`` (the batch statistics of train mode are those of each batch)."""
    gen = torch.Generator().manual_seed(seed)
    device = netG.pose_device()
    parts = []
    for start in range(0, n, batch):
        z = netG.sample_noise(min(batch, n - start), generator=gen, device=torch.device("cpu"))
        parts.append(generate_layers(netG, z.to(device), mode))
    cat = lambda xs: torch.cat([x.cpu() for x in xs])  # noqa: E731
    steps = range(len(parts[0].foregrounds))
    return Decomposition(
        background=cat([p.background for p in parts]),
        foregrounds=[cat([p.foregrounds[t] for p in parts]) for t in steps],
        masks=[cat([p.masks[t] for p in parts]) for t in steps],
        canvases=[cat([p.canvases[t] for p in parts]) for t in steps],
        poses=[cat([p.poses[t] for p in parts]) for t in steps],
    )


def warped_layers(layers: Decomposition) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Each foreground warped by its pose: (appearance on black [N, C, H, W],
    warped mask [N, 1, H, W]) per step, computed with the reference STNM."""
    n, _, h, w = layers.background.shape
    on_black, masks = [], []
    for fg, mask, theta in zip(layers.foregrounds, layers.masks, layers.poses):
        grid = affine_grid_yx(theta.float(), h, w)
        black = torch.full((n, fg.shape[1], h, w), -1.0)
        on_black.append(stnm_reference(black, fg.float(), mask.float(), grid))
        masks.append(stnm_reference(torch.zeros(n, 1, h, w), torch.ones_like(mask.float()),
                                    mask.float(), grid))
    return on_black, masks


def _visible(masks: list[torch.Tensor]) -> list[torch.Tensor]:
    """The part of each warped mask that later layers do not cover."""
    out = []
    for t, m in enumerate(masks):
        v = m.clone()
        for later in masks[t + 1 :]:
            v = v * (1 - later)
        out.append(v[:, 0] > VISIBLE)
    return out


@torch.no_grad()
def layer_metrics(layers: Decomposition, judge: Judge) -> dict[str, float]:
    """Judge-based measures of one batch of decompositions (see the module docstring).

    Keys: ``fg<t>_one_digit`` (fraction of layer t judged exactly one digit),
    ``fg_one_digit`` (over all layers), ``scene_accuracy``, ``fg_distinct_digits`` (how
    many digit classes hold at least 5% of the judged layers: a collapsed generator
    draws few), ``background_one_digit`` (control: the background alone, which should
    not be a digit).
    """
    if not layers.foregrounds:
        return {}
    on_black, masks = warped_layers(layers)
    judged = [judge.judge(x) for x in on_black]
    one = [j != NOT_A_DIGIT for j in judged]
    visible = _visible(masks)
    contrast = (layers.image.float() - layers.background.float()).abs().mean(1)  # [N, H, W]
    scene = torch.stack(one).all(0)
    for v in visible:
        area = v.flatten(1).sum(1)
        shown = (contrast * v).flatten(1).sum(1) / area.clamp(min=1)
        scene &= (area > 0) & (shown >= MIN_CONTRAST)
    for a in range(len(visible)):
        for b in range(a + 1, len(visible)):
            inter = (visible[a] & visible[b]).flatten(1).sum(1)
            smaller = torch.minimum(visible[a].flatten(1).sum(1), visible[b].flatten(1).sum(1))
            scene &= inter <= MAX_OVERLAP * smaller.clamp(min=1)
    result = {f"fg{t}_one_digit": o.float().mean().item() for t, o in enumerate(one, start=1)}
    all_judged = torch.cat(judged)
    counts = torch.bincount(all_judged[all_judged != NOT_A_DIGIT], minlength=10)
    result.update(
        fg_one_digit=torch.cat(one).float().mean().item(),
        scene_accuracy=scene.float().mean().item(),
        fg_distinct_digits=int((counts >= 0.05 * len(all_judged)).sum()),
        background_one_digit=(judge.judge(layers.background) != NOT_A_DIGIT).float().mean().item(),
    )
    return result
