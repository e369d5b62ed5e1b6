"""Shared fixtures: a tiny LFW-format folder and a CLI runner with tiny training flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from ganlab_common.testing import one_torch_thread  # noqa: F401 (autouse)


@pytest.fixture
def tiny_train() -> list[str]:
    """Tiny but real: the embedded faces, 2 epochs of 2 iterations, 1/8 of the channels."""
    return ["--scale", "16", "--epochs", "2", "--N_epoch", "8", "--batchSize", "8",
            "--saveFreq", "1", "--width", "0.125"]


@pytest.fixture
def tiny_c2f() -> list[str]:
    return ["--epochs", "2", "--N_epoch", "8", "--batchSize", "8", "--width", "0.125"]


@pytest.fixture
def run_cli():
    """``run_cli(command, args, code=0) -> Result``, asserting the exit code."""
    runner = CliRunner()

    def invoke(command, args: list[str], code: int = 0) -> Result:
        result = runner.invoke(command, [str(a) for a in args])
        if result.exit_code != code:
            raise AssertionError(
                f"exit {result.exit_code} != {code}\n{result.output}\n{result.exception!r}"
            ) from result.exception
        return result

    return invoke


@pytest.fixture
def error_line():
    """``error_line(result, *words)``: the single ``Error: ...`` line of a command that failed
    with exit code 2, checked to contain ``words``."""

    def check(result: Result, *words: str) -> str:
        assert result.exit_code == 2, result.output
        lines = [line for line in result.output.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
        for word in words:
            assert word in lines[0], lines[0]
        return lines[0]

    return check


@pytest.fixture
def lfw_folder(tmp_path: Path) -> Path:
    """``lfw/<person>/<person>_000N.jpg``: 2 persons x 2 photos, 250x250 RGB, plus one
    non-image file at the top level."""
    root = tmp_path / "lfw"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:250, 0:250]
    for person in ("Alice_Example", "Bob_Example"):
        (root / person).mkdir(parents=True)
        for k in (1, 2):
            face = ((xx - 125) ** 2 + (yy - 130) ** 2 < 60**2) * 120.0 + 60
            noise = rng.integers(0, 40, size=(250, 250, 3))
            image = np.clip(face[..., None] + noise, 0, 255).astype(np.uint8)
            Image.fromarray(image).save(root / person / f"{person}_{k:04d}.jpg", quality=90)
    (root / "lfw-names.txt").write_text("Alice_Example 2\nBob_Example 2\n")
    return root
