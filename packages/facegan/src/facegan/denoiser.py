"""``facegan-denoiser`` (``train_denoiser.lua``) and ``facegan-autoencoder``
(``train_autoencoder.lua``): the two auxiliary networks of face-generator.

The denoiser corrupts real faces with N(0, 0.1) noise and learns to restore them (BCE); a
second, cloned decoder learns to refine the first one's output.  The original stepped both
decoders with **one shared Adam state table** (``optim.adam(..., OPTSTATE.adam)`` twice), so
each update used moment estimates polluted by the other network's gradients; here each
decoder has its own Adam.  ``facegan-train --denoise`` loads ``denoiser_CxSxS.pt`` from the
newest ``denoiser-CxSxS`` run in ``--save``.

The autoencoder is the legacy MLP (1024 -> 512 -> 256 tanh -> dropout -> 256 -> 1024,
L1 loss, Adam); the original was hard-coded to a local lfwcrop_grey folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from ganlab_common.checkpoint import atomic_save, load_checkpoint, load_state_dicts, state_dicts
from ganlab_common.errors import UserError
from ganlab_common.runs import Run, resolve_device, seed_everything

from .data import check_channels, load_faces, resolve_source
from .models import SCALES, Denoiser, MLPAutoencoder
from .training import regularise_and_clamp

__all__ = ["AutoencoderConfig", "DenoiserConfig", "train_autoencoder", "train_denoiser"]


@dataclass(frozen=True)
class DenoiserConfig:
    """Every flag of ``facegan-denoiser`` (``train_denoiser.lua``'s names and defaults)."""

    save: str = "runs/facegan"
    saveFreq: int = 10  # noqa: N815 -- original 50 (its runs never ended)
    network: str = ""
    noplot: bool = False
    batchSize: int = 128  # noqa: N815
    coefL1: float = 0.0  # noqa: N815
    coefL2: float = 0.0  # noqa: N815
    AE_clamp: float = 1.0  # noqa: N815
    window: int = 10
    scale: int = 16
    seed: int = 1
    grayscale: bool | None = None
    epochs: int = 20  # new: the original looped forever
    N_train: int = 10000  # noqa: N815 -- the original's training-set size
    dataset: str | None = None
    device: str = "auto"
    resume: bool = False


@dataclass(frozen=True)
class AutoencoderConfig:
    """Every flag of ``facegan-autoencoder`` (``train_autoencoder.lua``'s names/defaults)."""

    save: str = "runs/facegan"
    saveFreq: int = 10  # noqa: N815 -- original 50
    network: str = ""
    noplot: bool = False
    learningRate: float = 1e-3  # noqa: N815 -- Adam's rate (the original's 0.02 was unused)
    batchSize: int = 128  # noqa: N815
    coefL1: float = 0.0  # noqa: N815
    coefL2: float = 0.0  # noqa: N815
    noiseDim: int = 256  # noqa: N815
    scale: int = 32
    seed: int = 1
    grayscale: bool | None = None
    epochs: int = 20
    N_train: int = 10000  # noqa: N815
    dataset: str | None = None
    device: str = "auto"
    resume: bool = False


def _split(size: int, n_train: int) -> tuple[list[int], list[int]]:
    """The original's first ``n_train`` images for training and the next 256 for validation
    (fewer, from the end, when the dataset is small)."""
    val = min(256, max(1, size // 8))
    train = min(n_train, size - val)
    return list(range(train)), list(range(size - val, size))


def _check(scale: int, batch: int, n_train: int) -> None:
    if scale not in SCALES:
        raise UserError(f"--scale: expected one of {', '.join(map(str, SCALES))}, got {scale}")
    if batch < 2:
        raise UserError(f"--batchSize: expected >= 2 (BatchNorm), got {batch}")
    if n_train < batch:
        raise UserError(f"--N_train: expected at least one batch ({batch}), got {n_train}")


def _loader(dataset, indices: list[int], batch: int, seed: int, epoch: int) -> DataLoader:
    gen = torch.Generator().manual_seed(seed * 1000 + epoch)
    return DataLoader(Subset(dataset, indices), batch_size=batch, shuffle=True, drop_last=True,
                      generator=gen)


def _grid(run: Run, name: str, rows: list[torch.Tensor]) -> None:
    run.save_grid(name, torch.cat([r[:16] for r in rows]), nrow=16, value_range=(0, 1))


def _resume(run: Run, cfg, objects: dict, device: torch.device) -> tuple[int, int]:
    if not cfg.resume:
        return 0, 0
    state = run.checkpoints.load_latest(map_location=device)
    if state is None:
        return 0, 0
    load_state_dicts(objects, state, source=str(run.checkpoints.latest()))
    run.truncate_stats(state["step"])
    print(f"resumed at epoch {state['epoch']}, iteration {state['step']}")
    return state["step"], state["epoch"]


# ---------------------------------------------------------------------------------------------
def _build(cfg, make: Callable[[int], nn.Module], key: str, channels: int,
           device: torch.device) -> nn.Module:
    """``make(channels)``, with the weights of ``--network`` (entry ``key``) when given."""
    model = make(channels)
    if cfg.network:
        state = load_checkpoint(cfg.network, flag="--network")
        load_state_dicts({key: model}, state, source=f"--network '{cfg.network}'")
    return model.to(device)


def _train_val_split(cfg, size: int) -> tuple[list[int], list[int]]:
    """``_split`` of ``size`` images, checking that one batch fits into the training part."""
    train_idx, val_idx = _split(size, cfg.N_train)
    if len(train_idx) < cfg.batchSize:
        raise UserError(f"--batchSize: {cfg.batchSize} is more than the {len(train_idx)} "
                        "training images")
    return train_idx, val_idx


def _start_run(cfg, kind: str, channels: int, source) -> tuple[Run, str]:
    """The run folder ``<kind>-CxSxS`` (config with channels and data source) and its tag."""
    tag = f"{channels}x{cfg.scale}x{cfg.scale}"
    run = Run.start(cfg.save, f"{kind}-{tag}", {**asdict(cfg), "channels": channels,
                                               "source": asdict(source)},
                    resume=cfg.resume, ckpt_keep=2)
    return run, tag


# ---------------------------------------------------------------------------------------------
def train_denoiser(cfg: DenoiserConfig) -> Run:
    """Train the two-decoder denoiser; exports ``denoiser_CxSxS.pt`` into the run folder."""
    _check(cfg.scale, cfg.batchSize, cfg.N_train)
    device = resolve_device(cfg.device)
    source = resolve_source(cfg.dataset)
    channels = check_channels(source, cfg.grayscale)
    seed_everything(cfg.seed)
    model = _build(cfg, lambda c: Denoiser(c, cfg.scale), "denoiser", channels, device)
    dataset = load_faces(source, cfg.scale, channels)
    train_idx, val_idx = _train_val_split(cfg, len(dataset))
    opt1 = torch.optim.Adam(model.decoder.parameters())
    opt2 = torch.optim.Adam(model.decoder2.parameters())  # own state: the original shared one
    run, tag = _start_run(cfg, "denoiser", channels, source)
    objects = {"denoiser": model, "opt1": opt1, "opt2": opt2}
    step, start = _resume(run, cfg, objects, device)
    val = torch.stack([dataset[i] for i in val_idx]).to(device)
    per_epoch = len(train_idx) // cfg.batchSize
    bar = run.progress(cfg.epochs * per_epoch, initial=step, desc=f"denoiser-{tag}")
    for epoch in range(start, cfg.epochs):
        sums, t0 = [0.0, 0.0], time.time()
        for x in _loader(dataset, train_idx, cfg.batchSize, cfg.seed, epoch):
            losses = denoiser_step(model, opt1, opt2, x.to(device), cfg)
            sums = [s + v for s, v in zip(sums, losses)]
            step += 1
            bar.update(1)
            bar.set_postfix(loss1=f"{losses[0]:.4f}", loss2=f"{losses[1]:.4f}")
        val1, val2 = _validate(model, val)
        run.log(step, epoch=epoch + 1, loss1=sums[0] / per_epoch, loss2=sums[1] / per_epoch,
                val_loss1=val1, val_loss2=val2, it_per_s=round(per_epoch / (time.time() - t0), 3))
        last = epoch + 1 == cfg.epochs
        if (epoch + 1) % cfg.saveFreq == 0 or last:
            if not cfg.noplot or last:
                _grid(run, f"denoiser_e{epoch + 1:04d}.png", _show(model, val, cfg.seed))
            if run.is_main:
                run.checkpoints.save(step, {**state_dicts(objects), "epoch": epoch + 1})
                atomic_save({"denoiser": model.state_dict(), "channels": channels,
                             "scale": cfg.scale}, run.dir / f"denoiser_{tag}.pt")
    bar.close()
    run.close()
    return run


def denoiser_step(model: Denoiser, opt1: torch.optim.Optimizer, opt2: torch.optim.Optimizer,
                  x: torch.Tensor, cfg: DenoiserConfig) -> tuple[float, float]:
    """Decoder 1 restores noisy ``x [B, C, S, S]``; decoder 2 refines decoder 1's output."""
    first = model.decoder(model.corrupt(x))
    loss1 = F.binary_cross_entropy(first, x)
    opt1.zero_grad(set_to_none=True)
    loss1.backward()
    regularise_and_clamp(model.decoder.parameters(), cfg.coefL1, cfg.coefL2, cfg.AE_clamp)
    opt1.step()
    second = model.decoder2(first.detach())
    loss2 = F.binary_cross_entropy(second, x)
    opt2.zero_grad(set_to_none=True)
    loss2.backward()
    regularise_and_clamp(model.decoder2.parameters(), cfg.coefL1, cfg.coefL2, cfg.AE_clamp)
    opt2.step()
    return loss1.item(), loss2.item()


@torch.no_grad()
def _show(model: Denoiser, val: torch.Tensor, seed: int) -> list[torch.Tensor]:
    """Rows: clean, noisy (N(0, 0.1)), decoder 1 on noisy, decoder 2 on that."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(val.shape, generator=gen).to(val.device) * model.noise_std
    noisy = (val + noise).clamp(0, 1)
    model.eval()
    first, second = model(noisy)
    model.train()
    return [val, noisy, first, second]


@torch.no_grad()
def _validate(model: Denoiser, val: torch.Tensor) -> tuple[float, float]:
    model.eval()
    first, second = model(val)
    model.train()
    return F.binary_cross_entropy(first, val).item(), F.binary_cross_entropy(second, val).item()


# ---------------------------------------------------------------------------------------------
def train_autoencoder(cfg: AutoencoderConfig) -> Run:
    """Train the MLP autoencoder; exports ``autoencoder_CxSxS.pt`` into the run folder."""
    _check(cfg.scale, cfg.batchSize, cfg.N_train)
    device = resolve_device(cfg.device)
    source = resolve_source(cfg.dataset)
    channels = check_channels(source, cfg.grayscale)
    seed_everything(cfg.seed)
    model = _build(cfg, lambda c: MLPAutoencoder(c, cfg.scale, cfg.noiseDim), "autoencoder",
                   channels, device)
    dataset = load_faces(source, cfg.scale, channels)
    train_idx, val_idx = _train_val_split(cfg, len(dataset))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learningRate)
    run, tag = _start_run(cfg, "autoencoder", channels, source)
    objects = {"autoencoder": model, "opt": opt}
    step, start = _resume(run, cfg, objects, device)
    val = torch.stack([dataset[i] for i in val_idx]).to(device)
    per_epoch = len(train_idx) // cfg.batchSize
    bar = run.progress(cfg.epochs * per_epoch, initial=step, desc=f"autoencoder-{tag}")
    for epoch in range(start, cfg.epochs):
        total, t0 = 0.0, time.time()
        for x in _loader(dataset, train_idx, cfg.batchSize, cfg.seed, epoch):
            loss = autoencoder_step(model, opt, x.to(device), cfg)
            total += loss
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
        with torch.no_grad():
            model.eval()
            decoded = model(val)
            model.train()
        run.log(step, epoch=epoch + 1, loss=total / per_epoch,
                val_loss=F.l1_loss(decoded, val).item(),
                it_per_s=round(per_epoch / (time.time() - t0), 3))
        last = epoch + 1 == cfg.epochs
        if (epoch + 1) % cfg.saveFreq == 0 or last:
            if not cfg.noplot or last:
                _grid(run, f"autoencoder_e{epoch + 1:04d}.png", [val, decoded])
            if run.is_main:
                run.checkpoints.save(step, {**state_dicts(objects), "epoch": epoch + 1})
                atomic_save({"autoencoder": model.state_dict(), "channels": channels,
                             "scale": cfg.scale, "noiseDim": cfg.noiseDim},
                            run.dir / f"autoencoder_{tag}.pt")
    bar.close()
    run.close()
    return run


def autoencoder_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                     cfg: AutoencoderConfig) -> float:
    """One Adam step of the L1 reconstruction loss (``nn.AbsCriterion``) on ``x [B, C, S, S]``."""
    loss = F.l1_loss(model(x), x)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    regularise_and_clamp(model.parameters(), cfg.coefL1, cfg.coefL2, 0)
    opt.step()
    return loss.item()
