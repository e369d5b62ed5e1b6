"""The flags of ``crvae-train`` (both repos' ``opts.lua``) and which combinations exist.

Field names are the original flag spellings, so ``Config(**click_kwargs)`` is the whole
mapping from the command line.
"""

from __future__ import annotations

from dataclasses import dataclass

from ganlab_common.errors import UserError

from .data import ATTR_DIMS, DATASETS
from .models import ACVAE_TYPES, CRVAE_TYPES, ModelSpec

__all__ = ["Config", "LATENT_TYPES", "STAGE2_TYPES", "validate", "model_spec", "run_name"]

LATENT_TYPES = CRVAE_TYPES + ACVAE_TYPES
STAGE2_TYPES = ("baseline", "lstm", "cvaegan", "crvaegan", "acvaegan")


@dataclass
class Config:
    """One training run (defaults: opts.lua; acVAE's where only it has the flag)."""

    # Data.
    dataset: str = "mnist"
    data: str = ""
    binaryMNIST: str = ""  # MNIST: folder of the test digits ('': -data's)
    # Run.
    manualSeed: int = 1208
    nEpochs: int = 150
    epochStep: int = 25  # epochs between kept model snapshots
    nSample: int = 5  # importance samples for the per-epoch MNIST NLL
    nSampleFinal: int = 100  # ... for the final NLL of the best-VLB model
    step: int = 50  # LR decay period (epochs)
    batchSize: int = 128
    save: str = "runs"
    retrain: str = "none"
    optimState: str = "none"
    stage1: str = "none"  # crVAE's name for -init_weight_from
    epochSize: int = 0  # iterations per epoch, 0 = one pass (not in opts.lua)
    nTest: int = 1000  # test images for NLL / reconstruction (not in opts.lua)
    nVal: int = 500  # MNIST: training digits held out to pick best.pt (0: the test digits)
    print_freq: int = 10
    ckptFreq: int = 1000  # iterations between mid-epoch checkpoints, 0 = epoch ends only
    # Model.
    baseChannels: int = 32
    nf: int = 64
    timeStep: int = 8
    rnnLayer: int = 2
    dropout: float = 0.0
    latentType: str = "baseline"
    stage: int = 1
    attrDim: int = 0  # 0: the dataset's (40 CelebA attributes, 10 MNIST classes)
    # Loss weights.
    alpha: float = 1.0
    alpha1: float = 0.0
    alpha2: float = 0.0
    beta: float = 0.1
    kappa: float = 0.1
    margin: float = 0.1
    fakeLabel: int = 4
    rho: float = 0.0
    rho_entreg: float = 0.0
    max_alpha: float = 1.0
    attention_gain: str = "steps"  # new: y_t = T alpha[t] y ("steps") or alpha[t] y ("one")
    init: str = "original"  # original (Lua ConvInit/BNInit) | pytorch (PyTorch 2 defaults)
    # Optimiser.
    LR: float = 0.003
    LR_mult: float = 1.0
    grad_clip: float = 5.0
    eps: float = 1e-5
    mom: float = 0.1
    beta1: float = 0.9
    decayLR: float = 0.5
    init_weight_from: str = "none"
    init_state_from: str = "none"
    # Misc.
    device: str = "auto"
    resume: bool = False

    @property
    def image_size(self) -> int:
        if self.dataset == "mnist":
            return 28
        return 128 if self.stage == 2 else 64

    @property
    def conditional(self) -> bool:
        return self.latentType in ACVAE_TYPES

    @property
    def uses_gan(self) -> bool:
        """MNIST crVAE models are plain VAEs; the others add D when beta > 0 (cGAN always)."""
        if self.latentType == "cgan":
            return True
        if self.latentType in CRVAE_TYPES and self.dataset == "mnist":
            return False
        return self.latentType != "cvae" and self.beta > 0

    @property
    def test_data(self) -> str:
        """Folder of the test split: -binaryMNIST for MNIST when given, else -data."""
        return self.binaryMNIST if self.dataset == "mnist" and self.binaryMNIST else self.data

    @property
    def stage1_path(self) -> str:
        return self.init_weight_from if self.init_weight_from != "none" else self.stage1


def _valid_pairs() -> str:
    return (
        "baseline|lstm on mnist|bird|celeba|lfw, conv on mnist, "
        "cvae|cgan|cvaegan|crvaegan|acvaegan on mnist|celeba; "
        "-stage 2 with baseline|lstm|cvaegan|crvaegan|acvaegan on bird|celeba|lfw"
    )


def validate(cfg: Config) -> None:
    """Raise a one-line UserError for a combination the papers never defined."""
    if cfg.dataset not in DATASETS:
        raise UserError(f"-dataset: unknown '{cfg.dataset}' (expected {'|'.join(DATASETS)})")
    if cfg.latentType not in LATENT_TYPES:
        raise UserError(f"-latentType: unknown '{cfg.latentType}' (valid: {_valid_pairs()})")
    if cfg.timeStep != 8:
        raise UserError(f"-timeStep {cfg.timeStep}: the model needs exactly 8 time steps "
                        "(the latent is split into 8 channel groups)")
    if cfg.latentType == "conv" and cfg.dataset != "mnist":
        raise UserError(f"-latentType conv -dataset {cfg.dataset}: conv exists for MNIST only "
                        f"(valid: {_valid_pairs()})")
    if cfg.conditional and cfg.dataset not in ATTR_DIMS:
        raise UserError(f"-latentType {cfg.latentType} -dataset {cfg.dataset}: conditional "
                        f"models need attributes (valid: {_valid_pairs()})")
    if cfg.conditional and cfg.attrDim not in (0, ATTR_DIMS[cfg.dataset]):
        raise UserError(f"-attrDim {cfg.attrDim}: {cfg.dataset} has "
                        f"{ATTR_DIMS[cfg.dataset]} attributes")
    if cfg.stage == 2:
        if cfg.dataset == "mnist" or cfg.latentType not in STAGE2_TYPES:
            raise UserError(f"-stage 2 -latentType {cfg.latentType} -dataset {cfg.dataset}: "
                            f"not defined (valid: {_valid_pairs()})")
        if cfg.stage1_path == "none":
            raise UserError("-stage 2: needs -init_weight_from <stage-1 checkpoint>")
    elif cfg.stage != 1:
        raise UserError(f"-stage {cfg.stage}: expected 1 (64 px) or 2 (128 px)")
    if cfg.nf % 8 or cfg.baseChannels < 2:
        raise UserError(f"-nf {cfg.nf}: must be a multiple of 8 (one channel group per step)")
    if cfg.uses_gan and cfg.fakeLabel < (4 if cfg.conditional else 3):
        raise UserError(f"-fakeLabel {cfg.fakeLabel}: needs room for real rows in the D batch "
                        f"(at least {4 if cfg.conditional else 3})")


def model_spec(cfg: Config) -> ModelSpec:
    attr = ATTR_DIMS.get(cfg.dataset, 0) if cfg.conditional else 0
    return ModelSpec(
        latent_type=cfg.latentType,
        image_size=cfg.image_size,
        channels=1 if cfg.dataset == "mnist" else 3,
        base_channels=cfg.baseChannels,
        nf=cfg.nf,
        steps=cfg.timeStep,
        rnn_layers=cfg.rnnLayer,
        dropout=cfg.dropout,
        attr_dim=attr,
        gan=cfg.uses_gan,
        attention_gain=float(cfg.timeStep) if cfg.attention_gain == "steps" else 1.0,
        init=cfg.init,
    )


def run_name(cfg: Config) -> str:
    return f"{cfg.dataset}-{cfg.latentType}-stage{cfg.stage}"
