"""FID against a scipy reference and its basic properties; the held-out digit classifier.

Inception runs at ~8 images/s on a 2-core CPU, so the features of ~150 real
images are computed once per module and shared.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganlab_common import metrics
from ganlab_common.data import FASHION_MNIST_DEBIAN_DIR, MNIST, FashionMNIST
from ganlab_common.errors import UserError

PER_GROUP = 40  # images per group: two halves of one class, and one other class


def to_unit(data: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, H, W]`` -> float ``[N, 1, H, W]`` in [-1, 1]."""
    return data[:, None].float() / 127.5 - 1


def scipy_frechet(mu1, s1, mu2, s2) -> float:
    """pytorch-fid's formula with ``scipy.linalg.sqrtm`` (the reference)."""
    linalg = pytest.importorskip("scipy.linalg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "singular matrix" notes from sqrtm
        covmean = linalg.sqrtm(s1 @ s2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


@pytest.fixture(scope="module")
def inception():
    return metrics.load_inception("cpu")


@pytest.fixture(scope="module")
def groups() -> dict[str, torch.Tensor]:
    """Fashion-MNIST T-shirts (two disjoint halves) and trousers; MNIST 0s/1s without it."""
    if FASHION_MNIST_DEBIAN_DIR.is_dir():
        data = FashionMNIST(split="test")
    else:  # apt-get install dataset-fashion-mnist gives the real test; digits keep the property
        data = MNIST(split="test")
    first = to_unit(data.data[data.targets == 0][: 2 * PER_GROUP])
    other = to_unit(data.data[data.targets == 1][:PER_GROUP])
    return {"half_a": first[:PER_GROUP], "half_b": first[PER_GROUP:], "other": other}


@pytest.fixture(scope="module")
def stats(groups, inception) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {name: metrics.feature_stats(metrics.inception_features(x, inception, batch_size=20))
            for name, x in groups.items()}


# ----------------------------------------------------------------------------
# FID


def test_fid_of_a_set_with_itself_is_zero(groups, inception):
    images = groups["half_a"][:6]
    assert metrics.fid(images, images, model=inception, batch_size=3) < 1e-6


def test_frechet_distance_of_identical_stats_is_zero(stats):
    mu, sigma = stats["half_a"]  # 40 samples: rank-deficient 2048 x 2048 covariance
    assert metrics.frechet_distance(mu, sigma, mu, sigma) < 1e-6


def test_same_class_halves_are_far_closer_than_two_classes(stats):
    within = metrics.frechet_distance(*stats["half_a"], *stats["half_b"])
    between = metrics.frechet_distance(*stats["half_a"], *stats["other"])
    assert 0 < within < 0.5 * between, (within, between)


def test_frechet_distance_matches_scipy_sqrtm_on_real_features(stats):
    a, b = stats["half_a"], stats["other"]
    ours, ref = metrics.frechet_distance(*a, *b), scipy_frechet(*a, *b)
    assert ours == pytest.approx(ref, rel=1e-3)


def test_frechet_distance_matches_scipy_sqrtm_full_rank():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(500, 32)), rng.normal(size=(400, 32)) @ rng.normal(size=(32, 32))
    a, b = metrics.feature_stats(x), metrics.feature_stats(y + 0.3)
    assert metrics.frechet_distance(*a, *b) == pytest.approx(scipy_frechet(*a, *b), rel=1e-9)


def test_feature_stats_are_float64_mean_and_covariance():
    x = np.random.default_rng(1).normal(size=(10, 3)).astype(np.float32)
    mu, sigma = metrics.feature_stats(x)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False))


def test_features_accept_grey_any_size_and_iterables_of_batches(inception):
    grey = to_unit(MNIST(split="test").data[:4])  # [4, 1, 28, 28]
    rgb = F.interpolate(grey, size=(299, 299), mode="bilinear").repeat(1, 3, 1, 1)
    from_grey = metrics.inception_features([grey[:1], grey[1:]], inception, batch_size=2)
    from_rgb = metrics.inception_features(rgb, inception, batch_size=4)
    assert from_grey.shape == (4, metrics.FEATURE_DIM) and from_grey.dtype == np.float64
    np.testing.assert_allclose(from_grey, from_rgb, rtol=1e-4, atol=1e-4)


def test_features_reject_images_outside_minus_one_one(inception):
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        metrics.inception_features(torch.full((1, 3, 8, 8), 255.0), inception)


def test_missing_weights_package_is_a_user_error(monkeypatch):
    monkeypatch.setattr(metrics, "INCEPTION_PACKAGE", "no_such_fid_package")
    with pytest.raises(UserError, match=r"ganlab-common\[data\]"):
        metrics.load_inception()


def test_stats_round_trip_and_bad_file(tmp_path):
    mu, sigma = np.arange(3.0), np.eye(3)
    path = metrics.save_stats(tmp_path / f"real-{metrics.stats_key(n=3)}.npz", mu, sigma)
    loaded = metrics.load_stats(path)
    np.testing.assert_array_equal(loaded[0], mu)
    np.testing.assert_array_equal(loaded[1], sigma)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left
    (tmp_path / "bad.npz").write_text("not numpy")
    with pytest.raises(UserError, match="bad.npz"):
        metrics.load_stats(tmp_path / "bad.npz")


def test_stats_key_depends_on_every_argument():
    assert metrics.stats_key(a=1, b="x") == metrics.stats_key(b="x", a=1)
    assert metrics.stats_key(a=1, b="x") != metrics.stats_key(a=2, b="x")


# ----------------------------------------------------------------------------
# Digit classifier


@pytest.fixture(scope="module")
def digit_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ganlab-cache")


@pytest.fixture(scope="module")
def classifier(digit_cache):
    return metrics.load_digit_classifier("cpu", cache_dir=digit_cache, seed=0)


@pytest.fixture(scope="module")
def heldout() -> tuple[torch.Tensor, torch.Tensor]:
    test = MNIST(split="test")
    return to_unit(test.data), test.targets


def test_digit_classifier_reaches_98_percent_held_out(classifier, heldout):
    accuracy = metrics.digit_accuracy(classifier, *heldout)
    assert accuracy >= 0.98
    assert classifier.heldout_accuracy == pytest.approx(accuracy)
    assert not classifier.training


def test_digit_classifier_is_cached_by_seed(classifier, digit_cache):
    path = metrics.digit_classifier_path(seed=0, cache_dir=digit_cache)
    assert [p.name for p in digit_cache.iterdir()] == [path.name]
    again = metrics.load_digit_classifier("cpu", cache_dir=digit_cache, seed=0)  # no training
    for ours, theirs in zip(classifier.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(ours, theirs)
    assert metrics.digit_classifier_path(seed=1, cache_dir=digit_cache) != path


def test_digit_classifier_cache_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert metrics.digit_classifier_path().parent == tmp_path / "ganlab"


def test_classify_digits_accepts_rgb_64px(classifier, heldout):
    images, labels = heldout[0][:200], heldout[1][:200]
    rgb64 = F.interpolate(images, size=(64, 64), mode="bilinear").repeat(1, 3, 1, 1)
    probs = metrics.classify_digits(classifier, rgb64)
    assert probs.shape == (200, 10)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(200))
    assert (probs.argmax(dim=1) == labels).float().mean() >= 0.95
