"""The original's released weights: manifest-checked conversion into our G_NET / RNN_ENCODER.

The released files cannot be downloaded here, so the tests build state dicts with exactly the
names and shapes the manifest (transcribed from the original ``model.py``) lists, write them
as the original would (bare state dicts, PyTorch's legacy format, no BN counters), and load
them through the same path ``--netG`` takes.
"""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from attngan.cli import sample
from attngan.config import load_config
from attngan.models import RNN_ENCODER, build_generator
from attngan.original_weights import (
    convert_generator,
    convert_text_encoder,
    generator_manifest,
    text_encoder_manifest,
)
from attngan.sample import generate, load_generator
from attngan.text import Vocabulary, save_captions_pickle
from ganlab_common.errors import UserError

BIRD = {"ngf": 32, "nef": 256, "ncf": 100, "nz": 100, "branch_num": 3, "r_num": 2}
COCO = {**BIRD, "ngf": 48, "r_num": 3}
TINY = {"ngf": 4, "nef": 32, "ncf": 8, "nz": 8, "branch_num": 3, "r_num": 1}


def _cfg(dims: dict, dcgan: bool = False) -> dict:
    return load_config("bird_attn2", [
        f"GAN.GF_DIM={dims['ngf']}", f"TEXT.EMBEDDING_DIM={dims['nef']}",
        f"GAN.CONDITION_DIM={dims['ncf']}", f"GAN.Z_DIM={dims['nz']}",
        f"TREE.BRANCH_NUM={dims['branch_num']}", f"GAN.R_NUM={dims['r_num']}",
        f"GAN.B_DCGAN={str(dcgan).lower()}", "TREE.BASE_SIZE=64",
    ])  # fmt: skip


def _from_manifest(manifest: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the manifest's names and shapes (variances positive)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in manifest.items():
        t = torch.randn(shape, generator=g)
        state[name] = t.abs() + 0.5 if name.endswith("running_var") else t
    return state


@pytest.mark.parametrize("dims,dcgan", [(BIRD, False), (COCO, False), (BIRD, True)],
                         ids=["bird_AttnGAN2", "coco_AttnGAN2", "bird_AttnDCGAN2"])  # fmt: skip
def test_every_manifest_tensor_lands_in_our_generator(dims, dcgan):
    manifest = generator_manifest(**dims, dcgan=dcgan)
    original = _from_manifest(manifest)
    converted, inferred = convert_generator(original)
    assert inferred == {**dims, "dcgan": dcgan}
    net = build_generator(_cfg(dims, dcgan))
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert {k: s for k, s in ours.items() if not k.endswith("num_batches_tracked")} == manifest
    result = net.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    loaded = net.state_dict()
    assert all(torch.equal(loaded[k], original[k]) for k in manifest)


def test_text_encoder_manifest_matches_ours():
    for rnn_type in ("LSTM", "GRU"):
        manifest = text_encoder_manifest(5450, 300, 256, rnn_type)
        net = RNN_ENCODER(5450, ninput=300, nhidden=256, rnn_type=rnn_type)
        assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == manifest
        original = {f"module.{k}": v for k, v in _from_manifest(manifest).items()}
        converted = convert_text_encoder(original, 5450)
        net.load_state_dict(converted, strict=True)
        assert torch.equal(net.encoder.weight, original["module.encoder.weight"])


def test_layout_mismatches_are_one_line_errors():
    manifest = generator_manifest(**BIRD)
    state = _from_manifest(manifest)
    state["h_net2.att.conv_context.weight"] = torch.zeros(32, 128, 1, 1)
    with pytest.raises(UserError, match="shape: h_net2.att.conv_context.weight"):
        convert_generator(state)
    state = _from_manifest(manifest)
    state["h_net3.extra.weight"] = torch.zeros(1)
    with pytest.raises(UserError, match="unexpected: h_net3.extra.weight"):
        convert_generator(state)
    with pytest.raises(UserError, match="5450 words in the encoder, 100"):
        convert_text_encoder(_from_manifest(text_encoder_manifest(5450)), 100)


def _write_original_layout(root, dims):
    """``models/bird_AttnGAN2.pth``, ``DAMSMencoders/bird/text_encoder200.pth`` and
    ``data/birds/captions.pickle`` as the original wrote them; returns our G, text encoder
    and vocabulary with the same weights."""
    torch.manual_seed(1)
    vocab = Vocabulary(["<end>", "a", "bird", "black", "crown", "has", "red", "the", "wings"])
    net_g = build_generator(_cfg(dims)).eval()
    with torch.no_grad():  # non-trivial BN statistics
        for name, t in net_g.state_dict().items():
            if name.endswith("running_mean"):
                t.normal_(0, 0.1)
            elif name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
    text = RNN_ENCODER(len(vocab), ninput=300, nhidden=dims["nef"]).eval()
    manifest = generator_manifest(**dims)
    bare = {k: v for k, v in net_g.state_dict().items() if k in manifest}  # no BN counters
    for folder in ("models", "DAMSMencoders/bird", "data/birds"):
        (root / folder).mkdir(parents=True)
    torch.save(bare, root / "models/bird_AttnGAN2.pth", _use_new_zipfile_serialization=False)
    torch.save(text.state_dict(), root / "DAMSMencoders/bird/text_encoder200.pth")
    save_captions_pickle(root / "data/birds/captions.pickle", [[1, 2]], [[2, 1]], vocab)
    return net_g, text, vocab


def test_released_files_load_and_generate_what_the_same_weights_do(tmp_path):
    net_g, text, vocab = _write_original_layout(tmp_path, TINY)
    gen = load_generator(tmp_path / "models/bird_AttnGAN2.pth", torch.device("cpu"))
    assert gen.vocab.words == vocab.words and gen.cfg["GAN"]["GF_DIM"] == 4
    ids = torch.tensor([[7, 2, 5, 6, 8], [1, 3, 2, 0, 0]])
    lens = torch.tensor([5, 3])
    noise = torch.randn(2, TINY["nz"] + TINY["ncf"], generator=torch.Generator().manual_seed(0))
    images, attention = generate(gen, ids, lens, noise)
    with torch.no_grad():
        words, sent = text(ids, lens)
        mask = (ids == 0)[:, : words.size(2)]
        expected, maps, _, _ = net_g(noise[:, :8], sent, words, mask, noise[:, 8:])
    assert [tuple(x.shape[-2:]) for x in images] == [(64, 64), (128, 128), (256, 256)]
    assert all(torch.equal(a, b) for a, b in zip(images, expected))
    assert all(torch.equal(a, b) for a, b in zip(attention, maps))


def test_sample_cli_takes_the_released_generator(tmp_path):
    _write_original_layout(tmp_path, TINY)
    net_g, out = str(tmp_path / "models/bird_AttnGAN2.pth"), str(tmp_path / "out")
    args = ["--netG", net_g, "--caption", "the bird has a red crown", "--save_dir", out,
            "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(sample, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "00000.png").is_file()
    (tmp_path / "data/birds/captions.pickle").unlink()
    result = CliRunner().invoke(sample, args)
    assert result.exit_code == 2 and "captions.pickle was found neither" in result.output
