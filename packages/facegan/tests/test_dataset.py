"""facegan-dataset on a tiny LFW-format folder: layout, determinism, resume, bad paths."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegan import cli
from facegan import dataset as builder


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.jpg"))}


def test_layout_count_and_size(run_cli, lfw_folder, tmp_path):
    out = tmp_path / "out"
    text = run_cli(cli.dataset, ["--path", lfw_folder, "--out", out]).output
    assert "found 4 .jpg images" in text and "1 other file(s) skipped" in text
    assert "20 files per image" in text
    aug = sorted(p.name for p in (out / "out_aug_64x64").iterdir())
    assert aug == [f"{i:06d}_{a:03d}.jpg" for i in range(4) for a in range(20)]
    unaug = sorted(p.name for p in (out / "out_unaug_64x64").iterdir())
    assert unaug == [f"{i:06d}_000.jpg" for i in range(4)]
    with Image.open(out / "out_aug_64x64" / "000003_019.jpg") as img:
        assert img.size == (64, 64) and img.mode == "RGB"
    # the unaugmented original is the same picture in both folders
    assert (out / "out_unaug_64x64/000001_000.jpg").read_bytes() == \
        (out / "out_aug_64x64/000001_000.jpg").read_bytes()
    # augmentations differ from the original
    a0 = np.asarray(Image.open(out / "out_aug_64x64/000000_000.jpg"), dtype=float)
    a5 = np.asarray(Image.open(out / "out_aug_64x64/000000_005.jpg"), dtype=float)
    assert np.abs(a0 - a5).mean() > 1


def test_deterministic_across_runs_and_workers(run_cli, lfw_folder, tmp_path):
    run_cli(cli.dataset, ["--path", lfw_folder, "--out", tmp_path / "a"])
    run_cli(cli.dataset, ["--path", lfw_folder, "--out", tmp_path / "b", "--workers", "2"])
    first, second = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert len(first) == 84 and first == second


def test_resume_skips_finished_images(run_cli, lfw_folder, tmp_path):
    out = tmp_path / "out"
    run_cli(cli.dataset, ["--path", lfw_folder, "--out", out])
    before = _digest(out)
    kept = out / "out_aug_64x64" / "000000_007.jpg"
    os.utime(kept, (1, 1))  # an untouched file keeps this mtime
    for name in ("000002_013.jpg", "000002_019.jpg"):  # image 2 was interrupted
        (out / "out_aug_64x64" / name).unlink()
    text = run_cli(cli.dataset, ["--path", lfw_folder, "--out", out]).output
    assert "3 of 4 images are already done" in text and "1 image(s) written" in text
    assert kept.stat().st_mtime == 1
    assert _digest(out) == before


def test_embedded_faces_without_path(run_cli, tmp_path, monkeypatch):
    from facegan import data

    two = data.embedded_faces()[:2]
    monkeypatch.setattr(data, "embedded_faces", lambda: two)
    out = tmp_path / "out"
    text = run_cli(cli.dataset, ["--out", out]).output
    assert "embedded in scikit-image" in text and "already cropped" in text
    assert len(list((out / "out_aug_64x64").iterdir())) == 40
    with Image.open(out / "out_aug_64x64" / "000001_019.jpg") as img:
        assert img.size == (64, 64) and img.mode == "L"


def test_unreadable_jpeg_is_skipped_and_counted(run_cli, lfw_folder, tmp_path):
    (lfw_folder / "Bob_Example" / "Bob_Example_0003.jpg").write_bytes(b"\xff\xd8 broken")
    out = tmp_path / "out"
    text = run_cli(cli.dataset, ["--path", lfw_folder, "--out", out]).output
    assert "4 image(s) written" in text and "1 unreadable .jpg" in text
    assert len(list((out / "out_aug_64x64").iterdir())) == 80


@pytest.mark.parametrize("make, words", [
    (lambda root: root / "missing", ["--path", "no such folder"]),
    (lambda root: (root / "empty").mkdir() or root / "empty", ["--path", "no .jpg images"]),
])
def test_bad_path(run_cli, error_line, tmp_path, make, words):
    out = tmp_path / "out"
    (out / "out_aug_64x64").mkdir(parents=True)
    keep = out / "out_aug_64x64" / "000000_000.jpg"
    keep.write_bytes(b"earlier output")
    result = run_cli(cli.dataset, ["--path", make(tmp_path), "--out", out], code=2)
    error_line(result, *words)
    assert keep.read_bytes() == b"earlier output"


def test_folder_of_non_images_is_an_error_that_counts_them(run_cli, error_line, tmp_path):
    root = tmp_path / "notes"
    (root / "person").mkdir(parents=True)
    for name in ("a.txt", "b.png", "person/c.gif"):
        (root / name).write_text("x")
    result = run_cli(cli.dataset, ["--path", root, "--out", tmp_path / "out"], code=2)
    error_line(result, "--path", "3 other file(s) skipped")


def test_augmentations_follow_the_original_ranges():
    draws = builder.draw_augmentations(43, 0, n=2000)
    scales = np.array([a.scale for a in draws])
    assert 0.82 <= scales.min() and scales.max() <= 1.10
    assert {a.rotation for a in draws} == set(range(-8, 9))
    assert {a.tx for a in draws} == set(range(-5, 6))
    brightness = np.array([a.brightness for a in draws])
    assert 0.9 <= brightness.min() and brightness.max() <= 1.1
    assert 0.45 < np.mean([a.flip for a in draws]) < 0.55
    assert builder.draw_augmentations(43, 3) == builder.draw_augmentations(43, 3)
    assert builder.draw_augmentations(43, 3) != builder.draw_augmentations(43, 4)


def test_crop_window_matches_warp_then_crop():
    """The speed-up (warping only the crop window) gives the same pixels as warping the
    whole photo and cropping afterwards."""
    from skimage import transform as tf

    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, size=(250, 250, 3)).astype(np.uint8)
    aug = builder.draw_augmentations(43, 0)[0]
    matrix = builder._centre_transform((250, 250), aug, 1.0)
    photo = builder._photometric(image, aug)
    full = tf.warp(photo, matrix.inverse, mode="constant")[92:176, 83:167]
    window = tf.SimilarityTransform(translation=(83, 92))
    part = tf.warp(photo, window + matrix.inverse, output_shape=(84, 84), mode="constant")
    assert np.allclose(full, part, atol=1e-6)
