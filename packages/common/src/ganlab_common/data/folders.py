"""Folders of image files: any image folder, and LFW (``<person>/*.jpg``, or the embedded faces)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganlab_common.data._base import (
    IMAGE_EXTENSIONS,
    FileImageDataset,
    ImageDataset,
    MemoryImageDataset,
    PathLike,
    Transform,
    find_images,
    one_line,
    package_data_dir,
    require_dir,
)
from ganlab_common.errors import UserError

__all__ = ["ImageFolder", "LFW"]

EXTENSIONS_TEXT = "/".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
EMBEDDED_LFW_FACES = 100  # skimage's lfw_subset: 100 faces, then 100 non-face crops


def labels_by_parent(root: Path, paths: list[Path]) -> tuple[torch.Tensor, list[str]]:
    """Label each file by its folder relative to ``root`` ("." for files in ``root``)."""
    parents = [p.parent.relative_to(root).as_posix() for p in paths]
    classes = sorted(set(parents))
    index = {name: i for i, name in enumerate(classes)}
    return torch.tensor([index[p] for p in parents], dtype=torch.int64), classes


class ImageFolder(FileImageDataset):
    """Every image (jpg/jpeg/png/bmp/webp) under ``root``, recursively, sorted by path.

    ``dataset[i] -> (image, label)`` where ``label`` indexes ``classes``, the sorted
    sub-folders (relative paths, "." for files directly in ``root``) that hold
    images, as torchvision's ImageFolder does for one level of class folders.

    Args:
        root: the folder.
        transform: called with a PIL image; without it, images are float
            ``[C, H, W]`` in [0, 1].
        mode: PIL mode every image is converted to ("RGB", "L", ...; None keeps
            each file's own mode, which may break batching).

    Attributes: ``paths``, ``targets`` int64 ``[N]``, ``classes``.
    """

    def __init__(self, root: PathLike, transform: Transform | None = None,
                 mode: str | None = "RGB") -> None:
        root = require_dir(root, f"a folder of images ({EXTENSIONS_TEXT})")
        paths = find_images(root)
        if not paths:
            raise UserError(f"{root}: no images found (expected {EXTENSIONS_TEXT} files "
                            "in it or its sub-folders)")
        targets, classes = labels_by_parent(root, paths)
        super().__init__(paths, targets, classes, str(root), transform, mode)


def load_embedded_lfw() -> torch.Tensor:
    """The 100 LFW faces of scikit-image's ``lfw_subset.npy`` as uint8 ``[100, 25, 25]``."""
    path = package_data_dir("skimage", "data") / "lfw_subset.npy"
    try:
        faces = np.load(path, allow_pickle=False)[:EMBEDDED_LFW_FACES]
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable ({one_line(exc)}); reinstall scikit-image") from None
    if faces.shape != (EMBEDDED_LFW_FACES, 25, 25):
        raise UserError(f"{path}: expected faces of shape [100, 25, 25], found {faces.shape}")
    return torch.from_numpy(np.rint(np.clip(faces, 0, 1) * 255).astype(np.uint8))


class LFW(ImageDataset):
    """Labeled Faces in the Wild; ``dataset[i] -> (image, person index)``.

    Args:
        root: the LFW folder of ``<person>/<person>_0001.jpg`` (250x250 RGB), one
            level deep, sorted. None: the 100 real LFW faces shipped inside
            scikit-image (25x25 grey, already cropped; the non-face half of
            ``lfw_subset`` is dropped). They carry no identities: every target is 0.
        transform: called with a PIL image (RGB from disk, L when embedded);
            without it, images are float ``[C, H, W]`` in [0, 1].

    Attributes: ``targets`` int64 ``[N]``, ``classes`` (person names); from disk
    also ``paths``; embedded also ``data`` uint8 ``[100, 25, 25]`` (``paths`` None).
    """

    def __init__(self, root: PathLike | None = None, transform: Transform | None = None) -> None:
        super().__init__(transform)
        if root is None:
            data = load_embedded_lfw()
            self._images: ImageDataset = MemoryImageDataset(
                data, torch.zeros(len(data), dtype=torch.int64), ["unknown"],
                "scikit-image lfw_subset faces (embedded)")
            self.data: torch.Tensor | None = data
            self.paths: list[Path] | None = None
        else:
            root = require_dir(root, "the LFW folder of <person>/*.jpg")
            paths = find_images_one_level(root)
            targets, classes = labels_by_parent(root, paths)
            self._images = FileImageDataset(paths, targets, classes, str(root))
            self.data = None
            self.paths = paths
        self.targets = self._images.targets
        self.classes = self._images.classes
        self.source = self._images.source

    def __len__(self) -> int:
        return len(self._images)

    def _pil(self, index: int) -> Image.Image:
        return self._images._pil(index)

    def _tensor(self, index: int) -> torch.Tensor:
        return self._images._tensor(index)


def find_images_one_level(root: Path) -> list[Path]:
    """Images in the direct sub-folders of ``root`` (``<person>/*.jpg``)."""
    paths = [p for p in find_images(root) if len(p.relative_to(root).parts) == 2]
    if not paths:
        raise UserError(f"{root}: no <person>/*.jpg images found (expected the LFW folder "
                        "whose sub-folders are named after people)")
    return paths
