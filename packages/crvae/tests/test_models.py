"""Shapes and invariants of the networks and loss terms."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from crvae.losses import (
    MI_WEIGHTS,
    attention_regularizers,
    importance_nll,
    kl_elements,
    kl_weights,
    mi_loss,
    weighted_kl,
)
from crvae.models import (
    ACVAE_TYPES,
    BatchDiscrimination,
    ModelSpec,
    StepLinear,
    build_models,
    lstm_with_forget_bias,
)
from crvae.train import adam_gan_scale, fade_weight

TYPES_28 = ["baseline", "lstm", "conv", *ACVAE_TYPES]


def _spec(latent_type: str, size: int) -> ModelSpec:
    attrs = 10 if latent_type in ACVAE_TYPES else 0
    return ModelSpec(latent_type=latent_type, image_size=size, channels=1 if size == 28 else 3,
                     base_channels=4, nf=16, attr_dim=attrs)


@pytest.mark.parametrize(("latent_type", "size"), [(t, 28) for t in TYPES_28]
                         + [("lstm", 64), ("acvaegan", 64), ("baseline", 128), ("acvaegan", 128)])
def test_model_shapes(latent_type, size):
    torch.manual_seed(0)
    spec = _spec(latent_type, size)
    g, d = build_models(spec)
    x = torch.randn(4, spec.channels, size, size)
    y = torch.randn(4, spec.attr_dim) if spec.attr_dim else None
    if spec.has_encoder:
        mu, logvar = g.encode(x, y)
        assert mu.shape == logvar.shape == (4, 16, 4, 4)
    z = g.sample_prior(4, y)
    out, u = g.decode(z, y)
    assert out.shape == x.shape and u.shape == (4, 16, 4, 4)
    logit, feats = d(out, y)
    assert logit.shape == (4,) and d.mi_head(feats).shape == u.shape


def test_decoder_is_channel_recurrent():
    """Redrawing the channels of step t changes u only from step t on (LSTM causality)."""
    torch.manual_seed(0)
    g, _ = build_models(_spec("lstm", 28))
    g.eval()
    z = torch.randn(2, 16, 4, 4)
    z2 = z.clone()
    z2[:, 8:10] = torch.randn(2, 2, 4, 4)  # step 4 of 8 owns channels 8, 9
    with torch.no_grad():
        u = g.decoder_rnn(z).view(2, 8, -1)
        u2 = g.decoder_rnn(z2).view(2, 8, -1)
    assert torch.allclose(u[:, :4], u2[:, :4])
    assert not torch.allclose(u[:, 4:], u2[:, 4:])


def test_batch_discrimination_matches_definition():
    torch.manual_seed(0)
    bd = BatchDiscrimination(6, kernels=3, kernel_dim=2)
    x = torch.randn(5, 6)
    out = bd(x)
    assert out.shape == (5, 9) and torch.equal(out[:, :6], x)
    m = (x @ bd.proj.weight.T).view(5, 3, 2)
    want = torch.zeros(5, 3)
    for i in range(5):
        for j in range(5):  # includes j == i, as the Torch layer does
            want[i] += torch.exp(-(m[i] - m[j]).abs().sum(-1))
    assert torch.allclose(out[:, 6:], want, atol=1e-6)
    assert (out[:, 6:] >= 1).all()
    same = bd(torch.stack([x[0], x[0]]))
    assert torch.allclose(same[:, 6:], torch.full((2, 3), 2.0))


def test_lstm_forget_bias_and_step_linear():
    lstm = lstm_with_forget_bias(3, 5, 2, 0.0)
    for layer in range(2):
        total = getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
        assert torch.allclose(total[5:10], torch.ones(5))
    lin = StepLinear(4, 3, 2)
    x = torch.randn(2, 4, 3)
    y = lin(x)
    assert torch.allclose(y[:, 1], x[:, 1] @ lin.weight[1] + lin.bias[1])


def test_attention_sums_to_one_over_steps():
    g, _ = build_models(_spec("acvaegan", 28))
    alpha = g.attention.alpha()
    assert alpha.shape == (8, 10)
    assert torch.allclose(alpha.sum(0), torch.ones(10))
    y = torch.ones(3, 10)
    assert torch.allclose(g.attention(y).sum(1), y)  # gain 1: the original y * alpha[t]
    doubly, entropy = attention_regularizers(alpha)
    assert doubly.item() == pytest.approx(0.0, abs=1e-3)  # near-uniform start
    assert entropy.item() == pytest.approx(torch.log(torch.tensor(8.0)).item(), rel=1e-2)


def test_attention_starts_near_uniform_but_not_at_the_entropy_maximum():
    g, _ = build_models(_spec("acvaegan", 28))
    logits = g.attention.logits
    assert logits.abs().max() <= 1 / (8 * 10) ** 0.5  # Torch nn.CMul's init range
    assert logits.std() > 0  # equal logits: zero gradient of the entropy regulariser
    _, entropy = attention_regularizers(g.attention.alpha())
    entropy.backward()
    assert logits.grad.abs().max() > 0


def test_attention_gain_steps_passes_y_at_full_scale():
    spec = dataclasses.replace(_spec("acvaegan", 28), attention_gain=8.0)
    g, _ = build_models(spec)
    y = torch.randn(3, 10)
    y_t = g.attention(y)  # [3, 8, 10]
    assert torch.allclose(y_t.sum(1), 8 * y, atol=1e-5)
    assert torch.allclose(y_t.mean(1), y, atol=1e-5)
    assert torch.allclose(y_t, y[:, None].expand(-1, 8, -1), atol=0.3 * y.abs().max().item())


def test_kl_terms():
    mu, logvar = torch.randn(3, 16, 4, 4), torch.randn(3, 16, 4, 4) * 0.3
    mu_p, logvar_p = torch.randn(3, 16, 4, 4), torch.randn(3, 16, 4, 4) * 0.3
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(mu_p, (0.5 * logvar_p).exp())
    assert torch.allclose(kl_elements(mu, logvar, mu_p, logvar_p),
                          torch.distributions.kl_divergence(q, p), atol=1e-5)
    w = kl_weights(1.0, 3e-4, 2e-4)
    assert w.tolist() == pytest.approx([3e-4] * 3 + [2e-4] * 5)
    assert kl_weights(0.5, 3e-4, 0).tolist() == [0.5] * 8
    kl = kl_elements(mu, logvar)
    per_step = kl.view(3, 8, -1).sum(-1)
    assert weighted_kl(kl, w).item() == pytest.approx((per_step * w).sum().item() / 3, rel=1e-5)


def test_mi_loss_weights_steps():
    target = torch.zeros(2, 16, 4, 4)
    pred = torch.zeros(2, 16, 4, 4)
    pred[:, 0:2] = 1.0  # only step 1 is wrong
    assert mi_loss(pred, target).item() == pytest.approx(MI_WEIGHTS[0] / 8)


def test_importance_nll_bound_tightens():
    torch.manual_seed(0)
    g, _ = build_models(_spec("lstm", 28))
    g.eval()
    x = torch.bernoulli(torch.full((6, 1, 28, 28), 0.2))
    gen = torch.Generator().manual_seed(0)
    one = importance_nll(g, x, 1, generator=gen).mean()
    many = importance_nll(g, x, 50, generator=gen).mean()
    assert many < one + 1.0  # K=50 is a tighter (lower) bound than the ELBO on average
    assert 28 * 28 * 0.3 < many < 28 * 28 * 2


def test_schedules():
    assert [adam_gan_scale(n) for n in (0, 9, 10, 29, 30)] == [1 / 50] * 2 + [1 / 5] * 2 + [1.0]
    assert [fade_weight(e, 10, 1.0) for e in (1, 3, 6, 9)] == [0.0, 0.4, 1.0, 1.0]
    assert fade_weight(9, 10, 0.7) == 0.7
