"""ganlab_common's reliability pieces: resume picking, stored config, finite numbers and
losses, unwritable output, unreadable images, one-line errors from DataLoader workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import click
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ganlab_common.checkpoint import CheckpointManager
from ganlab_common.data import ImageFolder, report_skipped_images, skipped_images
from ganlab_common.errors import UserError
from ganlab_common.guards import NonFiniteLossError, check_finite_losses, check_writable_dir
from ganlab_common.options import SEED, FiniteFloat, check_finite_values, explicit_options
from ganlab_common.runs import Run, find_resume_point, merge_resume_config, new_run_dir
from ganlab_common.testing import assert_one_line_error

# -- resume: which run, which checkpoint -----------------------------------------------------


def _run_with_checkpoints(tmp_path, steps, config=None):
    run = Run.start(tmp_path, "gan", config or {"seed": 7})
    for step in steps:
        run.checkpoints.save(step, {"w": torch.full((2,), float(step))})
    return run


def test_resume_passes_over_a_newer_run_without_checkpoint(tmp_path, capsys):
    finished = _run_with_checkpoints(tmp_path, [30, 60, 90])
    empty = Run.start(tmp_path, "gan", {"seed": 8})  # a launch killed right after start
    point = find_resume_point(tmp_path, "gan")
    assert point.run_dir == finished.dir and point.step == 90
    assert point.config == {"seed": 7}
    err = capsys.readouterr().err
    assert f"passing over {empty.dir}" in err
    assert f"continuing {finished.dir} from checkpoints/ckpt-000090.pt (step 90)" in err


def test_resume_falls_back_to_an_older_checkpoint_when_the_newest_is_corrupt(tmp_path, capsys):
    run = _run_with_checkpoints(tmp_path, [30, 60])
    newest = run.checkpoints.path(60)
    newest.write_bytes(newest.read_bytes()[:100])  # cut short
    resumed = Run.start(tmp_path, "gan", {"seed": 7}, resume=True)
    assert resumed.dir == run.dir
    state = resumed.checkpoints.load_latest()
    assert state["step"] == 30 and torch.equal(state["w"], torch.full((2,), 30.0))
    assert resumed.checkpoints.loaded_path == run.checkpoints.path(30)
    err = capsys.readouterr().err
    assert f"'{newest}' is not a PyTorch checkpoint" in err and "trying an older" in err


def test_resume_with_only_corrupt_checkpoints_is_an_error_not_a_fresh_start(tmp_path):
    run = _run_with_checkpoints(tmp_path, [5])
    run.checkpoints.path(5).write_bytes(b"garbage")
    with pytest.raises(UserError, match="drop --resume to start a new run"):
        Run.start(tmp_path, "gan", {}, resume=True)
    assert [p.name for p in tmp_path.iterdir()] == [run.dir.name]


def test_resume_point_in_a_named_subfolder_and_prefix(tmp_path):
    run = Run.start(tmp_path, "lr", {}, checkpoints="models", ckpt_prefix="lr")
    run.checkpoints.save(4, {})
    assert run.checkpoints.path(4) == run.dir / "models" / "lr-000004.pt"
    point = find_resume_point(tmp_path, "lr", checkpoints="models", prefix="lr", announce=False)
    assert point.checkpoint == run.checkpoints.path(4)
    resumed = Run.start(tmp_path, "lr", {}, resume=point, checkpoints="models", ckpt_prefix="lr")
    assert resumed.checkpoints.load_latest()["step"] == 4


def test_resume_point_with_several_stage_managers(tmp_path):
    run = Run.start(tmp_path, "ic", {})
    CheckpointManager(run.dir / "enc" / "checkpoints", prefix="enc").save(3, {})
    stages = lambda d: [CheckpointManager(d / s / "checkpoints", prefix=s) for s in ("gan", "enc")]  # noqa: E731
    point = find_resume_point(tmp_path, "ic", checkpoints=stages, announce=False)
    assert point.run_dir == run.dir and point.step == 3


# -- resume: the stored config wins ------------------------------------------------------


@dataclass(frozen=True)
class _Cfg:
    seed: int = 1
    lr: float = 2e-4
    niter: int = 25
    betas: tuple = (0.5, 0.999)
    resume: bool = False


def test_stored_config_wins_for_keys_not_given():
    stored = {"seed": 1234, "lr": 1e-3, "niter": 90, "betas": [0.5, 0.9], "resume": False}
    merged = merge_resume_config(stored, _Cfg(resume=True), changeable={"niter", "resume"},
                                 explicit={"resume": "--resume"})
    assert merged == _Cfg(seed=1234, lr=1e-3, niter=90, betas=(0.5, 0.9), resume=True)


def test_changeable_keys_given_on_the_command_line_win():
    stored = {"seed": 3, "niter": 90}
    merged = merge_resume_config(stored, {"seed": 1, "niter": 120}, changeable={"niter"},
                                 explicit={"niter": "--niter"})
    assert merged == {"seed": 3, "niter": 120}
    from_python = merge_resume_config(stored, {"seed": 1, "niter": 120}, changeable={"niter"})
    assert from_python == {"seed": 3, "niter": 120}  # no CLI: changeable keys as given


def test_a_conflicting_flag_is_a_one_line_error():
    with pytest.raises(UserError) as info:
        merge_resume_config({"seed": 3}, {"seed": 4}, explicit={"seed": "--manualSeed"},
                            run_dir="runs/00000-x")
    assert info.value.message == (
        "--manualSeed 4: runs/00000-x was started with 3; drop the flag to continue it as "
        "it was started"
    )
    same = merge_resume_config({"seed": 3}, {"seed": 3}, explicit={"seed": "--manualSeed"})
    assert same == {"seed": 3}  # repeating the stored value is fine


# -- numbers ---------------------------------------------------------------------------


@click.command()
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=2e-4, show_default=True)
@click.option("--alpha", type=FiniteFloat(), default=1.0)
@click.option("--manualSeed", "seed", type=SEED, default=1)
def _numbers(lr, alpha, seed):
    click.echo(f"{lr} {alpha} {seed} {sorted(explicit_options())}")


@pytest.mark.parametrize("args", [["--lr", "nan"], ["--lr", "inf"], ["--alpha", "-inf"],
                                  ["--alpha", "NaN"], ["--lr", "0"],
                                  ["--manualSeed", str(2**64)], ["--manualSeed", "-1"]])
def test_non_finite_floats_and_oversize_seeds_are_refused(args):
    result = CliRunner().invoke(_numbers, args)
    assert_one_line_error(result)
    assert args[0] in result.output


def test_finite_values_pass_and_explicit_options_name_the_given_flags():
    result = CliRunner().invoke(_numbers, ["--alpha", "-2.5", "--manualSeed", "4294967295"])
    assert result.exit_code == 0, result.output
    assert result.output == "0.0002 -2.5 4294967295 ['alpha', 'seed']\n"
    assert explicit_options() is None  # outside a command
    help_text = CliRunner().invoke(_numbers, ["--help"]).output
    assert "--lr FLOAT RANGE" in help_text and "--alpha FLOAT\n" in help_text


def test_check_finite_values_walks_a_config_tree():
    check_finite_values({"TRAIN": {"SMOOTH": {"LAMBDA": 5.0}}}, "--set")
    with pytest.raises(UserError, match=r"^--set: TRAIN.SMOOTH.LAMBDA=nan is not a finite"):
        check_finite_values({"TRAIN": {"SMOOTH": {"LAMBDA": float("nan")}}}, "--set")


def test_non_finite_loss_stops_naming_the_iteration():
    check_finite_losses(3, {"loss_D": torch.tensor(0.5), "loss_G": 1.0})
    with pytest.raises(NonFiniteLossError) as info:
        check_finite_losses(17, {"loss_D": torch.tensor(0.5), "loss_G": torch.tensor(float("inf"))})
    message = info.value.message
    assert message.startswith("iteration 17: loss became non-finite (loss_G=inf)")
    assert "\n" not in message and info.value.exit_code == 1


# -- output folders --------------------------------------------------------------------


def test_output_under_a_file_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match=r"^--outf: cannot write to '.*file/runs' \(it or a"):
        check_writable_dir(blocker / "runs", "--outf")
    with pytest.raises(UserError, match="cannot create the output folder"):
        new_run_dir(blocker / "runs", "gan")
    assert check_writable_dir(tmp_path / "a" / "b", "--outf") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # checked, nothing left behind


def test_a_failed_checkpoint_write_names_what_was_kept(tmp_path, monkeypatch):
    run = _run_with_checkpoints(tmp_path, [10])

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(UserError) as info:
        run.checkpoints.save(20, {})
    assert "No space left on device" in info.value.message
    assert f"kept: {run.checkpoints.path(10)}" in info.value.message
    assert [p for p in run.checkpoints.directory.iterdir()] == [run.checkpoints.path(10)]


def test_a_failed_stats_write_is_a_user_error(tmp_path):
    run = _run_with_checkpoints(tmp_path, [10])
    run.stats_path.mkdir()  # appending to a folder fails like a read-only file would
    with pytest.raises(UserError, match="cannot append to the stats log .*kept: .*000010.pt"):
        run.log(11, loss=1.0)


# -- unreadable images -----------------------------------------------------------------


@pytest.fixture
def folder_with_a_bad_image(tmp_path):
    for i in range(6):
        Image.new("RGB", (4, 4), (40 * i, 0, 0)).save(tmp_path / f"{i}.png")
    (tmp_path / "3.png").write_bytes(b"not an image")
    return tmp_path


@pytest.mark.parametrize("workers", [0, 2])
def test_an_unreadable_image_is_skipped_and_counted(folder_with_a_bad_image, workers, capfd):
    dataset = ImageFolder(folder_with_a_bad_image)
    batches = [x for x, _ in DataLoader(dataset, batch_size=2, num_workers=workers)]
    images = torch.cat(batches)
    assert images.shape == (6, 3, 4, 4)
    assert torch.equal(images[3], images[4])  # item 3 replaced by the next readable one
    assert skipped_images(dataset) == 1
    assert report_skipped_images(dataset) == 1
    err = capfd.readouterr().err  # workers write to the file descriptor
    assert "3.png: not a readable image" in err and "1 read(s) of unreadable images" in err


def test_a_folder_of_unreadable_images_is_a_user_error(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(b"junk")
    with pytest.raises(UserError, match=r"3 unreadable image\(s\) in a row from item 0 on"):
        ImageFolder(tmp_path)[0]


class _Failing(Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        raise UserError("/data/x.json: expected a caption list")


def test_a_user_error_in_a_dataloader_worker_stays_one_line():
    with pytest.raises(UserError) as info:
        next(iter(DataLoader(_Failing(), num_workers=1)))
    assert info.value.message == "/data/x.json: expected a caption list"


# -- two gloo ranks resume the same run ---------------------------------------------------

RESUME_WORKER = textwrap.dedent(
    """
    import sys
    import torch
    from ganlab_common.distributed import cleanup_distributed, setup_distributed
    from ganlab_common.errors import UserError
    from ganlab_common.guards import NonFiniteLossError, check_finite_losses
    from ganlab_common.runs import Run

    out = sys.argv[1]
    ctx = setup_distributed("cpu")
    run = Run.start(out, "gan", {}, resume=True)
    print(f"rank{ctx.rank} {run.dir.name} {run.checkpoints.load_latest()['step']}")
    try:
        Run.start(out + "/none", "gan", {}, resume=True)
    except UserError as exc:
        print(f"rank{ctx.rank} error: {exc.message}")
    try:
        check_finite_losses(5, {"loss": torch.tensor(float("nan") if ctx.rank else 1.0)}, ctx)
    except NonFiniteLossError as exc:
        print(f"rank{ctx.rank} error: {exc.message}")
    cleanup_distributed()
    """
)


@pytest.mark.slow  # 39 s here on 2 busy cores (torchrun start-up of two ranks)
def test_two_ranks_resume_the_same_run_or_fail_together(tmp_path):
    good = _run_with_checkpoints(tmp_path, [3, 6])
    Run.start(tmp_path, "gan", {})  # newer, empty
    good.checkpoints.path(6).write_bytes(b"cut")
    script = tmp_path / "worker.py"
    script.write_text(RESUME_WORKER)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert f"rank0 {good.dir.name} 3" in lines and f"rank1 {good.dir.name} 3" in lines
    assert proc.stdout.count("has a loadable checkpoint") == 2  # both ranks stop, none hangs
    assert "rank1 error: iteration 5: loss became non-finite (loss=nan)" in proc.stdout
    assert "rank0 error: iteration 5: a loss became non-finite on another" in proc.stdout


def test_config_json_is_rewritten_with_the_merged_config(tmp_path):
    run = _run_with_checkpoints(tmp_path, [1], {"seed": 9, "niter": 5})
    point = find_resume_point(tmp_path, "gan", announce=False)
    merged = merge_resume_config(point.config, {"seed": 1, "niter": 8}, changeable={"niter"})
    Run.start(tmp_path, "gan", merged, resume=point)
    assert json.loads((run.dir / "config.json").read_text()) == {"seed": 9, "niter": 8}
