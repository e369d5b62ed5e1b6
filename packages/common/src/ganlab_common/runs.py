"""Run directories, seeding, device choice, progress and the metrics log.

A run lives in ``<outdir>/<NNNNN>-<name>/``::

    config.json       every flag of the run
    stats.jsonl       one JSON object per logged step (pandas.read_json(..., lines=True))
    *.png             sample grids; loss_curves.png when matplotlib is installed
    checkpoints/      <prefix>-<step>.pt, see ganlab_common.checkpoint
    tensorboard/      scalars, only when the tensorboard package is installed

Only the main process (rank 0) writes; other ranks get a Run whose writes are no-ops.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import CheckpointManager
from .errors import UserError
from .images import save_grid

__all__ = [
    "Run",
    "amp_option",
    "device_option",
    "find_run_dir",
    "new_run_dir",
    "resolve_device",
    "seed_everything",
]

_RUN_DIR = re.compile(r"^(\d{5})-(.+)$")


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's (all devices) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(
            f"--device: '{name}' is not a device (expected auto, cpu or cuda)"
        ) from None


def device_option(default: str = "auto") -> Callable:
    """The shared ``--device auto|cpu|cuda`` click option."""
    return click.option(
        "--device",
        type=click.Choice(["auto", "cpu", "cuda"]),
        default=default,
        show_default=True,
        help="Where to run; replaces the original --cuda/--gpu/--ngpu flags.",
    )


def amp_option() -> Callable:
    """The shared ``--amp`` flag: bf16 autocast on CUDA (ignored on CPU)."""
    return click.option(
        "--amp/--no-amp",
        default=False,
        show_default=True,
        help="Mixed precision (bf16 autocast) on CUDA; has no effect on CPU.",
    )


def _runs(outdir: Path) -> list[tuple[int, str, Path]]:
    if not outdir.is_dir():
        return []
    found = []
    for p in outdir.iterdir():
        m = _RUN_DIR.match(p.name)
        if m and p.is_dir():
            found.append((int(m[1]), m[2], p))
    return sorted(found)


def new_run_dir(outdir: str | os.PathLike, name: str) -> Path:
    """Create ``<outdir>/<NNNNN>-<name>`` with the next free number."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    number = max((n for n, _, _ in _runs(outdir)), default=-1) + 1
    while True:
        path = outdir / f"{number:05d}-{name}"
        try:
            path.mkdir()
            return path
        except FileExistsError:  # another process took it
            number += 1


def find_run_dir(outdir: str | os.PathLike, name: str | None = None) -> Path | None:
    """The newest ``<NNNNN>-<name>`` run in ``outdir`` (any name when ``name`` is None)."""
    matches = [p for _, n, p in _runs(Path(outdir)) if name is None or n == name]
    return matches[-1] if matches else None


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path | torch.device):
        return str(value)
    if isinstance(value, torch.Tensor | np.generic):
        return value.item()
    return value


def _is_main_process() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class Run:
    """One training run's folder and its writers (no-ops on non-main ranks)."""

    def __init__(self, directory: str | os.PathLike, is_main: bool = True, ckpt_keep: int = 3):
        self.dir = Path(directory)
        self.is_main = is_main
        self.checkpoints = CheckpointManager(
            self.dir / "checkpoints", keep=ckpt_keep, readonly=not is_main
        )
        self._tb = None
        self._t0 = time.time()

    @classmethod
    def start(
        cls,
        outdir: str | os.PathLike,
        name: str,
        config: Any,
        resume: bool = False,
        ckpt_keep: int = 3,
    ) -> Run:
        """Open the run: the newest ``<name>`` run when ``resume`` finds one, else a new one.

        Under ``torch.distributed`` rank 0 picks the folder and broadcasts it.
        """
        is_main = _is_main_process()
        path = None
        if is_main:
            path = find_run_dir(outdir, name) if resume else None
            path = path or new_run_dir(outdir, name)
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            box = [str(path) if path else None]
            dist.broadcast_object_list(box, src=0)
            path = Path(box[0])
        run = cls(path, is_main=is_main, ckpt_keep=ckpt_keep)
        if is_main:
            run.write_config(config)
        return run

    # -- writers ---------------------------------------------------------------------------
    def write_config(self, config: Any) -> None:
        if self.is_main:
            text = json.dumps(_jsonable(config), indent=2, sort_keys=True)
            (self.dir / "config.json").write_text(text + "\n")

    @property
    def stats_path(self) -> Path:
        return self.dir / "stats.jsonl"

    def log(self, step: int, **scalars: float) -> None:
        """Append ``{"step", "time", **scalars}`` to stats.jsonl (and TensorBoard)."""
        if not self.is_main:
            return
        row = {"step": int(step), "time": round(time.time() - self._t0, 3)}
        row.update({k: _jsonable(v) for k, v in scalars.items()})
        with open(self.stats_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        writer = self._tensorboard()
        if writer is not None:
            for k, v in scalars.items():
                if isinstance(v, int | float):
                    writer.add_scalar(k, v, step)

    def truncate_stats(self, step: int) -> None:
        """Drop rows logged after ``step`` (used when resuming from that step)."""
        if not self.is_main or not self.stats_path.exists():
            return
        kept = []
        for line in self.stats_path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if row["step"] <= step:
                kept.append(line)
        self.stats_path.write_text("".join(line + "\n" for line in kept))

    def stats(self):
        """stats.jsonl as a pandas DataFrame."""
        import pandas as pd

        if not self.stats_path.exists():
            return pd.DataFrame()
        return pd.read_json(self.stats_path, lines=True)

    def save_grid(
        self,
        name: str,
        images: torch.Tensor,
        nrow: int | None = None,
        value_range: tuple[float, float] = (-1.0, 1.0),
    ) -> Path | None:
        """Save ``images`` as ``<run>/<name>`` (a PNG grid)."""
        if not self.is_main:
            return None
        return save_grid(images, self.dir / name, nrow=nrow, value_range=value_range)

    def progress(self, total: int, initial: int = 0, desc: str = "train") -> tqdm:
        """A tqdm bar (it/s and ETA); put losses in it with ``bar.set_postfix(...)``."""
        return tqdm(
            total=total, initial=initial, desc=desc, disable=not self.is_main, dynamic_ncols=True
        )

    def plot_losses(self, columns: Iterable[str] | None = None) -> Path | None:
        """Write ``loss_curves.png`` from stats.jsonl; ``None`` (with a note) without matplotlib."""
        if not self.is_main:
            return None
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            note = self.dir / "loss_curves.txt"
            note.write_text("loss curves skipped: install matplotlib (ganlab-common[plot])\n")
            return None
        frame = self.stats()
        if frame.empty:
            return None
        cols = [c for c in (columns or frame.columns) if c not in ("step", "time", "epoch")]
        cols = [c for c in cols if c in frame and np.issubdtype(frame[c].dtype, np.number)]
        fig, ax = plt.subplots(figsize=(8, 4))
        for c in cols:
            ax.plot(frame["step"], frame[c], label=c, linewidth=0.8)
        ax.set_xlabel("step")
        ax.legend(loc="best", fontsize="small")
        path = self.dir / "loss_curves.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        return path

    def _tensorboard(self):
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._tb = False
            else:
                self._tb = SummaryWriter(str(self.dir / "tensorboard"))
        return self._tb or None

    def close(self) -> None:
        if self._tb:
            self._tb.close()
