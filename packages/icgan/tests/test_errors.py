"""Bad input from the issue: one ``Error: ...`` line, exit code 2, nothing created or deleted."""

from __future__ import annotations

from icgan.cli import test_command as icgan_test
from icgan.cli import train_command as icgan_train


def _one_line_error(result, *words: str) -> str:
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_celeba_without_dataroot(cli, tmp_path):
    result = cli.raw(icgan_train, ["--dataset", "celeba", "--outdir", tmp_path / "runs"])
    _one_line_error(result, "--dataroot", "list_attr_celeba.txt")
    assert not (tmp_path / "runs").exists()  # no run directory for a run that cannot start


def test_celeba_dataroot_without_attribute_list_names_the_file(cli, celeba_root, tmp_path):
    (celeba_root / "list_attr_celeba.txt").unlink()
    result = cli.raw(icgan_train, ["--dataset", "celeba", "--dataroot", celeba_root,
                                   "--outdir", tmp_path / "runs"])
    _one_line_error(result, "--dataroot", str(celeba_root / "list_attr_celeba.txt"))
    assert not (tmp_path / "runs").exists()


def test_celeba_dataroot_that_is_not_a_folder(cli, tmp_path):
    result = cli.raw(icgan_train, ["--dataset", "celeba", "--dataroot", tmp_path / "nope"])
    _one_line_error(result, "--dataroot", "nope")


def test_encoder_stage_before_a_gan_exists(cli, tiny, tmp_path):
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    result = cli.raw(icgan_train, [*tiny, "--stage", "encoder-z", "--outdir", tmp_path])
    _one_line_error(result, "--stage encoder-z", "--stage gan")
    assert keep.read_text() == "mine" and sorted(tmp_path.iterdir()) == [keep]


def test_encoder_stage_on_a_run_without_gan_checkpoint(cli, tiny, tmp_path):
    run = tmp_path / "00000-icgan-mnist"
    run.mkdir()
    (run / "config.json").write_text('{"dataset": "mnist", "fine_size": 16}')
    result = cli.raw(icgan_train, [*tiny, "--stage", "encoder-y", "--outdir", tmp_path])
    _one_line_error(result, "--stage encoder-y", "gan checkpoint")
    assert (run / "config.json").read_text() == '{"dataset": "mnist", "fine_size": 16}'


def test_fine_size_48(cli):
    _one_line_error(cli.raw(icgan_train, ["--dataset", "mnist", "--fineSize", "48"]),
                    "--fineSize", "48", "16, 32, 64, 128")


def test_too_many_encoder_layers(cli):
    result = cli.raw(icgan_train, ["--dataset", "mnist", "--fineSize", "16",
                                   "--nConvLayers", "5"])
    _one_line_error(result, "--nConvLayers")


def test_batch_larger_than_the_data(cli, tmp_path):
    result = cli.raw(icgan_train, ["--dataset", "mnist", "--maxImages", "10",
                                   "--outdir", tmp_path])
    _one_line_error(result, "--batchSize", "10")
    assert list(tmp_path.iterdir()) == []


def test_im1path_not_an_image(cli, mnist_run, tmp_path):
    text = tmp_path / "face.jpg"
    text.write_text("not a picture")
    result = cli.raw(icgan_test, ["--runDir", mnist_run, "--mode", "swap", "--im1Path", text])
    _one_line_error(result, "--im1Path", "face.jpg", "not an image")
    result = cli.raw(icgan_test, ["--runDir", mnist_run, "--mode", "interpolate",
                                  "--im2Path", tmp_path / "missing.png"])
    _one_line_error(result, "--im2Path", "missing.png")


def test_icgan_test_without_a_run(cli, tmp_path):
    _one_line_error(cli.raw(icgan_test, ["--outdir", tmp_path]), "--outdir", "no icgan run")
    _one_line_error(cli.raw(icgan_test, ["--runDir", tmp_path]), "--runDir", "config.json")
