"""Seconds per lrgan-train iteration on the recipe's shapes, by variant: torch threads,
channels_last, and the data path (drawing a batch of fresh canvases vs a ready tensor).

    OMP_NUM_THREADS=2 uv run python packages/lrgan/bench/train_speed.py --iters 20

Prints one JSON line per variant (median seconds of the timed iterations after 3
warm-up iterations). The step is lrgan.train's own ``_train_step``.
"""

from __future__ import annotations

import json
import statistics
import time

import click
import torch

from ganlab_common.distributed import setup_distributed
from lrgan.data import load_dataset
from lrgan.train import TrainConfig, _train_step, build_models


def _time_variant(cfg: TrainConfig, threads: int, channels_last: bool, data: str,
                  iters: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    ctx = setup_distributed("cpu")
    netG, netD = build_models(cfg, ctx.device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    netG, netD = netG.to(memory_format=fmt), netD.to(memory_format=fmt)
    optG = torch.optim.Adam(netG.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    optD = torch.optim.Adam(netD.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    size = cfg.batchSize * (iters + 3)
    canvases = load_dataset(cfg.dataset, None, cfg.imageSize, epoch_size=size)
    ready = canvases.batch(cfg.batchSize)[0]
    times = []
    for i in range(iters + 3):
        start = time.perf_counter()
        if data == "canvases":
            items = [canvases[i * cfg.batchSize + j][0] for j in range(cfg.batchSize)]
            real = torch.stack(items)
        else:
            real = ready
        _train_step(netG, netD, optG, optD, real.contiguous(memory_format=fmt), ctx, False)
        times.append(time.perf_counter() - start)
    return {"ntimestep": cfg.ntimestep, "imageSize": cfg.imageSize, "ngf": cfg.ngf,
            "threads": threads, "channels_last": channels_last, "data": data,
            "s_per_it": round(statistics.median(times[3:]), 3)}


@click.command()
@click.option("--iters", type=int, default=20, show_default=True)
@click.option("--imageSize", "image_size", type=int, default=32, show_default=True)
@click.option("--ngf", type=int, default=32, show_default=True)
@click.option("--ntimestep", type=int, default=3, show_default=True)
def main(iters: int, image_size: int, ngf: int, ntimestep: int) -> None:
    cfg = TrainConfig(dataset="mnist-two", ntimestep=ntimestep, imageSize=image_size, ngf=ngf,
                      ndf=ngf, maxobjscale=2.0, device="cpu")
    variants = [(1, False, "canvases"), (2, False, "canvases"), (2, True, "canvases"),
                (2, False, "tensor")]
    for threads, channels_last, data in variants:
        click.echo(json.dumps(_time_variant(cfg, threads, channels_last, data, iters)))


if __name__ == "__main__":
    main()
