"""Fixtures: a tiny CUB-200-2011 folder in the real formats, and a tiny trained pipeline."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganlab_common.testing import one_torch_thread  # noqa: F401 (autouse)

# (class folder, is AttnGAN test class) -- 001 and 004 are test classes, 002 and 003 train.
CLASSES = ("001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross",
           "004.Groove_billed_Ani")  # fmt: skip
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 60, 230),
           "yellow": (230, 220, 30)}  # fmt: skip
PER_CLASS = 4

# Tiny sizes for every run in the tests.
TINY = [
    "WORKERS=0",
    "TEXT.EMBEDDING_DIM=32",
    "TEXT.WORDS_NUM=12",
    "GANLAB.WORD_EMBEDDING_DIM=16",
    "GANLAB.IMAGE_ENCODER=tiny",
    "GANLAB.LOG_ITERS=1",
    "GANLAB.SAMPLE_ITERS=2",
    "GANLAB.CHECKPOINT_ITERS=2",
    "GANLAB.VAL_BATCHES=1",
    "TRAIN.BATCH_SIZE=4",
]
TINY_DAMSM = [*TINY, "TREE.BRANCH_NUM=1", "TREE.BASE_SIZE=32"]
TINY_GAN = [
    *TINY,
    "TREE.BRANCH_NUM=3",
    "TREE.BASE_SIZE=16",
    "GAN.GF_DIM=4",
    "GAN.DF_DIM=4",
    "GAN.Z_DIM=8",
    "GAN.CONDITION_DIM=8",
    "GAN.R_NUM=1",
]


def _sets(values: list[str]) -> list[str]:
    out = []
    for v in values:
        out += ["--set", v]
    return out


def damsm_args(data: Path, out: Path, iters: int = 2) -> list[str]:
    return ["--cfg", "DAMSM/bird", "--data_dir", str(data), "--outdir", str(out),
            "--device", "cpu", "--max_iters", str(iters), *_sets(TINY_DAMSM)]  # fmt: skip


def gan_args(data: Path, out: Path, iters: int = 2) -> list[str]:
    return ["--cfg", "bird_attn2", "--data_dir", str(data), "--outdir", str(out),
            "--device", "cpu", "--max_iters", str(iters), *_sets(TINY_GAN)]  # fmt: skip


def _bird(colour: tuple[int, int, int], rng: random.Random, size=(48, 40)) -> Image.Image:
    """A coloured blob (the 'bird') on a grey background with noise."""
    w, h = size
    base = np.full((h, w, 3), 120, dtype=np.int16)
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = rng.randint(14, w - 14), rng.randint(12, h - 12)
    blob = (xx - cx) ** 2 / 100 + (yy - cy) ** 2 / 64 < 1
    base[blob] = colour
    noise = np.asarray([rng.randint(-10, 10) for _ in range(h * w * 3)]).reshape(h, w, 3)
    return Image.fromarray((base + noise).clip(0, 255).astype(np.uint8))


def make_cub(root: Path) -> Path:
    """``root/birds`` with CUB_200_2011/{images.txt, bounding_boxes.txt, train_test_split.txt,
    images/<class>/<image>.jpg} and text_c10/<class>/<image>.txt (10 captions each)."""
    rng = random.Random(0)
    birds = root / "birds"
    cub = birds / "CUB_200_2011"
    images, boxes, split = [], [], []
    colours = list(COLOURS)
    image_id = 0
    for c, cls in enumerate(CLASSES):
        colour = colours[c]
        for k in range(PER_CLASS):
            image_id += 1
            name = f"{cls.split('.', 1)[1]}_{k:04d}_{image_id}"
            rel = f"{cls}/{name}"
            (cub / "images" / cls).mkdir(parents=True, exist_ok=True)
            _bird(COLOURS[colour], rng).save(cub / "images" / f"{rel}.jpg", quality=95)
            images.append(f"{image_id} {rel}.jpg")
            boxes.append(f"{image_id} 4.0 3.0 40.0 34.0")
            split.append(f"{image_id} {k % 2}")
            size = ["small", "large"][k % 2]
            caps = [
                f"a {size} {colour} bird",
                f"this bird is {colour} and {size}",
                f"a {colour} bird with a {size} body",
                f"the {size} bird has {colour} feathers",
                f"{colour} wings on a {size} bird",
                f"a bird that is {colour}",
                f"{size} {colour} bird perched",
                f"this {colour} bird looks {size}",
                f"a {colour} and {size} bird",
                f"bird , {colour} , {size}",
            ]
            (birds / "text_c10" / cls).mkdir(parents=True, exist_ok=True)
            (birds / "text_c10" / f"{rel}.txt").write_text("\n".join(caps) + "\n")
    (cub / "images.txt").write_text("\n".join(images) + "\n")
    (cub / "bounding_boxes.txt").write_text("\n".join(boxes) + "\n")
    (cub / "train_test_split.txt").write_text("\n".join(split) + "\n")
    return birds


@pytest.fixture(scope="session")
def cub_dir(tmp_path_factory) -> Path:
    return make_cub(tmp_path_factory.mktemp("cub"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory, cub_dir) -> Path:
    """``outdir`` holding a tiny DAMSM run and a tiny AttnGAN run (2 iterations each)."""
    from click.testing import CliRunner

    from attngan.cli import pretrain_damsm, train

    out = tmp_path_factory.mktemp("runs")
    runner = CliRunner()
    result = runner.invoke(pretrain_damsm, damsm_args(cub_dir, out))
    assert result.exit_code == 0, result.output
    result = runner.invoke(train, gan_args(cub_dir, out))
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def tiny_gan() -> list[str]:
    return list(TINY_GAN)


@pytest.fixture
def tiny_damsm() -> list[str]:
    return list(TINY_DAMSM)


@pytest.fixture
def cli_args():
    """``cli_args("damsm"|"gan", data_dir, outdir, iters)`` -> argv of the tiny runs."""

    def make(kind: str, data: Path, out: Path, iters: int = 2) -> list[str]:
        return (damsm_args if kind == "damsm" else gan_args)(data, out, iters)

    return make


@pytest.fixture(scope="session")
def digit_classifier(tmp_path_factory):
    """The held-out digit classifier, trained once per session into a temporary cache."""
    from ganlab_common.metrics import load_digit_classifier

    return load_digit_classifier("cpu", cache_dir=tmp_path_factory.mktemp("cache"), seed=0)
