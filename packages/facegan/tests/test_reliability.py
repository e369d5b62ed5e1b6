"""facegan commands under bad input, killed launches, diverging losses and unreadable images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from facegan import cli
from facegan import train as train_module
from ganlab_common.testing import assert_one_line_error

RUN = "00000-train-16px-gray"


def _invoke(command, args):
    return CliRunner().invoke(command, [str(a) for a in args])


@pytest.fixture
def junk(tmp_path) -> Path:
    path = tmp_path / "junk.pt"
    path.write_text("not a checkpoint")
    return path


@pytest.mark.parametrize("probe", [
    ["--G_adam_lr", "nan"], ["--D_clamp", "inf"], ["--width", "nan"], ["--D_L2", "-inf"],
    ["--D_maxAcc", "nan"], ["--seed", str(2**40)], ["--N_epoch", "0"], ["--N_epoch", "-5"],
    ["--save", "{junk}/runs"], ["--dataset", "{tmp}/missing"], ["--network", "{junk}"],
])
def test_train_bad_input_is_one_error_line(tiny_train, tmp_path, junk, probe):
    probe = [a.format(tmp=tmp_path, junk=junk) for a in probe]
    result = _invoke(cli.train, [*tiny_train, "--save", tmp_path / "runs", *probe])
    assert_one_line_error(result)
    assert not (tmp_path / "runs").exists()


def test_other_commands_refuse_non_finite_numbers(tiny_c2f, tmp_path):
    assert_one_line_error(_invoke(cli.c2f, [*tiny_c2f, "--G_sgd_lr", "nan",
                                            "--save", tmp_path]))
    assert_one_line_error(_invoke(cli.sample, ["--seed", "-1", "--save", tmp_path]))


def test_resume_passes_over_a_killed_launch_and_keeps_the_seed(tiny_train, tmp_path):
    save = tmp_path / "runs"
    result = _invoke(cli.train, [*tiny_train, "--save", save, "--epochs", "1", "--seed", "5"])
    assert result.exit_code == 0, result.output
    empty = save / "00001-train-16px-gray"  # a launch killed before its first checkpoint
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"seed": 9}))
    result = _invoke(cli.train, [*tiny_train, "--save", save, "--epochs", "2", "--resume"])
    assert result.exit_code == 0, result.output
    assert f"passing over {empty}" in result.output
    assert f"continuing {save / RUN} from checkpoints/ckpt-000002.pt" in result.output
    stored = json.loads((save / RUN / "config.json").read_text())
    assert stored["seed"] == 5 and stored["epochs"] == 2
    line = assert_one_line_error(_invoke(cli.train, [*tiny_train, "--save", save, "--resume",
                                                     "--seed", "6"]))
    assert line.startswith("Error: --seed 6:") and "started with 5" in line
    line = assert_one_line_error(_invoke(cli.train, [*tiny_train, "--save", tmp_path / "none",
                                                     "--resume"]))
    assert "has a loadable checkpoint" in line and not (tmp_path / "none").exists()


def test_a_non_finite_loss_stops_naming_the_iteration(tiny_train, tmp_path, monkeypatch):
    real_step, calls = train_module.train_step, []

    def step(*args, **kwargs):
        stats = real_step(*args, **kwargs)
        calls.append(1)
        return {**stats, "loss_G": float("inf")} if len(calls) == 3 else stats

    monkeypatch.setattr(train_module, "train_step", step)
    result = _invoke(cli.train, [*tiny_train, "--save", tmp_path])
    line = assert_one_line_error(result, exit_code=1)
    assert line.startswith("Error: iteration 3: loss became non-finite (loss_G=inf)")
    saved = sorted(p.name for p in (tmp_path / RUN / "checkpoints").iterdir())
    assert saved == ["ckpt-000002.pt"]  # epoch 1 only; nothing of iteration 3


def test_an_unreadable_image_in_the_folder_is_skipped(tiny_train, tmp_path):
    folder = tmp_path / "out_aug_64x64"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"face{i}_000.jpg")
    (folder / "face3_000.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    result = _invoke(cli.train, [*tiny_train, "--save", tmp_path / "runs", "--dataset", folder,
                                 "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert "face3_000.jpg: not a readable image" in result.output
    assert "read(s) of unreadable images were skipped" in result.output
    (run,) = (tmp_path / "runs").iterdir()
    state = torch.load(run / "checkpoints" / "ckpt-000002.pt", weights_only=False)
    assert state["epoch"] == 1



@pytest.mark.slow  # two torchrun launches of two gloo ranks: minutes on 2 busy cores
def test_two_gloo_ranks_train_checkpoint_resume_and_agree(tiny_train, tmp_path):
    from ganlab_common.testing import assert_ranks_agree, two_rank_run

    args = [*tiny_train, "--save", tmp_path / "runs", "--device", "cpu"]
    first = two_rank_run(tmp_path, "a", "facegan.train", "wrap_model", "facegan.cli:train",
                         [*args, "--epochs", "1"])
    assert_ranks_agree(first)
    second = two_rank_run(tmp_path, "b", "facegan.train", "wrap_model", "facegan.cli:train",
                          [*args, "--epochs", "2", "--resume"])
    assert_ranks_agree(second)
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [RUN]
    state = torch.load(sorted((tmp_path / "runs" / RUN / "checkpoints").glob("*.pt"))[-1],
                       weights_only=False)
    assert state["epoch"] == 2 and all(torch.equal(state["G"][k].cpu(), v)
                                       for k, v in second[0][0].items())
