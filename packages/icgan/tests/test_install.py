"""The single-package install: ``pip install ./packages/common ./packages/icgan``.

The fast tests check the package metadata and that icgan's code imports no other paper.
The slow test builds both wheels with ``uv build``, installs them with pip into a fresh
plain venv (``--no-index``: nothing is downloaded) that sees the workspace's third-party
packages (torch, numpy, ...) -- but none of the workspace's own packages -- through a
``.pth`` file, and then runs ``icgan-train --help`` and a tiny end-to-end run there.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import click
import pytest

PACKAGE = Path(__file__).resolve().parents[1]  # packages/icgan
WORKSPACE = PACKAGE.parents[1]
MEMBERS = ("ganlab_common", "icgan", "lrgan", "facegan", "crvae", "attngan")
OTHER_PAPERS = ("lrgan", "facegan", "crvae", "attngan")


def test_pyproject_depends_on_common_only_and_declares_the_scripts():
    meta = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    assert meta["name"] == "icgan"
    assert meta["dependencies"] == ["ganlab-common"]
    assert meta["scripts"] == {"icgan-train": "icgan.cli:train_command",
                               "icgan-test": "icgan.cli:test_command"}
    import icgan.cli

    for target in meta["scripts"].values():
        assert isinstance(getattr(icgan.cli, target.split(":")[1]), click.Command)


def test_icgan_imports_no_other_paper():
    imported = set()
    for source in (PACKAGE / "src" / "icgan").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    assert "ganlab_common" in imported
    assert not imported & set(OTHER_PAPERS)


def _third_party_only(site: Path, target: Path) -> Path:
    """A folder of links to ``site``'s entries, minus the workspace packages and .pth hooks."""
    target.mkdir()
    for entry in site.iterdir():
        stem = entry.name.split("-")[0].split(".")[0]
        if entry.suffix == ".pth" or entry.name.startswith("__editable__") or stem in MEMBERS:
            continue
        (target / entry.name).symlink_to(entry)
    return target


def _run(args: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.slow
def test_single_package_install_in_a_fresh_venv(tmp_path):
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is needed to build the wheels")
    wheels = tmp_path / "wheels"
    for package in ("ganlab-common", "icgan"):
        _run([uv, "build", "--package", package, "--wheel", "-o", wheels], cwd=WORKSPACE)
    (icgan_wheel,) = wheels.glob("icgan-*.whl")
    with zipfile.ZipFile(icgan_wheel) as wheel:
        metadata = wheel.read("icgan-0.1.0.dist-info/METADATA").decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert requires == ["Requires-Dist: ganlab-common"]

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
                .stdout.strip())
    deps = _third_party_only(Path(sysconfig.get_path("purelib")), tmp_path / "deps")
    (site / "workspace_third_party.pth").write_text(f"{deps}\n")
    # a hermetic pip: no machine-wide config (constraints, find-links), no index at all
    pip_env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    pip_env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    # python 3.11's venv seeds an old setuptools that would shadow the one torch requires
    _run([python, "-m", "pip", "uninstall", "-y", "setuptools"], env=pip_env)
    _run([python, "-m", "pip", "install", "--no-index", "--find-links", wheels,
          "ganlab-common", "icgan"], env=pip_env)

    installed = sorted(p.name.split("-")[0] for p in site.glob("*.dist-info"))
    assert [n for n in installed if n != "pip"] == ["ganlab_common", "icgan"]
    env = {**os.environ, "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    probe = ("import importlib.util as u, icgan; print(icgan.__file__); "
             f"print([m for m in {OTHER_PAPERS!r} if u.find_spec(m)])")
    out = _run([python, "-c", probe], env=env).stdout.splitlines()
    assert out[0].startswith(str(site)) and out[1] == "[]"
    assert "--fineSize" in _run([venv / "bin" / "icgan-train", "--help"], env=env).stdout
    tiny = ["--dataset", "mnist", "--fineSize", "16", "--nz", "8", "--ngf", "8", "--ndf", "8",
            "--nf", "8", "--nConvLayers", "2", "--batchSize", "16", "--niter", "1",
            "--nEpochs", "1", "--maxImages", "64", "--samples", "64", "--genBatchSize", "16",
            "--device", "cpu", "--outdir", tmp_path / "runs"]
    _run([venv / "bin" / "icgan-train", *tiny], env=env)
    _run([venv / "bin" / "icgan-test", "--outdir", tmp_path / "runs", "--mode", "swap"],
         env=env)
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "encoder_y" / "stats.jsonl").is_file() and (run / "test" / "swap.png").is_file()


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    """The same trainer under DDP (gloo on CPU): every stage finishes, rank 0 writes."""
    script = shutil.which("icgan-train", path=str(Path(sys.executable).parent))
    tiny = ["--dataset", "mnist", "--fineSize", "16", "--nz", "8", "--ngf", "8", "--ndf", "8",
            "--nf", "8", "--nConvLayers", "2", "--batchSize", "16", "--niter", "1",
            "--nEpochs", "1", "--maxImages", "128", "--samples", "64", "--genBatchSize", "16",
            "--device", "cpu", "--outdir", tmp_path]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = _run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node", "2", script, *tiny], env=env)
    assert result.stdout.count("icgan: run directory") == 1
    (run,) = tmp_path.iterdir()
    assert (run / "gan" / "checkpoints" / "gan-000004.pt").is_file()  # 128 / (2 x 16) steps
    for stage in ("gan", "encoder_z", "encoder_y"):
        assert (run / stage / "stats.jsonl").read_text().strip()
