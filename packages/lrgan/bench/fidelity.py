"""Train LR-GAN on MNIST-TWO and measure it: training it/s, FID of the composites
against real MNIST-TWO images, and how often each foreground layer is read as a digit.

    uv run python packages/lrgan/bench/fidelity.py --niter 3 --outf runs/bench-lrgan

Prints one JSON object and writes it to <run>/fidelity.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import click
import torch

from ganlab_common import metrics
from ganlab_common.checkpoint import load_checkpoint
from ganlab_common.runs import resolve_device
from lrgan.data import load_dataset
from lrgan.evaluate import digit_rates, generate
from lrgan.train import TrainConfig, build_models, train


@click.command()
@click.option("--niter", type=int, default=3, show_default=True)
@click.option("--imageSize", "image_size", type=int, default=64, show_default=True)
@click.option("--batchSize", "batch_size", type=int, default=64, show_default=True)
@click.option("--ngf", type=int, default=64, show_default=True)
@click.option("--ndf", type=int, default=64, show_default=True)
@click.option("--samples", type=int, default=1000, show_default=True,
              help="Samples for the digit rates.")
@click.option("--fid_samples", type=int, default=300, show_default=True,
              help="Images per side for FID (Inception is ~8 images/s on a 2-core CPU).")
@click.option("--outf", default="runs/bench-lrgan", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
def main(niter, image_size, batch_size, ngf, ndf, samples, fid_samples, outf, device, seed):
    cfg = TrainConfig(dataset="mnist-two", ntimestep=3, maxobjscale=2.0, imageSize=image_size,
                      batchSize=batch_size, ngf=ngf, ndf=ndf, niter=niter, outf=outf,
                      manualSeed=seed, device=device, keep=1)
    t0 = time.time()
    run = train(cfg)
    seconds = time.time() - t0
    steps = int(run.stats()["step"].max())
    dev = resolve_device(device)

    untrained, _ = build_models(cfg)
    trained, _ = build_models(cfg)
    state = load_checkpoint(next((run.dir / cfg.outmodelf).iterdir()))
    trained.load_state_dict(state["netG"])
    classifier = metrics.load_digit_classifier(device=str(dev))
    result = {"device": str(dev), "iterations": steps, "train_seconds": round(seconds, 1),
              "it_per_s": round(steps / seconds, 3), "config": vars(replace(cfg))}
    for name, net in [("untrained", untrained), ("trained", trained)]:
        layers = generate(net.to(dev), samples, seed=seed)
        result[f"digit_rates_{name}"] = digit_rates(layers, classifier)
        if name == "trained":
            real = load_dataset("mnist-two", None, image_size, seed=7, count=fid_samples)
            real_images = torch.stack([real[i][0] for i in range(fid_samples)])
            result["fid_composites_vs_real"] = metrics.fid(
                layers.image[:fid_samples], real_images, device=str(dev))
    text = json.dumps(result, indent=2)
    (run.dir / "fidelity.json").write_text(text + "\n")
    click.echo(text)


if __name__ == "__main__":
    main()
