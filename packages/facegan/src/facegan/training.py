"""Pieces shared by the facegan trainers: optimisers, the original's gradient surgery
(L1/L2 added to the gradients, element-wise clamping), epochs of ``N_epoch`` random images,
and finding earlier runs in a ``--save`` folder."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ganlab_common.checkpoint import CheckpointManager
from ganlab_common.distributed import (
    DistContext,
    cleanup_distributed,
    make_dataloader,
    setup_distributed,
)
from ganlab_common.errors import UserError

__all__ = [
    "OPTIMIZERS",
    "bce",
    "check_optmethod",
    "epoch_indices",
    "epoch_loader",
    "frozen",
    "latest_checkpoint",
    "latest_run",
    "make_optimizer",
    "read_config",
    "regularise_and_clamp",
    "runs_with_prefix",
]

OPTIMIZERS = ("sgd", "adam", "adagrad")
_RUN = re.compile(r"^(\d{5})-(.+)$")


def check_optmethod(value: str, flag: str) -> str:
    """``sgd``, ``adam`` or ``adagrad`` (any case); anything else is a UserError."""
    method = value.lower()
    if method not in OPTIMIZERS:
        raise UserError(f"{flag}: expected one of {', '.join(OPTIMIZERS)}, got '{value}'")
    return method


def make_optimizer(method: str, params: Iterable[nn.Parameter], sgd_lr: float,
                   sgd_momentum: float, adam_lr: float = -1, adagrad_lr: float = 1e-3
                   ) -> torch.optim.Optimizer:
    """torch7 ``optim`` equivalents; ``adam_lr == -1`` means optim.adam's default 1e-3."""
    if method == "adam":
        return torch.optim.Adam(params, lr=1e-3 if adam_lr == -1 else adam_lr)
    if method == "adagrad":
        return torch.optim.Adagrad(params, lr=adagrad_lr)
    return torch.optim.SGD(params, lr=sgd_lr, momentum=sgd_momentum)


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """``BCECriterion`` on ``sigmoid(logits)`` against a constant target (1 real, 0 fake)."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


@torch.no_grad()
def regularise_and_clamp(params: Iterable[nn.Parameter], l1: float, l2: float,
                         clamp: float) -> None:
    """``grad += l1 * sign(w) + l2 * w``, then ``grad.clamp_(-clamp, clamp)`` element-wise
    (the original's order; ``clamp == 0`` is off)."""
    for p in params:
        if p.grad is None:
            continue
        if l1:
            p.grad.add_(torch.sign(p), alpha=l1)
        if l2:
            p.grad.add_(p, alpha=l2)
        if clamp:
            p.grad.clamp_(-clamp, clamp)


@contextlib.contextmanager
def frozen(model: nn.Module, ctx: DistContext) -> Iterator[None]:
    """Skip D's weight gradients during G's step (one process only: DDP expects every
    parameter to receive a gradient, so there D's are computed and later zeroed)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if ctx.is_distributed:
        yield
        return
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def epoch_indices(size: int, n_epoch: int, seed: int, epoch: int) -> np.ndarray:
    """The ``N_epoch`` random images of ``epoch`` (all when ``n_epoch <= 0``), a function of
    ``(seed, epoch)`` only (``DATASET.loadRandomImages``)."""
    count = size if n_epoch <= 0 else min(n_epoch, size)
    return np.random.default_rng([seed, epoch]).permutation(size)[:count]


def epoch_loader(dataset: Dataset, n_epoch: int, batch: int, ctx: DistContext, seed: int,
                 epoch: int, flag: str = "--N_epoch") -> DataLoader:
    """Batches of ``batch`` images drawn from this epoch's random images (shared among ranks)."""
    indices = epoch_indices(len(dataset), n_epoch, seed, epoch)
    if len(indices) // ctx.world_size < batch:
        raise UserError(f"{flag}: {len(indices)} image(s) per epoch across {ctx.world_size} "
                        f"process(es) is fewer than one batch of {batch} real images")
    return make_dataloader(Subset(dataset, indices.tolist()), batch, ctx, shuffle=True,
                           seed=seed * 1000 + epoch)


def iterations_per_epoch(size: int, n_epoch: int, batch: int, world_size: int) -> int:
    count = size if n_epoch <= 0 else min(n_epoch, size)
    return (count // world_size) // batch


# -- earlier runs --------------------------------------------------------------------------------
def runs_with_prefix(save: str | Path, prefix: str) -> list[Path]:
    """``<save>/<NNNNN>-<prefix>...`` run folders, newest first."""
    root = Path(save)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        m = _RUN.match(path.name)
        if m and path.is_dir() and m[2].startswith(prefix):
            found.append((int(m[1]), path))
    return [path for _, path in sorted(found, reverse=True)]


def latest_run(save: str | Path, prefix: str, with_checkpoint: bool = True) -> Path | None:
    """The newest ``<save>/<NNNNN>-<prefix>...`` run folder (holding a checkpoint)."""
    for path in runs_with_prefix(save, prefix):
        if not with_checkpoint or latest_checkpoint(path) is not None:
            return path
    return None


def latest_checkpoint(run_dir: Path) -> Path | None:
    return CheckpointManager(Path(run_dir) / "checkpoints").latest()


def read_config(run_dir: Path) -> dict:
    path = Path(run_dir) / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def run_in_context(body: Callable, cfg):
    """``body(cfg, ctx)`` with ``--threads`` applied and the (torchrun) process group set up
    and torn down around it; returns what ``body`` returns."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = setup_distributed(cfg.device)
    try:
        return body(cfg, ctx)
    finally:
        cleanup_distributed()
