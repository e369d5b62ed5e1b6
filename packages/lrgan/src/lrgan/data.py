"""LR-GAN training sets: the synthetic MNIST-ONE / MNIST-TWO and the image datasets.

MNIST-ONE and MNIST-TWO were never published with a generation script (the
original download links are dead), so they are drawn here, deterministically
from a seed, after the repository's sample grids: white MNIST digits on a uniform
grey background of random intensity, new canvases every epoch.

* ``mnist-one``: one digit (side 16-26 px) anywhere on a 32 px canvas.
* ``mnist-two``: two digits (side 18-30 px) on a 64 px canvas, one in each half
  (side by side or one above the other).
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
    "MnistCanvases",
    "digit_boxes",
    "draw_canvas",
    "paste_digit",
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


CANVAS_SIZE = {1: 32, 2: 64}  # canvas side per number of digits
DIGIT_SIDE = {1: (16, 26), 2: (18, 30)}  # side of the pasted 28x28 digit box
BACKGROUND = (0.0, 0.75)  # uniform grey level of the background


def paste_digit(canvas: torch.Tensor, digit: torch.Tensor, side: int, top: int,
                left: int) -> None:
    """Alpha-composite one white digit (uint8 [28, 28], alpha = intensity) onto ``canvas``."""
    alpha = digit.float().div(255)[None, None]
    alpha = F.interpolate(alpha, size=(side, side), mode="bilinear", antialias=True)[0, 0]
    alpha = alpha.clamp(0, 1)
    region = canvas[top : top + side, left : left + side]
    canvas[top : top + side, left : left + side] = region * (1 - alpha) + alpha


def digit_boxes(num_objects: int, rng: np.random.Generator,
                layout: str = "any") -> list[tuple[int, int, int]]:
    """(top, left, side) of each digit's box: digit k inside the k-th half of the canvas,
    side by side or (``layout="any"``, half of the time) one above the other."""
    size, (lo, hi) = CANVAS_SIZE[num_objects], DIGIT_SIDE[num_objects]
    vertical = layout == "any" and num_objects == 2 and rng.random() < 0.5
    band = size // num_objects
    boxes = []
    for k in range(num_objects):
        side = int(rng.integers(lo, hi + 1))
        along = min(k * band + int(rng.integers(0, max(1, band - side + 1))), size - side)
        across = int(rng.integers(0, size - side + 1))
        boxes.append((along, across, side) if vertical else (across, along, side))
    return boxes


def draw_canvas(digits: torch.Tensor, labels: torch.Tensor, num_objects: int,
                rng: np.random.Generator, layout: str = "any") -> tuple[torch.Tensor, torch.Tensor]:
    """One MNIST-ONE (1 digit, 32 px) or MNIST-TWO (2 digits, 64 px) canvas.

    Digits are drawn from ``digits`` (uint8 [N, 28, 28]), resized to a random side and
    pasted in white over a uniform grey background. With two digits the canvas is split
    in half, side by side or (``layout="any"``, half of the time) one above the other, as
    in the original's sample grids; digit k lies in the k-th half. Returns the image
    uint8 [1, S, S] and the labels [num_objects] (first half first).
    """
    size = CANVAS_SIZE[num_objects]
    canvas = torch.full((size, size), float(rng.uniform(*BACKGROUND)))
    picks = rng.integers(len(digits), size=num_objects)
    for index, (top, left, side) in zip(picks, digit_boxes(num_objects, rng, layout)):
        paste_digit(canvas, digits[index], side, top, left)
    image = (canvas * 255).round().to(torch.uint8)[None]
    return image, labels[torch.from_numpy(picks)]


class MnistCanvases(Dataset):
    """MNIST-ONE / MNIST-TWO canvases drawn on the fly from a set of MNIST digits.

    Item ``i`` is a function of ``(seed, epoch, i)`` only, so a run is reproducible and
    resumes exactly. ``fresh=True`` draws new canvases every epoch (``set_epoch``); with
    ``fresh=False`` every epoch sees the same ``epoch_size`` canvases (a fixed set).
    Items are ``(image [1, image_size, image_size] in [-1, 1], labels [num_objects])``.
    """

    def __init__(self, digits: torch.Tensor, labels: torch.Tensor, num_objects: int,
                 epoch_size: int, image_size: int, seed: int = 43, fresh: bool = True,
                 layout: str = "any") -> None:
        if num_objects not in CANVAS_SIZE:
            raise ValueError("num_objects must be 1 or 2")
        self.digits, self.labels = digits, labels
        self.num_objects, self.epoch_size, self.image_size = num_objects, epoch_size, image_size
        self.seed, self.fresh, self.layout = seed, fresh, layout
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.epoch_size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch = self.epoch if self.fresh else 0
        rng = np.random.default_rng([self.seed, epoch, index])
        image, labels = draw_canvas(self.digits, self.labels, self.num_objects, rng, self.layout)
        return _resize_batch(_to_unit_range(image[None]), self.image_size)[0], labels

    def batch(self, count: int, epoch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``count`` items of ``epoch`` (default: the current one), stacked."""
        saved, self.epoch = self.epoch, self.epoch if epoch is None else epoch
        try:
            items = [self[i] for i in range(count)]
        finally:
            self.epoch = saved
        return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def make_mnist_canvas(
    digits: torch.Tensor, labels: torch.Tensor, num_objects: int, count: int, seed: int,
    layout: str = "any",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` canvases as one batch: images uint8 [count, 1, S, S], labels [count, k]."""
    parts = [draw_canvas(digits, labels, num_objects, np.random.default_rng([seed, 0, i]), layout)
             for i in range(count)]
    return torch.stack([x for x, _ in parts]), torch.stack([y for _, y in parts])


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
    name: str, dataroot: str | None, image_size: int, seed: int = 43, count: int | None = None,
    epoch_size: int = 60000, fresh: bool = True, split: str = "train",
) -> Dataset:
    """The training set of ``name`` as images in [-1, 1], [nc, imageSize, imageSize].

    Items are ``(image, label)``; for the MNIST canvases the label is the digit
    classes of the objects (first half first). The canvases are drawn from the MNIST
    ``split`` digits (``count`` of them when given): ``epoch_size`` per epoch, new ones
    every epoch when ``fresh``, else the same ``epoch_size`` every epoch.
    """
    spec = dataset_spec(name)
    if spec.needs_root and not dataroot:
        raise UserError(f"--dataroot: required for --dataset {name} (no embedded copy exists)")
    if name in ("mnist-one", "mnist-two"):
        mnist = common_data.MNIST(root=dataroot, split=split)
        objects = 1 if name == "mnist-one" else 2
        return MnistCanvases(mnist.data[:count], mnist.targets[:count], objects, epoch_size,
                             image_size, seed=seed, fresh=fresh)
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
