"""The judge's controls: what it accepts of uniform noise and of an untrained generator.

    uv run python packages/lrgan/bench/judge_controls.py

Prints the share of 1,000 uniform-noise images judged a digit, then, for an untrained G at
the 32 px recipe's shapes (``--init torch2017`` and ``pytorch``), the layer metrics of 500
samples and the share of composites judged a digit. A judge worth its name gives 0 for all.
"""

from __future__ import annotations

import json

import torch

from lrgan.evaluate import generate, layer_metrics
from lrgan.judge import NOT_A_DIGIT, load_judge
from lrgan.train import TrainConfig, build_models


def main() -> None:
    judge = load_judge()
    noise = torch.rand(1000, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    print(json.dumps({"noise_accepted": (judge.judge(noise) != NOT_A_DIGIT).float().mean().item()}))
    for init in ("torch2017", "pytorch"):
        cfg = TrainConfig(dataset="mnist-two", ntimestep=3, imageSize=32, ngf=32, ndf=32,
                          maxobjscale=2.0, device="cpu", init=init)
        torch.manual_seed(0)
        netG, _ = build_models(cfg, torch.device("cpu"))
        layers = generate(netG, 500, batch=64, seed=1)
        result = layer_metrics(layers, judge)
        accepted = judge.judge(layers.image) != NOT_A_DIGIT
        result["composite_accepted"] = accepted.float().mean().item()
        print(json.dumps({"init": init, **result}))


if __name__ == "__main__":
    main()
