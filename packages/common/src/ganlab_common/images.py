"""Sample grids and sequences (GIF / strip) with an explicit value range."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

__all__ = ["grid_image", "save_grid", "save_gif", "save_strip", "to_uint8"]


def to_uint8(images: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """Map ``images`` from ``value_range`` to uint8 [0, 255], clamping outside values."""
    lo, hi = value_range
    x = (images.detach().float().cpu() - lo) / (hi - lo)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def grid_image(
    images: torch.Tensor,
    nrow: int | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    padding: int = 2,
) -> Image.Image:
    """Tile an ``[N, C, H, W]`` batch (C = 1 or 3) into one PIL image.

    ``nrow`` is the number of images per row (default: a square-ish grid).
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape [N, 1|3, H, W], got {tuple(images.shape)}")
    if nrow is None:
        nrow = max(1, math.ceil(math.sqrt(images.shape[0])))
    grid = make_grid(to_uint8(images, value_range), nrow=nrow, padding=padding, pad_value=255)
    return Image.fromarray(grid.permute(1, 2, 0).numpy())


def save_grid(
    images: torch.Tensor,
    path: str | os.PathLike,
    nrow: int | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    padding: int = 2,
) -> Path:
    """Save an ``[N, C, H, W]`` batch as one PNG grid; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid_image(images, nrow, value_range, padding).save(path)
    return path


def save_strip(
    frames: Sequence[torch.Tensor],
    path: str | os.PathLike,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> Path:
    """Save a sequence of equally shaped ``[N, C, H, W]`` batches as one PNG.

    Row i holds sample i, column j holds frame j (e.g. an interpolation or the
    canvas after each LR-GAN timestep).
    """
    stacked = torch.stack(list(frames), dim=1)  # [N, F, C, H, W]
    n, f = stacked.shape[:2]
    return save_grid(stacked.flatten(0, 1), path, nrow=f, value_range=value_range)


def save_gif(
    frames: Sequence[torch.Tensor],
    path: str | os.PathLike,
    value_range: tuple[float, float] = (-1.0, 1.0),
    duration_ms: int = 200,
) -> Path:
    """Save a sequence of ``[N, C, H, W]`` batches as an animated GIF of grids."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pictures = [grid_image(f, value_range=value_range) for f in frames]
    pictures[0].save(
        path, save_all=True, append_images=pictures[1:], duration=duration_ms, loop=0
    )
    return path
