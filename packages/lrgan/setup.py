"""Build ``lrgan._C``, the STNM custom op, with torch.utils.cpp_extension.

The package metadata lives in pyproject.toml; this file only describes the extension.

- Default: a CPU-only ``CppExtension``. It is *optional*: if the compiler fails, the install
  still succeeds and lrgan falls back to the pure-PyTorch reference with a warning (CI sets
  ``LRGAN_REQUIRE_EXT=1`` so that this cannot pass unnoticed).
- ``FORCE_CUDA=1``: a ``CUDAExtension`` with the kernels in csrc/cuda/*.cu as well. It needs
  nvcc under ``CUDA_HOME`` (e.g. ``CUDA_HOME=/usr/local/cuda``) and is never optional.
  Without a visible GPU, set ``TORCH_CUDA_ARCH_LIST`` (default here: torch's own arch list).
- ``DEBUG=1``: ``-O0 -g``.

Install without build isolation against the torch already installed:
``pip install --no-deps --no-build-isolation -e packages/lrgan``.
"""

from __future__ import annotations

import glob
import os

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension


def want_cuda() -> bool:
    """Whether to build the CUDA kernels; raises if FORCE_CUDA=1 cannot be honoured."""
    if os.environ.get("FORCE_CUDA", "0") != "1":
        return False
    nvcc = os.path.join(CUDA_HOME or "", "bin", "nvcc")
    header = os.path.join(CUDA_HOME or "", "include", "cuda_runtime.h")
    if not (os.path.exists(nvcc) and os.path.exists(header)):
        raise RuntimeError(
            f"FORCE_CUDA=1: no CUDA toolkit at CUDA_HOME={CUDA_HOME!r} (need bin/nvcc and "
            "include/cuda_runtime.h); set CUDA_HOME, e.g. CUDA_HOME=/usr/local/cuda"
        )
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        arches = [a.removeprefix("sm_") for a in torch.cuda.get_arch_list() if a.startswith("sm_")]
        arches = [f"{a[:-1]}.{a[-1]}" for a in arches]
        os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(arches[:-1] + [arches[-1] + "+PTX"])
    return True


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
        return ext
    return CppExtension(
        "lrgan._C", sources, extra_compile_args={"cxx": cxx}, py_limited_api=True, optional=True
    )


class BuildStnm(BuildExtension):
    """BuildExtension that lets an ``optional`` extension fail without failing the install."""

    def build_extensions(self) -> None:
        try:
            super().build_extensions()
        except Exception as err:  # any compiler, ninja or toolchain-check failure
            if not all(ext.optional for ext in self.extensions):
                raise
            self.warn(
                f"lrgan: building lrgan._C failed ({type(err).__name__}: {err}); lrgan will "
                "use the pure-PyTorch STNM reference (LRGAN_REQUIRE_EXT=1 makes that an error)"
            )


setup(
    ext_modules=[stnm_extension()],
    cmdclass={"build_ext": BuildStnm},
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
