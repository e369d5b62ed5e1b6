"""``generation/*.lua``: generate G(z, y), reconstruct with variations, swap attributes,
interpolate.

Each mode returns a labelled grid ``[rows, cols, C, S, S]`` plus its column labels;
:func:`save_labelled_grid` writes it as one PNG with the labels drawn above the columns.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from ganlab_common.errors import UserError
from ganlab_common.images import grid_image

from .data import EXCLUSIVE_GROUPS, celeba_dataset, load_image, mnist_dataset, one_hot_pm
from .evaluate import encode, generate
from .train import Trained, sample_noise

__all__ = [
    "NOISE_MODES",
    "attribute_columns",
    "flip_attribute",
    "generate_grid",
    "heldout_images",
    "input_pair",
    "interpolate",
    "reconstruct",
    "save_labelled_grid",
    "swap",
    "user_images",
]

#: generation/generate.lua's noise modes (from dcgan.torch): random z per row; a line from
#: one random z to another down the rows; and, with --imsize > 1, one large image per y whose
#: spatial noise follows such a line along its width (linefull1d) or its diagonal (linefull).
NOISE_MODES = ("random", "line", "linefull1d", "linefull")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff")


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


def user_images(trained: Trained, load_path: str, n: int) -> torch.Tensor:
    """``--loadPath`` (the original's ``loadPath``): one image file, or a folder whose first
    ``n`` images (sorted by name) are used -> ``[N, C, S, S]`` in [-1, 1]."""
    path = Path(load_path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:n]
        if not files:
            raise UserError(f"--loadPath: no images ({', '.join(IMAGE_SUFFIXES)}) in '{path}'")
    elif path.is_file():
        files = [path]
    else:
        raise UserError(f"--loadPath: '{path}': no such file or folder")
    dataset, size = trained.config["dataset"], trained.netG.image_size
    return torch.cat([load_image(f, dataset, size, "--loadPath") for f in files])


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


def attribute_columns(trained: Trained, attrs: tuple[str, ...] | list[str]
                      ) -> tuple[torch.Tensor, list[str]]:
    """The y of each generated column ``[K, ny]`` and its label.

    No ``attrs``: generate.lua's layout, one column per class (MNIST digit) or per attribute
    switched on alone (CelebA).  ``attrs`` (``NAME=1|-1``, MNIST ``digit=D``): one column with
    those attributes set and every other one at -1 (MNIST: that digit).
    """
    names, ny = trained.label_names, len(trained.label_names)
    if not attrs:
        return one_hot_pm(torch.arange(ny), ny), list(names)
    y = torch.full((1, ny), -1.0)
    for item in attrs:
        name, sep, value = item.partition("=")
        if trained.labels_kind == "onehot":
            if name != "digit" or value not in names:
                raise UserError(f"--attr: '{item}': this MNIST run takes digit=0..9")
            y = one_hot_pm(torch.tensor([names.index(value)]), ny)
            continue
        if not sep or name not in names or value not in ("1", "-1", "+1"):
            raise UserError(f"--attr: '{item}': expected NAME=1|-1 with NAME one of "
                            f"{', '.join(names)}")
        y[0, names.index(name)] = 1.0 if value in ("1", "+1") else -1.0
    return y, [",".join(attrs)]


def _line(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` points from ``b`` to ``a`` (generate.lua: ``a * t + b * (1 - t)``)."""
    t = torch.linspace(0, 1, steps)
    return a[None] * t[:, None] + b[None] * (1 - t[:, None])  # [steps, nz]


@torch.no_grad()
def generate_grid(trained: Trained, y: torch.Tensor, rows: int, noise_mode: str = "random",
                  imsize: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """``generation/generate.lua``: G(z, y) for each column ``y [K, ny]``.

    random/line: ``rows`` z (the run's noise type), the same z along a row ->
    ``[rows, K, C, S, S]``.  linefull1d/linefull: one image per column from spatial noise of
    ``imsize`` cells along the width (1 x imsize) or both axes (imsize x imsize), the noise
    following a line along the width or the diagonal -> ``[1, K, C, H, W]``.
    """
    if noise_mode not in NOISE_MODES:
        raise UserError(f"--noisemode: expected one of {', '.join(NOISE_MODES)}")
    nz, kind = trained.netG.nz, trained.noise
    ends = sample_noise(2, nz, kind, generator=generator)
    if noise_mode in ("random", "line"):
        z = (sample_noise(rows, nz, kind, generator=generator) if noise_mode == "random"
             else _line(ends[0], ends[1], rows))
        cols = [generate(trained.netG, z, y[k:k + 1].expand(rows, -1)) for k in range(len(y))]
        return torch.stack(cols, dim=1)  # [rows, K, C, S, S]
    if imsize < 2:
        raise UserError(f"--imsize: --noisemode {noise_mode} needs --imsize > 1 (the spatial "
                        "noise that makes one large image; generate.lua asserted the same)")
    line = _line(ends[0], ends[1], imsize)  # [imsize, nz]
    if noise_mode == "linefull1d":
        z_map = line.T[:, None, :]  # [nz, 1, imsize]
    else:
        z_map = sample_noise(imsize * imsize, nz, kind, generator=generator)
        z_map = z_map.T.reshape(nz, imsize, imsize).clone()
        idx = torch.arange(imsize)
        z_map[:, idx, idx] = line.T
    device = next(trained.netG.parameters()).device
    images = []
    for k in range(len(y)):
        y_map = y[k][:, None, None].expand(-1, *z_map.shape[1:])
        zy = torch.cat([z_map, y_map.to(z_map.dtype)])[None]  # [1, nz + ny, h, w]
        images.append(trained.netG.net(zy.to(device)).cpu())
    return torch.stack([torch.cat(images)])  # [1, K, C, H, W]


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
