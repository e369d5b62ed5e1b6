"""Build ``lrgan._C``, the STNM custom op, with torch.utils.cpp_extension.

The package metadata lives in pyproject.toml; this file only describes the extension.

- The CPU kernels are always built. They are *optional*: if the compiler fails, the install
  still succeeds and lrgan falls back to the pure-PyTorch reference with a warning (CI sets
  ``LRGAN_REQUIRE_EXT=1`` so that this cannot pass unnoticed).
- The CUDA kernels (csrc/cuda/*.cu, a ``CUDAExtension``) are built without any flag when
  torch is a CUDA build, a CUDA toolkit is found (``CUDA_HOME``/``CUDA_PATH``, ``nvcc`` on
  PATH, or /usr/local/cuda) whose major version is torch's, **and torch sees a GPU at build
  time**. The last condition keeps CI and the GPU-less development machines (which have
  nvcc) from spending ~3 minutes of nvcc on every ``uv sync``; it also means the kernels
  are compiled for the GPU that is there. If that automatic CUDA build fails, the CPU-only
  op is built instead, with a warning.
- ``FORCE_CUDA=1``: build the CUDA kernels whatever is visible (e.g. for another machine's
  GPU); a missing toolkit or a failed build is an error. Without a visible GPU set
  ``TORCH_CUDA_ARCH_LIST`` (default here: torch's own arch list).
- ``LRGAN_NO_CUDA=1``: never build the CUDA kernels.
- ``DEBUG=1``: ``-O0 -g``.

Install without build isolation against the torch already installed:
``pip install --no-deps --no-build-isolation -e packages/lrgan``.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping

import torch
from setuptools import setup


def has_toolkit(cuda_home: str | None) -> bool:
    """Whether ``cuda_home`` holds bin/nvcc and include/cuda_runtime.h."""
    return bool(cuda_home) and all(
        os.path.exists(os.path.join(cuda_home, *part))
        for part in (("bin", "nvcc"), ("include", "cuda_runtime.h"))
    )


def find_cuda_home(env: Mapping[str, str]) -> str | None:
    """The CUDA toolkit to build with: CUDA_HOME or CUDA_PATH when set, else the first of
    nvcc's folder on PATH (resolved) and /usr/local/cuda that holds a toolkit.

    torch guesses the parent of ``which nvcc``, which is wrong for a wrapper script such
    as /usr/local/bin/nvcc; hence the search here.
    """
    explicit = env.get("CUDA_HOME") or env.get("CUDA_PATH")
    if explicit:
        return explicit
    nvcc = shutil.which("nvcc", path=env.get("PATH"))
    candidates = [os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))] if nvcc else []
    candidates.append("/usr/local/cuda")
    return next((c for c in candidates if has_toolkit(c)), None)


# torch.utils.cpp_extension reads CUDA_HOME from the environment when it is imported.
if not os.environ.get("CUDA_HOME") and (_found := find_cuda_home(os.environ)):
    os.environ["CUDA_HOME"] = _found
from torch.utils.cpp_extension import (  # noqa: E402
    CUDA_HOME,
    BuildExtension,
    CppExtension,
    CUDAExtension,
)


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "0").strip() == "1"


def toolkit_problem(cuda_home: str | None) -> str | None:
    """Why ``cuda_home`` is not a usable CUDA toolkit (None when it is)."""
    if not has_toolkit(cuda_home):
        return (
            f"no CUDA toolkit at CUDA_HOME={cuda_home!r} (need bin/nvcc and "
            "include/cuda_runtime.h; set CUDA_HOME or put nvcc on PATH)"
        )
    return None


def nvcc_major(cuda_home: str) -> int | None:
    """The major version of ``cuda_home``'s nvcc (None when it cannot be read)."""
    try:
        text = subprocess.run(
            [os.path.join(cuda_home, "bin", "nvcc"), "--version"],
            capture_output=True, text=True, timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"release (\d+)\.", text)
    return int(found.group(1)) if found else None


def cuda_decision(
    env: Mapping[str, str],
    torch_cuda: str | None,
    cuda_home: str | None,
    gpu_visible: bool,
    nvcc_version: int | None = None,
) -> tuple[bool, str]:
    """Whether to build the CUDA kernels, and why (see the module docstring).

    Args:
        env: the environment (FORCE_CUDA, LRGAN_NO_CUDA).
        torch_cuda: ``torch.version.cuda`` (None for a CPU-only torch).
        cuda_home: the toolkit torch found (``torch.utils.cpp_extension.CUDA_HOME``).
        gpu_visible: ``torch.cuda.is_available()`` at build time.
        nvcc_version: the toolkit's major version, when known.

    Raises:
        RuntimeError: FORCE_CUDA=1 without a toolkit, or together with LRGAN_NO_CUDA=1.
    """
    forced, refused = _flag(env, "FORCE_CUDA"), _flag(env, "LRGAN_NO_CUDA")
    if forced and refused:
        raise RuntimeError("FORCE_CUDA=1 and LRGAN_NO_CUDA=1 contradict each other; unset one")
    if refused:
        return False, "LRGAN_NO_CUDA=1"
    problem = toolkit_problem(cuda_home)
    if forced:
        if problem:
            raise RuntimeError(f"FORCE_CUDA=1: {problem}, e.g. CUDA_HOME=/usr/local/cuda")
        return True, "FORCE_CUDA=1"
    if torch_cuda is None:
        return False, "torch is a CPU-only build"
    if problem:
        return False, problem
    torch_major = int(torch_cuda.split(".")[0])
    if nvcc_version is not None and nvcc_version != torch_major:
        return False, (
            f"nvcc under {cuda_home} is CUDA {nvcc_version} but torch was built with CUDA "
            f"{torch_cuda}; point CUDA_HOME at a CUDA {torch_major} toolkit"
        )
    if not gpu_visible:
        return False, "torch sees no GPU at build time (FORCE_CUDA=1 builds the kernels anyway)"
    return True, f"CUDA toolkit at {cuda_home} and a visible GPU"


def want_cuda() -> bool:
    """Decide from this environment, print the decision, and set the default arch list."""
    gpu_visible = torch.cuda.is_available()
    nvcc = nvcc_major(CUDA_HOME) if CUDA_HOME and not toolkit_problem(CUDA_HOME) else None
    build, why = cuda_decision(os.environ, torch.version.cuda, CUDA_HOME, gpu_visible, nvcc)
    print(f"lrgan: {'building' if build else 'not building'} the CUDA STNM kernels: {why}")
    if build and not os.environ.get("TORCH_CUDA_ARCH_LIST") and not gpu_visible:
        arches = [a.removeprefix("sm_") for a in torch.cuda.get_arch_list() if a.startswith("sm_")]
        arches = [f"{a[:-1]}.{a[-1]}" for a in arches]
        os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(arches[:-1] + [arches[-1] + "+PTX"])
    return build


def nvidia_wheel_includes() -> list[str]:
    """Header folders of the nvidia-* wheels that torch depends on (cusparse.h, cublas.h...).

    A minimal CUDA toolkit (nvcc + cudart) lacks the library headers that ATen's CUDA
    headers include; the wheels installed with torch carry them.
    """
    try:
        import nvidia  # the namespace package of the nvidia-* wheels
    except ImportError:
        return []
    found = (glob.glob(os.path.join(root, "*", "include")) for root in nvidia.__path__)
    return sorted(d for dirs in found for d in dirs)


def stnm_extension() -> CppExtension:
    debug = os.environ.get("DEBUG", "0") == "1"
    opt = ["-O0", "-g"] if debug else ["-O3"]
    # py_limited_api=True: torch adds -DPy_LIMITED_API and links no libtorch_python.
    cxx = [*opt, "-fdiagnostics-color=always"]
    sources = sorted(glob.glob("csrc/*.cpp"))
    if want_cuda():
        ext = CUDAExtension(
            "lrgan._C",
            sources + sorted(glob.glob("csrc/cuda/*.cu")),
            extra_compile_args={"cxx": [*cxx, "-DLRGAN_WITH_CUDA"], "nvcc": [*opt]},
            py_limited_api=True,
        )
        # Appended, so that CUDA_HOME/include (matching nvcc) is searched first.
        ext.include_dirs += nvidia_wheel_includes()
        # Found, not asked for: a failed build falls back to the CPU-only op (BuildStnm).
        ext.lrgan_auto_cuda = not _flag(os.environ, "FORCE_CUDA")
        return ext
    return CppExtension(
        "lrgan._C", sources, extra_compile_args={"cxx": cxx}, py_limited_api=True, optional=True
    )


class BuildStnm(BuildExtension):
    """BuildExtension with two fallbacks that keep the install working.

    - An automatically chosen CUDA build that fails is replaced by the CPU-only op (built
      in a fresh ``setup.py build_ext`` process with ``LRGAN_NO_CUDA=1``).
    - An ``optional`` (CPU-only) extension that fails leaves lrgan on the reference op.
    """

    def build_extensions(self) -> None:
        try:
            super().build_extensions()
        except Exception as err:  # any compiler, ninja or toolchain-check failure
            if any(getattr(ext, "lrgan_auto_cuda", False) for ext in self.extensions):
                self.warn(
                    f"lrgan: building the CUDA STNM kernels failed ({type(err).__name__}: "
                    f"{err}); building the CPU-only op instead (FORCE_CUDA=1 makes this an "
                    "error)"
                )
                self._build_cpu_only()
                return
            if not all(ext.optional for ext in self.extensions):
                raise
            self.warn(
                f"lrgan: building lrgan._C failed ({type(err).__name__}: {err}); lrgan will "
                "use the pure-PyTorch STNM reference (LRGAN_REQUIRE_EXT=1 makes that an error)"
            )

    def _build_cpu_only(self) -> None:
        here = os.path.dirname(os.path.abspath(__file__))
        cmd = [
            sys.executable, os.path.join(here, "setup.py"), "build_ext",
            "--build-lib", os.path.abspath(self.build_lib),
            "--build-temp", os.path.join(os.path.abspath(self.build_temp), "cpu-only"),
        ]
        if self.inplace:
            cmd.append("--inplace")
        subprocess.run(cmd, cwd=here, env={**os.environ, "LRGAN_NO_CUDA": "1"}, check=True)


if __name__ == "__main__":  # also under setuptools.build_meta, which runs this as __main__
    setup(
        ext_modules=[stnm_extension()],
        cmdclass={"build_ext": BuildStnm},
        options={"bdist_wheel": {"py_limited_api": "cp311"}},
    )
