"""Loss terms of crVAE-GAN / acVAE-GAN, scaled as in the Torch code (reference pitfall 1).

The pixel loss is a *mean* over every pixel, while the KL is *summed* over the latent and
divided by the batch, so the KL weights (``-alpha``, ``-alpha1``, ``-alpha2``) are relative to
a per-pixel loss: ``loss = recon.mean() + alpha * kl.sum() / N``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "MI_WEIGHTS",
    "recon_loss",
    "kl_elements",
    "kl_weights",
    "weighted_kl",
    "mi_loss",
    "gan_loss",
    "attention_regularizers",
    "log_likelihood_bernoulli",
    "importance_nll",
]

# Per-step weights of the MI term (steps 1 .. 8), from train_test_lstm.lua.
MI_WEIGHTS = (0.1, 1.5, 1.5, 1.25, 0.1, 0.1, 1.0, 1.0)


def recon_loss(out: torch.Tensor, x: torch.Tensor, bernoulli: bool) -> torch.Tensor:
    """Mean over all pixels: BCE on logits (binarised MNIST) or MSE (images in [-1, 1])."""
    if bernoulli:
        return F.binary_cross_entropy_with_logits(out, x)
    return F.mse_loss(out, x)


def kl_elements(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    mu_p: torch.Tensor | None = None,
    logvar_p: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-dimension KL(q || p) ``[N, nf, 4, 4]``; p = N(0, I) or N(mu_p, exp(logvar_p))."""
    if mu_p is None:
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
    return 0.5 * (
        logvar_p - logvar + (logvar.exp() + (mu - mu_p).pow(2)) / logvar_p.exp() - 1.0
    )


def kl_weights(alpha: float, alpha1: float, alpha2: float, steps: int = 8) -> torch.Tensor:
    """KL weight per time step ``[T]``: alpha1 on steps 1-3 and alpha2 on 4-8 when both are
    set (> 0), else alpha everywhere (opts.lua turns a 0 into nil)."""
    if alpha1 > 0 and alpha2 > 0:
        early = min(3, steps)
        return torch.tensor([alpha1] * early + [alpha2] * (steps - early))
    return torch.full((steps,), float(alpha))


def weighted_kl(kl: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_t w_t * KL_t / N`` for ``kl [N, nf, 4, 4]`` with ``T = len(weights)`` steps."""
    n, steps = kl.shape[0], weights.numel()
    per_step = kl.reshape(n, steps, -1).sum(-1)  # [N, T]
    return (per_step * weights.to(kl)).sum() / n


def mi_loss(
    pred: torch.Tensor, target: torch.Tensor, weights: tuple[float, ...] = MI_WEIGHTS
) -> torch.Tensor:
    """Per-step weighted MSE between the MI head's estimate and the decoder's ``u``.

    ``pred, target [N, nf, 4, 4]``; ``sum_t w_t * mean((pred_t - u_t)^2) / T``.
    """
    n, steps = pred.shape[0], len(weights)
    per_step = (pred - target).pow(2).reshape(n, steps, -1).mean(dim=(0, 2))  # [T]
    w = torch.tensor(weights, dtype=pred.dtype, device=pred.device)
    return (per_step * w).sum() / steps


def gan_loss(
    logits: torch.Tensor, target: float | torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """BCE of D's logits ``[N]`` against ``target`` (a constant or ``[N]`` labels)."""
    if not isinstance(target, torch.Tensor):
        target = torch.full_like(logits, float(target))
    return F.binary_cross_entropy_with_logits(logits, target, weight=weight)


def attention_regularizers(alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """acVAE's regularisers of ``alpha [T, A]`` (softmax over T).

    Returns ``(doubly_stochastic, entropy)``: the MSE between ``sum_A alpha[t]`` and ``A / T``
    (each step should attend to an equal share of attributes), and the mean entropy over T of
    each attribute's attention (minimised: each attribute should pick few steps).
    """
    steps, attrs = alpha.shape
    per_step = alpha.sum(dim=1)  # [T]
    doubly = F.mse_loss(per_step, torch.full_like(per_step, attrs / steps))
    entropy = -(alpha * alpha.clamp_min(1e-12).log()).sum(dim=0).mean()
    return doubly, entropy


def log_likelihood_bernoulli(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``log p(x | z)`` summed over pixels: ``[N, C, H, W] -> [N]``."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def _log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``log N(z; mu, exp(logvar))`` summed over the latent: ``[N, ...] -> [N]``."""
    lp = -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) / logvar.exp())
    return lp.flatten(1).sum(1)


@torch.no_grad()
def importance_nll(model, x: torch.Tensor, samples: int, y: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Negative log-likelihood (nats) of binary images by importance sampling with q(z|x).

    ``-log (1/K sum_k p(x|z_k) p(z_k) / q(z_k|x))``, ``z_k ~ q(z|x)``; ``x [N, 1, 28, 28]``
    in {0, 1}; returns ``[N]``.  ``samples = 1`` gives the negative ELBO's single-sample
    estimate, larger K a tighter bound.
    """
    mu, logvar = model.encode(x, y)
    mu_p, logvar_p = model.prior_params(y, x.shape[0], x.device)
    terms = []
    for _ in range(samples):
        eps = torch.randn(mu.shape, generator=generator).to(mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits, _ = model.decode(z, y)
        terms.append(
            log_likelihood_bernoulli(logits, x)
            + _log_normal(z, mu_p, logvar_p)
            - _log_normal(z, mu, logvar)
        )
    stacked = torch.stack(terms, dim=0)  # [K, N]
    return -(torch.logsumexp(stacked, dim=0) - math.log(samples))
