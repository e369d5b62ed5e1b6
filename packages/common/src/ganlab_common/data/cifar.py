"""CIFAR-10: the python batches on disk, or the 20 real test images shipped in foolbox.

``torchvision.datasets.CIFAR10`` is not used: it insists on the md5 of all six
batches and ``batches.meta`` even for the test split, and reports any problem as
"Dataset not found or corrupted" without a file name.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganlab_common.data._base import (
    MemoryImageDataset,
    PathLike,
    Transform,
    check_choice,
    full_path,
    one_line,
    open_image,
    package_data_dir,
    require_dir,
    require_file,
)
from ganlab_common.errors import UserError

__all__ = ["CIFAR10", "read_cifar_batch"]

SPLITS = ("train", "test", "all")
BATCHES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
    "all": tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",),
}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
BATCH_FOLDER = "cifar-10-batches-py"

# The only globals a CIFAR batch pickle needs: numpy arrays and py2 byte strings.
SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except those of numpy arrays."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_cifar_batch(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One python batch -> images uint8 ``[N, 32, 32, 3]`` and labels int64 ``[N]``.

    The file is a pickled dict with ``data`` (uint8 ``[N, 3072]``, channel-major)
    and ``labels`` (N ints in 0..9); keys may be ``str`` or ``bytes``.
    """
    path = full_path(path)
    try:
        with open(path, "rb") as f:
            entry = _BatchUnpickler(f, encoding="latin1").load()
    except Exception as exc:  # garbage can fail the unpickler in many ways: all mean "not a batch"
        raise UserError(f"{path}: not a CIFAR-10 python batch ({one_line(exc) or 'truncated'})"
                        ) from None
    if not isinstance(entry, dict):
        raise UserError(f"{path}: expected a pickled dict, found {type(entry).__name__}")
    data = np.asarray(_get(entry, "data", path))
    labels = np.asarray(_get(entry, "labels", path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise UserError(f"{path}: 'data' must be uint8 [N, 3072], found {data.dtype} "
                        f"{list(data.shape)}")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{path}: 'labels' must be {len(data)} integers, found {labels.dtype} "
                        f"{list(labels.shape)}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"{path}: labels must lie in 0..9, found {labels.min()}..{labels.max()}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # -> [N, H, W, C]
    return np.ascontiguousarray(images), labels.astype(np.int64)


def _get(entry: dict, key: str, path: Path) -> Any:
    for k in (key, key.encode()):
        if k in entry:
            return entry[k]
    raise UserError(f"{path}: the pickled dict has no {key!r} entry")


def batch_folder(root: PathLike) -> Path:
    """``root`` if it holds the batches, else ``root/cifar-10-batches-py`` if that exists."""
    root = require_dir(root, f"the CIFAR-10 python batches folder ({BATCH_FOLDER}/ or its "
                             "parent) with data_batch_1..5 and test_batch")
    nested = root / BATCH_FOLDER
    if not any((root / n).exists() for n in BATCHES["all"]) and nested.is_dir():
        return nested
    return root


def load_batches(root: PathLike, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    folder = batch_folder(root)
    paths = [require_file(folder / name, "a CIFAR-10 python batch (pickled dict)")
             for name in BATCHES[split]]
    parts = [read_cifar_batch(p) for p in paths]
    images = np.concatenate([x for x, _ in parts])
    labels = np.concatenate([y for _, y in parts])
    return torch.from_numpy(images), torch.from_numpy(labels)


def load_embedded_cifar() -> tuple[torch.Tensor, torch.Tensor]:
    """The first 20 CIFAR-10 test images from foolbox's ``data/cifar10_<ii>_<label>.png``."""
    folder = package_data_dir("foolbox", "data")
    files = sorted(folder.glob("cifar10_*_*.png"), key=lambda p: int(p.stem.split("_")[1]))
    if not files:
        raise UserError(f"{folder}: no cifar10_*_*.png images (reinstall foolbox)")
    images = []
    for f in files:
        image = np.asarray(open_image(f, "RGB"))
        if image.shape != (32, 32, 3):
            raise UserError(f"{f}: expected a 32x32 image, found {image.shape[1]}x{image.shape[0]}")
        images.append(image)
    labels = [int(f.stem.split("_")[2]) for f in files]
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64)


class CIFAR10(MemoryImageDataset):
    """CIFAR-10, 32x32 RGB; ``dataset[i] -> (image [3, 32, 32], label)``.

    Args:
        root: the folder holding ``data_batch_1..5`` and ``test_batch`` (or its
            parent with ``cifar-10-batches-py/``). None: the first 20 real test
            images embedded in the foolbox wheel, whatever the split (too few to split).
        split: "train" (50,000), "test" (10,000) or "all".
        transform: called with a PIL image (mode RGB); without it, images are float
            ``[3, 32, 32]`` in [0, 1].

    Attributes: ``data`` uint8 ``[N, 32, 32, 3]``, ``targets`` int64 ``[N]``, ``classes``.
    """

    def __init__(self, root: PathLike | None = None, split: str = "train",
                 transform: Transform | None = None) -> None:
        check_choice(split, SPLITS, "split")
        if root is None:
            data, targets = load_embedded_cifar()
            source = "foolbox cifar10 test images (embedded)"
        else:
            data, targets = load_batches(root, split)
            source = str(full_path(root))
        super().__init__(data, targets, CIFAR10_CLASSES, source, transform)
