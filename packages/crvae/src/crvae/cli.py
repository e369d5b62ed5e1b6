"""``crvae-train`` and ``crvae-sample``: Torch-style flags (``-latentType``) or ``--latentType``."""

from __future__ import annotations

import dataclasses
import json

import click

from ganlab_common.errors import UserError
from ganlab_common.legacy import dry_run_option, gpu_device, note, require_path, set_threads
from ganlab_common.options import SEED, FiniteFloat

from .config import LATENT_TYPES, Config, validate
from .data import DATASETS


def _opt(name: str, **kwargs):
    """An option spelled ``-name`` (as in opts.lua) and ``--name``; dest is ``name``."""
    return click.option(f"-{name}", f"--{name}", name, show_default=True, **kwargs)


_POS_INT = click.IntRange(min=1)
_NONNEG = FiniteFloat(min=0)
_DEFAULTS = Config()
# The originals' spellings: main_mnist.lua's dataset name and acVAE's model-file names
# (<type>_pggan_pretrain: stage 1 at 64 px; <type>_pggan: stage 2 at 128 px).
_DATASET_ALIASES = {"mnist_28x28": "mnist"}
_PGGAN_TYPES = ("cvaegan", "crvaegan", "acvaegan")
_LATENT_ALIASES = {
    **{f"{t}_pggan_pretrain": (t, 1) for t in _PGGAN_TYPES},
    **{f"{t}_pggan": (t, 2) for t in _PGGAN_TYPES},
}
_CKPT_FLAGS = ("retrain", "optimState", "stage1", "init_weight_from", "init_state_from")


def _legacy(name: str, **kwargs):
    """An original flag handled by :func:`_translate` (not a Config field)."""
    return click.option(f"-{name}", f"--{name}", name, default=None, **kwargs)


def _translate(kw: dict) -> tuple[Config, bool]:
    """The original spellings in ``kw`` turned into a Config; also returns --dry_run."""
    dry_run = kw.pop("dry_run")
    kw["dataset"] = _DATASET_ALIASES.get(kw["dataset"], kw["dataset"])
    if kw["latentType"] in _LATENT_ALIASES:
        latent, stage = _LATENT_ALIASES[kw["latentType"]]
        if click.get_current_context().get_parameter_source("stage").name == "COMMANDLINE" \
                and kw["stage"] != stage:
            raise UserError(f"-latentType {kw['latentType']} is stage {stage}, "
                            f"but -stage {kw['stage']} was given")
        kw["latentType"], kw["stage"] = latent, stage
    dynamic = kw.pop("dynamicMNIST")
    if dynamic:
        if kw["data"] and kw["data"] != dynamic:
            raise UserError(f"-dynamicMNIST '{dynamic}' and -data '{kw['data']}': "
                            "both name the training digits; give one")
        kw["data"] = dynamic
    n_gpu, threads = kw.pop("nGPU"), kw.pop("nThreads")
    if n_gpu is not None:
        kw["device"] = "cpu" if n_gpu == 0 else gpu_device("-nGPU", 0, f"-nGPU {n_gpu}")
        if n_gpu > 1:
            note(f"-nGPU {n_gpu}: one process uses one GPU; for {n_gpu} GPUs run "
                 f"torchrun --nproc_per_node {n_gpu} crvae-train ...")
    set_threads("-nThreads", threads)
    _legacy_notes(kw.pop("cudnn"), kw.pop("gen"), kw.pop("epochNumber"), kw.pop("bias"))
    kw.pop("netType")
    kw.pop("optimization")
    return Config(**kw), dry_run


def _legacy_notes(cudnn: str | None, gen: str | None, epoch: int | None,
                  bias: str | None) -> None:
    if cudnn is not None:
        note(f"-cudnn {cudnn} has no effect: PyTorch picks the cuDNN algorithms")
    if gen is not None:
        note(f"-gen {gen} has no effect: CelebA is read from its text files (no t7 cache)")
    if epoch is not None and epoch != 1:
        note(f"-epochNumber {epoch} has no effect: -resume continues a run at its "
             "checkpoint's epoch")
    if bias == "false":
        raise UserError("-bias false: not supported (the convolutions always have biases)")


def check_paths(cfg: Config, dynamic_flag: bool) -> None:
    """Every folder and checkpoint file the flags name exists (one-line UserError)."""
    if cfg.data:
        require_path("-dynamicMNIST" if dynamic_flag else "-data", cfg.data)
    if cfg.binaryMNIST:
        require_path("-binaryMNIST", cfg.binaryMNIST)
    for flag in _CKPT_FLAGS:
        value = getattr(cfg, flag)
        if value != "none":
            require_path(f"-{flag}", value, "file")


def _train_options(f):
    opts = [
        # Data.
        _opt("dataset", type=click.Choice(DATASETS + tuple(_DATASET_ALIASES)),
             default=_DEFAULTS.dataset,
             help="mnist (embedded digits or IDX files; main_mnist.lua's mnist_28x28), celeba, "
                  "bird (CUB-200), lfw."),
        _opt("data", default="", metavar="DIR",
             help="Dataset folder ('' = embedded data: MNIST digits, LFW faces)."),
        _opt("dynamicMNIST", default="", metavar="DIR",
             help="MNIST: the training digits' folder (IDX files; the original's "
                  "mnist_train.t7 is not read), binarised afresh each batch. Same as -data."),
        _opt("binaryMNIST", default="", metavar="DIR",
             help="MNIST: the test digits' folder (IDX files), binarised once with a fixed "
                  "seed as the original's static binarised set (default: -data's)."),
        # Run.
        _opt("manualSeed", type=SEED, default=_DEFAULTS.manualSeed, help="Random seed."),
        _opt("nEpochs", type=_POS_INT, default=_DEFAULTS.nEpochs, help="Epochs."),
        _opt("epochStep", type=click.IntRange(min=0), default=_DEFAULTS.epochStep,
             help="Epochs between kept snapshots (0: none)."),
        _opt("nSample", type=_POS_INT, default=_DEFAULTS.nSample,
             help="Importance samples of the per-epoch MNIST NLL."),
        _opt("nSampleFinal", type=_POS_INT, default=_DEFAULTS.nSampleFinal,
             help="Importance samples of the final NLL (10000 as in the paper is possible)."),
        _opt("step", type=_POS_INT, default=_DEFAULTS.step, help="LR decay period (epochs)."),
        _opt("batchSize", type=click.IntRange(min=2), default=_DEFAULTS.batchSize,
             help="Batch size (per process)."),
        _opt("save", default=_DEFAULTS.save, metavar="DIR", help="Runs folder."),
        _opt("retrain", default="none", metavar="CKPT",
             help="Start from the model weights of this checkpoint."),
        _opt("optimState", default="none", metavar="CKPT",
             help="Start from the optimiser states of this checkpoint."),
        _opt("stage1", default="none", metavar="CKPT", help="crVAE's name for -init_weight_from."),
        _opt("epochSize", type=click.IntRange(min=0), default=0,
             help="Iterations per epoch (0: one pass over the data)."),
        _opt("nTest", type=_POS_INT, default=_DEFAULTS.nTest,
             help="Test digits for the NLL."),
        _opt("nVal", type=click.IntRange(min=0), default=_DEFAULTS.nVal,
             help="MNIST: training digits held out to pick best.pt by their NLL (0: pick on "
                  "the test digits, as the original)."),
        _opt("print_freq", type=_POS_INT, default=_DEFAULTS.print_freq,
             help="Iterations between stats.jsonl rows."),
        _opt("ckptFreq", type=click.IntRange(min=0), default=_DEFAULTS.ckptFreq,
             help="Iterations between mid-epoch checkpoints (0: at epoch ends only)."),
        # Model.
        _opt("baseChannels", type=click.IntRange(min=2), default=_DEFAULTS.baseChannels,
             help="Width c of the conv nets."),
        _opt("nf", type=click.IntRange(min=8), default=_DEFAULTS.nf, help="Latent channels."),
        _opt("timeStep", type=int, default=8, help="Channel-recurrent steps (only 8 exists)."),
        _opt("rnnLayer", type=_POS_INT, default=_DEFAULTS.rnnLayer, help="LSTM layers."),
        _opt("dropout", type=FiniteFloat(0, 1), default=0.0, help="LSTM dropout."),
        _opt("latentType", type=click.Choice(LATENT_TYPES + tuple(_LATENT_ALIASES)),
             default=_DEFAULTS.latentType,
             help="crVAE: baseline|lstm|conv; acVAE: cvae|cgan|cvaegan|crvaegan|acvaegan "
                  "(acVAE's <type>_pggan_pretrain is <type> -stage 1, <type>_pggan is "
                  "<type> -stage 2)."),
        _opt("stage", type=int, default=1, help="1: 64 px; 2: 128 px grown from stage 1."),
        _opt("attrDim", type=click.IntRange(min=0), default=0,
             help="Attributes (0: the dataset's: 40 CelebA, 10 MNIST classes)."),
        # Loss weights.
        _opt("alpha", type=_NONNEG, default=_DEFAULTS.alpha, help="KL weight."),
        _opt("alpha1", type=_NONNEG, default=0.0, help="KL weight of steps 1-3 (with alpha2)."),
        _opt("alpha2", type=_NONNEG, default=0.0, help="KL weight of steps 4-8 (with alpha1)."),
        _opt("beta", type=_NONNEG, default=_DEFAULTS.beta, help="GAN weight (0: no D)."),
        _opt("kappa", type=_NONNEG, default=_DEFAULTS.kappa, help="MI weight."),
        _opt("margin", type=_NONNEG, default=_DEFAULTS.margin,
             help="D is not updated while its BCE is below this."),
        _opt("fakeLabel", type=_POS_INT, default=_DEFAULTS.fakeLabel,
             help="Period of the real/fake row pattern of the D batch."),
        _opt("rho", type=_NONNEG, default=0.0, help="acVAE doubly-stochastic attention weight."),
        _opt("rho_entreg", type=_NONNEG, default=0.0, help="acVAE attention entropy weight."),
        _opt("attention_gain", type=click.Choice(["steps", "one"]), default="steps",
             help="acVAE: y_t = T*alpha[t]*y (steps; new, full-scale y at the uniform start) "
                  "or alpha[t]*y (one; the original, y/T at first)."),
        _opt("init", type=click.Choice(["original", "pytorch"]), default="original",
             help="original: the Lua ConvInit/BNInit (conv U(+-1/sqrt(k*k*out)), biases 0, "
                  "BN 1/0); pytorch: PyTorch 2's layer defaults."),
        _opt("max_alpha", type=FiniteFloat(0, 1), default=1.0,
             help="Cap of the stage-2 fade-in weight."),
        # Optimiser.
        _opt("LR", type=FiniteFloat(min=0, min_open=True), default=_DEFAULTS.LR,
             help="Learning rate."),
        _opt("LR_mult", type=_NONNEG, default=1.0,
             help="Stage 2: LR factor of the layers loaded from stage 1."),
        _opt("grad_clip", type=_NONNEG, default=_DEFAULTS.grad_clip,
             help="Clamp of the LSTM gradients."),
        _opt("eps", type=FiniteFloat(min=0, min_open=True), default=_DEFAULTS.eps,
             help="BatchNorm epsilon."),
        _opt("mom", type=FiniteFloat(0, 1), default=_DEFAULTS.mom,
             help="BatchNorm momentum (Torch and PyTorch conventions agree)."),
        _opt("beta1", type=FiniteFloat(0, 1), default=_DEFAULTS.beta1, help="Adam beta1."),
        _opt("decayLR", type=FiniteFloat(0, 1), default=_DEFAULTS.decayLR,
             help="LR factor every -step epochs."),
        _opt("init_weight_from", default="none", metavar="CKPT",
             help="Stage 2: the stage-1 checkpoint to grow."),
        _opt("init_state_from", default="none", metavar="CKPT",
             help="Stage 2: optimiser states to start from (where they fit)."),
        # Misc.
        _opt("device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
             help="Where to run (-nGPU also picks it)."),
        click.option("-resume", "--resume", "resume", is_flag=True,
                     help="Continue the newest run of this dataset/type/stage in -save."),
        dry_run_option("-dry_run", "--dry_run", "--dry-run"),
        # The originals' flags that only pick hardware or have one value.
        _legacy("nGPU", type=click.IntRange(min=0),
                help="acVAE: 0 runs on the CPU, 1 on the GPU; more GPUs: torchrun "
                     "--nproc_per_node N (replaces DataParallel)."),
        _legacy("nThreads", type=click.IntRange(min=1), help="torch CPU threads."),
        _legacy("cudnn", type=click.Choice(["fastest", "default", "deterministic"]),
                help="No effect (a note says so): cuDNN picks its algorithms itself."),
        _legacy("gen", metavar="DIR",
                help="No effect (a note says so): CelebA is read from its text files, no "
                     "t7 cache is generated."),
        _legacy("epochNumber", type=click.IntRange(min=1),
                help="No effect (a note says so): -resume continues at the checkpoint's "
                     "epoch."),
        _legacy("bias", type=click.Choice(["true", "false"]),
                help="true only: the convolutions keep their biases (false is refused)."),
        _legacy("netType", type=click.Choice(["allconv"]), help="allconv (the only option)."),
        _legacy("optimization", type=click.Choice(["adam"]), help="adam (the only option)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@click.command(context_settings={"max_content_width": 100})
@_train_options
def train_main(**kwargs) -> None:
    """Train crVAE-GAN / acVAE-GAN (and their baselines).

    \b
    Examples:
      crvae-train -dataset mnist -latentType lstm -LR 0.003 -alpha 0.001 -nEpochs 200
      crvae-train -dataset mnist -latentType acvaegan -alpha 0.001 -LR 0.001 -beta 0
      crvae-train -dataset celeba -data CelebA/ -latentType acvaegan -alpha1 3e-4 \\
          -alpha2 2e-4 -LR 0.001 -beta1 0.5 -beta 0.0025 -kappa 0.01 -rho 0.05 \\
          -rho_entreg 0.05 -eps 1e-6 -mom 0.9 -step 60
      crvae-train -dataset celeba -data CelebA/ -latentType acvaegan -stage 2 \\
          -LR 3e-4 -batchSize 64 -init_weight_from runs/00000-.../checkpoints/ckpt-....pt
    """
    from .train import train

    dynamic_flag = bool(kwargs["dynamicMNIST"])
    cfg, dry_run = _translate(kwargs)
    check_paths(cfg, dynamic_flag)
    validate(cfg)
    if dry_run:
        click.echo(json.dumps(dataclasses.asdict(cfg), indent=2))
        return
    run_dir = train(cfg)
    click.echo(f"run: {run_dir}")


@click.command(context_settings={"max_content_width": 100})
@click.option("-checkpoint", "--checkpoint", "checkpoint", default=None, metavar="CKPT",
              help="A crvae-train checkpoint (default: the newest one under -save).")
@click.option("-save", "--save", "save", default="runs", show_default=True, metavar="DIR",
              help="Runs folder searched when -checkpoint is not given.")
@click.option("-out", "--out", "out", default=None, metavar="DIR",
              help="Output folder (default: <run>/samples).")
@click.option("-n", "--n", "n", type=click.IntRange(1, 256), default=64, show_default=True,
              help="Images per grid.")
@click.option("-steps", "--steps", "steps", type=click.IntRange(2, 32), default=8,
              show_default=True, help="Columns of the per-timestep traversal.")
@click.option("-attr", "--attr", "attrs", multiple=True, metavar="NAME=1|-1|flip",
              help="acVAE: set or flip an attribute (MNIST: digit=3). Repeatable.")
@click.option("-data", "--data", "data", default=None, metavar="DIR",
              help="Dataset folder for reconstructions (default: the run's).")
@click.option("-manualSeed", "--manualSeed", "seed", type=SEED, default=0, show_default=True,
              help="Seed of the noise.")
@click.option("-device", "--device", "device", type=click.Choice(["auto", "cpu", "cuda"]),
              default="auto", show_default=True, help="Where to run.")
def sample_main(**kwargs) -> None:
    """Prior samples, reconstructions, attribute edits, per-step traversals, attention map.

    \b
    Examples:
      crvae-sample                                  # newest checkpoint under runs/
      crvae-sample -checkpoint runs/00003-mnist-acvaegan-stage1/best.pt -attr digit=7
      crvae-sample -checkpoint ckpt.pt -attr Smiling=1 -attr Male=flip
    """
    from .sample import sample

    for path in sample(**kwargs):
        click.echo(str(path))


def config_fields() -> list[str]:
    """The Config fields (every flag of crvae-train)."""
    return [f.name for f in dataclasses.fields(Config)]
