"""The original AttnGAN's released weights in our networks.

The authors released ``bird_AttnGAN2.pth`` / ``coco_AttnGAN2.pth`` (and
``bird_AttnDCGAN2.pth``): bare ``G_NET`` / ``G_DCGAN`` state dicts, plus the DAMSM
``text_encoder*.pth`` / ``image_encoder*.pth`` and each data set's ``captions.pickle``.
The manifests below list the parameter names and shapes those files hold, transcribed from
reading the original ``code/model.py`` (taoxugit/AttnGAN: ``G_NET``, ``G_DCGAN``,
``INIT_STAGE_G``, ``NEXT_STAGE_G``, ``ResBlock``, ``upBlock``, ``GET_IMAGE_G``, ``CA_NET``,
``RNN_ENCODER``); no code was copied.  Files written by PyTorch <= 0.4.0 have no BatchNorm
``num_batches_tracked``; the conversion adds it (zeros: it only matters for training with
momentum None).  A ``module.`` prefix (``nn.DataParallel``) is removed.

:func:`original_export` turns such a generator file (plus the text encoder and the
vocabulary it finds beside it, or in the original's folder layout) into the export that
:func:`attngan.sample.load_generator` reads, so ``--netG models/bird_AttnGAN2.pth`` works in
``attngan-sample``, ``attngan-eval`` and ``attngan-serve``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ganlab_common.checkpoint import load_checkpoint
from ganlab_common.errors import UserError

from .config import load_config
from .text import load_captions_pickle

__all__ = [
    "generator_manifest",
    "text_encoder_manifest",
    "infer_generator_dims",
    "convert_generator",
    "convert_text_encoder",
    "is_original_generator",
    "original_export",
]

Shape = tuple[int, ...]
_BN_STATS = ("weight", "bias", "running_mean", "running_var")


def _bn(prefix: str, channels: int) -> dict[str, Shape]:
    return {f"{prefix}.{name}": (channels,) for name in _BN_STATS}


def _up_block(prefix: str, in_planes: int, out_planes: int) -> dict[str, Shape]:
    """upBlock: [0] Upsample, [1] conv3x3(in, 2 out), [2] BatchNorm2d(2 out), [3] GLU."""
    return {f"{prefix}.1.weight": (out_planes * 2, in_planes, 3, 3),
            **_bn(f"{prefix}.2", out_planes * 2)}  # fmt: skip


def generator_manifest(
    ngf: int = 32,
    nef: int = 256,
    ncf: int = 100,
    nz: int = 100,
    branch_num: int = 3,
    r_num: int = 2,
    dcgan: bool = False,
) -> dict[str, Shape]:
    """Names and shapes of the original ``G_NET`` (``dcgan``: ``G_DCGAN``) state dict, in
    the order the original registers them.  Defaults: ``cfg/bird_attn2.yml`` (GF_DIM 32,
    EMBEDDING_DIM 256, CONDITION_DIM 100, Z_DIM 100, BRANCH_NUM 3, R_NUM 2); COCO: GF_DIM 48,
    R_NUM 3."""
    m: dict[str, Shape] = {"ca_net.fc.weight": (ncf * 4, nef), "ca_net.fc.bias": (ncf * 4,)}
    g16 = ngf * 16  # INIT_STAGE_G(ngf * 16, ncf): fc to g16 x 4 x 4 (x2 for the GLU)
    m["h_net1.fc.0.weight"] = (g16 * 4 * 4 * 2, nz + ncf)
    m.update(_bn("h_net1.fc.1", g16 * 4 * 4 * 2))
    for k in range(4):  # upsample1..4: g16 -> g16/2 -> ... -> ngf, 4 -> 64 px
        m.update(_up_block(f"h_net1.upsample{k + 1}", g16 // 2**k, g16 // 2 ** (k + 1)))
    if not dcgan:
        m["img_net1.img.0.weight"] = (3, ngf, 3, 3)
    for i in range(2, branch_num + 1):
        p = f"h_net{i}"
        m[f"{p}.att.conv_context.weight"] = (ngf, nef, 1, 1)  # conv1x1(cdf, idf)
        for r in range(r_num):  # ResBlock(2 ngf): conv(4 ngf), BN, GLU, conv(2 ngf), BN
            m[f"{p}.residual.{r}.block.0.weight"] = (ngf * 4, ngf * 2, 3, 3)
            m.update(_bn(f"{p}.residual.{r}.block.1", ngf * 4))
            m[f"{p}.residual.{r}.block.3.weight"] = (ngf * 2, ngf * 2, 3, 3)
            m.update(_bn(f"{p}.residual.{r}.block.4", ngf * 2))
        m.update(_up_block(f"{p}.upsample", ngf * 2, ngf))
        if not dcgan:
            m[f"img_net{i}.img.0.weight"] = (3, ngf, 3, 3)
    if dcgan:
        m["img_net.img.0.weight"] = (3, ngf, 3, 3)
    return m


def text_encoder_manifest(
    n_words: int, ninput: int = 300, nhidden: int = 256, rnn_type: str = "LSTM"
) -> dict[str, Shape]:
    """Names and shapes of the original ``RNN_ENCODER`` (1 layer, bidirectional; ``nhidden``
    is TEXT.EMBEDDING_DIM, split over the two directions)."""
    gates = {"LSTM": 4, "GRU": 3}[rnn_type] * (nhidden // 2)
    m: dict[str, Shape] = {"encoder.weight": (n_words, ninput)}
    for suffix in ("", "_reverse"):
        m[f"rnn.weight_ih_l0{suffix}"] = (gates, ninput)
        m[f"rnn.weight_hh_l0{suffix}"] = (gates, nhidden // 2)
        m[f"rnn.bias_ih_l0{suffix}"] = (gates,)
        m[f"rnn.bias_hh_l0{suffix}"] = (gates,)
    return m


# ---------------------------------------------------------------------------------------------
# Conversion


def _strip(state: dict) -> dict[str, torch.Tensor]:
    """Tensors only, without a DataParallel ``module.`` prefix."""
    return {k.removeprefix("module."): v for k, v in state.items() if torch.is_tensor(v)}


def _check(state: dict, manifest: dict[str, Shape], what: str) -> None:
    """UserError naming the first differences from ``manifest`` (BN counters ignored)."""
    keys = {k for k in state if not k.endswith("num_batches_tracked")}
    missing = [k for k in manifest if k not in keys]
    unexpected = sorted(keys - set(manifest))
    shapes = [f"{k} {tuple(state[k].shape)} != {manifest[k]}"
              for k in manifest if k in keys and tuple(state[k].shape) != manifest[k]]  # fmt: skip
    problems = [(missing, "missing"), (unexpected, "unexpected"), (shapes, "shape")]
    for items, label in problems:
        if items:
            shown = ", ".join(items[:3]) + (f" (+{len(items) - 3})" if len(items) > 3 else "")
            raise UserError(f"{what}: not the original's layout: {label}: {shown}")


def is_original_generator(state: dict) -> bool:
    """A bare original G_NET / G_DCGAN state dict (not one of our exports)."""
    keys = {k.removeprefix("module.") for k in state}
    return "netG" not in state and {"ca_net.fc.weight", "h_net1.fc.0.weight"} <= keys


def infer_generator_dims(state: dict) -> dict:
    """``ngf, nef, ncf, nz, branch_num, r_num, dcgan`` from the tensors' shapes."""
    state = _strip(state)
    try:
        ncf4, nef = state["ca_net.fc.weight"].shape
        dcgan = "img_net.img.0.weight" in state
        ngf = state["img_net.img.0.weight" if dcgan else "img_net1.img.0.weight"].shape[1]
        nz = state["h_net1.fc.0.weight"].shape[1] - ncf4 // 4
    except (KeyError, ValueError) as exc:
        raise UserError(f"--netG: not an original G_NET state dict (no {exc})") from None
    stages = {int(m.group(1)) for k in state if (m := re.match(r"h_net(\d+)\.", k))}
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"h_net2\.residual\.(\d+)\.", k))}
    return {"ngf": int(ngf), "nef": int(nef), "ncf": int(ncf4) // 4, "nz": int(nz),
            "branch_num": max(stages), "r_num": len(blocks), "dcgan": dcgan}  # fmt: skip


def convert_generator(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """``(our G_NET state dict, its dims)`` from an original G state dict, checked against
    :func:`generator_manifest`."""
    state = _strip(state)
    dims = infer_generator_dims(state)
    manifest = generator_manifest(**dims)
    _check(state, manifest, "--netG")
    out = {k: state[k] for k in manifest}
    for key in manifest:
        if key.endswith(".running_mean"):
            counter = key.removesuffix("running_mean") + "num_batches_tracked"
            out[counter] = state.get(counter, torch.tensor(0, dtype=torch.long))
    return out, dims


def _rnn_type(state: dict) -> str:
    """GRU when the input weights hold 3 gates per hidden unit, else LSTM."""
    ih, hh = state.get("rnn.weight_ih_l0"), state.get("rnn.weight_hh_l0")
    gru = ih is not None and hh is not None and ih.shape[0] == 3 * hh.shape[1]
    return "GRU" if gru else "LSTM"


def convert_text_encoder(state: dict, n_words: int, what: str = "text encoder") -> dict:
    """Our RNN_ENCODER state dict from an original one, checked against the manifest."""
    state = _strip(state)
    if "encoder.weight" not in state:
        raise UserError(f"{what}: not an original RNN_ENCODER state dict (no encoder.weight)")
    rows, ninput = state["encoder.weight"].shape
    if rows != n_words:
        raise UserError(
            f"{what}: {rows} words in the encoder, {n_words} in captions.pickle (wrong pair)"
        )
    hidden = state["rnn.weight_hh_l0"].shape[1] if "rnn.weight_hh_l0" in state else 0
    manifest = text_encoder_manifest(n_words, int(ninput), 2 * int(hidden), _rnn_type(state))
    _check(state, manifest, what)
    return {k: state[k] for k in manifest}


# ---------------------------------------------------------------------------------------------
# Files in the original's layout


def _first(candidates: list[Path]) -> Path | None:
    return next((p for p in candidates if p.is_file()), None)


def _text_encoder_files(folder: Path) -> list[Path]:
    """``text_encoder*.pth`` in ``folder``, the highest epoch first."""

    def epoch(p: Path) -> int:
        digits = re.findall(r"\d+", p.stem)
        return int(digits[-1]) if digits else -1

    return sorted(folder.glob("text_encoder*.pth"), key=epoch, reverse=True)


def find_companions(net_g: Path) -> tuple[Path | None, Path | None]:
    """``(text_encoder*.pth, captions.pickle)`` for an original generator file: beside it,
    else in the original's layout (``models/x.pth``, ``DAMSMencoders/<bird|coco>/``,
    ``data/<birds|coco>/``)."""
    kind = "coco" if "coco" in net_g.name.lower() else "bird"
    root = net_g.resolve().parent.parent
    encoders = _text_encoder_files(net_g.parent) + _text_encoder_files(
        root / "DAMSMencoders" / kind
    )
    data = root / "data" / ("coco" if kind == "coco" else "birds")
    captions = _first([net_g.parent / "captions.pickle", data / "captions.pickle"])
    return (encoders[0] if encoders else None), captions


def _config(dims: dict, kind: str, word_dim: int, rnn_type: str) -> dict:
    sets = [f"GAN.GF_DIM={dims['ngf']}", f"TEXT.EMBEDDING_DIM={dims['nef']}",
            f"GAN.CONDITION_DIM={dims['ncf']}", f"GAN.Z_DIM={dims['nz']}",
            f"TREE.BRANCH_NUM={dims['branch_num']}", f"GAN.R_NUM={dims['r_num']}",
            f"GAN.B_DCGAN={str(dims['dcgan']).lower()}", "TREE.BASE_SIZE=64",
            f"GANLAB.WORD_EMBEDDING_DIM={word_dim}", f"RNN_TYPE={rnn_type}",
            "GANLAB.IMAGE_ENCODER=torchvision"]  # fmt: skip
    return load_config(f"{kind}_attn2", sets)


def original_export(
    state: dict,
    net_g: str | Path,
    text_encoder: str | Path | None = None,
    captions: str | Path | None = None,
) -> dict:
    """Our generator export (config, vocab, netG, text_encoder[, image_encoder]) from an
    original G state dict loaded from ``net_g``; the text encoder and ``captions.pickle``
    are found by :func:`find_companions` unless given."""
    net_g = Path(net_g)
    g_state, dims = convert_generator(state)
    found_encoder, found_captions = find_companions(net_g)
    encoder_path = Path(text_encoder) if text_encoder else found_encoder
    captions_path = Path(captions) if captions else found_captions
    if encoder_path is None or captions_path is None:
        missing = "text_encoder*.pth" if encoder_path is None else "captions.pickle"
        raise UserError(
            f"--netG: '{net_g}' is the original's G; its {missing} was found neither beside "
            "it nor in the original layout (../DAMSMencoders/<bird|coco>/, ../data/<birds|coco>/)"
        )
    vocab = load_captions_pickle(captions_path)[2]
    raw = load_checkpoint(encoder_path, flag="text encoder")
    text_state = convert_text_encoder(raw, len(vocab), f"text encoder '{encoder_path}'")
    word_dim = text_state["encoder.weight"].shape[1]
    rnn_type = _rnn_type(text_state)
    kind = "coco" if "coco" in net_g.name.lower() else "bird"
    export = {
        "kind": "attngan-generator",
        "source": f"original weights: {net_g.name}, {encoder_path.name}, {captions_path.name}",
        "config": _config(dims, kind, int(word_dim), rnn_type),
        "vocab": list(vocab.words),
        "netG": g_state,
        "text_encoder": text_state,
    }
    image_path = encoder_path.with_name(encoder_path.name.replace("text_encoder", "image_encoder"))
    if image_path.is_file():
        export["image_encoder"] = load_checkpoint(image_path, flag="image encoder")
    return export
