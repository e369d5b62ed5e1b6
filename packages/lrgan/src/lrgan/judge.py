"""A digit judge that can say "not a single digit", for scoring LR-GAN's layers.

The held-out 10-class digit classifier calls anything a digit (an untrained
generator's noise included), so it cannot show that a layer holds one object. This
judge has an 11th class, "not a single digit", trained on negatives drawn here:
noise, flat and textured patches, two digits in one crop, half digits, blobs and
digits on a filled box. Every image is first *normalised*: the bounding box of its
ink (pixels brighter than a threshold, white on black as in MNIST) is cut out, padded
to a square and scaled into the centre 20x20 of a 28x28 frame, as MNIST was made.
A layer is judged "digit d" when the judge's probability of d is at least
``threshold``; anything else counts as "not a single digit".

The judge trains on the 4,000 embedded training digits and is calibrated and
measured on the 1,000 held-out ones (:func:`judge_report`); it is cached like the
held-out classifier.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganlab_common import metrics
from ganlab_common.checkpoint import atomic_save

__all__ = [
    "NOT_A_DIGIT",
    "Judge",
    "judge_report",
    "load_judge",
    "make_negatives",
    "normalise_ink",
    "shrink",
    "train_judge",
]

NOT_A_DIGIT = 10
JUDGE_VERSION = 6
INK = 0.25  # a pixel is ink when brighter than this, in [0, 1]
# Digits are judged at every resolution a layer can have them: training copies are shrunk by
# these factors first (a 28 px digit box drawn at 8-28 px), and the report measures digits as
# the 32 px MNIST-TWO canvases draw them (a 28 px box at 9-15 px: factors 0.32-0.54).
SHRINK = (0.3, 1.0)
SMALL = (0.32, 0.54)


# ---------------------------------------------------------------------------------------
def normalise_ink(images: torch.Tensor, ink: float = INK) -> torch.Tensor:
    """[N, 1, H, W] in [-1, 1], white on black -> [N, 1, 28, 28] in [-1, 1].

    The ink's bounding box is cut out, padded to a square (centred) and scaled so its
    longer side is 20 px, in the middle of a black 28x28 frame. An image without ink
    gives a black frame.
    """
    x = (images.float().mean(1, keepdim=True) + 1) / 2  # [N, 1, H, W] in [0, 1]
    out = torch.zeros(len(x), 1, 28, 28)
    for i, img in enumerate(x):
        rows = torch.nonzero(img[0].amax(1) > ink).flatten()
        cols = torch.nonzero(img[0].amax(0) > ink).flatten()
        if len(rows) == 0 or len(cols) == 0:
            continue
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        side = max(y1 - y0, x1 - x0)
        box = torch.zeros(1, 1, side, side)
        oy, ox = (side - (y1 - y0)) // 2, (side - (x1 - x0)) // 2
        box[0, 0, oy : oy + y1 - y0, ox : ox + x1 - x0] = img[0, y0:y1, x0:x1]
        box = F.interpolate(box, size=(20, 20), mode="bilinear", align_corners=False,
                            antialias=side > 20)
        out[i, 0, 4:24, 4:24] = box[0, 0].clamp(0, 1)
    return out * 2 - 1


def shrink(images: torch.Tensor, factors: tuple[float, float],
           rng: np.random.Generator) -> torch.Tensor:
    """Each image [N, 1, S, S] in [-1, 1] redrawn smaller, as a layer far from the camera:
    resized (antialiased) by a factor drawn from ``factors`` and centred on a black S x S
    frame. The judge's :func:`normalise_ink` then scales it up again, blur included."""
    out = torch.full_like(images, -1.0, dtype=torch.float32)
    side = images.shape[-1]
    for i, img in enumerate(images):
        small = min(side, max(4, round(side * float(rng.uniform(*factors)))))
        x = F.interpolate(img[None].float(), size=(small, small), mode="bilinear",
                          antialias=small < side, align_corners=False)
        at = (side - small) // 2
        out[i, :, at : at + small, at : at + small] = x[0]
    return out


# ---------------------------------------------------------------------------------------
def _digit_patch(digits: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """One random digit as [28, 28] in [0, 1]."""
    return digits[int(rng.integers(len(digits)))].float() / 255


def _paste(canvas: torch.Tensor, patch: torch.Tensor, top: int, left: int) -> None:
    h, w = patch.shape
    canvas[top : top + h, left : left + w] = torch.maximum(canvas[top : top + h, left : left + w],
                                                           patch)


def _blur(x: torch.Tensor, passes: int) -> torch.Tensor:
    x = x[None, None]
    for _ in range(passes):
        x = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    return x[0, 0]


def _noise(rng: np.random.Generator, size: int) -> torch.Tensor:
    kind = rng.integers(3)
    x = torch.from_numpy(rng.random((size, size))).float()
    if kind == 0:  # salt and pepper of random density
        return (x < rng.uniform(0.05, 0.6)).float() * float(rng.uniform(0.5, 1))
    if kind == 1:  # smooth noise
        x = _blur(x, int(rng.integers(1, 4)))
        return ((x - x.min()) / (x.max() - x.min() + 1e-6)).clamp(0, 1)
    return x * float(rng.uniform(0.4, 1))  # uniform noise


def _patch(rng: np.random.Generator, size: int) -> torch.Tensor:
    """A flat, gradient or textured rectangle."""
    x = torch.zeros(size, size)
    h, w = (int(v) for v in rng.integers(size // 3, size + 1, size=2))
    top, left = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
    level = float(rng.uniform(0.3, 1))
    kind = rng.integers(3)
    if kind == 0:
        fill = torch.full((h, w), level)
    elif kind == 1:
        ramp = torch.linspace(float(rng.uniform(0, 0.5)), level, w)
        fill = ramp[None].expand(h, w).clone()
    else:
        fill = level * (0.6 + 0.4 * torch.from_numpy(rng.random((h, w))).float())
    x[top : top + h, left : left + w] = fill
    return x


def _two_digits(digits: torch.Tensor, rng: np.random.Generator, size: int) -> torch.Tensor:
    x = torch.zeros(size, size)
    vertical = rng.random() < 0.5
    gap = int(rng.integers(-8, 6))  # overlapping to well apart
    for k in range(2):
        d = _digit_patch(digits, rng)
        offset = k * (20 + gap) + 4
        top, left = (offset, int(rng.integers(0, 8))) if vertical else (int(rng.integers(0, 8)),
                                                                           offset)
        _paste(x, d[: size - top, : size - left], top, left)
    return x


def _half_digit(digits: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A digit with the ink of one side cut away: the cut removes 40-60% of its ink, so what
    is left is a part, not a thinner digit."""
    for _ in range(20):
        d = _digit_patch(digits, rng).clone()
        axis, keep_first = int(rng.integers(2)), rng.random() < 0.5
        profile = d.sum(1 - axis).cumsum(0) / d.sum().clamp(min=1e-6)  # ink before each line
        cut = int(torch.searchsorted(profile, torch.tensor(float(rng.uniform(0.4, 0.6)))))
        view = d if axis == 0 else d.T
        if keep_first:
            view[cut:] = 0
        else:
            view[:cut] = 0
        if d.gt(0.3).sum() >= 10:
            return d
    return d


def _blob(rng: np.random.Generator, size: int) -> torch.Tensor:
    """One to three filled ellipses."""
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    x = torch.zeros(size, size)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(4, size - 4, size=2)
        ry, rx = rng.uniform(3, size / 2, size=2)
        x = torch.maximum(x, (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).float()
                          * float(rng.uniform(0.5, 1)))
    return _blur(x, int(rng.integers(0, 2)))


def _digit_on_box(digits: torch.Tensor, rng: np.random.Generator, size: int) -> torch.Tensor:
    x = _patch(rng, size) * 0.7
    x[x > 0] = x[x > 0].clamp(min=0.3)
    d = _digit_patch(digits, rng)
    top, left = (int(v) for v in rng.integers(0, size - 28 + 1, size=2))
    _paste(x, d, top, left)
    return x


def _speckled_digit(digits: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A digit's shape filled with bright salt and pepper (no strokes left)."""
    inside = _digit_patch(digits, rng).gt(0.3).float()
    return inside * (torch.from_numpy(rng.random((28, 28))) < 0.35).float()


def make_negatives(digits: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """``count`` "not a single digit" images [count, 1, 56, 56] in [-1, 1] (before
    :func:`normalise_ink`), drawn evenly from the seven kinds, using ``digits``."""
    rng = np.random.default_rng(seed)
    size = 56
    makers = [
        lambda: _noise(rng, size),
        lambda: _patch(rng, size),
        lambda: _two_digits(digits, rng, size),
        lambda: F.pad(_half_digit(digits, rng), (14, 14, 14, 14)),
        lambda: _blob(rng, size),
        lambda: _digit_on_box(digits, rng, size),
        lambda: F.pad(_speckled_digit(digits, rng), (14, 14, 14, 14)),
    ]
    out = torch.stack([makers[i % len(makers)]() for i in range(count)])
    return out[:, None] * 2 - 1


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Images as the layers show them: [N, 1, 28, 28] in [0, 1] -> random stroke
    intensity, slight blur, a little speckle noise."""
    n = len(x)
    level = torch.from_numpy(rng.uniform(0.55, 1.0, (n, 1, 1, 1))).float()
    x = x * level
    if rng.random() < 0.5:
        x = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False) * 0.5 + x * 0.5
    speckle = torch.from_numpy(rng.random(x.shape) < 0.01).float() * 0.4
    return (x + speckle).clamp(0, 1)


# ---------------------------------------------------------------------------------------
@dataclass
class Judge:
    """The 11-class CNN with its decision threshold and held-out figures."""

    model: metrics.DigitCNN
    threshold: float = 0.5
    report: dict | None = None

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 11] class probabilities of white-on-black images [N, 1|3, H, W] in [-1, 1]."""
        x = normalise_ink(images)
        return torch.cat([self.model(b).softmax(1) for b in x.split(500)])

    def judge(self, images: torch.Tensor) -> torch.Tensor:
        """[N] judged digit (0-9), or :data:`NOT_A_DIGIT`."""
        probs = self.probabilities(images)
        conf, label = probs.max(1)
        return torch.where((label < NOT_A_DIGIT) & (conf >= self.threshold), label,
                           torch.full_like(label, NOT_A_DIGIT))


def train_judge(digits: torch.Tensor, labels: torch.Tensor, seed: int = 0, steps: int = 4000,
                batch_size: int = 128, copies: int = 2, width: int = 16) -> metrics.DigitCNN:
    """Train the 11-class CNN on ``digits`` (uint8 [N, 28, 28]) and drawn negatives."""
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    raw = digits[:, None].float() / 127.5 - 1
    # Warped copies are normalised like every judged image. Half of the positives and half
    # of the negatives are drawn at a lower resolution first (as small layers are), so
    # neither blur nor sharpness is a cue for either class.
    full = torch.cat([raw] + [metrics.random_affine(raw, generator) for _ in range(copies)])
    positives = normalise_ink(torch.cat([full, shrink(full, SHRINK, rng)]))
    positive_labels = labels.repeat(2 * (copies + 1))
    drawn = make_negatives(digits, max(len(digits), 4000), seed)
    negatives = normalise_ink(torch.cat([drawn, shrink(drawn, SHRINK, rng)]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = metrics.DigitCNN(width=width, classes=NOT_A_DIGIT + 1)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
        model.train()
        half = batch_size // 2
        for _ in range(steps):
            pi = torch.from_numpy(rng.integers(len(positives), size=half))
            ni = torch.from_numpy(rng.integers(len(negatives), size=batch_size - half))
            # Both classes get the same jitter, so none of it is a cue for either.
            x = _augment((torch.cat([positives[pi], negatives[ni]]) + 1) / 2, rng) * 2 - 1
            y = torch.cat([positive_labels[pi], torch.full((len(ni),), NOT_A_DIGIT)])
            loss = F.cross_entropy(model(x), y, label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def judge_report(judge: Judge, digits: torch.Tensor, labels: torch.Tensor,
                 seed: int = 1) -> dict[str, float]:
    """Held-out figures: digits judged as their own digit, and negatives accepted as a digit.

    ``digits`` uint8 [N, 28, 28] must not have been seen in training; the negatives are
    drawn from them with ``seed``.
    """
    rng = np.random.default_rng(seed)
    images = digits[:, None].float() / 127.5 - 1
    judged = judge.judge(images)
    small = judge.judge(shrink(images, SMALL, rng))
    drawn = make_negatives(digits, 2000, seed)
    negatives = judge.judge(drawn)
    small_negatives = judge.judge(shrink(drawn, SMALL, rng))
    rate = lambda x: x.float().mean().item()  # noqa: E731
    return {
        "heldout_digit_accuracy": rate(judged == labels),
        "heldout_digit_rejected": rate(judged == NOT_A_DIGIT),
        "heldout_negative_false_accept": rate(negatives != NOT_A_DIGIT),
        # as the 32 px MNIST-TWO canvases draw them (a 28 px box at 9-15 px)
        "heldout_small_digit_accuracy": rate(small == labels),
        "heldout_small_negative_false_accept": rate(small_negatives != NOT_A_DIGIT),
        "threshold": judge.threshold,
    }


def _calibrate(model: metrics.DigitCNN, digits: torch.Tensor, seed: int,
               max_false_accept: float = 0.01) -> float:
    """The lowest threshold at which at most ``max_false_accept`` of calibration negatives
    (drawn from ``digits`` with ``seed``) are accepted."""
    judge = Judge(model)
    drawn = make_negatives(digits, 2000, seed)
    small = shrink(drawn, SHRINK, np.random.default_rng(seed))
    probs = judge.probabilities(torch.cat([drawn, small]))
    conf = torch.where(probs.argmax(1) < NOT_A_DIGIT, probs[:, :NOT_A_DIGIT].amax(1),
                       torch.zeros(len(probs)))
    q = torch.quantile(conf, 1 - max_false_accept).item()
    return float(min(max(0.5, math.nextafter(q, 1.0)), 0.99))


def save_judge(judge: Judge, path: str | os.PathLike) -> None:
    """Write ``judge`` (network, width, threshold, report) for :func:`read_judge`."""
    atomic_save({"model": judge.model.state_dict(), "threshold": judge.threshold,
                 "report": judge.report, "version": JUDGE_VERSION,
                 "width": judge.model.width}, path)


def read_judge(path: str | os.PathLike) -> Judge:
    """A judge written by :func:`save_judge` or cached by :func:`load_judge`."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = metrics.DigitCNN(width=int(state.get("width", 16)), classes=NOT_A_DIGIT + 1)
    model.load_state_dict(state["model"])
    return Judge(model.eval(), float(state["threshold"]), dict(state["report"]))


def fit_judge(seed: int = 0, steps: int = 4000, copies: int = 2, width: int = 16) -> Judge:
    """Train the judge on the embedded training digits less 500 held back for its
    calibration, and report on the 1,000 embedded held-out digits (a few minutes on a 2-core
    CPU with the defaults)."""
    from ganlab_common.data import MNIST  # data pulls in pandas

    train = MNIST(split="train")
    calib = torch.arange(len(train)) % 8 == 7  # every class: the embedded set is sorted
    model = train_judge(train.data[~calib], train.targets[~calib], seed, steps=steps,
                        copies=copies, width=width)
    judge = Judge(model, _calibrate(model, train.data[calib], seed + 100))
    test = MNIST(split="test")
    judge.report = judge_report(judge, test.data, test.targets, seed + 200)
    return judge


def load_judge(cache_dir: str | os.PathLike | None = None, seed: int = 0) -> Judge:
    """The judge trained on the embedded training digits (cached after the first call,
    a few minutes on a 2-core CPU), calibrated on 500 of them held back from its
    training, with its report on the 1,000 embedded held-out digits (:func:`fit_judge`)."""
    folder = Path(cache_dir) if cache_dir is not None else metrics.default_cache_dir()
    path = folder / f"lrgan-judge-v{JUDGE_VERSION}-s{seed}.pt"
    try:
        return read_judge(path)
    except (OSError, RuntimeError, KeyError, TypeError, ValueError):
        pass  # absent or unreadable: train and overwrite
    judge = fit_judge(seed)
    save_judge(judge, path)
    return judge
