"""CUB-200-2011 birds, with bounding-box crops and the AttnGAN caption layout."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from ganlab_common.data._base import (
    ImageDataset,
    PathLike,
    Transform,
    check_choice,
    open_image,
    parse_int,
    read_lines,
    read_table,
    require_dir,
    require_file,
)
from ganlab_common.errors import UserError

__all__ = ["CUB200", "CUB_ATTNGAN_TEST_CLASSES", "bbox_crop_box"]

SPLITS = ("train", "test", "all")
SPLIT_SCHEMES = ("attngan", "official")
CAPTION_DIRS = ("text_c10", "text")
# The 50 test classes (1-based ids) of the class-disjoint text-to-image split of
# Reed et al. (2016) used by StackGAN and AttnGAN: 150 train classes with 8,855
# images, these 50 with 2,933 (the counts in AttnGAN's logs).
CUB_ATTNGAN_TEST_CLASSES = (
    1, 4, 6, 8, 9, 14, 23, 29, 31, 33, 34, 35, 36, 37, 38, 43, 49, 51, 53, 66,
    72, 79, 84, 86, 91, 95, 96, 98, 101, 102, 103, 112, 114, 119, 121, 130, 135, 138, 147, 156,
    163, 165, 166, 180, 183, 185, 186, 187, 197, 200,
)


def bbox_crop_box(bbox: tuple[float, float, float, float], width: int, height: int
                  ) -> tuple[int, int, int, int]:
    """AttnGAN's crop around a bird: ``(left, top, right, bottom)`` in pixels.

    A square of half-side ``r = int(0.75 * max(w, h))`` centred on the box centre
    (``x + w/2``, ``y + h/2``, truncated to int), clipped to the image.
    """
    x, y, w, h = bbox
    r = int(0.75 * max(w, h))
    cx, cy = int((2 * x + w) / 2), int((2 * y + h) / 2)
    return max(0, cx - r), max(0, cy - r), min(width, cx + r), min(height, cy + r)


def read_id_table(path: Path, n_fields: int, what: str) -> dict[int, tuple[int, list[str]]]:
    """``{image id: (line number, other fields)}`` of a CUB ``<id> ...`` text file."""
    table = {}
    for lineno, fields in read_table(path, n_fields, what):
        table[parse_int(fields[0], path, lineno, "an integer image id")] = (lineno, fields[1:])
    return table


def parse_boxes(path: Path, ids: list[int]) -> torch.Tensor:
    """``bounding_boxes.txt`` (``<id> x y w h``) -> float tensor ``[N, 4]`` in ``ids`` order."""
    table = read_id_table(path, 5, "'<image id> <x> <y> <width> <height>'")
    boxes = []
    for i in ids:
        if i not in table:
            raise UserError(f"{path}: no bounding box for image id {i}")
        lineno, fields = table[i]
        try:
            box = [float(v) for v in fields]
        except ValueError:
            raise UserError(f"{path}:{lineno}: expected numbers x y w h, found "
                            f"{' '.join(fields)}") from None
        if box[2] <= 0 or box[3] <= 0:
            raise UserError(f"{path}:{lineno}: box width and height must be positive")
        boxes.append(box)
    return torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)


def class_of(relpath: str, path: Path, lineno: int) -> int:
    """1-based class id from the ``NNN.Name/`` folder prefix of an image path."""
    prefix = relpath.split("/")[0].split(".")[0]
    return parse_int(prefix, path, lineno, "an image path '<NNN.Class>/<file>.jpg'")


def read_classes(root: Path, images: dict, images_txt: Path) -> dict[int, int]:
    """``{image id: 1-based class id}`` from image_class_labels.txt or the folder names."""
    labels_txt = root / "image_class_labels.txt"
    if labels_txt.is_file():
        table = read_id_table(labels_txt, 2, "'<image id> <class id>'")
        missing = next((i for i in images if i not in table), None)
        if missing is not None:
            raise UserError(f"{labels_txt}: no class for image id {missing}")
        classes = {i: parse_int(table[i][1][0], labels_txt, table[i][0], "a class id")
                   for i in images}
    else:
        classes = {i: class_of(f[0], images_txt, n) for i, (n, f) in images.items()}
    bad = next((i for i, c in classes.items() if not 1 <= c <= 200), None)
    if bad is not None:
        raise UserError(f"{labels_txt if labels_txt.is_file() else images_txt}: class "
                        f"{classes[bad]} of image id {bad} is outside 1..200")
    return classes


def split_ids(root: Path, images: dict, classes: dict[int, int], split: str,
              scheme: str) -> list[int]:
    """Sorted image ids of ``split`` under ``scheme`` ("attngan" or "official")."""
    if split == "all":
        return sorted(images)
    if scheme == "attngan":
        return sorted(i for i in images
                      if (classes[i] in CUB_ATTNGAN_TEST_CLASSES) == (split == "test"))
    path = require_file(root / "train_test_split.txt", "'<image id> <1 train|0 test>' lines")
    table = read_id_table(path, 2, "'<image id> <1 train|0 test>'")
    ids = []
    for i in sorted(images):
        if i not in table:
            raise UserError(f"{path}: no train/test entry for image id {i}")
        lineno, (flag,) = table[i]
        if flag not in ("0", "1"):
            raise UserError(f"{path}:{lineno}: expected 1 (train) or 0 (test), found {flag!r}")
        if (flag == "1") == (split == "train"):
            ids.append(i)
    return ids


def find_captions_root(root: Path, captions_root: PathLike | None) -> Path | None:
    """``captions_root``, else ``text_c10/`` or ``text/`` inside ``root`` or beside it."""
    if captions_root is not None:
        return require_dir(captions_root, "the caption folder <class>/<image>.txt (text_c10/)")
    for base in (root, root.parent):
        for name in CAPTION_DIRS:
            if (base / name).is_dir():
                return base / name
    return None


class CUB200(ImageDataset):
    """CUB-200-2011 birds; ``dataset[i] -> (image, class index 0..199)``.

    Args:
        root: the ``CUB_200_2011/`` folder: ``images/<NNN.Class>/<file>.jpg``,
            ``images.txt`` (``<id> <NNN.Class>/<file>.jpg``), ``bounding_boxes.txt``
            (``<id> x y w h``; needed for ``bbox_crop``), ``train_test_split.txt``
            (``<id> <1 train|0 test>``; needed for the official split) and,
            optionally, ``image_class_labels.txt`` (``<id> <class id>``; else the
            class comes from the ``NNN.`` folder prefix).
        split: "train", "test" or "all".
        bbox_crop: crop around the bird's box as AttnGAN does (see ``bbox_crop_box``).
        transform: called with a PIL RGB image; without it, images are float
            ``[3, H, W]`` in [0, 1].
        captions_root: the caption folder ``<NNN.Class>/<image>.txt`` (10 lines per
            image; Reed et al.'s ``text_c10/``, AttnGAN's ``data/birds/text/``).
            None: ``text_c10/`` or ``text/`` inside ``root`` or beside it.
        split_scheme: "attngan" (default): the class-disjoint split of Reed et al.
            used by StackGAN/AttnGAN, 150 train classes (8,855 images) and the 50
            in ``CUB_ATTNGAN_TEST_CLASSES`` (2,933); "official": the dataset's own
            ``train_test_split.txt`` (5,994 / 5,794, all classes in both).

    Attributes: ``keys`` (``"<NNN.Class>/<image>"``, no extension), ``paths``,
    ``targets`` int64 ``[N]``, ``boxes`` float64 ``[N, 4]`` (x, y, w, h) or None.
    """

    def __init__(self, root: PathLike, split: str = "train", bbox_crop: bool = True,
                 transform: Transform | None = None, captions_root: PathLike | None = None,
                 split_scheme: str = "attngan") -> None:
        super().__init__(transform)
        check_choice(split, SPLITS, "split")
        check_choice(split_scheme, SPLIT_SCHEMES, "split_scheme")
        root = require_dir(root, "the CUB_200_2011 folder with images/ and images.txt")
        image_dir = require_dir(root / "images", "the CUB images <NNN.Class>/<file>.jpg")
        images_txt = require_file(root / "images.txt", "'<image id> <NNN.Class>/<file>.jpg' lines")
        images = read_id_table(images_txt, 2, "'<image id> <NNN.Class>/<file>.jpg'")
        classes = read_classes(root, images, images_txt)
        ids = split_ids(root, images, classes, split, split_scheme)
        if not ids:
            raise UserError(f"{images_txt}: no image in the {split!r} split ({split_scheme})")
        relpaths = [images[i][1][0] for i in ids]
        self.ids = ids
        self.keys = [r.rsplit(".", 1)[0] for r in relpaths]
        self.paths = [image_dir / r for r in relpaths]
        self.targets = torch.tensor([classes[i] - 1 for i in ids], dtype=torch.int64)
        if not self.paths[0].is_file():  # fail early when images/ does not match images.txt
            raise UserError(f"{self.paths[0]}: image file not found (listed in {images_txt})")
        self.boxes = None
        if bbox_crop:
            boxes_txt = require_file(root / "bounding_boxes.txt", "'<image id> x y w h' lines")
            self.boxes = parse_boxes(boxes_txt, ids)
        self.captions_root = find_captions_root(root, captions_root)
        self.source = str(root)
        self._root = root

    def __len__(self) -> int:
        return len(self.paths)

    def _pil(self, index: int) -> Image.Image:
        image = open_image(self.paths[index], "RGB")
        if self.boxes is not None:
            box = tuple(self.boxes[index].tolist())
            image = image.crop(bbox_crop_box(box, image.width, image.height))
        return image

    def captions(self, index: int) -> list[str]:
        """The non-empty caption lines of image ``index`` (10 in the real data)."""
        if self.captions_root is None:
            raise UserError(f"{self._root}: no caption folder found (looked for "
                            f"{' and '.join(CAPTION_DIRS)}/ in it and beside it); "
                            "pass captions_root=")
        path = require_file(self.captions_root / f"{self.keys[index]}.txt",
                            "the captions of one image, one per line")
        return [line.strip() for line in read_lines(path) if line.strip()]
