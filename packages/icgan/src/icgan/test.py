"""``generation/*.lua``: reconstruct with variations, swap attributes, interpolate.

Each mode returns a labelled grid ``[rows, cols, C, S, S]`` plus its column labels;
:func:`save_labelled_grid` writes it as one PNG with the labels drawn above the columns.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from ganlab_common.images import grid_image

from .data import EXCLUSIVE_GROUPS, celeba_dataset, load_image, mnist_dataset, one_hot_pm
from .evaluate import encode, generate
from .train import Trained

__all__ = [
    "flip_attribute",
    "heldout_images",
    "input_pair",
    "interpolate",
    "reconstruct",
    "save_labelled_grid",
    "swap",
]


# -- inputs --------------------------------------------------------------------------------
def heldout_images(trained: Trained, n: int, dataroot: str | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` held-out real images ``[n, C, S, S]`` and labels ``[n, ny]`` (MNIST: spread
    evenly over the test split so every digit appears; CelebA: the official test partition)."""
    cfg = trained.config
    root = dataroot or cfg.get("dataroot")
    size = trained.netG.image_size
    if cfg["dataset"] == "mnist":
        dataset, _ = mnist_dataset(root, "test", size)
        x, y = dataset.tensors
        index = torch.linspace(0, len(x) - 1, min(n, len(x))).round().long()
        return x[index], y[index]
    dataset, _ = celeba_dataset(root, "test", cfg.get("load_size") or size, size)
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])


def input_pair(trained: Trained, im1: str | None, im2: str | None,
               dataroot: str | None = None) -> torch.Tensor:
    """The two images of swap/interpolate: ``--im1Path``/``--im2Path`` or two held-out
    images of different classes/attributes.  ``[2, C, S, S]``."""
    dataset, size = trained.config["dataset"], trained.netG.image_size
    pictures = []
    for path, flag in ((im1, "--im1Path"), (im2, "--im2Path")):
        if path is not None:
            pictures.append(load_image(path, dataset, size, flag))
    if len(pictures) == 2:
        return torch.cat(pictures)
    x, y = heldout_images(trained, 50, dataroot)
    first = pictures[0] if pictures else x[:1]
    differs = [i for i in range(len(x)) if not torch.equal(y[i], y[0])] or [len(x) - 1]
    return torch.cat([first, x[differs[0]:differs[0] + 1]])


# -- modes ---------------------------------------------------------------------------------
def _y_of(trained: Trained, y_raw: torch.Tensor, threshold: bool) -> torch.Tensor:
    if not threshold:
        return y_raw
    if trained.labels_kind == "onehot":
        return one_hot_pm(y_raw.argmax(dim=1), y_raw.shape[1])
    return torch.where(y_raw >= 0, 1.0, -1.0)


def flip_attribute(y: torch.Tensor, index: int, names: list[str]) -> torch.Tensor:
    """Toggle attribute ``index`` of ``y [N, A]``; switching one member of an exclusive group
    on (e.g. Blond_Hair) switches the rest of the group off."""
    out = y.clone()
    on = out[:, index] < 0  # rows where the attribute gets switched on
    out[:, index] = torch.where(on, 1.0, -1.0)
    for group in EXCLUSIVE_GROUPS:
        if names[index] in group:
            for other in group:
                j = names.index(other)
                if j != index:
                    out[on, j] = -1.0
    return out


@torch.no_grad()
def reconstruct(trained: Trained, x: torch.Tensor, threshold: bool = True
                ) -> tuple[torch.Tensor, list[str]]:
    """``reconstructWithVariations.lua``: per image, the real x, G(E_z(x), E_y(x)) and one
    column per class (MNIST) or per attribute toggled (CelebA)."""
    z, y_raw = encode(trained, x)
    y = _y_of(trained, y_raw, threshold)
    columns = [x, generate(trained.netG, z, y)]
    names = trained.label_names
    for i in range(len(names)):
        if trained.labels_kind == "onehot":
            variant = one_hot_pm(torch.full((len(x),), i), len(names))
        else:
            variant = flip_attribute(y, i, names)
        columns.append(generate(trained.netG, z, variant))
    labels = ["real", "recon"] + (names if trained.labels_kind == "onehot"
                                  else [f"~{n}" for n in names])
    return torch.stack(columns, dim=1), labels  # [N, 2 + ny, C, S, S]


@torch.no_grad()
def swap(trained: Trained, pair: torch.Tensor, threshold: bool = True
         ) -> tuple[torch.Tensor, list[str]]:
    """``attributeTransfer.lua``: rows (x1, x2); columns real, reconstruction, G(z_i, y_j)."""
    z, y_raw = encode(trained, pair)
    y = _y_of(trained, y_raw, threshold)
    rec = generate(trained.netG, z, y)
    swapped = generate(trained.netG, z, y.flip(0))
    return torch.stack([pair, rec, swapped], dim=1), ["real", "recon", "swapped y"]


@torch.no_grad()
def interpolate(trained: Trained, pair: torch.Tensor, steps: int = 4, threshold: bool = True
                ) -> tuple[torch.Tensor, list[str]]:
    """``interpolate.lua``: linear in z and in (thresholded) y from x1 to x2, with
    ``steps`` frames between the two reconstructions.  Rows: z and y together, z only,
    y only."""
    z, y_raw = encode(trained, pair)
    y = _y_of(trained, y_raw, threshold)
    alphas = torch.linspace(0, 1, steps + 2)
    rows = []
    for move_z, move_y in ((True, True), (True, False), (False, True)):
        frames = []
        for a in alphas:
            zi = torch.lerp(z[0], z[1], a) if move_z else z[0]
            yi = torch.lerp(y[0], y[1], a) if move_y else y[0]
            frames.append(generate(trained.netG, zi[None], yi[None]))
        rows.append(torch.cat([pair[:1], *frames, pair[1:]]))
    labels = ["x1", *[f"{a:.2f}" for a in alphas.tolist()], "x2"]
    return torch.stack(rows), labels  # [3, steps + 4, C, S, S]


# -- output --------------------------------------------------------------------------------
def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def save_labelled_grid(images: torch.Tensor, column_labels: list[str],
                       path: str | os.PathLike, row_labels: list[str] | None = None,
                       padding: int = 2) -> Path:
    """Write ``images [R, K, C, S, S]`` (in [-1, 1]) as a grid with the K column labels on
    top (rotated when wider than a cell) and optional row labels on the left."""
    rows, cols = images.shape[:2]
    if len(column_labels) != cols:
        raise ValueError(f"{cols} columns but {len(column_labels)} labels")
    size = images.shape[-1]
    scale = max(1, 64 // size)  # tiny digits are upscaled so the labels stay readable
    grid = grid_image(images.flatten(0, 1), nrow=cols, padding=padding).convert("RGB")
    grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    cell = (size + padding) * scale
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(grid)
    widest = max(_text_size(probe, t, font)[0] for t in column_labels)
    tall = max(_text_size(probe, t, font)[1] for t in column_labels)
    rotate = widest > cell - 4
    header = (widest if rotate else tall) + 8
    margin = 0
    if row_labels:
        margin = max(_text_size(probe, t, font)[0] for t in row_labels) + 8
    canvas = Image.new("RGB", (grid.width + margin, grid.height + header), "white")
    canvas.paste(grid, (margin, header))
    draw = ImageDraw.Draw(canvas)
    for j, text in enumerate(column_labels):
        w, h = _text_size(draw, text, font)
        x0 = margin + padding * scale + j * cell
        if rotate:
            label = Image.new("RGB", (w + 2, h + 4), "white")
            ImageDraw.Draw(label).text((0, 0), text, fill="black", font=font)
            label = label.rotate(90, expand=True)
            canvas.paste(label, (x0 + (cell - label.width) // 2, header - 4 - label.height))
        else:
            draw.text((x0 + (cell - padding * scale - w) // 2, 3), text, fill="black", font=font)
    for i, text in enumerate(row_labels or []):
        draw.text((3, header + padding * scale + i * cell + cell // 3), text, fill="black",
                  font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
