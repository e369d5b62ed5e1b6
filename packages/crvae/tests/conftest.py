"""Fixtures of the crvae tests: one torch thread (the test machine is shared) and tiny data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganlab_common.data import CELEBA_ATTRIBUTES
from ganlab_common.testing import one_torch_thread  # noqa: F401 (autouse)

# Tiny model and run sizes shared by the end-to-end tests.
TINY = ["-baseChannels", "4", "-nf", "8", "-batchSize", "8", "-epochSize", "2",
        "-nTest", "16", "-nSample", "1", "-nSampleFinal", "2", "-device", "cpu"]


def write_celeba(root: Path, n: int = 12, with_attr: bool = True) -> Path:
    """A CelebA-format folder: 178x218 JPEGs, list_attr_celeba.txt, list_eval_partition.txt.

    The first ``n - 4`` images are in the train partition, then 2 valid and 2 test.
    """
    rng = np.random.default_rng(0)
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    attrs = rng.choice([-1, 1], size=(n, 40))
    for i, name in enumerate(names):
        base = rng.integers(0, 255, size=(1, 1, 3))
        yy, xx = np.mgrid[0:218, 0:178]
        img = (base + 40 * np.sin(xx[..., None] / (5 + i)) + 30 * np.cos(yy[..., None] / 7))
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(images / name, quality=90)
    if with_attr:
        lines = [str(n), " ".join(CELEBA_ATTRIBUTES)]
        lines += [f"{name} " + " ".join(f"{v:2d}" for v in row) for name, row in zip(names, attrs)]
        (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    parts = [0] * (n - 4) + [1, 1, 2, 2]
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{name} {p}\n" for name, p in zip(names, parts)))
    return root


@pytest.fixture(scope="session")
def celeba_dir(tmp_path_factory) -> Path:
    return write_celeba(tmp_path_factory.mktemp("celeba"))


@pytest.fixture
def tiny() -> list[str]:
    """Flags for a two-iteration run of a tiny model."""
    return list(TINY)


@pytest.fixture
def make_celeba():
    return write_celeba
