"""``facegan-c2f``: the coarse-to-fine (Laplacian pyramid) upscaler of ``train_c2f.lua``.

A training example is a fine image ``x`` (``--fineSize``), its coarse version
``up(down(x))`` (down to ``--coarseSize`` and back, bilinear) and the residual
``x - up(down(x))``.  G maps [noise plane ; coarse] to a residual; D sees residual + coarse
(the refined image).  Fakes are conditioned on the same coarse images as the real half of the
batch.  Without ``--dataset`` it trains on the data (and colour mode) of the latest
``facegan-train`` run in ``--save``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ganlab_common.checkpoint import load_checkpoint, load_state_dicts, state_dicts
from ganlab_common.distributed import (
    DistContext,
    all_reduce_mean,
    unwrap,
    wrap_model,
)
from ganlab_common.errors import UserError
from ganlab_common.runs import Run, seed_everything

from .data import check_channels, load_faces, resolve_source, source_from_dict
from .models import C2FDiscriminator, C2FGenerator
from .training import (
    bce,
    check_optmethod,
    epoch_loader,
    frozen,
    iterations_per_epoch,
    latest_run,
    make_optimizer,
    read_config,
    regularise_and_clamp,
    run_in_context,
)

__all__ = ["C2FConfig", "coarse_of", "refine", "run_name", "train_c2f"]

SIZES = (8, 16, 32, 64)


@dataclass(frozen=True)
class C2FConfig:
    """Every flag of ``facegan-c2f`` (``train_c2f.lua``'s names and defaults, unless noted)."""

    save: str = "runs/facegan"
    saveFreq: int = 1  # noqa: N815 -- original 30 (its runs never ended)
    network: str = ""
    noplot: bool = False
    D_sgd_lr: float = 0.02  # noqa: N815
    G_sgd_lr: float = 0.02  # noqa: N815
    D_sgd_momentum: float = 0.0  # noqa: N815
    G_sgd_momentum: float = 0.0  # noqa: N815
    D_adam_lr: float = -1.0  # noqa: N815 -- new, as in facegan-train
    G_adam_lr: float = -1.0  # noqa: N815
    batchSize: int = 32  # noqa: N815
    N_epoch: int = 1000  # noqa: N815
    epochs: int = 10  # new: the original looped forever
    G_L1: float = 0.0  # noqa: N815
    G_L2: float = 0.0  # noqa: N815
    D_L1: float = 1e-7  # noqa: N815
    D_L2: float = 0.0  # noqa: N815
    D_iterations: int = 1  # noqa: N815
    G_iterations: int = 1  # noqa: N815
    D_clamp: float = 1.0  # noqa: N815
    G_clamp: float = 5.0  # noqa: N815
    D_optmethod: str = "adam"  # noqa: N815
    G_optmethod: str = "adam"  # noqa: N815
    noiseDim: int = 100  # noqa: N815 -- unused: the c2f noise is one fineSize^2 plane
    window: int = 3
    coarseSize: int = 16  # noqa: N815
    fineSize: int = 32  # noqa: N815
    grayscale: bool | None = None
    seed: int = 1
    dataset: str | None = None
    device: str = "auto"
    resume: bool = False
    threads: int | None = None
    width: float = 1.0  # new: scales every hidden channel count


def check_config(cfg: C2FConfig) -> C2FConfig:
    for flag, value in (("--coarseSize", cfg.coarseSize), ("--fineSize", cfg.fineSize)):
        if value not in SIZES:
            raise UserError(f"{flag}: expected one of {', '.join(map(str, SIZES))}, got {value}")
    if cfg.coarseSize >= cfg.fineSize:
        raise UserError(f"--coarseSize: must be smaller than --fineSize ({cfg.fineSize}), "
                        f"got {cfg.coarseSize}")
    if cfg.batchSize < 4 or cfg.batchSize % 2:
        raise UserError(f"--batchSize: must be even and >= 4, got {cfg.batchSize}")
    if not 0 < cfg.width <= 4:
        raise UserError(f"--width: expected a channel multiplier in (0, 4], got {cfg.width}")
    return replace(cfg, D_optmethod=check_optmethod(cfg.D_optmethod, "--D_optmethod"),
                   G_optmethod=check_optmethod(cfg.G_optmethod, "--G_optmethod"))


def run_name(coarse: int, fine: int, channels: int) -> str:
    return f"c2f-{coarse}to{fine}-{'gray' if channels == 1 else 'color'}"


def coarse_of(fine: torch.Tensor, coarse_size: int) -> torch.Tensor:
    """``up(down(fine))``: ``[N, C, F, F]`` -> ``[N, C, F, F]`` (bilinear both ways)."""
    size = fine.shape[-1]
    small = F.interpolate(fine, size=(coarse_size, coarse_size), mode="bilinear",
                          align_corners=False, antialias=True)
    return upsample(small, size)


def upsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear ``[N, C, s, s]`` -> ``[N, C, size, size]`` (``image.scale``)."""
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def noise_plane(n: int, size: int, device: torch.device | str = "cpu",
                generator: torch.Generator | None = None) -> torch.Tensor:
    """U(-1, 1) noise ``[n, 1, size, size]``."""
    z = torch.rand(n, 1, size, size, generator=generator, device="cpu" if generator else device)
    return (z * 2 - 1).to(device)


@torch.no_grad()
def refine(G: nn.Module, D: nn.Module, images: torch.Tensor, fine_size: int, tries: int = 10,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """``sample.lua``'s c2f: upsample ``[N, C, s, s]`` to ``fine_size``, draw ``tries``
    residuals each and keep the one D likes best.  Returns ``[N, C, F, F]`` in [0, 1]."""
    G_was, D_was = G.training, D.training
    G.eval()
    D.eval()
    up = upsample(images, fine_size)  # [N, C, F, F]
    out = []
    per_chunk = max(1, 256 // tries)
    for chunk in up.split(per_chunk):
        n = chunk.shape[0]
        coarse = chunk.repeat_interleave(tries, dim=0)  # [n * tries, C, F, F]
        residual = G(noise_plane(n * tries, fine_size, chunk.device, generator), coarse)
        scores = D(residual, coarse).view(n, tries)
        best = residual.view(n, tries, *residual.shape[1:])[torch.arange(n), scores.argmax(1)]
        out.append((chunk + best).clamp(0, 1))
    G.train(G_was)
    D.train(D_was)
    return torch.cat(out)


def _source_and_channels(cfg: C2FConfig):
    """``--dataset`` / ``--grayscale``, else those of the latest facegan-train run."""
    saved = {}
    if not cfg.dataset:
        train_run = latest_run(cfg.save, "train-")
        saved = read_config(train_run) if train_run else {}
    source = source_from_dict(saved.get("source")) or resolve_source(cfg.dataset)
    grayscale = cfg.grayscale
    if grayscale is None and saved.get("channels") in (1, 3):
        grayscale = saved["channels"] == 1
    return source, check_channels(source, grayscale)


# ---------------------------------------------------------------------------------------------
def train_c2f(cfg: C2FConfig) -> Run:
    """Train the coarse-to-fine G/D pair; returns the Run."""
    return run_in_context(_train, check_config(cfg))


def _train(cfg: C2FConfig, ctx: DistContext) -> Run:
    source, channels = _source_and_channels(cfg)
    seed_everything(cfg.seed + ctx.rank)
    G = C2FGenerator(channels, cfg.width)
    D = C2FDiscriminator(channels, cfg.fineSize, cfg.width)
    if cfg.network:
        state = load_checkpoint(cfg.network, flag="--network")
        load_state_dicts({"G": G, "D": D}, state, source=f"--network '{cfg.network}'")
    dataset = load_faces(source, cfg.fineSize, channels)
    half = cfg.batchSize // 2
    epoch_loader(dataset, cfg.N_epoch, half, ctx, cfg.seed, 0)  # fail before writing anything
    G, D = wrap_model(G, ctx), wrap_model(D, ctx)
    optG = make_optimizer(cfg.G_optmethod, G.parameters(), cfg.G_sgd_lr, cfg.G_sgd_momentum,
                          cfg.G_adam_lr, adagrad_lr=3e-3)
    optD = make_optimizer(cfg.D_optmethod, D.parameters(), cfg.D_sgd_lr, cfg.D_sgd_momentum,
                          cfg.D_adam_lr, adagrad_lr=1e-3)
    meta = {"channels": channels, "coarseSize": cfg.coarseSize, "fineSize": cfg.fineSize,
            "width": cfg.width, "source": asdict(source)}
    name = run_name(cfg.coarseSize, cfg.fineSize, channels)
    run = Run.start(cfg.save, name, {**asdict(cfg), **meta}, resume=cfg.resume, ckpt_keep=2)
    if run.is_main:
        print(f"run {run.dir}: {cfg.coarseSize} -> {cfg.fineSize} px from {source.describe()}")
    objects = {"G": G, "D": D, "optG": optG, "optD": optD}
    step, start_epoch = 0, 0
    if cfg.resume:
        state = run.checkpoints.load_latest(map_location=ctx.device)
        if state is not None:
            load_state_dicts(objects, state, source=str(run.checkpoints.latest()))
            step, start_epoch = state["step"], state["epoch"]
            run.truncate_stats(step)
            if run.is_main:
                print(f"resumed at epoch {start_epoch}, iteration {step}")
    per_epoch = iterations_per_epoch(len(dataset), cfg.N_epoch, half, ctx.world_size)
    gen = torch.Generator().manual_seed(cfg.seed)
    shown = torch.randperm(len(dataset), generator=gen)[:16].tolist()
    shown_fine = torch.stack([dataset[i] for i in shown]).to(ctx.device)
    shown_noise = noise_plane(16, cfg.fineSize, generator=gen).to(ctx.device)

    bar = run.progress(cfg.epochs * per_epoch, initial=step, desc=name)
    for epoch in range(start_epoch, cfg.epochs):
        loader = epoch_loader(dataset, cfg.N_epoch, half, ctx, cfg.seed, epoch)
        totals = {"loss_D": 0.0, "loss_G": 0.0, "acc_D": 0.0}
        t0, count = time.time(), 0
        for fine in loader:
            stats = c2f_step(G, D, optG, optD, fine.to(ctx.device), cfg, ctx)
            for k in totals:
                totals[k] += stats[k]
            step += 1
            count += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, **{k: f"{v:.3f}" for k, v in stats.items()})
        means = {k: v / count for k, v in totals.items()}
        run.log(step, epoch=epoch + 1, it_per_s=round(count / (time.time() - t0), 3), **means)
        last = epoch + 1 == cfg.epochs
        if (epoch + 1) % cfg.saveFreq == 0 or last:
            if run.is_main and (not cfg.noplot or last):
                save_c2f_grid(run, unwrap(G), shown_fine, shown_noise, cfg.coarseSize,
                              f"c2f_e{epoch + 1:04d}.png")
            if run.is_main:
                run.checkpoints.save(step, {**state_dicts(objects), "epoch": epoch + 1,
                                            "config": asdict(cfg), **meta})
    bar.close()
    run.plot_losses(["loss_D", "loss_G", "acc_D"])
    run.close()
    return run


def c2f_step(G: nn.Module, D: nn.Module, optG: torch.optim.Optimizer,
             optD: torch.optim.Optimizer, fine: torch.Tensor, cfg: C2FConfig,
             ctx: DistContext) -> dict[str, float]:
    """One iteration on ``fine [B/2, C, F, F]``: D on real residuals vs G's residuals for the
    same coarse images, then G on ``B`` (coarse, noise) pairs."""
    half, size = fine.shape[0], fine.shape[-1]
    coarse = coarse_of(fine, cfg.coarseSize)
    diff = fine - coarse
    target = torch.cat([torch.ones(half), torch.zeros(half)]).to(fine.device)
    cond = torch.cat([coarse, coarse])
    loss_D = acc_D = 0.0
    for _ in range(cfg.D_iterations):
        with torch.no_grad():
            fake = G(noise_plane(half, size, fine.device), coarse)
        logits = D(torch.cat([diff, fake]), cond)
        loss = F.binary_cross_entropy_with_logits(logits, target)
        optD.zero_grad(set_to_none=True)
        loss.backward()
        regularise_and_clamp(D.parameters(), cfg.D_L1, cfg.D_L2, cfg.D_clamp)
        optD.step()
        loss_D = loss.item()
        acc_D = all_reduce_mean(((logits > 0).float() == target).float().mean().item(), ctx)
    loss_G = 0.0
    for _ in range(cfg.G_iterations):
        with frozen(D, ctx):
            loss = bce(D(G(noise_plane(2 * half, size, fine.device), cond), cond), 1.0)
            optG.zero_grad(set_to_none=True)
            loss.backward()
        regularise_and_clamp(G.parameters(), cfg.G_L1, cfg.G_L2, cfg.G_clamp)
        optG.step()
        loss_G = loss.item()
    return {"loss_D": loss_D, "loss_G": loss_G, "acc_D": acc_D}


@torch.no_grad()
def save_c2f_grid(run: Run, G: nn.Module, fine: torch.Tensor, noise: torch.Tensor,
                  coarse_size: int, name: str) -> None:
    """Rows: coarse, ground truth, refined (coarse + G), true residual, G's residual
    (residuals shown around grey 0.5) -- ``getSamples`` of train_c2f.lua."""
    was = G.training
    G.eval()
    coarse = coarse_of(fine, coarse_size)
    residual = G(noise, coarse)
    G.train(was)
    rows = [coarse, fine, (coarse + residual).clamp(0, 1), fine - coarse + 0.5, residual + 0.5]
    run.save_grid(name, torch.cat(rows), nrow=fine.shape[0], value_range=(0, 1))
