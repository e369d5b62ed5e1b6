"""The AttnGAN training loop (``trainer.py::condGANTrainer.train``).

Per iteration, with the DAMSM encoders frozen:

1. words, sentence = text_encoder(caption); fakes, _, mu, logvar = G(z, sentence, words, mask)
2. for each stage i: update D_i with the matching-aware loss (real, fake, wrong caption)
3. update G: adversarial terms of every stage + LAMBDA * DAMSM(last stage) + KL(mu, logvar)
   (+ LAMBDA * the digit-swapped hard-negative term with ``GANLAB.DIGIT_NEGATIVES``; not
   in the paper, digit scenes only)
4. G's parameters are averaged (EMA 0.999); the average is what is sampled and exported.

Outputs in ``<outdir>/NNNNN-attngan/``: ``stats.jsonl``, ``fakes{it}.png`` (fixed noise and
captions, captions under the images), ``attention{it}.png`` (per-word maps of the last
attention stage), ``checkpoints/`` (text encoder, G, G average, every D, optimizers, RNG)
and ``netG.pt`` (the export :mod:`attngan.sample` reads).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganlab_common.checkpoint import atomic_save, load_state_dicts, state_dicts
from ganlab_common.data import report_skipped_images
from ganlab_common.distributed import (
    autocast,
    make_dataloader,
    setup_distributed,
    unwrap,
    wrap_model,
)
from ganlab_common.errors import UserError
from ganlab_common.guards import check_finite_losses, check_writable_dir
from ganlab_common.runs import (
    ResumePoint,
    Run,
    find_resume_point,
    merge_resume_config,
    seed_everything,
)

from .damsm import Encoders, batches, find_damsm, load_damsm, to_device
from .data import TextImageDataset, load_records
from .digits import digit_negative_tables, swapped_sentences
from .losses import discriminator_loss, generator_loss, kl_loss
from .models import attention_mask, build_discriminators, build_generator, stage_sizes
from .viz import attention_figure, attention_sheet, captioned_grid

__all__ = ["train_attngan", "export_state", "GAN_RUN", "ema_weights"]

GAN_RUN = "attngan"


@contextlib.contextmanager
def ema_weights(net_g: nn.Module, avg_params: list[torch.Tensor]):
    """Temporarily load the averaged parameters into ``net_g`` (BN buffers stay live)."""
    params = list(unwrap(net_g).parameters())
    backup = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, a in zip(params, avg_params):
            p.copy_(a)
    try:
        yield net_g
    finally:
        with torch.no_grad():
            for p, b in zip(params, backup):
                p.copy_(b)


def export_state(cfg: dict, enc: Encoders, net_g: nn.Module, avg_params: list) -> dict:
    """The self-contained generator file: config, vocabulary, encoders and the averaged G."""
    with ema_weights(net_g, avg_params):
        g_state = {k: v.detach().cpu().clone() for k, v in unwrap(net_g).state_dict().items()}
    return {
        "kind": "attngan-generator",
        "config": cfg,
        "vocab": list(enc.vocab.words),
        "netG": g_state,
        "text_encoder": enc.text.state_dict(),
        "image_encoder": enc.image.projection_state(),
        "backbone": enc.image.backbone.kind,
    }


@torch.no_grad()
def encode_text(enc: Encoders, captions: torch.Tensor, cap_lens: torch.Tensor):
    """``(words [B, E, T], sentence [B, E], mask [B, T])`` from the frozen text encoder."""
    words, sent = enc.text(captions, cap_lens)
    return words, sent, attention_mask(captions, words.size(2))


def _fixed_inputs(dataset: TextImageDataset, n: int, cfg: dict, seed: int, device) -> dict:
    """Captions (caption 0 of the first ``n`` images), z and CA noise for the progress grids.

    Drawn from their own generator: grids never touch the global RNG, so a resumed run
    continues exactly like an uninterrupted one.
    """
    caps, lens = zip(*(dataset.caption(i, 0) for i in range(n)))
    gen = torch.Generator().manual_seed(seed)
    return {
        "caption": torch.stack(caps).to(device),
        "cap_len": torch.tensor(lens).to(device),
        "noise": torch.randn(n, cfg["GAN"]["Z_DIM"], generator=gen).to(device),
        "ca_noise": torch.randn(n, cfg["GAN"]["CONDITION_DIM"], generator=gen).to(device),
    }


@torch.no_grad()
def _save_grids(run: Run, step: int, enc: Encoders, net_g, avg_params, fixed: dict) -> None:
    if not run.is_main:
        return
    words, sent, mask = encode_text(enc, fixed["caption"], fixed["cap_len"])
    g = unwrap(net_g)
    # train mode (batch statistics), as trainer.py:305-310 drew its grids; BN's running
    # statistics are put back, so grids do not change what training or eval see
    stats = {k: b.clone() for k, b in g.named_buffers()}
    g.train()
    with ema_weights(g, avg_params):
        fakes, att_maps, _, _ = g(fixed["noise"], sent, words, mask, fixed["ca_noise"])
    for k, b in g.named_buffers():
        b.copy_(stats[k])
    texts = [
        " ".join(enc.vocab.decode(c[: int(n)].tolist()))
        for c, n in zip(fixed["caption"], fixed["cap_len"])
    ]
    captioned_grid(fakes[-1], texts).save(run.dir / f"fakes{step:06d}.png")
    if att_maps:
        rows = []
        for i in range(min(4, len(texts))):
            n = int(fixed["cap_len"][i])
            rows.append(attention_figure(fakes[-1][i], att_maps[-1][i, :n], texts[i].split()))
        attention_sheet(rows).save(run.dir / f"attention{step:06d}.png")


#: Run-config entries that may change when a run is resumed (the rest come from config.json).
RESUME_CHANGEABLE = ("data_dir", "cfg.GANLAB.MAX_ITERS", "cfg.TRAIN.MAX_EPOCH", "cfg.WORKERS",
                     "cfg.GANLAB.LOG_ITERS", "cfg.GANLAB.SAMPLE_ITERS",
                     "cfg.GANLAB.CHECKPOINT_ITERS", "cfg.TRAIN.SNAPSHOT_INTERVAL")


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def resume_run_config(point: ResumePoint, config: dict,
                      explicit: Mapping[str, str] | None) -> dict:
    """The config a resumed run continues with: its stored ``config.json`` entries win, except
    :data:`RESUME_CHANGEABLE` ones given again; an entry the command line set to another value
    is a one-line error.  ``explicit``: flat keys (``seed``, ``cfg.TRAIN.X``; ``cfg`` for
    all of the config) -> the flag that set them; None outside the CLI."""
    given = _flatten(config)
    if explicit is not None and "cfg" in explicit:
        explicit = {**{k: explicit["cfg"] for k in given if k.startswith("cfg.")}, **explicit}
    merged = merge_resume_config(_flatten(point.config), given, RESUME_CHANGEABLE, explicit,
                                 point.run_dir)
    return _unflatten(merged)


def train_attngan(
    cfg: dict,
    data_dir: str | None,
    outdir: str,
    net_e: str | None = None,
    device: str = "auto",
    seed: int = 100,
    resume: bool = False,
    workers: int = 0,
    explicit: Mapping[str, str] | None = None,
) -> Path:
    """Train G and the Ds; returns the run directory (with ``netG.pt``).

    ``resume`` continues the newest attngan run with a loadable checkpoint, with its stored
    config, seed and DAMSM encoders (``explicit``: see :func:`resume_run_config`).
    """
    ctx = setup_distributed(device)
    point = None
    if resume:
        point = find_resume_point(outdir, GAN_RUN, announce=ctx.is_main)
        given = {"cfg": cfg, "data_dir": data_dir, "seed": seed, "NET_E": str(net_e or "")}
        merged = resume_run_config(point, given, explicit)
        cfg, data_dir, seed = merged["cfg"], merged["data_dir"], merged["seed"]
        net_e = merged["NET_E"] or None
    else:
        check_writable_dir(outdir, "--outdir")
    net_e = net_e or str(find_damsm(outdir))
    seed_everything(seed + ctx.rank)
    enc = load_damsm(net_e, cfg, ctx.device, data_dir, quiet=not ctx.is_main)
    cfg = {**cfg, "RNN_TYPE": enc.config["RNN_TYPE"], "GANLAB": enc.config["GANLAB"]}
    t, g = cfg["TRAIN"], cfg["GANLAB"]
    # before the run directory: errors write nothing
    swap_tables = digit_negative_tables(enc.vocab.words, g["DIGIT_NEGATIVES"])
    swap_rng = torch.Generator().manual_seed(seed + 7)  # state saved with the checkpoints
    records = load_records(cfg, data_dir, "train")
    dataset = TextImageDataset(
        records, enc.vocab, stage_sizes(cfg), cfg["TEXT"]["WORDS_NUM"], True, seed, g["AUGMENT"]
    )
    batch_size = t["BATCH_SIZE"]
    if batch_size < 2:
        raise UserError("TRAIN.BATCH_SIZE: expected at least 2 (the mismatched-caption pairs)")
    loader = make_dataloader(dataset, batch_size, ctx, True, workers, seed)

    net_g = wrap_model(build_generator(cfg), ctx)
    nets_d = [wrap_model(d, ctx) for d in build_discriminators(cfg)]
    opt_g = torch.optim.Adam(net_g.parameters(), lr=t["GENERATOR_LR"], betas=(0.5, 0.999))
    opts_d = [
        torch.optim.Adam(d.parameters(), lr=t["DISCRIMINATOR_LR"], betas=(0.5, 0.999))
        for d in nets_d
    ]
    avg_params = [p.detach().clone() for p in unwrap(net_g).parameters()]
    per_epoch = len(loader)
    total = g["MAX_ITERS"] if g["MAX_ITERS"] > 0 else t["MAX_EPOCH"] * per_epoch
    config = {"cfg": cfg, "data_dir": data_dir, "seed": seed, "NET_E": str(net_e or "")}
    run = Run.start(outdir, GAN_RUN, config, resume=point or False)
    modules = {"netG": net_g, "optimizerG": opt_g}
    modules.update({f"netD{i}": d for i, d in enumerate(nets_d)})
    modules.update({f"optimizerD{i}": o for i, o in enumerate(opts_d)})

    fixed = _fixed_inputs(dataset, min(8, len(dataset)), cfg, seed, ctx.device)
    start = 0
    state = run.checkpoints.load_latest(map_location="cpu") if resume else None
    if state is not None:
        load_state_dicts(modules, state, str(run.checkpoints.loaded_path))
        avg_params = [a.to(ctx.device) for a in state["avg_param_G"]]
        dataset.rng.setstate(state["caption_rng"])
        if "swap_rng" in state:
            swap_rng.set_state(state["swap_rng"])
        start = state["step"]
        run.truncate_stats(start)

    def save(step: int) -> None:
        if not run.is_main:
            return
        payload = state_dicts(modules)
        payload.update(
            avg_param_G=[a.cpu() for a in avg_params],
            caption_rng=dataset.rng.getstate(),
            swap_rng=swap_rng.get_state(),
            config=cfg,
            vocab=list(enc.vocab.words),
            text_encoder=enc.text.state_dict(),
            image_encoder=enc.image.projection_state(),
        )
        run.checkpoints.save(step, payload)
        atomic_save(export_state(cfg, enc, net_g, avg_params), run.dir / "netG.pt")

    if start == 0:
        _save_grids(run, 0, enc, net_g, avg_params, fixed)
    bar = run.progress(total, initial=start, desc="attngan")
    step = start
    nz = cfg["GAN"]["Z_DIM"]
    for epoch, batch in batches(loader, start):
        if step >= total:
            break
        batch = to_device(batch, ctx.device)
        words, sent, mask = encode_text(enc, batch["caption"], batch["cap_len"])
        noise = torch.randn(words.size(0), nz, device=ctx.device)
        with autocast(ctx, g["AMP"]):
            fakes, _, mu, logvar = net_g(noise, sent, words, mask)
        # (1) update each D: real/fake, conditional real/fake/wrong
        logs = {}
        reals = batch["images"][-len(nets_d) :]
        fakes_d = fakes[-len(nets_d) :]
        negatives = hard = None
        if swap_tables is not None:  # [B, K, E]; negatives[:, 0] are D's hard wrong pairs
            with torch.no_grad():
                negatives = swapped_sentences(enc.text, batch["caption"], batch["cap_len"],
                                              swap_tables, g["DIGIT_NEGATIVES"], swap_rng)
            hard = negatives[:, 0] if g["DIGIT_NEGATIVES_D"] else None
        for i, (net_d, opt_d) in enumerate(zip(nets_d, opts_d)):
            with autocast(ctx, g["AMP"]):
                err_d = discriminator_loss(net_d, reals[i], fakes_d[i], sent, hard)
            opt_d.zero_grad(set_to_none=True)
            err_d.backward()
            opt_d.step()
            logs[f"d_loss{i}"] = err_d.item()
        # (2) update G: adversarial + LAMBDA * DAMSM + KL
        labels = torch.arange(words.size(0), device=ctx.device)
        with autocast(ctx, g["AMP"]):
            err_g, g_logs = generator_loss(
                nets_d, enc.image, fakes, words, sent, labels,
                batch["cap_len"], batch["class_id"], t["SMOOTH"], negatives,
                g["DIGIT_NEGATIVES_WEIGHT"],
            )  # fmt: skip
            kl = kl_loss(mu.float(), logvar.float())
        opt_g.zero_grad(set_to_none=True)
        (err_g + kl).backward()
        opt_g.step()
        with torch.no_grad():
            for p, a in zip(unwrap(net_g).parameters(), avg_params):
                a.mul_(g["EMA_DECAY"]).add_(p.detach(), alpha=1 - g["EMA_DECAY"])
        logs.update(g_logs, kl_loss=kl.item(), g_total=err_g.item() + kl.item())
        step += 1
        check_finite_losses(step, logs, ctx)
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()}, refresh=False)
        if step % g["LOG_ITERS"] == 0 or step == total:
            run.log(step, epoch=epoch, **logs)
        if step % g["SAMPLE_ITERS"] == 0 or step == total:
            _save_grids(run, step, enc, net_g, avg_params, fixed)
        end_of_epoch = step % per_epoch == 0
        snapshot = end_of_epoch and (epoch + 1) % t["SNAPSHOT_INTERVAL"] == 0
        if step % g["CHECKPOINT_ITERS"] == 0 or step == total or snapshot:
            save(step)
    bar.close()
    latest = run.checkpoints.list()
    if not latest or latest[-1][0] != step:
        save(step)
    run.close()
    report_skipped_images(dataset)
    return run.dir
