"""Training speed of facegan's full-size networks: iterations/s of one train step.

One iteration = what facegan-train / facegan-c2f do per batch at the default --batchSize 32:
D on 16 real + 16 fake images, then G on 32 noise vectors (Adam, default clamps/penalties).

    uv run python packages/facegan/bench/bench_train.py --iters 10 --threads 2
    uv run python packages/facegan/bench/bench_train.py --device cuda --iters 50

Prints one JSON line per configuration (and the machine's load average, since the shared CI
machine's numbers depend on what else runs).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque

import click
import torch

from facegan.c2f import C2FConfig, c2f_step
from facegan.models import C2FDiscriminator, C2FGenerator
from facegan.train import TrainConfig, build_models, train_step
from facegan.training import make_optimizer
from ganlab_common.distributed import setup_distributed


def _time(step, iters: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return iters / (time.perf_counter() - start)


def bench_train(scale: int, channels: int, iters: int, warmup: int, device_name: str) -> dict:
    ctx = setup_distributed(device_name)
    torch.manual_seed(0)
    G, D = build_models(channels, scale, 100)
    G, D = G.to(ctx.device), D.to(ctx.device)
    cfg = TrainConfig(scale=scale)
    optG = make_optimizer("adam", G.parameters(), 0.02, 0)
    optD = make_optimizer("adam", D.parameters(), 0.02, 0)
    real = torch.rand(cfg.batchSize // 2, channels, scale, scale, device=ctx.device)
    accs: deque = deque(maxlen=31)
    rate = _time(lambda: train_step(G, D, optG, optD, real, cfg, accs, ctx), iters, warmup,
                 ctx.device)
    return {"what": f"facegan-train --scale {scale}", "channels": channels, "it_per_s": rate}


def bench_c2f(channels: int, iters: int, warmup: int, device_name: str) -> dict:
    ctx = setup_distributed(device_name)
    torch.manual_seed(0)
    G, D = C2FGenerator(channels).to(ctx.device), C2FDiscriminator(channels, 32).to(ctx.device)
    cfg = C2FConfig()
    optG = make_optimizer("adam", G.parameters(), 0.02, 0)
    optD = make_optimizer("adam", D.parameters(), 0.02, 0)
    fine = torch.rand(cfg.batchSize // 2, channels, 32, 32, device=ctx.device)
    rate = _time(lambda: c2f_step(G, D, optG, optD, fine, cfg, ctx), iters, warmup, ctx.device)
    return {"what": "facegan-c2f 16->32", "channels": channels, "it_per_s": rate}


@click.command()
@click.option("--iters", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--warmup", default=2, show_default=True, type=click.IntRange(min=0))
@click.option("--threads", default=None, type=click.IntRange(min=1))
@click.option("--device", default="cpu", show_default=True)
@click.option("--channels", default=1, show_default=True, type=click.Choice(["1", "3"]))
@click.option("--only", default="16,32,c2f", show_default=True)
def main(iters: int, warmup: int, threads: int | None, device: str, channels: str,
         only: str) -> None:
    if threads:
        torch.set_num_threads(threads)
    c = int(channels)
    extra = {"device": device, "threads": torch.get_num_threads(), "iters": iters,
             "load_avg_1min": round(os.getloadavg()[0], 2)}
    for item in only.split(","):
        if item == "c2f":
            result = bench_c2f(c, iters, warmup, device)
        else:
            result = bench_train(int(item), c, iters, warmup, device)
        result["it_per_s"] = round(result["it_per_s"], 3)
        print(json.dumps({**result, **extra, "load_avg_after": round(os.getloadavg()[0], 2)}),
              flush=True)


if __name__ == "__main__":
    main()
