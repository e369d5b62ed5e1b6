"""The IcGAN networks: a conditional DCGAN (G, D) and the two encoders E_z and E_y.

Shapes follow the author's Torch code (``trainGAN.lua``, ``trainEncoder.lua``) at
``image_size`` 64 and scale down/up by halving/doubling the number of stride-2 blocks:

* G:  [z ; y] as ``[N, nz + ny, 1, 1]`` -> ConvT4 -> 4x4 -> stride-2 ConvT blocks -> Tanh.
  y enters **only** at G's input.
* D:  conv4 s2 (no BN) + LReLU(0.2) -> **y tiled to [N, ny, S/2, S/2] and concatenated** ->
  stride-2 conv blocks (BN, LReLU) down to 4x4 -> conv4 valid -> one logit.
  (The original ends in a Sigmoid + BCE; we return the logit and use
  ``binary_cross_entropy_with_logits``, the same loss, numerically safer.)
* Encoder: ``n_conv`` x [conv5 s2 -> BN -> ReLU] (nf, 2nf, 4nf, ...) -> Linear(-> fc) ->
  BN -> ReLU -> Linear(-> out); a linear output trained with MSE.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganlab_common.init import dcgan_init, legacy_torch_init

__all__ = [
    "INITS",
    "Discriminator",
    "Encoder",
    "Generator",
    "init_weights",
    "refresh_batchnorm",
    "valid_image_size",
]

IMAGE_SIZES = (16, 32, 64, 128)


def valid_image_size(size: int) -> bool:
    """G and D need a power of two between 16 and 128 (4x4 after the stride-2 blocks)."""
    return size in IMAGE_SIZES


#: ``--init`` choices: ``original`` = what the author's Torch code did (``trainGAN.lua:36-45``
#: ``weights_init`` on G and D; the encoders of ``trainEncoder.lua`` call none, so they start
#: from Torch ``nn``'s defaults), ``dcgan`` = N(0, 0.02) on every layer including the
#: encoders' Linear (this package before 2026-11-30), ``pytorch`` = PyTorch 2's defaults.
INITS = ("original", "dcgan", "pytorch")


def init_weights(module: nn.Module, scheme: str = "original", encoder: bool = False) -> None:
    """Initialise ``module`` (G, D or, with ``encoder``, an encoder) by ``scheme``."""
    if scheme not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {scheme!r}")
    if scheme == "dcgan":
        dcgan_init(module, linear=True)
    elif scheme == "original" and encoder:
        legacy_torch_init(module)
    elif scheme == "original":
        dcgan_init(module)


def _num_blocks(image_size: int) -> int:
    """Stride-2 blocks between 4x4 and ``image_size``: 64 -> 4 (4, 8, 16, 32 -> 64)."""
    if not valid_image_size(image_size):
        raise ValueError(f"image_size must be one of {IMAGE_SIZES}, got {image_size}")
    return int(math.log2(image_size)) - 2


class Generator(nn.Module):
    """G(z, y): ``z [N, nz]``, ``y [N, ny]`` in {-1, +1} -> images ``[N, nc, S, S]`` in [-1, 1]."""

    def __init__(self, nz: int = 100, ny: int = 18, ngf: int = 64, nc: int = 3,
                 image_size: int = 64, init: str = "original"):
        super().__init__()
        self.nz, self.ny, self.image_size = nz, ny, image_size
        n = _num_blocks(image_size)
        ch = ngf * 2 ** (n - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz + ny, ch, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ch),
            nn.ReLU(True),
        ]  # [N, ngf * 2^(n-1), 4, 4]
        for _ in range(n - 1):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch // 2),
                nn.ReLU(True),
            ]
            ch //= 2
        # [N, ngf, S/2, S/2]
        layers += [nn.ConvTranspose2d(ch, nc, 4, 2, 1, bias=False), nn.Tanh()]
        # [N, nc, S, S]
        self.net = nn.Sequential(*layers)
        init_weights(self, init)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``z [N, nz]``, ``y [N, ny]`` -> ``[N, nc, S, S]``."""
        zy = torch.cat([z, y.to(z.dtype)], dim=1)  # [N, nz + ny]
        return self.net(zy[:, :, None, None])  # explicit reshape to [N, nz + ny, 1, 1]


class Discriminator(nn.Module):
    """D(x, y): ``x [N, nc, S, S]``, ``y [N, ny]`` -> logits ``[N]`` (real and matching y)."""

    def __init__(self, ny: int = 18, ndf: int = 64, nc: int = 3, image_size: int = 64,
                 init: str = "original"):
        super().__init__()
        n = _num_blocks(image_size)
        self.first = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, True),
        )  # [N, ndf, S/2, S/2]
        layers: list[nn.Module] = []
        ch_in, ch = ndf + ny, ndf * 2
        for _ in range(n - 1):
            layers += [
                nn.Conv2d(ch_in, ch, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch),
                nn.LeakyReLU(0.2, True),
            ]
            ch_in, ch = ch, ch * 2
        # [N, ndf * 2^(n-1), 4, 4]
        layers.append(nn.Conv2d(ch_in, 1, 4, 1, 0, bias=False))  # [N, 1, 1, 1]
        self.rest = nn.Sequential(*layers)
        init_weights(self, init)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x [N, nc, S, S]``, ``y [N, ny]`` -> ``[N]`` logits."""
        h = self.first(x)  # [N, ndf, S/2, S/2]
        tiled = y.to(h.dtype)[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
        h = torch.cat([h, tiled], dim=1)  # [N, ndf + ny, S/2, S/2]
        return self.rest(h).flatten()


class Encoder(nn.Module):
    """E_z or E_y: images ``[N, nc, S, S]`` -> ``[N, n_out]`` (a linear output, MSE-trained).

    ``fc_size`` 0 means "the size of the flattened conv features", the original's ``FCsz nil``.
    """

    def __init__(self, n_out: int, nc: int = 3, image_size: int = 64, n_conv: int = 4,
                 nf: int = 32, fc_size: int = 0, init: str = "original"):
        super().__init__()
        if image_size % 2**n_conv:
            raise ValueError(f"image_size {image_size} is not divisible by 2^{n_conv}")
        layers: list[nn.Module] = []
        ch_in, ch = nc, nf
        for _ in range(n_conv):
            layers += [nn.Conv2d(ch_in, ch, 5, 2, 2), nn.BatchNorm2d(ch), nn.ReLU(True)]
            ch_in, ch = ch, ch * 2
        self.conv = nn.Sequential(*layers)  # [N, nf * 2^(n_conv-1), S/2^n_conv, S/2^n_conv]
        side = image_size // 2**n_conv
        features = ch_in * side * side
        fc_size = fc_size or features
        self.fc = nn.Sequential(
            nn.Linear(features, fc_size),
            nn.BatchNorm1d(fc_size),
            nn.ReLU(True),
            nn.Linear(fc_size, n_out),
        )  # [N, n_out]
        init_weights(self, init, encoder=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, nc, S, S]`` -> ``[N, n_out]``."""
        return self.fc(self.conv(x).flatten(1))


@torch.no_grad()
def refresh_batchnorm(
    netG: Generator, sample_zy, passes: int = 100
) -> None:
    """Re-estimate G's BatchNorm statistics from ``passes`` train-mode forwards, then eval().

    The original does this before generating the encoder dataset.  ``sample_zy()`` returns
    one batch ``(z [N, nz], y [N, ny])``.  The statistics become the plain average over
    the passes (momentum None).
    """
    bns = [m for m in netG.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    netG.train()
    for _ in range(passes):
        netG(*sample_zy())
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    netG.eval()
