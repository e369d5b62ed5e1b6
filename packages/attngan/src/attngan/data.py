"""Captioned image data sets: CUB-200-2011 (birds), COCO, and the embedded digit scenes.

Birds (``--data_dir`` = the original's ``data/birds``)::

    CUB_200_2011/images.txt, bounding_boxes.txt, images/<class>/<image>.jpg
    text/<class>/<image>.txt  (or text_c10/, Reed et al.'s captions, one per line)
    train/filenames.pickle, test/filenames.pickle      (AttnGAN's class-disjoint split)
    [captions.pickle]                                  (reuse the original's vocabulary)

Without the filename pickles the same class-disjoint split (150 / 50 classes) comes from
the class ids (``ganlab_common.data.CUB200``, ``split_scheme="attngan"``).  Birds are cropped
around the bounding box (``r = 0.75 max(w, h)``).

COCO (``--data_dir`` = ``data/coco``): the original layout (``images/<key>.jpg``,
``text/<key>.txt``, ``train|test/filenames.pickle``) or the official captions json
(``annotations/captions_train2014.json``, ``captions_val2014.json`` with ``train2014/``,
``val2014/``; "test" is val2014 as in the original).  No crop; class ids are indices.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from ganlab_common.data import CUB200, SkipsUnreadable, bbox_crop_box, open_image
from ganlab_common.errors import UserError

from .text import Vocabulary, load_captions_pickle, load_filenames_pickle, pad_caption, tokenize

__all__ = ["Records", "load_records", "TextImageDataset", "build_vocabulary"]


@dataclass
class Records:
    """One split: per image a key, a loader source, a bbox, a class id and its captions."""

    keys: list[str]
    sources: list  # Path of an image file, or an in-memory uint8 array [H, W, 3]
    captions: list[list[list[str]]]  # tokens of each caption of each image
    class_ids: list[int]
    bboxes: list[tuple[float, float, float, float] | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    def load_image(self, i: int) -> Image.Image:
        source = self.sources[i]
        if isinstance(source, np.ndarray):
            return Image.fromarray(source)
        img = open_image(source, "RGB")  # UnreadableImageError, a one-line UserError
        bbox = self.bboxes[i] if self.bboxes else None
        if bbox is not None:
            img = img.crop(bbox_crop_box(bbox, img.width, img.height))
        return img


def _read_captions(path: Path, count: int) -> list[list[str]]:
    """The first ``count`` non-empty captions of a text file, tokenised."""
    if not path.is_file():
        raise UserError(f"{path}: missing caption file")
    caps = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        tokens = tokenize(line)
        if tokens:
            caps.append(tokens)
        if len(caps) == count:
            break
    if len(caps) < count:
        raise UserError(
            f"{path}: expected {count} captions (TEXT.CAPTIONS_PER_IMAGE), got {len(caps)}"
        )
    return caps


def _first_dir(*candidates: Path) -> Path | None:
    return next((p for p in candidates if p.is_dir()), None)


def _split_keys(data_dir: Path, split: str) -> list[str]:
    pickle_path = data_dir / split / "filenames.pickle"
    if not pickle_path.is_file():
        raise UserError(
            f"--data_dir: missing {pickle_path} (the original's train/test filename pickles)"
        )
    return load_filenames_pickle(pickle_path)


def _load_birds(data_dir: Path, split: str, caps_per_image: int) -> Records:
    img_root = data_dir / "CUB_200_2011" if (data_dir / "CUB_200_2011").is_dir() else data_dir
    text_root = _first_dir(
        data_dir / "text", data_dir / "text_c10", img_root / "text_c10", img_root / "text"
    )
    if text_root is None:
        raise UserError(f"--data_dir: '{data_dir}' has no text/ (or text_c10/) caption folder")
    pickle_path = data_dir / split / "filenames.pickle"
    if pickle_path.is_file():  # the original's key lists
        cub = CUB200(img_root, "all", bbox_crop=True, captions_root=text_root)
        where = {k: i for i, k in enumerate(cub.keys)}
        keys = load_filenames_pickle(pickle_path)
        missing = [k for k in keys if k not in where]
        if missing:
            raise UserError(f"{pickle_path}: '{missing[0]}' is not in {img_root / 'images.txt'}")
        rows = [where[k] for k in keys]
    else:  # the same class-disjoint split, from the class ids
        cub = CUB200(img_root, split, bbox_crop=True, captions_root=text_root)
        rows = list(range(len(cub.keys)))
    keys = [cub.keys[i] for i in rows]
    return Records(
        keys=keys,
        sources=[cub.paths[i] for i in rows],
        captions=[_read_captions(text_root / f"{k}.txt", caps_per_image) for k in keys],
        class_ids=[int(cub.targets[i]) for i in rows],
        bboxes=[tuple(cub.boxes[i].tolist()) for i in rows],
    )


def _load_coco_json(data_dir: Path, split: str, caps_per_image: int) -> Records:
    year_split = {"train": "train2014", "test": "val2014"}[split]
    path = data_dir / "annotations" / f"captions_{year_split}.json"
    try:
        data = json.loads(path.read_text())
        files = {im["id"]: im["file_name"] for im in data["images"]}
        by_image: dict[int, list[list[str]]] = {i: [] for i in files}
        for ann in data["annotations"]:
            tokens = tokenize(ann["caption"])
            if tokens and len(by_image[ann["image_id"]]) < caps_per_image:
                by_image[ann["image_id"]].append(tokens)
    except FileNotFoundError:
        raise UserError(f"--data_dir: missing {path}") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a COCO captions file ({type(exc).__name__}: {exc})") from None
    ids = sorted(i for i, caps in by_image.items() if len(caps) == caps_per_image)
    if not ids:
        raise UserError(f"{path}: no image has {caps_per_image} captions")
    keys = [files[i].rsplit(".", 1)[0] for i in ids]
    return Records(
        keys=keys,
        sources=[data_dir / year_split / files[i] for i in ids],
        captions=[by_image[i] for i in ids],
        class_ids=list(range(len(ids))),
        bboxes=[None] * len(ids),
    )


def _load_coco(data_dir: Path, split: str, caps_per_image: int) -> Records:
    if (data_dir / "annotations").is_dir():
        return _load_coco_json(data_dir, split, caps_per_image)
    if not (data_dir / "text").is_dir():
        raise UserError(f"--data_dir: '{data_dir}' has neither text/ nor annotations/")
    keys = _split_keys(data_dir, split)
    return Records(
        keys=keys,
        sources=[data_dir / "images" / f"{k}.jpg" for k in keys],
        captions=[_read_captions(data_dir / "text" / f"{k}.txt", caps_per_image) for k in keys],
        class_ids=list(range(len(keys))),
        bboxes=[None] * len(keys),
    )


def load_records(cfg: dict, data_dir: str | Path | None, split: str) -> Records:
    """The ``split`` ("train" | "test") of the data set ``cfg`` names.

    ``data_dir=None`` gives the embedded digit scenes (:mod:`attngan.digits`).
    """
    caps = cfg["TEXT"]["CAPTIONS_PER_IMAGE"]
    if data_dir is None or str(data_dir) == "":
        from .digits import digit_scene_records

        count = cfg["GANLAB"]["DIGIT_SCENES"] or None
        return digit_scene_records(split, caps, count)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"--data_dir: '{data_dir}' is not a folder")
    if cfg["DATASET_NAME"] == "coco":
        return _load_coco(data_dir, split, caps)
    return _load_birds(data_dir, split, caps)


def build_vocabulary(data_dir: str | Path | None, records: list[Records]) -> Vocabulary:
    """The original's ``captions.pickle`` vocabulary when present, else all words of ``records``."""
    if data_dir:
        path = Path(data_dir) / "captions.pickle"
        if path.is_file():
            return load_captions_pickle(path)[2]
    return Vocabulary.build(tokens for r in records for caps in r.captions for tokens in caps)


class TextImageDataset(SkipsUnreadable):
    """Images at every stage size and one random caption of each image.

    ``__getitem__(i) -> {"images": [[3, s, s] in [-1, 1] for s in sizes], "caption": [WORDS_NUM]
    int64, "cap_len": int, "class_id": int, "index": i}``.  Training with ``augment`` draws a
    random crop and flip (the original's transform); otherwise images are centre-cropped.
    An unreadable image file is skipped (warned, counted) for the next readable item.
    """

    def __init__(
        self,
        records: Records,
        vocab: Vocabulary,
        sizes: list[int],
        words_num: int,
        train: bool = True,
        seed: int = 0,
        augment: bool = True,
    ):
        super().__init__()
        self.source = "the training images"
        self.records = records
        self.vocab = vocab
        self.sizes = sizes
        self.words_num = words_num
        self.train = train
        self.rng = random.Random(seed)
        self.ids = [[vocab.encode(tokens)[0] for tokens in caps] for caps in records.captions]
        final = sizes[-1]
        if train and augment:
            self.transform = transforms.Compose(
                [
                    transforms.Resize(int(final * 76 / 64)),
                    transforms.RandomCrop(final),
                    transforms.RandomHorizontalFlip(),
                ]
            )
        else:
            self.transform = transforms.Compose(
                [transforms.Resize(final), transforms.CenterCrop(final)]
            )
        self.to_tensor = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)]
        )

    def __len__(self) -> int:
        return len(self.records)

    def images(self, i: int) -> list[torch.Tensor]:
        img = self.transform(self.records.load_image(i))
        out = []
        for size in self.sizes[:-1]:
            out.append(self.to_tensor(img.resize((size, size), Image.BILINEAR)))
        out.append(self.to_tensor(img))
        return out

    def caption(self, i: int, k: int | None = None) -> tuple[torch.Tensor, int]:
        """Caption ``k`` (random when None) of image ``i``: ``([WORDS_NUM] int64, length)``."""
        caps = self.ids[i]
        k = self.rng.randrange(len(caps)) if k is None else k
        ids = caps[k] or [0]
        padded, length = pad_caption(ids, self.words_num, self.rng)
        return torch.from_numpy(padded), max(length, 1)

    def _read(self, i: int) -> dict:
        caption, length = self.caption(i)
        return {
            "images": self.images(i),
            "caption": caption,
            "cap_len": length,
            "class_id": self.records.class_ids[i],
            "index": i,
        }


def sort_batch(batch: dict) -> dict:
    """The original's ``prepare_data``: sort the batch by caption length, longest first."""
    order = torch.argsort(batch["cap_len"], descending=True, stable=True)
    out = {k: v[order] for k, v in batch.items() if isinstance(v, torch.Tensor)}
    out["images"] = [img[order] for img in batch["images"]]
    return out
