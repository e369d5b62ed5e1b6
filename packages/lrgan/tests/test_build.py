"""setup.py's choice of building the CUDA STNM kernels, and the hint when they are missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import lrgan.ops.extension as stnm_module
from ganlab_common.errors import UserError
from lrgan.ops import ExtensionStatus, select_stnm

SETUP = Path(__file__).resolve().parents[1] / "setup.py"


@pytest.fixture(scope="module")
def setup_module():
    """setup.py as a module (its setup() call only runs as __main__)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CUDA_HOME", "/nonexistent-cuda")  # no toolkit search side effect
        spec = importlib.util.spec_from_file_location("lrgan_setup", SETUP)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


@pytest.fixture
def toolkit(tmp_path):
    """A fake CUDA toolkit folder: bin/nvcc and include/cuda_runtime.h."""
    for part in ("bin/nvcc", "include/cuda_runtime.h"):
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / part).write_text("")
    return str(tmp_path)


def test_cuda_kernels_need_toolkit_gpu_and_cuda_torch(setup_module, toolkit):
    decide = setup_module.cuda_decision
    assert decide({}, "13.0", toolkit, gpu_visible=True, nvcc_version=13)[0]
    build, why = decide({}, "13.0", toolkit, gpu_visible=False, nvcc_version=13)
    assert not build and "no GPU" in why and "FORCE_CUDA=1" in why
    build, why = decide({}, None, toolkit, gpu_visible=True)
    assert not build and "CPU-only" in why
    build, why = decide({}, "13.0", "/nonexistent-cuda", gpu_visible=True)
    assert not build and "no CUDA toolkit" in why
    build, why = decide({}, "13.0", toolkit, gpu_visible=True, nvcc_version=12)
    assert not build and "CUDA 12" in why and "CUDA 13" in why


def test_force_and_opt_out(setup_module, toolkit):
    decide = setup_module.cuda_decision
    assert decide({"FORCE_CUDA": "1"}, "13.0", toolkit, gpu_visible=False) == (
        True, "FORCE_CUDA=1")
    assert decide({"LRGAN_NO_CUDA": "1"}, "13.0", toolkit, gpu_visible=True) == (
        False, "LRGAN_NO_CUDA=1")
    with pytest.raises(RuntimeError, match="FORCE_CUDA=1: no CUDA toolkit"):
        decide({"FORCE_CUDA": "1"}, "13.0", "/nonexistent-cuda", gpu_visible=True)
    with pytest.raises(RuntimeError, match="contradict"):
        decide({"FORCE_CUDA": "1", "LRGAN_NO_CUDA": "1"}, "13.0", toolkit, gpu_visible=True)


def test_find_cuda_home_resolves_nvcc_wrappers(setup_module, toolkit, tmp_path):
    find = setup_module.find_cuda_home
    assert find({"CUDA_HOME": "/explicit"}) == "/explicit"
    assert find({"CUDA_PATH": "/explicit2"}) == "/explicit2"
    # nvcc on PATH as a symlink into the toolkit: the toolkit, not the link's parent.
    links = tmp_path / "links" / "bin"
    links.mkdir(parents=True)
    (Path(toolkit) / "bin" / "nvcc").chmod(0o755)
    (links / "nvcc").symlink_to(Path(toolkit) / "bin" / "nvcc")
    assert find({"PATH": str(links)}) == toolkit


def test_ext_on_gpu_without_cuda_kernels_is_one_line_error(monkeypatch):
    monkeypatch.setattr(stnm_module, "extension_status",
                        lambda: ExtensionStatus(True, with_cuda=False))
    with pytest.raises(UserError) as err:
        select_stnm("ext", "cuda")
    message = str(err.value)
    assert "\n" not in message
    assert "--stnm: 'ext' is not available" in message
    assert "uv sync --reinstall-package lrgan" in message and "FORCE_CUDA=1" in message
