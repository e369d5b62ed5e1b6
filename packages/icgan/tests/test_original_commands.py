"""The original IcGAN commands (check-only), and the generate / reconstruct-your-images modes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from ganlab_common.corpus import check_command, load_corpus
from icgan import cli as icgan_cli
from icgan.test import attribute_columns, generate_grid
from icgan.train import load_trained

CORPUS = load_corpus(Path(__file__).with_name("original_commands.txt"))


@pytest.mark.parametrize("entry", CORPUS, ids=[e.id for e in CORPUS])
def test_original_command(entry, tmp_path):
    check_command(entry, tmp_path)


def test_positional_form_is_celeba_under_folder(cli, celeba_root, tmp_path):
    out = cli(icgan_cli.train_command, ["first_test", celeba_root, "0.0003", "--dry_run"]).output
    assert '"dataset": "celeba"' in out and '"outdir": "first_test"' in out
    assert '"lr": 0.0003' in out and f'"dataroot": "{celeba_root}"' in out


def test_test_positional_form_runs_all_three(cli, mnist_run):
    cli(icgan_cli.test_command, [mnist_run.parent, "--nImages", "2"])
    for name in ("reconstruct", "swap", "interpolate"):
        assert (mnist_run / "test" / f"{name}.png").is_file()


def test_generate_modes(cli, mnist_run, tmp_path):
    trained = load_trained(mnist_run, torch.device("cpu"))
    y, labels = attribute_columns(trained, ())
    assert labels == [str(d) for d in range(10)] and y.shape == (10, 10)
    gen = torch.Generator().manual_seed(0)
    assert generate_grid(trained, y, 3, "random", generator=gen).shape == (3, 10, 1, 16, 16)
    line = generate_grid(trained, y[:1], 4, "line", generator=gen)
    assert line.shape == (4, 1, 1, 16, 16)
    wide = generate_grid(trained, y[:2], 1, "linefull1d", imsize=3, generator=gen)
    assert wide.shape == (1, 2, 1, 16, 24)  # (S / 4) * (imsize + 3) along the width
    assert generate_grid(trained, y[:1], 1, "linefull", 3, gen).shape == (1, 1, 1, 24, 24)
    out = tmp_path / "g.png"
    cli(icgan_cli.test_command, ["--runDir", mnist_run, "--mode", "generate", "--attr", "digit=7",
                       "--nImages", "4", "--noisemode", "line", "--out", out])
    with Image.open(out) as image:
        assert image.size[0] > 16


def test_generate_bad_attr_and_imsize(cli, mnist_run):
    result = cli.raw(icgan_cli.test_command, ["--runDir", mnist_run, "--mode", "generate",
                                    "--attr", "Smiling=1"])
    assert result.exit_code == 2 and "digit=0..9" in result.output
    result = cli.raw(icgan_cli.test_command, ["--runDir", mnist_run, "--mode", "generate",
                                    "--noisemode", "linefull"])
    assert result.exit_code == 2 and "--imsize" in result.output


def test_reconstruct_your_own_images(cli, mnist_run, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    for i in range(3):
        Image.new("L", (28, 28), 40 * i).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "r.png"
    cli(icgan_cli.test_command, ["--runDir", mnist_run, "--loadPath", folder, "--out", out])
    one = tmp_path / "one.png"
    cli(icgan_cli.test_command,
        ["--runDir", mnist_run, "--loadPath", folder / "1.png", "--out", one])
    with Image.open(out) as three, Image.open(one) as single:
        assert three.size[1] > single.size[1]  # 3 rows vs 1
