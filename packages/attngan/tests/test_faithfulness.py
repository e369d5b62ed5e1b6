"""The caption-faithfulness metric on real scenes rendered in hand-made ways."""

from dataclasses import replace

import pytest
import torch

from attngan.digits import COLOURS, make_scenes, nearest_colour, render_scene, scene_faithfulness

COUNT = 80


@pytest.fixture
def classifier(digit_classifier):
    return digit_classifier


@pytest.fixture(scope="module")
def scenes():
    return make_scenes("test", COUNT)


def _images(scenes, digits) -> torch.Tensor:
    pixels = [torch.from_numpy(render_scene(s, digits)).permute(2, 0, 1) for s in scenes]
    return torch.stack(pixels).float() / 127.5 - 1


def test_real_scenes_are_faithful(classifier, scenes):
    chosen, digits = scenes
    result = scene_faithfulness(_images(chosen, digits), chosen, classifier)
    assert result["faithful"] >= 0.9
    assert result["colour_accuracy"] == 1.0
    assert result["position_accuracy"] == 1.0


def test_a_size_the_caption_may_not_name_still_counts(classifier, scenes):
    """Drawn at the other size (and so off the real scene's box), a digit is still found."""
    chosen, digits = scenes
    other = {"small": "large", "large": "small"}
    resized = [replace(s, digits=tuple(replace(d, size=other[d.size]) for d in s.digits))
               for s in chosen]  # fmt: skip
    result = scene_faithfulness(_images(resized, digits), chosen, classifier)
    assert result["faithful"] >= 0.85


def test_wrong_digit_or_colour_fails(classifier, scenes):
    chosen, digits = scenes
    images = _images(chosen, digits)
    claims = [replace(s, digits=tuple(replace(d, label=(d.label + 3) % 10) for d in s.digits))
              for s in chosen]  # fmt: skip
    result = scene_faithfulness(images, claims, classifier)
    assert result["digit_accuracy"] <= 0.1 and result["faithful"] <= 0.1
    names = list(COLOURS)
    recoloured = [
        replace(s, digits=tuple(
            replace(d, colour=names[(names.index(d.colour) + 1) % len(names)]) for d in s.digits
        ))
        for s in chosen
    ]  # fmt: skip
    result = scene_faithfulness(images, recoloured, classifier)
    assert result["colour_accuracy"] == 0.0 and result["faithful"] == 0.0


def test_empty_images_hold_no_digit(classifier, scenes):
    chosen, _ = scenes
    result = scene_faithfulness(-torch.ones(COUNT, 3, 64, 64), chosen, classifier)
    assert result == {
        "digit_accuracy": 0.0, "colour_accuracy": 0.0, "position_accuracy": 0.0, "faithful": 0.0
    }  # fmt: skip


def test_dim_colours_keep_their_name():
    for name, rgb in COLOURS.items():
        assert nearest_colour(torch.tensor(rgb) * 0.4) == name
