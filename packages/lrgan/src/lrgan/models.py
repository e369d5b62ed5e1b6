"""LR-GAN generator and discriminator (Yang et al., ICLR 2017).

The generator draws a background, then ``T - 1`` foregrounds, each with an
appearance, a soft mask and an affine pose, and pastes them onto the canvas
with the STNM op::

    z_t ~ N(0, I),  h_t = LSTMCell(z_t, h_{t-1})                 t = 0 .. T-1
    canvas_0 = Bg(z_0)                      (or Bg(h_0) with bg_input="lstm")
    f_t, m_t = Fg(x_t),  A_t = Pose(x_t)    x_t = h_t (T = 2) or nl([h_t, Enc(feat_{t-1})])
    canvas_t = STNM(canvas_{t-1}, f_t, m_t, grid(A_t))

Tensors are NCHW; images are in [-1, 1], masks in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ganlab_common.init import dcgan_init, legacy_torch_init

from .ops import affine_grid_yx

__all__ = [
    "INIT_SCHEMES",
    "Decomposition",
    "Discriminator",
    "Generator",
    "clamp_pose",
    "init_weights",
    "supported_sizes",
]

SUPPORTED_SIZES = (32, 64, 128)
INIT_SCHEMES = ("torch2017", "pytorch", "dcgan")


def supported_sizes() -> tuple[int, ...]:
    return SUPPORTED_SIZES


def _up(cin: int, cout: int, bias: bool) -> list[nn.Module]:
    """ConvT(4, 2, 1) -> BN -> ReLU: doubles the spatial size."""
    return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=bias), nn.BatchNorm2d(cout), nn.ReLU(True)]


@torch.no_grad()
def init_weights(module: nn.Module, scheme: str = "torch2017") -> nn.Module:
    """Initialise ``module`` in place by the named scheme.

    * ``torch2017``: PyTorch 0.2's defaults, which the original trained with (its
      ``weights_init`` is commented out): conv *and* transposed-conv weights and biases
      U(+-1/sqrt(C_in k k)), BatchNorm weight U(0, 1) and bias 0. PyTorch 2 differs for
      transposed convs (its fan uses C_out) and BatchNorm (weight 1).
    * ``pytorch``: today's defaults, left as they are.
    * ``dcgan``: the original's (unused) ``weights_init``: conv N(0, 0.02), bias 0,
      BatchNorm weight N(1, 0.02), bias 0.

    Linear and LSTM layers get PyTorch 0.2's bounds under ``torch2017`` (the same as
    today's) and keep them under ``dcgan``. (``ganlab_common.init`` does the work.)
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init scheme must be one of {INIT_SCHEMES}, got {scheme!r}")
    if scheme == "torch2017":
        legacy_torch_init(module)
    elif scheme == "dcgan":
        dcgan_init(module)
    return module


class Trunk(nn.Module):
    """DCGAN-style upsampling trunk from a [N, nz] code to features at ``size / 2``.

    The first layer maps 1x1 -> 4x4 with ``first`` channels; each later layer halves
    the channels (never below ``floor``) and doubles the size.
    """

    def __init__(self, nz: int, first: int, second: int, size: int, floor: int, bias: bool):
        super().__init__()
        layers = [nn.ConvTranspose2d(nz, first, 4, 1, 0, bias=bias), nn.BatchNorm2d(first),
                  nn.ReLU(True)]
        # state size: first x 4 x 4
        channels, res, cout = first, 4, second
        while res < size // 2:
            layers += _up(channels, cout, bias)
            channels, res, cout = cout, res * 2, max(cout // 2, floor)
            # state size: channels x res x res
        self.net = nn.Sequential(*layers)
        self.out_channels = channels

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.net(code[:, :, None, None])


class FeatureEncoder(nn.Module):
    """Pools trunk features down to 2x2 and projects them to an [N, nz] code (T > 2 path)."""

    def __init__(self, channels: int, size: int, nz: int):
        super().__init__()
        layers: list[nn.Module] = []
        while size > 2:
            layers += [nn.AvgPool2d(4, 2, 1), nn.BatchNorm2d(channels), nn.LeakyReLU(0.2, True)]
            size //= 2
        # state size: channels x 2 x 2
        self.pool = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(channels * 4, nz), nn.BatchNorm1d(nz), nn.Tanh())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(features).flatten(1))


def clamp_pose(theta: torch.Tensor, scale: float, rot: float) -> torch.Tensor:
    """The original ``clampT``: a hard clamp of the 6 pose numbers.

    ``theta`` [N, 6] = [s_y, r_1, t_y, r_2, s_x, t_x] (rows of the (y, x) affine map).
    Scales go to [scale, 2 scale], the shear/rotation terms to [-rot, rot],
    translations to [-1, 1]. Returns [N, 2, 3].
    """
    lo = theta.new_tensor([scale, -rot, -1.0, -rot, scale, -1.0])
    hi = theta.new_tensor([2 * scale, rot, 1.0, rot, 2 * scale, 1.0])
    return torch.maximum(torch.minimum(theta, hi), lo).view(-1, 2, 3)


@dataclass
class Decomposition:
    """Every layer of one generated batch (all [N, C, H, W]; masks have C = 1)."""

    background: torch.Tensor
    foregrounds: list[torch.Tensor] = field(default_factory=list)  # un-warped appearance
    masks: list[torch.Tensor] = field(default_factory=list)  # un-warped masks
    canvases: list[torch.Tensor] = field(default_factory=list)  # canvas after each paste
    poses: list[torch.Tensor] = field(default_factory=list)  # [N, 2, 3]

    @property
    def image(self) -> torch.Tensor:
        return self.canvases[-1] if self.canvases else self.background


class Generator(nn.Module):
    """LR-GAN generator for ``ntimestep`` layers (1 background + T-1 foregrounds).

    ``composite(canvas, fg, mask, grid)`` is the STNM implementation, chosen once
    by the caller (see :func:`lrgan.ops.select_stnm`).
    """

    def __init__(
        self,
        composite: Callable[..., torch.Tensor],
        nz: int = 100,
        ngf: int = 64,
        nc: int = 3,
        image_size: int = 64,
        ntimestep: int = 2,
        maxobjscale: float = 1.2,
        rot: float = 0.1,
        bg_input: str = "raw",
        init: str = "torch2017",
    ):
        super().__init__()
        if image_size not in SUPPORTED_SIZES:
            raise ValueError(f"image_size must be one of {SUPPORTED_SIZES}")
        if bg_input not in ("raw", "lstm"):
            raise ValueError("bg_input must be 'raw' or 'lstm'")
        self.composite = composite
        self.nz, self.ntimestep, self.image_size = nz, ntimestep, image_size
        self.maxobjscale, self.rot, self.bg_input = maxobjscale, rot, bg_input
        self.lstm = nn.LSTMCell(nz, nz)

        self.bg_trunk = Trunk(nz, 4 * ngf, 2 * ngf, image_size, floor=64, bias=True)
        self.bg_head = nn.Sequential(
            nn.ConvTranspose2d(self.bg_trunk.out_channels, nc, 4, 2, 1, bias=True), nn.Tanh()
        )  # state size: nc x size x size
        if ntimestep < 2:
            init_weights(self, init)
            return
        self.fg_trunk = Trunk(nz, 8 * ngf, 4 * ngf, image_size, floor=64, bias=False)
        fg_ch = self.fg_trunk.out_channels
        self.fg_head = nn.Sequential(nn.ConvTranspose2d(fg_ch, nc, 4, 2, 1, bias=False), nn.Tanh())
        self.mask_head = nn.Sequential(
            nn.ConvTranspose2d(fg_ch, 1, 4, 2, 1, bias=True), nn.Sigmoid()
        )  # bias=True as in the original Gfgm
        self.pose = nn.Linear(nz, 6)
        if ntimestep > 2:
            # The original shared one encoder, which only worked when both trunks end
            # with the same depth; a second encoder is used when they differ.
            self.fg_encoder = FeatureEncoder(fg_ch, image_size // 2, nz)
            bg_ch = self.bg_trunk.out_channels
            self.bg_encoder = (
                self.fg_encoder if bg_ch == fg_ch else FeatureEncoder(bg_ch, image_size // 2, nz)
            )
            self.nl = nn.Sequential(nn.Linear(2 * nz, nz), nn.BatchNorm1d(nz), nn.Tanh())
        init_weights(self, init)
        # The pose starts at the identity scaled by maxobjscale, whatever the init.
        nn.init.zeros_(self.pose.weight)
        with torch.no_grad():
            self.pose.bias.copy_(torch.tensor([maxobjscale, 0, 0, 0, maxobjscale, 0]))

    def sample_noise(self, batch: int, generator: torch.Generator | None = None,
                     device: torch.device | None = None) -> torch.Tensor:
        """z ~ N(0, I) of shape [T, N, nz]."""
        return torch.randn(self.ntimestep, batch, self.nz, generator=generator,
                           device=device or self.pose_device())

    def pose_device(self) -> torch.device:
        return self.lstm.weight_ih.device

    def decompose(self, z: torch.Tensor) -> Decomposition:
        """Run the generator on z [T, N, nz] and keep every layer."""
        if z.dim() != 3 or z.shape[0] != self.ntimestep or z.shape[2] != self.nz:
            raise ValueError(f"z must be [{self.ntimestep}, N, {self.nz}], got {tuple(z.shape)}")
        n = z.shape[1]
        h = z.new_zeros(n, self.nz)
        c = z.new_zeros(n, self.nz)
        hidden = []
        for t in range(self.ntimestep):
            h, c = self.lstm(z[t], (h, c))
            hidden.append(h)

        features = self.bg_trunk(z[0] if self.bg_input == "raw" else hidden[0])
        out = Decomposition(background=self.bg_head(features))
        canvas, encoder = out.background, getattr(self, "bg_encoder", None)
        for t in range(1, self.ntimestep):
            code = hidden[t]
            if self.ntimestep > 2:
                code = self.nl(torch.cat([code, encoder(features)], dim=1))
                encoder = self.fg_encoder
            features = self.fg_trunk(code)
            fg, mask = self.fg_head(features), self.mask_head(features)
            theta = clamp_pose(self.pose(code), self.maxobjscale, self.rot)
            grid = affine_grid_yx(theta, self.image_size, self.image_size)
            canvas = self.composite(canvas, fg, mask, grid)
            out.foregrounds.append(fg)
            out.masks.append(mask)
            out.canvases.append(canvas)
            out.poses.append(theta)
        return out

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z [T, N, nz] -> images [N, nc, size, size] in [-1, 1]."""
        return self.decompose(z).image


class Discriminator(nn.Module):
    """DCGAN discriminator; returns logits [N] (the original applied a sigmoid + BCE)."""

    def __init__(self, nc: int = 3, ndf: int = 64, image_size: int = 64,
                 init: str = "torch2017"):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        channels, size = ndf, image_size // 2
        # state size: ndf x size/2 x size/2
        while size > 4:
            layers += [nn.Conv2d(channels, 2 * channels, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(2 * channels), nn.LeakyReLU(0.2, True)]
            channels, size = 2 * channels, size // 2
            # state size: channels x size x size
        layers.append(nn.Conv2d(channels, 1, 4, 1, 0, bias=False))  # state size: 1 x 1 x 1
        self.net = nn.Sequential(*layers)
        init_weights(self, init)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).flatten()
