"""The training loop of crVAE-GAN / acVAE-GAN (and the plain VAE / cGAN baselines).

One iteration (``train_test_lstm.lua`` with its bugs fixed):

1. encode x, sample z ~ q(z|x), decode the reconstruction; sample z_p ~ p(z|y), decode;
2. D batch: with ``-fakeLabel k`` row i is a reconstruction when ``i % k == 0``, a prior sample
   when ``(i+1) % k == 0``, a real image with shuffled attributes (conditional models) when
   ``(i+2) % k == 0``, else real.  D is updated only when its BCE is above ``-margin``;
   the MI head regresses the decoder's ``u`` from D's features of the fake rows;
3. encoder / decoder / prior: ``recon.mean() + sum_t alpha_t KL_t / N`` plus, on the same D
   batch with the fakes attached, ``beta * GAN + kappa * MI`` for *both* the reconstruction
   and the prior pass (the original swapped kappa and beta in the prior pass).

Each module has its own Adam (encoder, variance LSTM, decoder LSTM, decoder, D trunk, D head,
MI head, and the conditional prior): the LSTMs at LR / T with gradients clamped to
``+-grad_clip``, the D trunk at LR / 2, the D head with the ``adam_gan`` warm-up.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, Subset

from ganlab_common.checkpoint import (
    load_checkpoint,
    load_state_dicts,
    restore_rng_state,
)
from ganlab_common.data import report_skipped_images
from ganlab_common.distributed import make_dataloader, set_epoch, setup_distributed
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

from .config import Config, model_spec, run_name, validate
from .data import binarize, fixed_binarize, load_dataset
from .losses import (
    attention_regularizers,
    gan_loss,
    importance_nll,
    kl_elements,
    kl_weights,
    mi_loss,
    recon_loss,
    weighted_kl,
)
from .models import CRVAE, Discriminator, ModelSpec, build_models

__all__ = ["train", "Trainer", "adam_gan_scale", "fade_weight"]

#: Flags that may differ from the stored run on -resume (the rest come from its config.json).
RESUME_CHANGEABLE = ("nEpochs", "epochStep", "nSampleFinal", "print_freq", "ckptFreq", "save",
                     "data", "binaryMNIST", "retrain", "optimState", "stage1",
                     "init_weight_from", "init_state_from", "device", "resume")
_NEW_LAYERS = ("from_rgb128", "encoder_conv", "decoder_conv", "to_rgb128", "disc_conv")


def adam_gan_scale(updates: int) -> float:
    """LR factor of the D head (``adam_gan``): 1/50 for 10 updates, 1/5 up to 30, then 1."""
    if updates < 10:
        return 1 / 50
    if updates < 30:
        return 1 / 5
    return 1.0


def fade_weight(epoch: int, n_epochs: int, max_alpha: float) -> float:
    """Stage-2 fade-in ``a = min((epoch - 1) / (nEpochs / 2), max_alpha)`` (epoch from 1)."""
    return min((epoch - 1) / max(n_epochs / 2, 1e-8), max_alpha)


def _set_bn(modules: list[nn.Module], momentum: float, eps: float) -> None:
    for m in modules:
        for layer in m.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.momentum, layer.eps = momentum, eps


def _groups(module: nn.Module, lr_mult: float) -> list[dict]:
    """Parameter groups of ``module``: stage-2 layers at scale 1, pretrained ones at LR_mult."""
    new, old = [], []
    for name, p in module.named_parameters():
        (new if any(k in name for k in _NEW_LAYERS) else old).append(p)
    groups = [{"params": old, "scale": lr_mult}]
    if new:
        groups.append({"params": new, "scale": 1.0})
    return [g for g in groups if g["params"]]


def _global_mean(value: float) -> float:
    """``value`` averaged over the torchrun ranks (itself in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.item() / dist.get_world_size()


def _broadcast_from_rank0(modules: list[nn.Module | None]) -> None:
    """Every rank starts from rank 0's weights and buffers (ranks are seeded differently)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    for module in modules:
        if module is not None:
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, 0)


class Trainer:
    """Models, optimisers and one training iteration; the loop lives in :func:`train`."""

    def __init__(self, cfg: Config, spec: ModelSpec, device: torch.device):
        self.cfg, self.spec, self.device = cfg, spec, device
        g, d = build_models(spec)
        self.G: CRVAE = g.to(device)
        self.D: Discriminator | None = d.to(device) if d is not None else None
        _set_bn([m for m in (self.G, self.D) if m is not None], cfg.mom, cfg.eps)
        self.kl_w = kl_weights(cfg.alpha, cfg.alpha1, cfg.alpha2, spec.steps).to(device)
        self.d_updates = 0
        self.modules = self._module_table()
        self.optims = {
            name: torch.optim.Adam(
                _groups(mod, cfg.LR_mult if cfg.stage == 2 else 1.0),
                lr=cfg.LR * factor, betas=(cfg.beta1, 0.999),
            )
            for name, (mod, factor, _) in self.modules.items()
        }

    # -- set-up ------------------------------------------------------------------------------
    def _module_table(self) -> dict[str, tuple[nn.Module, float, bool]]:
        """name -> (module, LR factor, clamp grads); one Adam per entry."""
        g, steps = self.G, self.spec.steps
        lstm = self.spec.kind == "lstm"
        table: dict[str, tuple[nn.Module, float, bool]] = {}
        if self.spec.has_encoder:
            enc = nn.ModuleList([g.encoder] + [m for n, m in g.latent.named_children()
                                               if n != "var"])
            enc.register_parameter("mu0", getattr(g.latent, "mu0", None))
            table["encoder"] = (enc, 1.0, False)
            table["enc_rnn"] = (g.latent.var, 1 / steps if lstm else 1.0, lstm)
        if any(True for _ in g.decoder_rnn.parameters()):
            table["dec_rnn"] = (g.decoder_rnn, 1 / steps if lstm else 1.0, lstm)
        table["decoder"] = (g.decoder, 1.0, False)
        if self.spec.conditional and self.spec.latent_type != "cgan":
            table["prior"] = (nn.ModuleList([g.prior, g.attention]), 1.0, lstm)
        elif self.spec.attention:
            table["prior"] = (g.attention, 1.0, False)
        if self.D is not None:
            table["disc"] = (self.D.trunk, 0.5, False)
            table["disc_head"] = (self.D.head, 1.0, False)
            table["mi_head"] = (self.D.mi_head, 1.0, False)
        return {k: v for k, v in table.items() if any(True for _ in v[0].parameters())}

    def set_epoch_lr(self, epoch: int) -> None:
        """LR * decayLR ** ((epoch - 1) // step) for every group (epoch from 1)."""
        base = self.cfg.LR * self.cfg.decayLR ** ((epoch - 1) // max(self.cfg.step, 1))
        for name, opt in self.optims.items():
            factor = self.modules[name][1]
            if name == "disc_head":
                factor *= adam_gan_scale(self.d_updates)
            for group in opt.param_groups:
                group["lr"] = base * factor * group["scale"]
                group["base_lr"] = base * self.modules[name][1] * group["scale"]

    def set_fade(self, a: float) -> None:
        self.G.set_fade(a)
        if self.D is not None:
            self.D.set_fade(a)

    def train_mode(self, on: bool = True) -> None:
        self.G.train(on)
        if self.D is not None:
            self.D.train(on)

    # -- one iteration ---------------------------------------------------------------------
    def _step(self, names: list[str], loss: torch.Tensor) -> None:
        for n in names:
            self.optims[n].zero_grad(set_to_none=True)
        loss.backward()
        params = [p for n in names for p in self.modules[n][0].parameters()]
        if dist.is_available() and dist.is_initialized():
            world = dist.get_world_size()
            for p in params:
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= world
        for n in names:
            if self.modules[n][2]:
                for p in self.modules[n][0].parameters():
                    if p.grad is not None:
                        p.grad.clamp_(-self.cfg.grad_clip, self.cfg.grad_clip)
            self.optims[n].step()

    def _mix(self, x_img, rec_img, prior_img, y):
        """The D batch: rows by ``i % fakeLabel``; returns (images, y, labels, masks)."""
        n, k = x_img.shape[0], self.cfg.fakeLabel
        i = torch.arange(n, device=x_img.device)
        is_rec = (i % k == 0) if rec_img is not None else torch.zeros_like(i, dtype=torch.bool)
        is_prior = ((i + 1) % k == 0) | ((i % k == 0) & ~is_rec)
        is_wrong = ((i + 2) % k == 0) & ~is_prior if self.spec.conditional else is_prior & False
        rec = rec_img if rec_img is not None else prior_img
        images = torch.where(is_rec.view(-1, 1, 1, 1), rec, x_img)
        images = torch.where(is_prior.view(-1, 1, 1, 1), prior_img, images)
        y_in = y
        if y is not None:
            y_in = torch.where(is_wrong.view(-1, 1), y.roll(1, dims=0), y)
        labels = (~(is_rec | is_prior | is_wrong)).float()
        weight = None
        if self.spec.latent_type == "cgan":
            weight = torch.where(is_wrong, 0.5, 1.0)
        return images, y_in, labels, weight, is_rec, is_prior

    def step(self, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, float]:
        """One iteration on ``x [N, C, S, S]`` (MNIST already binarised) and ``y [N, A]``."""
        cfg, spec, G, D = self.cfg, self.spec, self.G, self.D
        n = x.shape[0]
        y = y if spec.conditional else None
        x_img = x * 2 - 1 if spec.bernoulli else x  # D sees [-1, 1]
        stats: dict[str, float] = {}
        total = x.new_zeros(())
        rec_out = rec_img = u_rec = None
        if spec.has_encoder:
            mu, logvar = G.encode(x, y)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            rec_out, u_rec = G.decode(z, y)
            rec_img = G.to_image(rec_out)
            mu_p, logvar_p = G.prior_params(y, n, x.device)
            kl_el = (kl_elements(mu, logvar, mu_p, logvar_p) if spec.conditional
                     else kl_elements(mu, logvar))
            rec = recon_loss(rec_out, x, spec.bernoulli)
            total = total + rec + weighted_kl(kl_el, self.kl_w)
            stats["recon"] = rec.item()
            stats["kl"] = kl_el.flatten(1).sum(1).mean().item()
        if spec.attention and (cfg.rho > 0 or cfg.rho_entreg > 0):
            doubly, entropy = attention_regularizers(G.attention.alpha())
            total = total + cfg.rho * doubly + cfg.rho_entreg * entropy
            stats["att_entropy"] = entropy.item()
        if D is not None:
            with torch.no_grad():
                z_p = G.sample_prior(n, y)
            prior_out, u_p = G.decode(z_p, y)
            prior_img = G.to_image(prior_out)
            total = total + self._gan_terms(x_img, rec_img, u_rec, prior_img, u_p, y, stats)
        names = [k for k in self.optims if k not in ("disc", "disc_head", "mi_head")]
        self._step(names, total)
        return stats

    def _gan_terms(self, x_img, rec_img, u_rec, prior_img, u_p, y, stats) -> torch.Tensor:
        """D and MI-head updates on detached fakes; returns the G side's GAN + MI loss."""
        cfg, D = self.cfg, self.D
        detached = rec_img.detach() if rec_img is not None else None
        images, y_in, labels, weight, is_rec, is_prior = self._mix(
            x_img, detached, prior_img.detach(), y)
        logits, feats = D(images, y_in)
        err_d = gan_loss(logits, labels, weight)
        fake = is_rec | is_prior
        u_mix = torch.where(is_rec.view(-1, 1, 1, 1), u_rec if u_rec is not None else u_p, u_p)
        mi_d = mi_loss(D.mi_head(feats.detach()[fake]), u_mix.detach()[fake])
        names = ["mi_head"] if cfg.kappa > 0 else []
        loss_d = cfg.kappa * mi_d
        if _global_mean(err_d.item()) >= cfg.margin:  # not while D is already too good (every
            # rank decides on the mean over ranks, so all of them take the same step)
            names += ["disc", "disc_head"]
            loss_d = loss_d + err_d
            self.d_updates += 1
        if names:
            for g in self.optims["disc_head"].param_groups:
                g["lr"] = g.get("base_lr", g["lr"]) * adam_gan_scale(self.d_updates - 1)
            self._step(names, loss_d)
        stats["errD"] = err_d.item()
        stats["D_real"] = torch.sigmoid(logits[labels > 0.5]).mean().item()
        # G side: the same D batch with the fakes attached; fakes pushed towards "real".
        images, y_in, _, _, _, _ = self._mix(x_img, rec_img, prior_img, y)
        logits, feats = D(images, y_in)
        err_g = gan_loss(logits[fake], 1.0)
        mi_g = mi_loss(D.mi_head(feats[fake]), u_mix.detach()[fake])
        stats["errG"] = err_g.item()
        stats["mi"] = mi_g.item()
        beta = 1.0 if self.spec.latent_type == "cgan" else cfg.beta
        return beta * err_g + cfg.kappa * mi_g


# ------------------------------------------------------------------------------------------
# Evaluation and the loop


def _fixed_inputs(test, spec: ModelSpec, count: int, device, seed: int):
    """Fixed test images ``[n, C, S, S]`` with their attributes (for the reconstruction grid),
    and attributes and prior noise for the sample grid."""
    n = min(count, len(test))
    xs, ys = zip(*(test[i] for i in range(n)), strict=True)
    x, y = torch.stack(xs), torch.stack(ys)
    if spec.bernoulli:
        x = fixed_binarize(x, seed)
    y_grid = y
    if spec.conditional and spec.attr_dim == 10:  # one column per class in the sample grid
        y_grid = torch.nn.functional.one_hot(torch.arange(n) % 10, 10).float() * 2 - 1
    eps = torch.randn(n, spec.nf, 4, 4, generator=torch.Generator().manual_seed(seed))
    if not spec.conditional:
        return x.to(device), None, None, eps.to(device)
    return x.to(device), y.to(device), y_grid.to(device), eps.to(device)


@torch.no_grad()
def sample_images(G: CRVAE, eps: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """Decode ``mu_p + sigma_p * eps`` into images in [-1, 1]."""
    mu, logvar = G.prior_params(y, eps.shape[0], eps.device)
    out, _ = G.decode(mu + torch.exp(0.5 * logvar) * eps, y)
    return G.to_image(out)


@torch.no_grad()
def reconstruct(G: CRVAE, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """Posterior-mean reconstructions in [-1, 1]."""
    mu, _ = G.encode(x, y)
    out, _ = G.decode(mu, y)
    return G.to_image(out)


@torch.no_grad()
def evaluate_nll(G: CRVAE, x: torch.Tensor, y: torch.Tensor | None, samples: int,
                 seed: int, batch: int = 250) -> float:
    """Mean importance-sampled NLL (nats) of the fixed-binarised test digits ``x``."""
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for i in range(0, x.shape[0], batch):
        yb = None if y is None else y[i: i + batch]
        total += importance_nll(G, x[i: i + batch], samples, yb, gen).sum().item()
    return total / x.shape[0]


def hold_out(train_set: Dataset, n: int, seed: int = 0) -> tuple[Dataset, Dataset]:
    """``n`` training digits (a fixed random draw: the embedded digits are sorted by class)
    held out as the validation split that picks ``best.pt``; the rest trains."""
    if not 0 < n < len(train_set):
        raise UserError(f"-nVal: expected 1..{len(train_set) - 1} (of {len(train_set)} "
                        f"training images), got {n}")
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed))
    keep = order[n:].sort().values.tolist()
    return Subset(train_set, keep), Subset(train_set, order[:n].tolist())


def _test_set(test, spec: ModelSpec, count: int, device, seed: int):
    n = min(count, len(test))
    xs, ys = zip(*(test[i] for i in range(n)), strict=True)
    x = fixed_binarize(torch.stack(xs), seed).to(device)
    y = torch.stack(ys).to(device) if spec.conditional else None
    return x, y


def _state(tr: Trainer, epoch: int, it: int, best: float, batch: int = 0) -> dict:
    """Everything to resume; ``batch > 0``: saved mid-epoch after that many batches."""
    return {
        "batch": batch,
        "G": tr.G.state_dict(),
        "D": tr.D.state_dict() if tr.D is not None else None,
        "optims": {k: o.state_dict() for k, o in tr.optims.items()},
        "epoch": epoch,
        "iteration": it,
        "d_updates": tr.d_updates,
        "best_nll": best,
        "config": dataclasses.asdict(tr.cfg),
        "spec": dataclasses.asdict(tr.spec),
    }


def _load_models(tr: Trainer, state: dict, source: str) -> None:
    objs = {"G": tr.G, "D": tr.D} if tr.D is not None and state.get("D") else {"G": tr.G}
    load_state_dicts(objs, state, source)


def _load_stage1(tr: Trainer, path: str) -> None:
    """Initialise a 128 px model from a 64 px checkpoint: only the new layers stay fresh."""
    state = load_checkpoint(path, "cpu", flag="-init_weight_from")
    if state.get("spec", {}).get("latent_type") != tr.spec.latent_type or "G" not in state:
        raise UserError(f"-init_weight_from: '{path}' is not a stage-1 "
                        f"{tr.spec.latent_type} checkpoint of crvae-train")
    for name, module in (("G", tr.G), ("D", tr.D)):
        if module is None or state.get(name) is None:
            continue
        try:
            missing, unexpected = module.load_state_dict(state[name], strict=False)
        except RuntimeError as exc:
            raise UserError(f"-init_weight_from: '{path}' does not match this model "
                            f"({str(exc).splitlines()[0]})") from None
        stray = [k for k in missing if not any(n in k for n in _NEW_LAYERS)]
        if stray or unexpected:
            raise UserError(f"-init_weight_from: '{path}' does not match this model "
                            f"(first mismatch: {(stray or unexpected)[0]})")


def _load_optims(tr: Trainer, path: str, flag: str, strict: bool,
                 state: dict | None = None) -> list[str]:
    """Optimiser states from ``path`` (or ``state``); returns the groups that started fresh."""
    state = state if state is not None else load_checkpoint(path, "cpu", flag=flag)
    fresh = []
    for name, opt in tr.optims.items():
        try:
            opt.load_state_dict(state["optims"][name])
        except (KeyError, ValueError, TypeError):
            if strict:
                raise UserError(f"{flag}: '{path}' has no matching '{name}' optimiser") from None
            fresh.append(name)
    return fresh


def _initial_loads(tr: Trainer, cfg: Config) -> None:
    """Stage-1 weights (stage 2), then -retrain / -optimState (a fresh run's starting point)."""
    if cfg.stage == 2:
        _load_stage1(tr, cfg.stage1_path)
        if cfg.init_state_from != "none":
            _load_optims(tr, cfg.init_state_from, "-init_state_from", strict=False)
    if cfg.retrain != "none":
        _load_models(tr, load_checkpoint(cfg.retrain, tr.device, "-retrain"), cfg.retrain)
    if cfg.optimState != "none":
        _load_optims(tr, cfg.optimState, "-optimState", strict=True)


def _resume_point(cfg: Config, is_main: bool) -> tuple[Config, ResumePoint | None]:
    """-resume: the run to continue and its stored config (which wins); else check -save."""
    if not cfg.resume:
        check_writable_dir(cfg.save, "-save")
        return cfg, None
    point = find_resume_point(cfg.save, run_name(cfg), announce=is_main)
    cfg = merge_resume_config(point.config, cfg, RESUME_CHANGEABLE, explicit_options(),
                              point.run_dir)
    validate(cfg)
    return cfg, point


def train(cfg: Config) -> Path:
    """Train one model; returns the run directory."""
    validate(cfg)
    ctx = setup_distributed(cfg.device)
    cfg, point = _resume_point(cfg, ctx.is_main)
    seed_everything(cfg.manualSeed + ctx.rank)
    spec = model_spec(cfg)
    train_set = load_dataset(cfg.dataset, cfg.data, "train", spec.image_size, spec.conditional)
    val_set = None
    if spec.bernoulli and spec.has_encoder and cfg.nVal > 0:
        train_set, val_set = hold_out(train_set, cfg.nVal)
    test_set = load_dataset(cfg.dataset, cfg.test_data, "test", spec.image_size,
                            spec.conditional)
    loader = make_dataloader(train_set, cfg.batchSize, ctx, seed=cfg.manualSeed)
    iters = len(loader) if cfg.epochSize <= 0 else min(cfg.epochSize, len(loader))
    tr = Trainer(cfg, spec, ctx.device)

    if not cfg.resume:  # bad files fail before the run folder exists
        _initial_loads(tr, cfg)
    run = Run.start(cfg.save, run_name(cfg), cfg, resume=point or False)
    start_epoch, it, best = 1, 0, math.inf
    state = run.checkpoints.load_latest(ctx.device, restore_rng=False) if cfg.resume else None
    skip, rng = 0, None
    if state is not None:
        source = str(run.checkpoints.loaded_path)
        _load_models(tr, state, source)
        _load_optims(tr, source, "--resume", strict=True, state=state)
        skip, rng = state.get("batch", 0), state["rng"]
        start_epoch, it = state["epoch"] + (0 if skip else 1), state["iteration"]
        tr.d_updates, best = state["d_updates"], state["best_nll"]
        run.truncate_stats(it)
        if not skip:
            restore_rng_state(rng)
    elif cfg.resume:
        _initial_loads(tr, cfg)
    _broadcast_from_rank0([tr.G, tr.D])

    grid = _fixed_inputs(test_set, spec, 60 if spec.attr_dim == 10 else 64, ctx.device,
                         cfg.manualSeed)
    test_x = test_y = None
    if spec.bernoulli and spec.has_encoder:
        test_x, test_y = _test_set(test_set, spec, cfg.nTest, ctx.device, cfg.manualSeed)
    val = (test_x, test_y) if val_set is None else \
        _test_set(val_set, spec, len(val_set), ctx.device, cfg.manualSeed + 2)
    bar = run.progress(cfg.nEpochs * iters, initial=(start_epoch - 1) * iters + skip)
    for epoch in range(start_epoch, cfg.nEpochs + 1):
        tr.set_epoch_lr(epoch)
        fade = fade_weight(epoch, cfg.nEpochs, cfg.max_alpha) if cfg.stage == 2 else 1.0
        tr.set_fade(fade)
        tr.train_mode(True)
        set_epoch(loader, epoch)
        for b, (x, y) in enumerate(loader):
            if b >= iters:
                break
            if b < skip:  # resuming mid-epoch: same order, batches already trained on
                if b == skip - 1:
                    restore_rng_state(rng)  # the state right after batch `skip` was drawn
                continue
            x, y = x.to(ctx.device), y.to(ctx.device)
            if spec.bernoulli:
                x = binarize(x)
            stats = tr.step(x, y)
            it += 1
            check_finite_losses(it, stats, ctx)
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in stats.items()}, refresh=False)
            if it % cfg.print_freq == 0 or b == iters - 1:
                run.log(it, epoch=epoch, fade=fade, **stats)
            if cfg.ckptFreq and it % cfg.ckptFreq == 0 and b < iters - 1 and run.is_main:
                run.checkpoints.save(it, _state(tr, epoch, it, best, batch=b + 1))
        skip = 0
        best = _end_of_epoch(tr, run, epoch, it, best, grid, (test_x, test_y), val)
    bar.close()
    if test_x is not None and run.is_main:
        _final_nll(tr, run, it, test_x, test_y)
    run.close()
    report_skipped_images(train_set)
    return run.dir


def _end_of_epoch(tr: Trainer, run: Run, epoch: int, it: int, best: float, grid, test,
                  val) -> float:
    """Grids, test NLL, and ``best.pt`` picked by the NLL on ``val`` (the held-out training
    digits; the test digits themselves with ``-nVal 0``, as main_mnist.lua:65-76)."""
    cfg, G = tr.cfg, tr.G
    tr.train_mode(False)
    gx, gy, gy_grid, geps = grid
    nrow = 10 if tr.spec.attr_dim == 10 else None
    run.save_grid(f"samples-e{epoch:03d}.png", sample_images(G, geps, gy_grid), nrow=nrow)
    if tr.spec.has_encoder:
        rec = reconstruct(G, gx[:32], None if gy is None else gy[:32])
        gx_img = gx[:32] * 2 - 1 if tr.spec.bernoulli else gx[:32]
        run.save_grid(f"recon-e{epoch:03d}.png", torch.cat([gx_img, rec]), nrow=8)
    scalars: dict[str, float] = {"epoch": epoch}
    tx, ty = test
    if tx is not None:
        scalars["test_nll"] = evaluate_nll(G, tx, ty, cfg.nSample, cfg.manualSeed)
        nll = scalars["test_nll"] if val[0] is tx else \
            evaluate_nll(G, val[0], val[1], cfg.nSample, cfg.manualSeed)
        scalars["val_nll"] = nll
        if nll < best:
            best = nll
            if run.is_main:
                run.save_state(run.dir / "best.pt", _state(tr, epoch, it, best),
                               "cannot write the checkpoint of the best NLL")
        scalars["best_nll"] = best
    run.log(it, **scalars)
    if run.is_main:
        run.checkpoints.save(it, _state(tr, epoch, it, best))
        if cfg.epochStep > 0 and epoch % cfg.epochStep == 0:
            run.save_state(run.dir / f"snapshot-e{epoch:03d}.pt", _state(tr, epoch, it, best),
                           f"cannot write the snapshot of epoch {epoch}")
    tr.train_mode(True)
    return best


def _final_nll(tr: Trainer, run: Run, it: int, tx, ty) -> None:
    """Test NLL with ``-nSampleFinal`` importance samples of ``best.pt``."""
    best = run.dir / "best.pt"
    if best.exists():
        tr.G.load_state_dict(load_checkpoint(best, tr.device, "best.pt")["G"])
    tr.train_mode(False)
    nll = evaluate_nll(tr.G, tx, ty, tr.cfg.nSampleFinal, tr.cfg.manualSeed + 1)
    run.log(it, final_nll=nll, final_samples=tr.cfg.nSampleFinal)
    picked = "the test digits" if tr.cfg.nVal == 0 else f"{tr.cfg.nVal} held-out training digits"
    path = run.dir / "final_nll.txt"
    what = f"cannot write the final NLL {nll:.4f} nats, also logged in stats.jsonl"
    with run._writing(path, what):
        path.write_text(
            f"{nll:.4f} nats  (importance sampling, K={tr.cfg.nSampleFinal}, "
            f"{tx.shape[0]} fixed-binarised test digits, checkpoint of the best NLL on {picked})\n")
