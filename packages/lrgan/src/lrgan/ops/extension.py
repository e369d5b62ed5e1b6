"""The compiled STNM op ``lrgan::stnm`` and the choice between it and the reference.

``lrgan._C`` (built from csrc/ by setup.py) defines the schema and the CPU kernels, and the
CUDA kernels when it was built where torch saw a GPU and nvcc (or with ``FORCE_CUDA=1``).
This module, on first use, imports it and registers the Python side: the autograd formula
(the backward is the op ``lrgan::stnm_backward``), fake kernels so that ``torch.compile``
can trace the op, and float32 autocast.

Choose the implementation once, e.g. when building the model::

    composite = select_stnm("auto", device)        # "auto" | "ext" | "ref"
    out = composite(canvas, fg, mask, grid)         # [B, C, H, W]

- ``"ext"``: the compiled op; a ``UserError`` if it is not available for ``device``.
- ``"ref"``: :func:`lrgan.ops.reference.stnm_reference` (pure PyTorch, ``F.grid_sample``).
- ``"auto"``: ``"ext"`` when available, else ``"ref"`` with a one-time
  :class:`StnmFallbackWarning`. With ``LRGAN_REQUIRE_EXT=1`` in the environment (CI), a CPU
  extension that did not load is an error instead.
"""

from __future__ import annotations

import functools
import importlib
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ganlab_common.errors import UserError

from .reference import check_shapes, stnm_reference

__all__ = [
    "IMPLS",
    "REQUIRE_EXT_ENV",
    "ExtensionStatus",
    "StnmFallbackWarning",
    "extension_status",
    "select_stnm",
    "stnm",
    "stnm_ext",
]

IMPLS = ("auto", "ext", "ref")
REQUIRE_EXT_ENV = "LRGAN_REQUIRE_EXT"

StnmFn = Callable[..., torch.Tensor]


class StnmFallbackWarning(UserWarning):
    """The compiled STNM op is unavailable; the (slower) pure-PyTorch reference is used."""


@dataclass(frozen=True)
class ExtensionStatus:
    """Whether ``lrgan._C`` loaded, whether it has CUDA kernels, and if not, why."""

    loaded: bool
    with_cuda: bool = False
    reason: str = ""


def load_extension(module: str = "lrgan._C") -> ExtensionStatus:
    """Import the extension module (which registers ``lrgan::stnm``) and report the result."""
    try:
        ext = importlib.import_module(module)
    except (ImportError, OSError) as err:  # not built, or built against another torch
        return ExtensionStatus(False, reason=f"cannot import {module}: {err}")
    return ExtensionStatus(True, with_cuda=bool(getattr(ext, "WITH_CUDA", 0)))


@functools.cache
def extension_status() -> ExtensionStatus:
    """Load ``lrgan._C`` and register the Python side of the op, once per process."""
    status = load_extension()
    if status.loaded:
        _register_python_side()
    return status


def stnm_ext(
    canvas: torch.Tensor,
    fg: torch.Tensor,
    mask: torch.Tensor,
    grid: torch.Tensor,
    *,
    legacy_grad: bool = False,
) -> torch.Tensor:
    """The compiled op; same arguments and result as :func:`stnm_reference`.

    Args:
        canvas: ``[B, C, H, W]``; fg: ``[B, C, Hf, Wf]``; mask: ``[B, 1, Hf, Wf]``;
        grid: ``[B, H, W, 2]`` in (y, x) order. All float32 or all float64, one device.
        legacy_grad: drop the mask's gradient path to the grid (2017 kernel behaviour).

    Returns:
        ``[B, C, H, W]``. Call :func:`extension_status` (or get this function from
        :func:`select_stnm`) first: that is what loads the extension.
    """
    return torch.ops.lrgan.stnm.default(canvas, fg, mask, grid, legacy_grad)


def require_ext_from_env() -> bool:
    """Whether ``LRGAN_REQUIRE_EXT`` asks for a missing CPU extension to be an error."""
    return os.environ.get(REQUIRE_EXT_ENV, "0").strip().lower() not in ("", "0", "false", "no")


def select_stnm(mode: str = "auto", device: torch.device | str | None = None) -> StnmFn:
    """Pick the STNM implementation once; returns ``stnm_ext`` or ``stnm_reference``.

    Args:
        mode: ``"auto"``, ``"ext"`` or ``"ref"`` (the ``--stnm`` flag).
        device: where the op will run (default CPU); CUDA needs an extension built with
            the CUDA kernels (see :func:`cuda_kernels_hint`).

    Raises:
        UserError: unknown mode, or ``"ext"`` when the extension cannot serve ``device``.
        RuntimeError: ``LRGAN_REQUIRE_EXT=1`` and the extension did not load.
    """
    if mode not in IMPLS:
        raise UserError(f"--stnm: expected one of {', '.join(IMPLS)}, got {mode!r}")
    if mode == "ref":
        return stnm_reference
    device_type = torch.device(device if device is not None else "cpu").type
    status = extension_status()
    if not status.loaded and require_ext_from_env():
        raise RuntimeError(
            f"{REQUIRE_EXT_ENV}=1 but the compiled STNM op is missing ({status.reason}); "
            "rebuild it with `uv sync --reinstall-package lrgan`"
        )
    problem = _unavailable_reason(status, device_type)
    if problem is None:
        return stnm_ext
    if mode == "ext":
        raise UserError(f"--stnm: 'ext' is not available: {problem}; use --stnm ref or auto")
    _warn_fallback(problem)
    return stnm_reference


def stnm(
    canvas: torch.Tensor,
    fg: torch.Tensor,
    mask: torch.Tensor,
    grid: torch.Tensor,
    *,
    legacy_grad: bool = False,
    impl: str = "auto",
) -> torch.Tensor:
    """Composite: ``out = (1 - m')·canvas + m'·fg'`` (see :func:`stnm_reference`).

    Args:
        canvas: ``[B, C, H, W]``, the image so far.
        fg: ``[B, C, Hf, Wf]``, the foreground appearance.
        mask: ``[B, 1, Hf, Wf]``, the foreground mask.
        grid: ``[B, H, W, 2]``, (y, x) positions in [-1, 1] where each output pixel samples
            fg and mask (e.g. from :func:`affine_grid_yx`).
        legacy_grad: reproduce the 2017 kernel's gradient (no mask term in d/d grid).
        impl: ``"auto" | "ext" | "ref"``, resolved by :func:`select_stnm` for the canvas's
            device on every call. For eager use; in models (and under ``torch.compile``,
            which cannot trace the cached selection) call ``select_stnm`` once and keep
            the function it returns.

    Returns:
        ``[B, C, H, W]``.
    """
    fn = select_stnm(impl, canvas.device)
    return fn(canvas, fg, mask, grid, legacy_grad=legacy_grad)


def _unavailable_reason(status: ExtensionStatus, device_type: str) -> str | None:
    if not status.loaded:
        return status.reason
    if device_type == "cuda" and not status.with_cuda:
        return cuda_kernels_hint()
    if device_type not in ("cpu", "cuda"):
        return f"lrgan._C has no kernels for device type {device_type!r}"
    return None


def cuda_kernels_hint() -> str:
    """One line: lrgan._C has no CUDA kernels, and how to get them on this machine."""
    toolkit = bool(
        os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or shutil.which("nvcc")
        or os.path.exists("/usr/local/cuda/bin/nvcc")
    )
    need = "" if toolkit else "install the CUDA toolkit (nvcc; set CUDA_HOME), then "
    return (
        "lrgan._C was built without CUDA kernels (its build saw no GPU or no CUDA toolkit); "
        f"to get them, {need}rebuild lrgan where torch sees the GPU: `uv sync "
        "--reinstall-package lrgan` or `pip install --no-deps --no-build-isolation -e "
        "packages/lrgan` (FORCE_CUDA=1 builds them without a visible GPU)"
    )


@functools.cache
def _warn_fallback(problem: str) -> None:
    warnings.warn(
        f"lrgan: using the pure-PyTorch STNM reference ({problem})",
        StnmFallbackWarning,
        stacklevel=3,
    )


# ---------------------------------------------------------------------------------------
# Python-side registrations of lrgan::stnm (run once, by extension_status()).


def _register_python_side() -> None:
    torch.library.register_fake("lrgan::stnm", _stnm_fake)
    torch.library.register_fake("lrgan::stnm_backward", _stnm_backward_fake)
    torch.library.register_autograd(
        "lrgan::stnm", _stnm_backward, setup_context=_stnm_setup_context
    )
    torch.library.register_autograd(
        "lrgan::stnm_backward", _no_double_backward, setup_context=_no_context
    )
    for device_type in ("cpu", "cuda"):
        torch.library.register_autocast("lrgan::stnm", device_type, torch.float32)


def _check_fake(canvas, fg, mask, grid) -> None:
    try:
        check_shapes(canvas, fg, mask, grid)
    except ValueError as err:
        raise RuntimeError(f"lrgan::{err}") from None
    dtypes = {t.dtype for t in (canvas, fg, mask, grid)}
    torch._check(
        len(dtypes) == 1 and canvas.dtype in (torch.float32, torch.float64),
        lambda: f"lrgan::stnm: inputs must all be float32 or all float64, got {dtypes}",
    )
    devices = {t.device for t in (canvas, fg, mask, grid)}
    torch._check(
        len(devices) == 1, lambda: f"lrgan::stnm: all inputs must be on one device, got {devices}"
    )


def _stnm_fake(canvas, fg, mask, grid, legacy_grad=False):
    _check_fake(canvas, fg, mask, grid)
    return canvas.new_empty(canvas.shape)


def _stnm_backward_fake(grad_out, canvas, fg, mask, grid, legacy_grad):
    _check_fake(canvas, fg, mask, grid)
    return tuple(t.new_empty(t.shape) for t in (canvas, fg, mask, grid))


def _stnm_setup_context(ctx, inputs, output) -> None:
    canvas, fg, mask, grid, legacy_grad = inputs
    ctx.save_for_backward(canvas, fg, mask, grid)
    ctx.legacy_grad = legacy_grad


def _stnm_backward(ctx, grad_out):
    canvas, fg, mask, grid = ctx.saved_tensors
    grads = torch.ops.lrgan.stnm_backward.default(
        grad_out, canvas, fg, mask, grid, ctx.legacy_grad
    )
    wanted = ctx.needs_input_grad[:4]
    return (*(g if need else None for g, need in zip(grads, wanted)), None)


def _no_context(ctx, inputs, output) -> None:
    pass


def _no_double_backward(ctx, *grads):
    raise NotImplementedError(
        "lrgan::stnm has no double backward; use the reference (select_stnm('ref')) "
        "for gradient penalties through the compositing"
    )
