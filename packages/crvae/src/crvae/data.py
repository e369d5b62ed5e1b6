"""Training and test sets of crVAE / acVAE.

Every dataset here yields ``(x, y)``: ``x`` a float image ``[C, S, S]`` and ``y`` a float
attribute vector ``[A]`` in {-1, +1} (``A = 0`` for unconditional models).

* ``mnist``: 28 px grey intensities in [0, 1]; the trainer binarises them (dynamically for
  training, once with a fixed seed for testing).  The class one-hot (as +-1) is the
  10-dimensional attribute vector of the conditional models.  ``-data`` empty: the
  5,000 embedded real digits; else IDX files under ``-data``.
* ``celeba``: the 40 CelebA attributes, images centre-cropped to a square, resized to 64 or
  128 px (bilinear), in [-1, 1], horizontal flip 0.5 on the training split.
* ``bird``: CUB-200 with bounding-box crops and the official train/test split, 64 or 128 px,
  in [-1, 1] (no attributes).
* ``lfw``: ``-data`` empty: the 100 embedded 25 px grey LFW faces, resized to 64 px and
  repeated to RGB (a small real face set for offline runs); else ``<person>/*.jpg``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision import transforms

from ganlab_common import data as common_data
from ganlab_common.errors import UserError

__all__ = ["DATASETS", "ATTR_DIMS", "TensorPairs", "load_dataset", "binarize", "fixed_binarize"]

DATASETS = ("mnist", "celeba", "bird", "lfw")
ATTR_DIMS = {"mnist": 10, "celeba": 40}


class TensorPairs(Dataset):
    """In-memory ``(x [C, S, S], y [A])`` pairs; ``flip`` mirrors x with probability 0.5."""

    def __init__(self, images: torch.Tensor, attrs: torch.Tensor, flip: bool = False):
        self.images, self.attrs, self.flip = images, attrs, flip

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i]
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, self.attrs[i]


class _Wrapped(Dataset):
    """A ``ganlab_common.data`` dataset with our transform; attributes as float +-1."""

    def __init__(self, base: Dataset, attrs: bool):
        self.base, self.attrs = base, attrs

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.base[i]
        y = torch.as_tensor(y, dtype=torch.float32) if self.attrs else torch.zeros(0)
        return x, y


def _one_hot_pm1(labels: torch.Tensor, classes: int) -> torch.Tensor:
    return F.one_hot(labels.long(), classes).float() * 2 - 1  # [N, classes] in {-1, +1}


def _mnist(root: str, split: str, conditional: bool) -> TensorPairs:
    ds = common_data.MNIST(root=root or None, split=split)
    x = ds.data.float().div(255).unsqueeze(1)  # [N, 1, 28, 28]
    y = _one_hot_pm1(ds.targets, 10) if conditional else torch.zeros(len(x), 0)
    return TensorPairs(x, y)


def _lfw(root: str, image_size: int) -> Dataset:
    if root:
        base = common_data.LFW(root, transform=image_transform(image_size, True))
        return _Wrapped(base, False)
    ds = common_data.LFW(root=None)
    x = ds.data.float().div(255)
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)  # [N, C, h, w]
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = x.expand(-1, 3, -1, -1).clamp(0, 1) * 2 - 1  # [N, 3, S, S] in [-1, 1]
    return TensorPairs(x.contiguous(), torch.zeros(len(x), 0), flip=True)


def image_transform(image_size: int, train: bool) -> transforms.Compose:
    """PIL image -> ``[3, S, S]`` in [-1, 1]: centre square crop, bilinear resize, flip."""
    steps = [
        transforms.Lambda(lambda im: transforms.functional.center_crop(im, min(im.size))),
        transforms.Resize((image_size, image_size),
                          interpolation=transforms.InterpolationMode.BILINEAR, antialias=True),
    ]
    if train:
        steps.append(transforms.RandomHorizontalFlip(0.5))
    steps += [transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)]
    return transforms.Compose(steps)


def _celeba(root: str, split: str, image_size: int, conditional: bool) -> Dataset:
    if not root:
        raise UserError("-data: CelebA is not embedded; give the folder holding "
                        "list_attr_celeba.txt and the images")
    if not (Path(root) / "list_attr_celeba.txt").is_file():
        raise UserError(f"-data: '{root}' has no list_attr_celeba.txt (expected the CelebA "
                        "layout: list_attr_celeba.txt, list_eval_partition.txt, images)")
    transform = image_transform(image_size, split == "train")
    base = common_data.CelebA(root, split=split, transform=transform)
    return _Wrapped(base, conditional)


def _bird(root: str, split: str, image_size: int) -> Dataset:
    if not root:
        raise UserError("-data: CUB-200 is not embedded; give the CUB_200_2011 folder")
    base = common_data.CUB200(root, split=split, bbox_crop=True, split_scheme="official",
                              transform=image_transform(image_size, split == "train"))
    return _Wrapped(base, False)


def load_dataset(
    name: str, root: str, split: str, image_size: int, conditional: bool
) -> Dataset:
    """The ``split`` ("train" or "test") of dataset ``name`` as ``(x, y)`` pairs."""
    if name == "mnist":
        return _mnist(root, split, conditional)
    if name == "lfw":
        return _lfw(root, image_size)
    if name == "celeba":
        return _celeba(root, "train" if split == "train" else "test", image_size, conditional)
    if name == "bird":
        return _bird(root, split, image_size)
    raise UserError(f"-dataset: unknown '{name}' (expected one of {', '.join(DATASETS)})")


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Dynamic binarisation: ``x [N, 1, 28, 28]`` in [0, 1] -> Bernoulli(x) samples in {0, 1}."""
    return torch.bernoulli(x, generator=generator)


def fixed_binarize(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The static binarised test set: one Bernoulli draw per pixel from a fixed seed."""
    return torch.bernoulli(x, generator=torch.Generator().manual_seed(seed))
