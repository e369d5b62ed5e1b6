"""lrgan-train under bad input, killed launches, diverging losses and unreadable images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from ganlab_common.testing import assert_one_line_error
from lrgan import train as train_module
from lrgan.cli import main

TINY = ["--dataset", "mnist-two", "--ntimestep", "2", "--imageSize", "32", "--nz", "8",
        "--ngf", "4", "--ndf", "4", "--batchSize", "8", "--device", "cpu",
        "--maxobjscale", "2", "--max_images", "64", "--judge_samples", "0"]


def _invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _ok(args) -> Path:
    result = _invoke(args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _runs(outf: Path) -> list[Path]:
    return sorted(p for p in outf.iterdir() if p.is_dir() and not p.name.endswith("-eval"))


@pytest.fixture
def junk(tmp_path) -> Path:
    path = tmp_path / "junk.pth"
    path.write_text("not a checkpoint")
    return path


@pytest.mark.parametrize("probe", [
    ["--maxobjscale", "nan"], ["--lr", "nan"], ["--beta1", "inf"], ["--manualSeed", str(2**70)],
    ["--outf", "{junk}/runs"], ["--netG", "{junk}"], ["--netG", "{tmp}/missing.pth"],
    ["--dataset", "folder", "--dataroot", "{tmp}/missing"],
])
def test_bad_input_is_one_error_line(tmp_path, junk, probe):
    probe = [a.format(tmp=tmp_path, junk=junk) for a in probe]
    result = _invoke([*TINY, "--outf", tmp_path / "runs", "--max_iters", "1", *probe])
    assert_one_line_error(result)
    assert not (tmp_path / "runs").exists() or not _runs(tmp_path / "runs")


def test_resume_without_a_seed_continues_the_run_exactly(tmp_path):
    """The README's form: no --manualSeed; the drawn seed is stored and wins on --resume, and a
    newer run folder without checkpoint (a killed launch) is passed over."""
    part = tmp_path / "part"
    _ok([*TINY, "--outf", part, "--max_iters", "2"])
    (run,) = _runs(part)
    seed = json.loads((run / "config.json").read_text())["manualSeed"]
    empty = part / run.name.replace("00000", "00001")
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"manualSeed": seed + 1}))
    out = _ok([*TINY, "--outf", part, "--max_iters", "4", "--resume"]).output
    assert f"passing over {empty}" in out and f"continuing {run}" in out
    assert json.loads((run / "config.json").read_text())["manualSeed"] == seed
    straight = tmp_path / "straight"
    _ok([*TINY, "--outf", straight, "--max_iters", "4", "--manualSeed", seed])
    a = pd.read_json(_runs(straight)[0] / "stats.jsonl", lines=True)
    b = pd.read_json(run / "stats.jsonl", lines=True)
    cols = ["step", "loss_D", "loss_G"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_resume_refuses_a_conflicting_seed_and_a_missing_run(tmp_path):
    _ok([*TINY, "--outf", tmp_path / "runs", "--max_iters", "1", "--manualSeed", "5"])
    line = assert_one_line_error(_invoke([*TINY, "--outf", tmp_path / "runs", "--resume",
                                          "--manualSeed", "6"]))
    assert "--manualSeed 6:" in line and "started with 5" in line
    line = assert_one_line_error(_invoke([*TINY, "--outf", tmp_path / "none", "--resume"]))
    assert "has a loadable checkpoint" in line


def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    outf = tmp_path / "runs"
    _ok([*TINY, "--outf", outf, "--max_iters", "1", "--manualSeed", "5"])
    _ok([*TINY, "--outf", outf, "--max_iters", "2", "--resume"])  # checkpoints 1 and 2
    (run,) = _runs(outf)
    first, newest = sorted((run / "models").glob("*.pt"))[-2:]
    newest.write_bytes(b"cut short")
    out = _ok([*TINY, "--outf", outf, "--max_iters", "3", "--resume"]).output
    assert f"'{newest}' is not a PyTorch checkpoint" in out and "trying an older" in out
    assert f"continuing {run} from models/{first.name} (step 1)" in out


def test_a_non_finite_loss_stops_naming_the_iteration(tmp_path, monkeypatch):
    real, calls = train_module._train_step, []

    def step(*args, **kwargs):
        stats = real(*args, **kwargs)
        calls.append(1)
        return {**stats, "loss_D": float("nan")} if len(calls) == 2 else stats

    monkeypatch.setattr(train_module, "_train_step", step)
    result = _invoke([*TINY, "--outf", tmp_path, "--max_iters", "3", "--manualSeed", "1"])
    line = assert_one_line_error(result, exit_code=1)
    assert line.startswith("Error: iteration 2: loss became non-finite (loss_D=nan)")
    (run,) = _runs(tmp_path)
    assert not list((run / "models").glob("*-000002.pt"))


def test_an_unreadable_image_in_a_folder_is_skipped_with_workers(tmp_path, capfd):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(16):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
            folder / f"{i:02d}.png")
    (folder / "05.png").write_bytes(b"not a png")
    result = _invoke([*TINY, "--dataset", "folder", "--dataroot", folder, "--workers", "2",
                      "--outf", tmp_path / "runs", "--max_iters", "2", "--manualSeed", "1",
                      "--max_images", "16"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "05.png: not a readable image" in capfd.readouterr().err  # from a worker process
