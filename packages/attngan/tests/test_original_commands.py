"""The original AttnGAN commands run through our CLIs (check-only), and eval configs sample."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from attngan.cli import train
from attngan.config import load_config, preset_name
from ganlab_common.corpus import check_command, load_corpus

CORPUS = load_corpus(Path(__file__).with_name("original_commands.txt"))


@pytest.mark.parametrize("entry", CORPUS, ids=[e.id for e in CORPUS])
def test_original_command(entry, tmp_path):
    check_command(entry, tmp_path)


def test_original_cfg_paths_name_the_presets(tmp_path):
    assert preset_name("cfg/coco_attn2.yml") == "coco_attn2"
    assert preset_name("../code/cfg/DAMSM/bird.yml") == "DAMSM/bird"
    assert preset_name("cfg/eval_bird_attnDCGAN2.yml") == "eval_bird_attnDCGAN2"
    assert preset_name("cfg/unknown.yml") is None
    own = tmp_path / "cfg" / "coco_attn2.yml"  # an existing file wins over the preset
    own.parent.mkdir()
    own.write_text("DATASET_NAME: 'coco'\nTRAIN:\n    BATCH_SIZE: 7\n")
    assert load_config(str(own))["TRAIN"]["BATCH_SIZE"] == 7
    assert load_config("cfg/coco_attn2.yml")["TRAIN"]["BATCH_SIZE"] == 14


def _net_g(outdir: Path) -> Path:
    return next(outdir.glob("*-attngan/netG.pt"))


def test_eval_config_samples_instead_of_training(trained, cub_dir, tmp_path):
    """--cfg cfg/eval_bird.yml with B_VALIDATION: one image per test caption, no training."""
    net_g = shutil.copy(_net_g(trained), tmp_path / "netG.pt")
    args = ["--cfg", "cfg/eval_bird.yml", "--gpu", "-1", "--data_dir", str(cub_dir),
            "--set", f"TRAIN.NET_G={net_g}", "--set", "B_VALIDATION=True"]
    result = CliRunner().invoke(train, [*args, "--dry_run"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["mode"] == "B_VALIDATION" and plan["captions"] > 0
    assert not (tmp_path / "valid").exists()
    result = CliRunner().invoke(train, args)
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "valid").glob("*.png"))) == plan["captions"] + 1  # + grid
    assert not list(tmp_path.glob("0*-attngan"))  # nothing was trained


def test_eval_config_example_captions(trained, cub_dir, tmp_path):
    """B_VALIDATION False: the captions of the files listed in example_filenames.txt."""
    data = Path(shutil.copytree(cub_dir, tmp_path / "birds"))
    caption = next((data / "text_c10").rglob("*.txt")).read_text().splitlines()[0]
    (data / "example_filenames.txt").write_text("example/mine\n")
    (data / "example").mkdir()
    (data / "example" / "mine.txt").write_text(f"{caption}\n{caption}\n")
    net_g = shutil.copy(_net_g(trained), tmp_path / "netG.pt")
    result = CliRunner().invoke(train, ["--cfg", "cfg/eval_bird.yml", "--data_dir", str(data),
                                        "--set", f"TRAIN.NET_G={net_g}", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "example" / "00001.png").is_file()
    assert (tmp_path / "example" / "00000_attention.png").is_file()


def test_eval_config_needs_a_generator(tmp_path):
    result = CliRunner().invoke(train, ["--cfg", "eval_bird", "--set", "TRAIN.NET_G="])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("Error: TRAIN.NET_G: TRAIN.FLAG")
