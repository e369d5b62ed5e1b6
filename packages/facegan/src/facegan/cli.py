"""The six facegan commands; flags only -- the work is in dataset/train/c2f/sample/denoiser.

Flag names are the original scripts' (``--batchSize``, ``--D_maxAcc``, ...), and every
original flag is accepted: ``--gpu N`` picks ``cuda:N`` (-1: the CPU; ``--device`` is the new
spelling), ``--threads`` sets torch's threads, and the display-only flags (``--window``,
``--weightsVisFreq``) and ``--aws`` print one ``note:`` line saying they have no effect.
``--dry_run`` checks the flags and files and prints the resolved config without training.
Every bad flag or file ends in one ``Error: ...`` line, exit 2.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from ganlab_common.errors import UserError
from ganlab_common.legacy import (
    dry_run_option,
    gpu_device,
    noop_callback,
    require_path,
    set_threads,
)
from ganlab_common.options import SEED, FiniteFloat
from ganlab_common.runs import device_option

__all__ = ["autoencoder", "c2f", "dataset", "denoiser", "sample", "train"]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
SAVE = "runs/facegan"
_FLOAT = FiniteFloat()  # any finite float (NaN/inf refused)


def _refuse(flag: str, instead: str) -> Callable:
    def callback(ctx, param, value):
        if value:
            raise UserError(f"{flag}: no longer used; {instead}")

    return callback


def _retired(flag: str, instead: str, is_flag: bool = False) -> Callable:
    """A hidden option that only explains what replaced it."""
    extra = {"is_flag": True} if is_flag else {"type": str}
    return click.option(flag, hidden=True, expose_value=False,
                        callback=_refuse(flag, instead), **extra)


_GPU = click.option("--gpu", default=None, type=int, metavar="N",
                    help="The original's GPU index: N runs on cuda:N, -1 on the CPU "
                         "(overrides --device).")
_AWS = click.option("--aws", is_flag=True, expose_value=False,
                    callback=noop_callback("--aws", "it switched to the author's AWS data "
                                                    "path; give the folder with --dataset"),
                    help="No effect (a note says so): give the data folder with --dataset.")
_DRY_RUN = dry_run_option()


def _images_per_epoch(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """--N_epoch: a positive count, or -1 for the whole dataset."""
    if value == 0 or value < -1:
        raise click.BadParameter(f"{value}: expected a positive number of images, or -1 for "
                                 "the whole dataset", ctx, param)
    return value


def _noop(flag: str, why: str, **kwargs) -> Callable:
    """An original flag that has no effect here: accepted, and a note says why."""
    return click.option(flag, expose_value=False, callback=noop_callback(flag, why),
                        help=f"No effect (a note says so): {why}.", **kwargs)


_NO_DISPLAY = "there is no live display; grids are written to the run folder"


def _take_legacy(flags: dict) -> bool:
    """Apply and remove --gpu (and --threads where no config holds it); returns --dry_run."""
    gpu = flags.pop("gpu", None)
    if gpu is not None:
        flags["device"] = gpu_device("--gpu", gpu)
    return flags.pop("dry_run", False)


def _check_files(dataset: str | None, network: str = "", grayscale: bool | None = None) -> None:
    """What a run would read exists: the --dataset folder (or the default) and --network."""
    from .data import check_channels, resolve_source

    if dataset:
        require_path("--dataset", dataset)
    check_channels(resolve_source(dataset), grayscale)
    if network:
        require_path("--network", network, "file")


def _dry(cfg) -> None:
    import dataclasses
    import json

    click.echo(json.dumps(dataclasses.asdict(cfg), indent=2, default=str))


def _common_train(f: Callable) -> Callable:
    """Flags every trainer shares."""
    for option in reversed([
        click.option("--save", default=SAVE, show_default=True, type=click.Path(file_okay=False),
                     help="Folder of run directories <NNNNN>-<name>/."),
        click.option("--network", default="", type=click.Path(dir_okay=False),
                     help="Start from the networks in this checkpoint file."),
        click.option("--noplot", is_flag=True,
                     help="No sample grids until the last epoch (the original's live plots)."),
        click.option("--seed", default=1, show_default=True, type=SEED),
        click.option("--grayscale/--color", default=None,
                     help="Grey or colour images [default: grey for the embedded faces, "
                          "colour for a folder; colour needs a facegan-dataset folder]."),
        click.option("--dataset", default=None, type=click.Path(file_okay=False),
                     help="Image folder (facegan-dataset's out_aug_64x64/) [default: "
                          "data/facegan/out_aug_64x64 when it exists, else the 100 LFW faces "
                          "embedded in scikit-image, augmented x20 in memory]."),
        device_option(),
        click.option("--resume", is_flag=True,
                     help="Continue the newest run of this kind in --save from its last "
                          "checkpoint."),
        _GPU,
        _AWS,
        _DRY_RUN,
    ]):
        f = option(f)
    return f


def _gan_flags(d_l1: float, d_l2: float) -> Callable:
    """The optimiser / regularisation / balance flags of train.lua and train_c2f.lua."""
    options = [
        click.option("--batchSize", "batchSize", default=32, show_default=True, type=int,
                     help="Even, >= 4: half real + half fake images for D, all fake for G."),
        click.option("--N_epoch", "N_epoch", default=1000, show_default=True, type=int,
                     callback=_images_per_epoch,
                     help="Random images per epoch (-1: the whole dataset; 0 is refused)."),
        click.option("--G_L1", "G_L1", default=0.0, show_default=True, type=_FLOAT,
                     help="L1 penalty on G's weights (the original used --G_L2's value here)."),
        click.option("--G_L2", "G_L2", default=0.0, show_default=True, type=_FLOAT),
        click.option("--D_L1", "D_L1", default=d_l1, show_default=True, type=_FLOAT),
        click.option("--D_L2", "D_L2", default=d_l2, show_default=True, type=_FLOAT),
        click.option("--D_iterations", "D_iterations", default=1, show_default=True,
                     type=click.IntRange(min=1), help="D updates per batch."),
        click.option("--G_iterations", "G_iterations", default=1, show_default=True,
                     type=click.IntRange(min=1), help="G updates per batch."),
        click.option("--D_clamp", "D_clamp", default=1.0, show_default=True,
                     type=FiniteFloat(min=0),
                     help="Clamp D's gradients element-wise to +-this (0: off)."),
        click.option("--G_clamp", "G_clamp", default=5.0, show_default=True,
                     type=FiniteFloat(min=0),
                     help="Clamp G's gradients element-wise to +-this (0: off)."),
        click.option("--D_optmethod", "D_optmethod", default="adam", show_default=True,
                     help="sgd, adam or adagrad."),
        click.option("--G_optmethod", "G_optmethod", default="adam", show_default=True,
                     help="sgd, adam or adagrad."),
        click.option("--G_adam_lr", "G_adam_lr", default=-1.0, show_default=True, type=_FLOAT,
                     help="Adam learning rate for G (-1: 1e-3)."),
        click.option("--D_adam_lr", "D_adam_lr", default=-1.0, show_default=True, type=_FLOAT,
                     help="Adam learning rate for D (-1: 1e-3)."),
        click.option("--noiseDim", "noiseDim", default=100, show_default=True,
                     type=click.IntRange(min=1)),
        click.option("--window", default=3, show_default=True, type=int,
                     callback=noop_callback("--window", _NO_DISPLAY),
                     help="No effect (a note says so): there is no live display; grids are "
                          "written to the run folder instead."),
        click.option("--threads", default=None, type=click.IntRange(min=1),
                     help="CPU threads for torch [default: torch's choice]."),
        click.option("--width", default=1.0, show_default=True, type=_FLOAT,
                     help="New: multiply every hidden channel count (1 = the original "
                          "networks; e.g. 0.25 for a quick CPU trial)."),
    ]

    def decorate(f: Callable) -> Callable:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def _refuse_autoencoder(value: str) -> None:
    if value:
        raise UserError(f"--autoencoder {value}: not supported (the original's G refining an "
                        "autoencoder's images; its README says it did not produce good "
                        "results and might not work anymore)")


def _echo_run(run) -> None:
    click.echo(f"wrote {run.dir}")


# train_autoencoder.lua's one-letter spellings (lapp's "-s,--save"), stored apart from the
# long options (which _common_train declares for every trainer) and merged by
# _apply_short_aliases.
_SHORT = {"-s": ("save", str), "-n": ("network", str), "-r": ("learningRate", float),
          "-b": ("batchSize", int), "-t": ("threads", int), "-g": ("gpu", int),
          "-d": ("noiseDim", int), "-m": ("momentum", float), "-w": ("window", int)}


def _short_aliases(f: Callable) -> Callable:
    for short, (name, kind) in reversed(_SHORT.items()):
        f = click.option(short, f"_short_{name}", type=kind, default=None, hidden=True)(f)
    return click.option("-p", "_short_plot", is_flag=True, hidden=True)(f)


def _apply_short_aliases(flags: dict) -> None:
    for _, (name, _kind) in _SHORT.items():
        value = flags.pop(f"_short_{name}")
        if value is None:
            continue
        if name in ("momentum", "window"):  # no effect, as their long spellings
            click.echo(f"note: -{name[0]} {value} has no effect here (see --{name} in "
                       "--help)", err=True)
            continue
        flags[name] = value
    if flags.pop("_short_plot"):
        flags["plot"] = True


# ---------------------------------------------------------------------------------------------
@click.command(context_settings=CONTEXT)
@click.option("--path", default=None, type=click.Path(),
              help="The LFW folder (<person>/*.jpg, 250x250, not funnelled) [default: the 100 "
                   "faces embedded in scikit-image, already cropped].")
@click.option("--out", default="data/facegan", show_default=True,
              type=click.Path(file_okay=False),
              help="Where out_aug_64x64/ and out_unaug_64x64/ are written.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Processes (the output does not depend on it).")
@click.option("--seed", default=43, show_default=True, type=SEED)
@_DRY_RUN
def dataset(path: str | None, out: str, workers: int, seed: int, dry_run: bool) -> None:
    """Build the augmented LFW face set (dataset/generate_dataset.py).

    Each image: the original + 19 augmentations (flip p 0.5, scale 0.82-1.10, rotation +-8
    deg, translation +-5 px, brightness x0.9-1.1, constant-mode warp), cropped to the LFWcrop
    box (rows 92-175, cols 83-166), resized to 64x64 and saved as {img:06}_{aug:03}.jpg in
    out_aug_64x64/ (20 files per image); the originals also go to out_unaug_64x64/.
    Deterministic (sorted files, seed 43) and resumable: finished images are skipped.

    \b
    Examples:
      facegan-dataset --path ~/data/lfw --workers 8
      facegan-dataset                      # from the 100 embedded faces (2,000 files)
    """
    from .dataset import build_dataset

    if path is not None:
        require_path("--path", path)
    if dry_run:
        click.echo(f"would build {out}/out_aug_64x64 and {out}/out_unaug_64x64 from "
                   f"{path or 'the embedded faces'}")
        return
    report = build_dataset(path, out, workers=workers, seed=seed, echo=click.echo)
    click.echo(f"{report.written} image(s) written, {report.already_done} already done, "
               f"{report.unreadable} unreadable .jpg and {report.other_files} non-image file(s) "
               f"skipped -> {out}/out_aug_64x64 ({report.files_per_image} files per image) and "
               f"{out}/out_unaug_64x64")


# ---------------------------------------------------------------------------------------------
@click.command(context_settings=CONTEXT)
@click.option("--scale", default=32, show_default=True, type=int,
              help="Image height/width: 16 or 32 (models.lua's two sizes).")
@click.option("--epochs", default=50, show_default=True, type=click.IntRange(min=1),
              help="Epochs of --N_epoch images (new: the original looped forever).")
@click.option("--saveFreq", "saveFreq", default=5, show_default=True,
              type=click.IntRange(min=1),
              help="Save a checkpoint and sample grids every N epochs (original 30).")
@_common_train
@_gan_flags(d_l1=0.0, d_l2=1e-4)
@click.option("--G_SGD_lr", "G_SGD_lr", default=0.02, show_default=True, type=_FLOAT)
@click.option("--G_SGD_momentum", "G_SGD_momentum", default=0.0, show_default=True, type=_FLOAT)
@click.option("--D_SGD_lr", "D_SGD_lr", default=0.02, show_default=True, type=_FLOAT)
@click.option("--D_SGD_momentum", "D_SGD_momentum", default=0.0, show_default=True, type=_FLOAT)
@click.option("--D_maxAcc", "D_maxAcc", default=1.01, show_default=True, type=_FLOAT,
              help="Skip D's update while its mean accuracy over the last ~31 batches is >= "
                   "this (1.01: never).")
@click.option("--denoise", is_flag=True,
              help="Also write denoised sample grids, using the newest facegan-denoiser run "
                   "at this scale in --save (an error when there is none).")
@click.option("--init", type=click.Choice(["eyescream", "default"]), default="eyescream",
              show_default=True,
              help="eyescream: the original (train.lua:137-138) N(0, 0.005) on top-level "
                   "modules only, which also sets G's BatchNorm gains and PReLU slopes to ~0 "
                   "(G starts as a flat grey image); default: PyTorch's layer init.")
@_noop("--weightsVisFreq", _NO_DISPLAY, type=int)
@click.option("--autoencoder", default="", expose_value=False, metavar="FILE",
              callback=lambda ctx, param, value: _refuse_autoencoder(value),
              help="Not supported: G refining a pretrained autoencoder's images (the "
                   "original README: it did not produce good results); '' is accepted.")
def train(**flags) -> None:
    """Train the face G/D pair (train.lua) on LFW faces at 16 or 32 px.

    G: Linear -> 2 x [upsample, conv5, BN, PReLU] -> conv3 -> sigmoid; D16: a conv branch plus
    a dense skip branch; D32: 4 conv/avg-pool blocks and 3 linear layers.  An epoch is
    --N_epoch random images (~62 iterations at batch 32).

    \b
    Examples:
      facegan-train --scale 16                    # then facegan-c2f, then facegan-sample
      facegan-train --scale 32 --dataset data/facegan/out_aug_64x64 --color
      facegan-train --scale 16 --resume --epochs 40

    CPU budget: at --scale 16 an iteration takes 1.3-2 s on a 2-core CPU (0.5-0.8 it/s), so
    the default --epochs 50 (3,100 iterations) take about 1-1.5 h; on the embedded faces the
    samples became recognisable faces around epoch 35-40.  --scale 32 is ~3.5x slower per
    iteration; --width 0.25 is ~6x faster (at --scale 16 it also made faces after ~40
    epochs; at --scale 32 it had not after 45, see the README).  Each run
    writes <save>/<NNNNN>-train-<scale>px-<gray|color>/ with config.json, stats.jsonl,
    reals.png, fakes_eNNNN.png, best.png/worst.png (by D) and checkpoints/.
    """
    from .train import TrainConfig, check_config
    from .train import train as run_train

    dry_run = _take_legacy(flags)
    cfg = TrainConfig(**flags)
    if dry_run:
        cfg = check_config(cfg)
        _check_files(cfg.dataset, cfg.network, cfg.grayscale)
        return _dry(cfg)
    _echo_run(run_train(cfg))


# ---------------------------------------------------------------------------------------------
@click.command(context_settings=CONTEXT)
@click.option("--coarseSize", "coarseSize", default=16, show_default=True, type=int,
              help="Size the images are shrunk to (8, 16 or 32).")
@click.option("--fineSize", "fineSize", default=32, show_default=True, type=int,
              help="Size they are upsampled to and refined at (16, 32 or 64).")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(min=1),
              help="Epochs of --N_epoch images (new: the original looped forever).")
@click.option("--saveFreq", "saveFreq", default=1, show_default=True,
              type=click.IntRange(min=1), help="Checkpoint and grid every N epochs.")
@_common_train
@_gan_flags(d_l1=1e-7, d_l2=0.0)
@click.option("--G_sgd_lr", "G_sgd_lr", default=0.02, show_default=True, type=_FLOAT)
@click.option("--G_sgd_momentum", "G_sgd_momentum", default=0.0, show_default=True, type=_FLOAT)
@click.option("--D_sgd_lr", "D_sgd_lr", default=0.02, show_default=True, type=_FLOAT)
@click.option("--D_sgd_momentum", "D_sgd_momentum", default=0.0, show_default=True, type=_FLOAT)
def c2f(**flags) -> None:
    """Train the coarse-to-fine upscaler (train_c2f.lua): G turns [noise ; upsampled coarse
    image] into the missing detail (a residual), D judges residual + coarse.

    Without --dataset it uses the data and colour mode of the latest facegan-train run in
    --save, so `facegan-train --scale 16` then `facegan-c2f` needs no flags.

    \b
    Examples:
      facegan-c2f                                  # 16 -> 32 px
      facegan-c2f --coarseSize 16 --fineSize 32 --epochs 10 --resume

    CPU budget: an iteration of the full-size pair (a 1.1 M-parameter G run at 32 px) takes
    4-6 s on a 2-core CPU, so the default 10 epochs (620 iterations) take about 45-60 min.
    Writes
    <save>/<NNNNN>-c2f-16to32-<gray|color>/ with c2f_eNNNN.png (rows: coarse, truth, refined,
    true residual, G's residual), stats.jsonl and checkpoints/.
    """
    from .c2f import C2FConfig, check_config, train_c2f

    dry_run = _take_legacy(flags)
    cfg = C2FConfig(**flags)
    if dry_run:
        cfg = check_config(cfg)
        if cfg.dataset:
            _check_files(cfg.dataset, cfg.network, cfg.grayscale)
        elif cfg.network:
            require_path("--network", cfg.network, "file")
        return _dry(cfg)
    _echo_run(train_c2f(cfg))


# ---------------------------------------------------------------------------------------------
@click.command(context_settings=CONTEXT)
@click.option("--save_base", default=SAVE, show_default=True, type=click.Path(file_okay=False),
              help="Where to look for the latest facegan-train run.")
@click.option("--save_c2f32", default=SAVE, show_default=True, type=click.Path(file_okay=False),
              help="Where to look for the latest matching facegan-c2f run.")
@click.option("--G_base", "G_base", default="", type=click.Path(dir_okay=False),
              help="A facegan-train checkpoint [default: the latest run's last one].")
@click.option("--D_base", "D_base", default="", type=click.Path(dir_okay=False),
              help="Checkpoint whose D ranks the samples [default: --G_base].")
@click.option("--G_c2f32", "G_c2f32", default="", type=click.Path(dir_okay=False),
              help="A facegan-c2f checkpoint [default: the latest matching run's].")
@click.option("--D_c2f32", "D_c2f32", default="", type=click.Path(dir_okay=False),
              help="Checkpoint whose c2f D picks the residuals [default: --G_c2f32].")
@click.option("--c2f/--no-c2f", default=None,
              help="Refine with the coarse-to-fine model [default: when one exists].")
@click.option("--neighbours", is_flag=True,
              help="Also save the 16 best samples beside their L2-nearest training images.")
@click.option("--writeto", default="", type=click.Path(file_okay=False),
              help="Output folder [default: a new <save_base>/<NNNNN>-sample/].")
@click.option("--seed", default=1, show_default=True, type=SEED)
@click.option("--runs", default=1, show_default=True, type=int,
              help="How many times to sample and save.")
@click.option("--batchSize", "batchSize", default=16, show_default=True, type=int,
              help="Batch size for running G and D.")
@click.option("--nsamples", default=1024, show_default=True, type=int,
              help="Samples per run (new; the original always drew 1,024).")
@click.option("--tries", default=10, show_default=True, type=int,
              help="Residuals drawn per image by the c2f chain; D keeps the best.")
@click.option("--scale", default=None, type=int,
              help="Checked against the checkpoint, which fixes the size (16 or 32; "
                   "[default: the checkpoint's]).")
@click.option("--grayscale/--color", default=None,
              help="Checked against the checkpoint's colour mode [default: the checkpoint's].")
@click.option("--noiseDim", "noiseDim", default=None, type=int,
              help="Checked against the checkpoint's noise size [default: the checkpoint's].")
@device_option()
@_GPU
@_AWS
@_DRY_RUN
def sample(**flags) -> None:
    """Sample faces (sample.lua): per run 1,024 samples -> random256/random1024 grids, the
    best and worst 64 ranked by D, 64 random ones, and -- when a c2f model exists -- the same
    three sets refined to the fine size (best of --tries residuals by the c2f D), next to
    plain bilinear upsampling (*_up_32.png) for comparison.

    \b
    Examples:
      facegan-sample                          # latest train run (+ latest c2f run)
      facegan-sample --runs 4 --neighbours
      facegan-sample --G_base runs/facegan/00000-train-16px-gray/checkpoints/ckpt-001240.pt
    """
    from .sample import SampleConfig, prepare
    from .sample import sample as run_sample

    dry_run = _take_legacy(flags)
    cfg = SampleConfig(**flags)
    if dry_run:
        base, c2f = prepare(cfg)
        click.echo(f"G: {base.path} ({base.meta['scale']} px, {base.meta['channels']} "
                   f"channel(s), noise {base.meta['noiseDim']}); c2f: "
                   f"{c2f.path if c2f else 'none'}")
        return _dry(cfg)
    click.echo(f"wrote {run_sample(cfg)}")


# ---------------------------------------------------------------------------------------------
@click.command(context_settings=CONTEXT)
@click.option("--scale", default=16, show_default=True, type=int, help="16 or 32.")
@click.option("--epochs", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--saveFreq", "saveFreq", default=10, show_default=True,
              type=click.IntRange(min=1))
@click.option("--batchSize", "batchSize", default=128, show_default=True, type=int)
@click.option("--N_train", "N_train", default=10000, show_default=True, type=int,
              help="Training images (the rest, up to 256, validate).")
@click.option("--coefL1", "coefL1", default=0.0, show_default=True, type=_FLOAT)
@click.option("--coefL2", "coefL2", default=0.0, show_default=True, type=_FLOAT)
@click.option("--AE_clamp", "AE_clamp", default=1.0, show_default=True,
              type=FiniteFloat(min=0), help="Gradient clamp (0: off).")
@click.option("--window", default=10, show_default=True, type=int,
              callback=noop_callback("--window", _NO_DISPLAY),
              help="No effect (a note says so): there is no live display.")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="CPU threads for torch [default: torch's choice].")
@_common_train
def denoiser(**flags) -> None:
    """Train the denoising autoencoder (train_denoiser.lua) used by facegan-train --denoise.

    Real faces + N(0, 0.1) noise -> conv/linear decoder -> the clean face (BCE); a second
    decoder refines the first one's output.  Fixed here: the original stepped both decoders
    with one shared Adam state.  Writes <save>/<NNNNN>-denoiser-CxSxS/denoiser_CxSxS.pt.
    About a minute for the defaults at 16 px on a 2-core CPU.
    """
    from .denoiser import DenoiserConfig, train_denoiser

    dry_run = _take_legacy(flags)
    set_threads("--threads", flags.pop("threads"))
    _train_or_dry(DenoiserConfig(**flags), dry_run, train_denoiser)


@click.command(context_settings=CONTEXT)
@click.option("--scale", default=32, show_default=True, type=int, help="16 or 32.")
@click.option("--epochs", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--saveFreq", "saveFreq", default=10, show_default=True,
              type=click.IntRange(min=1))
@click.option("--learningRate", "learningRate", default=1e-3, show_default=True,
              type=FiniteFloat(min=0, min_open=True),
              help="Adam's learning rate (the original's SGD rate 0.02 was never used).")
@click.option("--batchSize", "batchSize", default=128, show_default=True, type=int)
@click.option("--N_train", "N_train", default=10000, show_default=True, type=int)
@click.option("--coefL1", "coefL1", default=0.0, show_default=True, type=_FLOAT)
@click.option("--coefL2", "coefL2", default=0.0, show_default=True, type=_FLOAT)
@click.option("--noiseDim", "noiseDim", default=256, show_default=True,
              type=click.IntRange(min=1), help="Size of the code layer.")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="CPU threads for torch [default: torch's choice].")
@click.option("--plot", is_flag=True,
              help="Sample grids every epoch (what this command always does unless --noplot).")
@_noop("--momentum", "the original's SGD momentum; it trained with Adam", type=_FLOAT)
@_noop("--K", "the original declared it and never used it", type=int)
@_noop("--hidden_G", "the original's model ignored it (512 -> code -> 256 units)", type=int)
@_noop("--hidden_D", "the original's model ignored it (it has no D)", type=int)
@_noop("--window", _NO_DISPLAY, type=int)
@_short_aliases
@_common_train
def autoencoder(**flags) -> None:
    """Train the legacy MLP autoencoder (train_autoencoder.lua): C*S*S -> 512 -> 256 (tanh)
    -> dropout -> 256 -> C*S*S (sigmoid), L1 loss, Adam.  Writes
    <save>/<NNNNN>-autoencoder-CxSxS/autoencoder_CxSxS.pt.  Seconds per epoch on a CPU.
    """
    from .denoiser import AutoencoderConfig, train_autoencoder

    _apply_short_aliases(flags)
    dry_run = _take_legacy(flags)
    set_threads("--threads", flags.pop("threads"))
    if flags.pop("plot"):
        flags["noplot"] = False
    _train_or_dry(AutoencoderConfig(**flags), dry_run, train_autoencoder)


def _train_or_dry(cfg, dry_run: bool, train) -> None:
    """The denoiser/autoencoder tail: check sizes and files and print the config with
    --dry_run, else train and print the run folder."""
    from .denoiser import _check as check_sizes

    if dry_run:
        check_sizes(cfg.scale, cfg.batchSize, cfg.N_train)
        _check_files(cfg.dataset, cfg.network, cfg.grayscale)
        _dry(cfg)
        return
    _echo_run(train(cfg))
