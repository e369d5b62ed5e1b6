"""The LR-GAN training loop (DCGAN-style, non-saturating BCE losses, Adam)."""

from __future__ import annotations

import functools
import itertools
import random
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from ganlab_common.checkpoint import (
    CheckpointManager,
    load_checkpoint,
    load_state_dicts,
    state_dicts,
)
from ganlab_common.distributed import (
    DistContext,
    autocast,
    cleanup_distributed,
    make_dataloader,
    set_epoch,
    setup_distributed,
    unwrap,
    wrap_model,
)
from ganlab_common.errors import UserError
from ganlab_common.runs import Run, seed_everything

from .data import dataset_spec, load_dataset
from .models import Decomposition, Discriminator, Generator
from .ops import select_stnm

__all__ = ["TrainConfig", "build_models", "evaluate", "save_decomposition", "train"]


@dataclass(frozen=True)
class TrainConfig:
    """Every flag of ``lrgan-train`` (the original ``train.py`` names and defaults)."""

    dataset: str = "mnist-two"
    dataroot: str | None = None
    workers: int = 2
    batchSize: int = 64  # noqa: N815 -- the original flag name
    imageSize: int = 64  # noqa: N815
    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    ntimestep: int = 2
    maxobjscale: float = 1.2
    niter: int = 25
    session: int = 1
    evaluate: bool = False
    lr: float = 2e-4
    beta1: float = 0.5
    netG: str = ""  # noqa: N815
    netD: str = ""  # noqa: N815
    outf: str = "."
    outimgf: str = "images"
    outmodelf: str = "models"
    manualSeed: int | None = None  # noqa: N815
    device: str = "auto"
    stnm: str = "auto"
    legacy_grad: bool = False
    bg_input: str = "raw"
    resume: bool = False
    amp: bool = False
    max_iters: int | None = None  # stop after this many iterations in total (smoke runs)
    max_images: int | None = None  # use only this many training images (smoke runs)
    keep: int = 3

    @property
    def run_name(self) -> str:
        return f"{self.dataset}_s{self.session}"


# ---------------------------------------------------------------------------------------
def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """maximize log D(x) + log(1 - D(G(z)))."""
    return F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits)
    ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


def g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating: maximize log D(G(z))."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def build_models(
    cfg: TrainConfig, device: torch.device | None = None
) -> tuple[Generator, Discriminator]:
    """G and D for ``cfg``; the STNM implementation is chosen here, once, for ``device``."""
    spec = dataset_spec(cfg.dataset)
    composite = functools.partial(select_stnm(cfg.stnm, device), legacy_grad=cfg.legacy_grad)
    netG = Generator(
        composite, nz=cfg.nz, ngf=cfg.ngf, nc=spec.nc, image_size=cfg.imageSize,
        ntimestep=cfg.ntimestep, maxobjscale=cfg.maxobjscale, rot=spec.rot,
        bg_input=cfg.bg_input,
    )
    netD = Discriminator(nc=spec.nc, ndf=cfg.ndf, image_size=cfg.imageSize)
    return netG, netD


def _load_weights(module: nn.Module, path: str, key: str, flag: str) -> dict:
    state = load_checkpoint(path, flag=flag)
    weights = state.get(key, state)
    load_state_dicts({key: module}, {key: weights}, source=f"{flag} '{path}'")
    return state


# ---------------------------------------------------------------------------------------
def _mask_to_image(mask: torch.Tensor) -> torch.Tensor:
    return mask * 2 - 1


def save_decomposition(run: Run, layers: Decomposition, folder: str, tag: str = "") -> None:
    """Grids in the paper's layout: bgimg, fgimg<t>, fgmask<t>, canvas<t>, final, and one
    strip per sample (columns: background, then fg / mask / canvas for each step)."""
    run.save_grid(f"{folder}/bgimg{tag}.png", layers.background)
    columns = [layers.background]
    for t, (fg, mask, canvas) in enumerate(
        zip(layers.foregrounds, layers.masks, layers.canvases), start=1
    ):
        run.save_grid(f"{folder}/fgimg{t}{tag}.png", fg)
        run.save_grid(f"{folder}/fgmask{t}{tag}.png", _mask_to_image(mask))
        run.save_grid(f"{folder}/canvas{t}{tag}.png", canvas)
        nc = fg.shape[1]
        columns += [fg, _mask_to_image(mask).expand(-1, nc, -1, -1), canvas]
    run.save_grid(f"{folder}/final{tag}.png", layers.image)
    n = min(16, layers.background.shape[0])
    strip = torch.stack([c[:n] for c in columns], dim=1).flatten(0, 1)
    run.save_grid(f"{folder}/layers{tag}.png", strip, nrow=len(columns))


def _fixed_noise(netG: Generator, seed: int, n: int = 64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return netG.sample_noise(n, generator=gen, device=torch.device("cpu"))


@torch.no_grad()
def _sample(netG: Generator, z: torch.Tensor) -> Decomposition:
    was_training = netG.training
    netG.eval()
    layers = netG.decompose(z)
    netG.train(was_training)
    return layers


# ---------------------------------------------------------------------------------------
def evaluate(cfg: TrainConfig) -> Run:
    """``--evaluate``: load ``--netG`` and write samples and the decomposition."""
    if not cfg.netG:
        raise UserError("--netG: required with --evaluate (a checkpoint written by lrgan-train)")
    state = load_checkpoint(cfg.netG, flag="--netG")
    saved = state.get("config")
    if isinstance(saved, dict):  # rebuild the architecture the checkpoint was trained with
        keep = ("nz", "ngf", "ndf", "ntimestep", "imageSize", "maxobjscale", "bg_input", "dataset")
        cfg = replace(cfg, **{k: saved[k] for k in keep if k in saved})
    seed = cfg.manualSeed if cfg.manualSeed is not None else 1
    seed_everything(seed)
    ctx = setup_distributed(cfg.device)
    netG, _ = build_models(cfg, ctx.device)
    _load_weights(netG, cfg.netG, "netG", "--netG")
    netG.to(ctx.device)
    run = Run.start(cfg.outf, f"{cfg.run_name}-eval", asdict(cfg))
    z = _fixed_noise(netG, seed).to(ctx.device)
    save_decomposition(run, _sample(netG, z), cfg.outimgf)
    run.close()
    return run


def train(cfg: TrainConfig) -> Run:
    """Train LR-GAN; returns the Run (its folder holds grids, stats and checkpoints)."""
    if cfg.evaluate:
        return evaluate(cfg)
    spec = dataset_spec(cfg.dataset)
    seed = cfg.manualSeed if cfg.manualSeed is not None else random.randint(1, 10000)
    cfg = replace(cfg, manualSeed=seed)
    ctx = setup_distributed(cfg.device)
    try:
        return _train(cfg, ctx, spec.checkfreq)
    finally:
        cleanup_distributed()


def _train(cfg: TrainConfig, ctx: DistContext, checkfreq: int) -> Run:
    seed = cfg.manualSeed
    seed_everything(seed + ctx.rank)
    dataset = load_dataset(cfg.dataset, cfg.dataroot, cfg.imageSize, seed=43,
                           count=cfg.max_images)
    in_memory = isinstance(dataset, TensorDataset)
    loader = make_dataloader(dataset, cfg.batchSize, ctx, workers=0 if in_memory else cfg.workers,
                             seed=seed)
    netG, netD = build_models(cfg, ctx.device)
    if cfg.netG:
        _load_weights(netG, cfg.netG, "netG", "--netG")
    if cfg.netD:
        _load_weights(netD, cfg.netD, "netD", "--netD")
    netG, netD = wrap_model(netG, ctx), wrap_model(netD, ctx)
    optG = torch.optim.Adam(netG.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    optD = torch.optim.Adam(netD.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))

    run = Run.start(cfg.outf, cfg.run_name, asdict(cfg), resume=cfg.resume)
    ckpts = CheckpointManager(run.dir / cfg.outmodelf, prefix=cfg.run_name, keep=cfg.keep)
    objects = {"netG": netG, "optG": optG, "netD": netD, "optD": optD}
    step = 0
    if cfg.resume:
        state = ckpts.load_latest(map_location=ctx.device)
        if state is not None:
            load_state_dicts(objects, state, source=str(ckpts.latest()))
            step = state["step"]
            run.truncate_stats(step)
            print(f"resumed {run.dir} at iteration {step}")
    per_epoch = len(loader)
    total = cfg.niter * per_epoch
    if cfg.max_iters is not None:
        total = min(total, cfg.max_iters)
    fixed_z = _fixed_noise(unwrap(netG), seed).to(ctx.device)
    if step == 0:
        run.save_grid(f"{cfg.outimgf}/real_samples.png", next(iter(loader))[0][:64])

    bar = run.progress(total, initial=step, desc=cfg.run_name)
    while step < total:
        epoch, skip = divmod(step, per_epoch)
        set_epoch(loader, epoch)
        for real, _ in itertools.islice(loader, skip, None):
            stats = _train_step(netG, netD, optG, optD, real.to(ctx.device), ctx, cfg.amp)
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch, **{k: f"{v:.3f}" for k, v in stats.items()})
            run.log(step, epoch=epoch, **stats)
            epoch_done = step % per_epoch == 0
            if step % checkfreq == 0 or epoch_done or step == total:
                layers = _sample(unwrap(netG), fixed_z)
                run.save_grid(f"{cfg.outimgf}/fake_samples_{step:06d}.png", layers.image)
                tag = f"_epoch_{epoch:03d}" if epoch_done else ""
                if epoch_done or step == total:
                    save_decomposition(run, layers, cfg.outimgf, tag)
                if run.is_main:
                    ckpts.save(step, {**state_dicts(objects), "config": asdict(cfg),
                                      "epoch": epoch})
            if step >= total:
                break
    bar.close()
    run.plot_losses(["loss_D", "loss_G"])
    run.close()
    return run


def _train_step(netG, netD, optG, optD, real, ctx, amp) -> dict[str, float]:
    batch = real.shape[0]
    z = unwrap(netG).sample_noise(batch, device=ctx.device)
    # (1) Update D: maximize log D(x) + log(1 - D(G(z)))
    with autocast(ctx, amp):
        fake = netG(z)
        real_logits = netD(real)
        fake_logits = netD(fake.detach())
        errD = d_loss(real_logits.float(), fake_logits.float())
    optD.zero_grad(set_to_none=True)
    errD.backward()
    optD.step()
    # (2) Update G: maximize log D(G(z))
    with autocast(ctx, amp):
        gen_logits = netD(fake)
        errG = g_loss(gen_logits.float())
    optG.zero_grad(set_to_none=True)
    errG.backward()
    optG.step()
    return {
        "loss_D": errD.item(),
        "loss_G": errG.item(),
        "D_x": torch.sigmoid(real_logits).mean().item(),
        "D_G_z1": torch.sigmoid(fake_logits).mean().item(),
        "D_G_z2": torch.sigmoid(gen_logits).mean().item(),
    }
