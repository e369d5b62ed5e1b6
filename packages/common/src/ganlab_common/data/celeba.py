"""CelebA (aligned and cropped) with its 40 binary attributes and official partition."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ganlab_common.data._base import (
    ImageDataset,
    PathLike,
    Transform,
    check_choice,
    one_line,
    open_image,
    parse_int,
    read_lines,
    read_table,
    require_dir,
    require_file,
)
from ganlab_common.errors import UserError

__all__ = ["CELEBA_ATTRIBUTES", "CelebA", "read_celeba_attributes"]

# The 40 attribute names of list_attr_celeba.txt, in file order.
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald",
    "Bangs", "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair",
    "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
SPLITS = ("train", "valid", "test", "all")
PARTITION_CODES = {"train": 0, "valid": 1, "test": 2}
SIGNS = {"1": 1, "-1": -1}

IMAGE_DIR = "img_align_celeba"
ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"


def read_celeba_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Parse ``list_attr_celeba.txt``.

    Line 1 is the image count, line 2 the attribute names, then one line per
    image: ``<file> <one value of -1 or 1 per name>``. pandas reads the table
    (fast); when it finds anything off, a line-by-line pass names the bad line.

    Returns:
        names: the attribute names (40 in the real file).
        files: the image file names ``[N]``.
        values: int8 array ``[N, len(names)]`` in {-1, +1}.
    """
    count, names = read_attr_header(path)
    table = fast_table(path, skiprows=2, n_columns=len(names) + 1)
    values = None if table is None else table.iloc[:, 1:].to_numpy()
    if values is not None and (np.abs(values) == 1).all():
        files, values = table[0].tolist(), values.astype(np.int8)
    else:
        files, values = parse_attr_lines(path, len(names))
    if len(files) != count:
        raise UserError(f"{path}:1: says {count} images but {len(files)} are listed")
    return names, files, values


def read_attr_header(path: Path) -> tuple[int, list[str]]:
    """The image count (line 1) and attribute names (line 2) of the attribute list."""
    try:
        with open(path, encoding="utf-8") as f:
            first, second = f.readline(), f.readline()
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not a UTF-8 text file ({one_line(exc)})") from None
    count = parse_int(first.strip(), path, 1, "the number of images")
    names = second.split()
    if not names:
        raise UserError(f"{path}:2: expected the attribute names")
    return count, names


def fast_table(path: Path, skiprows: int, n_columns: int) -> pd.DataFrame | None:
    """A whitespace table ``<name> <int> ...`` read by pandas, or None if it is not clean."""
    try:
        table = pd.read_csv(path, sep=r"\s+", skiprows=skiprows, header=None, dtype={0: str},
                            encoding="utf-8")
    except (ValueError, UnicodeDecodeError):  # pandas' ParserError and EmptyDataError included
        return None
    if table.shape[1] != n_columns:
        return None
    if not all(pd.api.types.is_integer_dtype(t) for t in table.dtypes.iloc[1:]):
        return None  # a missing value (NaN) or a non-integer
    return table


def parse_attr_lines(path: Path, n_names: int) -> tuple[list[str], np.ndarray]:
    """Line-by-line parse of the attribute rows; UserError naming the first bad line."""
    files, rows = [], []
    for lineno, line in enumerate(read_lines(path)[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != n_names + 1:
            raise UserError(f"{path}:{lineno}: expected a file name and {n_names} values "
                            f"(-1 or 1), found {len(fields) - 1} values")
        try:
            rows.append([SIGNS[v] for v in fields[1:]])
        except KeyError as exc:
            raise UserError(f"{path}:{lineno}: expected -1 or 1, found {exc.args[0]!r}") from None
        files.append(fields[0])
    return files, np.array(rows, dtype=np.int8).reshape(len(files), n_names)


def read_partition(path: Path) -> pd.Series:
    """Parse ``list_eval_partition.txt`` (``<file> <0|1|2>`` = train/valid/test).

    Returns the partition code indexed by file name.
    """
    table = fast_table(path, skiprows=0, n_columns=2)
    if table is not None and table[1].isin((0, 1, 2)).all():
        codes = pd.Series(table[1].to_numpy(), index=table[0].to_numpy())
        return codes[~codes.index.duplicated(keep="last")]
    partition = {}
    for lineno, (name, code) in read_table(path, 2, "'<file> <0|1|2>'"):
        if code not in ("0", "1", "2"):
            raise UserError(f"{path}:{lineno}: expected partition 0, 1 or 2, found {code!r}")
        partition[name] = int(code)
    return pd.Series(partition, dtype=np.int64)


def select_columns(names: list[str], attributes: Sequence[str] | None, path: Path) -> list[int]:
    """Column indices of ``attributes`` (all when None), in the order asked for."""
    if attributes is None:
        return list(range(len(names)))
    if isinstance(attributes, str):
        attributes = [attributes]
    unknown = [a for a in attributes if a not in names]
    if unknown:
        raise UserError(f"attributes: unknown name(s) {', '.join(unknown)} (valid names in "
                        f"{path}: {', '.join(names)})")
    if len(set(attributes)) != len(attributes):
        raise UserError(f"attributes: a name is repeated in {', '.join(attributes)}")
    return [names.index(a) for a in attributes]


class CelebA(ImageDataset):
    """Aligned CelebA faces with binary attributes.

    ``dataset[i] -> (image, attrs)`` with ``attrs`` a float tensor ``[K]`` in {-1, +1}
    (the selected attributes, in the order asked for). Images are read lazily.

    Args:
        root: folder holding ``img_align_celeba/`` (``000001.jpg`` ..., 178x218),
            ``list_attr_celeba.txt`` and ``list_eval_partition.txt``.
        split: "train", "valid", "test" (partition 0, 1, 2) or "all" (the
            partition file is then not needed).
        attributes: names to keep, e.g. IcGAN's 18; None keeps all (40).
        transform: called with a PIL RGB image; without it, images are float
            ``[3, H, W]`` in [0, 1].

    Attributes: ``attr_names`` (list of K names), ``attrs`` float ``[N, K]``,
    ``filenames`` (``[N]`` names in ``image_dir``), ``image_dir``.
    """

    def __init__(self, root: PathLike, split: str = "train",
                 attributes: Sequence[str] | None = None,
                 transform: Transform | None = None) -> None:
        super().__init__(transform)
        check_choice(split, SPLITS, "split")
        root = require_dir(root, f"the CelebA folder holding {IMAGE_DIR}/, {ATTR_FILE} "
                                 f"and {PARTITION_FILE}")
        self.image_dir = require_dir(root / IMAGE_DIR, "the aligned CelebA JPEGs (000001.jpg ...)")
        attr_path = require_file(root / ATTR_FILE, "the CelebA attribute list (count line, "
                                 "header of 40 names, then '<file> <40 values of -1/1>')")
        names, files, values = read_celeba_attributes(attr_path)
        columns = select_columns(names, attributes, attr_path)
        keep = np.ones(len(files), dtype=bool)
        if split != "all":
            keep = self._partition_mask(root / PARTITION_FILE, files, split, attr_path)
        self.filenames = [f for f, k in zip(files, keep, strict=True) if k]
        self.attr_names = [names[c] for c in columns]
        self.attrs = torch.from_numpy(values[keep][:, columns].astype(np.float32))
        self.source = str(root)
        self._check_first_image()

    @staticmethod
    def _partition_mask(path: Path, files: list[str], split: str, attr_path: Path) -> np.ndarray:
        path = require_file(path, "the CelebA partition list ('<file> <0|1|2>' per line)")
        codes = read_partition(path).reindex(files)
        missing = codes.isna().to_numpy()
        if missing.any():
            raise UserError(f"{path}: no partition for {files[int(missing.argmax())]} "
                            f"(listed in {attr_path})")
        keep = codes.to_numpy() == PARTITION_CODES[split]
        if not keep.any():
            raise UserError(f"{path}: no image is in the {split!r} partition")
        return keep

    def _check_first_image(self) -> None:
        """Fail early, naming the file, when the image folder does not match the lists."""
        if self.filenames and not (self.image_dir / self.filenames[0]).is_file():
            raise UserError(f"{self.image_dir / self.filenames[0]}: image file not found "
                            f"(listed in {ATTR_FILE})")

    def __len__(self) -> int:
        return len(self.filenames)

    def _pil(self, index: int) -> Image.Image:
        return open_image(self.image_dir / self.filenames[index], "RGB")

    def _target(self, index: int) -> torch.Tensor:
        return self.attrs[index]
