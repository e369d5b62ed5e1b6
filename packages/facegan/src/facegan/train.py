"""The G/D training loop of ``train.lua`` + ``adversarial.lua``.

One iteration takes ``batchSize / 2`` real images: D sees them next to as many fakes (one
batch, BCE), G then trains on ``batchSize`` fresh noise vectors against D (non-saturating).
An epoch is ``N_epoch`` random images (1,000: about 62 iterations at batch 32).  D skips its
update while its mean accuracy over the last ``max(20, min(1000 / batchSize, 250))`` batches
is >= ``D_maxAcc``.  L1/L2 penalties are added to the gradients, which are then clamped
element-wise (D +-1, G +-5).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from ganlab_common.checkpoint import load_checkpoint, load_state_dicts, state_dicts
from ganlab_common.data import report_skipped_images
from ganlab_common.distributed import (
    DistContext,
    all_reduce_mean,
    unwrap,
    wrap_model,
)
from ganlab_common.errors import UserError
from ganlab_common.guards import check_finite_losses, check_writable_dir
from ganlab_common.options import explicit_options
from ganlab_common.runs import (
    ResumePoint,
    Run,
    find_resume_point,
    merge_resume_config,
    seed_everything,
)

from .data import check_channels, load_faces, real_faces, resolve_source
from .models import (
    SCALES,
    Denoiser,
    Generator,
    build_discriminator,
    init_eyescream,
    sample_noise,
)
from .training import (
    bce,
    check_optmethod,
    epoch_loader,
    frozen,
    iterations_per_epoch,
    make_optimizer,
    regularise_and_clamp,
    run_in_context,
)

__all__ = [
    "TrainConfig",
    "build_models",
    "check_config",
    "denoiser_path",
    "generate",
    "load_denoiser",
    "rank_by_D",
    "run_name",
    "save_progress_grids",
    "train",
    "train_step",
]


@dataclass(frozen=True)
class TrainConfig:
    """Every flag of ``facegan-train`` (``train.lua``'s names and defaults, unless noted)."""

    batchSize: int = 32  # noqa: N815 -- the original flag names
    save: str = "runs/facegan"
    saveFreq: int = 5  # noqa: N815 -- original 30 (its runs never ended)
    network: str = ""
    noplot: bool = False
    N_epoch: int = 1000  # noqa: N815 -- images per epoch, -1 = all
    epochs: int = 50  # new: the original looped forever
    G_SGD_lr: float = 0.02  # noqa: N815
    G_SGD_momentum: float = 0.0  # noqa: N815
    D_SGD_lr: float = 0.02  # noqa: N815
    D_SGD_momentum: float = 0.0  # noqa: N815
    G_adam_lr: float = -1.0  # noqa: N815
    D_adam_lr: float = -1.0  # noqa: N815
    G_L1: float = 0.0  # noqa: N815
    G_L2: float = 0.0  # noqa: N815
    D_L1: float = 0.0  # noqa: N815
    D_L2: float = 1e-4  # noqa: N815
    D_iterations: int = 1  # noqa: N815
    G_iterations: int = 1  # noqa: N815
    D_maxAcc: float = 1.01  # noqa: N815
    D_clamp: float = 1.0  # noqa: N815
    G_clamp: float = 5.0  # noqa: N815
    D_optmethod: str = "adam"  # noqa: N815
    G_optmethod: str = "adam"  # noqa: N815
    noiseDim: int = 100  # noqa: N815
    window: int = 3
    scale: int = 32
    seed: int = 1
    grayscale: bool | None = None  # None: grey for the embedded faces, colour for a folder
    denoise: bool = False
    dataset: str | None = None
    init: str = "eyescream"  # the original's initializeWeights; "default": PyTorch's
    width: float = 1.0  # new: scales every hidden channel count
    device: str = "auto"
    resume: bool = False
    threads: int | None = None


def check_config(cfg: TrainConfig) -> TrainConfig:
    """Flag checks that click cannot express; returns ``cfg`` with normalised optimiser names."""
    if cfg.scale not in SCALES:
        raise UserError(f"--scale: expected one of {', '.join(map(str, SCALES))} "
                        f"(the sizes models.lua defines), got {cfg.scale}")
    if cfg.batchSize < 4 or cfg.batchSize % 2:
        raise UserError(f"--batchSize: must be even and >= 4 (half real, half fake for D), "
                        f"got {cfg.batchSize}")
    d_opt = check_optmethod(cfg.D_optmethod, "--D_optmethod")
    g_opt = check_optmethod(cfg.G_optmethod, "--G_optmethod")
    if not 0 < cfg.width <= 4:
        raise UserError(f"--width: expected a channel multiplier in (0, 4], got {cfg.width}")
    if cfg.init not in ("default", "eyescream"):
        raise UserError(f"--init: expected default or eyescream, got '{cfg.init}'")
    return replace(cfg, D_optmethod=d_opt, G_optmethod=g_opt)


#: Flags that may differ from the stored run on --resume (the rest come from its config.json).
RESUME_CHANGEABLE = ("epochs", "saveFreq", "save", "network", "noplot", "dataset", "denoise",
                     "window", "device", "resume", "threads")


def resume_point(cfg, name: str, is_main: bool) -> tuple[object, ResumePoint | None]:
    """--resume: the newest ``name`` run with a loadable checkpoint and the config it continues
    with (its stored flags win; a conflicting flag is a one-line error).  Without --resume:
    ``--save`` is checked to be writable first.  ``cfg`` is a dataclass of the flags."""
    if not cfg.resume:
        check_writable_dir(cfg.save, "--save")
        return cfg, None
    point = find_resume_point(cfg.save, name, announce=is_main)
    merged = merge_resume_config(point.config, cfg, RESUME_CHANGEABLE, explicit_options(),
                                 point.run_dir)
    return merged, point


def run_name(scale: int, channels: int) -> str:
    return f"train-{scale}px-{'gray' if channels == 1 else 'color'}"


def build_models(channels: int, scale: int, noise_dim: int, init: str = "eyescream",
                 width: float = 1.0) -> tuple[Generator, nn.Module]:
    """G and D for ``scale``; ``init="eyescream"`` applies the original N(0, 0.005) init."""
    G = Generator(channels, scale, noise_dim, width)
    D = build_discriminator(channels, scale, width)
    if init == "eyescream":
        init_eyescream(G)
        init_eyescream(D)
    return G, D


def denoiser_path(save: str | Path, channels: int, scale: int) -> Path | None:
    """The newest ``<save>/<NNNNN>-denoiser-CxSxS/denoiser_CxSxS.pt``."""
    from .training import latest_run

    tag = f"{channels}x{scale}x{scale}"
    run = latest_run(save, f"denoiser-{tag}", with_checkpoint=False)
    path = run / f"denoiser_{tag}.pt" if run else None
    return path if path and path.is_file() else None


def load_denoiser(save: str | Path, channels: int, scale: int, device: torch.device) -> Denoiser:
    """The denoiser ``--denoise`` needs: trained at the same scale and channels, or an error."""
    tag = f"{channels}x{scale}x{scale}"
    path = denoiser_path(save, channels, scale)
    if path is None:
        colour = "--grayscale" if channels == 1 else "--color"
        raise UserError(f"--denoise: no denoiser for {tag} images in '{save}' (train one with "
                        f"'facegan-denoiser --scale {scale} {colour} --save {save}')")
    state = load_checkpoint(path, flag="--denoise")
    model = Denoiser(channels, scale)
    load_state_dicts({"denoiser": model}, state, source=f"--denoise '{path}'")
    return model.to(device).eval()


@torch.no_grad()
def generate(G: nn.Module, z: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """``G(z)`` in eval mode, batched: ``[N, noise]`` -> ``[N, C, S, S]``."""
    was = G.training
    G.eval()
    out = torch.cat([G(part) for part in z.split(batch)])
    G.train(was)
    return out


@torch.no_grad()
def rank_by_D(D: nn.Module, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """D's probability of "real" for each image, eval mode: ``[N, C, S, S]`` -> ``[N]``."""
    was = D.training
    D.eval()
    out = torch.cat([torch.sigmoid(D(part)) for part in images.split(batch)])
    D.train(was)
    return out


# ---------------------------------------------------------------------------------------------
def train(cfg: TrainConfig) -> Run:
    """Train G and D; returns the Run (grids, stats.jsonl, checkpoints)."""
    return run_in_context(_train, check_config(cfg))


def _train(cfg: TrainConfig, ctx: DistContext) -> Run:
    source = resolve_source(cfg.dataset)
    channels = check_channels(source, cfg.grayscale)
    name = run_name(cfg.scale, channels)
    cfg, point = resume_point(cfg, name, ctx.is_main)
    cfg = check_config(cfg)
    source = resolve_source(cfg.dataset)
    denoiser = load_denoiser(cfg.save, channels, cfg.scale, ctx.device) if cfg.denoise else None
    seed_everything(cfg.seed + ctx.rank)
    G, D = build_models(channels, cfg.scale, cfg.noiseDim, cfg.init, cfg.width)
    if cfg.network:
        state = load_checkpoint(cfg.network, flag="--network")
        load_state_dicts({"G": G, "D": D}, state, source=f"--network '{cfg.network}'")
    dataset = load_faces(source, cfg.scale, channels)
    half = cfg.batchSize // 2
    epoch_loader(dataset, cfg.N_epoch, half, ctx, cfg.seed, 0)  # fail before writing anything
    G, D = wrap_model(G, ctx), wrap_model(D, ctx)
    optG = make_optimizer(cfg.G_optmethod, G.parameters(), cfg.G_SGD_lr, cfg.G_SGD_momentum,
                          cfg.G_adam_lr)
    optD = make_optimizer(cfg.D_optmethod, D.parameters(), cfg.D_SGD_lr, cfg.D_SGD_momentum,
                          cfg.D_adam_lr)
    meta = {"channels": channels, "scale": cfg.scale, "noiseDim": cfg.noiseDim,
            "width": cfg.width, "source": asdict(source)}
    run = Run.start(cfg.save, name, {**asdict(cfg), **meta}, resume=point or False, ckpt_keep=2)
    if run.is_main:
        print(f"run {run.dir}: {cfg.scale}px {'grey' if channels == 1 else 'colour'} faces "
              f"from {source.describe()}")
    objects = {"G": G, "D": D, "optG": optG, "optD": optD}
    acc_window = max(20, min(1000 // cfg.batchSize, 250))
    accs: deque[float] = deque(maxlen=acc_window)
    step, start_epoch = 0, 0
    if cfg.resume:
        state = run.checkpoints.load_latest(map_location=ctx.device)
        if state is not None:
            load_state_dicts(objects, state, source=str(run.checkpoints.loaded_path))
            step, start_epoch = state["step"], state["epoch"]
            accs.extend(state.get("accs", []))
            run.truncate_stats(step)
            if run.is_main:
                print(f"resumed at epoch {start_epoch}, iteration {step}")
    per_epoch = iterations_per_epoch(len(dataset), cfg.N_epoch, half, ctx.world_size)
    fixed_z = sample_noise(64, cfg.noiseDim, generator=torch.Generator().manual_seed(cfg.seed))
    fixed_z = fixed_z.to(ctx.device)
    if step == 0:
        run.save_grid("reals.png", real_faces(source, cfg.scale, channels, 64), value_range=(0, 1))

    bar = run.progress(cfg.epochs * per_epoch, initial=step, desc=name)
    for epoch in range(start_epoch, cfg.epochs):
        loader = epoch_loader(dataset, cfg.N_epoch, half, ctx, cfg.seed, epoch)
        totals = {"loss_D": 0.0, "loss_G": 0.0, "acc_D": 0.0, "D_trained": 0.0}
        t0 = time.time()
        i = 0
        for real in loader:
            i += 1
            stats = train_step(G, D, optG, optD, real.to(ctx.device), cfg, accs, ctx)
            for k in totals:
                totals[k] += stats[k]
            step += 1
            check_finite_losses(step, {k: stats[k] for k in ("loss_D", "loss_G")}, ctx)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, lossD=f"{stats['loss_D']:.3f}",
                            lossG=f"{stats['loss_G']:.3f}",
                            accD=f"{sum(accs) / len(accs):.2f}")
        means = {k: v / i for k, v in totals.items()}
        run.log(step, epoch=epoch + 1, it_per_s=round(i / (time.time() - t0), 3), **means)
        last = epoch + 1 == cfg.epochs
        if (epoch + 1) % cfg.saveFreq == 0 or last:
            if run.is_main and (not cfg.noplot or last):
                save_progress_grids(run, unwrap(G), unwrap(D), fixed_z, epoch + 1, denoiser,
                                    cfg.seed)
            if run.is_main:
                run.checkpoints.save(step, {**state_dicts(objects), "epoch": epoch + 1,
                                            "accs": list(accs), "config": asdict(cfg), **meta})
    bar.close()
    run.plot_losses(["loss_D", "loss_G", "acc_D"])
    run.close()
    report_skipped_images(dataset)
    return run


def train_step(G: nn.Module, D: nn.Module, optG: torch.optim.Optimizer,
               optD: torch.optim.Optimizer, real: torch.Tensor, cfg: TrainConfig,
               accs: deque, ctx: DistContext) -> dict[str, float]:
    """One iteration: ``D_iterations`` D updates on ``real [B/2, C, S, S]`` + as many fakes
    (each skipped while D's running accuracy >= ``D_maxAcc``), then ``G_iterations`` G
    updates on ``B`` noise vectors."""
    half = real.shape[0]
    noise_dim = unwrap(G).noise_dim
    target = torch.cat([torch.ones(half), torch.zeros(half)]).to(ctx.device)
    loss_D = acc_D = trained = 0.0
    for _ in range(cfg.D_iterations):
        with torch.no_grad():
            fake = G(sample_noise(half, noise_dim, ctx.device))
        logits = D(torch.cat([real, fake]))
        loss = nn.functional.binary_cross_entropy_with_logits(logits, target)
        acc = all_reduce_mean(((logits > 0).float() == target).float().mean().item(), ctx)
        accs.append(acc)
        loss_D, acc_D = loss.item(), acc
        if sum(accs) / len(accs) < cfg.D_maxAcc:
            optD.zero_grad(set_to_none=True)
            loss.backward()
            regularise_and_clamp(D.parameters(), cfg.D_L1, cfg.D_L2, cfg.D_clamp)
            optD.step()
            trained += 1
    loss_G = 0.0
    for _ in range(cfg.G_iterations):
        z = sample_noise(2 * half, noise_dim, ctx.device)
        with frozen(D, ctx):
            loss = bce(D(G(z)), 1.0)
            optG.zero_grad(set_to_none=True)
            loss.backward()
        regularise_and_clamp(G.parameters(), cfg.G_L1, cfg.G_L2, cfg.G_clamp)
        optG.step()
        loss_G = loss.item()
    return {"loss_D": loss_D, "loss_G": loss_G, "acc_D": acc_D,
            "D_trained": trained / cfg.D_iterations}


def save_progress_grids(run: Run, G: nn.Module, D: nn.Module, fixed_z: torch.Tensor,
                        epoch: int, denoiser: Denoiser | None, seed: int) -> None:
    """``fakes_eNNNN.png`` (fixed noise), the best/worst 64 of 300 random samples by D, and
    the denoised fakes with ``--denoise`` (the original's live display windows)."""
    fakes = generate(G, fixed_z)
    run.save_grid(f"fakes_e{epoch:04d}.png", fakes, nrow=8, value_range=(0, 1))
    if denoiser is not None:
        run.save_grid(f"fakes_denoised_e{epoch:04d}.png", denoiser.denoise(fakes), nrow=8,
                      value_range=(0, 1))
    gen = torch.Generator().manual_seed(seed + epoch)
    z = sample_noise(300, fixed_z.shape[1], generator=gen).to(fixed_z.device)
    images = generate(G, z)
    order = rank_by_D(D, images).argsort(descending=True)
    run.save_grid("best.png", images[order[:64]], nrow=8, value_range=(0, 1))
    run.save_grid("worst.png", images[order.flip(0)[:64]], nrow=8, value_range=(0, 1))

