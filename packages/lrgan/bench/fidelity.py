"""Measure trained LR-GAN runs: training speed from stats.jsonl, the judge's layer metrics
and FID of the composites against fresh real canvases (the same figures as
``lrgan-train --evaluate``), one JSON line per checkpoint.

    uv run python packages/lrgan/bench/fidelity.py RUN_DIR [RUN_DIR ...] --fid_samples 1000

Each RUN_DIR's newest checkpoint is measured (or give checkpoint files). The DCGAN
baseline (``--ntimestep 1``) gets FID only: it has no layers to judge.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click
import pandas as pd

from ganlab_common.checkpoint import load_checkpoint
from ganlab_common.runs import resolve_device
from lrgan.judge import read_judge
from lrgan.train import TrainConfig, build_models, evaluation_metrics


def _checkpoint(path: Path) -> Path:
    if path.is_file():
        return path
    files = sorted((path / "models").glob("*.pt"))
    if not files:
        raise click.ClickException(f"{path}: no checkpoint under models/")
    return files[-1]


def _speed(run_dir: Path) -> dict[str, float]:
    if not (run_dir / "stats.jsonl").is_file():  # a checkpoint copied out of its run
        return {}
    stats = pd.read_json(run_dir / "stats.jsonl", lines=True)
    steps = stats["step"].to_numpy()
    seconds = stats["time"].to_numpy()
    # per-iteration wall time from consecutive rows (a resume restarts the clock)
    gaps = [t1 - t0 for (s0, t0), (s1, t1) in zip(zip(steps, seconds), zip(steps[1:], seconds[1:]))
            if s1 == s0 + 1 and t1 >= t0]
    return {"iterations": int(steps.max()),
            "s_per_it_median": float(pd.Series(gaps).median()) if gaps else float("nan")}


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--fid_samples", type=int, default=1000, show_default=True,
              help="Samples (and fresh real canvases) for FID; 0: none.")
@click.option("--judge_samples", type=int, default=1000, show_default=True)
@click.option("--sample_mode", type=click.Choice(["train", "eval"]), default="train",
              show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--judge_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Judge the layers with this judge (bench/judge_candidate.py --save) "
                   "instead of the cached one.")
def main(paths, fid_samples, judge_samples, sample_mode, device, seed, judge_file):
    dev = resolve_device(device)
    judge = read_judge(judge_file) if judge_file else None
    for path in paths:
        ckpt = _checkpoint(path)
        state = load_checkpoint(ckpt, flag="checkpoint")
        cfg = replace(TrainConfig(**state["config"]), device=str(dev), fid_samples=fid_samples,
                      judge_samples=judge_samples, sample_mode=sample_mode)
        netG, _ = build_models(cfg, dev)
        netG.load_state_dict(state["netG"])
        result = {"checkpoint": str(ckpt), "step": state["step"], "ntimestep": cfg.ntimestep,
                  "legacy_grad": cfg.legacy_grad, **_speed(ckpt.parent.parent),
                  **evaluation_metrics(netG.to(dev), cfg, seed, str(dev), judge)}
        click.echo(json.dumps(result))


if __name__ == "__main__":
    main()
