"""Networks of crVAE-GAN (WACV'18) and acVAE-GAN (WACV'19).

Every latent has the shape ``[N, nf, 4, 4]``.  With ``T`` time steps, step ``t`` owns the
channels ``t*nf/T ... (t+1)*nf/T - 1``, so ``z.view(N, T, nf // T * 16)`` lists the steps.

Pieces (names follow the reference notes):

* ``Encoder``: CReLU conv trunk, image -> ``h`` ``[N, 8c, 4, 4]`` (c = ``-baseChannels``).
* ``Latent``: ``h`` (+ per-step attribute embedding) -> ``(mu, logvar)``.  ``lstm``: conv mean
  plus an LSTM over the T channel groups for the variance; ``fc``: linear maps; ``conv``: 3x3 convs.
* ``DecoderRNN``: ``z`` (+ embedding) -> ``u`` ``[N, nf, 4, 4]`` (LSTM / linear / identity).
* ``Decoder``: ``u`` -> image (Tanh at 64/128 px; logits for Bernoulli MNIST at 28 px).
* ``DiscTrunk`` (conv -> MaxPool -> ReLU -> SpatialDropout), ``GanHead`` (with
  ``BatchDiscrimination``), ``MIHead`` (regresses ``u`` from D features).
* ``Attention`` (acVAE): alpha ``[T, A]``, softmax over T; ``ConditionalPrior``: p(z | y).

Stage 2 (128 px) adds ``from_rgb128``/``encoder_conv``, ``decoder_conv``/``to_rgb128`` and
``from_rgb128``/``disc_conv`` and fades them in: ``out = (1 - a) * old + a * new``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganlab_common.init import fan_out_uniform_init

__all__ = [
    "INITS",
    "init_like_original",
    "CRVAE_TYPES",
    "ACVAE_TYPES",
    "ModelSpec",
    "CReLU",
    "StepLinear",
    "BatchDiscrimination",
    "Attention",
    "CRVAE",
    "Discriminator",
    "build_models",
    "lstm_with_forget_bias",
]

CRVAE_TYPES = ("baseline", "lstm", "conv")
ACVAE_TYPES = ("cvae", "cgan", "cvaegan", "crvaegan", "acvaegan")
_LATENT_KIND = {
    "baseline": "fc",
    "conv": "conv",
    "lstm": "lstm",
    "cvae": "fc",
    "cgan": "lstm",
    "cvaegan": "fc",
    "crvaegan": "lstm",
    "acvaegan": "lstm",
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything the networks need to know; built by the trainer from the flags."""

    latent_type: str = "lstm"
    image_size: int = 64  # 28 (MNIST), 64 (stage 1) or 128 (stage 2)
    channels: int = 3
    base_channels: int = 32  # c
    nf: int = 64  # latent channels
    steps: int = 8  # T
    rnn_layers: int = 2
    dropout: float = 0.0
    attr_dim: int = 0  # A (0: unconditional)
    gan: bool = True  # build D
    attention_gain: float = 1.0  # y_t = gain * alpha[t] * y (1: the original; T: see Attention)
    init: str = "original"  # original (the Lua ConvInit/BNInit) | pytorch (PyTorch 2 defaults)

    @property
    def kind(self) -> str:
        return _LATENT_KIND[self.latent_type]

    @property
    def conditional(self) -> bool:
        return self.latent_type in ACVAE_TYPES

    @property
    def attention(self) -> bool:
        return self.latent_type == "acvaegan"

    @property
    def has_encoder(self) -> bool:
        return self.latent_type != "cgan"

    @property
    def bernoulli(self) -> bool:
        return self.image_size == 28

    @property
    def step_dim(self) -> int:
        """Features of one time step of the latent: ``nf / T * 4 * 4`` (128 by default)."""
        return self.nf // self.steps * 16

    @property
    def hidden(self) -> int:
        """LSTM width: 16 c (512 by default)."""
        return 16 * self.base_channels

    @property
    def disc_width(self) -> int:
        """D width: half for the FC (VAE-GAN baseline) models, as in the original."""
        return self.base_channels // 2 if self.kind == "fc" else self.base_channels


# ------------------------------------------------------------------------------------------
# Small building blocks


class CReLU(nn.Module):
    """Concatenated ReLU: ``[N, C, ...] -> [N, 2C, ...]`` = ReLU(cat(x, -x))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(torch.cat([x, -x], dim=1))


class StepLinear(nn.Module):
    """T independent linear maps, one per time step: ``[N, T, in] -> [N, T, out]``."""

    def __init__(self, steps: int, fin: int, fout: int):
        super().__init__()
        bound = 1.0 / math.sqrt(fin)
        self.weight = nn.Parameter(torch.empty(steps, fin, fout).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(steps, fout).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nti,tio->nto", x, self.weight) + self.bias


def lstm_with_forget_bias(fin: int, hidden: int, layers: int, dropout: float) -> nn.LSTM:
    """A batch-first LSTM whose forget gates start at bias 1 (cuDNN ``RNNinit`` in Torch)."""
    lstm = nn.LSTM(fin, hidden, num_layers=layers, batch_first=True,
                   dropout=dropout if layers > 1 else 0.0)
    with torch.no_grad():
        for layer in range(layers):
            getattr(lstm, f"bias_ih_l{layer}")[hidden: 2 * hidden].fill_(1.0)
            getattr(lstm, f"bias_hh_l{layer}")[hidden: 2 * hidden].fill_(0.0)
    return lstm


class BatchDiscrimination(nn.Module):
    """Minibatch discrimination (Salimans et al. 2016), as the ``stnbhwd`` Torch layer.

    ``[N, F] -> [N, F + B]``: a bias-free linear map to ``B x C`` kernels, L1 distances between
    rows per kernel, and ``o[i, b] = sum_j exp(-|M_i,b - M_j,b|_1)``.  The sum includes
    ``j = i`` (so each entry is >= 1), exactly like the original layer.
    """

    def __init__(self, features: int, kernels: int = 100, kernel_dim: int = 5):
        super().__init__()
        self.kernels, self.kernel_dim = kernels, kernel_dim
        self.proj = nn.Linear(features, kernels * kernel_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.proj(x).view(-1, self.kernels, self.kernel_dim)  # [N, B, C]
        dist = (m.unsqueeze(0) - m.unsqueeze(1)).abs().sum(-1)  # [N, N, B]
        o = torch.exp(-dist).sum(dim=1)  # [N, B]
        return torch.cat([x, o], dim=1)  # [N, F + B]


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2), nn.BatchNorm2d(cout)]


def _deconv_bn_lrelu(cin: int, cout: int, k: int = 4, pad: int = 1) -> list[nn.Module]:
    return [nn.ConvTranspose2d(cin, cout, k, 2, pad), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1)]


def _fade(old: torch.Tensor, new: torch.Tensor, a: float) -> torch.Tensor:
    if a <= 0.0:
        return old
    if a >= 1.0:
        return new
    return (1.0 - a) * old + a * new


# ------------------------------------------------------------------------------------------
# Encoder


class Encoder(nn.Module):
    """Image ``[N, C, S, S]`` (S = 28, 64 or 128) -> ``h`` ``[N, 8c, 4, 4]`` with CReLUs."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        c, ch = spec.base_channels, spec.channels
        self.image_size = spec.image_size
        self.fade = 1.0
        if spec.image_size == 28:
            self.trunk = nn.Sequential(
                CReLU(),
                *_conv_bn(2 * ch, c, 5, 2), CReLU(),  # [N, 2c, 14, 14]
                *_conv_bn(2 * c, 2 * c, 3, 2), CReLU(),  # [N, 4c, 7, 7]
                *_conv_bn(4 * c, 4 * c, 3, 2), CReLU(),  # [N, 8c, 4, 4]
                *_conv_bn(8 * c, 8 * c, 3), nn.LeakyReLU(0.1),  # [N, 8c, 4, 4]
            )
            return
        self.from_rgb = nn.Sequential(CReLU(), *_conv_bn(2 * ch, c, 1), nn.ReLU())  # [N, c, 64, 64]
        self.trunk = nn.Sequential(
            *_conv_bn(c, c, 5, 2), CReLU(),  # [N, 2c, 32, 32]
            *_conv_bn(2 * c, 2 * c, 3, 2), CReLU(),  # [N, 4c, 16, 16]
            *_conv_bn(4 * c, 4 * c, 3, 2), CReLU(),  # [N, 8c, 8, 8]
            *_conv_bn(8 * c, 8 * c, 3), nn.LeakyReLU(0.1),  # [N, 8c, 8, 8]
            *_conv_bn(8 * c, 8 * c, 3, 2), CReLU(),  # [N, 16c, 4, 4]
            *_conv_bn(16 * c, 8 * c, 3), nn.LeakyReLU(0.1),  # [N, 8c, 4, 4]
        )
        if spec.image_size == 128:
            self.from_rgb128 = nn.Sequential(CReLU(), *_conv_bn(2 * ch, c, 1), nn.ReLU())
            self.encoder_conv = nn.Sequential(
                *_conv_bn(c, max(c // 2, 1), 3), nn.LeakyReLU(0.1),
                *_conv_bn(max(c // 2, 1), c, 3), nn.LeakyReLU(0.1),
                nn.AvgPool2d(2),
            )  # [N, c, 64, 64]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.image_size == 28:
            return self.trunk(x)
        if self.image_size == 128:
            old = self.from_rgb(F.avg_pool2d(x, 2))
            new = self.encoder_conv(self.from_rgb128(x)) if self.fade > 0 else old
            f = _fade(old, new, self.fade)
        else:
            f = self.from_rgb(x)
        return self.trunk(f)  # [N, 8c, 4, 4]


# ------------------------------------------------------------------------------------------
# Conditioning (acVAE)


class Attention(nn.Module):
    """Learnable attention over steps for each attribute: alpha ``[T, A]``, sum over T = 1.

    ``forward(y [N, A]) -> y_t [N, T, A] = gain * y * alpha[t]``.  Without attention
    (crVAE-GAN / cVAE-GAN), ``y_t = y`` at every step.  The logits start as Torch's
    ``nn.CMul`` does, uniform in +-1/sqrt(T A) (ones would make the uniform attention a
    stationary point of the entropy regulariser).  ``gain`` 1 is the original; ``gain = T``
    starts each step at the full ``y`` (alpha is ~1/T at first), as crVAE-GAN sees it.
    """

    def __init__(self, steps: int, attr_dim: int, learn: bool, gain: float = 1.0):
        super().__init__()
        self.steps = steps
        self.gain = gain
        self.logits = None
        if learn:
            bound = 1.0 / math.sqrt(steps * attr_dim)
            self.logits = nn.Parameter(torch.empty(steps, attr_dim).uniform_(-bound, bound))

    def alpha(self) -> torch.Tensor | None:
        return None if self.logits is None else torch.softmax(self.logits, dim=0)  # [T, A]

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        a = self.alpha()
        if a is None:
            return y.unsqueeze(1).expand(-1, self.steps, -1)  # [N, T, A]
        return self.gain * y.unsqueeze(1) * a.unsqueeze(0)  # [N, T, A]


class StepEmbed(nn.Module):
    """Per-step attribute embedding ``[N, T, A] -> [N, T, step_dim]`` (Linear + LReLU0.2)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.linear = StepLinear(spec.steps, spec.attr_dim, spec.step_dim)

    def forward(self, y_t: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.linear(y_t), 0.2)


class ConditionalPrior(nn.Module):
    """p(z | y): LSTM over the y_t (crVAE/acVAE) or an MLP of y (cVAE) -> (mu, logvar)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        d = spec.step_dim
        if spec.kind == "lstm":
            self.rnn = lstm_with_forget_bias(spec.attr_dim, d, spec.rnn_layers, spec.dropout)
            self.out = StepLinear(spec.steps, d, 2 * d)
        else:
            full = spec.nf * 16
            self.mlp = nn.Sequential(
                nn.Linear(spec.attr_dim, full), nn.LeakyReLU(0.2), nn.Linear(full, 2 * full)
            )

    def forward(self, y_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``y_t [N, T, A] -> (mu, logvar)``, each ``[N, nf, 4, 4]``."""
        n, s = y_t.shape[0], self.spec
        if s.kind == "lstm":
            out = self.out(self.rnn(y_t)[0])  # [N, T, 2 step_dim]
            mu, logvar = out.chunk(2, dim=2)
            mu, logvar = mu.reshape(n, -1), logvar.reshape(n, -1)
        else:
            mu, logvar = self.mlp(y_t[:, 0]).chunk(2, dim=1)  # [N, nf*16] each
        return mu.reshape(n, s.nf, 4, 4), logvar.reshape(n, s.nf, 4, 4)


def _interleave(h: torch.Tensor, emb: torch.Tensor, steps: int) -> torch.Tensor:
    """Append each step's embedding channels to that step's group of ``h`` channels.

    ``h [N, Ch, 4, 4]``, ``emb [N, T, E*16]`` -> ``[N, Ch + T*E, 4, 4]``, grouped by step.
    """
    n = h.shape[0]
    hg = h.view(n, steps, -1, 4, 4)
    eg = emb.view(n, steps, -1, 4, 4)
    return torch.cat([hg, eg], dim=2).view(n, -1, 4, 4)


# ------------------------------------------------------------------------------------------
# Latent: q(z | x)


class Latent(nn.Module):
    """``h [N, 8c, 4, 4]`` (+ ``y_t``) -> ``(mu, logvar)`` each ``[N, nf, 4, 4]``.

    ``lstm``: mu = conv3(h) + mu0; log sigma^2 from an LSTM over the T groups of h
    (each ``8c/T x 4 x 4``), BatchNorm1d and a per-step Linear to ``step_dim``.
    ``fc``: two Linear maps of the flattened h.  ``conv``: two 3x3 convs.
    The variance path (``var``) gets its own optimiser (LR / T for the LSTM).
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        s, cin = spec, 8 * spec.base_channels
        extra = spec.nf if spec.conditional else 0  # embedding channels, nf/T per step
        if s.conditional and s.kind != "fc":
            self.embed = StepEmbed(spec)
        elif s.conditional:
            self.embed = nn.Sequential(nn.Linear(s.attr_dim, s.nf * 16), nn.LeakyReLU(0.2))
        if s.kind == "lstm":
            self.mu = nn.Conv2d(cin + extra, s.nf, 3, 1, 1, bias=False)
            self.mu0 = nn.Parameter(torch.zeros(1, s.nf, 4, 4))
            self.var = nn.ModuleDict({
                "rnn": lstm_with_forget_bias((cin + extra) // s.steps * 16, s.hidden,
                                             s.rnn_layers, s.dropout),
                "bn": nn.BatchNorm1d(s.hidden),
                "out": StepLinear(s.steps, s.hidden, s.step_dim),
            })
        elif s.kind == "fc":
            self.mu = nn.Linear((cin + extra) * 16, s.nf * 16)
            self.var = nn.Linear((cin + extra) * 16, s.nf * 16)
        else:
            self.mu = nn.Conv2d(cin, s.nf, 3, 1, 1)
            self.var = nn.Conv2d(cin, s.nf, 3, 1, 1)

    def forward(
        self, h: torch.Tensor, y_t: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        s, n = self.spec, h.shape[0]
        if s.kind == "lstm":
            if s.conditional:
                h = _interleave(h, self.embed(y_t), s.steps)  # [N, 8c + nf, 4, 4]
            mu = self.mu(h) + self.mu0
            seq = h.view(n, s.steps, -1)  # [N, T, (8c + nf) / T * 16]
            out = self.var["rnn"](seq)[0]  # [N, T, H]
            out = self.var["bn"](out.reshape(n * s.steps, -1)).view(n, s.steps, -1)
            logvar = self.var["out"](out).reshape(n, s.nf, 4, 4)
            return mu, logvar
        if s.kind == "fc":
            flat = h.flatten(1)
            if s.conditional:
                flat = torch.cat([flat, self.embed(y_t[:, 0])], dim=1)
            return self.mu(flat).view(n, s.nf, 4, 4), self.var(flat).view(n, s.nf, 4, 4)
        return self.mu(h), self.var(h)


# ------------------------------------------------------------------------------------------
# Decoder


class DecoderRNN(nn.Module):
    """``z [N, nf, 4, 4]`` (+ ``y_t``) -> ``u [N, nf, 4, 4]``.

    ``lstm``: the T steps of z (each concatenated with its attribute embedding) through an
    LSTM(step_dim[*2] -> H) and a per-step Linear(H -> step_dim); ``fc``: one Linear;
    ``conv``: identity.
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        s = spec
        if s.conditional and s.kind == "lstm":
            self.embed = StepEmbed(spec)
        elif s.conditional:
            self.embed = nn.Sequential(nn.Linear(s.attr_dim, s.nf * 16), nn.LeakyReLU(0.2))
        if s.kind == "lstm":
            fin = s.step_dim * (2 if s.conditional else 1)
            self.rnn = lstm_with_forget_bias(fin, s.hidden, s.rnn_layers, s.dropout)
            self.out = StepLinear(s.steps, s.hidden, s.step_dim)
        elif s.kind == "fc":
            fin = s.nf * 16 * (2 if s.conditional else 1)
            self.fc = nn.Linear(fin, s.nf * 16)

    def forward(self, z: torch.Tensor, y_t: torch.Tensor | None = None) -> torch.Tensor:
        s, n = self.spec, z.shape[0]
        if s.kind == "lstm":
            seq = z.reshape(n, s.steps, -1)  # [N, T, step_dim]
            if s.conditional:
                seq = torch.cat([self.embed(y_t), seq], dim=2)  # [N, T, 2 step_dim]
            return self.out(self.rnn(seq)[0]).reshape(n, s.nf, 4, 4)
        if s.kind == "fc":
            flat = z.flatten(1)
            if s.conditional:
                flat = torch.cat([self.embed(y_t[:, 0]), flat], dim=1)
            return self.fc(flat).view(n, s.nf, 4, 4)
        return z


class Decoder(nn.Module):
    """``u [N, nf, 4, 4]`` -> image ``[N, C, S, S]`` (Tanh; raw logits at 28 px)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        c, nf, ch = spec.base_channels, spec.nf, spec.channels
        self.image_size = spec.image_size
        self.fade = 1.0
        self.u0 = nn.Parameter(torch.zeros(1, nf, 4, 4))
        if spec.image_size == 28:
            self.body = nn.Sequential(
                *_conv_bn(nf, 8 * c, 3), nn.LeakyReLU(0.1),  # [N, 8c, 4, 4]
                *_deconv_bn_lrelu(8 * c, 4 * c, 3, 1),  # [N, 4c, 7, 7]
                *_deconv_bn_lrelu(4 * c, 2 * c),  # [N, 2c, 14, 14]
                *_deconv_bn_lrelu(2 * c, c),  # [N, c, 28, 28]
            )
            self.to_rgb = nn.Conv2d(c, ch, 3, 1, 1)  # logits
            return
        self.body = nn.Sequential(
            *_conv_bn(nf, 8 * c, 3),  # [N, 8c, 4, 4], no activation
            *_deconv_bn_lrelu(8 * c, 8 * c),  # [N, 8c, 8, 8]
            *_conv_bn(8 * c, 8 * c, 3), nn.LeakyReLU(0.1),
            *_deconv_bn_lrelu(8 * c, 4 * c),  # [N, 4c, 16, 16]
            *_deconv_bn_lrelu(4 * c, 2 * c),  # [N, 2c, 32, 32]
            *_deconv_bn_lrelu(2 * c, 2 * c),  # [N, 2c, 64, 64]
            *_conv_bn(2 * c, 2 * c, 3), nn.LeakyReLU(0.1),
        )
        self.to_rgb = nn.Sequential(nn.Conv2d(2 * c, ch, 3, 1, 1), nn.Tanh())  # [N, C, 64, 64]
        if spec.image_size == 128:
            self.decoder_conv = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),
                *_conv_bn(2 * c, c, 3), nn.LeakyReLU(0.1),
                *_conv_bn(c, 2 * c, 3), nn.LeakyReLU(0.1),
            )  # [N, 2c, 128, 128]
            self.to_rgb128 = nn.Sequential(nn.Conv2d(2 * c, ch, 3, 1, 1), nn.Tanh())

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        f = self.body(u + self.u0)
        if self.image_size != 128:
            return self.to_rgb(f)
        old = F.interpolate(self.to_rgb(f), scale_factor=2, mode="nearest")
        if self.fade <= 0:
            return old
        return _fade(old, self.to_rgb128(self.decoder_conv(f)), self.fade)


# ------------------------------------------------------------------------------------------
# Discriminator


def _disc_block(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, 1, k // 2), nn.MaxPool2d(2, ceil_mode=True), nn.ReLU(),
            nn.Dropout2d(0.5)]


class DiscTrunk(nn.Module):
    """Image -> D features ``[N, 8w, 4, 4]``: [conv -> MaxPool2 -> ReLU -> SpatialDropout]."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        w, ch = spec.disc_width, spec.channels
        self.image_size = spec.image_size
        self.fade = 1.0
        self.from_rgb = nn.Sequential(nn.Conv2d(ch, w, 1), nn.LeakyReLU(0.2))
        if spec.image_size == 28:
            blocks = [*_disc_block(w, 2 * w, 5), *_disc_block(2 * w, 4 * w, 5),
                      *_disc_block(4 * w, 8 * w, 3)]  # 28 -> 14 -> 7 -> 4
        else:
            blocks = [*_disc_block(w, 2 * w, 5), *_disc_block(2 * w, 4 * w, 5),
                      *_disc_block(4 * w, 8 * w, 5), *_disc_block(8 * w, 8 * w, 3)]  # 64 -> 4
        self.blocks = nn.Sequential(*blocks)
        if spec.image_size == 128:
            self.from_rgb128 = nn.Sequential(nn.Conv2d(ch, w, 1), nn.LeakyReLU(0.2))
            self.disc_conv = nn.Sequential(
                nn.Conv2d(w, max(w // 2, 1), 3, 1, 1), nn.LeakyReLU(0.2),
                nn.Conv2d(max(w // 2, 1), w, 3, 1, 1), nn.LeakyReLU(0.2),
                nn.AvgPool2d(2),
            )  # [N, w, 64, 64]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.image_size == 128:
            old = self.from_rgb(F.avg_pool2d(x, 2))
            f = _fade(old, self.disc_conv(self.from_rgb128(x)) if self.fade > 0 else old,
                      self.fade)
        else:
            f = self.from_rgb(x)
        return self.blocks(f)  # [N, 8w, 4, 4]


class GanHead(nn.Module):
    """D features (+ raw y) -> real/fake logit ``[N]``.

    Linear -> L2 Normalize -> Dropout -> ReLU -> BatchDiscrimination(100, 5) -> Linear.
    Conditional: Linear(A -> step_dim)(y), replicated over the T steps, is concatenated to the
    features as ``nf`` extra channels.
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        w = spec.disc_width
        self.spec = spec
        feat = 8 * w * 16
        hidden = 32 * w
        if spec.conditional:
            self.embed = nn.Linear(spec.attr_dim, spec.step_dim)
            feat += spec.nf * 16
            hidden = 16 * w
        self.fc = nn.Linear(feat, hidden)
        self.drop = nn.Dropout(0.5)
        self.bd = BatchDiscrimination(hidden, 100, 5)
        self.out = nn.Linear(hidden + 100, 1)

    def forward(self, f: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        flat = f.flatten(1)
        if self.spec.conditional:
            e = self.embed(y).repeat(1, self.spec.steps)  # [N, T * step_dim]
            flat = torch.cat([flat, e], dim=1)
        x = F.relu(self.drop(F.normalize(self.fc(flat), dim=1)))
        return self.out(self.bd(x)).squeeze(1)  # [N]


class MIHead(nn.Module):
    """D features ``[N, 8w, 4, 4]`` -> estimate of ``u`` ``[N, nf, 4, 4]`` (MSE regression)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        w, nf = spec.disc_width, spec.nf
        self.nf = nf
        self.conv = nn.Sequential(
            nn.Conv2d(8 * w, nf, 3, 1, 1), nn.BatchNorm2d(nf), nn.LeakyReLU(0.2),
            nn.Conv2d(nf, nf, 1), nn.BatchNorm2d(nf), nn.LeakyReLU(0.1),
        )  # [N, nf, 4, 4]
        self.fc = nn.Linear(nf * 16, nf * 16)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(f).flatten(1)).view(-1, self.nf, 4, 4)


# ------------------------------------------------------------------------------------------
# Whole models


#: ``-init`` choices (see :func:`init_like_original`).
INITS = ("original", "pytorch")


@torch.no_grad()
def init_like_original(net: nn.Module) -> nn.Module:
    """The models' ``ConvInit``/``BNInit`` of both repos (crVAE ``models/allconv_*_mnist.lua``
    164-207, acVAE ``models/allconv_acvaegan_pggan.lua`` 345-512): (transposed) conv weights
    U(+-1/sqrt(k * k * nOutputPlane)), biases 0; BatchNorm 1 and 0; Linear (and per-step
    Linear) biases 0, weights Torch's U(+-1/sqrt(in)); the ``nn.Add`` offsets (``mu0``,
    ``u0``) ``reset(0.01)``, i.e. U(+-0.01 sqrt(3)).  LSTMs, the attention table and
    BatchDiscrimination keep their own constructors' init."""
    fan_out_uniform_init(net)
    bound = 0.01 * math.sqrt(3)
    for name, p in net.named_parameters():
        if name.endswith(("u0", "mu0")):
            p.uniform_(-bound, bound)
    for m in net.modules():
        if isinstance(m, StepLinear):
            m.bias.zero_()
    return net


def _init(net: nn.Module, spec: ModelSpec) -> None:
    if spec.init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {spec.init!r}")
    if spec.init == "original":
        init_like_original(net)


class CRVAE(nn.Module):
    """Encoder, latent, decoder (and the acVAE attention and conditional prior)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        if spec.has_encoder:
            self.encoder = Encoder(spec)
            self.latent = Latent(spec)
        self.decoder_rnn = DecoderRNN(spec)
        self.decoder = Decoder(spec)
        if spec.conditional:
            self.attention = Attention(spec.steps, spec.attr_dim, spec.attention,
                                       spec.attention_gain)
        if spec.conditional and spec.latent_type != "cgan":
            self.prior = ConditionalPrior(spec)
        _init(self, spec)

    def set_fade(self, a: float) -> None:
        """Stage 2 fade-in weight ``a`` of the new 128 px layers."""
        self.decoder.fade = a
        if self.spec.has_encoder:
            self.encoder.fade = a

    def steps_of(self, y: torch.Tensor | None) -> torch.Tensor | None:
        """Per-step attributes ``y_t [N, T, A]`` (None when unconditional)."""
        return None if y is None or not self.spec.conditional else self.attention(y)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """``x [N, C, S, S]`` -> ``(mu, logvar)`` each ``[N, nf, 4, 4]``."""
        return self.latent(self.encoder(x), self.steps_of(y))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None):
        """``z [N, nf, 4, 4]`` -> ``(image or logits [N, C, S, S], u [N, nf, 4, 4])``."""
        u = self.decoder_rnn(z, self.steps_of(y))
        return self.decoder(u), u

    def prior_params(self, y: torch.Tensor | None, n: int, device) -> tuple:
        """``(mu, logvar)`` of p(z | y) (zeros for the standard normal prior)."""
        if self.spec.conditional and self.spec.latent_type != "cgan":
            return self.prior(self.steps_of(y))
        zeros = torch.zeros(n, self.spec.nf, 4, 4, device=device)
        return zeros, zeros

    def sample_prior(self, n: int, y: torch.Tensor | None = None, generator=None):
        """z ~ p(z | y) ``[N, nf, 4, 4]``."""
        device = self.decoder.u0.device
        mu, logvar = self.prior_params(y, n, device)
        eps = torch.randn(mu.shape, generator=generator, device="cpu").to(device)
        return mu + torch.exp(0.5 * logvar) * eps

    def to_image(self, out: torch.Tensor) -> torch.Tensor:
        """Decoder output -> image in [-1, 1] (Bernoulli mean for MNIST logits)."""
        return torch.sigmoid(out) * 2 - 1 if self.spec.bernoulli else out


class Discriminator(nn.Module):
    """D trunk, the GAN head and the MI head (each with its own optimiser)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.trunk = DiscTrunk(spec)
        self.head = GanHead(spec)
        self.mi_head = MIHead(spec)
        _init(self, spec)

    def set_fade(self, a: float) -> None:
        self.trunk.fade = a

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        """``x [N, C, S, S]`` -> ``(logit [N], features [N, 8w, 4, 4])``."""
        f = self.trunk(x)
        return self.head(f, y), f


def build_models(spec: ModelSpec) -> tuple[CRVAE, Discriminator | None]:
    """The VAE (or cGAN generator) and, when ``spec.gan``, its discriminator."""
    if spec.nf % spec.steps or (8 * spec.base_channels) % spec.steps:
        raise ValueError("nf and 8 * baseChannels must be divisible by the number of steps")
    return CRVAE(spec), (Discriminator(spec) if spec.gan else None)
