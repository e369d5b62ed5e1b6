"""Every command's --help, the user's three-command chain, resume, and the bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facegan import cli
from facegan import train as train_module

COMMANDS = {
    "dataset": (cli.dataset, ["--path", "--out", "--workers", "--seed"]),
    "train": (cli.train, [
        "--batchSize", "--save", "--saveFreq", "--network", "--noplot", "--N_epoch", "--epochs",
        "--noiseDim", "--window", "--scale", "--seed", "--grayscale / --color", "--denoise",
        "--G_SGD_lr", "--D_SGD_lr", "--G_SGD_momentum", "--D_SGD_momentum", "--G_adam_lr",
        "--D_adam_lr", "--D_optmethod", "--G_optmethod", "--G_L1", "--G_L2", "--D_L1",
        "--D_L2", "--D_iterations", "--G_iterations", "--D_maxAcc", "--D_clamp", "--G_clamp",
        "--device", "--resume", "--init", "--dataset", "--width"]),
    "c2f": (cli.c2f, [
        "--save", "--saveFreq", "--network", "--noplot", "--D_sgd_lr", "--G_sgd_lr",
        "--D_sgd_momentum", "--G_sgd_momentum", "--batchSize", "--N_epoch", "--G_L1",
        "--G_L2", "--D_L1", "--D_L2", "--D_iterations", "--G_iterations", "--D_clamp",
        "--G_clamp", "--D_optmethod", "--G_optmethod", "--noiseDim", "--window",
        "--coarseSize", "--fineSize", "--grayscale / --color", "--seed", "--device",
        "--resume"]),
    "sample": (cli.sample, [
        "--save_base", "--save_c2f32", "--G_base", "--D_base", "--neighbours", "--writeto",
        "--seed", "--runs", "--batchSize", "--c2f / --no-c2f", "--device"]),
    "autoencoder": (cli.autoencoder, [
        "--save", "--saveFreq", "--network", "--learningRate", "--batchSize", "--coefL1",
        "--coefL2", "--noiseDim", "--scale"]),
    "denoiser": (cli.denoiser, [
        "--save", "--saveFreq", "--network", "--noplot", "--batchSize", "--coefL1",
        "--coefL2", "--AE_clamp", "--window", "--scale", "--seed", "--grayscale / --color"]),
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_lists_the_original_flags(run_cli, name):
    command, flags = COMMANDS[name]
    text = run_cli(command, ["--help"]).output
    for flag in flags:
        assert flag in text, f"{flag} missing from facegan-{name} --help"
    assert "[default:" in text


def test_train_help_states_the_cpu_budget(run_cli):
    text = " ".join(run_cli(cli.train, ["--help"]).output.split())
    assert "default --epochs 50 (3,100 iterations) take about" in text


def _grid_tiles(path: Path, count: int, nrow: int, padding: int = 2) -> int:
    """The tile size of a grid PNG of ``count`` images, ``nrow`` per row."""
    with Image.open(path) as img:
        width, height = img.size
    rows = -(-count // nrow)
    tile = (width - padding) // nrow - padding
    assert width == nrow * (tile + padding) + padding
    assert height == rows * (tile + padding) + padding
    return tile


def _stats(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def test_train_c2f_sample_chain(run_cli, tmp_path, monkeypatch, tiny_train, tiny_c2f):
    """The user's example: facegan-train --scale 16, facegan-c2f, facegan-sample (no flags
    beyond tiny sizes) -> faces refined to 32 px."""
    monkeypatch.chdir(tmp_path)  # default --save runs/facegan, default data folder absent
    out = run_cli(cli.train, tiny_train).output
    assert "embedded LFW faces" in out
    train_run = tmp_path / "runs/facegan/00000-train-16px-gray"
    for name in ("config.json", "stats.jsonl", "reals.png", "fakes_e0001.png",
                 "fakes_e0002.png", "best.png", "worst.png", "checkpoints/ckpt-000004.pt"):
        assert (train_run / name).is_file(), name
    assert [row["step"] for row in _stats(train_run)] == [2, 4]
    assert {"loss_D", "loss_G", "acc_D", "D_trained"} <= set(_stats(train_run)[0])
    assert _grid_tiles(train_run / "fakes_e0002.png", 64, 8) == 16
    config = json.loads((train_run / "config.json").read_text())
    assert config["channels"] == 1 and config["source"] == {"kind": "embedded", "path": None}

    run_cli(cli.c2f, tiny_c2f)
    c2f_run = tmp_path / "runs/facegan/00001-c2f-16to32-gray"
    for name in ("c2f_e0001.png", "c2f_e0002.png", "stats.jsonl", "checkpoints/ckpt-000004.pt"):
        assert (c2f_run / name).is_file(), name
    assert json.loads((c2f_run / "config.json").read_text())["channels"] == 1

    out = run_cli(cli.sample, ["--nsamples", "80", "--tries", "2", "--neighbours"]).output
    assert "c2f:" in out
    sample_run = tmp_path / "runs/facegan/00002-sample"
    for name in ("random256_0001_base.png", "random1024_0001_base.png", "best_0001_base.png",
                 "worst_0001_base.png", "random_0001_base.png",
                 "best_0001_neighbours_base.png", "best_0001_up_32.png", "reals_32.png"):
        assert (sample_run / name).is_file(), name
    for name in ("best", "worst", "random"):
        grid = sample_run / f"{name}_0001_c2f_32.png"
        assert _grid_tiles(grid, 64, 8) == 32  # 16 px samples refined to 32 px
        with Image.open(grid) as img:
            pixels = np.asarray(img.convert("RGB"))
        assert (pixels[..., 0] == pixels[..., 1]).all()  # grey faces
    assert _grid_tiles(sample_run / "best_0001_base.png", 64, 8) == 16


def test_sample_without_c2f_and_explicit_c2f_error(run_cli, tmp_path, tiny_train, error_line):
    save = tmp_path / "runs"
    run_cli(cli.train, [*tiny_train, "--epochs", "1", "--save", save])
    run_cli(cli.sample, ["--save_base", save, "--save_c2f32", save, "--nsamples", "16"])
    written = {p.name for p in (save / "00001-sample").iterdir()}
    assert "best_0001_base.png" in written and not any("c2f" in n for n in written)
    result = run_cli(cli.sample, ["--save_base", save, "--save_c2f32", save, "--c2f"], code=2)
    error_line(result, "--c2f", "no facegan-c2f run")


def _weights(run: Path) -> dict:
    ckpts = sorted((run / "checkpoints").glob("ckpt-*.pt"))
    return torch.load(ckpts[-1], weights_only=False)


def test_resume_after_interrupt_continues_at_the_right_step(run_cli, tmp_path, monkeypatch,
                                                            tiny_train):
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    run_cli(cli.train, [*tiny_train, "--save", straight])

    real_step, calls = train_module.train_step, {"n": 0}

    def dies_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # second iteration of epoch 2; epoch 1 was checkpointed at step 2
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", dies_in_epoch_two)
    run_cli(cli.train, [*tiny_train, "--save", broken], code=1)  # click: Aborted!
    run = broken / "00000-train-16px-gray"
    assert [row["step"] for row in _stats(run)] == [2]
    monkeypatch.setattr(train_module, "train_step", real_step)

    out = run_cli(cli.train, [*tiny_train, "--save", broken, "--resume"]).output
    assert "resumed at epoch 1, iteration 2" in out
    assert not (broken / "00001-train-16px-gray").exists()  # same run folder
    assert [row["step"] for row in _stats(run)] == [2, 4]
    a, b = _weights(straight / "00000-train-16px-gray"), _weights(run)
    assert a["step"] == b["step"] == 4 and a["epoch"] == b["epoch"] == 2
    for key in ("G", "D"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"


def test_resume_with_more_epochs_extends_the_run(run_cli, tmp_path, tiny_train):
    save = tmp_path / "runs"
    run_cli(cli.train, [*tiny_train, "--save", save, "--epochs", "1"])
    run_cli(cli.train, [*tiny_train, "--save", save, "--epochs", "2", "--resume"])
    run = save / "00000-train-16px-gray"
    assert [row["epoch"] for row in _stats(run)] == [1, 2]
    assert _weights(run)["step"] == 4


# -- bad input: one line, exit 2, nothing lost --------------------------------------------------
@pytest.fixture
def existing_run(tmp_path: Path) -> Path:
    """A run folder that must survive every failed command."""
    run = tmp_path / "runs" / "00000-train-16px-gray"
    run.mkdir(parents=True)
    (run / "stats.jsonl").write_text('{"step": 1}\n')
    return run


def _untouched(existing: Path) -> None:
    assert (existing / "stats.jsonl").read_text() == '{"step": 1}\n'
    assert sorted(p.name for p in existing.parent.iterdir()) == [existing.name]


@pytest.mark.parametrize("args, words", [
    (["--scale", "24"], ["--scale", "16, 32", "24"]),
    (["--D_optmethod", "rmsprop"], ["--D_optmethod", "sgd, adam, adagrad", "rmsprop"]),
    (["--G_optmethod", "lbfgs"], ["--G_optmethod"]),
    (["--batchSize", "7"], ["--batchSize", "even"]),
    (["--denoise"], ["--denoise", "no denoiser for 1x16x16", "facegan-denoiser --scale 16"]),
    (["--color"], ["--color", "embedded LFW faces are grey"]),
    (["--dataset", "nowhere"], ["--dataset", "no such folder"]),
    (["--N_epoch", "3"], ["--N_epoch", "fewer than one batch"]),
])
def test_train_bad_flags(run_cli, error_line, existing_run, tiny_train, args, words):
    save = existing_run.parent
    result = run_cli(cli.train, [*tiny_train, "--save", save, *args], code=2)
    error_line(result, *words)
    _untouched(existing_run)


def test_network_that_is_not_a_checkpoint(run_cli, error_line, existing_run, tiny_train,
                                          tmp_path):
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"not a checkpoint at all")
    save = existing_run.parent
    result = run_cli(cli.train, [*tiny_train, "--save", save, "--network", bogus], code=2)
    error_line(result, "--network", "not a PyTorch checkpoint")
    other = tmp_path / "other.pt"
    torch.save({"weights": 1}, other)
    result = run_cli(cli.train, [*tiny_train, "--save", save, "--network", other], code=2)
    error_line(result, "--network", "no 'G' entry")
    result = run_cli(cli.c2f, ["--save", save, "--network", bogus], code=2)
    error_line(result, "--network", "not a PyTorch checkpoint")
    result = run_cli(cli.sample, ["--G_base", bogus, "--save_base", save], code=2)
    error_line(result, "--G_base", "not a PyTorch checkpoint")
    _untouched(existing_run)


@pytest.mark.parametrize("args, words", [
    (["--coarseSize", "24"], ["--coarseSize", "24"]),
    (["--coarseSize", "32", "--fineSize", "16"], ["--coarseSize", "smaller"]),
    (["--D_optmethod", "nadam"], ["--D_optmethod"]),
])
def test_c2f_bad_flags(run_cli, error_line, existing_run, args, words):
    result = run_cli(cli.c2f, ["--save", existing_run.parent, *args], code=2)
    error_line(result, *words)
    _untouched(existing_run)


def test_sample_with_nothing_trained(run_cli, error_line, tmp_path):
    result = run_cli(cli.sample, ["--save_base", tmp_path / "empty"], code=2)
    error_line(result, "--save_base", "no facegan-train run")
