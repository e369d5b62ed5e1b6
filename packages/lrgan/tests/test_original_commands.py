"""The original LR-GAN README's commands run through lrgan-train --dry_run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ganlab_common.corpus import check_command, load_corpus
from lrgan.cli import main

CORPUS = load_corpus(Path(__file__).with_name("original_commands.txt"))


@pytest.mark.parametrize("entry", CORPUS, ids=[e.id for e in CORPUS])
def test_original_command(entry, tmp_path):
    check_command(entry, tmp_path)


def _dry(args: list[str]) -> tuple[dict, str]:
    result = CliRunner().invoke(main, [*args, "--dry_run"])
    assert result.exit_code == 0, result.output
    text = result.output
    return json.loads(text[text.index("{"):text.rindex("}") + 1]), text


def test_original_bool_and_device_flags():
    cfg, _ = _dry(["--dataset", "mnist-one", "--imageSize", "32", "--evaluate", "False"])
    assert cfg["evaluate"] is False
    cfg, _ = _dry(["--dataset", "mnist-one", "--imageSize", "32", "--evaluate", "--ngpu", "0"])
    assert cfg["evaluate"] is True and cfg["device"] == "cpu"
    cfg, _ = _dry(["--dataset", "mnist-one", "--imageSize", "32", "--cuda", "False"])
    assert cfg["device"] == "cpu"
    result = CliRunner().invoke(main, ["--dataset", "mnist-one", "--evaluate", "maybe"])
    assert result.exit_code == 2 and "Error: --evaluate: expected True or False" in result.output


def test_cifar10_sample_is_announced():
    _, text = _dry(["--dataset", "cifar10", "--imageSize", "32"])
    assert "note: --dataset cifar10 without --dataroot uses the 20 CIFAR-10 test images" in text


def test_epoch_s_continues_from_the_checkpoints(tmp_path):
    net_g = tmp_path / "netG_epoch_10.pth"
    net_g.write_bytes(b"")  # only its existence is checked by --dry_run
    cfg, text = _dry(["--dataset", "mnist-one", "--imageSize", "32", "--niter", "50",
                      "--netG", str(net_g), "--epoch_s", "10"])
    assert cfg["niter"] == 40 and "epochs 10-49" in text
    result = CliRunner().invoke(main, ["--dataset", "mnist-one", "--epoch_s", "10"])
    assert result.exit_code == 2 and "--epoch_s 10: continues a run" in result.output
