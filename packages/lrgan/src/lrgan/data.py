"""LR-GAN training sets: the synthetic MNIST-ONE / MNIST-TWO and the image datasets.

MNIST-ONE and MNIST-TWO were never published with a generation script (the
original download links are dead), so they are generated here, deterministically
from a seed, after the repository's sample grids: white MNIST digits on a uniform
grey background of random intensity.

* ``mnist-one``: one digit (side 16-26 px) anywhere on a 32 px canvas.
* ``mnist-two``: two digits (side 18-30 px) on a 64 px canvas, one in each half.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset, TensorDataset
from torchvision import transforms

from ganlab_common import data as common_data
from ganlab_common.errors import UserError

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "dataset_spec",
    "load_dataset",
    "make_mnist_canvas",
]


@dataclass(frozen=True)
class DatasetSpec:
    """The per-dataset constants the original hid in ``train.py``."""

    nc: int  # image channels
    rot: float  # bound of the pose's rotation/shear terms
    checkfreq: int  # iterations between sample grids
    needs_root: bool  # no embedded default exists


DATASETS: dict[str, DatasetSpec] = {
    "mnist-one": DatasetSpec(nc=1, rot=0.3, checkfreq=100, needs_root=False),
    "mnist-two": DatasetSpec(nc=1, rot=0.3, checkfreq=100, needs_root=False),
    "cifar10": DatasetSpec(nc=3, rot=0.1, checkfreq=100, needs_root=False),
    "cub200": DatasetSpec(nc=3, rot=0.1, checkfreq=40, needs_root=True),
    # The original never set nc/rot/checkfreq for these two (its LFW recipe crashed);
    # we use the natural-image values.
    "lfw": DatasetSpec(nc=3, rot=0.1, checkfreq=100, needs_root=False),
    "folder": DatasetSpec(nc=3, rot=0.1, checkfreq=100, needs_root=True),
}


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise UserError(f"--dataset: unknown '{name}' (expected one of {', '.join(DATASETS)})")
    return DATASETS[name]


def make_mnist_canvas(
    digits: torch.Tensor, labels: torch.Tensor, num_objects: int, count: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate ``count`` MNIST-ONE (1 object, 32 px) or MNIST-TWO (2 objects, 64 px) images.

    ``digits`` is [N, 28, 28] uint8. Each digit is resized to a random side, placed at a
    random position (object k inside the k-th vertical band of the canvas) and
    alpha-composited in white (alpha = its intensity) over a uniform grey background.
    Returns images [count, 1, S, S] uint8 and the digit labels [count, num_objects]
    (left digit first).
    """
    if num_objects not in (1, 2):
        raise ValueError("num_objects must be 1 or 2")
    size, (lo, hi) = (32, (16, 26)) if num_objects == 1 else (64, (18, 30))
    rng = np.random.RandomState(seed)
    canvas = torch.from_numpy(rng.uniform(0.0, 0.6, count)).float()
    canvas = canvas[:, None, None].repeat(1, size, size)
    out_labels = torch.empty(count, num_objects, dtype=torch.int64)
    band = size // num_objects
    for k in range(num_objects):
        index = torch.from_numpy(rng.randint(len(digits), size=count))
        side = rng.randint(lo, hi + 1, size=count)
        left = np.minimum(k * band + rng.randint(0, np.maximum(1, band - side + 1)), size - side)
        top = rng.randint(0, size - side + 1)
        out_labels[:, k] = labels[index]
        for s in np.unique(side):
            rows = np.flatnonzero(side == s)
            alpha = digits[index[rows]].float().div(255)[:, None]
            alpha = F.interpolate(alpha, size=(int(s), int(s)), mode="bilinear",
                                  antialias=True)[:, 0].clamp(0, 1)
            for a, i in zip(alpha, rows):
                y, x = int(top[i]), int(left[i])
                region = canvas[i, y : y + s, x : x + s]
                canvas[i, y : y + s, x : x + s] = region * (1 - a) + a
    images = (canvas * 255).round().to(torch.uint8)[:, None]
    return images, out_labels


def _to_unit_range(images: torch.Tensor) -> torch.Tensor:
    return images.float().div(127.5).sub(1)


def _image_transform(image_size: int, nc: int) -> transforms.Compose:
    steps = [transforms.Resize(image_size), transforms.CenterCrop(image_size)]
    if nc == 3:
        steps.insert(0, transforms.Lambda(lambda im: im.convert("RGB")))
    steps += [transforms.ToTensor(), transforms.Normalize([0.5] * nc, [0.5] * nc)]
    return transforms.Compose(steps)


def _resize_batch(images: torch.Tensor, image_size: int) -> torch.Tensor:
    if images.shape[-1] == image_size:
        return images
    return F.interpolate(images, size=(image_size, image_size), mode="bilinear", antialias=True)


def load_dataset(
    name: str, dataroot: str | None, image_size: int, seed: int = 43, count: int | None = None
) -> Dataset:
    """The training set of ``name`` as images in [-1, 1], [nc, imageSize, imageSize].

    Items are ``(image, label)``; for the MNIST canvases the label is the digit
    classes of the objects (left to right).
    """
    spec = dataset_spec(name)
    if spec.needs_root and not dataroot:
        raise UserError(f"--dataroot: required for --dataset {name} (no embedded copy exists)")
    if name in ("mnist-one", "mnist-two"):
        mnist = common_data.MNIST(root=dataroot, split="train")
        n = count or len(mnist)
        objects = 1 if name == "mnist-one" else 2
        images, labels = make_mnist_canvas(mnist.data, mnist.targets, objects, n, seed)
        return TensorDataset(_resize_batch(_to_unit_range(images), image_size), labels)
    if name == "cifar10":
        cifar = common_data.CIFAR10(root=dataroot, split="train")
        images = _to_unit_range(cifar.data[:count].permute(0, 3, 1, 2))
        return TensorDataset(_resize_batch(images, image_size), cifar.targets[:count])
    if name == "lfw" and not dataroot:
        faces = common_data.LFW(root=None)
        images = _to_unit_range(faces.data[:count, None]).repeat(1, 3, 1, 1)
        return TensorDataset(_resize_batch(images, image_size), faces.targets[:count])
    transform = _image_transform(image_size, spec.nc)
    if name == "cub200":
        data = common_data.CUB200(dataroot, split="train", bbox_crop=True, transform=transform)
    elif name == "lfw":
        data = common_data.LFW(dataroot, transform=transform)
    else:
        data = common_data.ImageFolder(dataroot, transform=transform)
    return Subset(data, range(min(count, len(data)))) if count else data
