"""``icgan-train`` and ``icgan-test``: flags only; the work is in train.py, test.py, evaluate.py.

Flag names mirror the original's ``cfg/mainConfig.lua`` and ``cfg/generateConfig.lua``; the
Lasagne port's positional form ``train.py FOLDER_NAME CELEBA_DIR`` / ``test.py FOLDER_NAME
CELEBA_DIR`` is accepted too (FOLDER_NAME: --outdir, CELEBA_DIR: --dataroot of CelebA).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ganlab_common.errors import UserError
from ganlab_common.guards import check_writable_dir
from ganlab_common.legacy import dry_run_option, require_path
from ganlab_common.options import SEED, FiniteFloat
from ganlab_common.runs import device_option, find_run_dir, resolve_device, seed_everything

from .models import IMAGE_SIZES, INITS
from .train import STAGES, TrainConfig, load_trained, train

__all__ = ["test_command", "train_command"]


def _check_train_flags(cfg: TrainConfig) -> None:
    """Cross-flag checks that click's types cannot express (one-line UserErrors)."""
    if cfg.fine_size not in IMAGE_SIZES:
        raise UserError(f"--fineSize: expected one of {', '.join(map(str, IMAGE_SIZES))}, "
                        f"got {cfg.fine_size}")
    if cfg.load_size and cfg.load_size < cfg.fine_size:
        raise UserError(f"--loadSize: expected 0 or at least --fineSize {cfg.fine_size}, "
                        f"got {cfg.load_size}")
    if cfg.fine_size % 2**cfg.n_conv_layers:
        raise UserError(f"--nConvLayers: {cfg.n_conv_layers} stride-2 layers do not divide "
                        f"--fineSize {cfg.fine_size} (expected at most "
                        f"{cfg.fine_size.bit_length() - 1})")
    if cfg.dataset == "mnist" and (cfg.load_size or cfg.random_crop):
        raise UserError("--loadSize/--randomCrop: only for --dataset celeba (MNIST digits are "
                        "resized to --fineSize)")


@click.command(context_settings={"max_content_width": 100})
# Pipeline and run.
@click.option("--stage", type=click.Choice(STAGES), default="all", show_default=True,
              help="gan: trainGAN; encoder-z / encoder-y: trainEncoder on the newest run; "
                   "all: the whole pipeline.")
@click.option("--dataset", type=click.Choice(["mnist", "celeba"]), default="mnist",
              show_default=True, help="mnist: the embedded 5,000 digits unless --dataroot; "
                                      "celeba needs --dataroot (the original's default).")
@click.option("--dataroot", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="CelebA folder (img_align_celeba/, list_attr_celeba.txt, "
                   "list_eval_partition.txt) or an MNIST IDX folder.")
@click.option("--outdir", type=click.Path(file_okay=False), default="runs", show_default=True,
              help="Runs go to <outdir>/<NNNNN>-icgan-<dataset>/.")
@click.option("--runDir", "--run-dir", "run_dir", type=click.Path(file_okay=False),
              default=None, help="Continue this run (default: the newest for --resume and "
                                 "the encoder stages).")
@click.option("--resume", is_flag=True, help="Continue the newest run from its checkpoints.")
# GAN (mainConfig option 0).
@click.option("--batchSize", "--batch-size", "batch_size", type=click.IntRange(min=2),
              default=64, show_default=True)
@click.option("--loadSize", "--load-size", "load_size", type=click.IntRange(min=0), default=0,
              show_default=True, help="CelebA: resize the crop to this, then crop --fineSize "
                                      "(0: --fineSize; the original used 64 = --fineSize).")
@click.option("--fineSize", "--fine-size", "fine_size", type=int, default=64, show_default=True,
              help=f"Image size, one of {', '.join(map(str, IMAGE_SIZES))}.")
@click.option("--randomCrop/--no-randomCrop", "random_crop", default=False, show_default=True)
@click.option("--nz", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--ngf", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--ndf", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--niter", type=click.IntRange(min=1), default=25, show_default=True,
              help="GAN epochs.")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=2e-4,
              show_default=True)
@click.option("--beta1", type=FiniteFloat(0, 1), default=0.5, show_default=True)
@click.option("--noise", type=click.Choice(["normal", "uniform"]), default="normal",
              show_default=True)
@click.option("--trainWrongY/--no-trainWrongY", "train_wrong_y", default=True,
              show_default=True, help="D also learns (real x, wrong y) -> fake.")
@click.option("--init", type=click.Choice(list(INITS)), default="original", show_default=True,
              help="original: G/D N(0, 0.02) as trainGAN.lua, encoders Torch nn defaults; "
                   "dcgan: N(0, 0.02) everywhere (before 2026-11-30); pytorch: PyTorch 2's.")
# Encoders (options 1 and 2).
@click.option("--split", type=FiniteFloat(0, 1, min_open=True), default=0.66,
              show_default=True, help="Encoders train on this first fraction (unshuffled).")
@click.option("--nConvLayers", "--n-conv-layers", "n_conv_layers", type=click.IntRange(1, 7),
              default=4, show_default=True)
@click.option("--nf", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--FCsz", "--fc-size", "fc_size_z", type=click.IntRange(min=0), default=0,
              show_default=True, help="E_z hidden size (0: the conv features, the "
                                      "original's nil).")
@click.option("--FCszY", "--fc-size-y", "fc_size_y", type=click.IntRange(min=1), default=512,
              show_default=True, help="E_y hidden size.")
@click.option("--nEpochs", "--n-epochs", "n_epochs", type=click.IntRange(min=1), default=15,
              show_default=True, help="Epochs of E_z (and of E_y unless --nEpochsY).")
@click.option("--nEpochsY", "--n-epochs-y", "n_epochs_y", type=click.IntRange(min=0), default=0,
              show_default=True, help="Epochs of E_y (0: --nEpochs).")
@click.option("--lrZ", "--lr-z", "lr_z", type=FiniteFloat(min=0, min_open=True),
              default=1e-4, show_default=True)
@click.option("--beta1Z", "--beta1-z", "beta1_z", type=FiniteFloat(0, 1), default=0.1,
              show_default=True)
@click.option("--lrY", "--lr-y", "lr_y", type=FiniteFloat(min=0, min_open=True),
              default=1e-4, show_default=True)
@click.option("--beta1Y", "--beta1-y", "beta1_y", type=FiniteFloat(0, 1), default=0.1,
              show_default=True)
@click.option("--eyData", "--ey-data", "ey_data", type=click.Choice(["real", "generated"]),
              default="real", show_default=True,
              help="E_y on real images (author code) or on G(z, y) (Lasagne port).")
# Generated dataset (option 3).
@click.option("--samples", type=click.IntRange(min=0), default=0, show_default=True,
              help="Generated images for the encoders (0: 182638 for celeba as the "
                   "original, 10000 for mnist).")
@click.option("--genBatchSize", "--gen-batch-size", "gen_batch_size",
              type=click.IntRange(min=2), default=256, show_default=True)
# Misc.
@click.option("--maxImages", "--max-images", "max_images", type=click.IntRange(min=0),
              default=0, show_default=True, help="Use only the first N training images.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="DataLoader worker processes (useful for CelebA JPEGs).")
@click.option("--saveEvery", "--save-every", "save_every", type=click.IntRange(min=0),
              default=0, show_default=True, help="Extra checkpoint every N iterations "
                                                 "(0: once per epoch).")
@click.option("--manualSeed", "--seed", "seed", type=SEED, default=1,
              show_default=True)
@device_option()
@dry_run_option()
@click.argument("folder_name", required=False, metavar="[FOLDER_NAME")
@click.argument("celeba_dir", required=False, metavar="[CELEBA_DIR")
@click.argument("learning_rate", required=False, type=FiniteFloat(min=0, min_open=True),
                metavar="[LEARNING_RATE]]]")
def train_command(**kwargs) -> None:
    """Train IcGAN: the conditional GAN, then E_z on G's samples, then E_y.

    \b
    Examples:
      icgan-train --dataset mnist --fineSize 32 --niter 5 --nEpochs 5
      icgan-train --dataset celeba --dataroot ~/data/celebA
      icgan-train --stage encoder-y --dataset celeba --dataroot ~/data/celebA
      icgan-train --resume --dataset mnist --fineSize 32   # after a kill
      icgan-train first_test ~/data/celebA   # the Lasagne port's train.py FOLDER CELEBA_DIR
    """
    dry_run = kwargs.pop("dry_run")
    _positional(kwargs, kwargs.pop("folder_name"), kwargs.pop("celeba_dir"))
    rate = kwargs.pop("learning_rate")
    if rate is not None:
        if not rate > 0:
            raise UserError(f"LEARNING_RATE: expected a positive number, got {rate}")
        kwargs["lr"] = rate
    cfg = TrainConfig(**kwargs)
    _check_train_flags(cfg)
    _check_data(cfg.dataset, cfg.dataroot)
    if dry_run:
        import dataclasses

        click.echo(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))
        return
    run_dir = train(cfg)
    if os.environ.get("RANK", "0") == "0":  # once under torchrun
        click.echo(f"icgan: run directory {run_dir}")


def _positional(kw: dict, folder: str | None, celeba_dir: str | None) -> None:
    """The Lasagne port's ``FOLDER_NAME CELEBA_DIR``: runs under FOLDER_NAME, CelebA there."""
    if folder is not None:
        kw["outdir"] = folder
    if celeba_dir is not None:
        if kw.get("dataroot") and kw["dataroot"] != celeba_dir:
            raise UserError(f"CELEBA_DIR '{celeba_dir}' and --dataroot '{kw['dataroot']}' "
                            "differ; give one")
        kw["dataroot"] = celeba_dir
        if "dataset" in kw:
            kw["dataset"] = "celeba"


def _check_data(dataset: str, dataroot: str | None) -> None:
    """The data folder exists (CelebA: with its attribute and partition files)."""
    if dataset == "celeba":
        from .data import check_celeba_root

        if dataroot is not None:
            require_path("--dataroot", dataroot)
        check_celeba_root(dataroot)
    elif dataroot is not None:
        require_path("--dataroot", dataroot)


# -- icgan-test ----------------------------------------------------------------------------
def newest_run(outdir: str) -> Path:
    """The newest ``icgan-*`` run in ``outdir``."""
    found = [p for p in (find_run_dir(outdir, f"icgan-{d}") for d in ("mnist", "celeba")) if p]
    if not found:
        raise UserError(f"--outdir: no icgan run in '{outdir}' (train one with icgan-train, "
                        "or pass --runDir)")
    return max(found, key=lambda p: int(p.name.split("-", 1)[0]))


@click.command(context_settings={"max_content_width": 100})
@click.option("--mode", type=click.Choice(["reconstruct", "swap", "interpolate", "evaluate",
                                         "generate", "all"]),
              default=None,
              help="reconstruct (reconstructWithVariations.lua), swap (attributeTransfer), "
                   "interpolate, evaluate, generate (generate.lua: G(z, y) from noise), all "
                   "(the Lasagne test.py: reconstruct, swap and interpolate) [default: "
                   "reconstruct; all with FOLDER_NAME].")
@click.option("--loadPath", "--load-path", "load_path", default=None, metavar="FILE|DIR",
              help="reconstruct: your own image, or a folder of images (the first --nImages), "
                   "instead of held-out ones.")
@click.option("--attr", "attrs", multiple=True, metavar="NAME=1|-1",
              help="generate: set an attribute (MNIST: digit=D), the rest -1; repeatable "
                   "[default: one column per attribute/digit].")
@click.option("--noisemode", "noise_mode", default="random", show_default=True,
              type=click.Choice(["random", "line", "linefull1d", "linefull"]),
              help="generate: random z per row, a line between two z down the rows, or "
                   "(with --imsize > 1) one large image per column from spatial noise.")
@click.option("--imsize", type=click.IntRange(min=1), default=1, show_default=True,
              help="generate, linefull1d/linefull: spatial noise cells (1 = one 64 px image).")
@click.option("--runDir", "--run-dir", "run_dir", type=click.Path(file_okay=False),
              default=None, help="The trained run (default: the newest in --outdir).")
@click.option("--outdir", type=click.Path(file_okay=False), default="runs", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output file (default: <run>/test/<mode>.png, or .json for evaluate).")
@click.option("--dataroot", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Held-out images from here instead of the run's --dataroot.")
@click.option("--nImages", "--n-images", "n_images", type=click.IntRange(min=1), default=50,
              show_default=True, help="reconstruct: images (rows); generate: rows of z.")
@click.option("--threshold/--no-threshold", default=True, show_default=True,
              help="Binarise E_y's output before G (argmax for MNIST).")
@click.option("--im1Path", "--im1-path", "im1_path", type=click.Path(dir_okay=False),
              default=None, help="swap/interpolate: first image (default: a held-out one).")
@click.option("--im2Path", "--im2-path", "im2_path", type=click.Path(dir_okay=False),
              default=None, help="swap/interpolate: second image.")
@click.option("--nInterpolations", "--n-interpolations", "n_interpolations",
              type=click.IntRange(min=1), default=4, show_default=True,
              help="interpolate: frames between the two reconstructions.")
@click.option("--nEval", "--n-eval", "n_eval", type=click.IntRange(min=0), default=0,
              show_default=True, help="evaluate: held-out images (0: the whole split).")
@click.option("--manualSeed", "--seed", "seed", type=SEED, default=0,
              show_default=True)
@device_option()
@dry_run_option()
@click.argument("folder_name", required=False, metavar="[FOLDER_NAME")
@click.argument("celeba_dir", required=False, metavar="[CELEBA_DIR]]")
def test_command(mode: str | None, run_dir: str | None, outdir: str, out: str | None,
                 dataroot: str | None, n_images: int, threshold: bool, im1_path: str | None,
                 im2_path: str | None, n_interpolations: int, n_eval: int, seed: int,
                 device: str, load_path: str | None = None, attrs: tuple[str, ...] = (),
                 noise_mode: str = "random", imsize: int = 1, dry_run: bool = False,
                 folder_name: str | None = None, celeba_dir: str | None = None) -> None:
    """Use a trained IcGAN: generate, reconstruct with variations, swap y, interpolate,
    evaluate.

    \b
    Examples:
      icgan-test --mode reconstruct --nImages 20
      icgan-test --mode swap --im1Path a.jpg --im2Path b.jpg
      icgan-test --mode interpolate --nInterpolations 6
      icgan-test --mode evaluate
      icgan-test --mode generate --attr Smiling=1 --attr Male=-1 --noisemode line
      icgan-test --mode reconstruct --loadPath my_faces/
      icgan-test first_test ~/data/celebA     # the Lasagne port's test.py FOLDER CELEBA_DIR
    """
    from . import test as gen

    given = {"outdir": outdir, "dataroot": dataroot}
    _positional(given, folder_name, celeba_dir)
    outdir, dataroot = given["outdir"], given["dataroot"]
    mode = mode or ("all" if folder_name is not None else "reconstruct")
    if mode == "all" and out:
        raise UserError("--out: --mode all writes three files into <run>/test/")
    for flag, path, kind in (("--dataroot", dataroot, "folder"), ("--loadPath", load_path, "any"),
                             ("--im1Path", im1_path, "file"), ("--im2Path", im2_path, "file")):
        if path is not None:
            require_path(flag, path, kind)
    seed_everything(seed)
    run = Path(run_dir) if run_dir else newest_run(outdir)
    if not (run / "config.json").is_file():
        raise UserError(f"--runDir: '{run}' is not an icgan run (no config.json)")
    trained = load_trained(run, resolve_device(device))
    if dry_run:
        click.echo(json.dumps({"run": str(run), "mode": mode, "dataset": trained.config[
            "dataset"], "labels": trained.label_names}, indent=2))
        return
    suffix = ".json" if mode == "evaluate" else ".png"
    target = Path(out) if out else run / "test" / f"{mode}{suffix}"
    check_writable_dir(target.parent, "--out" if out else "--runDir")
    if mode == "evaluate":
        scores = _evaluate(trained, n_eval, dataroot, seed)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(scores, indent=2) + "\n")
        click.echo(json.dumps({k: v for k, v in scores.items() if not isinstance(v, dict)}))
    elif mode == "all":
        for part in ("reconstruct", "swap", "interpolate"):
            ctx = click.get_current_context()
            ctx.invoke(test_command, **{**ctx.params, "mode": part, "run_dir": str(run),
                                        "folder_name": None, "celeba_dir": None,
                                        "dataroot": dataroot, "outdir": outdir})
        return
    elif mode == "generate":
        y, labels = gen.attribute_columns(trained, attrs)
        images = gen.generate_grid(trained, y, n_images, noise_mode, imsize,
                                   torch_generator(seed))
        gen.save_labelled_grid(images, labels, target)
    elif mode == "reconstruct":
        x = (gen.user_images(trained, load_path, n_images) if load_path
             else gen.heldout_images(trained, n_images, dataroot)[0])
        images, labels = gen.reconstruct(trained, x, threshold)
        gen.save_labelled_grid(images, labels, target)
    else:
        pair = gen.input_pair(trained, im1_path, im2_path, dataroot)
        if mode == "swap":
            images, labels = gen.swap(trained, pair, threshold)
            rows = ["x1", "x2"]
        else:
            images, labels = gen.interpolate(trained, pair, n_interpolations, threshold)
            rows = ["z+y", "z", "y"]
        gen.save_labelled_grid(images, labels, target, row_labels=rows)
    click.echo(f"icgan: wrote {target}")


def torch_generator(seed: int):
    """A CPU ``torch.Generator`` seeded with ``seed`` (the noise of --mode generate)."""
    import torch

    return torch.Generator().manual_seed(seed)


def _evaluate(trained, n_eval: int, dataroot: str | None, seed: int) -> dict:
    from .evaluate import celeba_scores, mnist_fidelity
    from .test import heldout_images

    x, y = heldout_images(trained, n_eval or 10**9, dataroot)
    if trained.labels_kind == "onehot":
        from ganlab_common.metrics import load_digit_classifier

        device = next(trained.netG.parameters()).device
        classifier = load_digit_classifier(device=device)
        return mnist_fidelity(trained, x, y.argmax(dim=1), classifier, seed=seed)
    return celeba_scores(trained, x, y)
