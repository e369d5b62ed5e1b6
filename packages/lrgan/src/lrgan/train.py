"""The LR-GAN training loop (DCGAN-style, non-saturating BCE losses, Adam)."""

from __future__ import annotations

import functools
import itertools
import json
import random
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from ganlab_common import metrics
from ganlab_common.checkpoint import (
    load_checkpoint,
    load_state_dicts,
    state_dicts,
)
from ganlab_common.data import report_skipped_images
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
from ganlab_common.guards import check_finite_losses, check_writable_dir
from ganlab_common.options import explicit_options
from ganlab_common.runs import (
    ResumePoint,
    Run,
    find_resume_point,
    merge_resume_config,
    seed_everything,
)

from .data import MnistCanvases, dataset_spec, load_dataset
from .evaluate import generate, generate_layers, layer_metrics
from .judge import Judge, load_judge
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
    lr_decay_start: int | None = None  # linear decay to 0 from this iteration (original: none)
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
    init: str = "torch2017"  # weight init: the original's PyTorch 0.2 defaults
    epoch_size: int = 60000  # MNIST canvases per epoch
    canvases: str = "fresh"  # fresh: new MNIST canvases every epoch; fixed: the same set
    sample_mode: str = "train"  # BatchNorm mode of sample grids and metrics (the original: train)
    judge_samples: int = 500  # samples judged at each epoch's end (mnist-one/two; 0: never)
    fid_samples: int = 2000  # --evaluate: FID of this many samples vs as many real images
    resume: bool = False
    amp: bool = False
    compile: bool = False  # torch.compile G's and D's forward (same weights, same checkpoints)
    max_iters: int | None = None  # stop after this many iterations in total (smoke runs)
    max_images: int | None = None  # use only this many training images (smoke runs)
    keep: int = 3

    @property
    def run_name(self) -> str:
        return f"{self.dataset}_s{self.session}"


# Flags a resumed run may change (everything else keeps the value the run started with).
RESUME_CHANGEABLE = ("niter", "max_iters", "device", "stnm", "workers", "resume", "keep",
                     "judge_samples", "fid_samples", "amp", "netG", "netD", "lr_decay_start",
                     "compile")
BEST_JUDGED = "best_judged.pt"  # in the checkpoint folder: the epoch whose layers judged best


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
        bg_input=cfg.bg_input, init=cfg.init,
    )
    netD = Discriminator(nc=spec.nc, ndf=cfg.ndf, image_size=cfg.imageSize, init=cfg.init)
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


# ---------------------------------------------------------------------------------------
def evaluate(cfg: TrainConfig) -> Run:
    """``--evaluate``: load ``--netG`` and write samples and the decomposition."""
    if not cfg.netG:
        raise UserError("--netG: required with --evaluate (a checkpoint written by lrgan-train)")
    state = load_checkpoint(cfg.netG, flag="--netG")
    saved = state.get("config")
    if isinstance(saved, dict):  # rebuild the architecture the checkpoint was trained with
        keep = ("nz", "ngf", "ndf", "ntimestep", "imageSize", "maxobjscale", "bg_input", "dataset",
                "init")
        cfg = replace(cfg, **{k: saved[k] for k in keep if k in saved})
    seed = cfg.manualSeed if cfg.manualSeed is not None else 1
    seed_everything(seed)
    ctx = setup_distributed(cfg.device)
    netG, _ = build_models(cfg, ctx.device)
    _load_weights(netG, cfg.netG, "netG", "--netG")
    netG.to(ctx.device)
    run = Run.start(cfg.outf, f"{cfg.run_name}-eval", asdict(cfg))
    z = _fixed_noise(netG, seed).to(ctx.device)
    save_decomposition(run, generate_layers(netG, z, cfg.sample_mode), cfg.outimgf,
                       f"_{cfg.sample_mode}mode")
    result = evaluation_metrics(netG, cfg, seed, str(ctx.device))
    (run.dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    run.close()
    return run


def evaluation_metrics(netG: Generator, cfg: TrainConfig, seed: int, device: str = "cpu",
                       judge: Judge | None = None) -> dict[str, float]:
    """The judge's layer metrics (MNIST canvases, T >= 2; ``judge`` defaults to
    :func:`load_judge`'s) and the FID of ``cfg.fid_samples`` composites against as many fresh
    real images (skipped when 0)."""
    n = max(cfg.fid_samples, cfg.judge_samples)
    result: dict[str, float] = {"samples": n, "sample_mode": cfg.sample_mode}
    if n == 0:
        return result
    layers = generate(netG, n, batch=cfg.batchSize, seed=seed + 1, mode=cfg.sample_mode)
    if _wants_judge(cfg):
        judge = judge or load_judge()
        result.update(layer_metrics(layers, judge))
        result["judge"] = judge.report
    if cfg.fid_samples > 0:
        real = _real_images(cfg, cfg.fid_samples)
        result["fid"] = metrics.fid(layers.image[: cfg.fid_samples], real, device=device)
        result["fid_samples"] = cfg.fid_samples
    return result


def _real_images(cfg: TrainConfig, count: int) -> torch.Tensor:
    """``count`` real training images; for MNIST canvases, fresh ones (an epoch no run
    reaches)."""
    dataset = _load_training_set(replace(cfg, epoch_size=max(count, cfg.batchSize)))
    if isinstance(dataset, MnistCanvases):
        return dataset.batch(count, epoch=10**6)[0]
    if len(dataset) < count:
        raise UserError(f"--fid_samples: {count} exceeds the {len(dataset)} training images")
    return torch.stack([dataset[i][0] for i in range(count)])


def train(cfg: TrainConfig) -> Run:
    """Train LR-GAN; returns the Run (its folder holds grids, stats and checkpoints)."""
    if cfg.evaluate:
        return evaluate(cfg)
    spec = dataset_spec(cfg.dataset)
    ctx = setup_distributed(cfg.device)
    try:
        point = None
        if cfg.resume:  # the run's stored seed and flags win over this launch's
            point = find_resume_point(cfg.outf, cfg.run_name, cfg.outmodelf, cfg.run_name,
                                      announce=ctx.is_main)
            cfg = merge_resume_config(point.config, cfg, RESUME_CHANGEABLE, explicit_options(),
                                      point.run_dir)
        else:
            check_writable_dir(cfg.outf, "--outf")
        seed = cfg.manualSeed if cfg.manualSeed is not None else random.randint(1, 10000)
        return _train(replace(cfg, manualSeed=seed), ctx, spec.checkfreq, point)
    finally:
        cleanup_distributed()


def _load_training_set(cfg: TrainConfig):
    fresh = cfg.canvases == "fresh"
    return load_dataset(cfg.dataset, cfg.dataroot, cfg.imageSize, seed=43, count=cfg.max_images,
                        epoch_size=cfg.epoch_size, fresh=fresh)


def _train(cfg: TrainConfig, ctx: DistContext, checkfreq: int,
           point: ResumePoint | None = None) -> Run:
    seed = cfg.manualSeed
    seed_everything(seed + ctx.rank)
    dataset = _load_training_set(cfg)
    in_memory = isinstance(dataset, (TensorDataset, MnistCanvases))
    loader = make_dataloader(dataset, cfg.batchSize, ctx, workers=0 if in_memory else cfg.workers,
                             seed=seed)
    per_epoch = len(loader)
    total = total_iterations(cfg, per_epoch)
    netG, netD = build_models(cfg, ctx.device)
    if cfg.netG:
        _load_weights(netG, cfg.netG, "netG", "--netG")
    if cfg.netD:
        _load_weights(netD, cfg.netD, "netD", "--netD")
    if cfg.compile:
        compile_forward(netG, netD)
    netG, netD = wrap_model(netG, ctx), wrap_model(netD, ctx)
    optG = torch.optim.Adam(netG.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    optD = torch.optim.Adam(netD.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))

    run = Run.start(cfg.outf, cfg.run_name, asdict(cfg), resume=point or False,
                    ckpt_keep=cfg.keep, checkpoints=cfg.outmodelf, ckpt_prefix=cfg.run_name)
    ckpts = run.checkpoints
    objects = {"netG": netG, "optG": optG, "netD": netD, "optD": optD}
    step, best = 0, -1.0
    if point is not None:
        state = ckpts.load_latest(map_location=ctx.device)
        load_state_dicts(objects, state, source=str(ckpts.loaded_path))
        step, best = state["step"], float(state.get("best_judged", -1.0))
        run.truncate_stats(step)
        print(f"resumed {run.dir} at iteration {step}")
    fixed_z = _fixed_noise(unwrap(netG), seed).to(ctx.device)
    judge, wants_judge = None, _wants_judge(cfg)
    mode = f"_{cfg.sample_mode}mode"  # the BatchNorm mode of every grid, in its name
    if step == 0:
        run.save_grid(f"{cfg.outimgf}/real_samples.png", next(iter(loader))[0][:64])

    bar = run.progress(total, initial=step, desc=cfg.run_name)
    while step < total:
        epoch, skip = divmod(step, per_epoch)
        set_epoch(loader, epoch)
        if isinstance(dataset, MnistCanvases):
            dataset.set_epoch(epoch)
        for real, _ in itertools.islice(loader, skip, None):
            _set_lr((optG, optD), learning_rate(cfg, step, total))
            stats = _train_step(netG, netD, optG, optD, real.to(ctx.device), ctx, cfg.amp)
            step += 1
            check_finite_losses(step, {k: stats[k] for k in ("loss_D", "loss_G")}, ctx)
            bar.update(1)
            bar.set_postfix(epoch=epoch, **{k: f"{v:.3f}" for k, v in stats.items()})
            epoch_done = step % per_epoch == 0
            if (epoch_done or step == total) and wants_judge:
                judge = judge or load_judge()  # trained and cached on first use
                stats.update(_judge_generator(unwrap(netG), judge, cfg, seed))
                if stats["judge_fg_one_digit"] > best:
                    best = stats["judge_fg_one_digit"]
                    if run.is_main:
                        run.save_state(run.dir / cfg.outmodelf / BEST_JUDGED,
                                       {**_state(objects, cfg, epoch, best), "step": step,
                                        "judge_fg_one_digit": best},
                                       "cannot write the checkpoint of the best-judged epoch")
                stats["judge_best_fg_one_digit"] = best
            if cfg.lr_decay_start is not None:
                stats["lr"] = optG.param_groups[0]["lr"]
            run.log(step, epoch=epoch, **stats)
            if step % checkfreq == 0 or epoch_done or step == total:
                layers = generate_layers(unwrap(netG), fixed_z, cfg.sample_mode)
                run.save_grid(f"{cfg.outimgf}/fake_samples_{step:06d}{mode}.png", layers.image)
                tag = f"_epoch_{epoch:03d}" if epoch_done else ""
                if epoch_done or step == total:
                    save_decomposition(run, layers, cfg.outimgf, tag + mode)
                if run.is_main:
                    ckpts.save(step, _state(objects, cfg, epoch, best))
            if step >= total:
                break
    bar.close()
    report_skipped_images(dataset)
    run.plot_losses(["loss_D", "loss_G"])
    run.close()
    return run


def compile_forward(*modules: nn.Module) -> None:
    """``torch.compile`` each module's ``forward`` in place: parameters, state dict keys and
    checkpoints stay those of the plain module (``decompose``, used for grids and the judge,
    runs eagerly)."""
    for module in modules:
        module.forward = torch.compile(module.forward)


def total_iterations(cfg: TrainConfig, per_epoch: int) -> int:
    """Iterations of the whole run (``--niter`` epochs, capped by ``--max_iters``); a
    ``--lr_decay_start`` the run never reaches is an error, not a silently constant rate."""
    total = cfg.niter * per_epoch
    if cfg.max_iters is not None:
        total = min(total, cfg.max_iters)
    if cfg.lr_decay_start is not None and cfg.lr_decay_start >= total:
        raise UserError(f"--lr_decay_start: {cfg.lr_decay_start} is not before the run's end "
                        f"at iteration {total} (the smaller of --niter x {per_epoch} iterations "
                        "per epoch and --max_iters); the learning rate would never decay")
    return total


def learning_rate(cfg: TrainConfig, step: int, total: int) -> float:
    """``--lr`` for iteration ``step`` (0-based) of ``total``: constant as in the original,
    or with ``--lr_decay_start`` falling linearly to 0 at the last iteration."""
    start = cfg.lr_decay_start
    if start is None or step < start:  # step < total, so past the start total > start
        return cfg.lr
    return cfg.lr * (total - step) / (total - start)


def _set_lr(optimizers, lr: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr


def _state(objects: dict, cfg: TrainConfig, epoch: int, best: float) -> dict:
    """What a checkpoint holds: the networks and optimisers, the flags, the epoch and the
    best per-epoch ``judge_fg_one_digit`` so far (``best_judged.pt`` holds that epoch's)."""
    return {**state_dicts(objects), "config": asdict(cfg), "epoch": epoch, "best_judged": best}


def _wants_judge(cfg: TrainConfig) -> bool:
    """Layer metrics need MNIST canvases and at least one foreground."""
    return cfg.judge_samples > 0 and cfg.ntimestep >= 2 and cfg.dataset.startswith("mnist")


def _judge_generator(netG: Generator, judge: Judge, cfg: TrainConfig, seed: int) -> dict:
    layers = generate(netG, cfg.judge_samples, batch=cfg.batchSize, seed=seed + 1,
                      mode=cfg.sample_mode)
    return {f"judge_{k}": v for k, v in layer_metrics(layers, judge).items()}


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
