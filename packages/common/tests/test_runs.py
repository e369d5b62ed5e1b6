"""ganlab_common.runs, .checkpoint and .images: run folders, logs, grids, exact resume."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image
from torch import nn

from ganlab_common.checkpoint import (
    CheckpointManager,
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    load_state_dicts,
    restore_rng_state,
    state_dicts,
)
from ganlab_common.errors import UserError
from ganlab_common.images import save_gif, save_grid, save_strip, to_uint8
from ganlab_common.runs import Run, amp_option, device_option, resolve_device, seed_everything

# -- run folders -----------------------------------------------------------------------------


@dataclass
class _Sizes:
    nz: int = 100
    ngf: int = 64


def test_start_numbers_runs_and_writes_every_flag(tmp_path):
    config = {
        "batchSize": 64,
        "lr": 2e-4,
        "betas": (0.5, 0.999),
        "outf": tmp_path,
        "device": torch.device("cpu"),
        "sizes": _Sizes(),
        "amp": False,
        "netG": None,
    }
    first = Run.start(tmp_path, "dcgan", config)
    second = Run.start(tmp_path, "dcgan", config)
    other = Run.start(tmp_path, "lrgan", {})
    assert first.dir == tmp_path / "00000-dcgan"
    assert second.dir == tmp_path / "00001-dcgan"
    assert other.dir == tmp_path / "00002-lrgan"  # numbers are shared across names
    saved = json.loads((first.dir / "config.json").read_text())
    assert saved == {
        "batchSize": 64,
        "lr": 2e-4,
        "betas": [0.5, 0.999],
        "outf": str(tmp_path),
        "device": "cpu",
        "sizes": {"nz": 100, "ngf": 64},
        "amp": False,
        "netG": None,
    }
    assert first.is_main and first.checkpoints.directory == first.dir / "checkpoints"


def test_resume_reuses_the_newest_run_of_that_name(tmp_path):
    with pytest.raises(UserError, match="no 'dcgan' run .* has a loadable checkpoint"):
        Run.start(tmp_path, "dcgan", {}, resume=True)  # none yet: an error, never a new run
    assert not list(tmp_path.iterdir())
    Run.start(tmp_path, "dcgan", {}).checkpoints.save(1, {})
    Run.start(tmp_path, "dcgan", {}).checkpoints.save(2, {})
    Run.start(tmp_path, "other", {}).checkpoints.save(3, {})
    resumed = Run.start(tmp_path, "dcgan", {"niter": 5}, resume=True)
    assert resumed.dir.name == "00001-dcgan"
    assert json.loads((resumed.dir / "config.json").read_text()) == {"niter": 5}
    assert resumed.checkpoints.load_latest()["step"] == 2
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["00000-dcgan", "00001-dcgan", "00002-other"]


def test_log_writes_jsonl_that_pandas_reads(tmp_path):
    run = Run.start(tmp_path, "log", {})
    run.log(0, loss_d=1.5, loss_g=torch.tensor(0.25), fid=np.float32(3.0))
    run.log(10, loss_d=float("nan"), loss_g=0.5)  # a diverged GAN still logs
    frame = pd.read_json(run.stats_path, lines=True)
    assert list(frame["step"]) == [0, 10]
    assert list(frame["loss_g"]) == [0.25, 0.5]
    assert frame["loss_d"].iloc[0] == 1.5 and np.isnan(frame["loss_d"].iloc[1])
    assert frame["fid"].iloc[0] == 3.0
    assert (frame["time"] >= 0).all()
    pd.testing.assert_frame_equal(run.stats(), frame)


def test_truncate_stats_drops_rows_after_the_resume_step(tmp_path):
    run = Run.start(tmp_path, "log", {})
    for step in range(0, 50, 10):
        run.log(step, loss=float(step))
    run.truncate_stats(20)
    assert list(run.stats()["step"]) == [0, 10, 20]
    run.log(30, loss=-1.0)
    assert list(run.stats()["loss"]) == [0.0, 10.0, 20.0, -1.0]


def test_truncate_stats_survives_a_line_cut_short_by_a_kill(tmp_path):
    run = Run.start(tmp_path, "log", {})
    run.log(0, loss=1.0)
    with open(run.stats_path, "a") as f:
        f.write('{"step": 10, "lo')  # the process died mid-write
    run.truncate_stats(0)
    run.log(10, loss=2.0)
    assert list(run.stats()["step"]) == [0, 10]


def test_non_main_run_writes_nothing(tmp_path):
    run = Run(tmp_path / "run", is_main=False)
    run.write_config({"a": 1})
    run.log(0, loss=1.0)
    run.truncate_stats(0)
    assert run.save_grid("fake.png", torch.zeros(1, 1, 4, 4)) is None
    assert run.plot_losses() is None
    assert run.progress(10).disable
    assert not (tmp_path / "run").exists()


def test_progress_bar_counts_from_the_resume_step(tmp_path):
    run = Run.start(tmp_path, "bar", {})
    with run.progress(10, initial=3) as bar:
        bar.update(2)
        bar.set_postfix(loss_d=0.5)
        assert (bar.n, bar.total, bar.disable) == (5, 10, False)


def test_plot_losses_without_matplotlib_leaves_a_note(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    run = Run.start(tmp_path, "plot", {})
    run.log(0, loss=1.0)
    assert run.plot_losses() is None
    assert "matplotlib" in (run.dir / "loss_curves.txt").read_text()
    assert not (run.dir / "loss_curves.png").exists()


def test_plot_losses_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    run = Run.start(tmp_path, "plot", {})
    for step in range(5):
        run.log(step, loss_d=1.0 / (step + 1), loss_g=float(step), note="text")
    path = run.plot_losses()
    assert path == run.dir / "loss_curves.png"
    assert _load(path).size[0] > 100


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(UserError, match="--device: 'tpu' is not a device"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_resolve_cuda_without_gpu_is_a_user_error():
    with pytest.raises(UserError, match="--device cuda: no CUDA device"):
        resolve_device("cuda")


def test_device_and_amp_options_parse_flags():
    @click.command()
    @device_option()
    @amp_option()
    def cli(device, amp):
        click.echo(f"{device} {amp}")

    runner = CliRunner()
    assert runner.invoke(cli, []).output == "auto False\n"
    assert runner.invoke(cli, ["--device", "cpu", "--amp"]).output == "cpu True\n"
    bad = runner.invoke(cli, ["--device", "tpu"])
    assert bad.exit_code == 2 and "'tpu' is not one of" in bad.output


def test_seed_everything_seeds_python_numpy_and_torch():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    seed_everything(11)
    first = draw()
    seed_everything(11)
    assert draw() == first
    seed_everything(12)
    assert draw() != first


# -- images ----------------------------------------------------------------------------------


def _load(path: Path) -> Image.Image:
    """The image at ``path``, read fully and the file closed."""
    with Image.open(path) as picture:
        picture.load()
        return picture.copy()



def test_to_uint8_maps_the_value_range():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])
    assert to_uint8(x).tolist() == [0, 0, 128, 255, 255]
    assert to_uint8(x, value_range=(0, 2)).tolist() == [0, 0, 0, 128, 255]


def test_save_grid_size_and_pixels(tmp_path):
    images = torch.stack([torch.full((1, 8, 8), v) for v in (-1.0, 1.0, 0.0, -1.0)])  # [4,1,8,8]
    path = save_grid(images, tmp_path / "sub" / "grid.png", nrow=2)
    picture = _load(path)
    assert picture.size == (2 * (8 + 2) + 2, 2 * (8 + 2) + 2)  # 2 x 2 cells, 2-pixel padding
    pixels = np.asarray(picture.convert("L"))
    assert pixels[2:10, 2:10].max() == 0  # -1 -> 0
    assert pixels[2:10, 12:20].min() == 255  # 1 -> 255
    assert (pixels[12:20, 2:10] == 128).all()  # 0 -> 128
    assert (pixels[0, :] == 255).all()  # white padding


def test_save_grid_value_range_and_colour(tmp_path):
    images = torch.zeros(3, 3, 4, 4)
    images[:, 0] = 1.0  # red in [0, 1]
    path = save_grid(images, tmp_path / "red.png", nrow=3, value_range=(0, 1))
    picture = _load(path)
    assert picture.mode == "RGB" and picture.size == (3 * 6 + 2, 4 + 4)
    assert picture.getpixel((2, 2)) == (255, 0, 0)


def test_run_save_grid_writes_into_the_run(tmp_path):
    run = Run.start(tmp_path, "grid", {})
    path = run.save_grid("fake_000010.png", torch.zeros(16, 1, 4, 4))
    assert path == run.dir / "fake_000010.png"
    assert _load(path).size == (4 * 6 + 2, 4 * 6 + 2)  # square grid by default


def test_save_strip_puts_frames_in_columns(tmp_path):
    frames = [torch.full((2, 1, 8, 8), v) for v in (-1.0, 0.0, 1.0)]  # 3 frames of 2 samples
    pixels = np.asarray(_load(save_strip(frames, tmp_path / "strip.png")).convert("L"))
    assert pixels.shape == (2 * 10 + 2, 3 * 10 + 2)
    for row in range(2):
        y = 2 + 10 * row
        assert [pixels[y, 2 + 10 * col] for col in range(3)] == [0, 128, 255]


def test_save_gif_has_one_frame_per_step(tmp_path):
    frames = [torch.full((4, 1, 8, 8), v) for v in (-1.0, 0.0, 1.0)]
    with Image.open(save_gif(frames, tmp_path / "walk.gif")) as gif:
        assert gif.n_frames == 3 and gif.size == (22, 22)
        gif.seek(2)
        assert gif.convert("L").getpixel((5, 5)) == 255


# -- checkpoints -----------------------------------------------------------------------------


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    ("interruption", "raised"), [(OSError("disk full"), UserError), (KeyboardInterrupt(), None)]
)
def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, interruption,
                                                        raised):
    manager = CheckpointManager(tmp_path, keep=3)
    manager.save(1, {"w": torch.arange(4.0)})

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04" + b"\0" * 1000)  # half a zip archive, then the failure
        raise interruption

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(raised or type(interruption)):  # a failed write: one-line UserError
        manager.save(2, {"w": torch.zeros(4)})
    monkeypatch.undo()
    assert _files(tmp_path) == ["ckpt-000001.pt"]  # no temp file, no partial ckpt-000002
    assert manager.latest() == tmp_path / "ckpt-000001.pt"
    assert torch.equal(manager.load_latest()["w"], torch.arange(4.0))


KILLED_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from ganlab_common.checkpoint import CheckpointManager

    manager = CheckpointManager(sys.argv[1], keep=3)
    manager.save(1, {"w": torch.arange(4.0)})

    def killed(obj, f, *args, **kwargs):
        f.write(b"PK\\x03\\x04" + b"\\0" * 4096)
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # no handler, no cleanup runs

    torch.save = killed
    manager.save(2, {"w": torch.zeros(4)})
    """
)


@pytest.fixture(scope="module")
def killed_mid_save(tmp_path_factory):
    """A process SIGKILLed while writing its second checkpoint; its checkpoint folder."""
    folder = tmp_path_factory.mktemp("killed")
    script = folder.parent / "killed_save.py"
    script.write_text(KILLED_SAVE)
    proc = subprocess.run([sys.executable, str(script), str(folder)], timeout=300)
    assert proc.returncode == -signal.SIGKILL
    return folder


def test_killed_save_leaves_the_previous_checkpoint_loadable(killed_mid_save):
    manager = CheckpointManager(killed_mid_save, keep=3)
    assert [step for step, _ in manager.list()] == [1]
    assert torch.equal(manager.load_latest()["w"], torch.arange(4.0))


def test_next_save_after_a_kill_removes_the_leftover_temp_file(killed_mid_save, tmp_path):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    for p in killed_mid_save.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    CheckpointManager(folder, keep=3).save(2, {"w": torch.ones(4)})
    assert _files(folder) == ["ckpt-000001.pt", "ckpt-000002.pt"]


def test_atomic_save_replaces_and_returns_the_path(tmp_path):
    path = atomic_save({"a": 1}, tmp_path / "new" / "x.pt")
    atomic_save({"a": 2}, path)
    assert load_checkpoint(path)["a"] == 2
    assert _files(path.parent) == ["x.pt"]


def _toy_model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))


def _train(model: nn.Module, opt: torch.optim.Optimizer, start: int, stop: int) -> list[float]:
    """Steps ``start..stop-1``; every step draws data from torch's, numpy's and python's RNG."""
    losses = []
    for _ in range(start, stop):
        x = torch.randn(16, 4)
        y = x.sum(1, keepdim=True) * (1 + 0.1 * random.random()) + 0.1 * np.random.randn()
        out = F.dropout(model(x), p=0.2, training=True)  # RNG inside the forward too
        loss = F.mse_loss(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_resume_gives_exactly_the_uninterrupted_losses(tmp_path):
    seed_everything(0)
    model = _toy_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    uninterrupted = _train(model, opt, 0, 6)

    seed_everything(0)
    first = _toy_model()
    first_opt = torch.optim.Adam(first.parameters(), lr=1e-2)
    assert _train(first, first_opt, 0, 4) == uninterrupted[:4]
    manager = CheckpointManager(tmp_path / "checkpoints")
    manager.save(4, state_dicts({"netG": first, "optG": first_opt, "unused": None}))

    seed_everything(99)  # a new process: other RNG state, other initial weights
    fresh = _toy_model()
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    state = manager.load_latest()
    load_state_dicts({"netG": fresh, "optG": fresh_opt}, state, source="resume")
    assert state["step"] == 4
    assert _train(fresh, fresh_opt, state["step"], 6) == uninterrupted[4:]  # exactly equal
    for a, b in zip(fresh.parameters(), model.parameters()):
        assert torch.equal(a, b)


def test_rng_state_round_trip():
    state = capture_rng_state()
    expected = random.random(), np.random.rand(), torch.rand(3)
    random.random(), np.random.rand(), torch.rand(3)
    restore_rng_state(state)
    again = random.random(), np.random.rand(), torch.rand(3)
    assert again[:2] == expected[:2] and torch.equal(again[2], expected[2])


def test_keep_last_k(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    best = CheckpointManager(tmp_path, prefix="best", keep=1)
    for step in range(1, 6):
        manager.save(step * 100, {"x": step})
    best.save(300, {"x": 3})
    assert [step for step, _ in manager.list()] == [400, 500]
    assert _files(tmp_path) == ["best-000300.pt", "ckpt-000400.pt", "ckpt-000500.pt"]
    assert manager.latest() == tmp_path / "ckpt-000500.pt"
    assert manager.load_latest()["x"] == 5
    keep_all = CheckpointManager(tmp_path / "all", keep=0)
    for step in range(3):
        keep_all.save(step, {})
    assert len(keep_all.list()) == 3
    assert CheckpointManager(tmp_path / "none").load_latest() is None


def test_garbage_checkpoint_is_a_one_line_user_error(tmp_path):
    garbage = tmp_path / "netG.pth"
    garbage.write_bytes(b"this is not a checkpoint\n" * 20)
    truncated = tmp_path / "cut.pth"
    torch.save({"w": torch.zeros(100)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    tensor_only = tmp_path / "tensor.pth"
    torch.save(torch.zeros(2), tensor_only)
    for path in (garbage, truncated, tensor_only, tmp_path / "missing.pth"):
        with pytest.raises(UserError) as info:
            load_checkpoint(path, flag="--netG")
        message = info.value.message
        assert message.startswith("--netG: ") and str(path) in message
        assert "\n" not in message

    @click.command()
    @click.option("--netG", "netg")
    def cli(netg):
        load_checkpoint(netg, flag="--netG")

    result = CliRunner().invoke(cli, ["--netG", str(garbage)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: --netG: '{garbage}' is not a PyTorch checkpoint (UnpicklingError)"
    ]


def test_load_state_dicts_mismatch_is_a_user_error():
    states = state_dicts({"netG": nn.Linear(4, 2)})
    with pytest.raises(UserError, match="resume: 'netG' does not match this model"):
        load_state_dicts({"netG": nn.Linear(3, 2)}, states, source="resume")
    with pytest.raises(UserError, match="resume has no 'netD' entry"):
        load_state_dicts({"netD": nn.Linear(4, 2)}, states, source="resume")


def test_non_main_run_writes_no_checkpoint(tmp_path):
    run = Run(tmp_path, is_main=False)
    assert run.checkpoints.save(1, {"x": torch.zeros(1)}) is None
    assert not (tmp_path / "checkpoints").exists()


def test_checkpoint_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = CheckpointManager(tmp_path).save(1, {"x": torch.zeros(1)})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_plot_losses_on_a_full_disk_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    run = Run.start(tmp_path, "plot", {})
    run.log(0, loss=1.0)

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(UserError, match=r"loss_curves.txt: cannot write .*No space left.*kept:"):
        run.plot_losses()


def test_save_state_writes_atomically_or_fails_in_one_line(tmp_path, monkeypatch):
    from ganlab_common import runs as runs_module

    run = Run.start(tmp_path, "demo", {"lr": 1})
    path = run.save_state(run.dir / "best.pt", {"a": 1}, "cannot write the best")
    assert torch.load(path, weights_only=False) == {"a": 1}

    def full(obj, target):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs_module, "atomic_save", full)
    with pytest.raises(UserError) as err:
        run.save_state(run.dir / "best.pt", {"a": 2}, "cannot write the best")
    assert str(err.value).startswith(f"{run.dir / 'best.pt'}: cannot write the best (No space")
    assert "; kept: " in str(err.value)
    assert torch.load(path, weights_only=False) == {"a": 1}  # the old file is untouched
