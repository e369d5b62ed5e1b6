"""Benchmark the STNM op: the compiled extension against the pure-PyTorch reference.

For each image size and channel count, times the forward (no grad) and the forward +
backward (``torch.autograd.grad`` w.r.t. all four inputs) of

- ``ext``: ``lrgan::stnm`` from ``lrgan._C``;
- ``ref``: ``stnm_reference`` (two ``F.grid_sample`` calls and the blend);
- ``ref+compile``: ``torch.compile(stnm_reference)`` (inductor; skip with ``--no-compile``).

The grids are LR-GAN-like affine grids (scale in [s, 2s] with s = 1.2, small rotation,
translation in [-1, 1]), so part of every canvas lies outside the foreground. The
implementations are timed round-robin, so machine load hits all of them alike; the table
gives the minimum over the rounds (``--stat median`` for the median) and the speed-up
over ``ref``. On CUDA it adds the achieved bandwidth: the least bytes each pass must move,
divided by its time, and that as a fraction of ``--peak-gbs``.

Examples::

    uv run python packages/lrgan/bench/stnm.py                          # CPU, all threads
    uv run python packages/lrgan/bench/stnm.py --threads 1 --clock thread
    python packages/lrgan/bench/stnm.py --device cuda --peak-gbs 3350   # H100 SXM
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from lrgan.ops import affine_grid_yx, extension_status, select_stnm, stnm_reference

Inputs = list[torch.Tensor]


def lrgan_inputs(
    batch: int, channels: int, size: int, device: torch.device, seed: int
) -> Inputs:
    """canvas, fg [B, C, S, S], mask [B, 1, S, S], grid [B, S, S, 2] like LR-GAN's."""
    gen = torch.Generator().manual_seed(seed)

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=gen)

    scale, rot = 1.2, 0.3
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = uniform(scale, 2 * scale, batch)
    theta[:, 1, 1] = uniform(scale, 2 * scale, batch)
    theta[:, 0, 1] = uniform(-rot, rot, batch)
    theta[:, 1, 0] = uniform(-rot, rot, batch)
    theta[:, :, 2] = uniform(-1, 1, batch, 2)
    canvas = uniform(-1, 1, batch, channels, size, size)
    fg = uniform(-1, 1, batch, channels, size, size)
    mask = torch.rand(batch, 1, size, size, generator=gen)
    grid = affine_grid_yx(theta, size, size)
    return [t.to(device) for t in (canvas, fg, mask, grid)]


def make_step(fn: Callable, inputs: Inputs, backward: bool) -> Callable[[], None]:
    """One forward, or one forward + backward w.r.t. all four inputs."""
    if not backward:
        detached = [t.detach() for t in inputs]

        def forward() -> None:
            with torch.no_grad():
                fn(*detached)

        return forward
    leaves = [t.detach().requires_grad_() for t in inputs]
    grad_out = torch.randn_like(inputs[0])

    def forward_backward() -> None:
        torch.autograd.grad(fn(*leaves), leaves, grad_out)

    return forward_backward


def time_round_robin(
    steps: dict[str, Callable[[], None]], rounds: int, clock: Callable[[], float], sync: Callable
) -> dict[str, list[float]]:
    """Seconds per call of each step, interleaved over ``rounds`` rounds after 3 warm-ups."""
    for step in steps.values():
        for _ in range(3):
            step()
    sync()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = clock()
            step()
            sync()
            times[name].append(clock() - start)
    return times


def min_bytes(batch: int, channels: int, size: int, element: int, backward: bool) -> int:
    """Bytes a pass must at least move: every input read once, every output written once."""
    image, plane, grid = batch * channels * size**2, batch * size**2, batch * size**2 * 2
    forward = 2 * image + grid + image + plane  # canvas, out; grid; fg, mask
    if not backward:
        return element * forward
    # backward: grad_out, canvas, grid, fg, mask in; grad_canvas, grad_grid, grad_fg, grad_mask out
    return element * (forward + 2 * image + 2 * grid + 2 * (image + plane))


def run(args: argparse.Namespace) -> tuple[list[dict], dict[tuple[int, int], float]]:
    """Time every (size, C, impl, pass); also returns torch.compile's first-call seconds."""
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    impls: dict[str, Callable] = {"ext": select_stnm("ext", device), "ref": stnm_reference}
    compile_seconds: dict[tuple[int, int], float] = {}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    stat = min if args.stat == "min" else statistics.median
    rows = []
    for size in args.sizes:
        for channels in args.channels:
            inputs = lrgan_inputs(args.batch, channels, size, device, args.seed)
            fns = dict(impls)
            if args.compile:
                torch._dynamo.reset()
                fns["ref+compile"] = torch.compile(stnm_reference, dynamic=False)
                start = time.perf_counter()
                make_step(fns["ref+compile"], inputs, True)()
                compile_seconds[(size, channels)] = time.perf_counter() - start
            for backward in (False, True):
                steps = {name: make_step(fn, inputs, backward) for name, fn in fns.items()}
                times = time_round_robin(steps, args.rounds, clock, sync)
                for name, ts in times.items():
                    rows.append({
                        "size": size, "C": channels, "impl": name, "backward": backward,
                        "ms": stat(ts) * 1e3,
                        "bytes": min_bytes(args.batch, channels, size, 4, backward),
                    })
    return rows, compile_seconds


def table(rows: list[dict], device: str, peak_gbs: float | None) -> str:
    """A markdown table: one line per (size, C, impl)."""
    cuda = device.startswith("cuda")
    head = "| size | C | impl | fwd ms | fwd+bwd ms | fwd speed-up | fwd+bwd speed-up |"
    rule = "|---:|---:|---|---:|---:|---:|---:|"
    if cuda:
        head += " fwd GB/s | fwd+bwd GB/s |"
        rule += "---:|---:|"
    lines = [head, rule]
    by_key = {(r["size"], r["C"], r["impl"], r["backward"]): r for r in rows}
    for size, channels, impl in dict.fromkeys((r["size"], r["C"], r["impl"]) for r in rows):
        fwd, fb = (by_key[(size, channels, impl, b)] for b in (False, True))
        ref_fwd, ref_fb = (by_key[(size, channels, "ref", b)]["ms"] for b in (False, True))
        line = (
            f"| {size} | {channels} | {impl} | {fwd['ms']:.3f} | {fb['ms']:.3f} "
            f"| {ref_fwd / fwd['ms']:.2f}x | {ref_fb / fb['ms']:.2f}x |"
        )
        if cuda:
            cells = []
            for r in (fwd, fb):
                gbs = r["bytes"] / (r["ms"] * 1e-3) / 1e9
                cells.append(f"{gbs:.0f}" + (f" ({gbs / peak_gbs:.0%})" if peak_gbs else ""))
            line += f" {cells[0]} | {cells[1]} |"
        lines.append(line)
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--rounds", type=int, default=30, help="timed calls per impl")
    parser.add_argument("--stat", default="min", choices=["min", "median"])
    parser.add_argument(
        "--clock", default="wall", choices=["wall", "thread"],
        help="wall: perf_counter; thread: CPU time of this thread (only with --threads 1)",
    )
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--peak-gbs", type=float, default=None, help="GPU memory peak, GB/s")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.clock == "thread" and (args.threads != 1 or args.device != "cpu"):
        parser.error("--clock thread needs --threads 1 and --device cpu")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    status = extension_status()
    if not status.loaded:
        raise SystemExit(f"lrgan._C is not loaded: {status.reason}")
    rows, compile_seconds = run(args)
    if args.device == "cuda":
        machine = torch.cuda.get_device_name()
    else:
        machine = f"{platform.machine()}, {os.cpu_count()} cores"
    print(
        f"# {datetime.date.today()} torch {torch.__version__} device={args.device} ({machine}) "
        f"threads={torch.get_num_threads()} batch={args.batch} clock={args.clock} "
        f"stat={args.stat} rounds={args.rounds}"
    )
    print(table(rows, args.device, args.peak_gbs))
    for (size, channels), seconds in compile_seconds.items():
        print(f"# torch.compile(ref) first fwd+bwd call, {size} px C={channels}: {seconds:.1f} s")


if __name__ == "__main__":
    main()
