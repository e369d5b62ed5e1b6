"""The networks of face-generator (``models.lua``, ``models_c2f.lua``, ``train_denoiser.lua``).

Images are in [0, 1] as in the original (G ends in a sigmoid).  The discriminators return
*logits* ``[N]``; the original's final ``nn.Sigmoid`` + ``BCECriterion`` is
``binary_cross_entropy_with_logits`` here (same loss, numerically safer).  ``width`` scales
every hidden channel count (1.0, the default, is the original network; the tests and quick CPU
trials use less).

The module trees mirror the Lua ones (flat ``nn.Sequential`` where the original was flat,
branches where it had a ``ConcatTable``) so that :func:`init_eyescream` can reproduce the
original's quirk of re-initialising only *top-level* modules.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "SCALES",
    "C2FDiscriminator",
    "C2FGenerator",
    "Denoiser",
    "Discriminator16",
    "Discriminator32",
    "Generator",
    "MLPAutoencoder",
    "build_discriminator",
    "init_eyescream",
    "planes",
    "sample_noise",
]

SCALES = (16, 32)


def planes(n: int, width: float) -> int:
    """``n`` channels scaled by ``width`` (1.0 = the original sizes), at least 1."""
    return max(1, round(n * width))


def sample_noise(n: int, noise_dim: int, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """z ~ U(-1, 1), shape ``[n, noise_dim]`` (``NN_UTILS.createNoiseInputs``)."""
    z = torch.rand(n, noise_dim, generator=generator, device="cpu" if generator else device)
    return (z * 2 - 1).to(device)


class Generator(nn.Sequential):
    """``create_G_decoder_upsampling{16,32}``: noise ``[N, noise_dim]`` -> ``[N, C, S, S]``.

    Linear(noise -> 128 * (S/4)^2) -> PReLU -> 2 x [nearest up x2 -> conv5 -> BN -> PReLU]
    (256 then 128 planes) -> conv3 (-> C) -> sigmoid.
    """

    def __init__(self, channels: int = 1, scale: int = 16, noise_dim: int = 100,
                 width: float = 1.0):
        s = scale // 4
        a, b = planes(128, width), planes(256, width)
        super().__init__(
            nn.Linear(noise_dim, a * s * s),
            nn.Unflatten(1, (a, s, s)),
            nn.PReLU(),
            # [N, 128, S/4, S/4]
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(a, b, 5, padding=2),
            nn.BatchNorm2d(b),
            nn.PReLU(),
            # [N, 256, S/2, S/2]
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(b, a, 5, padding=2),
            nn.BatchNorm2d(a),
            nn.PReLU(),
            # [N, 128, S, S]
            nn.Conv2d(a, channels, 3, padding=1),
            nn.Sigmoid(),
            # [N, C, S, S] in [0, 1]
        )
        self.channels, self.scale, self.noise_dim, self.width = channels, scale, noise_dim, width

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, scale={self.scale}, noise_dim={self.noise_dim}, "
                f"width={self.width}")


class Discriminator16(nn.Module):
    """``create_D16_d``: a conv branch and a tiny dense skip branch joined by Linear(1152 -> 1).

    The author: the dense branch "is necessary to kick off learning".
    ``[N, C, 16, 16]`` -> logits ``[N]``.
    """

    def __init__(self, channels: int = 1, scale: int = 16, width: float = 1.0):
        super().__init__()
        c128, c512, c1024 = planes(128, width), planes(512, width), planes(1024, width)
        self.conv = nn.Sequential(
            nn.Conv2d(channels, c128, 3, padding=1),
            nn.PReLU(),
            nn.Conv2d(c128, c128, 3, padding=1),
            nn.PReLU(),
            nn.AvgPool2d(2),
            # [N, 128, S/2, S/2]
            nn.Conv2d(c128, c512, 3, stride=2, padding=1),
            nn.PReLU(),
            # [N, 512, S/4, S/4]
            nn.Conv2d(c512, c1024, 3, stride=2, padding=1),
            nn.PReLU(),
            nn.Dropout2d(0.5),
            # [N, 1024, S/8, S/8]
            nn.Flatten(),
            nn.Linear(c1024 * (scale // 8) ** 2, c1024),
            nn.PReLU(),
            # [N, 1024]
        )
        self.dense = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * scale * scale, c128),
            nn.PReLU(),
            nn.Dropout(0.5),
            nn.Linear(c128, c128),
            nn.PReLU(),
            # [N, 128]
        )
        self.head = nn.Linear(c1024 + c128, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, C, S, S]`` in [0, 1] -> logits ``[N]``."""
        return self.head(torch.cat([self.conv(x), self.dense(x)], dim=1)).squeeze(1)


class Discriminator32(nn.Sequential):
    """``create_D32b``: 4 x [conv3 -> PReLU -> SpatialDropout 0.2 -> AvgPool2] with
    64/128/256/512 planes, then Linear 512 -> Linear 512 (PReLU + Dropout) -> Linear 1.

    ``[N, C, S, S]`` -> logits ``[N, 1]`` (use :meth:`forward`, which returns ``[N]``).
    """

    def __init__(self, channels: int = 1, scale: int = 32, width: float = 1.0):
        layers: list[nn.Module] = []
        sizes = [channels] + [planes(n, width) for n in (64, 128, 256, 512)]
        for cin, cout in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.PReLU(), nn.Dropout2d(0.2),
                       nn.AvgPool2d(2)]
        # [N, 512, S/16, S/16]
        hidden = planes(512, width)
        super().__init__(
            *layers,
            nn.Flatten(),
            nn.Linear(sizes[-1] * (scale // 16) ** 2, hidden),
            nn.PReLU(),
            nn.Dropout(0.5),
            nn.Linear(hidden, hidden),
            nn.PReLU(),
            nn.Dropout(0.5),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, C, S, S]`` in [0, 1] -> logits ``[N]``."""
        return super().forward(x).squeeze(1)


def build_discriminator(channels: int, scale: int, width: float = 1.0) -> nn.Module:
    """D16 for 16 px, D32b for 32 px (``models.create_D``)."""
    if scale == 16:
        return Discriminator16(channels, scale, width)
    return Discriminator32(channels, scale, width)


# -- coarse to fine -----------------------------------------------------------------------------
class C2FGenerator(nn.Module):
    """``models_c2f.create_G_d``: [noise plane ; upsampled coarse] -> the residual.

    Same-padding convs 3x3 -> 64, 3x3 -> 64, 5x5 -> 128, 5x5 -> 256 (PReLU after each),
    7x7 -> C (no activation).  ``noise [N, 1, S, S]``, ``coarse [N, C, S, S]`` -> ``[N, C, S, S]``.
    """

    def __init__(self, channels: int = 1, width: float = 1.0):
        super().__init__()
        c64, c128, c256 = planes(64, width), planes(128, width), planes(256, width)
        self.net = nn.Sequential(
            nn.Conv2d(channels + 1, c64, 3, padding=1),
            nn.PReLU(),
            nn.Conv2d(c64, c64, 3, padding=1),
            nn.PReLU(),
            nn.Conv2d(c64, c128, 5, padding=2),
            nn.PReLU(),
            nn.Conv2d(c128, c256, 5, padding=2),
            nn.PReLU(),
            nn.Conv2d(c256, channels, 7, padding=3),
            # [N, C, S, S] residual (unbounded)
        )
        self.channels = channels

    def forward(self, noise: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([noise, coarse], dim=1))


class C2FDiscriminator(nn.Module):
    """``models_c2f.create_D_c``: D sees residual + coarse (a ``CAddTable``), i.e. the image.

    conv3 64, conv3 64, maxpool, conv3 128, conv3 256, maxpool, dropout, Linear 512, dropout,
    Linear 1.  ``residual, coarse [N, C, S, S]`` -> logits ``[N]``.
    """

    def __init__(self, channels: int = 1, size: int = 32, width: float = 1.0):
        super().__init__()
        c64, c128, c256, c512 = (planes(n, width) for n in (64, 128, 256, 512))
        self.net = nn.Sequential(
            nn.Conv2d(channels, c64, 3, padding=1),
            nn.PReLU(),
            nn.Conv2d(c64, c64, 3, padding=1),
            nn.PReLU(),
            nn.MaxPool2d(2),
            # [N, 64, S/2, S/2]
            nn.Conv2d(c64, c128, 3, padding=1),
            nn.PReLU(),
            nn.Conv2d(c128, c256, 3, padding=1),
            nn.PReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.5),
            # [N, 256, S/4, S/4]
            nn.Flatten(),
            nn.Linear(c256 * (size // 4) ** 2, c512),
            nn.PReLU(),
            nn.Dropout(0.5),
            nn.Linear(c512, 1),
        )

    def forward(self, residual: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        return self.net(residual + coarse).squeeze(1)


# -- denoiser and autoencoder ------------------------------------------------------------------
class DenoiserDecoder(nn.Sequential):
    """The denoiser's decoder: ``[N, C, S, S]`` -> ``[N, C, S, S]`` in [0, 1].

    conv3 valid (C -> 8) BN LReLU(.333), conv3 valid (8 -> 8) BN LReLU, Dropout 0.2,
    Linear(-> 2048) BN LReLU Dropout 0.2, Linear(-> C*S*S), sigmoid.
    """

    def __init__(self, channels: int = 1, scale: int = 16):
        inner = 8 * (scale - 4) ** 2
        super().__init__(
            nn.Conv2d(channels, 8, 3),
            nn.BatchNorm2d(8),
            nn.LeakyReLU(0.333),
            nn.Conv2d(8, 8, 3),
            nn.BatchNorm2d(8),
            nn.LeakyReLU(0.333),
            nn.Dropout(0.2),
            # [N, 8, S-4, S-4]
            nn.Flatten(),
            nn.Linear(inner, 2048),
            nn.BatchNorm1d(2048),
            nn.LeakyReLU(0.333),
            nn.Dropout(0.2),
            nn.Linear(2048, channels * scale * scale),
            nn.Sigmoid(),
            nn.Unflatten(1, (channels, scale, scale)),
            # [N, C, S, S]
        )


class Denoiser(nn.Module):
    """``train_denoiser.lua``: WhiteNoise(0, 0.1) (training only) -> decoder; a second,
    cloned decoder refines the first one's output.  ``[N, C, S, S]`` -> two ``[N, C, S, S]``."""

    def __init__(self, channels: int = 1, scale: int = 16, noise_std: float = 0.1):
        super().__init__()
        self.noise_std = noise_std
        self.decoder = DenoiserDecoder(channels, scale)
        self.decoder2 = DenoiserDecoder(channels, scale)
        self.decoder2.load_state_dict(self.decoder.state_dict())  # AE2 = AE:get(2):clone()
        self.channels, self.scale = channels, scale

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """Add N(0, noise_std) in training mode (``nn.WhiteNoise``); identity in eval."""
        return x + torch.randn_like(x) * self.noise_std if self.training else x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first = self.decoder(self.corrupt(x))
        return first, self.decoder2(first)

    @torch.no_grad()
    def denoise(self, x: torch.Tensor) -> torch.Tensor:
        """What ``train.lua --denoise`` applies: the first decoder only (eval mode)."""
        was = self.training
        self.eval()
        out = self.decoder(x)
        self.train(was)
        return out


class MLPAutoencoder(nn.Module):
    """``train_autoencoder.lua``: 1024 -> 512 -> 256 (tanh) -> dropout 0.5 -> 256 -> 1024.

    Generalised to ``C * S * S`` inputs.  ``[N, C, S, S]`` -> ``[N, C, S, S]`` in [0, 1].
    """

    def __init__(self, channels: int = 1, scale: int = 32, noise_dim: int = 256):
        super().__init__()
        size = channels * scale * scale
        self.encoder = nn.Sequential(
            nn.Flatten(), nn.Linear(size, 512), nn.ReLU(), nn.Linear(512, noise_dim), nn.Tanh()
        )
        self.decoder = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(noise_dim, 256), nn.ReLU(), nn.Linear(256, size),
            nn.Sigmoid(), nn.Unflatten(1, (channels, scale, scale)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


# -- the original initialisation ---------------------------------------------------------------
def init_eyescream(model: nn.Module, std_weight: float = 0.005, std_bias: float = 0.001) -> None:
    """``NN_UTILS.initializeWeights``: N(0, 0.005^2) weights and N(0, 0.001^2) biases for every
    *top-level* module that has them -- including BatchNorm gains and PReLU slopes, and
    skipping everything nested in a branch (so D16 only re-initialises its head)."""
    with torch.no_grad():
        for module in model.children():
            weight = getattr(module, "weight", None)
            bias = getattr(module, "bias", None)
            if isinstance(weight, torch.Tensor):
                weight.normal_(0, std_weight)
            if isinstance(bias, torch.Tensor):
                bias.normal_(0, std_bias)
