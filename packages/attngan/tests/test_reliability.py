"""attngan commands under bad input, killed launches, diverging losses and unreadable images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from attngan import train as train_module
from attngan.cli import evaluate, pretrain_damsm, sample, train
from ganlab_common.testing import assert_one_line_error


def _invoke(command, args):
    return CliRunner().invoke(command, [str(a) for a in args])


@pytest.fixture
def junk(tmp_path) -> Path:
    path = tmp_path / "junk.bin"
    path.write_bytes(bytes(range(256)) * 4)  # binary, not UTF-8, not a checkpoint
    return path


@pytest.fixture
def gan(cub_dir, cli_args, trained):
    """``gan(outdir, iters)``: argv of a tiny GAN run on the shared DAMSM encoders."""
    damsm = trained / "00000-damsm" / "damsm.pt"
    return lambda out, iters=2: [*cli_args("gan", cub_dir, out, iters=iters), "--NET_E", damsm]


@pytest.mark.parametrize("probe", [
    ["--set", "TRAIN.SMOOTH.LAMBDA=nan"], ["--set", "TRAIN.GENERATOR_LR=inf"],
    ["--set", "TREE.BASE_SIZE=48"], ["--manualSeed", str(2**40)], ["--outdir", "{junk}/runs"],
    ["--NET_E", "{junk}"],
])
def test_train_bad_input_is_one_error_line(gan, tmp_path, junk, probe):
    probe = [a.format(junk=junk) for a in probe]
    result = _invoke(train, [*gan(tmp_path / "runs"), *probe])
    assert_one_line_error(result)
    assert not (tmp_path / "runs").exists()


def test_other_commands_bad_input_is_one_error_line(cub_dir, cli_args, trained, tmp_path, junk):
    damsm = cli_args("damsm", cub_dir, tmp_path / "d")
    assert_one_line_error(_invoke(pretrain_damsm, [*damsm, "--set", "TRAIN.ENCODER_LR=nan"]))
    line = assert_one_line_error(_invoke(sample, ["--outdir", trained, "--captions", junk]))
    assert "not a UTF-8 text file" in line
    line = assert_one_line_error(_invoke(sample, ["--outdir", trained, "--caption", "a red bird",
                                                  "--save_dir", junk / "out"]))
    assert line.startswith("Error: --save_dir: cannot write")
    assert_one_line_error(_invoke(sample, ["--outdir", trained, "--manualSeed", "-1"]))
    assert_one_line_error(_invoke(evaluate, ["--outdir", trained, "--manualSeed", "nan"]))


def test_resume_passes_over_a_killed_launch_and_keeps_the_run_config(gan, tmp_path):
    out = tmp_path / "runs"
    result = _invoke(train, [*gan(out), "--manualSeed", "5"])
    assert result.exit_code == 0, result.output
    (first,) = out.iterdir()
    empty = out / "00001-attngan"  # a launch killed before its first checkpoint
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"seed": 9}))
    result = _invoke(train, [*gan(out, iters=4), "--resume"])
    assert result.exit_code == 0, result.output
    assert f"passing over {empty}" in result.output
    assert f"continuing {first} from checkpoints/ckpt-000002.pt" in result.output
    stored = json.loads((first / "config.json").read_text())
    assert stored["seed"] == 5 and stored["cfg"]["GANLAB"]["MAX_ITERS"] == 4
    assert (first / "checkpoints" / "ckpt-000004.pt").is_file()
    line = assert_one_line_error(_invoke(train, [*gan(out, 6), "--resume", "--manualSeed", "7"]))
    assert line.startswith("Error: --manualSeed 7:") and "started with 5" in line
    line = assert_one_line_error(_invoke(train, [*gan(out, 6), "--resume",
                                                 "--set", "TRAIN.SMOOTH.LAMBDA=2.0"]))
    assert line.startswith("Error: --set TRAIN.SMOOTH.LAMBDA 2.0:")
    line = assert_one_line_error(_invoke(train, [*gan(tmp_path / "none"), "--resume"]))
    assert "has a loadable checkpoint" in line


def test_a_non_finite_loss_stops_naming_the_iteration(gan, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "kl_loss", lambda mu, logvar: mu.sum() * float("nan"))
    result = _invoke(train, gan(tmp_path))
    line = assert_one_line_error(result, exit_code=1)
    assert line.startswith("Error: iteration 1: loss became non-finite (kl_loss=nan")
    (run,) = tmp_path.iterdir()
    assert not list(run.glob("checkpoints/*.pt")) and not (run / "netG.pt").exists()


def test_an_unreadable_image_is_skipped(cub_dir, cli_args, trained, tmp_path):
    data = tmp_path / "birds"
    shutil.copytree(cub_dir, data)
    for image in (data / "CUB_200_2011" / "images").glob("*/*_0001_*.jpg"):
        image.write_bytes(b"\xff\xd8 not a jpeg")
    args = [*cli_args("gan", data, tmp_path / "runs"),
            "--NET_E", trained / "00000-damsm" / "damsm.pt"]
    result = _invoke(train, args)
    assert result.exit_code == 0, result.output
    assert "not a readable image" in result.output
    assert "read(s) of unreadable images were skipped" in result.output
    (run,) = (tmp_path / "runs").iterdir()
    assert torch.load(run / "checkpoints" / "ckpt-000002.pt", weights_only=False)["step"] == 2



@pytest.mark.slow  # two torchrun launches of two gloo ranks: minutes on 2 busy cores
def test_two_gloo_ranks_train_checkpoint_resume_and_agree(gan, tmp_path):
    from ganlab_common.testing import assert_ranks_agree, two_rank_run

    out = tmp_path / "runs"
    first = two_rank_run(tmp_path, "a", "attngan.train", "wrap_model", "attngan.cli:train",
                         gan(out, iters=2))
    assert_ranks_agree(first)
    (run,) = out.iterdir()
    second = two_rank_run(tmp_path, "b", "attngan.train", "wrap_model", "attngan.cli:train",
                          [*gan(out, iters=4), "--resume"])
    assert_ranks_agree(second)
    assert list(out.iterdir()) == [run]
    state = torch.load(run / "checkpoints" / "ckpt-000004.pt", weights_only=False)
    assert all(torch.equal(state["netG"][k].cpu(), v) for k, v in second[0][0].items())
