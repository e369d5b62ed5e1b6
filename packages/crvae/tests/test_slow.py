"""Short real-data runs (minutes): ``uv run pytest packages/crvae/tests -m slow``."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from crvae.config import Config
from crvae.sample import load_generator
from crvae.train import train
from ganlab_common.metrics import classify_digits, load_digit_classifier


@pytest.mark.slow
def test_conv_vae_learns_mnist(tmp_path):
    run = train(Config(dataset="mnist", latentType="conv", baseChannels=8, nEpochs=8, LR=1e-3,
                       alpha=1e-3, nTest=200, nSampleFinal=20, save=str(tmp_path),
                       device="cpu"))
    rows = [json.loads(r) for r in (run / "stats.jsonl").read_text().splitlines()]
    final = next(r["final_nll"] for r in rows if "final_nll" in r)
    assert final < 200  # nats; an untrained model is at ~540, the mean image at ~210
    # measured 2026-11-30 with the defaults (-init original -nVal 500): 138.7 (4.2 min)


@pytest.mark.slow
def test_acvae_draws_the_asked_digit(tmp_path):
    run = train(Config(dataset="mnist", latentType="acvaegan", baseChannels=8, nEpochs=10,
                       LR=1e-3, alpha=1e-3, beta=0.0, kappa=0.0, rho=0.05, rho_entreg=0.05,
                       nTest=100, nSampleFinal=2, save=str(tmp_path), device="cpu"))
    model, _ = load_generator(run / "best.pt", "cpu")
    cls = torch.arange(200) % 10
    y = F.one_hot(cls, 10).float() * 2 - 1
    with torch.no_grad():
        images = model.to_image(model.decode(model.sample_prior(200, y), y)[0])
    probs = classify_digits(load_digit_classifier("cpu"), images)
    # Measured 2026-11-30 (~6 min, one thread): 58.5% with the defaults (-init original, best.pt
    # picked on -nVal 500 held-out digits); 86.0% with -init pytorch -nVal 0 (the code before).
    # Ten epochs at -baseChannels 8 are far from converged: this checks conditioning works at
    # all (chance is 10%), not the >= 90% of the longer README budget.
    assert (probs.argmax(1) == cls).float().mean() >= 0.5
