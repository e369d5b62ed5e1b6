"""attngan-eval on the tiny trained pipeline (the server's tests are in test_serve.py)."""

import json

import pytest
from click.testing import CliRunner

from attngan.cli import evaluate


def test_eval_r_precision(trained, cub_dir):
    result = CliRunner().invoke(evaluate, [
        "--outdir", str(trained), "--data_dir", str(cub_dir), "--count", "200",
        "--metrics", "rprec,rprec_real,is", "--folds", "2", "--device", "cpu",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert 0 <= data["r_precision"] <= 1 and 0 <= data["r_precision_real"] <= 1
    assert data["inception_score"] is None and "weights" in data["inception_score_note"]
    assert (trained / "00001-attngan" / "metric-eval.jsonl").is_file()


@pytest.mark.slow
def test_eval_fid(trained, cub_dir):
    result = CliRunner().invoke(evaluate, [
        "--outdir", str(trained), "--data_dir", str(cub_dir), "--count", "16",
        "--metrics", "fid", "--device", "cpu",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["fid"] > 0
