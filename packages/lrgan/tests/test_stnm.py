"""The STNM op: compiled kernels (lrgan._C) against the pure-PyTorch reference."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import lrgan.ops.extension as stnm_module
from ganlab_common.errors import UserError
from lrgan.ops import (
    REQUIRE_EXT_ENV,
    ExtensionStatus,
    StnmFallbackWarning,
    affine_grid_yx,
    extension_status,
    select_stnm,
    stnm,
    stnm_ext,
    stnm_reference,
)

PACKAGE = Path(__file__).resolve().parents[1]
STATUS = extension_status()
needs_ext = pytest.mark.skipif(not STATUS.loaded, reason=f"lrgan._C not loaded: {STATUS.reason}")
HAS_CUDA = torch.cuda.is_available() and STATUS.with_cuda
DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="no GPU or no CUDA kernels")
    ),
]


def make_inputs(
    b: int = 2,
    c: int = 3,
    h: int = 8,
    w: int = 8,
    hf: int | None = None,
    wf: int | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    device: str = "cpu",
    spread: float = 1.3,
    borders: bool = True,
    seed: int = 0,
) -> list[torch.Tensor]:
    """canvas [b,c,h,w], fg [b,c,hf,wf], mask [b,1,hf,wf], grid [b,h,w,2] in (y, x).

    The grid is uniform in [-spread, spread]^2; with ``borders`` some entries are exactly
    -1, 0 or 1 and some lie far outside.
    """
    gen = torch.Generator().manual_seed(seed)
    hf, wf = hf or h, wf or w
    canvas = torch.randn(b, c, h, w, generator=gen, dtype=torch.float64)
    fg = torch.randn(b, c, hf, wf, generator=gen, dtype=torch.float64)
    mask = torch.rand(b, 1, hf, wf, generator=gen, dtype=torch.float64)
    grid = (torch.rand(b, h, w, 2, generator=gen, dtype=torch.float64) * 2 - 1) * spread
    if borders:
        flat = grid.view(-1, 2)
        flat[::5, 0] = 1.0
        flat[::7, 1] = -1.0
        flat[::11] = torch.tensor([-1.0, 1.0], dtype=torch.float64)
        flat[::13, 1] = 0.0
        flat[3::17] = torch.tensor([4.0, -7.5], dtype=torch.float64)
    return [t.to(device=device, dtype=dtype) for t in (canvas, fg, mask, grid)]


def grads(fn, inputs, grad_out, legacy_grad=False):
    """Output and d/d(canvas, fg, mask, grid) of sum(fn(...) * grad_out)."""
    inputs = [t.detach().requires_grad_() for t in inputs]
    out = fn(*inputs, legacy_grad=legacy_grad)
    return out.detach(), torch.autograd.grad(out, inputs, grad_out)


def assert_matches_reference(inputs, legacy_grad=False, rtol=1e-7, atol=1e-9):
    grad_out = torch.randn_like(inputs[0])
    out_ext, g_ext = grads(stnm_ext, inputs, grad_out, legacy_grad)
    out_ref, g_ref = grads(stnm_reference, inputs, grad_out, legacy_grad)
    torch.testing.assert_close(out_ext, out_ref, rtol=rtol, atol=atol)
    for name, a, r in zip(("canvas", "fg", "mask", "grid"), g_ext, g_ref):
        torch.testing.assert_close(a, r, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}")


# ---------------------------------------------------------------------------------------
# The extension is there when CI says it must be.


def test_extension_loaded_when_required():
    if os.environ.get(REQUIRE_EXT_ENV, "0") in ("", "0"):
        pytest.skip(f"{REQUIRE_EXT_ENV} not set")
    assert STATUS.loaded, STATUS.reason
    assert select_stnm("auto") is stnm_ext


def test_require_env_turns_missing_extension_into_error(monkeypatch):
    missing = ExtensionStatus(False, reason="cannot import lrgan._C: simulated")
    monkeypatch.setattr(stnm_module, "extension_status", lambda: missing)
    monkeypatch.setenv(REQUIRE_EXT_ENV, "1")
    with pytest.raises(RuntimeError, match="LRGAN_REQUIRE_EXT=1 but the compiled STNM op"):
        select_stnm("auto")
    monkeypatch.setenv(REQUIRE_EXT_ENV, "0")
    stnm_module._warn_fallback.cache_clear()
    with pytest.warns(StnmFallbackWarning, match="simulated"):
        assert select_stnm("auto") is stnm_reference
    with pytest.raises(UserError, match="--stnm: 'ext' is not available"):
        select_stnm("ext")


def test_load_extension_reports_why_it_failed():
    status = stnm_module.load_extension("lrgan._no_such_extension")
    assert not status.loaded
    assert "lrgan._no_such_extension" in status.reason


def test_select_stnm_modes():
    assert select_stnm("ref") is stnm_reference
    with pytest.raises(UserError, match="--stnm: expected one of auto, ext, ref"):
        select_stnm("fast")
    if STATUS.loaded:
        assert select_stnm("ext") is stnm_ext
        assert select_stnm("auto", "cpu") is stnm_ext


@pytest.mark.skipif(not STATUS.loaded or STATUS.with_cuda, reason="needs a CPU-only build")
def test_cpu_only_build_refuses_cuda_ext_and_falls_back_on_auto():
    with pytest.raises(UserError, match="without CUDA kernels"):
        select_stnm("ext", "cuda")
    stnm_module._warn_fallback.cache_clear()
    with pytest.warns(StnmFallbackWarning, match="FORCE_CUDA=1"):
        assert select_stnm("auto", "cuda") is stnm_reference


# ---------------------------------------------------------------------------------------
# Semantics of the reference (the oracle) and of the grid generator.


def test_affine_grid_yx_is_the_original_grid_generator():
    theta = torch.randn(3, 2, 3, dtype=torch.float64)
    grid = affine_grid_yx(theta, 5, 7)  # [3, 5, 7, 2]
    i, j = 3, 6
    y, x = -1 + 2 * i / 4, -1 + 2 * j / 6
    expected = theta @ torch.tensor([y, x, 1.0], dtype=torch.float64)  # [3, 2]
    torch.testing.assert_close(grid[:, i, j], expected)
    # The same as F.affine_grid with (x, y) swapped in both the output and the input.
    theta_xy = theta.flip(1)[:, :, [1, 0, 2]]
    torch.testing.assert_close(
        grid.flip(-1), F.affine_grid(theta_xy, [3, 1, 5, 7], align_corners=True)
    )


@pytest.mark.parametrize("impl", ["ref", pytest.param("ext", marks=needs_ext)])
def test_one_pixel_shift(impl):
    """Sampling x + 1 pixel moves fg left by one; the last column falls outside fg."""
    canvas, fg, _, _ = make_inputs(1, 2, 4, 5, borders=False)
    mask = torch.ones(1, 1, 4, 5, dtype=torch.float64)
    theta = torch.tensor([[[1.0, 0, 0], [0, 1.0, 2 / 4]]], dtype=torch.float64)
    out = stnm(canvas, fg, mask, affine_grid_yx(theta, 4, 5), impl=impl)
    torch.testing.assert_close(out[..., :4], fg[..., 1:])
    torch.testing.assert_close(out[..., 4], canvas[..., 4])


@pytest.mark.parametrize("impl", ["ref", pytest.param("ext", marks=needs_ext)])
def test_mask_zero_and_one(impl):
    canvas, fg, _, _ = make_inputs(2, 3, 6, 6, borders=False)
    identity = affine_grid_yx(torch.eye(2, 3, dtype=torch.float64).expand(2, 2, 3), 6, 6)
    zeros = torch.zeros(2, 1, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(stnm(canvas, fg, zeros, identity, impl=impl), canvas)
    torch.testing.assert_close(stnm(canvas, fg, zeros + 1, identity, impl=impl), fg)


# ---------------------------------------------------------------------------------------
# The extension against the reference, forward and backward.

SHAPES = [  # (B, C, H, W, Hf, Wf)
    (1, 1, 8, 8, 8, 8),
    (2, 3, 16, 12, 9, 7),
    (3, 3, 5, 9, 11, 4),
    (2, 1, 7, 7, 1, 5),
]


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("legacy_grad", [False, True], ids=["full", "legacy"])
def test_matches_reference_float64(shape, legacy_grad, device):
    inputs = make_inputs(*shape, device=device, seed=sum(shape))
    assert_matches_reference(inputs, legacy_grad)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("c", [1, 3])
def test_matches_reference_float32(c, device):
    inputs = make_inputs(4, c, 32, 32, 24, 28, dtype=torch.float32, device=device, seed=c)
    assert_matches_reference(inputs, rtol=1e-4, atol=1e-4)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
def test_mask_zero_and_one_gradients(device):
    canvas, fg, mask, grid = make_inputs(2, 3, 8, 8, device=device)
    mask = torch.where(mask > 0.5, 1.0, 0.0).to(mask)  # exactly 0 or 1
    assert_matches_reference([canvas, fg, mask, grid])
    assert_matches_reference([canvas, fg, torch.zeros_like(mask), grid])


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
def test_all_outside_passes_canvas_through(device):
    canvas, fg, mask, grid = make_inputs(2, 3, 6, 6, device=device, borders=False)
    grid = grid.sign() * 1.5 + grid * 0.1  # every point well outside [-1, 1]
    grad_out = torch.randn_like(canvas)
    out, (g_canvas, g_fg, g_mask, g_grid) = grads(stnm_ext, [canvas, fg, mask, grid], grad_out)
    torch.testing.assert_close(out, canvas)
    torch.testing.assert_close(g_canvas, grad_out)
    for g in (g_fg, g_mask, g_grid):
        assert not g.any()


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device):
    canvas, fg, mask, grid = make_inputs(2, 3, 10, 12, 14, 9, device=device)
    canvas_nc = canvas.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # NHWC storage
    fg_nc = torch.cat([fg, fg], dim=3)[..., ::2]  # strided columns
    mask_nc = mask.transpose(2, 3).contiguous().transpose(2, 3)
    grid_nc = grid.transpose(1, 2).contiguous().transpose(1, 2)
    inputs = [canvas_nc, fg_nc, mask_nc, grid_nc]
    assert not any(t.is_contiguous() for t in inputs)
    assert_matches_reference(inputs)


@needs_ext
@pytest.mark.parametrize("c", [1, 2, 3])
def test_generic_cpu_code_path(c, monkeypatch):
    """The kernels' non-AVX2 build (forced by LRGAN_CPU_GENERIC=1) agrees too."""
    monkeypatch.setenv("LRGAN_CPU_GENERIC", "1")
    assert_matches_reference(make_inputs(2, c, 9, 7, 5, 8, seed=c))
    assert_matches_reference(make_inputs(2, c, 9, 7, 5, 8, seed=c), legacy_grad=True)


@needs_ext
def test_empty_batch():
    canvas, fg, mask, grid = (t[:0] for t in make_inputs(2, 3, 4, 4))
    assert stnm_ext(canvas, fg, mask, grid).shape == (0, 3, 4, 4)


# ---------------------------------------------------------------------------------------
# gradcheck (float64), opcheck, autocast, torch.compile.


@needs_ext
def test_gradcheck_full():
    inputs = [t.requires_grad_() for t in make_inputs(2, 2, 5, 6, 4, 5, borders=False)]
    assert torch.autograd.gradcheck(stnm_ext, inputs, eps=1e-6, atol=1e-6)


@needs_ext
def test_gradcheck_legacy():
    """legacy_grad is exact for canvas, fg and mask; its grid gradient is the reference's
    with the mask sampled at grid.detach()."""
    canvas, fg, mask, grid = make_inputs(2, 2, 5, 6, 4, 5, borders=False, seed=1)
    def fn(c, f, m):
        return stnm_ext(c, f, m, grid, legacy_grad=True)

    inputs = [t.requires_grad_() for t in (canvas, fg, mask)]
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)
    assert_matches_reference([canvas, fg, mask, grid], legacy_grad=True)
    # ... which differs from the true gradient wherever the mask varies.
    grad_out = torch.randn_like(canvas)
    _, g_legacy = grads(stnm_ext, [canvas, fg, mask, grid], grad_out, legacy_grad=True)
    _, g_full = grads(stnm_ext, [canvas, fg, mask, grid], grad_out)
    assert not torch.allclose(g_legacy[3], g_full[3])
    torch.testing.assert_close(g_legacy[:3], g_full[:3])


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("legacy_grad", [False, True], ids=["full", "legacy"])
def test_opcheck(legacy_grad, device):
    inputs = make_inputs(2, 3, 6, 5, 4, 7, dtype=torch.float32, device=device)
    op = torch.ops.lrgan.stnm.default
    torch.library.opcheck(op, (*inputs, legacy_grad))
    torch.library.opcheck(op, (*[t.requires_grad_() for t in inputs], legacy_grad))
    grad_out = torch.randn_like(inputs[0])
    backward = torch.ops.lrgan.stnm_backward.default
    torch.library.opcheck(backward, (grad_out, *[t.detach() for t in inputs], legacy_grad))


@needs_ext
def test_double_backward_is_refused():
    inputs = [t.requires_grad_() for t in make_inputs(1, 1, 4, 4)]
    (g_canvas,) = torch.autograd.grad(stnm_ext(*inputs).sum(), inputs[0], create_graph=True)
    with pytest.raises(NotImplementedError, match="no double backward"):
        torch.autograd.grad(g_canvas.sum(), inputs[1:])


@needs_ext
def test_autocast_runs_in_float32():
    inputs = [t.bfloat16() for t in make_inputs(1, 3, 4, 4)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = stnm_ext(*inputs)
    assert out.dtype == torch.float32


@needs_ext
def test_torch_compile_traces_the_op():
    inputs = make_inputs(2, 3, 8, 8, 6, 6, dtype=torch.float32)

    def loss(canvas, fg, mask, grid):
        return stnm_ext(torch.tanh(canvas), fg, mask.sigmoid(), grid).square().sum()

    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True, dynamic=False)
    eager_in = [t.clone().requires_grad_() for t in inputs]
    compiled_in = [t.clone().requires_grad_() for t in inputs]
    expected = loss(*eager_in)
    actual = compiled(*compiled_in)
    torch.testing.assert_close(actual, expected)
    expected.backward()
    actual.backward()
    for a, e in zip(compiled_in, eager_in):
        torch.testing.assert_close(a.grad, e.grad)


@needs_ext
@pytest.mark.slow
def test_torch_compile_inductor():
    inputs = make_inputs(2, 3, 8, 8, dtype=torch.float32)
    compiled = torch.compile(lambda *t: stnm_ext(*t) * 2, fullgraph=True)
    torch.testing.assert_close(compiled(*inputs), stnm_ext(*inputs) * 2)


# ---------------------------------------------------------------------------------------
# Bad input: clear TORCH_CHECK messages.

BAD_SHAPES = [
    ("canvas", (2, 3, 8), "canvas must be 4-D"),
    ("fg", (2, 1, 6, 6), "fg must be \\[B, C, Hf, Wf\\] with B and C of canvas"),
    ("mask", (2, 3, 6, 6), "mask must be \\[B, 1, Hf, Wf\\] = \\[2, 1, 6, 6\\]"),
    ("mask", (2, 1, 5, 6), "mask must be \\[B, 1, Hf, Wf\\]"),
    ("grid", (2, 8, 7, 2), "grid must be \\[B, H, W, 2\\] = \\[2, 8, 8, 2\\]"),
    ("grid", (1, 8, 8, 2), "grid must be \\[B, H, W, 2\\]"),
    ("grid", (2, 8, 8, 3), "grid must be \\[B, H, W, 2\\]"),
]


@needs_ext
@pytest.mark.parametrize(("name", "shape", "message"), BAD_SHAPES)
def test_wrong_shapes_raise(name, shape, message):
    inputs = dict(zip(("canvas", "fg", "mask", "grid"), make_inputs(2, 3, 8, 8, 6, 6)))
    inputs[name] = torch.zeros(shape, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=f"lrgan::stnm: {message}"):
        stnm_ext(*inputs.values())
    with pytest.raises(ValueError, match=f"stnm: {message}"):
        stnm_reference(*inputs.values())


@needs_ext
def test_wrong_dtypes_raise():
    canvas, fg, mask, grid = make_inputs(1, 3, 4, 4)
    with pytest.raises(RuntimeError, match="fg has dtype Float but canvas has Double"):
        stnm_ext(canvas, fg.float(), mask, grid)
    with pytest.raises(RuntimeError, match="must be float32 or float64, got Int"):
        stnm_ext(*(t.int() for t in (canvas, fg, mask, grid)))
    with pytest.raises(RuntimeError, match="must be float32 or float64, got Half"):
        stnm_ext(*(t.half() for t in (canvas, fg, mask, grid)))


@needs_ext
def test_wrong_devices_raise():
    canvas, fg, mask, grid = make_inputs(1, 3, 4, 4)
    with pytest.raises(RuntimeError, match="all inputs must be on one device"):
        stnm_ext(canvas, fg, mask, grid.to("meta"))
    if HAS_CUDA:
        with pytest.raises(RuntimeError, match="mask is on cpu but canvas is on cuda:0"):
            stnm_ext(canvas.cuda(), fg.cuda(), mask, grid.cuda())


# ---------------------------------------------------------------------------------------
# The CUDA source compiles (slow: ~2 minutes of nvcc; needs a CUDA toolkit, not a GPU).


@pytest.mark.slow
@pytest.mark.skipif(
    not os.path.exists(os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc")),
    reason="no nvcc",
)
def test_cuda_extension_compiles(tmp_path):
    env = {
        **os.environ,
        "FORCE_CUDA": "1",
        "CUDA_HOME": os.environ.get("CUDA_HOME", "/usr/local/cuda"),
        "TORCH_CUDA_ARCH_LIST": os.environ.get("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX"),
    }
    cmd = [sys.executable, "setup.py", "-q", "build_ext", "-b", str(tmp_path / "lib"),
           "-t", str(tmp_path / "tmp")]
    result = subprocess.run(cmd, cwd=PACKAGE, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert list((tmp_path / "lib" / "lrgan").glob("_C*.so"))
    assert list((tmp_path / "tmp").rglob("stnm_cuda.o"))
