"""DAMSM word/sentence losses and the GAN losses (``miscc/losses.py`` of the original).

Notation: B = batch, E = embedding size, L = words of one caption, R = h * w image regions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "func_attention",
    "words_loss",
    "sent_loss",
    "word_scores",
    "sentence_scores",
    "discriminator_loss",
    "generator_loss",
    "kl_loss",
]


def _cosine(x1: torch.Tensor, x2: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    w12 = (x1 * x2).sum(dim)
    return w12 / (x1.norm(2, dim) * x2.norm(2, dim)).clamp(min=eps)


def func_attention(
    query: torch.Tensor, context: torch.Tensor, gamma1: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Word-to-region attention of DAMSM.

    ``query [B, E, L]`` (words), ``context [B, E, h, w]`` (regions) ->
    ``(region context per word [B, E, L], attention [B, L, h, w])``.  The scores are
    normalised over words first, then (times ``gamma1``) over regions, as the original.
    """
    b, e, query_len = query.shape
    ih, iw = context.shape[2:]
    source_len = ih * iw
    context = context.reshape(b, e, source_len)  # [B, E, R]
    attn = torch.bmm(context.transpose(1, 2), query)  # [B, R, L]
    attn = torch.softmax(attn, dim=2)  # over words
    attn = attn.transpose(1, 2) * gamma1  # [B, L, R]
    attn = torch.softmax(attn, dim=2)  # over regions
    weighted = torch.bmm(context, attn.transpose(1, 2))  # [B, E, L]
    return weighted, attn.reshape(b, query_len, ih, iw)


def word_scores(
    img_features: torch.Tensor,
    words_emb: torch.Tensor,
    cap_lens: torch.Tensor,
    gamma1: float,
    gamma2: float,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``R(Q_i, D_j) = log sum_words exp(gamma2 cos(word, its region context))``.

    ``img_features [B_img, E, h, w]``, ``words_emb [B_cap, E, T]`` ->
    ``(scores [B_img, B_cap], attention maps of each caption on its own image [1, L, h, w])``.
    There is no 1/gamma2 power on the sum (the original's code, not its Eq. 10).
    """
    n_img = img_features.size(0)
    columns, att_maps = [], []
    for i in range(words_emb.size(0)):
        n_words = int(cap_lens[i])
        word = words_emb[i, :, :n_words].unsqueeze(0)  # [1, E, L]
        word = word.expand(n_img, -1, -1)  # [B_img, E, L]
        weighted, attn = func_attention(word, img_features, gamma1)
        if i < n_img:
            att_maps.append(attn[i : i + 1].detach())
        cos = _cosine(word, weighted, dim=1)  # [B_img, L]
        columns.append(torch.log(torch.exp(cos * gamma2).sum(1, keepdim=True)))  # [B_img, 1]
    return torch.cat(columns, 1), att_maps  # [B_img, B_cap]


def sentence_scores(cnn_code: torch.Tensor, rnn_code: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every image code with every sentence: ``[B_img, B_cap]``."""
    norm0 = cnn_code.norm(2, dim=1, keepdim=True)
    norm1 = rnn_code.norm(2, dim=1, keepdim=True)
    return (cnn_code @ rnn_code.t()) / (norm0 @ norm1.t()).clamp(min=1e-8)


def _same_class_mask(class_ids: torch.Tensor | None, b: int) -> torch.Tensor | None:
    """``[B, B]`` True where two *different* samples share a class (masked to -inf)."""
    if class_ids is None:
        return None
    class_ids = torch.as_tensor(class_ids).view(-1)
    mask = class_ids[:, None] == class_ids[None, :]
    mask.fill_diagonal_(False)
    return mask


def _two_way_ce(scores: torch.Tensor, labels: torch.Tensor, class_ids) -> tuple:
    mask = _same_class_mask(class_ids, scores.size(0))
    if mask is not None:
        scores = scores.masked_fill(mask.to(scores.device), float("-inf"))
    return F.cross_entropy(scores, labels), F.cross_entropy(scores.t(), labels)


def words_loss(
    img_features: torch.Tensor,
    words_emb: torch.Tensor,
    labels: torch.Tensor,
    cap_lens: torch.Tensor,
    class_ids: torch.Tensor | None,
    gamma1: float,
    gamma2: float,
    gamma3: float,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """``(loss0 = -log P(caption | image), loss1 = -log P(image | caption), attention maps)``.

    Scores are ``gamma3 * R``; off-diagonal pairs of the same class are excluded.
    """
    scores, att_maps = word_scores(img_features, words_emb, cap_lens, gamma1, gamma2)
    loss0, loss1 = _two_way_ce(scores * gamma3, labels, class_ids)
    return loss0, loss1, att_maps


def sent_loss(
    cnn_code: torch.Tensor,
    rnn_code: torch.Tensor,
    labels: torch.Tensor,
    class_ids: torch.Tensor | None,
    gamma3: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sentence-level DAMSM loss in both directions, ``gamma3 * cos`` as logits."""
    return _two_way_ce(sentence_scores(cnn_code, rnn_code) * gamma3, labels, class_ids)


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def discriminator_loss(
    net_d: nn.Module, real_imgs: torch.Tensor, fake_imgs: torch.Tensor, conditions: torch.Tensor,
    hard_conditions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Matching-aware D loss: real/fake unconditional + real, fake and wrong-caption pairs.

    ``(uncond(real) + cond(real)) / 2 + (uncond(fake) + cond(fake) + cond(real[:-1], c[1:])) / 3``
    (without the unconditional head: ``cond(real) + (cond(fake) + wrong) / 2``).
    ``hard_conditions [B, E]`` (not in the paper: digit-swapped captions of the same images)
    make the wrong term the mean of the shifted-batch and the hard wrong pairs.
    D is only ever called (``net_d(x, c, head=...)``, see ``models.D_NET``), so it may be
    wrapped in DistributedDataParallel.
    """
    real_features = net_d(real_imgs)  # [B, 8 ndf, 4, 4]
    fake_features = net_d(fake_imgs.detach())
    cond_real = _bce(net_d(real_features, conditions, head="cond"), 1.0)
    cond_fake = _bce(net_d(fake_features, conditions, head="cond"), 0.0)
    b = real_features.size(0)
    cond_wrong = _bce(net_d(real_features[: b - 1], conditions[1:b], head="cond"), 0.0)
    if hard_conditions is not None:
        hard_logits = net_d(real_features, hard_conditions.to(conditions.dtype), head="cond")
        cond_wrong = (cond_wrong + _bce(hard_logits, 0.0)) / 2.0
    uncond_real = net_d(real_features, head="uncond")
    if uncond_real is None:
        return cond_real + (cond_fake + cond_wrong) / 2.0
    real = _bce(uncond_real, 1.0)
    fake = _bce(net_d(fake_features, head="uncond"), 0.0)
    return (real + cond_real) / 2.0 + (fake + cond_fake + cond_wrong) / 3.0


def generator_loss(
    nets_d: list[nn.Module],
    image_encoder: nn.Module,
    fake_imgs: list[torch.Tensor],
    words_embs: torch.Tensor,
    sent_emb: torch.Tensor,
    match_labels: torch.Tensor,
    cap_lens: torch.Tensor,
    class_ids: torch.Tensor | None,
    smooth: dict,
    hard_negatives: torch.Tensor | None = None,
    hard_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Adversarial terms of every stage, plus LAMBDA * DAMSM (word + sentence) on the last.

    ``fake_imgs`` are aligned with ``nets_d`` from the end (with B_DCGAN there is one D).
    ``hard_negatives [B, K, E]`` (sentence codes) add ``LAMBDA * hard_weight *
    hard_negative_loss``.
    Returns ``(total, {name: value})``.
    """
    total = sent_emb.new_zeros(())
    logs: dict[str, float] = {}
    fakes = fake_imgs[-len(nets_d) :]
    for i, (net_d, fake) in enumerate(zip(nets_d, fakes)):
        features = net_d(fake)
        g_loss = _bce(net_d(features, sent_emb, head="cond"), 1.0)
        uncond = net_d(features, head="uncond")
        if uncond is not None:
            g_loss = g_loss + _bce(uncond, 1.0)
        total = total + g_loss
        logs[f"g_loss{i}"] = g_loss.item()
    region_features, cnn_code = image_encoder(fakes[-1])
    region_features, cnn_code = region_features.float(), cnn_code.float()
    g1, g2, g3, lam = (smooth[k] for k in ("GAMMA1", "GAMMA2", "GAMMA3", "LAMBDA"))
    w0, w1, _ = words_loss(
        region_features, words_embs.float(), match_labels, cap_lens, class_ids, g1, g2, g3
    )
    s0, s1 = sent_loss(cnn_code, sent_emb.float(), match_labels, class_ids, g3)
    w_loss, s_loss = (w0 + w1) * lam, (s0 + s1) * lam
    logs["w_loss"], logs["s_loss"] = w_loss.item(), s_loss.item()
    total = total + w_loss + s_loss
    if hard_negatives is not None:
        h_loss = hard_negative_loss(cnn_code, sent_emb.float(), hard_negatives.float(), g3)
        h_loss = h_loss * lam * hard_weight
        logs["h_loss"] = h_loss.item()
        total = total + h_loss
    return total, logs


def hard_negative_loss(
    cnn_code: torch.Tensor, sent_emb: torch.Tensor, negatives: torch.Tensor, gamma3: float
) -> torch.Tensor:
    """Cross-entropy of the true caption against its own hard negatives (``gamma3 * cos``).

    ``cnn_code [B, E]``, ``sent_emb [B, E]``, ``negatives [B, K, E]`` -> a scalar.
    """
    code = F.normalize(cnn_code, dim=1)
    pos = (code * F.normalize(sent_emb, dim=1)).sum(1, keepdim=True)  # [B, 1]
    neg = torch.einsum("be,bke->bk", code, F.normalize(negatives, dim=2))  # [B, K]
    logits = torch.cat([pos, neg], dim=1) * gamma3  # [B, 1 + K]
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.int64, device=code.device))


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``-0.5 mean(1 + logvar - mu^2 - e^logvar)`` (CA regulariser, weight 1)."""
    return -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
