"""icgan-train / icgan-test under bad input, killed launches and diverging losses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from ganlab_common.testing import assert_one_line_error
from icgan import train as train_module
from icgan.cli import test_command as icgan_test
from icgan.cli import train_command as icgan_train


@pytest.fixture
def junk(tmp_path) -> Path:
    path = tmp_path / "junk.txt"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize("probe", [
    ["--lr", "nan"], ["--beta1", "inf"], ["--split", "nan"], ["--lrZ", "-inf"],
    ["--beta1Y", "nan"], ["--manualSeed", str(2**40)], ["--dataroot", "{tmp}/missing"],
    ["--outdir", "{junk}/runs"], ["--runDir", "{tmp}/missing"],
    ["{tmp}/runs", "{tmp}/celebA", "nan"],  # the Lasagne port's positional LEARNING_RATE
])
def test_train_bad_input_is_one_error_line(cli, tiny, tmp_path, junk, probe):
    probe = [a.format(tmp=tmp_path, junk=junk) for a in probe]
    result = cli.raw(icgan_train, [*tiny, "--outdir", tmp_path / "runs", *probe])
    assert_one_line_error(result)
    assert not (tmp_path / "runs").exists()


def _copy_run(mnist_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "runs" / mnist_run.name
    shutil.copytree(mnist_run, copy)
    return copy


def test_test_bad_input_is_one_error_line(cli, mnist_run, tmp_path, junk):
    assert_one_line_error(cli.raw(icgan_test, ["--runDir", mnist_run, "--manualSeed", "-1"]))
    line = assert_one_line_error(cli.raw(icgan_test, ["--runDir", mnist_run, "--out",
                                                      junk / "out.png"]))
    assert line.startswith("Error: --out: cannot write")
    run = _copy_run(mnist_run, tmp_path)
    for ckpt in (run / "gan" / "checkpoints").glob("*.pt"):
        ckpt.write_bytes(b"cut short")
    line = assert_one_line_error(cli.raw(icgan_test, ["--runDir", run]))
    assert line.startswith("Error: --runDir: no gan checkpoint")  # not "--resume"


def test_resume_passes_over_a_killed_launch_and_keeps_the_seed(cli, tiny, tmp_path):
    out = tmp_path / "runs"
    cli(icgan_train, [*tiny, "--stage", "gan", "--manualSeed", "5", "--outdir", out])
    (first,) = out.iterdir()
    empty = out / "00001-icgan-mnist"  # a launch killed before its first checkpoint
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"dataset": "mnist", "seed": 9}))
    args = list(tiny)
    args[args.index("--niter") + 1] = "2"
    result = cli(icgan_train, [*args, "--stage", "gan", "--resume", "--outdir", out])
    assert f"passing over {empty}" in result.output
    assert f"continuing {first} from gan/checkpoints/gan-000004.pt" in result.output
    stored = json.loads((first / "config.json").read_text())
    assert stored["seed"] == 5 and stored["niter"] == 2
    assert (first / "gan" / "checkpoints" / "gan-000008.pt").is_file()
    line = assert_one_line_error(cli.raw(icgan_train, [*tiny, "--resume", "--lr", "0.001",
                                                       "--outdir", out]))
    assert line.startswith("Error: --lr 0.001:") and "started with 0.0002" in line
    line = assert_one_line_error(cli.raw(icgan_train, [*tiny, "--resume", "--outdir",
                                                       tmp_path / "none"]))
    assert "has a loadable checkpoint" in line and not (tmp_path / "none").exists()


def test_a_non_finite_loss_stops_naming_the_iteration(cli, tiny, tmp_path, monkeypatch):
    real = train_module.g_loss
    calls = []

    def g_loss(netD, fake, y_fake):
        calls.append(1)
        loss = real(netD, fake, y_fake)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(train_module, "g_loss", g_loss)
    result = cli.raw(icgan_train, [*tiny, "--stage", "gan", "--saveEvery", "1",
                                   "--outdir", tmp_path])
    line = assert_one_line_error(result, exit_code=1)
    assert line.startswith("Error: iteration 3: loss became non-finite (lossG=nan)")
    (run,) = tmp_path.iterdir()
    saved = sorted(p.name for p in (run / "gan" / "checkpoints").iterdir())
    assert saved == ["gan-000001.pt", "gan-000002.pt"]  # nothing of iteration 3



@pytest.mark.slow  # two torchrun launches of two gloo ranks: minutes on 2 busy cores
def test_two_gloo_ranks_train_checkpoint_resume_and_agree(tiny, tmp_path):
    from ganlab_common.testing import assert_ranks_agree, two_rank_run

    args = [*tiny, "--stage", "gan", "--outdir", tmp_path / "runs"]
    first = two_rank_run(tmp_path, "a", "icgan.train", "wrap_model", "icgan.cli:train_command",
                         args)
    assert_ranks_agree(first)
    (run,) = (tmp_path / "runs").iterdir()
    args[args.index("--niter") + 1] = "2"
    second = two_rank_run(tmp_path, "b", "icgan.train", "wrap_model", "icgan.cli:train_command",
                          [*args, "--resume"])
    assert_ranks_agree(second)
    assert list((tmp_path / "runs").iterdir()) == [run]
    ckpts = sorted((run / "gan" / "checkpoints").glob("gan-*.pt"))
    state = torch.load(ckpts[-1], weights_only=False)
    assert state["finished"] and all(torch.equal(state["netG"][k].cpu(), v)
                                     for k, v in second[0][0].items())
