"""``facegan-dataset``: the augmented LFW face set (``dataset/generate_dataset.py``).

Every ``*.jpg`` in ``--path`` and its direct sub-folders (LFW: ``<person>/*.jpg``, 250x250) is
augmented 19 times (horizontal flip p 0.5, brightness x U(0.9, 1.1), scale U(0.82, 1.10),
rotation and translation drawn as integers in +-8 deg and +-5 px, a constant-mode warp around
the image centre), then the original and the 19 copies are cropped to the LFWcrop box (rows
92-175, columns 83-166), resized to 64x64 and written as ``{img:06}_{aug:03}.jpg`` to
``out_aug_64x64/``; the originals (aug 000) also go to ``out_unaug_64x64/``.

Unlike the original, the order is the sorted path order and image ``i`` draws its
augmentations from its own generator seeded with ``(seed, i)``, so the output is identical
byte for byte across runs, worker counts and resumptions.
"""

from __future__ import annotations

import functools
import io
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from skimage import transform as tf
from tqdm.auto import tqdm

from ganlab_common.errors import UserError

__all__ = [
    "AUGMENTATIONS",
    "BuildReport",
    "augment_embedded",
    "build_dataset",
    "faces_from_cropped",
    "faces_from_lfw",
    "list_lfw",
]

AUGMENTATIONS = 19
AUG_DIR = "out_aug_64x64"
UNAUG_DIR = "out_unaug_64x64"
SIZE = 64
CROP_TOP, CROP_BOTTOM, CROP_LEFT, CROP_RIGHT = 92, 175, 83, 166  # inclusive (LFWcrop)
CROP = CROP_BOTTOM - CROP_TOP + 1  # 84
LFW_SIZE = 250
JPEG_QUALITY = 95


@dataclass(frozen=True)
class Augmentation:
    """One draw of the original's random augmentation."""

    flip: bool
    brightness: float
    scale: float
    rotation: int  # degrees
    tx: int
    ty: int


def draw_augmentations(seed: int, index: int, n: int = AUGMENTATIONS) -> list[Augmentation]:
    """``n`` augmentations for image ``index`` from a generator seeded with ``(seed, index)``."""
    rng = np.random.default_rng([seed, index])
    out = []
    for _ in range(n):
        scale = float(rng.uniform(0.82, 1.10))
        rotation = int(rng.integers(-8, 9))
        tx, ty = (int(v) for v in rng.integers(-5, 6, size=2))
        flip = bool(rng.random() > 0.5)
        brightness = float(rng.uniform(0.9, 1.1))
        out.append(Augmentation(flip, brightness, scale, rotation, tx, ty))
    return out


def _centre_transform(shape: tuple[int, int], aug: Augmentation, shift: float
                      ) -> tf.ProjectiveTransform:
    """Scale/rotate/translate around the image centre (``ImageAugmenter.create_aug_matrices``)."""
    h, w = shape
    cx, cy = int(w / 2), int(h / 2)
    to_origin = tf.SimilarityTransform(translation=(-cx, -cy))
    affine = tf.AffineTransform(scale=(aug.scale, aug.scale), rotation=np.deg2rad(aug.rotation),
                                translation=(aug.tx * shift, aug.ty * shift))
    back = tf.SimilarityTransform(translation=(cx, cy))
    return to_origin + affine + back


def _photometric(image: np.ndarray, aug: Augmentation) -> np.ndarray:
    """Flip and brightness, clipped back to uint8 (the original's order)."""
    if aug.flip:
        image = image[:, ::-1]
    return np.clip(image * aug.brightness, 0, 255).astype(np.uint8)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def _resize(image: np.ndarray, size: int = SIZE) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def faces_from_lfw(image: np.ndarray, index: int, seed: int = 43) -> list[np.ndarray]:
    """An LFW photo (uint8 ``[250, 250(, 3)]``) -> the original + 19 augmentations, each
    cropped to the LFWcrop box and resized: uint8 ``[64, 64(, 3)]``."""
    if image.shape[:2] != (LFW_SIZE, LFW_SIZE):
        image = np.asarray(Image.fromarray(image).resize((LFW_SIZE, LFW_SIZE), Image.BILINEAR))
    faces = [_resize(image[CROP_TOP:CROP_BOTTOM + 1, CROP_LEFT:CROP_RIGHT + 1])]
    # Warping only the crop window gives the same pixels as warp-then-crop, ~9x faster.
    window = tf.SimilarityTransform(translation=(CROP_LEFT, CROP_TOP))
    for aug in draw_augmentations(seed, index):
        matrix = _centre_transform(image.shape[:2], aug, shift=1.0)
        warped = tf.warp(_photometric(image, aug), window + matrix.inverse,
                         output_shape=(CROP, CROP), mode="constant")
        faces.append(_resize(_to_uint8(warped)))
    return faces


def faces_from_cropped(image: np.ndarray, index: int, seed: int = 43) -> list[np.ndarray]:
    """An already cropped face (the embedded 25x25 ones) -> 20 uint8 ``[64, 64(, 3)]`` faces.

    The face is resized to 64 first; translations are scaled from the 84 px crop to 64 px,
    and the warp repeats the edge pixels (``mode="edge"``) since there is no margin to pull in.
    """
    base = _resize(image)
    faces = [base]
    for aug in draw_augmentations(seed, index):
        matrix = _centre_transform(base.shape[:2], aug, shift=SIZE / CROP)
        warped = tf.warp(_photometric(base, aug), matrix.inverse, mode="edge")
        faces.append(_to_uint8(warped))
    return faces


def augment_embedded(faces: np.ndarray, seed: int = 43) -> np.ndarray:
    """All embedded faces x 20: uint8 ``[N * 20, 64, 64]`` (the in-memory training set)."""
    return np.stack([f for i, face in enumerate(faces) for f in faces_from_cropped(face, i, seed)])


@functools.lru_cache(maxsize=2)
def augmented_embedded_faces(seed: int = 43) -> np.ndarray:
    """:func:`augment_embedded` of the embedded faces, computed once per process (a pure
    function of ``seed``; the array is read-only)."""
    from .data import embedded_faces

    images = augment_embedded(embedded_faces(), seed)
    images.flags.writeable = False
    return images


# -- the folder builder ------------------------------------------------------------------------
def list_lfw(path: str | Path) -> tuple[list[Path], int]:
    """Sorted ``*.jpg`` in ``path`` and its direct sub-folders, and the number of other files
    found there (skipped).  A missing or image-less ``path`` is a UserError."""
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"--path: no such folder '{root}' (expected the LFW folder "
                        "<person>/*.jpg)")
    folders = [root] + sorted(p for p in root.iterdir() if p.is_dir())
    images, other = [], 0
    for folder in folders:
        for entry in sorted(folder.iterdir()):
            if not entry.is_file():
                continue
            if entry.suffix.lower() == ".jpg":
                images.append(entry)
            else:
                other += 1
    if not images:
        raise UserError(f"--path: no .jpg images in '{root}' or its direct sub-folders "
                        f"(expected LFW's <person>/*.jpg; {other} other file(s) skipped)")
    return images, other


def _names(index: int) -> list[str]:
    return [f"{index:06d}_{aug:03d}.jpg" for aug in range(AUGMENTATIONS + 1)]


def _is_done(out: Path, index: int) -> bool:
    names = _names(index)
    return (out / UNAUG_DIR / names[0]).is_file() and all(
        (out / AUG_DIR / n).is_file() for n in names
    )


def _write_jpeg(array: np.ndarray, path: Path) -> None:
    """Encode to memory, then replace ``path`` atomically (a kill never leaves half a file)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=JPEG_QUALITY)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(buffer.getvalue())
    os.replace(tmp, path)


def _write_faces(out: Path, index: int, faces: list[np.ndarray]) -> None:
    names = _names(index)
    _write_jpeg(faces[0], out / UNAUG_DIR / names[0])
    for name, face in zip(names, faces):
        _write_jpeg(face, out / AUG_DIR / name)


def _process_file(job: tuple[str, int, str, int]) -> bool:
    """Worker: one LFW photo -> 21 JPEGs.  False when the file is not a readable image."""
    path, index, out, seed = job
    try:
        with Image.open(path) as img:
            image = np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError):
        return False
    _write_faces(Path(out), index, faces_from_lfw(image, index, seed))
    return True


def _process_embedded(job: tuple[np.ndarray, int, str, int]) -> bool:
    face, index, out, seed = job
    _write_faces(Path(out), index, faces_from_cropped(face, index, seed))
    return True


@dataclass(frozen=True)
class BuildReport:
    """What :func:`build_dataset` did."""

    total: int
    written: int
    already_done: int
    unreadable: int
    other_files: int
    embedded: bool

    @property
    def files_per_image(self) -> int:
        return AUGMENTATIONS + 1


def _map(function, jobs: list, workers: int) -> Iterator[bool]:
    if workers <= 1 or len(jobs) <= 1:
        yield from map(function, jobs)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        yield from pool.map(function, jobs, chunksize=8)


def build_dataset(path: str | Path | None, out: str | Path, workers: int = 1,
                  seed: int = 43, echo=print) -> BuildReport:
    """Write ``<out>/out_aug_64x64`` and ``<out>/out_unaug_64x64``; skip finished images."""
    out = Path(out)
    if path is None:
        from .data import embedded_faces

        faces = embedded_faces()
        echo(f"no --path: building from the {len(faces)} LFW faces embedded in scikit-image "
             "(25x25 grey, already cropped: the LFWcrop crop is skipped, edges are repeated "
             "in the warp)")
        items, other, function = list(faces), 0, _process_embedded
    else:
        files, other = list_lfw(path)
        echo(f"found {len(files)} .jpg images in '{path}'"
             + (f" ({other} other file(s) skipped)" if other else ""))
        items, function = [str(f) for f in files], _process_file
    (out / AUG_DIR).mkdir(parents=True, exist_ok=True)
    (out / UNAUG_DIR).mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(len(items)) if not _is_done(out, i)]
    done = len(items) - len(todo)
    if done:
        echo(f"resuming: {done} of {len(items)} images are already done")
    jobs = [(items[i], i, str(out), seed) for i in todo]
    written = unreadable = 0
    with tqdm(total=len(items), initial=done, desc="facegan-dataset", unit="img",
              dynamic_ncols=True) as bar:
        for ok in _map(function, jobs, workers):
            written += ok
            unreadable += not ok
            bar.update(1)
    return BuildReport(len(items), written, done, unreadable, other, path is None)
