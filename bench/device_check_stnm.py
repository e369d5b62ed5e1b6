"""Sections 1 and 2 of ``bench/device_check.py``: the STNM op's correctness and speed.

Both take the device, whether this is a ``--dry-run`` (CPU, tiny sizes) and a ``left()``
callable giving the seconds left in the section's budget; both return a result dict with
``checks``/``rows``, ``md`` (Markdown lines) and ``notes``. The workload generator, the
per-pass byte count and the fwd / fwd+bwd steps come from ``packages/lrgan/bench/stnm.py``
(the CPU benchmark), so the GPU figures are measured on the same inputs.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

from lrgan.ops import extension_status, select_stnm, stnm_ext, stnm_reference
from lrgan.ops.extension import cuda_kernels_hint

__all__ = ["HBM_PEAK_GBS", "stnm_correctness", "stnm_speed"]

ROOT = Path(__file__).resolve().parents[1]
HBM_PEAK_GBS = 4800.0  # H200 SXM: 4.8 TB/s HBM3e (vendor datasheet)
NAMES = ("canvas", "fg", "mask", "grid")

Inputs = list[torch.Tensor]


def load_stnm_bench() -> ModuleType:
    """``packages/lrgan/bench/stnm.py`` (inputs, steps, byte counts), imported by path."""
    path = ROOT / "packages" / "lrgan" / "bench" / "stnm.py"
    spec = importlib.util.spec_from_file_location("lrgan_bench_stnm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------
# Section 1: correctness.


def lrgan_like_inputs(batch: int, channels: int, size: int, seed: int) -> Inputs:
    """LR-GAN-like affine grids (part of each canvas outside fg) plus border taps:
    entries exactly at -1, 0, +1 and some far outside. CPU, float64."""
    canvas, fg, mask, grid = load_stnm_bench().lrgan_inputs(
        batch, channels, size, torch.device("cpu"), seed
    )
    grid = grid.clone()
    flat = grid.view(-1, 2)
    flat[::7, 1] = -1.0
    flat[::11] = torch.tensor([-1.0, 1.0])
    flat[::13, 0] = 0.0
    flat[3::17] = torch.tensor([4.0, -7.5])
    return [t.double() for t in (canvas, fg, mask, grid)]


def small_inputs(seed: int) -> Inputs:
    """Tiny float64 inputs for gradcheck (fg smaller than the canvas, no exact borders)."""
    gen = torch.Generator().manual_seed(seed)
    canvas = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64)
    fg = torch.randn(2, 2, 4, 5, generator=gen, dtype=torch.float64)
    mask = torch.rand(2, 1, 4, 5, generator=gen, dtype=torch.float64)
    grid = (torch.rand(2, 5, 6, 2, generator=gen, dtype=torch.float64) * 2 - 1) * 1.3
    return [canvas, fg, mask, grid]


def out_and_grads(fn: Callable, inputs: Inputs, grad_out: torch.Tensor, legacy: bool):
    """``fn``'s output and its gradients w.r.t. all four inputs (for ``grad_out``)."""
    leaves = [t.detach().requires_grad_() for t in inputs]
    out = fn(*leaves, legacy_grad=legacy)
    return [out.detach(), *torch.autograd.grad(out, leaves, grad_out)]


def compare(name_a: str, a: list, name_b: str, b: list, rtol: float, atol: float) -> str:
    """Max abs difference per tensor; raises AssertionError beyond the tolerance."""
    parts = []
    for label, x, y in zip(("out", *NAMES), a, b):
        x, y = x.cpu(), y.cpu()
        parts.append(f"{label} {(x - y).abs().max().item():.1e}")
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol,
                                   msg=lambda m, n=label: f"{name_a} vs {name_b}, {n}: {m}")
    return f"{name_a} vs {name_b}: max |diff| " + ", ".join(parts)


OPCHECK_ALL = ("test_schema", "test_autograd_registration", "test_faketensor",
               "test_aot_dispatch_dynamic")


def _opcheck(device: torch.device, tests: tuple[str, ...] = OPCHECK_ALL,
             modes: tuple[bool, ...] = (False, True)) -> str:
    base = [t.float().to(device) for t in small_inputs(3)]
    for legacy in modes:
        torch.library.opcheck(torch.ops.lrgan.stnm.default, (*base, legacy), test_utils=tests)
        leaves = [t.clone().requires_grad_() for t in base]
        torch.library.opcheck(torch.ops.lrgan.stnm.default, (*leaves, legacy), test_utils=tests)
        grad_out = torch.randn_like(base[0])
        torch.library.opcheck(torch.ops.lrgan.stnm_backward.default, (grad_out, *base, legacy),
                              test_utils=tests)
    names = ", ".join(t.removeprefix("test_") for t in tests)
    return f"{names}: {'both gradient modes' if len(modes) == 2 else 'full gradient'}"


def _gradcheck_full(device: torch.device) -> str:
    inputs = [t.to(device).requires_grad_() for t in small_inputs(0)]
    assert torch.autograd.gradcheck(stnm_ext, inputs, eps=1e-6, atol=1e-6)
    return "float64, canvas, fg, mask and grid"


def _gradcheck_legacy(device: torch.device) -> str:
    canvas, fg, mask, grid = (t.to(device) for t in small_inputs(1))

    def fn(c, f, m):
        return stnm_ext(c, f, m, grid, legacy_grad=True)

    leaves = [t.clone().requires_grad_() for t in (canvas, fg, mask)]
    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6)
    grad_out = torch.randn_like(canvas)
    inputs = [canvas, fg, mask, grid]
    ext = out_and_grads(stnm_ext, inputs, grad_out, True)
    ref = out_and_grads(stnm_reference, inputs, grad_out, True)
    compare("ext", ext, "ref", ref, 1e-7, 1e-9)
    return "float64 gradcheck of canvas, fg, mask; the grid gradient equals the reference's"


def _agreement(device: torch.device, dtype: torch.dtype, legacy: bool, size: tuple) -> str:
    """ext on ``device`` vs the reference on ``device`` vs ext on the CPU."""
    inputs = lrgan_like_inputs(*size, seed=7)
    grad_out = torch.randn_like(inputs[0])
    on_dev = [t.to(device, dtype) for t in inputs]
    g_dev = grad_out.to(device, dtype)
    ext = out_and_grads(stnm_ext, on_dev, g_dev, legacy)
    ref = out_and_grads(stnm_reference, on_dev, g_dev, legacy)
    tol = (1e-4, 1e-4) if dtype == torch.float32 else (1e-9, 1e-10)
    lines = [compare(f"ext/{device.type}", ext, f"ref/{device.type}", ref, *tol)]
    if device.type != "cpu":
        cpu = out_and_grads(stnm_ext, [t.to("cpu", dtype) for t in inputs],
                            grad_out.to(dtype), legacy)
        lines.append(compare(f"ext/{device.type}", ext, "ext/cpu", cpu, *tol))
    return "; ".join(lines)


def _low_precision(device: torch.device) -> str:
    """bf16/fp16 inputs are refused by the op and run in float32 under autocast."""
    inputs = [t.float().to(device) for t in lrgan_like_inputs(2, 3, 8, seed=2)]
    expected = stnm_ext(*inputs)
    seen = []
    for dtype in (torch.bfloat16, torch.float16):
        low = [t.to(dtype) for t in inputs]
        try:
            stnm_ext(*low)
        except RuntimeError as err:
            assert "float32 or float64" in str(err), str(err)
        else:
            raise AssertionError(f"{dtype} inputs were not refused")
        with torch.autocast(device.type, dtype=dtype):
            out = stnm_ext(*low)
        assert out.dtype == torch.float32, out.dtype
        err = (out - expected).abs().max().item()
        assert err < 5e-2, f"{dtype} under autocast: max |diff| {err}"
        seen.append(f"{str(dtype).removeprefix('torch.')}: refused; autocast -> float32 "
                    f"(max |diff| {err:.1e})")
    return "; ".join(seen)


def _deterministic(device: torch.device) -> str:
    """CUDA backward (atomicAdd) refuses deterministic mode; the CPU one is deterministic."""
    inputs = [t.float().to(device).requires_grad_() for t in lrgan_like_inputs(2, 3, 8, seed=4)]
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        if device.type == "cuda":
            try:
                stnm_ext(*inputs).sum().backward()
            except RuntimeError:
                return "CUDA backward raises under use_deterministic_algorithms(True)"
            raise AssertionError("CUDA backward ran under use_deterministic_algorithms(True)")
        first = torch.autograd.grad(stnm_ext(*inputs).sum(), inputs)
        second = torch.autograd.grad(stnm_ext(*inputs).sum(), inputs)
        assert all(torch.equal(a, b) for a, b in zip(first, second))
        return "CPU backward runs and is bitwise repeatable"
    finally:
        torch.use_deterministic_algorithms(before)


def _compiled(device: torch.device, backend: str) -> str:
    inputs = [t.float().to(device) for t in lrgan_like_inputs(2, 3, 16, seed=5)]

    def loss(canvas, fg, mask, grid):
        return stnm_ext(torch.tanh(canvas), fg, mask.sigmoid(), grid).square().sum()

    torch._dynamo.reset()
    compiled = torch.compile(loss, backend=backend, fullgraph=True, dynamic=False)
    eager_in = [t.clone().requires_grad_() for t in inputs]
    comp_in = [t.clone().requires_grad_() for t in inputs]
    expected, actual = loss(*eager_in), compiled(*comp_in)
    expected.backward()
    actual.backward()
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)
    for a, e in zip(comp_in, eager_in):
        torch.testing.assert_close(a.grad, e.grad, rtol=1e-4, atol=1e-4)
    return f"torch.compile(fullgraph=True, backend={backend}) of a loss through the op = eager"


def _pytest_cuda(left: Callable[[], float]) -> str:
    """The CUDA-parametrised tests of test_stnm.py, in a subprocess."""
    test = ROOT / "packages" / "lrgan" / "tests" / "test_stnm.py"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda",
           str(test)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          timeout=max(5.0, left() - 2))
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["(no output)"]
    assert proc.returncode == 0, "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
    return tail[0]


def stnm_correctness(device: torch.device, dry_run: bool, left: Callable[[], float]) -> dict:
    """Section 1. Every check is one row: name, ok, detail (or the error)."""
    status = extension_status()
    if not status.loaded:
        raise RuntimeError(f"lrgan._C is not loaded: {status.reason}")
    if device.type == "cuda" and not status.with_cuda:
        raise RuntimeError(cuda_kernels_hint())
    size = (2, 3, 8) if dry_run else (8, 3, 48)
    compile_backend = "aot_eager" if dry_run else "inductor"
    checks: list[tuple[str, Callable[[], str], float]] = [
        (f"opcheck on {device.type}",
         lambda: _opcheck(device, *((OPCHECK_ALL[:3], (False,)) if dry_run else ())), 0),
        (f"gradcheck full on {device.type}", lambda: _gradcheck_full(device), 0),
        (f"gradcheck legacy on {device.type}", lambda: _gradcheck_legacy(device), 0),
    ]
    for dtype in (torch.float32, torch.float64):
        for legacy in (False, True):
            name = f"ext = ref{' = cpu' if device.type != 'cpu' else ''}, " \
                   f"{str(dtype).removeprefix('torch.')}, {'legacy' if legacy else 'full'}"
            checks.append((name, lambda d=dtype, g=legacy: _agreement(device, d, g, size), 0))
    checks += [
        ("bf16/fp16 inputs", lambda: _low_precision(device), 0),
        ("deterministic mode", lambda: _deterministic(device), 0),
        (f"torch.compile ({compile_backend})", lambda: _compiled(device, compile_backend), 30),
    ]
    notes = []
    if dry_run:
        notes.append("dry-run: every check ran on the CPU; skipped: the CUDA-only "
                     "comparison ext/cuda vs ext/cpu, the CUDA pytest run, and opcheck's "
                     "aot_dispatch_dynamic test and legacy mode (slow on a CPU); "
                     "torch.compile used backend aot_eager instead of inductor")
    else:
        checks.append(("pytest -k cuda test_stnm.py", lambda: _pytest_cuda(left), 15))
    rows = [_run_check(name, fn, need, left) for name, fn, need in checks]
    md = ["| check | result | detail |", "|---|---|---|"]
    md += [f"| {r['name']} | {r['result']} | {r['detail']} |" for r in rows]
    failed = [r["name"] for r in rows if r["result"] == "FAIL"]
    skipped = [r["name"] for r in rows if r["result"] == "skipped"]
    state = "failed" if failed else ("partial" if skipped else "ok")
    return {"status": state, "checks": rows, "md": md, "notes": notes, "failed": failed}


def _run_check(name: str, fn: Callable[[], str], need_s: float, left) -> dict:
    if left() < max(need_s, 1.0):
        return {"name": name, "result": "skipped", "detail": "section budget spent"}
    start = time.perf_counter()
    try:
        detail, result = fn(), "ok"
    except Exception as err:  # a failed check is a result, not the end of the section
        detail, result = f"{type(err).__name__}: {err}".replace("\n", " ")[:600], "FAIL"
    return {"name": name, "result": result, "detail": detail,
            "seconds": round(time.perf_counter() - start, 2)}


# ---------------------------------------------------------------------------------------
# Section 2: speed.


def _timer(device: torch.device, step: Callable[[], None], calls: int, rounds: int) -> float:
    """Milliseconds per call: the best of ``rounds`` rounds of ``calls`` calls each."""
    for _ in range(3):
        step()
    best = float("inf")
    for _ in range(rounds):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls):
                step()
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) / calls)
        else:
            t0 = time.perf_counter()
            for _ in range(calls):
                step()
            best = min(best, (time.perf_counter() - t0) * 1e3 / calls)
    return best


def speed_configs(dry_run: bool) -> list[tuple[int, int, int]]:
    """(batch, C, size) of the issue: batch 64 and 256, C = 1 and 3, 64 and 128 px."""
    if dry_run:
        return [(2, 1, 8), (4, 3, 16)]
    return [(b, c, s) for b in (64, 256) for c in (1, 3) for s in (64, 128)]


def stnm_speed(device: torch.device, dry_run: bool, left: Callable[[], float],
               copy_gbs: float | None = None) -> dict:
    """Section 2: fwd and fwd+bwd of ext, ref and torch.compile(ref); GB/s on CUDA."""
    bench = load_stnm_bench()
    ext = select_stnm("ext", device)
    calls, rounds = (2, 2) if dry_run else (10, 5)
    backend = "aot_eager" if dry_run else "inductor"
    compiled = torch.compile(stnm_reference, dynamic=True, backend=backend)
    rows, skipped, notes = [], [], []
    configs = speed_configs(dry_run)
    fns = {"ext": ext, "ref": stnm_reference, "ref+compile": compiled}
    for impls in (("ext", "ref"), ("ref+compile",)):  # compiled rows last: they cost most
        try:
            for batch, channels, size in configs:
                if left() < (20 if impls == ("ref+compile",) and not dry_run else 2):
                    skipped.append(f"{'/'.join(impls)} at batch {batch}, C {channels}, "
                                   f"{size} px")
                    continue
                inputs = bench.lrgan_inputs(batch, channels, size, device, 0)
                for impl in impls:
                    for backward in (False, True):
                        step = bench.make_step(fns[impl], inputs, backward)
                        ms = _timer(device, step, calls, rounds)
                        nbytes = bench.min_bytes(batch, channels, size, 4, backward)
                        rows.append({"batch": batch, "C": channels, "size": size,
                                     "impl": impl, "backward": backward, "ms": ms,
                                     "gbs": nbytes / (ms * 1e-3) / 1e9})
                del inputs
        except Exception as err:  # keep the rows measured so far (a budget alarm too)
            notes.append(f"{'/'.join(impls)} stopped: {type(err).__name__}: {err}"[:500])
            skipped.append(f"the rest of {'/'.join(impls)}")
    md, verdicts = speed_table(rows, device.type == "cuda", copy_gbs)
    if skipped:
        notes.append(f"skipped (budget or error): {', '.join(skipped)}")
    notes.append("ms = best of 5 rounds of 10 calls (CUDA events)" if not dry_run
                 else "dry-run: CPU, tiny sizes, torch.compile backend aot_eager")
    return {"status": "partial" if skipped else "ok", "rows": rows, "md": md,
            "notes": notes, "verdicts": verdicts}


def speed_table(rows: list[dict], cuda: bool, copy_gbs: float | None) -> tuple[list[str], dict]:
    """Markdown table, one line per (batch, C, size, impl), and the >= 2x verdicts."""
    by = {(r["batch"], r["C"], r["size"], r["impl"], r["backward"]): r for r in rows}
    head = "| batch | C | size | impl | fwd ms | fwd+bwd ms | fwd+bwd vs ref |"
    rule = "|---:|---:|---:|---|---:|---:|---:|"
    if cuda:
        head += f" fwd GB/s | fwd+bwd GB/s | fwd+bwd % of {HBM_PEAK_GBS:.0f} GB/s |"
        rule += "---:|---:|---:|"
        if copy_gbs:
            head += " % of measured copy |"
            rule += "---:|"
    md, verdicts = [head, rule], {}
    for key in dict.fromkeys(k[:4] for k in by):
        fwd, fb = by.get((*key, False)), by.get((*key, True))
        if fwd is None or fb is None:
            continue
        ref = by.get((*key[:3], "ref", True))
        speedup = ref["ms"] / fb["ms"] if ref else float("nan")
        if key[3] == "ext":
            verdicts["x".join(map(str, key[:3]))] = round(speedup, 2)
        line = (f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {fwd['ms']:.3f} "
                f"| {fb['ms']:.3f} | {speedup:.2f}x |")
        if cuda:
            line += f" {fwd['gbs']:.0f} | {fb['gbs']:.0f} | {fb['gbs'] / HBM_PEAK_GBS:.0%} |"
            if copy_gbs:
                line += f" {fb['gbs'] / copy_gbs:.0%} |"
        md.append(line)
    if verdicts:
        low = min(verdicts.values())
        md.append("")
        md.append(f"ext fwd+bwd speed-up over the reference: {low:.2f}x to "
                  f"{max(verdicts.values()):.2f}x (target >= 2x: "
                  f"{'met' if low >= 2 else 'NOT met'} everywhere)")
    return md, verdicts
