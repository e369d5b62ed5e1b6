"""FID of facegan samples against the real faces they were trained on.

For the latest facegan-train run (and the latest matching facegan-c2f run) in ``--save``:

* ``base``: ``--n`` samples at the training scale vs the real un-augmented faces at that scale;
* ``c2f``: the same samples refined to the fine size (best of ``--tries`` residuals by D);
* ``up``: the same samples, plain bilinear upsampling to the fine size;
* reference rows: real faces downsampled to the coarse size and brought back by bilinear
  upsampling / by the c2f model (what perfect coarse samples would score), and ``--n``
  augmented training images vs the real faces (a "real vs real" floor).

With the embedded data the reference set is only 100 faces, so every FID here is strongly
biased upwards (rank-deficient covariances): compare rows with each other, not with papers.

    uv run python packages/facegan/bench/eval_fid.py --save runs/facegan --n 300
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import torch

from facegan.c2f import coarse_of, refine, upsample
from facegan.data import load_faces, real_faces, source_from_dict
from facegan.models import sample_noise
from facegan.sample import SampleConfig, load_base, load_c2f
from facegan.train import generate
from ganlab_common.metrics import (
    feature_stats,
    frechet_distance,
    inception_features,
    load_inception,
)


def _to_fid_range(images: torch.Tensor) -> torch.Tensor:
    return images.clamp(0, 1) * 2 - 1


@click.command()
@click.option("--save", default="runs/facegan", show_default=True)
@click.option("--G_base", "G_base", default="")
@click.option("--G_c2f32", "G_c2f32", default="")
@click.option("--n", default=300, show_default=True, type=click.IntRange(min=2))
@click.option("--tries", default=10, show_default=True)
@click.option("--seed", default=1, show_default=True)
@click.option("--threads", default=None, type=int)
@click.option("--out", default="", help="Append the JSON result to this file.")
def main(save: str, G_base: str, G_c2f32: str, n: int, tries: int, seed: int,  # noqa: N803
         threads: int | None, out: str) -> None:
    if threads:
        torch.set_num_threads(threads)
    t0 = time.time()
    cfg = SampleConfig(save_base=save, save_c2f32=save, G_base=G_base, G_c2f32=G_c2f32)
    device = torch.device("cpu")
    base = load_base(cfg, device)
    c2f = load_c2f(cfg, base, device)
    source = source_from_dict(base.meta["source"])
    scale, channels = base.meta["scale"], base.meta["channels"]
    gen = torch.Generator().manual_seed(seed)
    samples = generate(base.G, sample_noise(n, base.meta["noiseDim"], generator=gen).to(device))
    inception = load_inception(device)

    def stats(images: torch.Tensor):
        return feature_stats(inception_features(_to_fid_range(images), inception))

    real_coarse = stats(real_faces(source, scale, channels))
    result = {"G_base": str(base.path), "n_samples": n, "reference": "real un-augmented faces",
              "n_reference": len(real_faces(source, scale, channels)), "scale": scale}
    result[f"fid_base_{scale}px"] = frechet_distance(*stats(samples), *real_coarse)
    train_set = load_faces(source, scale, channels)
    picks = torch.randperm(len(train_set), generator=gen)[:n].tolist()
    augmented = torch.stack([train_set[i] for i in picks])
    result[f"fid_real_augmented_{scale}px"] = frechet_distance(*stats(augmented), *real_coarse)
    if c2f is not None:
        fine = c2f.meta["fineSize"]
        reals_fine = real_faces(source, fine, channels)
        real_fine = stats(reals_fine)
        result["G_c2f"] = str(c2f.path)
        refined = refine(c2f.G, c2f.D, samples, fine, tries, gen)
        result[f"fid_c2f_{fine}px"] = frechet_distance(*stats(refined), *real_fine)
        result[f"fid_up_{fine}px"] = frechet_distance(*stats(upsample(samples, fine)), *real_fine)
        small = torch.nn.functional.interpolate(reals_fine, size=(scale, scale), mode="bilinear",
                                                align_corners=False, antialias=True)
        result[f"fid_real_{scale}_up_{fine}px"] = frechet_distance(
            *stats(coarse_of(reals_fine, scale)), *real_fine)
        result[f"fid_real_{scale}_c2f_{fine}px"] = frechet_distance(
            *stats(refine(c2f.G, c2f.D, small, fine, tries, gen)), *real_fine)
    result["seconds"] = round(time.time() - t0, 1)
    text = json.dumps(result)
    print(text)
    if out:
        with Path(out).open("a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
