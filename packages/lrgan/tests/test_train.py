"""lrgan-train end to end on tiny sizes, resume, --evaluate, bad input, data and models."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from lrgan.cli import main
from lrgan.data import load_dataset, make_mnist_canvas
from lrgan.models import Generator, clamp_pose
from lrgan.ops import select_stnm
from lrgan.train import BEST_JUDGED, TrainConfig, learning_rate

TINY = ["--dataset", "mnist-two", "--ntimestep", "3", "--imageSize", "32", "--nz", "8",
        "--ngf", "8", "--ndf", "8", "--batchSize", "8", "--manualSeed", "3", "--device", "cpu",
        "--maxobjscale", "2", "--max_images", "64", "--judge_samples", "0"]


def _run(args):
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result


def _run_dir(outf):
    (run,) = [p for p in outf.iterdir() if p.is_dir() and not p.name.endswith("-eval")]
    return run


def test_help_lists_original_flags():
    out = CliRunner().invoke(main, ["--help"]).output
    for flag in ["--dataset", "--dataroot", "--workers", "--batchSize", "--imageSize", "--nz",
                 "--ngf", "--ndf", "--ntimestep", "--maxobjscale", "--niter", "--session",
                 "--evaluate", "--lr", "--beta1", "--netG", "--netD", "--outf", "--outimgf",
                 "--outmodelf", "--manualSeed", "--device", "--stnm", "--resume"]:
        assert flag in out, flag


def test_train_writes_grids_stats_and_checkpoint(tmp_path):
    result = _run(TINY + ["--max_iters", "2", "--outf", str(tmp_path)])
    assert result.exit_code == 0, result.output
    run = _run_dir(tmp_path)
    assert run.name == "00000-mnist-two_s1"
    config = json.loads((run / "config.json").read_text())
    assert config["ntimestep"] == 3 and config["manualSeed"] == 3
    stats = pd.read_json(run / "stats.jsonl", lines=True)
    assert list(stats["step"]) == [1, 2]
    assert {"loss_D", "loss_G", "D_x"} <= set(stats.columns)
    images = run / "images"
    for name in ["real_samples.png", "fake_samples_000002_trainmode.png", "bgimg_trainmode.png",
                 "fgimg1_trainmode.png", "fgmask2_trainmode.png", "canvas2_trainmode.png",
                 "final_trainmode.png", "layers_trainmode.png"]:
        assert (images / name).is_file(), name
    assert [p.name for p in (run / "models").iterdir()] == ["mnist-two_s1-000002.pt"]


@pytest.mark.parametrize("dataset,nc", [("mnist-one", 1), ("cifar10", 3)])
def test_other_datasets_train_two_steps(tmp_path, dataset, nc):
    """Smoke tests of the other embedded recipes: MNIST-ONE with T = 2 and the 20 embedded
    CIFAR-10 images (the full set needs --dataroot)."""
    args = [a if a != "mnist-two" else dataset for a in TINY]
    args[args.index("--ntimestep") + 1] = "2"
    result = _run(args + ["--max_iters", "2", "--outf", str(tmp_path), "--workers", "0"])
    assert result.exit_code == 0, result.output
    run = _run_dir(tmp_path)
    assert list(pd.read_json(run / "stats.jsonl", lines=True)["step"]) == [1, 2]
    state = torch.load(run / "models" / f"{dataset}_s1-000002.pt", weights_only=False)
    assert state["config"]["ntimestep"] == 2
    assert (run / "images" / "fake_samples_000002_trainmode.png").is_file()
    head = [v for k, v in state["netG"].items() if k.startswith("bg_head") and v.ndim == 4]
    assert head and head[-1].shape[1] == nc  # grey MNIST, colour CIFAR-10


def test_resume_continues_exactly(tmp_path):
    straight, resumed = tmp_path / "a", tmp_path / "b"
    decay = ["--lr_decay_start", "1"]  # the schedule is a function of the step: resumes too
    assert _run(TINY + decay + ["--max_iters", "4", "--outf", str(straight)]).exit_code == 0
    assert _run(TINY + decay + ["--max_iters", "2", "--outf", str(resumed)]).exit_code == 0
    result = _run(TINY + ["--max_iters", "4", "--outf", str(resumed), "--resume"])
    assert result.exit_code == 0 and "resumed" in result.output
    a = pd.read_json(_run_dir(straight) / "stats.jsonl", lines=True)
    b = pd.read_json(_run_dir(resumed) / "stats.jsonl", lines=True)
    assert list(b["step"]) == [1, 2, 3, 4]
    for col in ["loss_D", "loss_G", "lr"]:
        assert a[col].tolist() == pytest.approx(b[col].tolist(), rel=1e-5, abs=1e-6)


def test_lr_decay_is_linear_from_its_start():
    cfg = TrainConfig(lr=1e-3, lr_decay_start=6)
    rates = [learning_rate(cfg, step, 10) for step in range(10)]
    assert rates[:7] == [1e-3] * 7
    assert rates[6:] == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4])
    assert learning_rate(TrainConfig(lr=1e-3), 9, 10) == 1e-3  # the original: constant


def test_lr_decay_start_never_reached_is_one_line_error(tmp_path):
    result = _run(TINY + ["--lr_decay_start", "4", "--max_iters", "4", "--outf", str(tmp_path)])
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert "--lr_decay_start" in errors[0] and "4" in errors[0]
    assert not list(tmp_path.iterdir())  # checked before the run folder is made


def test_best_judged_checkpoint_is_the_best_epoch(tmp_path, untrained_judge):
    # 16 canvases of batch 8: an epoch is 2 iterations, judged at its end
    result = _run(TINY + ["--max_iters", "6", "--epoch_size", "16", "--outf", str(tmp_path),
                          "--judge_samples", "8"])
    assert result.exit_code == 0, result.output
    run = _run_dir(tmp_path)
    stats = pd.read_json(run / "stats.jsonl", lines=True).dropna(subset=["judge_fg_one_digit"])
    assert list(stats["step"]) == [2, 4, 6]
    scores = stats["judge_fg_one_digit"].tolist()
    assert stats["judge_best_fg_one_digit"].tolist() == [max(scores[: i + 1]) for i in range(3)]
    best = torch.load(run / "models" / BEST_JUDGED, weights_only=False)
    assert best["judge_fg_one_digit"] == max(scores)
    assert best["step"] == int(stats["step"].iloc[scores.index(max(scores))])
    assert set(best) >= {"netG", "netD", "config"}


def test_evaluate_writes_decomposition_and_metrics(tmp_path, untrained_judge):
    assert _run(TINY + ["--max_iters", "1", "--outf", str(tmp_path)]).exit_code == 0
    ckpt = next((_run_dir(tmp_path) / "models").iterdir())
    result = _run(["--dataset", "mnist-two", "--evaluate", "--netG", str(ckpt), "--outf",
                   str(tmp_path / "eval"), "--device", "cpu", "--judge_samples", "16",
                   "--fid_samples", "0", "--batchSize", "8"])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "eval").iterdir()
    assert (run / "images" / "layers_trainmode.png").is_file()
    assert (run / "images" / "fgimg2_trainmode.png").is_file()
    scores = json.loads((run / "metrics.json").read_text())
    assert scores["samples"] == 16 and scores["sample_mode"] == "train"
    result = _run(["--dataset", "mnist-two", "--evaluate", "--netG", str(ckpt), "--outf",
                   str(tmp_path / "eval0"), "--device", "cpu", "--judge_samples", "0",
                   "--fid_samples", "0"])
    assert result.exit_code == 0, result.output  # grids only, no metrics to compute
    for key in ["fg1_one_digit", "fg2_one_digit", "scene_accuracy", "background_one_digit"]:
        assert 0 <= scores[key] <= 1, key


def test_epoch_end_writes_judge_metrics(tmp_path, untrained_judge):
    result = _run(TINY + ["--max_iters", "2", "--outf", str(tmp_path), "--judge_samples", "8"])
    assert result.exit_code == 0, result.output
    stats = pd.read_json(_run_dir(tmp_path) / "stats.jsonl", lines=True)
    assert stats["judge_scene_accuracy"].notna().tolist() == [False, True]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--ntimestep", "0"], "--ntimestep"),
        (["--imageSize", "48"], "--imageSize"),
        (["--dataset", "cub200"], "--dataroot"),  # the later --dataset wins
        (["--cuda", "maybe"], "--cuda"),  # --cuda alone picks the GPU (the original's flag)
    ],
)
def test_bad_flags_one_line_error(tmp_path, args, needle):
    result = CliRunner().invoke(main, ["--dataset", "mnist-two", "--outf", str(tmp_path)] + args)
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and needle in errors[0], result.output
    assert "Traceback" not in result.output


def test_unknown_dataset_and_bad_files(tmp_path):
    result = CliRunner().invoke(main, ["--dataset", "imagenet"])
    assert result.exit_code == 2 and "--dataset" in result.output
    bogus = tmp_path / "bogus.pth"
    bogus.write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(main, ["--dataset", "mnist-two", "--evaluate", "--netG",
                                       str(bogus), "--outf", str(tmp_path)])
    assert result.exit_code == 2 and str(bogus) in result.output
    assert bogus.read_bytes() == b"not a checkpoint"  # nothing written is lost
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(main, ["--dataset", "folder", "--dataroot", str(empty),
                                       "--outf", str(tmp_path / "o"), "--device", "cpu"])
    assert result.exit_code == 2 and str(empty) in result.output


def test_mnist_canvas_is_deterministic():
    digits = torch.zeros(10, 28, 28, dtype=torch.uint8)
    digits[:, 8:20, 10:18] = 255
    labels = torch.arange(10)
    a, la = make_mnist_canvas(digits, labels, 2, 6, seed=5)
    b, lb = make_mnist_canvas(digits, labels, 2, 6, seed=5)
    assert a.shape == (6, 1, 64, 64) and la.shape == (6, 2)
    assert torch.equal(a, b) and torch.equal(la, lb)
    # white digits on a darker uniform background: both halves (left/right or
    # top/bottom) hold bright pixels
    for img in a[:, 0]:
        sides = (img[:, :32], img[:, 32:]) if (img[:, :32] == 255).any() and (
            img[:, 32:] == 255).any() else (img[:32], img[32:])
        assert all((half == 255).any() for half in sides)
    one, _ = make_mnist_canvas(digits, labels, 1, 3, seed=5)
    assert one.shape == (3, 1, 32, 32)


def test_embedded_mnist_one_dataset():
    data = load_dataset("mnist-one", None, 32, count=20)
    image, label = data[0]
    assert image.shape == (1, 32, 32) and -1 <= image.min() and image.max() <= 1
    assert label.shape == (1,)


def test_generator_layers_and_pose_init():
    g = Generator(select_stnm("ref"), nz=8, ngf=8, nc=1, image_size=32, ntimestep=3,
                  maxobjscale=2.0, rot=0.3)
    g.eval()
    layers = g.decompose(g.sample_noise(4))
    assert layers.image.shape == (4, 1, 32, 32)
    assert len(layers.foregrounds) == len(layers.masks) == len(layers.canvases) == 2
    assert layers.masks[0].min() >= 0 and layers.masks[0].max() <= 1
    assert torch.allclose(layers.poses[0][0], torch.tensor([[2.0, 0, 0], [0, 2.0, 0]]))
    dcgan = Generator(select_stnm("ref"), nz=8, ngf=8, nc=1, image_size=32, ntimestep=1)
    assert not hasattr(dcgan, "fg_trunk")


def test_clamp_pose_bounds():
    theta = torch.tensor([[10.0, 5, 5, -5, 0.1, -5]])
    out = clamp_pose(theta, scale=1.2, rot=0.1)
    assert torch.allclose(out, torch.tensor([[[2.4, 0.1, 1.0], [-0.1, 1.2, -1.0]]]))


def test_compile_flag_compiles_forward_and_keeps_checkpoints(tmp_path, monkeypatch):
    compiled = []

    def fake_compile(fn):
        compiled.append(fn.__self__.__class__.__name__)
        return fn

    monkeypatch.setattr("lrgan.train.torch.compile", fake_compile)
    result = _run(TINY + ["--max_iters", "1", "--outf", str(tmp_path), "--compile"])
    assert result.exit_code == 0, result.output
    assert compiled == ["Generator", "Discriminator"]
    (ckpt,) = (_run_dir(tmp_path) / "models").iterdir()
    state = torch.load(ckpt, weights_only=False)
    assert not any("_orig_mod" in k for k in [*state["netG"], *state["netD"]])
    assert state["config"]["compile"] is True


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path):
    """Real torch.compile (inductor on the CPU, ~1 min): the same losses as eager."""
    eager, compiled = tmp_path / "a", tmp_path / "b"
    assert _run(TINY + ["--max_iters", "3", "--outf", str(eager)]).exit_code == 0
    result = _run(TINY + ["--max_iters", "3", "--outf", str(compiled), "--compile"])
    assert result.exit_code == 0, result.output
    a = pd.read_json(_run_dir(eager) / "stats.jsonl", lines=True)
    b = pd.read_json(_run_dir(compiled) / "stats.jsonl", lines=True)
    for col in ["loss_D", "loss_G"]:
        assert a[col].tolist() == pytest.approx(b[col].tolist(), rel=1e-3, abs=1e-4)
