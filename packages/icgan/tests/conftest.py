"""Shared fixtures: tiny IcGAN settings, a trained tiny MNIST run, a fake CelebA folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ganlab_common.testing import one_torch_thread  # noqa: F401 (autouse)
from icgan.cli import train_command as icgan_train

#: A few iterations of every stage on 16-pixel digits (4 GAN steps, 2 + 2 encoder steps).
TINY = [
    "--dataset", "mnist", "--fineSize", "16", "--nz", "8", "--ngf", "8", "--ndf", "8",
    "--nf", "8", "--nConvLayers", "2", "--batchSize", "16", "--niter", "1", "--nEpochs", "1",
    "--maxImages", "64", "--samples", "64", "--genBatchSize", "16", "--device", "cpu",
]  # fmt: skip

CELEBA_ATTRIBUTES_40 = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses "
    "Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache "
    "Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks "
    "Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young"
).split()


def invoke(command, args: list) -> object:
    """Run a click command in-process; exceptions are kept on the result, not raised."""
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=True)


def ok(result) -> None:
    assert result.exit_code == 0, (result.output, result.exception)


@pytest.fixture
def cli():
    """``cli(command, args)`` runs in-process and asserts success; ``cli.raw`` does not."""

    def run(command, args: list):
        result = invoke(command, args)
        ok(result)
        return result

    run.raw = invoke
    return run


@pytest.fixture
def tiny() -> list[str]:
    return list(TINY)


@pytest.fixture
def celeba_root(tmp_path) -> Path:
    return make_celeba(tmp_path / "celebA")


def make_celeba(root: Path, n_train: int = 10, n_valid: int = 2, n_test: int = 4) -> Path:
    """A CelebA folder in the official layout: aligned 178x218 JPEGs, 40 attributes, partition.

    Row i of the images is a colour ramp so that the crop/resize has something to do.
    """
    rng = np.random.default_rng(0)
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    n = n_train + n_valid + n_test
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for name in names:
        pixels = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / name, quality=70)
    values = rng.choice(["-1", "1"], size=(n, 40))
    lines = [str(n), " ".join(CELEBA_ATTRIBUTES_40)]
    lines += [f"{name} " + " ".join(row) for name, row in zip(names, values)]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    parts = [0] * n_train + [1] * n_valid + [2] * n_test
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{name} {p}\n" for name, p in zip(names, parts))
    )
    return root


@pytest.fixture(scope="session")
def mnist_run(tmp_path_factory) -> Path:
    """One tiny MNIST run through all three stages (shared by the read-only tests)."""
    outdir = tmp_path_factory.mktemp("icgan-runs")
    result = invoke(icgan_train, [*TINY, "--outdir", outdir])
    ok(result)
    (run,) = outdir.iterdir()
    return run


