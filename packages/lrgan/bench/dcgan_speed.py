"""Seconds per training iteration: lrgan-train's step against a plain DCGAN step, and with
``torch.compile`` of G and D.

The issue's bar: LR-GAN with ``--ntimestep 1`` *is* DCGAN, so its step must be at least as
fast as pytorch/examples' ``dcgan/main.py`` at the same settings. That script's step is
written out here from the DCGAN paper's layout (Radford et al. 2016, the network the
example implements): transposed convs 4x4 stride 2 with BatchNorm + ReLU in G and a tanh
head, strided convs with BatchNorm + LeakyReLU(0.2) in D and a sigmoid head, ``BCELoss``,
Adam(2e-4, 0.5), and the example's order: D on a real batch (backward), D on the detached
fake batch (backward), D step, then G's loss through D (backward), G step.

    OMP_NUM_THREADS=2 uv run python packages/lrgan/bench/dcgan_speed.py --imageSize 64 --ngf 64

One JSON line per variant: the median seconds of ``--iters`` timed iterations after
``--warmup`` untimed ones (the compiled variants compile during the warm-up; its time is
reported as ``compile_s``).
"""

from __future__ import annotations

import json
import statistics
import time

import click
import torch
from torch import nn

from ganlab_common.distributed import setup_distributed
from lrgan.train import TrainConfig, _train_step, build_models, compile_forward


def _dcgan_g(nz: int, ngf: int, nc: int, size: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    mult = size // 8  # 64 px: ngf*8 at 4x4, as the example
    layers += [nn.ConvTranspose2d(nz, ngf * mult, 4, 1, 0, bias=False),
               nn.BatchNorm2d(ngf * mult), nn.ReLU(True)]
    while mult > 1:
        layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 4, 2, 1, bias=False),
                   nn.BatchNorm2d(ngf * mult // 2), nn.ReLU(True)]
        mult //= 2
    layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def _dcgan_d(ndf: int, nc: int, size: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
    mult, side = 1, size // 2
    while side > 4:
        layers += [nn.Conv2d(ndf * mult, ndf * mult * 2, 4, 2, 1, bias=False),
                   nn.BatchNorm2d(ndf * mult * 2), nn.LeakyReLU(0.2, True)]
        mult, side = mult * 2, side // 2
    layers += [nn.Conv2d(ndf * mult, 1, 4, 1, 0, bias=False), nn.Sigmoid(), nn.Flatten(0)]
    return nn.Sequential(*layers)


def _examples_step(netG, netD, optG, optD, real, nz) -> None:
    criterion = nn.BCELoss()
    b = real.shape[0]
    ones, zeros = torch.ones(b), torch.zeros(b)
    optD.zero_grad()
    criterion(netD(real), ones).backward()
    fake = netG(torch.randn(b, nz, 1, 1))
    criterion(netD(fake.detach()), zeros).backward()
    optD.step()
    optG.zero_grad()
    criterion(netD(fake), ones).backward()
    optG.step()


def _time(step, iters: int, warmup: int) -> tuple[float, float]:
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    warm = time.perf_counter() - start
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), warm


def _variant(kind: str, cfg: TrainConfig, iters: int, warmup: int) -> dict:
    torch.manual_seed(0)
    real = torch.rand(cfg.batchSize, 1, cfg.imageSize, cfg.imageSize) * 2 - 1
    if kind == "examples_dcgan":
        netG, netD = _dcgan_g(cfg.nz, cfg.ngf, 1, cfg.imageSize), _dcgan_d(cfg.ndf, 1,
                                                                            cfg.imageSize)
    else:
        netG, netD = build_models(cfg, torch.device("cpu"))
    optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    if kind == "examples_dcgan":
        step = lambda: _examples_step(netG, netD, optG, optD, real, cfg.nz)  # noqa: E731
    else:
        ctx = setup_distributed("cpu")
        if kind.endswith("compile"):
            compile_forward(netG, netD)  # what lrgan-train --compile does
        step = lambda: _train_step(netG, netD, optG, optD, real, ctx, False)  # noqa: E731
    median, warm = _time(step, iters, warmup)
    return {"variant": kind, "ntimestep": cfg.ntimestep, "imageSize": cfg.imageSize,
            "ngf": cfg.ngf, "batch": cfg.batchSize, "threads": torch.get_num_threads(),
            "s_per_it": round(median, 4), "compile_s": round(warm, 1)}


@click.command()
@click.option("--iters", type=int, default=20, show_default=True)
@click.option("--warmup", type=int, default=3, show_default=True)
@click.option("--imageSize", "image_size", type=int, default=64, show_default=True)
@click.option("--ngf", type=int, default=64, show_default=True)
@click.option("--ntimestep", type=int, default=1, show_default=True)
@click.option("--variants", default="examples_dcgan,lrgan,lrgan_compile", show_default=True,
              help="Comma-separated: examples_dcgan, lrgan, lrgan_compile.")
def main(iters: int, warmup: int, image_size: int, ngf: int, ntimestep: int,
         variants: str) -> None:
    cfg = TrainConfig(dataset="mnist-two", ntimestep=ntimestep, imageSize=image_size, ngf=ngf,
                      ndf=ngf, maxobjscale=2.0, device="cpu")
    for kind in variants.split(","):
        if kind == "examples_dcgan" and ntimestep != 1:
            continue  # the example has no layers
        click.echo(json.dumps(_variant(kind, cfg, iters, warmup)), nl=True)


if __name__ == "__main__":
    main()
