"""The original face-generator commands run through our CLIs (check-only); sample flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from facegan.cli import sample
from ganlab_common.corpus import check_command, load_corpus

CORPUS = load_corpus(Path(__file__).with_name("original_commands.txt"))


@pytest.mark.parametrize("entry", CORPUS, ids=[e.id for e in CORPUS])
def test_original_command(entry, tmp_path):
    check_command(entry, tmp_path)


def test_noop_flags_say_so(tmp_path):
    train_all = next(e for e in CORPUS if "--weightsVisFreq" in e.original)
    out = check_command(train_all, tmp_path)
    for flag in ("--window", "--weightsVisFreq", "--aws"):
        assert f"note: {flag}" in out


@pytest.mark.parametrize(("flags", "message"), [
    (["--scale", "32"], "--scale 32: '{ckpt}' holds a generator of 16 px images"),
    (["--noiseDim", "64"], "--noiseDim 64: '{ckpt}' holds a generator of noise of size 8"),
    (["--color"], "--color: '{ckpt}' holds a generator of grey images"),
    (["--scale", "64"], "--scale 64: the generators exist at 16 and 32 px"),
])
def test_sample_flags_are_checked_against_the_checkpoint(tiny_checkpoint, flags, message):
    result = CliRunner().invoke(sample, ["--G_base", str(tiny_checkpoint), "--dry_run", *flags])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == "Error: " + message.format(
        ckpt=tiny_checkpoint) + (
        "; drop the flag or give the matching value" if "holds" in message else
        " (models.lua's sizes; the original warned and rescaled); for larger faces refine "
        "them with facegan-c2f")


def test_sample_flags_matching_the_checkpoint_pass(tiny_checkpoint):
    args = ["--G_base", str(tiny_checkpoint), "--scale", "16", "--grayscale", "--noiseDim", "8"]
    result = CliRunner().invoke(sample, [*args, "--dry_run", "--no-c2f"])
    assert result.exit_code == 0, result.output
    assert "(16 px, 1 channel(s), noise 8)" in result.output


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    """A facegan-train checkpoint of an untrained 16 px grey G/D with noise size 8."""
    from facegan.train import build_models
    from ganlab_common.checkpoint import atomic_save

    G, D = build_models(1, 16, 8, width=0.125)
    state = {"G": G.state_dict(), "D": D.state_dict(), "channels": 1, "scale": 16,
             "noiseDim": 8, "width": 0.125}
    return atomic_save(state, tmp_path / "ckpt-000001.pt")


def test_gpu_index_picks_the_device():
    from facegan.cli import train

    result = CliRunner().invoke(train, ["--scale", "16", "--gpu", "-1", "--dry_run"])
    assert result.exit_code == 0, result.output
    assert '"device": "cpu"' in result.output
