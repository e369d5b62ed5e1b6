"""IcGAN data: MNIST digits (one-hot y in {-1, +1}) and CelebA with the paper's 18 attributes.

Both datasets yield ``(image [C, S, S] in [-1, 1], y [ny] in {-1, +1})``.  :class:`Labels`
holds what the training loop needs to know about y: how to draw a "real" label vector
(y' for G), a mismatching one (y_wrong for D) and how to binarise an encoder output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, TensorDataset
from torchvision.transforms import functional as TF

from ganlab_common.errors import UserError

__all__ = [
    "CELEBA_CROP",
    "EXCLUSIVE_GROUPS",
    "ICGAN_ATTRIBUTES",
    "Labels",
    "celeba_dataset",
    "load_dataset",
    "load_image",
    "mnist_dataset",
    "one_hot_pm",
    "prepare_celeba_image",
]

#: The 18 CelebA attributes of the paper, in y order (Male is index 9).
ICGAN_ATTRIBUTES = [
    "Bald", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Bushy_Eyebrows",
    "Eyeglasses", "Gray_Hair", "Heavy_Makeup", "Male", "Mouth_Slightly_Open", "Mustache",
    "Pale_Skin", "Receding_Hairline", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Hat",
]  # fmt: skip

#: Attributes kept mutually exclusive when one of them is switched on (reconstructWithVariations).
EXCLUSIVE_GROUPS = [
    ["Bald", "Bangs", "Receding_Hairline"],
    ["Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair"],
    ["Straight_Hair", "Wavy_Hair"],
]

#: The original's crop of the aligned 178x218 CelebA images: (left, top, right, bottom).
CELEBA_CROP = (30, 40, 168, 178)
CELEBA_ALIGNED_SIZE = (178, 218)

DIGITS = [str(i) for i in range(10)]


def one_hot_pm(labels: torch.Tensor, n: int = 10) -> torch.Tensor:
    """Class indices ``[N]`` -> one-hot ``[N, n]`` with -1 for "off" and +1 for "on"."""
    return F.one_hot(labels.long(), n).float() * 2 - 1


@dataclass
class Labels:
    """The label space: ``kind`` "onehot" (MNIST) or "attributes" (CelebA).

    ``pool [M, ny]`` holds the training set's label vectors; fake labels y' are drawn
    from it (for MNIST that is the class prior).
    """

    kind: str
    names: list[str]
    pool: torch.Tensor

    @property
    def ny(self) -> int:
        return len(self.names)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[n, ny]`` label vectors drawn (with replacement) from the training labels."""
        index = torch.randint(len(self.pool), (n,), generator=generator)
        return self.pool[index].clone()

    def wrong(self, y: torch.Tensor, tries: int = 100) -> torch.Tensor:
        """For each row of ``y [N, ny]`` another training label vector that differs from it."""
        y = y.cpu()
        out = self.sample(len(y))
        for _ in range(tries):
            same = (out == y).all(dim=1)
            if not same.any():
                break
            out[same] = self.sample(int(same.sum()))
        return out

    def binarize(self, raw: torch.Tensor) -> torch.Tensor:
        """Encoder outputs ``[N, ny]`` -> {-1, +1}: argmax one-hot (MNIST) or sign (CelebA)."""
        if self.kind == "onehot":
            return one_hot_pm(raw.argmax(dim=1), self.ny).to(raw.device)
        return torch.where(raw >= 0, 1.0, -1.0).to(raw)


# -- MNIST ---------------------------------------------------------------------------------
def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[N, H, W]`` -> float ``[N, 1, size, size]`` in [-1, 1] (bilinear)."""
    x = images[:, None].float() / 127.5 - 1
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=size < x.shape[-1])
    return x.clamp(-1, 1)


def mnist_dataset(
    root: str | None, split: str, size: int, max_images: int = 0
) -> tuple[TensorDataset, Labels]:
    """MNIST digits resized to ``size`` (the embedded 5,000 digits when ``root`` is None).

    Returns a dataset of ``(x [1, size, size], y [10])`` and the label space.
    """
    from ganlab_common.data import MNIST

    digits = MNIST(root=root, split=split)
    images, targets = digits.data, digits.targets
    if split == "train":
        # The embedded digits are sorted by class: one fixed shuffle, so that the encoders'
        # unshuffled train/test split and --maxImages see every digit.
        order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(0))
        images, targets = images[order], targets[order]
    if max_images:
        images, targets = images[:max_images], targets[:max_images]
    y = one_hot_pm(targets)
    labels = Labels("onehot", list(DIGITS), y)
    return TensorDataset(_resize(images, size), y), labels


# -- CelebA --------------------------------------------------------------------------------
def prepare_celeba_image(image: Image.Image, load_size: int, fine_size: int,
                         random_crop: bool = False, flip: bool = False) -> torch.Tensor:
    """A CelebA photo -> ``[3, fine_size, fine_size]`` in [-1, 1].

    Aligned 178x218 images get the original crop (x 30-168, y 40-178); any other size is
    center-cropped to a square.  Then: resize to ``load_size``, crop ``fine_size`` (random
    or centered), and a horizontal flip with p 0.5 when ``flip``.
    """
    image = image.convert("RGB")
    if image.size == CELEBA_ALIGNED_SIZE:
        image = image.crop(CELEBA_CROP)
    else:
        side = min(image.size)
        image = TF.center_crop(image, [side, side])
    image = image.resize((load_size, load_size), Image.BILINEAR)
    if load_size > fine_size:
        if random_crop:
            top, left = torch.randint(load_size - fine_size + 1, (2,)).tolist()
        else:
            top = left = (load_size - fine_size) // 2
        image = image.crop((left, top, left + fine_size, top + fine_size))
    x = TF.to_tensor(image) * 2 - 1  # [3, S, S]
    if flip and torch.rand(()) < 0.5:
        x = x.flip(-1)
    return x


class _CelebATransform:
    """A picklable transform (DataLoader workers) wrapping :func:`prepare_celeba_image`."""

    def __init__(self, load_size: int, fine_size: int, random_crop: bool, flip: bool):
        self.args = (load_size, fine_size, random_crop, flip)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return prepare_celeba_image(image, *self.args)


def check_celeba_root(root: str | os.PathLike | None) -> Path:
    """``--dataroot`` must be a folder with CelebA's attribute and partition files."""
    if root is None:
        raise UserError(
            "--dataroot: --dataset celeba needs the CelebA folder (img_align_celeba/, "
            "list_attr_celeba.txt, list_eval_partition.txt)"
        )
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--dataroot: '{root}' is not a folder")
    for name in ("list_attr_celeba.txt", "list_eval_partition.txt"):
        if not (root / name).is_file():
            raise UserError(f"--dataroot: '{root / name}' not found (CelebA's {name} is needed)")
    return root


def celeba_dataset(
    root: str | os.PathLike | None, split: str, load_size: int, fine_size: int,
    random_crop: bool = False, flip: bool = False, max_images: int = 0,
) -> tuple[Dataset, Labels]:
    """CelebA with the 18 IcGAN attributes and the official partition ``split``."""
    from ganlab_common.data import CelebA

    root = check_celeba_root(root)
    transform = _CelebATransform(load_size, fine_size, random_crop, flip)
    dataset = CelebA(root, split=split, attributes=ICGAN_ATTRIBUTES, transform=transform)
    pool = torch.as_tensor(dataset.attrs).float()
    if max_images:
        dataset = torch.utils.data.Subset(dataset, range(min(max_images, len(pool))))
        pool = pool[:max_images]
    if len(pool) == 0:
        raise UserError(f"--dataroot: no CelebA images in the '{split}' partition of '{root}'")
    return dataset, Labels("attributes", list(ICGAN_ATTRIBUTES), pool)


def load_dataset(
    dataset: str, root: str | None, split: str, load_size: int, fine_size: int,
    random_crop: bool = False, flip: bool = False, max_images: int = 0,
) -> tuple[Dataset, Labels]:
    """``mnist`` or ``celeba`` as ``(x [C, S, S] in [-1, 1], y [ny] in {-1, +1})`` pairs."""
    if dataset == "mnist":
        return mnist_dataset(root, split, fine_size, max_images)
    return celeba_dataset(root, split, load_size or fine_size, fine_size, random_crop, flip,
                          max_images)


def load_image(path: str | os.PathLike, dataset: str, size: int, flag: str) -> torch.Tensor:
    """One image file -> ``[1, C, size, size]`` in [-1, 1] (grey for MNIST); UserError if bad."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{flag}: no such file '{path}'")
    try:
        with Image.open(path) as image:
            image.load()
            if dataset == "mnist":
                grey = torch.from_numpy(np.asarray(image.convert("L")).copy())
                return _resize(grey[None], size)
            return prepare_celeba_image(image, size, size)[None]
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{flag}: '{path}' is not an image ({type(exc).__name__})") from None
