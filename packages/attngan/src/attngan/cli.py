"""Command-line entry points (click).  Flags mirror ``main.py`` / ``pretrain_DAMSM.py``:
``--cfg --gpu --data_dir --manualSeed``; ``--device`` is the new spelling of ``--gpu``.

``--cfg`` is a .yml/.json/.toml file or a preset name (the original ``cfg/*.yml`` files,
transcribed; ``cfg/coco_attn2.yml`` names the preset ``coco_attn2`` from any folder);
``--set KEY=VALUE`` overrides one entry.  The data folder is ``--data_dir``, else the
config's ``DATA_DIR``; the digits presets use the embedded digit scenes.  A config with
``TRAIN.FLAG: False`` (the ``eval_*`` presets) samples from ``TRAIN.NET_G`` instead of
training, as the original ``main.py`` did.
"""

from __future__ import annotations

import json

import click

from ganlab_common.errors import UserError
from ganlab_common.guards import check_writable_dir
from ganlab_common.legacy import dry_run_option, gpu_device, note, require_path
from ganlab_common.options import SEED, check_finite_values, explicit_options
from ganlab_common.runs import device_option, resolve_device

from .config import PRESETS, load_config

_PRESET_HELP = ", ".join(PRESETS)


def _config_options(default_cfg: str):
    """--cfg, --set, --data_dir, --manualSeed, --outdir, --device, --dry-run and friends."""

    def decorate(fn):
        options = [
            click.option(
                "--cfg",
                "cfg_name",
                default=default_cfg,
                show_default=True,
                metavar="PRESET|FILE",
                help=f"Preset ({_PRESET_HELP}) or a .json/.toml/.yml file.",
            ),
            click.option(
                "--set",
                "overrides",
                multiple=True,
                metavar="KEY=VALUE",
                help="Override one config entry, e.g. --set TRAIN.BATCH_SIZE=8.",
            ),
            click.option(
                "--data_dir",
                default=None,
                metavar="DIR",
                help="data/birds or data/coco layout; default: embedded digit scenes.",
            ),
            click.option(
                "--manualSeed",
                "seed",
                type=SEED,
                default=100,
                show_default=True,
                help="Random seed.",
            ),
            click.option(
                "--outdir",
                default="output",
                show_default=True,
                metavar="DIR",
                help="Where run directories NNNNN-<name>/ are created.",
            ),
            click.option(
                "--image_encoder",
                type=click.Choice(["auto", "fid", "torchvision", "random", "tiny"]),
                default=None,
                help="GANLAB.IMAGE_ENCODER (Inception: frozen; tiny: trained by DAMSM).",
            ),
            click.option(
                "--inception_weights",
                default=None,
                metavar="FILE",
                help="torchvision inception_v3 state_dict (the original's encoder).",
            ),
            click.option(
                "--max_iters",
                type=click.IntRange(min=0),
                default=None,
                help="GANLAB.MAX_ITERS: stop after N iterations (0: MAX_EPOCH).",
            ),
            click.option(
                "--resume/--no-resume",
                default=False,
                show_default=True,
                help="Continue the newest run of this kind in --outdir.",
            ),
            dry_run_option(),
            device_option(),
            click.option(
                "--gpu",
                "gpu",
                type=int,
                default=None,
                metavar="N",
                help="The original's GPU index: N picks cuda:N, -1 the CPU (overrides --device).",
            ),
        ]
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def _device(device: str, gpu: int | None) -> str:
    return device if gpu is None else gpu_device("--gpu", gpu)


def _data_dir(cfg: dict, data_dir: str | None) -> str | None:
    """``--data_dir``, else the config's DATA_DIR; None for the embedded digit scenes."""
    if cfg["DATASET_NAME"] == "digits" and not data_dir:
        return None
    chosen = data_dir or cfg["DATA_DIR"]
    if not chosen:
        raise UserError(
            f"--data_dir: the config is for '{cfg['DATASET_NAME']}'; give its data folder "
            "(only the digits presets run without one)"
        )
    flag = "--data_dir" if data_dir else "DATA_DIR (from --cfg; give yours with --data_dir)"
    require_path(flag, chosen)
    return chosen


def _resolve(cfg_name, overrides, image_encoder, inception_weights, max_iters) -> dict:
    extra = list(overrides)
    if image_encoder:
        extra.append(f"GANLAB.IMAGE_ENCODER={image_encoder}")
    if inception_weights:
        extra.append(f"GANLAB.INCEPTION_WEIGHTS={inception_weights}")
    if max_iters is not None:
        extra.append(f"GANLAB.MAX_ITERS={max_iters}")
    cfg = load_config(cfg_name, extra)
    check_finite_values(cfg, "--cfg/--set")
    if cfg["TRAIN"]["BATCH_SIZE"] < 2:
        raise UserError("TRAIN.BATCH_SIZE: expected at least 2 (contrastive losses)")
    return cfg


@click.command()
@_config_options("DAMSM/digits")
def pretrain_damsm(
    cfg_name,
    overrides,
    data_dir,
    seed,
    outdir,
    image_encoder,
    inception_weights,
    max_iters,
    resume,
    dry_run,
    device,
    gpu,
):
    """Pre-train the DAMSM text and image encoders (pretrain_DAMSM.py).

    \b
    attngan-pretrain-damsm                               # embedded digit scenes
    attngan-pretrain-damsm --cfg DAMSM/bird --data_dir data/birds
    attngan-pretrain-damsm --cfg cfg/DAMSM/coco.yml --gpu 1 --data_dir data/coco
    """
    cfg = _resolve(cfg_name, overrides, image_encoder, inception_weights, max_iters)
    data_dir = _data_dir(cfg, data_dir)
    device = _device(device, gpu)
    if dry_run:
        click.echo(json.dumps(cfg, indent=2))
        return
    from .damsm import pretrain_damsm as run

    run_dir = run(cfg, data_dir, outdir, device, seed, resume, cfg["WORKERS"])
    click.echo(f"DAMSM encoders: {run_dir / 'damsm.pt'}")


@click.command()
@_config_options("digits_attn2")
@click.option(
    "--NET_E",
    "net_e",
    default=None,
    metavar="FILE",
    help="DAMSM encoders (damsm.pt); default: the newest DAMSM run in --outdir.",
)
@click.option(
    "--faithful_mask_bug",
    is_flag=True,
    help="Use the original's wrong attention mask tiling (issue #93).",
)
def train(
    cfg_name,
    overrides,
    data_dir,
    seed,
    outdir,
    image_encoder,
    inception_weights,
    max_iters,
    resume,
    dry_run,
    device,
    gpu,
    net_e,
    faithful_mask_bug,
):
    """Train the attentional generator and the discriminators (main.py); with a
    TRAIN.FLAG False config (eval_bird, eval_coco, ...) sample from TRAIN.NET_G instead.

    \b
    attngan-train                                        # after attngan-pretrain-damsm
    attngan-train --cfg bird_attn2 --data_dir data/birds --NET_E output/00000-damsm/damsm.pt
    attngan-train --cfg cfg/eval_bird.yml --set TRAIN.NET_G=output/00001-attngan/netG.pt
    """
    if faithful_mask_bug:
        overrides = (*overrides, "GANLAB.MASK_BUG=true")
    cfg = _resolve(cfg_name, overrides, image_encoder, inception_weights, max_iters)
    _check_base_size(cfg["TREE"]["BASE_SIZE"])
    device = _device(device, gpu)
    if not cfg["TRAIN"]["FLAG"]:
        _sample_from_config(cfg, data_dir, device, seed, dry_run)
        return
    data_dir = _data_dir(cfg, data_dir)
    if net_e:
        cfg["TRAIN"]["NET_E"] = net_e
    if cfg["TRAIN"]["NET_E"]:
        require_path("--NET_E" if net_e else "TRAIN.NET_E", cfg["TRAIN"]["NET_E"], "file")
    if dry_run:
        click.echo(json.dumps(cfg, indent=2))
        return
    from .train import train_attngan

    net_e = cfg["TRAIN"]["NET_E"] or None
    explicit = _explicit_config_keys(overrides, max_iters, image_encoder, inception_weights)
    run_dir = train_attngan(cfg, data_dir, outdir, net_e, device, seed, resume, cfg["WORKERS"],
                            explicit)
    click.echo(f"generator: {run_dir / 'netG.pt'}")


def _check_base_size(size: int) -> None:
    """The generator grows 4x4 features by 2x steps: TREE.BASE_SIZE is 4 * 2^k, k >= 1."""
    if not isinstance(size, int) or size < 8 or size & (size - 1):
        raise UserError(f"TREE.BASE_SIZE: expected 4 * 2^k (8, 16, 32, 64, ...), got {size}")


def _explicit_config_keys(overrides, max_iters, image_encoder, inception_weights
                          ) -> dict[str, str] | None:
    """The run-config keys (``seed``, ``cfg.TRAIN.X``, ...) this command line set, with the
    flag that set each; what ``--resume`` checks against the stored run."""
    given = explicit_options()
    if given is None:
        return None
    keys = {name: given[flag] for name, flag in
            (("seed", "seed"), ("data_dir", "data_dir"), ("NET_E", "net_e")) if flag in given}
    if "cfg_name" in given:
        keys["cfg"] = "--cfg"  # every entry of the config
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        keys[f"cfg.{key}"] = f"--set {key}"
    for key, value, flag in (("GANLAB.MAX_ITERS", max_iters, "--max_iters"),
                             ("GANLAB.IMAGE_ENCODER", image_encoder, "--image_encoder"),
                             ("GANLAB.INCEPTION_WEIGHTS", inception_weights,
                              "--inception_weights")):
        if value is not None:
            keys[f"cfg.{key}"] = flag
    return keys


def _example_captions(data_dir: str) -> list[str]:
    """The original's gen_example input: <data>/example_filenames.txt names caption files."""
    listing = require_path("DATA_DIR", f"{data_dir}/example_filenames.txt", "file")
    captions = []
    for name in listing.read_text().split():
        captions += _read_captions_file(f"{data_dir}/{name}.txt")
    return captions


def _sample_from_config(cfg: dict, data_dir: str | None, device: str, seed: int,
                        dry_run: bool) -> None:
    """TRAIN.FLAG False: what main.py did -- B_VALIDATION: one image per test caption into
    <NET_G's folder>/valid/; else the example captions (with attention maps) into .../example/.
    """
    from pathlib import Path

    net_g = cfg["TRAIN"]["NET_G"]
    if not net_g:
        raise UserError("TRAIN.NET_G: TRAIN.FLAG is False (sampling); give the generator "
                        "with --set TRAIN.NET_G=<netG.pt>")
    path = require_path("TRAIN.NET_G", net_g, "file")
    from .evaluate import test_captions
    from .sample import load_generator, save_samples

    gen = load_generator(path, resolve_device(device))
    if gen.cfg["DATASET_NAME"] == "digits":
        if cfg["DATASET_NAME"] != "digits":
            note(f"TRAIN.NET_G was trained on the embedded digit scenes: its captions come "
                 f"from them, not from the config's {cfg['DATASET_NAME']} DATA_DIR")
        data = None
    else:
        data = _data_dir({**cfg, "DATASET_NAME": gen.cfg["DATASET_NAME"]}, data_dir)
    validation = cfg["B_VALIDATION"]
    if validation:
        from .data import load_records

        count = len(load_records(gen.cfg, data, "test").captions)
        captions = test_captions(gen.cfg, data, count)
    elif data is None:
        captions = test_captions(gen.cfg, None, 16)
    else:
        captions = _example_captions(data)
    target = path.parent / ("valid" if validation else "example")
    plan = {"mode": "B_VALIDATION" if validation else "example", "NET_G": str(path),
            "captions": len(captions), "target": str(target)}
    if dry_run:
        click.echo(json.dumps({**plan, "config": cfg}, indent=2))
        return
    size = max(1, min(cfg["TRAIN"]["BATCH_SIZE"], 64))
    paths = save_samples(gen, captions, Path(target), seed, size, attention=not validation)
    click.echo(f"{len(paths)} images in {target}")


def _read_captions_file(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError as exc:
        raise UserError(f"--captions: cannot read '{path}' ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"--captions: '{path}' is not a UTF-8 text file (one caption a line)"
                        ) from None
    if not lines:
        raise UserError(f"--captions: '{path}' has no caption lines")
    return lines


@click.command()
@click.option(
    "--netG",
    "net_g",
    default=None,
    metavar="FILE",
    help="netG.pt (or a training checkpoint); default: the newest run in --outdir.",
)
@click.option("--caption", "captions", multiple=True, metavar="TEXT", help="A caption (repeat).")
@click.option(
    "--captions",
    "captions_file",
    default=None,
    metavar="FILE",
    help="A text file, one caption per line.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="Draw N images from the test captions (for metrics); needs the data set.",
)
@click.option("--data_dir", default=None, metavar="DIR", help="Data set for --count.")
@click.option("--attention", is_flag=True, help="Also write the per-word attention maps.")
@click.option("--manualSeed", "seed", type=SEED, default=100, show_default=True)
@click.option("--batch_size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--outdir", default="output", show_default=True, help="Where runs are found.")
@click.option(
    "--save_dir", default=None, metavar="DIR", help="Where images go; default: <run>/samples."
)
@device_option()
def sample(
    net_g,
    captions,
    captions_file,
    count,
    data_dir,
    attention,
    seed,
    batch_size,
    outdir,
    save_dir,
    device,
):
    """Generate images from captions (with --attention: the per-word attention maps).

    \b
    attngan-sample --caption "a large red seven in the upper left" --attention
    attngan-sample --captions example_captions.txt --netG output/00001-attngan/netG.pt
    attngan-sample --count 1000                            # test captions, for attngan-eval
    """
    from pathlib import Path

    from .sample import find_generator, load_generator, save_samples

    path = Path(net_g) if net_g else find_generator(outdir)
    gen = load_generator(path, resolve_device(device))
    texts = list(captions)
    if captions_file:
        texts += _read_captions_file(captions_file)
    if count:
        from .evaluate import test_captions

        texts += test_captions(gen.cfg, data_dir, count)
    if not texts:
        raise UserError("--caption/--captions/--count: give at least one caption")
    target = Path(save_dir) if save_dir else (path.parent / "samples")
    check_writable_dir(target, "--save_dir" if save_dir else "--netG")
    paths = save_samples(gen, texts, target, seed, batch_size, attention)
    click.echo(f"{len(paths)} images in {target}")


@click.command(name="eval")
@click.option(
    "--netG",
    "net_g",
    default=None,
    metavar="FILE",
    help="netG.pt (or a training checkpoint); default: the newest run in --outdir.",
)
@click.option(
    "--data_dir",
    default=None,
    metavar="DIR",
    help="Test data of the generator's data set; default: embedded digit scenes.",
)
@click.option(
    "--count",
    type=click.IntRange(min=10),
    default=1000,
    show_default=True,
    help="Images generated from test captions (the paper: 30,000).",
)
@click.option(
    "--metrics",
    default="rprec,rprec_real,fid",
    show_default=True,
    help="Comma list of: rprec (generated), rprec_real (real test images), fid, is, "
    "faithful (digit scenes: named digit and colour found), faithful_real (the same on the "
    "real test scenes).",
)
@click.option(
    "--folds",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="R-precision folds (mean and std over them).",
)
@click.option(
    "--inception_weights",
    default=None,
    metavar="FILE",
    help="torchvision inception_v3 state_dict with logits (needed for is).",
)
@click.option("--manualSeed", "seed", type=SEED, default=100, show_default=True)
@click.option("--batch_size", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--outdir", default="output", show_default=True, help="Where runs are found.")
@device_option()
def evaluate(
    net_g, data_dir, count, metrics, folds, inception_weights, seed, batch_size, outdir, device
):
    """FID and R-precision of a trained generator on test captions.

    \b
    attngan-eval --count 1000
    attngan-eval --netG output/00001-attngan/netG.pt --data_dir data/birds --count 30000
    """
    from pathlib import Path

    from .evaluate import evaluate_generator, write_result
    from .sample import find_generator, load_generator

    names = tuple(m.strip() for m in metrics.split(",") if m.strip())
    known = ("rprec", "rprec_real", "fid", "is", "faithful", "faithful_real")
    unknown = [m for m in names if m not in known]
    if unknown or not names:
        raise UserError(f"--metrics: unknown '{','.join(unknown)}' (one of {', '.join(known)})")
    path = Path(net_g) if net_g else find_generator(outdir)
    gen = load_generator(path, resolve_device(device))
    if gen.cfg["DATASET_NAME"] != "digits" and data_dir is None:
        raise UserError(f"--data_dir: the generator was trained on '{gen.cfg['DATASET_NAME']}'")
    result = evaluate_generator(
        gen, data_dir, count, seed, batch_size, folds, names, inception_weights
    )
    result["netG"] = str(path)
    write_result(result, path.parent / "metric-eval.jsonl")
    if result.get("inception_score_note"):
        click.echo(f"note: {result['inception_score_note']}", err=True)
    click.echo(json.dumps(result))


@click.command()
@click.option(
    "--netG",
    "net_g",
    default=None,
    metavar="FILE",
    help="netG.pt (or a training checkpoint); default: the newest run in --outdir.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--max_batch",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Most images generated in one batched call.",
)
@click.option("--outdir", default="output", show_default=True, help="Where runs are found.")
@click.option("--verbose", is_flag=True, help="Log every request.")
@device_option()
def serve(net_g, host, port, max_batch, outdir, verbose, device):
    """Serve the generator over HTTP (FastAPI): the page at /, the API at /docs.

    \b
    attngan-serve --port 8000                  # then open http://127.0.0.1:8000/
    curl -s -X POST localhost:8000/generate -H 'Content-Type: application/json' \\
         -d '{"caption": "a red seven"}' > seven.png
    """
    from pathlib import Path

    from .sample import find_generator, load_generator

    try:
        from .serve import bind, make_app
        from .serve import serve as run_server
    except ImportError as exc:
        extra = "pip install 'attngan[serve]'"
        raise UserError(f"attngan-serve needs its extra: {extra} ({exc})") from None
    path = Path(net_g) if net_g else find_generator(outdir)
    gen = load_generator(path, resolve_device(device))
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise UserError(f"--host/--port: cannot listen on {host}:{port} ({exc.strerror})") from None
    bound_host, bound_port = sock.getsockname()[:2]
    click.echo(f"attngan-serve: http://{bound_host}:{bound_port}/ ({path})")
    run_server(make_app(gen, max_batch), sock, verbose)
