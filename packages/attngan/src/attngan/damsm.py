"""DAMSM pretraining (``pretrain_DAMSM.py``): the text encoder and the image projections.

Per batch: image regions/code from :class:`CNN_ENCODER`, words/sentence from
:class:`RNN_ENCODER`, loss = word loss (both directions) + sentence loss (both directions),
gradient norm of the RNN clipped to ``RNN_GRAD_CLIP``.  As in the original, Adam(ENCODER_LR,
(0.5, 0.999)) is re-created at every epoch and the lr decays x0.98 per epoch while it is
above ENCODER_LR / 10.

The result is ``<run>/damsm.pt``: ``{"kind": "attngan-damsm", "config", "vocab",
"text_encoder", "image_encoder" (projections; with the ``tiny`` backbone also its trained
weights), "backbone"}``; ``attngan-train --NET_E``
reads it (or a resume checkpoint of this run, which holds the same entries).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ganlab_common.checkpoint import atomic_save, load_checkpoint, load_state_dicts, state_dicts
from ganlab_common.distributed import (
    all_reduce_mean,
    autocast,
    make_dataloader,
    set_epoch,
    setup_distributed,
    unwrap,
    wrap_model,
)
from ganlab_common.errors import UserError
from ganlab_common.runs import Run, find_run_dir, seed_everything

from .backbones import build_backbone
from .config import with_defaults
from .data import TextImageDataset, build_vocabulary, load_records, sort_batch
from .digits import digit_negative_tables, swapped_sentences
from .losses import hard_negative_loss, sent_loss, words_loss
from .models import CNN_ENCODER, RNN_ENCODER, stage_sizes
from .text import Vocabulary, load_captions_pickle
from .viz import attention_figure, attention_sheet

__all__ = ["Encoders", "build_encoders", "load_damsm", "pretrain_damsm", "batches", "DAMSM_RUN"]

DAMSM_RUN = "damsm"


@dataclass
class Encoders:
    text: RNN_ENCODER
    image: CNN_ENCODER
    vocab: Vocabulary
    config: dict


def build_encoders(cfg: dict, vocab: Vocabulary, quiet: bool = False) -> Encoders:
    """Fresh encoders for ``cfg`` and ``vocab`` (Inception frozen; ``tiny`` trainable)."""
    g = cfg["GANLAB"]
    text = RNN_ENCODER(
        len(vocab),
        ninput=g["WORD_EMBEDDING_DIM"],
        nhidden=cfg["TEXT"]["EMBEDDING_DIM"],
        rnn_type=cfg["RNN_TYPE"],
    )
    backbone = build_backbone(g["IMAGE_ENCODER"], g["INCEPTION_WEIGHTS"], quiet=quiet)
    image = CNN_ENCODER(cfg["TEXT"]["EMBEDDING_DIM"], backbone)
    return Encoders(text, image, vocab, cfg)


def damsm_state(enc: Encoders) -> dict:
    return {
        "kind": "attngan-damsm",
        "config": enc.config,
        "vocab": list(enc.vocab.words),
        "text_encoder": unwrap(enc.text).state_dict(),
        "image_encoder": unwrap(enc.image).projection_state(),
        "backbone": unwrap(enc.image).backbone.kind,
    }


def _original_text_encoder(state: dict, path: Path, data_dir: str | None) -> dict:
    """An original ``text_encoder*.pth`` (a bare state_dict) with its ``captions.pickle``."""
    pickle_path = Path(data_dir or path.parent) / "captions.pickle"
    if not pickle_path.is_file():
        raise UserError(
            f"--NET_E: '{path}' is an original text encoder; its vocabulary comes from "
            f"captions.pickle, not found at {pickle_path} (give --data_dir)"
        )
    vocab = load_captions_pickle(pickle_path)[2]
    image_path = path.with_name(path.name.replace("text_encoder", "image_encoder"))
    image_state = load_checkpoint(image_path, flag="--NET_E (image_encoder)")
    return {
        "kind": "attngan-damsm",
        "vocab": vocab.words,
        "text_encoder": state,
        "image_encoder": image_state,
        "backbone": "torchvision",
        "config": None,
    }


def load_damsm(
    path: str | os.PathLike,
    cfg: dict,
    device: torch.device,
    data_dir: str | None = None,
    quiet: bool = False,
) -> Encoders:
    """Encoders from a ``damsm.pt`` / DAMSM checkpoint (or the original's text_encoder.pth).

    The backbone kind and the embedding size must agree with ``cfg``; the vocabulary must
    match the text encoder's embedding table.  Mismatches are one-line UserErrors.
    """
    path = Path(path)
    state = load_checkpoint(path, map_location="cpu", flag="--NET_E")
    if "encoder.weight" in state:
        state = _original_text_encoder(state, path, data_dir)
    if "text_encoder" not in state or "vocab" not in state:
        raise UserError(f"--NET_E: '{path}' is not a DAMSM checkpoint (run attngan-pretrain-damsm)")
    vocab = Vocabulary(list(state["vocab"]))
    n_rows = state["text_encoder"].get("encoder.weight", torch.empty(0, 0)).shape[0]
    if n_rows != len(vocab):
        raise UserError(
            f"--NET_E: '{path}': the text encoder has {n_rows} words but its vocabulary "
            f"{len(vocab)} (wrong captions.pickle or NET_E; issue #45)"
        )
    emb = state["text_encoder"]["encoder.weight"].shape[1]
    cfg = {**cfg, "GANLAB": {**cfg["GANLAB"], "WORD_EMBEDDING_DIM": int(emb)}}
    saved = with_defaults(state["config"]) if state.get("config") else {}
    for key in ("EMBEDDING_DIM",):
        if saved and saved["TEXT"][key] != cfg["TEXT"][key]:
            raise UserError(
                f"--NET_E: '{path}' has TEXT.{key} {saved['TEXT'][key]}, the config "
                f"{cfg['TEXT'][key]}"
            )
    if saved:
        cfg["RNN_TYPE"] = saved["RNN_TYPE"]
        kind = state.get("backbone", cfg["GANLAB"]["IMAGE_ENCODER"])
        weights = cfg["GANLAB"]["INCEPTION_WEIGHTS"] or saved["GANLAB"]["INCEPTION_WEIGHTS"]
        cfg["GANLAB"] = {**cfg["GANLAB"], "IMAGE_ENCODER": kind, "INCEPTION_WEIGHTS": weights}
    enc = build_encoders(cfg, vocab, quiet=quiet)
    try:
        enc.text.load_state_dict(state["text_encoder"])
        enc.image.load_projection_state(state["image_encoder"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"--NET_E: '{path}' does not match the encoders ({first})") from None
    enc.text.to(device).eval().requires_grad_(False)
    enc.image.to(device).eval().requires_grad_(False)
    return enc


def find_damsm(outdir: str | os.PathLike) -> Path:
    """The newest ``<outdir>/NNNNN-damsm*/damsm.pt``."""
    run = find_run_dir(outdir, DAMSM_RUN)
    if run is None or not (run / "damsm.pt").is_file():
        raise UserError(
            f"--NET_E: not given and no finished DAMSM run in '{outdir}' "
            "(run attngan-pretrain-damsm first, or pass --NET_E)"
        )
    return run / "damsm.pt"


def batches(loader: DataLoader, start: int) -> Iterator[tuple[int, dict]]:
    """``(epoch, batch)`` forever, starting at global iteration ``start``.

    A resumed epoch continues with the same sample order; the samples already seen are
    skipped without being loaded, so no random crop or caption draw is spent on them and
    a resumed run matches an uninterrupted one.
    """
    per_epoch = len(loader)
    epoch, skip = divmod(start, per_epoch)
    while True:
        set_epoch(loader, epoch)
        source = loader
        if skip:
            order = list(loader.sampler)[skip * loader.batch_size :]
            set_epoch(loader, epoch + 1)  # what a full pass would have left
            source = DataLoader(
                Subset(loader.dataset, order),
                batch_size=loader.batch_size,
                shuffle=False,
                num_workers=loader.num_workers,
                pin_memory=loader.pin_memory,
                drop_last=loader.drop_last,
                generator=torch.Generator().manual_seed(epoch),  # keeps the global RNG
            )
        yield from ((epoch, batch) for batch in source)
        skip = 0
        epoch += 1


def to_device(batch: dict, device: torch.device) -> dict:
    batch = sort_batch(batch)
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "images"}
    out["images"] = [img.to(device, non_blocking=True) for img in batch["images"]]
    return out


def _damsm_losses(enc: Encoders, text: nn.Module, image: nn.Module, batch: dict, smooth: dict,
                  hard: tuple | None = None):
    """The four DAMSM terms (+ ``h_loss`` when ``hard = (tables, k, generator)``)."""
    regions, code = image(batch["images"][-1])  # [B, E, 17, 17], [B, E]
    words, sent = text(batch["caption"], batch["cap_len"])  # [B, E, T], [B, E]
    labels = torch.arange(code.size(0), device=code.device)
    g1, g2, g3 = smooth["GAMMA1"], smooth["GAMMA2"], smooth["GAMMA3"]
    w0, w1, maps = words_loss(
        regions.float(), words.float(), labels, batch["cap_len"], batch["class_id"], g1, g2, g3
    )
    s0, s1 = sent_loss(code.float(), sent.float(), labels, batch["class_id"], g3)
    losses = {"w_loss0": w0, "w_loss1": w1, "s_loss0": s0, "s_loss1": s1}
    if hard is not None:
        tables, k, generator = hard
        negatives = swapped_sentences(text, batch["caption"], batch["cap_len"], tables, k,
                                      generator)  # [B, k, E]
        losses["h_loss"] = hard_negative_loss(code.float(), sent.float(), negatives.float(), g3)
    return losses, maps


def _save_attention(run: Run, name: str, batch: dict, maps: list, vocab: Vocabulary) -> None:
    rows = []
    for i in range(min(4, len(maps))):
        n = int(batch["cap_len"][i])
        words = vocab.decode(batch["caption"][i, :n].tolist())
        rows.append(attention_figure(batch["images"][-1][i], maps[i][0], words))
    if rows and run.is_main:
        attention_sheet(rows).save(run.dir / name)


@torch.no_grad()
def _validate(enc, loader, ctx, smooth, max_batches, amp) -> dict[str, float]:
    text, image = enc.text.eval(), enc.image.eval()
    sums: dict[str, float] = {}
    n = 0
    for batch in loader:
        if n >= max_batches:
            break
        batch = to_device(batch, ctx.device)
        with autocast(ctx, amp):
            losses, _ = _damsm_losses(enc, text, image, batch, smooth)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v.item()
        n += 1
    text.train()
    image.train()
    out = {f"val_{k}": all_reduce_mean(v / max(n, 1), ctx) for k, v in sums.items()}
    return out


def pretrain_damsm(
    cfg: dict,
    data_dir: str | None,
    outdir: str,
    device: str = "auto",
    seed: int = 100,
    resume: bool = False,
    workers: int = 0,
) -> Path:
    """Train the DAMSM encoders; returns the run directory (with ``damsm.pt``)."""
    ctx = setup_distributed(device)
    seed_everything(seed + ctx.rank)
    train_rec = load_records(cfg, data_dir, "train")
    test_rec = load_records(cfg, data_dir, "test")
    vocab = build_vocabulary(data_dir, [train_rec, test_rec])
    sizes = stage_sizes(cfg)
    words_num, batch_size = cfg["TEXT"]["WORDS_NUM"], cfg["TRAIN"]["BATCH_SIZE"]
    train_set = TextImageDataset(
        train_rec, vocab, sizes, words_num, True, seed, cfg["GANLAB"]["AUGMENT"]
    )
    val_set = TextImageDataset(test_rec, vocab, sizes, words_num, train=False, seed=seed + 1)
    loader = make_dataloader(train_set, batch_size, ctx, True, workers, seed)
    val_loader = make_dataloader(val_set, min(batch_size, len(val_set)), ctx, False, workers, seed)

    enc = build_encoders(cfg, vocab, quiet=not ctx.is_main)
    text = wrap_model(enc.text, ctx)
    image = wrap_model(enc.image, ctx)
    params = [p for m in (enc.text, enc.image) for p in m.parameters() if p.requires_grad]
    g, t = cfg["GANLAB"], cfg["TRAIN"]
    per_epoch = len(loader)
    total = g["MAX_ITERS"] if g["MAX_ITERS"] > 0 else t["MAX_EPOCH"] * per_epoch
    # not in the paper: digit-swapped captions as negatives (before the run directory)
    tables = digit_negative_tables(vocab.words, g["DIGIT_NEGATIVES"])
    config = {"cfg": cfg, "data_dir": data_dir, "seed": seed, "vocab_size": len(vocab)}
    run = Run.start(outdir, DAMSM_RUN, config, resume=resume)

    lr, start = t["ENCODER_LR"], 0
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
    state = run.checkpoints.load_latest(map_location="cpu") if resume else None
    if state is not None:
        if state["vocab"] != vocab.words:
            raise UserError(f"--resume: {run.dir} was trained with another vocabulary")
        enc.text.load_state_dict(state["text_encoder"])
        enc.image.load_projection_state(state["image_encoder"])
        load_state_dicts({"optimizer": optimizer}, state, str(run.checkpoints.latest()))
        lr, start = state["lr"], state["step"]
        train_set.rng.setstate(state["caption_rng"])
        run.truncate_stats(start)

    def save(step: int) -> None:
        extra = {"lr": lr, "caption_rng": train_set.rng.getstate()}
        extra.update(state_dicts({"optimizer": optimizer}))
        payload = {**damsm_state(enc), **extra}
        if run.is_main:
            run.checkpoints.save(step, payload)
            atomic_save(damsm_state(enc), run.dir / "damsm.pt")

    hard = None
    if tables is not None:
        hard = (tables, g["DIGIT_NEGATIVES"], torch.Generator().manual_seed(seed + 7 + start))

    bar = run.progress(total, initial=start, desc="damsm")
    step = start
    enc.text.train()
    enc.image.train()
    for epoch, batch in batches(loader, start):
        if step >= total:
            break
        if step % per_epoch == 0 and step > 0:  # a new epoch: a new optimizer, as the original
            optimizer = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
        batch = to_device(batch, ctx.device)
        with autocast(ctx, g["AMP"]):
            losses, maps = _damsm_losses(enc, text, image, batch, t["SMOOTH"], hard)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(enc.text.parameters(), t["RNN_GRAD_CLIP"])
        optimizer.step()
        step += 1
        bar.update(1)
        scalars = {k: v.item() for k, v in losses.items()}
        bar.set_postfix({k: f"{v:.3f}" for k, v in scalars.items()}, refresh=False)
        if step % g["LOG_ITERS"] == 0 or step == total:
            run.log(step, epoch=epoch, lr=lr, **scalars)
        if step % g["SAMPLE_ITERS"] == 0 or step == total:
            _save_attention(run, f"attention{step:06d}.png", batch, maps, vocab)
        end_of_epoch = step % per_epoch == 0
        if end_of_epoch:
            val = _validate(enc, val_loader, ctx, t["SMOOTH"], g["VAL_BATCHES"], g["AMP"])
            run.log(step, epoch=epoch, **val)
            if lr > t["ENCODER_LR"] / 10.0:
                lr *= g["DAMSM_LR_DECAY"]
        snapshot = end_of_epoch and (epoch + 1) % t["SNAPSHOT_INTERVAL"] == 0
        if step % g["CHECKPOINT_ITERS"] == 0 or step == total or snapshot:
            save(step)
    bar.close()
    if not run.checkpoints.latest() or run.checkpoints.list()[-1][0] != step:
        save(step)
    run.close()
    return run.dir
