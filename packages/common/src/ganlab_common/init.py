"""Weight initialisations of the frameworks and scripts the original papers trained with.

PyTorch 2 starts some layers differently from the Lua Torch ``nn`` and PyTorch <= 0.3 that
the originals ran on, and a network's first steps (and sometimes where it ends up) depend on
it.  Each function here re-initialises every sub-module of a network in place and returns it:

* :func:`legacy_torch_init` -- the *framework defaults* of Lua Torch ``nn`` (``reset()``)
  and PyTorch <= 0.3, for code that called no explicit init:

  ========================================  ============================================
  layer                                     weight / bias
  ========================================  ============================================
  ``Conv{1,2,3}d``                          both U(+-1/sqrt(nInputPlane * prod(k)))
  ``ConvTranspose{1,2,3}d`` (full conv)     both U(+-1/sqrt(nInputPlane * prod(k))) [#]_
  ``Linear``                                both U(+-1/sqrt(inputSize))
  ``BatchNorm{1,2,3}d``                     weight U(0, 1), bias 0 [#]_
  ``LSTM``/``GRU``/``RNN``                  all U(+-1/sqrt(hidden)) (PyTorch 0.2; = today)
  ``Embedding``                             N(0, 1) (= today)
  ``PReLU``                                 0.25 (= today)
  ========================================  ============================================

  .. [#] PyTorch 2 bounds a transposed conv by its *output* channels (``weight.size(1)``).
  .. [#] PyTorch 2 starts BatchNorm at weight 1.

  ``nInputPlane`` is the layer's full input channel count (Torch had no groups; PyTorch
  0.2 did not divide by them either).
* :func:`dcgan_init` -- ``weights_init`` of dcgan.torch and its descendants: conv and
  transposed-conv weights N(0, 0.02), biases 0, BatchNorm weight N(1, 0.02), bias 0; Linear
  layers keep what they have unless ``linear=True``.
* :func:`fan_out_uniform_init` -- the ``ConvInit``/``BNInit`` of fb.resnet.torch-style Torch
  code (crVAE, acVAE): conv and transposed-conv weights U(+-1/sqrt(nOutputPlane * prod(k))),
  biases 0; BatchNorm weight 1, bias 0; Linear biases 0 (weights as they are).

Modules of other types (custom layers) are left alone: their own constructors say how the
original started them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "dcgan_init",
    "fan_out_uniform_init",
    "legacy_fan_in",
    "legacy_fan_out",
    "legacy_torch_init",
]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_RNN = (nn.LSTM, nn.GRU, nn.RNN)


def legacy_fan_in(m: nn.Module) -> int:
    """Torch's fan-in: ``nInputPlane * prod(k)`` for (transposed) convs, ``in_features``
    for Linear.  Raises ``TypeError`` for other modules."""
    if isinstance(m, _CONV + _CONV_T):
        return m.in_channels * math.prod(m.kernel_size)
    if isinstance(m, nn.Linear):
        return m.in_features
    raise TypeError(f"no fan-in for {type(m).__name__}")


def legacy_fan_out(m: nn.Module) -> int:
    """``nOutputPlane * prod(k)`` for (transposed) convs, ``out_features`` for Linear."""
    if isinstance(m, _CONV + _CONV_T):
        return m.out_channels * math.prod(m.kernel_size)
    if isinstance(m, nn.Linear):
        return m.out_features
    raise TypeError(f"no fan-out for {type(m).__name__}")


def _uniform(t: torch.Tensor | None, bound: float) -> None:
    if t is not None:
        t.uniform_(-bound, bound)


def _zero(t: torch.Tensor | None) -> None:
    if t is not None:
        t.zero_()


def _bn_reset(m: nn.Module, weight: str) -> None:
    """Running statistics back to (0, 1); ``weight`` is ``uniform``, ``one`` or ``dcgan``."""
    if getattr(m, "track_running_stats", False) and m.running_mean is not None:
        m.reset_running_stats()
    if m.weight is None:
        return
    if weight == "uniform":
        m.weight.uniform_(0.0, 1.0)
    elif weight == "dcgan":
        m.weight.normal_(1.0, 0.02)
    else:
        m.weight.fill_(1.0)
    m.bias.zero_()


def _legacy_reset(m: nn.Module) -> None:
    if isinstance(m, _CONV + _CONV_T + (nn.Linear,)):
        bound = 1.0 / math.sqrt(legacy_fan_in(m))
        _uniform(m.weight, bound)
        _uniform(m.bias, bound)
    elif isinstance(m, _BN):
        _bn_reset(m, "uniform")
    elif isinstance(m, _RNN):
        bound = 1.0 / math.sqrt(m.hidden_size)
        for p in m.parameters(recurse=False):
            p.uniform_(-bound, bound)
    elif isinstance(m, nn.Embedding):
        m.weight.normal_(0.0, 1.0)
    elif isinstance(m, nn.PReLU):
        m.weight.fill_(0.25)


@torch.no_grad()
def legacy_torch_init(module: nn.Module) -> nn.Module:
    """Every sub-module as Lua Torch ``nn`` / PyTorch <= 0.3 would have created it."""
    for m in module.modules():
        _legacy_reset(m)
    return module


@torch.no_grad()
def dcgan_init(module: nn.Module, linear: bool = False) -> nn.Module:
    """dcgan.torch's ``weights_init``: (transposed) conv weights N(0, 0.02), biases 0,
    BatchNorm weight N(1, 0.02), bias 0; with ``linear`` Linear layers too (N(0, 0.02), 0)."""
    kinds = _CONV + _CONV_T + ((nn.Linear,) if linear else ())
    for m in module.modules():
        if isinstance(m, kinds):
            m.weight.normal_(0.0, 0.02)
            _zero(m.bias)
        elif isinstance(m, _BN):
            _bn_reset(m, "dcgan")
    return module


@torch.no_grad()
def fan_out_uniform_init(module: nn.Module, zero_linear_bias: bool = True) -> nn.Module:
    """Torch ``ConvInit``/``BNInit`` with a uniform draw: (transposed) conv weights
    U(+-1/sqrt(nOutputPlane * prod(k))), biases 0; BatchNorm 1 and 0; Linear biases 0."""
    for m in module.modules():
        if isinstance(m, _CONV + _CONV_T):
            _uniform(m.weight, 1.0 / math.sqrt(legacy_fan_out(m)))
            _zero(m.bias)
        elif isinstance(m, _BN):
            _bn_reset(m, "one")
        elif isinstance(m, nn.Linear) and zero_linear_bias:
            _zero(m.bias)
    return module
