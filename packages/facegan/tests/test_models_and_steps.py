"""Shapes, the original init quirk, D skipping, gradient surgery, denoiser/autoencoder."""

from __future__ import annotations

from collections import deque

import pytest
import torch

from facegan import cli
from facegan.c2f import coarse_of, refine
from facegan.models import (
    C2FDiscriminator,
    C2FGenerator,
    Denoiser,
    Discriminator16,
    Generator,
    MLPAutoencoder,
    build_discriminator,
    init_eyescream,
    sample_noise,
)
from facegan.train import TrainConfig, train_step
from facegan.training import make_optimizer, regularise_and_clamp
from ganlab_common.distributed import setup_distributed


@pytest.mark.parametrize("scale", [16, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_and_discriminator_shapes(scale, channels):
    G = Generator(channels, scale, 100, width=0.25)
    D = build_discriminator(channels, scale, width=0.25)
    x = G(sample_noise(5, 100))
    assert x.shape == (5, channels, scale, scale)
    assert 0 <= x.min() and x.max() <= 1
    assert D(x).shape == (5,)


def test_full_size_parameter_counts_match_models_lua():
    # create_G_decoder_upsampling16 and create_D16_d at 1 channel
    assert sum(p.numel() for p in Generator(1, 16).parameters()) == 1_847_556
    assert sum(p.numel() for p in Discriminator16(1, 16).parameters()) == 9_704_712


def test_c2f_shapes_and_refine():
    G, D = C2FGenerator(3, width=0.25), C2FDiscriminator(3, 32, width=0.25)
    fine = torch.rand(4, 3, 32, 32)
    coarse = coarse_of(fine, 16)
    assert coarse.shape == fine.shape
    residual = G(torch.rand(4, 1, 32, 32), coarse)
    assert residual.shape == (4, 3, 32, 32) and D(residual, coarse).shape == (4,)
    refined = refine(G, D, torch.rand(6, 3, 16, 16), 32, tries=3)
    assert refined.shape == (6, 3, 32, 32) and 0 <= refined.min() and refined.max() <= 1


def test_eyescream_init_touches_top_level_modules_only():
    torch.manual_seed(0)
    D = Discriminator16(1, 16, width=0.25)
    conv_before = D.conv[0].weight.clone()
    init_eyescream(D)
    assert torch.equal(D.conv[0].weight, conv_before)  # nested in a branch: untouched
    assert D.head.weight.std() < 0.01
    G = Generator(1, 16, 100, width=0.25)
    init_eyescream(G)
    assert G[5].weight.std() < 0.01  # BatchNorm gain ~ N(0, 0.005): the original's quirk
    assert G[2].weight.abs().max() < 0.05  # PReLU slope too


def _setup(d_max_acc: float, d_clamp: float = 1.0, g_clamp: float = 5.0, sgd: bool = False):
    torch.manual_seed(0)
    G, D = Generator(1, 16, 100, width=0.125), build_discriminator(1, 16, width=0.125)
    method = "sgd" if sgd else "adam"
    optG = make_optimizer(method, G.parameters(), 1.0, 0.0)
    optD = make_optimizer(method, D.parameters(), 1.0, 0.0)
    cfg = TrainConfig(scale=16, D_maxAcc=d_max_acc, D_clamp=d_clamp, G_clamp=g_clamp,
                      D_L2=0.0)
    return G, D, optG, optD, cfg, setup_distributed("cpu")


def _snapshot(model):
    return [p.detach().clone() for p in model.parameters()]


def _changed(model, before) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(model.parameters(), before))


def test_d_is_skipped_while_running_accuracy_reaches_max_acc():
    G, D, optG, optD, cfg, ctx = _setup(d_max_acc=0.9)
    accs = deque([1.0] * 30, maxlen=31)  # D has been right for 30 batches
    d0, g0 = _snapshot(D), _snapshot(G)
    stats = train_step(G, D, optG, optD, torch.rand(4, 1, 16, 16), cfg, accs, ctx)
    assert stats["D_trained"] == 0.0 and not _changed(D, d0)
    assert _changed(G, g0)  # G still trains
    assert len(accs) == 31  # the skipped batch's accuracy is still recorded


def test_d_trains_below_max_acc():
    G, D, optG, optD, cfg, ctx = _setup(d_max_acc=1.01)
    accs = deque([1.0] * 30, maxlen=31)
    d0 = _snapshot(D)
    stats = train_step(G, D, optG, optD, torch.rand(4, 1, 16, 16), cfg, accs, ctx)
    assert stats["D_trained"] == 1.0 and _changed(D, d0)


def test_gradients_are_clamped_elementwise_before_the_step():
    """With SGD at lr 1, no weight moves further than the clamp, and some move exactly that."""
    clamp = 1e-4
    G, D, optG, optD, cfg, ctx = _setup(d_max_acc=1.01, d_clamp=clamp, g_clamp=clamp, sgd=True)
    d0, g0 = _snapshot(D), _snapshot(G)
    train_step(G, D, optG, optD, torch.rand(8, 1, 16, 16), cfg, deque(maxlen=31), ctx)
    for before, model in ((d0, D), (g0, G)):
        moves = torch.cat([(p.detach() - b).abs().flatten()
                           for p, b in zip(model.parameters(), before)])
        assert moves.max() <= clamp * (1 + 1e-3)
        assert (moves > clamp * 0.999).sum() > 10


def test_regularise_and_clamp_adds_penalties_then_clamps():
    w = torch.nn.Parameter(torch.tensor([2.0, -3.0, 0.5]))
    w.grad = torch.zeros(3)
    regularise_and_clamp([w], l1=0.1, l2=0.2, clamp=0)
    assert torch.allclose(w.grad, torch.tensor([0.1 + 0.4, -0.1 - 0.6, 0.1 + 0.1]))
    w.grad = torch.tensor([10.0, -10.0, 0.01])
    regularise_and_clamp([w], l1=0.0, l2=0.0, clamp=1.0)
    assert torch.equal(w.grad, torch.tensor([1.0, -1.0, 0.01]))


def test_denoiser_and_autoencoder_shapes():
    model = Denoiser(1, 16)
    first, second = model(torch.rand(4, 1, 16, 16))
    assert first.shape == second.shape == (4, 1, 16, 16)
    for a, b in zip(model.decoder.parameters(), model.decoder2.parameters()):
        assert torch.equal(a, b)  # the second decoder starts as a clone
    assert MLPAutoencoder(3, 32)(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_denoiser_cli_then_train_with_denoise(run_cli, tmp_path, tiny_train):
    save = tmp_path / "runs"
    run_cli(cli.denoiser, ["--save", save, "--epochs", "1", "--N_train", "64",
                           "--batchSize", "32"])
    run = save / "00000-denoiser-1x16x16"
    assert (run / "denoiser_1x16x16.pt").is_file() and (run / "denoiser_e0001.png").is_file()
    state = torch.load(run / "checkpoints" / "ckpt-000002.pt", weights_only=False)
    assert {"opt1", "opt2"} <= set(state)  # two Adam states: the original shared one
    run_cli(cli.train, [*tiny_train, "--epochs", "1", "--save", save, "--denoise"])
    assert (save / "00001-train-16px-gray" / "fakes_denoised_e0001.png").is_file()


def test_autoencoder_cli(run_cli, tmp_path):
    save = tmp_path / "runs"
    run_cli(cli.autoencoder, ["--save", save, "--epochs", "2", "--N_train", "64",
                              "--batchSize", "32", "--scale", "16"])
    run = save / "00000-autoencoder-1x16x16"
    assert (run / "autoencoder_1x16x16.pt").is_file()
    assert (run / "autoencoder_e0002.png").is_file()
    assert len((run / "stats.jsonl").read_text().splitlines()) == 2
