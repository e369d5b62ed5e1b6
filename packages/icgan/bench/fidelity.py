"""Reproduce IcGAN's MNIST fidelity numbers with the held-out digit classifier.

Trains the whole pipeline (cGAN -> generated dataset -> E_z -> E_y) on the 4,000 embedded
training digits, then measures on the 1,000 held-out digits (never seen by any network):

* conditional_acc  G(z, y) classified as y                     (target >= 0.90)
* ey_acc           argmax E_y(x) == label(x)                    (target >= 0.95)
* swap_acc         G(E_z(x), y') classified as y' != label(x)   (target >= 0.80)
* reconstruct_acc  G(E_z(x), E_y(x)) classified as label(x)     (target >= 0.90)

\b
    uv run python packages/icgan/bench/fidelity.py                       # CPU, 32 px
    uv run python packages/icgan/bench/fidelity.py --fineSize 64 --ngf 64 --ndf 64 --device cuda

Prints one JSON object (numbers, per-stage minutes, configuration) and writes it to
``<outdir>/fidelity.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import click
import torch

from ganlab_common.metrics import load_digit_classifier
from ganlab_common.runs import resolve_device
from icgan.evaluate import mnist_fidelity
from icgan.test import heldout_images
from icgan.train import TrainConfig, load_trained, train

TARGETS = {"conditional_acc": 0.90, "ey_acc": 0.95, "swap_acc": 0.80, "reconstruct_acc": 0.90}


@click.command()
@click.option("--outdir", type=click.Path(file_okay=False), default="runs/bench-icgan",
              show_default=True)
@click.option("--fineSize", "fine_size", type=int, default=32, show_default=True)
@click.option("--ngf", type=int, default=32, show_default=True)
@click.option("--ndf", type=int, default=32, show_default=True)
@click.option("--nf", type=int, default=32, show_default=True)
@click.option("--nConvLayers", "n_conv_layers", type=int, default=3, show_default=True)
@click.option("--niter", type=int, default=25, show_default=True)
@click.option("--nEpochs", "n_epochs", type=int, default=5, show_default=True)
@click.option("--nEpochsY", "n_epochs_y", type=int, default=20, show_default=True)
@click.option("--samples", type=int, default=10000, show_default=True)
@click.option("--split", type=float, default=0.66, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True,
              help="torch CPU threads (1 is fastest on a busy 2-core machine).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu",
              show_default=True)
def main(outdir: str, threads: int, **options) -> None:
    """Train IcGAN on MNIST and measure the paper's four fidelity numbers."""
    torch.set_num_threads(threads)
    cfg = TrainConfig(dataset="mnist", outdir=outdir, **options)
    minutes = {}
    run_dir = None
    for stage in ("gan", "encoder-z", "encoder-y"):
        start = time.time()
        run_dir = train(dataclasses.replace(cfg, stage=stage, run_dir=run_dir and str(run_dir)))
        minutes[stage] = round((time.time() - start) / 60, 2)
    device = resolve_device(cfg.device)
    trained = load_trained(run_dir, device)
    x, y = heldout_images(trained, 10**9)
    start = time.time()
    classifier = load_digit_classifier(device=device)
    scores = mnist_fidelity(trained, x, y.argmax(dim=1), classifier, per_class=100, seed=0)
    minutes["evaluate"] = round((time.time() - start) / 60, 2)
    result = {
        "scores": {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()},
        "targets": TARGETS,
        "met": {k: scores[k] >= v for k, v in TARGETS.items()},
        "classifier_heldout_acc": round(classifier.heldout_accuracy, 4),
        "minutes": minutes | {"total": round(sum(minutes.values()), 2)},
        "machine": {"device": str(device), "threads": threads, "cpus": os.cpu_count(),
                    "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__},
        "config": dataclasses.asdict(cfg),
        "run_dir": str(run_dir),
    }
    text = json.dumps(result, indent=2)
    Path(run_dir, "fidelity.json").write_text(text + "\n")
    click.echo(text)


if __name__ == "__main__":
    main()
