import json

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from attngan.backbones import build_backbone
from attngan.cli import evaluate, pretrain_damsm, sample, serve, train


@pytest.mark.parametrize("command", [pretrain_damsm, train, sample, evaluate, serve])
def test_help(command):
    result = CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def _stats(run_dir):
    return [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]


def test_end_to_end_runs_write_their_files(trained):
    damsm, gan = sorted(p for p in trained.iterdir() if p.is_dir())
    assert damsm.name == "00000-damsm" and gan.name == "00001-attngan"
    assert (damsm / "damsm.pt").is_file() and (damsm / "attention000002.png").is_file()
    assert {"w_loss0", "w_loss1", "s_loss0", "s_loss1"} <= set(_stats(damsm)[0])
    # The random tiny backbone was trained with the projections and saved with them.
    saved = torch.load(damsm / "damsm.pt", weights_only=False)["image_encoder"]
    init = build_backbone("tiny").state_dict()["local.0.weight"]
    assert not torch.equal(saved["backbone.local.0.weight"], init)
    for name in ("netG.pt", "fakes000000.png", "fakes000002.png", "attention000002.png"):
        assert (gan / name).is_file(), name
    rows = _stats(gan)
    assert [r["step"] for r in rows] == [1, 2]
    assert {"d_loss0", "d_loss2", "g_loss0", "w_loss", "s_loss", "kl_loss"} <= set(rows[0])
    ckpt = torch.load(gan / "checkpoints" / "ckpt-000002.pt", weights_only=False)
    assert {"netG", "netD0", "netD2", "optimizerG", "optimizerD1", "avg_param_G",
            "text_encoder", "rng"} <= set(ckpt)  # fmt: skip


def test_sample_from_captions_with_attention(trained, tmp_path):
    captions = tmp_path / "caps.txt"
    captions.write_text("a small red bird\n\nthis bird is blue and large\n")
    out = tmp_path / "samples"
    result = CliRunner().invoke(sample, [
        "--outdir", str(trained), "--caption", "a green bird with zebra stripes",
        "--captions", str(captions), "--attention", "--save_dir", str(out), "--device", "cpu",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "unknown words dropped: zebra, stripes" in result.output
    with Image.open(out / "00000.png") as image:
        assert image.size == (64, 64)
    assert {p.name for p in out.iterdir()} >= {"00002.png", "00001_attention.png", "grid.png"}
    assert (out / "captions.txt").read_text().count("\n") == 3
    # Same seed, same image.
    again = tmp_path / "again"
    CliRunner().invoke(
        sample,
        [
            "--outdir",
            str(trained),
            "--caption",
            "a green bird with zebra stripes",
            "--save_dir",
            str(again),
            "--device",
            "cpu",
        ],
    )
    assert (again / "00000.png").read_bytes() == (out / "00000.png").read_bytes()


def test_resume_continues_from_the_last_checkpoint(cub_dir, tmp_path, cli_args, trained):
    damsm = trained / "00000-damsm" / "damsm.pt"
    args = [*cli_args("gan", cub_dir, tmp_path, iters=2), "--NET_E", str(damsm)]
    runner = CliRunner()
    assert runner.invoke(train, args).exit_code == 0
    args[args.index("--max_iters") + 1] = "4"
    result = runner.invoke(train, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(runs) == 1  # the same run directory
    assert [r["step"] for r in _stats(runs[0])] == [1, 2, 3, 4]
    assert (runs[0] / "checkpoints" / "ckpt-000004.pt").is_file()


def _error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: ") and "Traceback" not in result.output
    return lines[-1]


def test_bad_inputs_are_one_line_errors(cub_dir, tmp_path, cli_args, trained):
    runner = CliRunner()
    args = cli_args("damsm", cub_dir, tmp_path)
    msg = _error(runner.invoke(pretrain_damsm, [*args, "--set", "TRAIN.NOPE=1"]))
    assert "TRAIN.NOPE" in msg
    msg = _error(runner.invoke(pretrain_damsm, [*args, "--set", "GAN.R_NUM=x"]))
    assert "GAN.R_NUM" in msg
    empty = tmp_path / "empty"
    (empty / "CUB_200_2011").mkdir(parents=True)
    bad = [*args]
    bad[bad.index("--data_dir") + 1] = str(empty)
    assert "text/" in _error(runner.invoke(pretrain_damsm, bad))
    birds = cli_args("damsm", cub_dir, tmp_path / "dn") + ["--set", "GANLAB.DIGIT_NEGATIVES=2"]
    assert "GANLAB.DIGIT_NEGATIVES" in _error(runner.invoke(pretrain_damsm, birds))
    assert not (tmp_path / "dn").exists() or not any((tmp_path / "dn").iterdir())
    msg = _error(runner.invoke(sample, ["--outdir", str(trained), "--caption", "zebra qwerty"]))
    assert "no word is in the vocabulary" in msg and "qwerty" in msg
    # A DAMSM file whose vocabulary does not match its text encoder.
    damsm = torch.load(trained / "00000-damsm" / "damsm.pt", weights_only=False)
    damsm["vocab"] = damsm["vocab"][:-1]
    broken = tmp_path / "broken.pt"
    torch.save(damsm, broken)
    gan = [*cli_args("gan", cub_dir, tmp_path / "g"), "--NET_E", str(broken)]
    assert "vocabulary" in _error(runner.invoke(train, gan))
    good = str(trained / "00000-damsm" / "damsm.pt")
    gan = [*cli_args("gan", cub_dir, tmp_path / "g"), "--NET_E", good]
    gan += ["--set", "GANLAB.DIGIT_NEGATIVES=2"]
    assert "GANLAB.DIGIT_NEGATIVES" in _error(runner.invoke(train, gan))  # birds: no digits
    assert not (tmp_path / "g").exists() or not any((tmp_path / "g").iterdir())
    msg = _error(runner.invoke(sample, ["--netG", str(tmp_path / "missing.pt"), "--caption", "a"]))
    assert "--netG" in msg


def test_embedded_digit_scenes_need_no_data(
    tmp_path, tiny_damsm, tiny_gan, digit_classifier, monkeypatch
):
    """The acceptance path: no --data_dir, pretrain -> train -> sample "a red seven"."""
    runner = CliRunner()
    common = ["--outdir", str(tmp_path), "--device", "cpu", "--max_iters", "1",
              "--set", "GANLAB.DIGIT_SCENES=64"]  # fmt: skip
    sets = [a for v in [*tiny_damsm, "GANLAB.DIGIT_NEGATIVES=2"] for a in ("--set", v)]
    result = runner.invoke(pretrain_damsm, [*common, *sets])
    assert result.exit_code == 0, result.output
    assert "h_loss" in _stats(tmp_path / "00000-damsm")[0]  # digit-swapped DAMSM negatives
    sets = [a for v in [*tiny_gan, "GANLAB.DIGIT_NEGATIVES=2", "GANLAB.DIGIT_NEGATIVES_D=true"]
            for a in ("--set", v)]
    result = runner.invoke(train, [*common, *sets])
    assert result.exit_code == 0, result.output
    assert "h_loss" in _stats(tmp_path / "00001-attngan")[0]  # the digit-swapped negatives
    result = runner.invoke(sample, ["--outdir", str(tmp_path), "--caption", "a red seven",
                                    "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "00001-attngan" / "samples" / "00000.png").is_file()
    # more images than the run's 64 scenes: image i must be scored against scene i mod 64
    from ganlab_common import metrics

    monkeypatch.setattr(metrics, "load_digit_classifier", lambda device: digit_classifier)
    result = runner.invoke(evaluate, ["--outdir", str(tmp_path), "--device", "cpu", "--count",
                                      "80", "--metrics", "faithful,faithful_real"])  # fmt: skip
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output.strip().splitlines()[-1])
    assert scores["faithful_real"] >= 0.9 and scores["colour_accuracy_real"] == 1.0
    assert 0.0 <= scores["faithful"] <= 1.0


def test_digit_scenes_are_deterministic_and_captioned():
    from attngan.digits import digit_scene_records

    a, b = digit_scene_records("test", count=5), digit_scene_records("test", count=5)
    assert a.keys == b.keys and all((x == y).all() for x, y in zip(a.sources, b.sources))
    assert a.sources[0].shape == (64, 64, 3) and len(a.captions[0]) == 10
    words = {w for caps in a.captions for c in caps for w in c}
    assert words & {"red", "green", "blue", "yellow", "cyan", "magenta", "white", "orange"}


def test_resumed_training_matches_an_uninterrupted_run(cub_dir, tmp_path, cli_args, trained):
    damsm = str(trained / "00000-damsm" / "damsm.pt")
    runner = CliRunner()
    # 4 samples per epoch with batch 4 and 8 images: 2 batches an epoch; stop mid-epoch (3).
    straight = [*cli_args("gan", cub_dir, tmp_path / "a", iters=5), "--NET_E", damsm]
    straight += ["--set", "GANLAB.CHECKPOINT_ITERS=3"]
    assert runner.invoke(train, straight).exit_code == 0
    part = [*cli_args("gan", cub_dir, tmp_path / "b", iters=3), "--NET_E", damsm]
    part += ["--set", "GANLAB.CHECKPOINT_ITERS=3"]
    assert runner.invoke(train, part).exit_code == 0
    part[part.index("--max_iters") + 1] = "5"
    assert runner.invoke(train, [*part, "--resume"]).exit_code == 0
    a = torch.load(next((tmp_path / "a").glob("*/checkpoints/ckpt-000005.pt")), weights_only=False)
    b = torch.load(next((tmp_path / "b").glob("*/checkpoints/ckpt-000005.pt")), weights_only=False)
    for key in a["netG"]:
        torch.testing.assert_close(a["netG"][key], b["netG"][key], msg=key)
    for x, y in zip(a["avg_param_G"], b["avg_param_G"]):
        torch.testing.assert_close(x, y)
