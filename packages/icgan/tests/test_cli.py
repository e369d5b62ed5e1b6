"""icgan-train / icgan-test end to end on tiny settings (CPU, a few iterations each)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import icgan.train
from icgan.cli import test_command as icgan_test
from icgan.cli import train_command as icgan_train
from icgan.train import load_trained


def _stats(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_help_lists_the_original_flags(cli):
    out = cli(icgan_train, ["--help"]).output
    for flag in ("--stage", "--batchSize", "--loadSize", "--fineSize", "--nz", "--ngf", "--ndf",
                 "--niter", "--lr", "--beta1", "--noise", "--trainWrongY", "--split",
                 "--nConvLayers", "--nf", "--FCsz", "--nEpochs", "--samples", "--manualSeed",
                 "--device", "--resume"):
        assert flag in out
    out = cli(icgan_test, ["--help"]).output
    for flag in ("--mode", "--nImages", "--threshold", "--im1Path", "--im2Path",
                 "--nInterpolations"):
        assert flag in out


def test_all_stages_write_run_directory(mnist_run):
    config = json.loads((mnist_run / "config.json").read_text())
    assert config["dataset"] == "mnist" and config["fine_size"] == 16
    for stage, last in (("gan", 4), ("encoder_z", 2), ("encoder_y", 2)):
        rows = _stats(mnist_run / stage / "stats.jsonl")
        assert rows[-1]["step"] == last
        assert all(torch.isfinite(torch.tensor(v)) for r in rows for v in r.values())
        assert (mnist_run / stage / "checkpoints" / f"{stage}-{last:06d}.pt").is_file()
    assert "lossD" in _stats(mnist_run / "gan" / "stats.jsonl")[-1]
    assert "test_acc" in _stats(mnist_run / "encoder_y" / "stats.jsonl")[-1]
    with Image.open(mnist_run / "gan" / "samples_epoch001.png") as grid:
        size = grid.size
    assert size == (10 * 18 + 2, 10 * 18 + 2)  # 10 classes x 10 fixed z, 16 px + padding
    assert (mnist_run / "encoder_z" / "reconstructions_epoch001.png").is_file()
    assert (mnist_run / "encoder_y" / "reconstructions_epoch001.png").is_file()
    generated = torch.load(mnist_run / "encoder_z" / "generated.pt", weights_only=True)
    assert generated["x"].shape == (64, 1, 16, 16) and generated["z"].shape == (64, 8)


def test_trained_run_loads(mnist_run):
    trained = load_trained(mnist_run)
    assert trained.labels_kind == "onehot" and trained.label_names[3] == "3"
    x = torch.zeros(2, 1, 16, 16)
    assert trained.netEz(x).shape == (2, 8) and trained.netEy(x).shape == (2, 10)
    assert not trained.netG.training


@pytest.mark.parametrize(("mode", "size"), [
    ("reconstruct", (12 * 66 + 4, 3 * 72)),  # real, recon, 10 digits; 3 rows of 64 px cells
    ("swap", (3 * 66 + 4, 2 * 72)),
    ("interpolate", (8 * 66 + 4, 3 * 72)),  # x1, 6 frames, x2
])
def test_icgan_test_modes_write_labelled_grids(cli, mnist_run, tmp_path, mode, size):
    out = tmp_path / f"{mode}.png"
    cli(icgan_test, ["--runDir", mnist_run, "--mode", mode, "--nImages", 3, "--out", out])
    with Image.open(out) as image:
        image = image.convert("L")
    width, height = image.size
    assert width >= size[0] and height > size[1]  # the grid plus a label header (and margin)
    header = np.asarray(image)[:10]
    assert (header < 128).any()  # some label text was drawn


def test_icgan_test_defaults_to_newest_run(cli, mnist_run):
    result = cli(icgan_test, ["--outdir", mnist_run.parent, "--mode", "swap"])
    assert (mnist_run / "test" / "swap.png").is_file()
    assert "swap.png" in result.output


def test_swap_accepts_image_files(cli, mnist_run, tmp_path):
    for i, colour in enumerate((0, 255)):
        Image.new("L", (28, 28), colour).save(tmp_path / f"im{i}.png")
    out = tmp_path / "swap.png"
    cli(icgan_test, ["--runDir", mnist_run, "--mode", "swap", "--im1Path",
                       tmp_path / "im0.png", "--im2Path", tmp_path / "im1.png", "--out", out])
    assert out.is_file()


def test_evaluate_reports_the_fidelity_numbers(cli, mnist_run, tmp_path, monkeypatch):
    """The digit classifier is swapped for an untrained one: this checks the plumbing;
    bench/fidelity.py measures the real numbers."""
    import ganlab_common.metrics as metrics

    monkeypatch.setattr(metrics, "load_digit_classifier", lambda device: metrics.DigitCNN().eval())
    out = tmp_path / "eval.json"
    cli(icgan_test, ["--runDir", mnist_run, "--mode", "evaluate", "--nEval", 40, "--out", out])
    scores = json.loads(out.read_text())
    for key in ("conditional_acc", "ey_acc", "reconstruct_acc", "swap_acc"):
        assert 0 <= scores[key] <= 1
    assert scores["n_heldout"] == 40 and scores["n_conditional"] == 1000


def test_resume_after_kill_matches_an_uninterrupted_run(cli, tiny, tmp_path, monkeypatch):
    """Kill the GAN stage mid-epoch (after step 7); --resume continues from the last
    checkpoint (step 6, mid-epoch) and ends with exactly the weights of a run that never
    stopped."""
    args = [*tiny, "--stage", "gan", "--niter", 2, "--saveEvery", 3]
    cli(icgan_train, [*args, "--outdir", tmp_path / "a"])

    calls = {"n": 0}
    real_g_loss = icgan.train.g_loss

    def dying_g_loss(*a, **k):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt  # what a Ctrl-C / kill looks like to the loop
        return real_g_loss(*a, **k)

    monkeypatch.setattr(icgan.train, "g_loss", dying_g_loss)
    killed = cli.raw(icgan_train, [*args, "--outdir", tmp_path / "b"])
    assert killed.exit_code != 0
    monkeypatch.setattr(icgan.train, "g_loss", real_g_loss)
    run_b = next((tmp_path / "b").iterdir())
    assert [p.name for p in sorted((run_b / "gan" / "checkpoints").iterdir())] == [
        "gan-000003.pt", "gan-000004.pt", "gan-000006.pt"]
    cli(icgan_train, [*args, "--outdir", tmp_path / "b", "--resume"])

    run_a = next((tmp_path / "a").iterdir())
    final_a = torch.load(run_a / "gan" / "checkpoints" / "gan-000008.pt", weights_only=False)
    final_b = torch.load(run_b / "gan" / "checkpoints" / "gan-000008.pt", weights_only=False)
    assert final_b["finished"]
    for key, value in final_a["netG"].items():
        assert torch.equal(value, final_b["netG"][key]), key
    steps = [row["step"] for row in _stats(run_b / "gan" / "stats.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 8
    assert len(list((tmp_path / "b").iterdir())) == 1  # resumed in place


def test_encoder_stage_continues_the_newest_run(cli, tiny, tmp_path):
    cli(icgan_train, [*tiny, "--stage", "gan", "--outdir", tmp_path])
    (run,) = tmp_path.iterdir()
    assert not (run / "encoder_z").exists()
    # different --fineSize on the command line: the run's own GAN settings win
    args = list(tiny)
    args[args.index("--fineSize") + 1] = "32"
    result = cli(icgan_train, [*args, "--stage", "encoder-z", "--outdir", tmp_path])
    assert "fine_size=16" in result.output
    assert (run / "encoder_z" / "checkpoints" / "encoder_z-000002.pt").is_file()
    assert not (run / "encoder_y").exists()
    cli(icgan_train, [*tiny, "--stage", "encoder-y", "--eyData", "generated",
                        "--outdir", tmp_path])
    assert (run / "encoder_y" / "checkpoints" / "encoder_y-000002.pt").is_file()
    assert len(list(tmp_path.iterdir())) == 1


def test_celeba_one_iteration(cli, celeba_root, tmp_path):
    args = ["--dataset", "celeba", "--dataroot", celeba_root, "--fineSize", 16, "--nz", 8,
            "--ngf", 8, "--ndf", 8, "--nf", 8, "--nConvLayers", 2, "--batchSize", 8,
            "--niter", 1, "--nEpochs", 1, "--samples", 16, "--genBatchSize", 8,
            "--device", "cpu", "--outdir", tmp_path / "runs"]
    cli(icgan_train, args)
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.endswith("icgan-celeba")
    assert _stats(run / "gan" / "stats.jsonl")[-1]["step"] == 1  # 10 train images, batch 8
    trained = load_trained(run)
    assert trained.label_names[9] == "Male" and trained.netEy.fc[-1].out_features == 18
    out = tmp_path / "rec.png"
    cli(icgan_test, ["--runDir", run, "--mode", "reconstruct", "--nImages", 2, "--out", out])
    with Image.open(out) as image:
        assert image.width >= 20 * 66  # real, recon and 18 toggled attributes
    out = tmp_path / "eval.json"
    cli(icgan_test, ["--runDir", run, "--mode", "evaluate", "--out", out])
    scores = json.loads(out.read_text())
    assert scores["n_heldout"] == 4 and len(scores["ey_attribute_f1"]) == 18
