"""Figures: image grids with their captions under them, and per-word attention maps."""

from __future__ import annotations

import textwrap

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from ganlab_common.images import to_uint8

__all__ = ["captioned_grid", "attention_figure", "attention_sheet"]

_PAD = 2


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _tile(image: torch.Tensor, size: int) -> Image.Image:
    """``[3, H, W]`` in [-1, 1] -> a ``size x size`` PIL image."""
    array = to_uint8(image).permute(1, 2, 0).numpy()
    return Image.fromarray(array).resize((size, size), Image.NEAREST)


def captioned_grid(
    images: torch.Tensor, captions: list[str], nrow: int = 4, size: int | None = None
) -> Image.Image:
    """``[N, 3, H, W]`` in [-1, 1] as a grid, each image with its (wrapped) caption below."""
    n = images.size(0)
    size = size or max(images.size(-1), 96)
    chars = max(8, size // 6)
    wrapped = [textwrap.wrap(c, chars)[:4] for c in captions]
    text_h = 11 * max((len(w) for w in wrapped), default=1) + 4
    rows = (n + nrow - 1) // nrow
    cell_w, cell_h = size + _PAD, size + text_h + _PAD
    sheet = Image.new("RGB", (nrow * cell_w + _PAD, rows * cell_h + _PAD), "white")
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        x, y = _PAD + (i % nrow) * cell_w, _PAD + (i // nrow) * cell_h
        sheet.paste(_tile(images[i], size), (x, y))
        for j, line in enumerate(wrapped[i] if i < len(wrapped) else []):
            draw.text((x + 1, y + size + 2 + 11 * j), line, fill="black", font=_font())
    return sheet


def _overlay(image: Image.Image, attn: np.ndarray) -> Image.Image:
    """The image darkened where ``attn`` (in [0, 1], same size) is low."""
    base = np.asarray(image, dtype=np.float32)
    heat = np.stack([attn * 255, attn * 255, attn * 64], axis=-1)
    mixed = 0.45 * base + 0.55 * heat
    return Image.fromarray(mixed.clip(0, 255).astype(np.uint8))


def attention_figure(
    image: torch.Tensor, attn: torch.Tensor, words: list[str], size: int = 96
) -> Image.Image:
    """One row: the image, then one panel per word with its attention map over the image.

    ``image [3, H, W]`` in [-1, 1]; ``attn [T, h, w]`` (softmax over words or regions,
    rescaled to [0, 1] per word for display); ``words``: the T words (extra panels dropped).
    """
    base = _tile(image, size)
    panels = [(base, "")]
    t = min(len(words), attn.size(0))
    if t:
        maps = F.interpolate(
            attn[:t, None].float(), size=(size, size), mode="bilinear", align_corners=False
        )
        maps = maps[:, 0]
        lo = maps.flatten(1).min(1)[0][:, None, None]
        hi = maps.flatten(1).max(1)[0][:, None, None]
        maps = ((maps - lo) / (hi - lo).clamp(min=1e-8)).cpu().numpy()
        panels += [(_overlay(base, maps[i]), words[i]) for i in range(t)]
    sheet = Image.new("RGB", (len(panels) * (size + _PAD) + _PAD, size + 16), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (panel, word) in enumerate(panels):
        x = _PAD + i * (size + _PAD)
        sheet.paste(panel, (x, 0))
        draw.text((x + 1, size + 2), word[:16], fill="black", font=_font())
    return sheet


def attention_sheet(rows: list[Image.Image]) -> Image.Image:
    """Stack :func:`attention_figure` rows vertically."""
    width = max(r.width for r in rows)
    sheet = Image.new("RGB", (width, sum(r.height for r in rows)), "white")
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height
    return sheet
