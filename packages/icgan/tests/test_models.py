"""Networks, losses and label handling against the shapes and rules of the original."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from icgan.data import (
    ICGAN_ATTRIBUTES,
    Labels,
    one_hot_pm,
    prepare_celeba_image,
)
from icgan.models import Discriminator, Encoder, Generator, refresh_batchnorm
from icgan.test import flip_attribute
from icgan.train import d_loss, g_loss, generate_dataset


@pytest.mark.parametrize("size", [16, 32, 64])
def test_generator_and_discriminator_shapes(size):
    netG = Generator(nz=10, ny=18, ngf=8, nc=3, image_size=size)
    netD = Discriminator(ny=18, ndf=8, nc=3, image_size=size)
    z, y = torch.randn(5, 10), one_hot_pm(torch.arange(5), 18)
    x = netG(z, y)
    assert x.shape == (5, 3, size, size)
    assert x.abs().max() <= 1  # Tanh
    assert netD(x, y).shape == (5,)


def test_paper_sizes_at_64():
    """G: 118 -> 512 at 4x4 ... -> 3; D: y (18 maps) joins after the first layer (64 + 18)."""
    netG = Generator(100, 18, 64, 3, 64)
    netD = Discriminator(18, 64, 3, 64)
    assert netG.net[0].in_channels == 118 and netG.net[0].out_channels == 512
    assert netD.rest[0].in_channels == 64 + 18
    assert [m.out_channels for m in netD.rest if isinstance(m, nn.Conv2d)] == [128, 256, 512, 1]


def test_y_enters_generator_and_discriminator():
    torch.manual_seed(0)
    netG, netD = Generator(4, 3, 8, 1, 16).eval(), Discriminator(3, 8, 1, 16).eval()
    z = torch.randn(2, 4)
    y1, y2 = one_hot_pm(torch.tensor([0, 0]), 3), one_hot_pm(torch.tensor([1, 1]), 3)
    assert not torch.allclose(netG(z, y1), netG(z, y2))
    x = torch.randn(2, 1, 16, 16)
    assert not torch.allclose(netD(x, y1), netD(x, y2))


def test_encoder_fc_size_zero_means_conv_features():
    """4 conv5-s2 layers on 64 px give 256 x 4 x 4 = 4096 features (the original's FCsz nil)."""
    enc = Encoder(n_out=100, nc=3, image_size=64, n_conv=4, nf=32, fc_size=0)
    assert enc.fc[0].in_features == 4096 and enc.fc[0].out_features == 4096
    assert enc(torch.randn(3, 3, 64, 64)).shape == (3, 100)
    assert Encoder(18, 3, 64, 4, 32, 512).fc[0].out_features == 512


def test_refresh_batchnorm_averages_and_sets_eval():
    netG = Generator(4, 3, 8, 1, 16)
    bn = netG.net[1]
    bn.running_mean.fill_(100.0)
    refresh_batchnorm(netG, lambda: (torch.randn(8, 4), one_hot_pm(torch.zeros(8), 3)), passes=5)
    assert not netG.training
    assert bn.running_mean.abs().max() < 10  # re-estimated, not the stale 100
    assert bn.momentum == 0.1  # restored


class _ConstantD(nn.Module):
    """D returning a fixed logit for (real x, right y), (real x, wrong y) and fakes."""

    def forward(self, x, y):
        if x.sum() < 0:  # the fake batch
            return torch.full((len(x),), 0.5)
        return torch.full((len(x),), 2.0) if y[0, 0] > 0 else torch.full((len(x),), -1.0)


def test_d_loss_weights_wrong_y_and_fake_by_half():
    bce = nn.functional.binary_cross_entropy_with_logits
    real = torch.ones(4, 1, 2, 2)
    fake = -torch.ones(4, 1, 2, 2)
    y, y_wrong = torch.ones(4, 3), -torch.ones(4, 3)
    netD = _ConstantD()
    loss_real = bce(torch.tensor(2.0), torch.tensor(1.0))
    loss_wrong = bce(torch.tensor(-1.0), torch.tensor(0.0))
    loss_fake = bce(torch.tensor(0.5), torch.tensor(0.0))
    got = d_loss(netD, real, y, y_wrong, fake, y)
    assert torch.isclose(got, loss_real + 0.5 * (loss_wrong + loss_fake))
    without = d_loss(netD, real, y, None, fake, y)
    assert torch.isclose(without, loss_real + loss_fake)
    assert torch.isclose(g_loss(netD, fake, y), bce(torch.tensor(0.5), torch.tensor(1.0)))


def test_labels_wrong_always_differs_and_binarize():
    torch.manual_seed(0)
    labels = Labels("onehot", [str(i) for i in range(10)], one_hot_pm(torch.arange(10)))
    y = one_hot_pm(torch.randint(10, (500,)))
    wrong = labels.wrong(y)
    assert not (wrong == y).all(dim=1).any()
    assert set(wrong.unique().tolist()) == {-1.0, 1.0}
    raw = torch.tensor([[0.1, 0.9, -0.3]])
    assert Labels("onehot", list("abc"), raw).binarize(raw).tolist() == [[-1, 1, -1]]
    assert Labels("attributes", list("abc"), raw).binarize(raw).tolist() == [[1, 1, -1]]


def test_flip_attribute_keeps_hair_colours_exclusive():
    names = ICGAN_ATTRIBUTES
    y = -torch.ones(1, 18)
    y[0, names.index("Black_Hair")] = 1
    blond = flip_attribute(y, names.index("Blond_Hair"), names)
    assert blond[0, names.index("Blond_Hair")] == 1
    assert blond[0, names.index("Black_Hair")] == -1  # switched off by the group
    male = flip_attribute(y, names.index("Male"), names)
    assert male[0, names.index("Male")] == 1 and male[0, names.index("Black_Hair")] == 1
    assert names.index("Male") == 9  # y[10] in the Lua (1-based) code


def test_celeba_crop_takes_the_original_window():
    """x 30-168, y 40-178 of an aligned 178x218 image: a marker there survives, outside not."""
    image = Image.new("RGB", (178, 218), "black")
    image.paste((255, 255, 255), (30, 40, 168, 178))  # exactly the crop window is white
    x = prepare_celeba_image(image, 64, 64)
    assert x.shape == (3, 64, 64)
    assert x.min() > 0.99  # nothing of the black border got in


def test_generated_dataset_pairs_images_with_their_z_and_y():
    torch.manual_seed(0)
    netG = Generator(4, 10, 8, 1, 16).eval()
    labels = Labels("onehot", [str(i) for i in range(10)], one_hot_pm(torch.arange(10)))
    data = generate_dataset(netG, labels, 25, "normal", 8, torch.device("cpu"), seed=3)
    assert data["x"].dtype == torch.uint8 and data["x"].shape == (25, 1, 16, 16)
    # y is the real labels, permuted: every class at least twice in 25 draws of 10
    assert data["y"].argmax(1).bincount(minlength=10).min() >= 2
    with torch.no_grad():
        again = ((netG(data["z"][:4], data["y"][:4]) + 1) * 127.5).round()
    assert (again - data["x"][:4].float()).abs().max() <= 1
