"""The IcGAN pipeline: ``trainGAN`` -> generated dataset -> ``trainEncoder`` Z, then Y.

A run directory ``<outdir>/<NNNNN>-icgan-<dataset>/`` holds ``config.json`` and one folder
per stage (``gan/``, ``encoder_z/``, ``encoder_y/``), each with its own ``stats.jsonl``,
sample grids and ``checkpoints/``.  Every stage resumes from its newest checkpoint; the
encoder stages read G from ``gan/``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset

from ganlab_common.checkpoint import (
    CheckpointManager,
    atomic_save,
    load_state_dicts,
    state_dicts,
)
from ganlab_common.distributed import (
    DistContext,
    all_reduce_mean,
    barrier,
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
from ganlab_common.runs import Run, find_resume_point, merge_resume_config, seed_everything

from .data import Labels, load_dataset
from .models import Discriminator, Encoder, Generator, refresh_batchnorm

__all__ = [
    "GAN_FIELDS",
    "STAGES",
    "TrainConfig",
    "Trained",
    "d_loss",
    "g_loss",
    "generate_dataset",
    "load_trained",
    "sample_noise",
    "train",
]

STAGES = ("gan", "encoder-z", "encoder-y", "all")
#: Fields fixed by the GAN stage: encoder stages on an existing run take them from the run.
GAN_FIELDS = ("dataset", "load_size", "fine_size", "random_crop", "nz", "ngf", "ndf", "noise")
#: Fields a continued run always takes from its config.json (a flag with another value is an
#: error); every other field may change between the launches of one run.
RUN_FIELDS = (*GAN_FIELDS, "lr", "beta1", "batch_size", "train_wrong_y", "init", "split",
              "max_images", "seed")
DEFAULT_SAMPLES = {"celeba": 182638, "mnist": 10000}


@dataclass(frozen=True)
class TrainConfig:
    """Every option of ``icgan-train`` (names mirror ``cfg/mainConfig.lua``)."""

    stage: str = "all"  # gan | encoder-z | encoder-y | all
    dataset: str = "mnist"  # mnist | celeba (the original defaults to celebA)
    dataroot: str | None = None  # CelebA folder; MNIST IDX folder (None: embedded digits)
    outdir: str = "runs"  # runs go to <outdir>/<NNNNN>-icgan-<dataset>/
    run_dir: str | None = None  # an existing run to continue (default: the newest one)
    resume: bool = False  # continue the newest run instead of starting a new one
    # GAN (option 0)
    batch_size: int = 64
    load_size: int = 0  # 0: same as fine_size
    fine_size: int = 64
    random_crop: bool = False
    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    niter: int = 25  # GAN epochs
    lr: float = 2e-4
    beta1: float = 0.5
    noise: str = "normal"  # normal | uniform
    train_wrong_y: bool = True  # D also sees (real x, wrong y) as fake
    # encoders (options 1 and 2)
    split: float = 0.66  # first fraction trains, the rest is the test set (not shuffled)
    n_conv_layers: int = 4
    nf: int = 32
    fc_size_z: int = 0  # 0: the flattened conv size (the original's FCsz nil)
    fc_size_y: int = 512
    n_epochs: int = 15  # E_z epochs (and E_y's unless n_epochs_y)
    n_epochs_y: int = 0  # 0: same as n_epochs
    lr_z: float = 1e-4
    beta1_z: float = 0.1
    lr_y: float = 1e-4
    beta1_y: float = 0.1
    ey_data: str = "real"  # real (author code) | generated (Lasagne port)
    # generated dataset (option 3)
    samples: int = 0  # 0: 182638 for celeba (the original), 10000 for mnist
    gen_batch_size: int = 256
    # misc
    max_images: int = 0  # use only the first N training images (0: all)
    workers: int = 0
    save_every: int = 0  # extra checkpoint every N iterations (0: once per epoch)
    seed: int = 1
    device: str = "auto"
    init: str = "original"  # original | dcgan | pytorch (models.INITS)

    @property
    def n_samples(self) -> int:
        return self.samples or DEFAULT_SAMPLES[self.dataset]


# -- small pieces --------------------------------------------------------------------------
def sample_noise(n: int, nz: int, kind: str, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """z ``[n, nz]``: N(0, 1) (the author code) or U(-1, 1) (the Lasagne port)."""
    if kind == "uniform":
        z = torch.rand(n, nz, generator=generator) * 2 - 1
    else:
        z = torch.randn(n, nz, generator=generator)
    return z.to(device)


def d_loss(netD: nn.Module, real: torch.Tensor, y: torch.Tensor, y_wrong: torch.Tensor | None,
           fake: torch.Tensor, y_fake: torch.Tensor) -> torch.Tensor:
    """BCE(D(x, y), 1) + 1/2 BCE(D(x, y_wrong), 0) + 1/2 BCE(D(G(z, y'), y'), 0).

    Without ``y_wrong`` (``--no-trainWrongY``): BCE(D(x, y), 1) + BCE(D(G(z, y'), y'), 0).
    """
    out_real = netD(real, y)
    loss = F.binary_cross_entropy_with_logits(out_real, torch.ones_like(out_real))
    out_fake = netD(fake.detach(), y_fake)
    loss_fake = F.binary_cross_entropy_with_logits(out_fake, torch.zeros_like(out_fake))
    if y_wrong is None:
        return loss + loss_fake
    out_wrong = netD(real, y_wrong)
    loss_wrong = F.binary_cross_entropy_with_logits(out_wrong, torch.zeros_like(out_wrong))
    return loss + 0.5 * (loss_wrong + loss_fake)


def g_loss(netD: nn.Module, fake: torch.Tensor, y_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating: BCE(D(G(z, y'), y'), 1)."""
    out = netD(fake, y_fake)
    return F.binary_cross_entropy_with_logits(out, torch.ones_like(out))


def _stage_run(run_dir: Path, name: str, ctx: DistContext) -> Run:
    path = run_dir / name
    if ctx.is_main:
        path.mkdir(parents=True, exist_ok=True)
    barrier(ctx)
    return Run(path, is_main=ctx.is_main)


def _stage_ckpts(run_dir: Path, name: str) -> CheckpointManager:
    return CheckpointManager(run_dir / name / "checkpoints", prefix=name)


def _resume(stage: Run, objects: dict, device: torch.device) -> int:
    """Load the stage's newest loadable checkpoint into ``objects``; the step to continue from."""
    state = stage.checkpoints.load_latest(map_location=device)
    if state is None:
        return 0
    load_state_dicts(objects, state, str(stage.checkpoints.loaded_path))
    stage.truncate_stats(state["step"])
    return int(state["step"])


def _log(stage: Run, ctx: DistContext, step: int, bar, **scalars: float) -> None:
    scalars = {k: float(all_reduce_mean(float(v), ctx)) for k, v in scalars.items()}
    stage.log(step, **scalars)
    bar.set_postfix({k: f"{v:.3f}" for k, v in scalars.items() if k != "epoch"})


def _epoch_batches(loader, epoch: int, skip: int):
    set_epoch(loader, epoch)
    return islice(loader, skip, None)


# -- runs ----------------------------------------------------------------------------------
def _stored_config(run_dir: Path) -> dict:
    path = run_dir / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise UserError(
            f"--runDir: '{run_dir}' is not an icgan run (no readable config.json)"
        ) from None


def _stage_managers(run_dir: Path) -> list[CheckpointManager]:
    return [_stage_ckpts(run_dir, name) for name in ("encoder_y", "encoder_z", "gan")]


def _resolve_run(cfg: TrainConfig, is_main: bool = True) -> tuple[Path | None, TrainConfig]:
    """The run to continue (None: start a new one) and the config it continues with.

    ``--stage gan|all`` starts a new run unless ``--resume``/``--runDir``; ``--resume``
    continues the newest ``icgan-<dataset>`` run with a loadable checkpoint of any stage, the
    encoder stages the newest with a loadable GAN checkpoint.  A continued run keeps its
    stored :data:`RUN_FIELDS` (the GAN's shape with a note, a flag that changes another one
    is a one-line error) and the stored value of every other flag not given again.  Nothing
    is created here.
    """
    name = f"icgan-{cfg.dataset}"
    path = Path(cfg.run_dir) if cfg.run_dir else None
    if path is None and cfg.resume:
        path = find_resume_point(cfg.outdir, name, _stage_managers, announce=is_main).run_dir
    elif path is None and cfg.stage in ("encoder-z", "encoder-y"):
        try:
            path = find_resume_point(cfg.outdir, name, lambda d: [_stage_ckpts(d, "gan")],
                                     announce=is_main).run_dir
        except UserError:
            raise UserError(
                f"--stage {cfg.stage}: no {name} run in '{cfg.outdir}' has a gan checkpoint "
                "(train the GAN first with --stage gan)"
            ) from None
    if path is None:
        check_writable_dir(cfg.outdir, "--outdir")
        return None, cfg
    if not path.is_dir():
        raise UserError(f"--runDir: '{path}' is not a folder")
    stored = _stored_config(path)
    fixed = {k: stored[k] for k in GAN_FIELDS if k in stored and stored[k] != getattr(cfg, k)}
    for key, value in fixed.items():  # the GAN's shape: the run's own, with a note
        print(f"icgan: using {key}={value!r} from {path} (not {getattr(cfg, key)!r})")
    cfg = dataclasses.replace(cfg, **fixed)
    changeable = [f.name for f in dataclasses.fields(cfg) if f.name not in RUN_FIELDS]
    return path, merge_resume_config(stored, cfg, changeable, explicit_options(), path)


def _start_run(path: Path | None, cfg: TrainConfig, ctx: DistContext) -> Run:
    if path is None:
        return Run.start(cfg.outdir, f"icgan-{cfg.dataset}", cfg)
    run = Run(path, is_main=ctx.is_main)
    run.write_config(cfg)
    return run


def _gan_arch(cfg: TrainConfig, labels: Labels, nc: int) -> dict:
    return {"nz": cfg.nz, "ny": labels.ny, "ngf": cfg.ngf, "ndf": cfg.ndf, "nc": nc,
            "image_size": cfg.fine_size, "noise": cfg.noise}


def _fixed_grid_inputs(cfg: TrainConfig, labels: Labels) -> tuple[torch.Tensor, torch.Tensor]:
    """The z and y of the per-epoch grid: one row per y (a class / a real label vector),
    one column per fixed z."""
    gen = torch.Generator().manual_seed(cfg.seed)
    rows = torch.eye(10) * 2 - 1 if labels.kind == "onehot" else labels.pool[:8]
    cols = 10 if labels.kind == "onehot" else 8
    z = sample_noise(cols, cfg.nz, cfg.noise, generator=gen)
    z = z.repeat(len(rows), 1)  # [rows * cols, nz], same z down each column
    y = rows.repeat_interleave(cols, dim=0)  # [rows * cols, ny]
    return z, y


@torch.no_grad()
def _save_gan_grid(stage: Run, netG: Generator, z, y, name: str, device) -> None:
    """G in train mode (batch statistics), as ``trainGAN.lua:331`` drew its progress grids."""
    images = netG(z.to(device), y.to(device))
    stage.save_grid(name, images, nrow=10 if y.shape[1] == 10 else 8)


# -- stage 1: the conditional GAN ----------------------------------------------------------
def train_gan(cfg: TrainConfig, run: Run, ctx: DistContext, dataset: Dataset,
              labels: Labels, nc: int) -> None:
    """``trainGAN.lua``: one D step then one G step per batch, Adam, ``niter`` epochs."""
    device = ctx.device
    stage = _stage_run(run.dir, "gan", ctx)
    stage.checkpoints = _stage_ckpts(run.dir, "gan")
    arch = _gan_arch(cfg, labels, nc)
    netG = Generator(cfg.nz, labels.ny, cfg.ngf, nc, cfg.fine_size, cfg.init)
    netD = Discriminator(labels.ny, cfg.ndf, nc, cfg.fine_size, cfg.init)
    netG, netD = wrap_model(netG, ctx), wrap_model(netD, ctx)
    betas = (cfg.beta1, 0.999)
    optG = torch.optim.Adam(netG.parameters(), lr=cfg.lr, betas=betas)
    optD = torch.optim.Adam(netD.parameters(), lr=cfg.lr, betas=betas)
    objects = {"netG": netG, "netD": netD, "optG": optG, "optD": optD}
    loader = make_dataloader(dataset, cfg.batch_size, ctx, workers=cfg.workers, seed=cfg.seed)
    per_epoch = len(loader)
    total = cfg.niter * per_epoch
    step = _resume(stage, objects, device)
    grid_z, grid_y = _fixed_grid_inputs(cfg, labels)

    def save(step: int) -> None:
        if ctx.is_main:
            stage.checkpoints.save(step, {
                **state_dicts(objects), "arch": arch, "labels": labels.kind,
                "label_names": labels.names, "epoch": step / per_epoch,
                "finished": step >= total,
            })

    if step >= total:
        save(step)  # mark finished (e.g. after lowering --niter)
        barrier(ctx)
        return
    netG.train()
    netD.train()
    bar = stage.progress(total, initial=step, desc="gan")
    while step < total:
        epoch, offset = divmod(step, per_epoch)
        for x, y in _epoch_batches(loader, epoch, offset):
            x, y = x.to(device), y.to(device)
            y_fake = labels.sample(len(x)).to(device)
            y_wrong = labels.wrong(y).to(device) if cfg.train_wrong_y else None
            fake = netG(sample_noise(len(x), cfg.nz, cfg.noise, device), y_fake)
            # (1) D: maximise log D(x, y) + log(1 - D(x, y_wrong)) + log(1 - D(G(z, y'), y'))
            optD.zero_grad(set_to_none=True)
            errD = d_loss(netD, x, y, y_wrong, fake, y_fake)
            errD.backward()
            optD.step()
            # (2) G: maximise log D(G(z, y'), y')
            optG.zero_grad(set_to_none=True)
            errG = g_loss(netD, fake, y_fake)
            errG.backward()
            optG.step()
            step += 1
            check_finite_losses(step, {"lossD": errD, "lossG": errG}, ctx)
            bar.update(1)
            end_of_epoch = step % per_epoch == 0
            if step % 10 == 0 or end_of_epoch:
                _log(stage, ctx, step, bar, epoch=step / per_epoch, lossD=errD.item(),
                     lossG=errG.item())
            if end_of_epoch or (cfg.save_every and step % cfg.save_every == 0):
                save(step)
        _save_gan_grid(stage, unwrap(netG), grid_z, grid_y, f"samples_epoch{epoch + 1:03d}.png",
                       device)
    bar.close()
    barrier(ctx)  # the other ranks read rank 0's final checkpoint next


# -- the generated dataset -----------------------------------------------------------------
def refresh_generator(netG: Generator, labels: Labels, noise: str, batch_size: int,
                      device: torch.device, seed: int) -> None:
    """Refresh G's BatchNorm statistics (100 train-mode passes of ``batch_size``), then eval()."""
    gen = torch.Generator().manual_seed(seed + 1)

    def one_batch():
        index = torch.randint(len(labels.pool), (batch_size,), generator=gen)
        z = sample_noise(batch_size, netG.nz, noise, generator=gen)
        return z.to(device), labels.pool[index].to(device)

    refresh_batchnorm(netG, one_batch, passes=100)


@torch.no_grad()
def generate_dataset(netG: Generator, labels: Labels, n: int, noise: str, batch_size: int,
                     device: torch.device, seed: int) -> dict[str, torch.Tensor]:
    """``generateEncoderDataset.lua``: n triples ``(G(z, y), z, y)``, z ~ noise and y the
    real training labels, permuted.  ``netG`` should be refreshed and in eval mode.

    Returns ``x`` uint8 ``[n, C, S, S]`` (quantised like real photos), ``z [n, nz]``,
    ``y [n, ny]``.
    """
    gen = torch.Generator().manual_seed(seed)
    rounds = -(-n // len(labels.pool))
    order = torch.cat([torch.randperm(len(labels.pool), generator=gen) for _ in range(rounds)])
    y = labels.pool[order[:n]]
    z = sample_noise(n, netG.nz, noise, generator=gen)
    chunks = []
    for start in range(0, n, batch_size):
        end = start + batch_size
        images = netG(z[start:end].to(device), y[start:end].to(device))
        chunks.append(((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
    return {"x": torch.cat(chunks), "z": z, "y": y}


def _load_generated(cfg: TrainConfig, run: Run, ctx: DistContext, netG: Generator,
                    labels: Labels) -> dict[str, torch.Tensor]:
    """The encoder dataset of this run (made once, saved as ``encoder_z/generated.pt``
    together with the refreshed G it was made with).  Leaves ``netG`` refreshed, in eval()."""
    path = run.dir / "encoder_z" / "generated.pt"
    if ctx.is_main and not path.exists():
        print(f"icgan: generating {cfg.n_samples} images for the encoders -> {path}")
        refresh_generator(netG, labels, cfg.noise, cfg.gen_batch_size, ctx.device, cfg.seed)
        data = generate_dataset(netG, labels, cfg.n_samples, cfg.noise, cfg.gen_batch_size,
                                ctx.device, cfg.seed)
        atomic_save({**data, "netG": netG.state_dict()}, path)
    barrier(ctx)
    data = torch.load(path, map_location="cpu", weights_only=True)
    netG.load_state_dict(data.pop("netG"))
    netG.eval()
    return data


# -- stages 2 and 3: the encoders ----------------------------------------------------------
def _encoder(cfg: TrainConfig, n_out: int, nc: int, fc_size: int) -> tuple[Encoder, dict]:
    arch = {"n_out": n_out, "nc": nc, "image_size": cfg.fine_size,
            "n_conv": cfg.n_conv_layers, "nf": cfg.nf, "fc_size": fc_size}
    return Encoder(**arch, init=cfg.init), arch


def _split(dataset: Dataset, fraction: float) -> tuple[Dataset, Dataset]:
    """The first ``fraction`` trains, the rest tests (not shuffled, as the original)."""
    n = len(dataset)
    cut = min(max(int(n * fraction), 1), n)
    return Subset(dataset, range(cut)), Subset(dataset, range(cut, n))


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 127.5 - 1 if x.dtype == torch.uint8 else x


@torch.no_grad()
def _evaluate_encoder(net: nn.Module, test: Dataset, batch_size: int, device,
                      labels: Labels | None) -> dict[str, float]:
    """Test MSE (and the accuracy of binarised outputs for E_y)."""
    net.eval()
    loss = correct = count = 0.0
    for start in range(0, len(test), batch_size):
        x, target = _stack(test, range(start, min(start + batch_size, len(test))))
        out = net(_to_float(x).to(device))
        target = target.to(device)
        loss += F.mse_loss(out, target, reduction="sum").item() / target.shape[1]
        if labels is not None:
            hit = labels.binarize(out) == target
            correct += (hit.all(1) if labels.kind == "onehot" else hit.float().mean(1)).sum().item()
        count += len(x)
    net.train()
    result = {"test_mse": loss / max(count, 1)}
    if labels is not None:
        result["test_acc"] = correct / max(count, 1)
    return result


def _stack(dataset: Dataset, index) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[i] for i in index]
    return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])


def fit_encoder(cfg: TrainConfig, run: Run, ctx: DistContext, name: str, net: Encoder,
                arch: dict, lr: float, beta1: float, data: Dataset,
                labels: Labels | None, grid: Callable[[Encoder], torch.Tensor]) -> Encoder:
    """``trainEncoder.lua``: MSE regression of z (E_z) or y (E_y), ``n_epochs`` epochs, Adam."""
    device = ctx.device
    stage = _stage_run(run.dir, name, ctx)
    stage.checkpoints = _stage_ckpts(run.dir, name)
    train_set, test_set = _split(data, cfg.split)
    model = wrap_model(net, ctx)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(beta1, 0.999))
    objects = {"net": model, "opt": opt}
    loader = make_dataloader(train_set, min(cfg.batch_size, len(train_set)), ctx,
                             workers=cfg.workers, seed=cfg.seed)
    per_epoch = len(loader)
    epochs = (cfg.n_epochs_y or cfg.n_epochs) if name == "encoder_y" else cfg.n_epochs
    total = epochs * per_epoch
    step = _resume(stage, objects, device)

    def save(step: int) -> None:
        if ctx.is_main:
            stage.checkpoints.save(step, {**state_dicts(objects), "arch": arch,
                                          "epoch": step / per_epoch, "finished": step >= total})

    if step >= total:
        save(step)
        barrier(ctx)
        return unwrap(model)
    model.train()
    bar = stage.progress(total, initial=step, desc=name)
    while step < total:
        epoch, offset = divmod(step, per_epoch)
        for x, target in _epoch_batches(loader, epoch, offset):
            x, target = _to_float(x).to(device), target.to(device)
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(x), target)
            loss.backward()
            opt.step()
            step += 1
            check_finite_losses(step, {"loss": loss}, ctx)
            bar.update(1)
            end_of_epoch = step % per_epoch == 0
            if end_of_epoch:
                scores = _evaluate_encoder(unwrap(model), test_set, 256, device,
                                           labels) if len(test_set) else {}
                _log(stage, ctx, step, bar, epoch=step / per_epoch, loss=loss.item(), **scores)
            elif step % 10 == 0:
                _log(stage, ctx, step, bar, epoch=step / per_epoch, loss=loss.item())
            if end_of_epoch or (cfg.save_every and step % cfg.save_every == 0):
                save(step)
        if ctx.is_main:
            stage.save_grid(f"reconstructions_epoch{epoch + 1:03d}.png", grid(unwrap(model)),
                            nrow=8)
    bar.close()
    barrier(ctx)
    return unwrap(model)


# -- loading a trained run -----------------------------------------------------------------
@dataclass
class Trained:
    """What a finished (or partly finished) run holds; missing stages are None."""

    run_dir: Path
    config: dict
    labels_kind: str
    label_names: list[str]
    noise: str
    netG: Generator
    netEz: Encoder | None
    netEy: Encoder | None


def _load_stage(run_dir: Path, name: str, device, flag: str, required: bool = True):
    manager = _stage_ckpts(run_dir, name)
    state = manager.load_latest(map_location=device, restore_rng=False, flag=flag)
    if state is None and required:
        raise UserError(f"{flag}: no {name} checkpoint in '{run_dir}' (train that stage first)")
    return state


def _finished_gan(run_dir: Path, device, flag: str) -> dict:
    state = _load_stage(run_dir, "gan", device, flag)
    if not state.get("finished"):
        raise UserError(
            f"{flag}: the GAN in '{run_dir}' stopped at epoch {state['epoch']:.2f}; "
            "finish it first with --stage gan --resume"
        )
    return state


def _build_generator(gan: dict, device) -> Generator:
    arch = gan["arch"]
    netG = Generator(arch["nz"], arch["ny"], arch["ngf"], arch["nc"], arch["image_size"])
    netG.load_state_dict(gan["netG"])
    return netG.to(device)


def _build_encoder(state: dict | None, device) -> Encoder | None:
    if state is None:
        return None
    net = Encoder(**state["arch"]).to(device)
    net.load_state_dict(state["net"])
    return net.eval()


def load_trained(run_dir: str | Path, device: torch.device | str = "cpu",
                 flag: str = "--runDir", need_encoders: bool = True) -> Trained:
    """G (and E_z, E_y) from the newest checkpoints of ``run_dir``, in eval mode."""
    run_dir = Path(run_dir)
    config = _stored_config(run_dir)
    gan = _load_stage(run_dir, "gan", device, flag)
    netG = _build_generator(gan, device)
    refreshed = run_dir / "encoder_z" / "generated.pt"
    if refreshed.is_file():  # the BN statistics the encoders were trained with
        netG.load_state_dict(torch.load(refreshed, map_location=device, weights_only=True)["netG"])
    netG.eval()
    netEz = _build_encoder(_load_stage(run_dir, "encoder_z", device, flag, need_encoders), device)
    netEy = _build_encoder(_load_stage(run_dir, "encoder_y", device, flag, need_encoders), device)
    return Trained(run_dir, config, gan["labels"], gan["label_names"], gan["arch"]["noise"],
                   netG, netEz, netEy)


# -- the pipeline --------------------------------------------------------------------------
@torch.no_grad()
def _reconstruction_grid(netG: Generator, netEz: Encoder, x: torch.Tensor,
                         y_of: Callable[[torch.Tensor], torch.Tensor], device) -> torch.Tensor:
    """Top row: ``x [n, C, S, S]``; bottom row: G(E_z(x), y_of(x)); encoders in eval mode."""
    was_training = netEz.training
    netEz.eval()
    x = _to_float(x).to(device)
    rec = netG(netEz(x), y_of(x).to(device))
    netEz.train(was_training)
    return torch.cat([x, rec])  # [2n, C, S, S]


def train(cfg: TrainConfig) -> Path:
    """Run the stages ``cfg.stage`` asks for; returns the run directory."""
    ctx = setup_distributed(cfg.device)
    try:
        path, cfg = _resolve_run(cfg, ctx.is_main)
        seed_everything(cfg.seed + ctx.rank)
        dataset, labels = load_dataset(cfg.dataset, cfg.dataroot, "train", cfg.load_size,
                                       cfg.fine_size, cfg.random_crop, flip=cfg.dataset == "celeba",
                                       max_images=cfg.max_images)
        if len(dataset) < cfg.batch_size:
            raise UserError(f"--batchSize: {cfg.batch_size} is more than the "
                            f"{len(dataset)} training images")
        if cfg.stage in ("encoder-z", "encoder-y"):
            _finished_gan(path, ctx.device, f"--stage {cfg.stage}")
        run = _start_run(path, cfg, ctx)
        nc = 1 if cfg.dataset == "mnist" else 3
        if cfg.stage in ("gan", "all"):
            train_gan(cfg, run, ctx, dataset, labels, nc)
        if cfg.stage in ("encoder-z", "encoder-y", "all"):
            _train_encoders(cfg, run, ctx, dataset, labels, nc)
        return run.dir
    finally:
        cleanup_distributed()


def _first(dataset: Dataset, n: int = 8) -> torch.Tensor:
    return _stack(dataset, range(min(n, len(dataset))))[0]


def _train_encoders(cfg: TrainConfig, run: Run, ctx: DistContext, dataset: Dataset,
                    labels: Labels, nc: int) -> None:
    flag = f"--stage {cfg.stage}"
    gan = _finished_gan(run.dir, ctx.device, flag)
    netG = _build_generator(gan, ctx.device)
    generated = _load_generated(cfg, run, ctx, netG, labels)
    gen_set = TensorDataset(generated["x"], generated["z"])
    netEz = None
    if cfg.stage in ("encoder-z", "all"):
        shown = _split(TensorDataset(generated["x"], generated["y"]), cfg.split)[1] or gen_set
        x_shown, y_shown = _stack(shown, range(min(8, len(shown))))
        net, arch_z = _encoder(cfg, cfg.nz, nc, cfg.fc_size_z)
        netEz = fit_encoder(
            cfg, run, ctx, "encoder_z", net, arch_z, cfg.lr_z, cfg.beta1_z, gen_set, None,
            lambda e: _reconstruction_grid(netG, e, x_shown, lambda _: y_shown, ctx.device),
        )
    if cfg.stage in ("encoder-y", "all"):
        if netEz is None:
            netEz = _build_encoder(_load_stage(run.dir, "encoder_z", ctx.device, flag,
                                               required=False), ctx.device)
        if cfg.ey_data == "generated":  # the Lasagne port
            data = TensorDataset(generated["x"], generated["y"])
        else:  # the author code: real images and their labels
            data = dataset
        x_shown = _first(_split(data, cfg.split)[1] or data)

        def grid(e: Encoder) -> torch.Tensor:
            if netEz is None:  # no E_z yet: show E_y's inputs only
                return _to_float(x_shown)
            was_training = e.training
            e.eval()
            images = _reconstruction_grid(netG, netEz, x_shown, lambda x: labels.binarize(e(x)),
                                          ctx.device)
            e.train(was_training)
            return images

        net, arch_y = _encoder(cfg, labels.ny, nc, cfg.fc_size_y)
        fit_encoder(cfg, run, ctx, "encoder_y", net, arch_y, cfg.lr_y, cfg.beta1_y, data,
                    labels, grid)
