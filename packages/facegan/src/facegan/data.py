"""Training data: a folder written by ``facegan-dataset`` or the embedded LFW faces.

Where the faces come from is a :class:`DataSource`, recorded in every run's config so that
``facegan-c2f`` and ``facegan-sample`` can reuse "the same data as the latest facegan-train run":

* ``folder``: ``<dir>/*.jpg`` (``out_aug_64x64/`` from ``facegan-dataset``), read lazily and
  resized to the training scale (``dataset.lua``: ``image.load`` + ``image.scale``).
* ``embedded``: the 100 real LFW faces that ship inside scikit-image (25x25 grey, already
  cropped), augmented in memory exactly like ``facegan-dataset`` does without ``--path``
  (the original + 19 augmentations each, 2,000 images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ganlab_common.data import LFW, SkipsUnreadable, open_image
from ganlab_common.errors import UserError

from .dataset import AUG_DIR, UNAUG_DIR, augmented_embedded_faces

__all__ = [
    "DEFAULT_DATA_DIR",
    "DataSource",
    "FaceFolder",
    "FaceTensor",
    "embedded_faces",
    "load_faces",
    "real_faces",
    "resize",
    "resolve_source",
]

DEFAULT_DATA_DIR = Path("data/facegan")  # facegan-dataset --out


@dataclass(frozen=True)
class DataSource:
    """``kind`` is ``"folder"`` (then ``path`` is the image folder) or ``"embedded"``."""

    kind: str
    path: str | None = None

    def describe(self) -> str:
        if self.kind == "embedded":
            return "the 100 embedded LFW faces (scikit-image, 25x25 grey) x 20 augmentations"
        return f"the images in '{self.path}'"

    @property
    def grey_only(self) -> bool:
        return self.kind == "embedded"


def _jpgs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))


def resolve_source(dataset: str | None, flag: str = "--dataset") -> DataSource:
    """``dataset`` when given (it must hold JPEGs); else ``data/facegan/out_aug_64x64`` when
    it exists; else the embedded faces."""
    if dataset:
        folder = Path(dataset)
        if not folder.is_dir():
            raise UserError(f"{flag}: no such folder '{folder}' (build one with facegan-dataset)")
        if not _jpgs(folder):
            raise UserError(f"{flag}: '{folder}' holds no .jpg images (expected the "
                            f"{AUG_DIR}/ folder written by facegan-dataset)")
        return DataSource("folder", str(folder))
    default = DEFAULT_DATA_DIR / AUG_DIR
    if default.is_dir() and _jpgs(default):
        return DataSource("folder", str(default))
    return DataSource("embedded")


def source_from_dict(value: dict | None) -> DataSource | None:
    """The inverse of ``dataclasses.asdict(source)`` (as stored in config.json)."""
    if not isinstance(value, dict) or value.get("kind") not in ("folder", "embedded"):
        return None
    return DataSource(value["kind"], value.get("path"))


def embedded_faces() -> np.ndarray:
    """The 100 real LFW faces embedded in scikit-image: uint8 ``[100, 25, 25]`` (grey)."""
    return LFW(root=None).data.numpy()


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of ``[N, C, H, W]`` floats to ``[N, C, size, size]`` (antialiased when
    shrinking, like ``image.scale``)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    shrink = images.shape[-1] > size
    out = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                        antialias=shrink)
    return out.clamp(0, 1)


class FaceTensor(Dataset):
    """In-memory faces: uint8 ``[N, H, W]`` (grey) -> float ``[C, S, S]`` in [0, 1]."""

    def __init__(self, images: np.ndarray | torch.Tensor, scale: int, channels: int):
        data = torch.from_numpy(np.array(images, dtype=np.uint8))  # a copy: input may be read-only
        if data.dim() == 3:
            data = data.unsqueeze(1)  # [N, 1, H, W]
        else:
            data = data.permute(0, 3, 1, 2)  # [N, 3, H, W]
        x = resize(data.float() / 255, scale)
        if channels == 1 and x.shape[1] == 3:
            x = _to_grey(x)
        elif channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        self.images = x.contiguous()  # [N, C, S, S]

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def _to_grey(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, as PIL's ``convert("L")``: ``[N, 3, H, W]`` -> ``[N, 1, H, W]``."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


class FaceFolder(SkipsUnreadable):
    """``<folder>/*.jpg`` (sorted), each loaded as float ``[C, S, S]`` in [0, 1].

    An unreadable file is skipped with a warning for the next one (counted; see
    ``ganlab_common.data.report_skipped_images``).
    """

    def __init__(self, folder: str | Path, scale: int, channels: int):
        super().__init__()
        self.paths = _jpgs(Path(folder))
        self.scale, self.channels = scale, channels
        self.source = str(folder)

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, index: int) -> torch.Tensor:
        img = open_image(self.paths[index], "L" if self.channels == 1 else "RGB")
        array = np.asarray(img, dtype=np.uint8)
        x = torch.from_numpy(array.copy()).float().div(255)
        x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
        return resize(x.unsqueeze(0), self.scale)[0]


def check_channels(source: DataSource, grayscale: bool | None) -> int:
    """1 or 3 channels: ``--grayscale``/``--color`` when given, else grey for the embedded
    faces and colour for a folder."""
    if grayscale is None:
        return 1 if source.grey_only else 3
    if not grayscale and source.grey_only:
        raise UserError("--color: the embedded LFW faces are grey; build a colour dataset with "
                        "'facegan-dataset --path <lfw>' (or pass --dataset <folder>)")
    return 1 if grayscale else 3


def load_faces(source: DataSource, scale: int, channels: int, seed: int = 43) -> Dataset:
    """The training set of ``source`` at ``scale`` px with ``channels`` channels."""
    if source.kind == "folder":
        return FaceFolder(source.path, scale, channels)
    return FaceTensor(augmented_embedded_faces(seed), scale, channels)


def real_faces(source: DataSource, scale: int, channels: int, limit: int | None = None
               ) -> torch.Tensor:
    """Un-augmented real faces ``[N, C, S, S]`` in [0, 1] (the reference set for FID and the
    sample grids): the 100 embedded faces, or ``out_unaug_64x64/`` beside a folder source
    (the folder's ``*_000.jpg`` originals when that is missing)."""
    if source.kind == "embedded":
        images = FaceTensor(embedded_faces(), scale, channels).images
        return images[:limit] if limit else images
    folder = Path(source.path)
    sibling = folder.parent / UNAUG_DIR
    if sibling.is_dir() and _jpgs(sibling):
        dataset = FaceFolder(sibling, scale, channels)
    else:
        dataset = FaceFolder(folder, scale, channels)
        dataset.paths = [p for p in dataset.paths if p.stem.endswith("_000")] or dataset.paths
    count = len(dataset) if limit is None else min(limit, len(dataset))
    return torch.stack([dataset[i] for i in range(count)])
