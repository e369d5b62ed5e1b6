"""crvae-train / crvae-sample under bad input, killed launches and diverging losses."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from crvae import train as train_module
from crvae.cli import sample_main, train_main
from ganlab_common import runs as runs_module
from ganlab_common.testing import assert_one_line_error

BASE = ["-dataset", "mnist", "-latentType", "lstm", "-alpha", "1e-3"]


def _invoke(cmd, args):
    return CliRunner().invoke(cmd, [str(a) for a in args])


def _ok(args) -> tuple[Path, str]:
    result = _invoke(train_main, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return Path(result.output.rsplit("run: ", 1)[1].splitlines()[0].strip()), result.output


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


@pytest.fixture
def junk(tmp_path) -> Path:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint")
    return path


@pytest.mark.parametrize("probe", [
    ["-alpha", "nan"], ["-LR", "inf"], ["-beta", "-inf"], ["-kappa", "nan"],
    ["-dropout", "nan"], ["-manualSeed", str(2**64)], ["-manualSeed", "-3"],
    ["-data", "{tmp}/missing"], ["-retrain", "{junk}"], ["-save", "{junk}/runs"],
])
def test_bad_input_is_one_error_line(tmp_path, junk, tiny, probe):
    probe = [a.format(tmp=tmp_path, junk=junk) for a in probe]
    args = [*BASE, *tiny, "-save", tmp_path / "runs", *probe]
    assert_one_line_error(_invoke(train_main, args))
    assert not (tmp_path / "runs").exists()


def test_sample_bad_input_is_one_error_line(tmp_path, junk):
    assert_one_line_error(_invoke(sample_main, ["-checkpoint", junk]))
    assert_one_line_error(_invoke(sample_main, ["-manualSeed", "nan"]))
    assert_one_line_error(_invoke(sample_main, ["-save", tmp_path / "none"]))


def test_resume_continues_the_run_with_a_checkpoint_and_its_seed(tmp_path, tiny):
    save = tmp_path / "runs"
    first, _ = _ok([*BASE, *tiny, "-nEpochs", 1, "-manualSeed", 5, "-save", save])
    empty = first.parent / first.name.replace("00000", "00001")
    empty.mkdir()  # a launch killed before its first checkpoint
    (empty / "config.json").write_text(json.dumps({**_config(first), "manualSeed": 9}))
    resumed, out = _ok([*BASE, *tiny, "-nEpochs", 2, "-save", save, "-resume"])
    assert resumed == first
    assert f"passing over {empty}" in out and f"continuing {first}" in out
    assert _config(first)["manualSeed"] == 5 and _config(first)["nEpochs"] == 2
    assert (first / "checkpoints" / "ckpt-000004.pt").is_file()


def test_resume_refuses_a_conflicting_seed_and_a_missing_run(tmp_path, tiny):
    save = tmp_path / "runs"
    first, _ = _ok([*BASE, *tiny, "-nEpochs", 1, "-manualSeed", 5, "-save", save])
    line = assert_one_line_error(
        _invoke(train_main, [*BASE, *tiny, "-save", save, "-resume", "-manualSeed", 6]))
    assert "-manualSeed 6:" in line and "started with 5" in line
    line = assert_one_line_error(_invoke(train_main, [*BASE, *tiny, "-save", tmp_path / "x",
                                                      "-resume"]))
    assert "has a loadable checkpoint" in line and not (tmp_path / "x").exists()
    (first / "checkpoints" / "ckpt-000002.pt").write_bytes(b"cut short")
    line = assert_one_line_error(_invoke(train_main, [*BASE, *tiny, "-save", save, "-resume"]))
    assert "has a loadable checkpoint" in line


def test_a_non_finite_loss_stops_naming_the_iteration(tmp_path, tiny, monkeypatch):
    real_step = train_module.Trainer.step
    calls = []

    def step(self, x, y):
        stats = real_step(self, x, y)
        calls.append(1)
        return {**stats, "recon": float("nan")} if len(calls) == 2 else stats

    monkeypatch.setattr(train_module.Trainer, "step", step)
    result = _invoke(train_main, [*BASE, *tiny, "-nEpochs", 1, "-save", tmp_path, "-ckptFreq", 1])
    line = assert_one_line_error(result, exit_code=1)
    assert line.startswith("Error: iteration 2: loss became non-finite (recon=nan)")
    run = next(tmp_path.glob("00000-*"))
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["ckpt-000001.pt"]


def test_an_unreadable_celeba_image_is_skipped(tmp_path, tiny, make_celeba):
    root = make_celeba(tmp_path / "celeba", n=12)
    (root / "img_align_celeba" / "000002.jpg").write_bytes(b"\xff\xd8 cut")
    run, out = _ok(["-dataset", "celeba", "-data", root, "-latentType", "cvae", "-nEpochs", 1,
                    "-save", tmp_path / "runs", *tiny, "-batchSize", 4])
    assert "000002.jpg: not a readable image" in out
    assert "read(s) of unreadable images were skipped" in out
    assert torch.load(run / "checkpoints" / "ckpt-000002.pt", weights_only=False)["epoch"] == 1


@pytest.mark.parametrize("name", ["best.pt", "snapshot-e001.pt", "final_nll.txt"])
def test_a_full_disk_is_one_error_line_naming_the_file(tmp_path, tiny, monkeypatch, name):
    def full(path):
        if Path(path).name == name:
            raise OSError(errno.ENOSPC, "No space left on device")

    real_save, real_write = runs_module.atomic_save, Path.write_text
    monkeypatch.setattr(runs_module, "atomic_save",  # Run.save_state writes best.pt, snapshots
                        lambda obj, path: full(path) or real_save(obj, path))
    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: full(self) or
                        real_write(self, *a, **k))  # fmt: skip
    result = _invoke(train_main, [*BASE, *tiny, "-nEpochs", 1, "-epochStep", 1, "-save", tmp_path])
    line = assert_one_line_error(result)
    run = next(tmp_path.glob("00000-*"))
    assert line.startswith(f"Error: {run / name}: cannot write")
    assert "(No space left on device); kept: " in line
    assert not (run / name).exists()



@pytest.mark.slow  # two torchrun launches of two gloo ranks: minutes on 2 busy cores
def test_two_gloo_ranks_train_checkpoint_resume_and_agree(tmp_path, tiny):
    from ganlab_common.testing import assert_ranks_agree, two_rank_run

    args = [*BASE, *tiny, "-save", tmp_path / "runs", "-batchSize", 4]
    first = two_rank_run(tmp_path, "a", "crvae.train", "build_models", "crvae.cli:train_main",
                         [*args, "-nEpochs", 1])
    assert_ranks_agree(first, modules=1)
    (run,) = (tmp_path / "runs").iterdir()
    second = two_rank_run(tmp_path, "b", "crvae.train", "build_models", "crvae.cli:train_main",
                          [*args, "-nEpochs", 2, "-resume"])
    assert_ranks_agree(second, modules=1)
    assert list((tmp_path / "runs").iterdir()) == [run]
    state = torch.load(run / "checkpoints" / "ckpt-000004.pt", weights_only=False)
    assert all(torch.equal(state["G"][k].cpu(), v) for k, v in second[0][0].items())
