"""crvae-train / crvae-sample in-process on tiny sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from crvae import train as train_module
from crvae.cli import sample_main, train_main
from crvae.config import Config


def _run(cmd, args):
    result = CliRunner().invoke(cmd, [str(a) for a in args])
    return result


def _ok(cmd, args) -> str:
    result = _run(cmd, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _run_dir(output: str) -> Path:
    return Path(output.rsplit("run: ", 1)[1].strip())


def _stats(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def test_help():
    assert "-latentType" in _ok(train_main, ["--help"])
    assert "-attr" in _ok(sample_main, ["--help"])


def test_both_flag_spellings(monkeypatch):
    seen = []
    monkeypatch.setattr(train_module, "train", lambda cfg: seen.append(cfg) or Path("x"))
    _ok(train_main, ["-latentType", "lstm", "-alpha1", "3e-4", "-LR", "0.001", "-stage", "1"])
    _ok(train_main, ["--latentType", "lstm", "--alpha1", "3e-4", "--LR", "0.001",
                     "--stage", "1"])
    assert seen[0] == seen[1]
    assert seen[0].latentType == "lstm" and seen[0].alpha1 == 3e-4 and seen[0].LR == 0.001
    assert seen[0].nEpochs == Config().nEpochs == 150


@pytest.mark.parametrize("latent_type", ["baseline", "lstm", "conv", "cvae", "cgan", "cvaegan",
                                         "crvaegan", "acvaegan"])
def test_mnist_tiny_run(tmp_path, latent_type, tiny):
    out = _ok(train_main, ["-dataset", "mnist", "-latentType", latent_type, "-nEpochs", 1,
                           "-save", tmp_path, "-alpha", "1e-3", "-beta", "0.1", "-rho", "0.05",
                           "-rho_entreg", "0.05", *tiny])
    run = _run_dir(out)
    assert (run / "samples-e001.png").is_file()
    assert (run / "checkpoints" / "ckpt-000002.pt").is_file()
    rows = _stats(run)
    keys = set().union(*rows)
    if latent_type != "cgan":
        assert {"recon", "kl", "test_nll"} <= keys and (run / "recon-e001.png").is_file()
        assert (run / "final_nll.txt").is_file() and (run / "best.pt").is_file()
    if latent_type in ("cgan", "cvaegan", "crvaegan", "acvaegan"):
        assert {"errD", "errG", "mi"} <= keys
    if latent_type in ("baseline", "lstm", "conv", "cvae"):
        assert "errD" not in keys  # MNIST crVAE models and cVAE have no D
    state = torch.load(run / "checkpoints" / "ckpt-000002.pt", weights_only=False)
    assert state["spec"]["latent_type"] == latent_type


def test_celeba_runs_and_sample(tmp_path, celeba_dir, tiny):
    out = _ok(train_main, ["-dataset", "celeba", "-data", celeba_dir, "-latentType", "acvaegan",
                           "-nEpochs", 1, "-save", tmp_path, "-alpha1", "3e-4", "-alpha2", "2e-4",
                           "-beta", "0.0025", "-kappa", "0.01", "-rho", "0.05", *tiny,
                           "-batchSize", 4])
    run = _run_dir(out)
    assert {"errD", "recon", "kl"} <= set().union(*_stats(run))
    ckpt = run / "checkpoints" / "ckpt-000002.pt"
    out = _ok(sample_main, ["-checkpoint", ckpt, "-attr", "Smiling=1", "-attr", "Male=flip",
                            "-n", 4, "-device", "cpu"])
    for name in ("samples", "recon", "traversal", "attributes", "attr_edit", "attention"):
        assert (run / "samples" / f"{name}.png").is_file(), name
    assert "step" in (run / "samples" / "attention.txt").read_text()
    bad = _run(sample_main, ["-checkpoint", ckpt, "-attr", "Smling=1", "-device", "cpu"])
    assert bad.exit_code == 2 and "Error: -attr Smling=1: unknown attribute" in bad.output


def test_stage2_fades_in_from_stage1(tmp_path, celeba_dir, tiny):
    out = _ok(train_main, ["-dataset", "celeba", "-data", celeba_dir, "-latentType", "lstm",
                           "-nEpochs", 1, "-save", tmp_path, *tiny, "-batchSize", 4])
    stage1 = _run_dir(out) / "checkpoints" / "ckpt-000002.pt"
    out = _ok(train_main, ["-dataset", "celeba", "-data", celeba_dir, "-latentType", "lstm",
                           "-stage", 2, "-init_weight_from", stage1, "-nEpochs", 2,
                           "-save", tmp_path, *tiny, "-batchSize", 4])
    run = _run_dir(out)
    fades = sorted({r["fade"] for r in _stats(run) if "fade" in r})
    assert fades == [0.0, 1.0]
    state = torch.load(run / "checkpoints" / "ckpt-000004.pt", weights_only=False)
    assert state["spec"]["image_size"] == 128
    first = torch.load(stage1, weights_only=False)
    assert "decoder.to_rgb128.0.weight" in state["G"]
    assert "decoder.to_rgb128.0.weight" not in first["G"]
    out = _ok(sample_main, ["-checkpoint", run / "checkpoints" / "ckpt-000004.pt", "-n", 4,
                            "-device", "cpu"])
    from PIL import Image

    with Image.open(run / "samples" / "samples.png") as im:
        assert im.size[0] > 2 * 128


def test_resume_matches_uninterrupted_run(tmp_path, tiny):
    base = ["-dataset", "mnist", "-latentType", "lstm", "-alpha", "1e-3", *tiny]
    full = _run_dir(_ok(train_main, [*base, "-nEpochs", 2, "-save", tmp_path / "a"]))
    first = _run_dir(_ok(train_main, [*base, "-nEpochs", 1, "-save", tmp_path / "b"]))
    resumed = _run_dir(_ok(train_main, [*base, "-nEpochs", 2, "-save", tmp_path / "b",
                                        "-resume"]))
    assert resumed == first
    a = torch.load(full / "checkpoints" / "ckpt-000004.pt", weights_only=False)["G"]
    b = torch.load(resumed / "checkpoints" / "ckpt-000004.pt", weights_only=False)["G"]
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
    assert [r["epoch"] for r in _stats(resumed) if "test_nll" in r] == [1, 2]


def test_sample_from_checkpoint_mnist(tmp_path, tiny):
    out = _ok(train_main, ["-dataset", "mnist", "-latentType", "acvaegan", "-nEpochs", 1,
                           "-save", tmp_path, "-beta", "0", *tiny])
    run = _run_dir(out)
    out = _ok(sample_main, ["-save", tmp_path, "--attr", "digit=3", "--n", 10,
                            "--device", "cpu", "--out", tmp_path / "s"])
    for name in ("samples", "recon", "traversal", "attention"):
        assert (tmp_path / "s" / f"{name}.png").is_file()
    assert "step" in (tmp_path / "s" / "attention.txt").read_text()
    assert run.is_dir()


@pytest.mark.parametrize(("args", "message"), [
    (["-timeStep", 4], "-timeStep 4: the model needs exactly 8"),
    (["-latentType", "conv", "-dataset", "celeba"], "conv exists for MNIST only"),
    (["-latentType", "lstm", "-dataset", "celeba", "-stage", 2], "needs -init_weight_from"),
    (["-latentType", "acvaegan", "-dataset", "lfw"], "conditional models need attributes"),
    (["-latentType", "lstm", "-dataset", "mnist", "-stage", 2], "-stage 2 -latentType lstm"),
    (["-latentType", "cvae", "-dataset", "mnist", "-attrDim", 40], "mnist has 10 attributes"),
    (["-latentType", "bogus"], "Invalid value for '-latentType'"),
])
def test_invalid_combinations(tmp_path, args, message):
    result = _run(train_main, [*args, "-save", tmp_path])
    assert result.exit_code == 2, result.output
    assert message in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: ") and "Traceback" not in result.output
    assert not list(tmp_path.iterdir())  # nothing written


def test_bad_files(tmp_path, tiny, make_celeba):
    no_attr = make_celeba(tmp_path / "celeba", n=6, with_attr=False)
    result = _run(train_main, ["-dataset", "celeba", "-data", no_attr, "-save", tmp_path / "r"])
    assert result.exit_code == 2 and "list_attr_celeba.txt" in result.output
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    result = _run(sample_main, ["-checkpoint", junk])
    assert result.exit_code == 2 and "is not a PyTorch checkpoint" in result.output
    result = _run(train_main, ["-dataset", "lfw", "-latentType", "lstm", "-stage", 2,
                               "-init_weight_from", junk, "-save", tmp_path / "r", *tiny])
    assert result.exit_code == 2 and "-init_weight_from" in result.output
    assert not (tmp_path / "r").exists()  # failed before creating a run folder
    result = _run(sample_main, ["-save", tmp_path / "empty"])
    assert result.exit_code == 2 and "no checkpoint under" in result.output


def test_bird_tiny_run(tmp_path, tiny):
    """CUB-200 layout: images/<NNN.Class>/, images.txt, bounding_boxes.txt, the official split."""
    import numpy as np
    from PIL import Image

    root = tmp_path / "CUB_200_2011"
    lines, boxes, split = [], [], []
    for i in range(1, 11):
        rel = f"00{1 + i % 2}.Bird_{1 + i % 2}/img_{i}.jpg"
        (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(i).integers(0, 255, (90, 120, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(root / "images" / rel)
        lines.append(f"{i} {rel}")
        boxes.append(f"{i} 10.0 5.0 80.0 60.0")
        split.append(f"{i} {int(i <= 8)}")
    for name, rows in (("images.txt", lines), ("bounding_boxes.txt", boxes),
                       ("train_test_split.txt", split)):
        (root / name).write_text("\n".join(rows) + "\n")
    out = _ok(train_main, ["-dataset", "bird", "-data", root, "-latentType", "lstm",
                           "-nEpochs", 1, "-save", tmp_path / "r", *tiny, "-batchSize", 4])
    run = _run_dir(out)
    assert (run / "recon-e001.png").is_file() and "errD" in set().union(*_stats(run))


def test_resume_mid_epoch_after_kill(tmp_path, tiny):
    """A kill after a mid-epoch checkpoint: -resume redoes the rest of the epoch exactly."""
    base = ["-dataset", "mnist", "-latentType", "conv", "-alpha", "1e-3", "-nEpochs", 1,
            *tiny, "-epochSize", 4, "-ckptFreq", 2]
    full = _run_dir(_ok(train_main, [*base, "-save", tmp_path / "a"]))
    killed = _run_dir(_ok(train_main, [*base, "-save", tmp_path / "b"]))
    (killed / "checkpoints" / "ckpt-000004.pt").unlink()  # as if killed after iteration 2
    state = torch.load(killed / "checkpoints" / "ckpt-000002.pt", weights_only=False)
    assert state["batch"] == 2 and state["epoch"] == 1
    resumed = _run_dir(_ok(train_main, [*base, "-save", tmp_path / "b", "-resume"]))
    assert resumed == killed
    a = torch.load(full / "checkpoints" / "ckpt-000004.pt", weights_only=False)["G"]
    b = torch.load(resumed / "checkpoints" / "ckpt-000004.pt", weights_only=False)["G"]
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
