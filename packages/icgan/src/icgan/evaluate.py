"""Fidelity of a trained IcGAN.

MNIST (the paper's claims, judged by the held-out digit classifier of
``ganlab_common.metrics``):

* ``conditional_acc``: G(z, y) classified as y;
* ``ey_acc``: argmax E_y(x) equals the label of a held-out real digit x;
* ``reconstruct_acc``: G(E_z(x), E_y(x)) classified as the label of x;
* ``swap_acc``: G(E_z(x), y') classified as y', for every class y' other than x's.

CelebA (``evaluateModel.lua`` uses an attribute predictor; we use E_y itself): per-attribute
accuracy and F1 of E_y on held-out photos, and how often E_y reads the requested
attributes back from G(E_z(x), y) and from G(E_z(x), y with one attribute flipped).
"""

from __future__ import annotations

import torch
from torch import nn

from .data import one_hot_pm
from .train import Trained, sample_noise

__all__ = ["celeba_scores", "conditional_accuracy", "encode", "mnist_fidelity"]


@torch.no_grad()
def encode(trained: Trained, x: torch.Tensor, batch_size: int = 256
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[N, C, S, S]`` -> (z = E_z(x) ``[N, nz]``, raw E_y(x) ``[N, ny]``) on CPU."""
    device = next(trained.netG.parameters()).device
    zs, ys = [], []
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device)
        zs.append(trained.netEz(xb).cpu())
        ys.append(trained.netEy(xb).cpu())
    return torch.cat(zs), torch.cat(ys)


@torch.no_grad()
def generate(netG: nn.Module, z: torch.Tensor, y: torch.Tensor, batch_size: int = 256
             ) -> torch.Tensor:
    """G(z, y) in batches; ``[N, C, S, S]`` on CPU."""
    device = next(netG.parameters()).device
    out = [netG(z[s:s + batch_size].to(device), y[s:s + batch_size].to(device)).cpu()
           for s in range(0, len(z), batch_size)]
    return torch.cat(out)


def _predict(classifier: nn.Module, images: torch.Tensor) -> torch.Tensor:
    from ganlab_common.metrics import classify_digits

    return classify_digits(classifier, images).argmax(dim=1).cpu()


@torch.no_grad()
def conditional_accuracy(trained: Trained, classifier: nn.Module, per_class: int = 100,
                         seed: int = 0) -> float:
    """Fraction of G(z, onehot(c)) (``per_class`` z's for each digit c) classified as c."""
    gen = torch.Generator().manual_seed(seed)
    classes = torch.arange(10).repeat_interleave(per_class)
    z = sample_noise(len(classes), trained.netG.nz, trained.noise, generator=gen)
    images = generate(trained.netG, z, one_hot_pm(classes))
    return (_predict(classifier, images) == classes).float().mean().item()


@torch.no_grad()
def mnist_fidelity(trained: Trained, x: torch.Tensor, labels: torch.Tensor,
                   classifier: nn.Module, per_class: int = 100, seed: int = 0) -> dict:
    """The four MNIST numbers for held-out digits ``x [N, 1, S, S]`` with ``labels [N]``."""
    z, y_raw = encode(trained, x)
    y_pred = y_raw.argmax(dim=1)
    rec = generate(trained.netG, z, one_hot_pm(y_pred))
    n = len(x)
    # every other class for every digit: [N * 9]
    others = torch.stack([(labels + k) % 10 for k in range(1, 10)], dim=1).flatten()
    swapped = generate(trained.netG, z.repeat_interleave(9, dim=0), one_hot_pm(others))
    return {
        "conditional_acc": conditional_accuracy(trained, classifier, per_class, seed),
        "ey_acc": (y_pred == labels).float().mean().item(),
        "reconstruct_acc": (_predict(classifier, rec) == labels).float().mean().item(),
        "swap_acc": (_predict(classifier, swapped) == others).float().mean().item(),
        "real_acc": (_predict(classifier, x) == labels).float().mean().item(),
        "n_heldout": n,
        "n_conditional": 10 * per_class,
    }


def _f1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-column F1 of {-1, +1} predictions ``[N, A]`` (0 where a column has no positives)."""
    tp = ((pred > 0) & (target > 0)).sum(0).float()
    fp = ((pred > 0) & (target < 0)).sum(0).float()
    fn = ((pred < 0) & (target > 0)).sum(0).float()
    return torch.where(tp > 0, 2 * tp / (2 * tp + fp + fn), torch.zeros_like(tp))


@torch.no_grad()
def celeba_scores(trained: Trained, x: torch.Tensor, y: torch.Tensor) -> dict:
    """E_y's per-attribute accuracy/F1 on held-out photos ``x`` (true attributes ``y``) and
    how often E_y reads back the attributes G was asked for (reconstruction, one flip)."""
    z, y_raw = encode(trained, x)
    y_pred = torch.where(y_raw >= 0, 1.0, -1.0)
    rec = generate(trained.netG, z, y_pred)
    _, y_rec = encode(trained, rec)
    flipped = y_pred.clone()
    column = torch.arange(len(x)) % y.shape[1]  # flip a different attribute per image
    flipped[torch.arange(len(x)), column] *= -1
    _, y_flip = encode(trained, generate(trained.netG, z, flipped))
    hit_flip = (torch.where(y_flip >= 0, 1.0, -1.0) == flipped)[torch.arange(len(x)), column]
    names = trained.label_names
    return {
        "ey_attribute_acc": dict(zip(names, (y_pred == y).float().mean(0).tolist())),
        "ey_attribute_f1": dict(zip(names, _f1(y_pred, y).tolist())),
        "ey_mean_acc": (y_pred == y).float().mean().item(),
        "reconstruct_attr_acc": (torch.where(y_rec >= 0, 1.0, -1.0) == y_pred).float().mean()
        .item(),
        "flip_acc": hit_flip.float().mean().item(),
        "n_heldout": len(x),
    }
