"""``facegan-sample``: ``sample.lua`` -- grids of random samples, the best and worst 64 by D,
nearest training neighbours, and the coarse-to-fine chain (which the original had commented
out): each 16 px sample is upsampled and refined by the best of 10 residuals ranked by D.

By default G/D come from the latest ``facegan-train`` run in ``--save_base`` and the c2f pair
from the latest ``facegan-c2f`` run in ``--save_c2f32`` whose coarse size and colour mode
match.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ganlab_common.checkpoint import load_checkpoint, load_state_dicts
from ganlab_common.errors import UserError
from ganlab_common.runs import Run, resolve_device, seed_everything

from .c2f import refine, upsample
from .data import load_faces, real_faces, source_from_dict
from .models import SCALES, C2FDiscriminator, C2FGenerator, sample_noise
from .train import build_models, generate, rank_by_D
from .training import latest_checkpoint, latest_run, read_config, runs_with_prefix

__all__ = ["SampleConfig", "check_against_checkpoint", "nearest_neighbours", "prepare", "sample"]


@dataclass(frozen=True)
class SampleConfig:
    """Every flag of ``facegan-sample`` (``sample.lua``'s names, unless noted)."""

    save_base: str = "runs/facegan"
    save_c2f32: str = "runs/facegan"
    G_base: str = ""  # noqa: N815 -- "" = the latest facegan-train checkpoint
    D_base: str = ""  # noqa: N815 -- "" = the G_base file
    G_c2f32: str = ""  # noqa: N815 -- new ("" = the latest matching facegan-c2f checkpoint)
    D_c2f32: str = ""  # noqa: N815
    c2f: bool | None = None  # None: when a matching c2f run exists
    neighbours: bool = False
    writeto: str = ""  # "" = a new <save_base>/<NNNNN>-sample run folder
    seed: int = 1
    runs: int = 1
    batchSize: int = 16  # noqa: N815
    nsamples: int = 1024
    tries: int = 10
    device: str = "auto"
    # sample.lua's --scale/--grayscale/--noiseDim: the checkpoint fixes them; when given they
    # must match it (None: the checkpoint's).
    scale: int | None = None
    grayscale: bool | None = None
    noiseDim: int | None = None  # noqa: N815


@dataclass
class Loaded:
    G: torch.nn.Module
    D: torch.nn.Module
    meta: dict
    path: Path


def _meta(state: dict, path: Path, flag: str, keys: tuple[str, ...]) -> dict:
    missing = [k for k in keys if k not in state]
    if missing:
        raise UserError(f"{flag}: '{path}' is not a facegan checkpoint (no {', '.join(missing)})")
    return {k: state[k] for k in keys}


def check_against_checkpoint(cfg: SampleConfig, meta: dict, path: Path) -> None:
    """``--scale/--grayscale/--noiseDim``, when given, must be what the checkpoint holds."""
    if cfg.scale is not None and cfg.scale not in SCALES:
        raise UserError(f"--scale {cfg.scale}: the generators exist at "
                        f"{' and '.join(map(str, SCALES))} px (models.lua's sizes; the "
                        "original warned and rescaled); for larger faces refine them with "
                        "facegan-c2f")
    held = {"--scale": (cfg.scale, meta["scale"], f"{meta['scale']} px images"),
            "--noiseDim": (cfg.noiseDim, meta["noiseDim"], f"noise of size {meta['noiseDim']}"),
            "--grayscale": (cfg.grayscale, meta["channels"] == 1,
                            "grey images" if meta["channels"] == 1 else "colour images")}
    for flag, (given, actual, what) in held.items():
        if given is not None and given != actual:
            shown = flag if flag != "--grayscale" else ("--grayscale" if given else "--color")
            value = "" if flag == "--grayscale" else f" {given}"
            raise UserError(f"{shown}{value}: '{path}' holds a generator of {what}; drop the "
                            "flag or give the matching value")


def load_base(cfg: SampleConfig, device: torch.device) -> Loaded:
    """G and D of a facegan-train checkpoint (``--G_base``/``--D_base`` or the latest run)."""
    g_path = Path(cfg.G_base) if cfg.G_base else None
    if g_path is None:
        run = latest_run(cfg.save_base, "train-")
        if run is None:
            raise UserError(f"--save_base: no facegan-train run with a checkpoint in "
                            f"'{cfg.save_base}' (train one with 'facegan-train --scale 16')")
        g_path = latest_checkpoint(run)
    state = load_checkpoint(g_path, flag="--G_base")
    meta = _meta(state, g_path, "--G_base", ("channels", "scale", "noiseDim"))
    meta["source"] = state.get("source")
    meta["width"] = state.get("width", 1.0)
    check_against_checkpoint(cfg, meta, g_path)
    G, D = build_models(meta["channels"], meta["scale"], meta["noiseDim"], width=meta["width"])
    load_state_dicts({"G": G}, state, source=f"--G_base '{g_path}'")
    d_state = load_checkpoint(cfg.D_base, flag="--D_base") if cfg.D_base else state
    load_state_dicts({"D": D}, d_state, source=f"--D_base '{cfg.D_base or g_path}'")
    return Loaded(G.to(device).eval(), D.to(device).eval(), meta, g_path)


def load_c2f(cfg: SampleConfig, base: Loaded, device: torch.device) -> Loaded | None:
    """The c2f pair refining ``base``'s samples, or None (``--c2f`` makes "none" an error)."""
    if cfg.c2f is False:
        return None
    path = Path(cfg.G_c2f32) if cfg.G_c2f32 else None
    if path is None:
        for run in runs_with_prefix(cfg.save_c2f32, "c2f-"):
            saved = read_config(run)
            ckpt = latest_checkpoint(run)
            if (ckpt is not None and saved.get("coarseSize") == base.meta["scale"]
                    and saved.get("channels") == base.meta["channels"]):
                path = ckpt
                break
    if path is None:
        if cfg.c2f:
            raise UserError(f"--c2f: no facegan-c2f run for {base.meta['scale']} px "
                            f"{'grey' if base.meta['channels'] == 1 else 'colour'} images in "
                            f"'{cfg.save_c2f32}' (train one with facegan-c2f)")
        return None
    state = load_checkpoint(path, flag="--G_c2f32")
    meta = _meta(state, path, "--G_c2f32", ("channels", "coarseSize", "fineSize"))
    if meta["coarseSize"] != base.meta["scale"] or meta["channels"] != base.meta["channels"]:
        raise UserError(f"--G_c2f32: '{path}' refines {meta['coarseSize']} px x "
                        f"{meta['channels']} channel(s), but G makes {base.meta['scale']} px x "
                        f"{base.meta['channels']}")
    width = state.get("width", 1.0)
    G = C2FGenerator(meta["channels"], width)
    D = C2FDiscriminator(meta["channels"], meta["fineSize"], width)
    load_state_dicts({"G": G}, state, source=f"--G_c2f32 '{path}'")
    d_state = load_checkpoint(cfg.D_c2f32, flag="--D_c2f32") if cfg.D_c2f32 else state
    load_state_dicts({"D": D}, d_state, source=f"--D_c2f32 '{cfg.D_c2f32 or path}'")
    return Loaded(G.to(device).eval(), D.to(device).eval(), meta, path)


@torch.no_grad()
def nearest_neighbours(queries: torch.Tensor, dataset, batch: int = 512) -> torch.Tensor:
    """For each ``[Q, C, S, S]`` query, the L2-nearest image of ``dataset`` -> ``[Q, C, S, S]``."""
    best_dist = torch.full((queries.shape[0],), float("inf"))
    best = torch.zeros_like(queries)
    flat_q = queries.flatten(1).cpu()
    for start in tqdm(range(0, len(dataset), batch), desc="neighbours", leave=False):
        chunk = torch.stack([dataset[i] for i in range(start, min(start + batch, len(dataset)))])
        dist = torch.cdist(flat_q, chunk.flatten(1))  # [Q, B]
        value, index = dist.min(1)
        better = value < best_dist
        best_dist[better] = value[better]
        best[better] = chunk[index[better]].to(best.dtype)
    return best


def _pairs(images: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    return torch.stack([images, neighbours], dim=1).flatten(0, 1)


def prepare(cfg: SampleConfig, device: torch.device | None = None
            ) -> tuple[Loaded, Loaded | None]:
    """Check the flags and load the base and c2f models (what ``--dry_run`` checks)."""
    for flag, value in (("--runs", cfg.runs), ("--nsamples", cfg.nsamples),
                        ("--tries", cfg.tries), ("--batchSize", cfg.batchSize)):
        if value < 1:
            raise UserError(f"{flag}: expected >= 1, got {value}")
    device = device or resolve_device(cfg.device)
    base = load_base(cfg, device)
    return base, load_c2f(cfg, base, device)


def sample(cfg: SampleConfig) -> Path:
    """Write the sample grids; returns the folder."""
    device = resolve_device(cfg.device)
    base, c2f = prepare(cfg, device)
    source = source_from_dict(base.meta.get("source"))
    if cfg.neighbours and source is None:
        raise UserError(f"--neighbours: '{base.path}' does not record its training data")
    seed_everything(cfg.seed)
    config = {**asdict(cfg), "G_base_used": str(base.path),
              "G_c2f_used": str(c2f.path) if c2f else None}
    if cfg.writeto:
        out = Path(cfg.writeto)
        out.mkdir(parents=True, exist_ok=True)
        run = Run(out)
        run.write_config(config)
    else:
        run = Run.start(cfg.save_base, "sample", config)
    print(f"G: {base.path}" + (f"; c2f: {c2f.path}" if c2f else "; no c2f model (base only)"))
    gen = torch.Generator().manual_seed(cfg.seed)
    meta = base.meta
    for r in range(1, cfg.runs + 1):
        z = sample_noise(cfg.nsamples, meta["noiseDim"], generator=gen).to(device)
        images = generate(base.G, z, cfg.batchSize)
        _write_run(run, r, images, base, c2f, cfg, gen, source)
    run.close()
    return run.dir


def _write_run(run: Run, r: int, images: torch.Tensor, base: Loaded, c2f: Loaded | None,
               cfg: SampleConfig, gen: torch.Generator, source) -> None:
    tag = f"{r:04d}"
    grid = {"value_range": (0, 1)}
    shuffle = torch.randperm(len(images), generator=gen)
    run.save_grid(f"random256_{tag}_base.png", images[shuffle[:256]], nrow=16, **grid)
    run.save_grid(f"random1024_{tag}_base.png", images, nrow=32, **grid)
    order = rank_by_D(base.D, images, cfg.batchSize).argsort(descending=True)
    picks = {"best": images[order[:64]], "worst": images[order.flip(0)[:64]],
             "random": images[shuffle[:64]]}
    for name, batch in picks.items():
        run.save_grid(f"{name}_{tag}_base.png", batch, nrow=8, **grid)
    if cfg.neighbours:
        meta = base.meta
        train_set = load_faces(source, meta["scale"], meta["channels"])
        best16 = picks["best"][:16].cpu()
        near = nearest_neighbours(best16, train_set)
        run.save_grid(f"best_{tag}_neighbours_base.png", _pairs(best16, near), nrow=16, **grid)
    if c2f is None:
        return
    fine = c2f.meta["fineSize"]
    for name, batch in picks.items():
        refined = refine(c2f.G, c2f.D, batch, fine, cfg.tries, gen)
        run.save_grid(f"{name}_{tag}_c2f_{fine}.png", refined, nrow=8, **grid)
        run.save_grid(f"{name}_{tag}_up_{fine}.png", upsample(batch, fine).clamp(0, 1), nrow=8,
                      **grid)
    if source is not None:
        reals = real_faces(source, fine, base.meta["channels"], 64)
        run.save_grid(f"reals_{fine}.png", reals, nrow=8, **grid)
