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

import contextlib
import dataclasses
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import CheckpointManager, atomic_save
from .errors import UserError
from .images import save_grid

__all__ = [
    "ResumePoint",
    "Run",
    "amp_option",
    "device_option",
    "find_resume_point",
    "find_run_dir",
    "merge_resume_config",
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
    """Create ``<outdir>/<NNNNN>-<name>`` with the next free number.

    An output folder that cannot be created or written (a path under a file, no
    permission, a full disk) is a one-line UserError.
    """
    outdir = Path(outdir)
    with _writing(outdir, "cannot create the output folder"):
        outdir.mkdir(parents=True, exist_ok=True)
    number = max((n for n, _, _ in _runs(outdir)), default=-1) + 1
    while True:
        path = outdir / f"{number:05d}-{name}"
        try:
            with _writing(outdir, "cannot create a run folder in it"):
                path.mkdir()
            return path
        except FileExistsError:  # another process took it
            number += 1


@contextlib.contextmanager
def _writing(path: Path, what: str, kept: str = "") -> Iterator[None]:
    """Turn an OSError (other than FileExistsError) into a one-line UserError about ``path``."""
    try:
        yield
    except FileExistsError:
        raise
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, NotADirectoryError):
            reason = "a part of the path is a file, not a folder"
        raise UserError(f"{path}: {what} ({reason}){kept}") from None


def find_run_dir(outdir: str | os.PathLike, name: str | None = None) -> Path | None:
    """The newest ``<NNNNN>-<name>`` run in ``outdir`` (any name when ``name`` is None)."""
    matches = [p for _, n, p in _runs(Path(outdir)) if name is None or n == name]
    return matches[-1] if matches else None


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """What ``--resume`` continues: a run folder, its newest loadable checkpoint and config."""

    run_dir: Path
    checkpoint: Path
    state: dict
    config: dict  # the run's config.json ({} when missing or unreadable)

    @property
    def step(self) -> int:
        return int(self.state.get("step", 0))


def _stored_config(run_dir: Path) -> dict:
    try:
        config = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def find_resume_point(
    outdir: str | os.PathLike,
    name: str,
    checkpoints: str | Callable[[Path], list[CheckpointManager]] = "checkpoints",
    prefix: str = "ckpt",
    map_location: str | torch.device = "cpu",
    announce: bool = True,
) -> ResumePoint:
    """The newest ``<NNNNN>-<name>`` run that has a loadable checkpoint, and that checkpoint.

    Newer runs without one (a launch killed before its first save) are passed over and a
    corrupt newest checkpoint falls back to the one before it, each with a one-line note
    on stderr (when ``announce``; pass ``ctx.is_main`` under torchrun).  ``checkpoints``
    is the checkpoint sub-folder of a run (files ``<prefix>-<step>.pt``), or a function
    giving a run's managers (several stages).  Never starts anything: when no run of
    that name has a loadable checkpoint it raises a one-line :class:`UserError`.
    """
    notes: list[str] = []  # printed once a run is found: they explain the choice
    outdir = Path(outdir)
    for _, _, run_dir in reversed([r for r in _runs(outdir) if r[1] == name]):
        managers = (checkpoints(run_dir) if callable(checkpoints)
                    else [CheckpointManager(run_dir / checkpoints, prefix=prefix)])
        for manager in managers:
            for path, state in manager.iter_loadable(map_location, flag="--resume", notes=notes):
                point = ResumePoint(run_dir, path, state, _stored_config(run_dir))
                notes.append(f"resume: continuing {run_dir} from {path.relative_to(run_dir)} "
                             f"(step {point.step})")
                if announce:
                    print("\n".join(notes), file=sys.stderr)
                return point
        notes.append(f"resume: passing over {run_dir}: it has no loadable checkpoint "
                     "(a launch stopped before its first save?)")
    corrupt = sum(note.startswith("warning:") for note in notes)
    skipped = f"{corrupt} unreadable checkpoint(s) skipped; " if corrupt else ""
    raise UserError(
        f"--resume: no '{name}' run in '{outdir}' has a loadable checkpoint "
        f"({skipped}drop --resume to start a new run)"
    )


def merge_resume_config(
    stored: Mapping[str, Any],
    given: Any,
    changeable: Iterable[str] = (),
    explicit: Mapping[str, str] | None = None,
    run_dir: str | os.PathLike = "the resumed run",
) -> Any:
    """The config a resumed run continues with: the stored one wins.

    ``given`` (a dict or dataclass; the same type is returned) is this launch's config and
    ``stored`` the run's ``config.json``.  Each key keeps its stored value, except keys
    missing from ``stored`` and ``changeable`` keys (e.g. the number of epochs, the
    device) given on this command line, which take the given value.  ``explicit`` maps
    the keys given on the command line to their flag (see
    :func:`ganlab_common.options.explicit_options`); ``None`` (called from Python, not a
    CLI) means every changeable key takes its given value and nothing else is explicit.
    A non-changeable key given explicitly with another value than the stored one is a
    one-line UserError naming the flag: continuing a run with another seed or learning
    rate would not be the run that was started.
    """
    values = dataclasses.asdict(given) if dataclasses.is_dataclass(given) else dict(given)
    changeable = set(changeable)
    merged = {}
    for key, value in values.items():
        if key not in stored or _jsonable(value) == stored[key]:
            merged[key] = value
        elif key in changeable and (explicit is None or key in explicit):
            merged[key] = value
        elif explicit is not None and key in explicit:
            raise UserError(
                f"{explicit[key]} {_jsonable(value)!r}: {run_dir} was started with "
                f"{stored[key]!r}; drop the flag to continue it as it was started"
            )
        else:
            merged[key] = tuple(stored[key]) if isinstance(value, tuple) else stored[key]
    if dataclasses.is_dataclass(given):
        names = {f.name for f in dataclasses.fields(given) if f.init}
        return dataclasses.replace(given, **{k: v for k, v in merged.items() if k in names})
    return merged


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


def _share_choice(
    path: Path | None, error: UserError | None, known: bool
) -> tuple[Path, None]:
    """Under torch.distributed: every rank gets rank 0's run folder, or raises its error."""
    dist = torch.distributed
    if not known and dist.is_available() and dist.is_initialized():
        box = [(str(path) if path else None, error.message if error else None)]
        dist.broadcast_object_list(box, src=0)
        shared_path, message = box[0]
        path = Path(shared_path) if shared_path else None
        error = error or (UserError(message) if message else None)
    if error is not None:
        raise error
    return path, None


def _is_main_process() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class Run:
    """One training run's folder and its writers (no-ops on non-main ranks)."""

    def __init__(
        self,
        directory: str | os.PathLike,
        is_main: bool = True,
        ckpt_keep: int = 3,
        checkpoints: str = "checkpoints",
        ckpt_prefix: str = "ckpt",
    ):
        self.dir = Path(directory)
        self.is_main = is_main
        self.checkpoints = CheckpointManager(
            self.dir / checkpoints, prefix=ckpt_prefix, keep=ckpt_keep, readonly=not is_main
        )
        self._tb = None
        self._t0 = time.time()

    @classmethod
    def start(
        cls,
        outdir: str | os.PathLike,
        name: str,
        config: Any,
        resume: bool | ResumePoint = False,
        ckpt_keep: int = 3,
        checkpoints: str = "checkpoints",
        ckpt_prefix: str = "ckpt",
    ) -> Run:
        """Open the run: a new ``<outdir>/<NNNNN>-<name>``, or the one ``resume`` continues.

        ``resume=True`` continues the newest ``<name>`` run that has a loadable checkpoint
        (:func:`find_resume_point`; a one-line UserError when there is none, never a
        fresh start); a :class:`ResumePoint` found earlier (every rank found the same one)
        continues that run.  The resume checkpoint is handed to ``run.checkpoints``, whose
        next ``load_latest()`` returns it without reading it again.  Under
        ``torch.distributed`` rank 0 picks the folder and broadcasts it (or its error).
        """
        is_main = _is_main_process()
        point = resume if isinstance(resume, ResumePoint) else None
        path, error = (point.run_dir if point else None), None
        if is_main and path is None:
            try:
                if resume:
                    point = find_resume_point(outdir, name, checkpoints, ckpt_prefix)
                    path = point.run_dir
                else:
                    path = new_run_dir(outdir, name)
            except UserError as exc:
                error = exc
        path, error = _share_choice(path, error, known=isinstance(resume, ResumePoint))
        run = cls(path, is_main=is_main, ckpt_keep=ckpt_keep, checkpoints=checkpoints,
                  ckpt_prefix=ckpt_prefix)
        if point is not None and point.checkpoint.parent == run.checkpoints.directory:
            run.checkpoints.preload(point.checkpoint, point.state)
        if is_main:
            run.write_config(config)
        return run

    # -- writers ---------------------------------------------------------------------------
    def _writing(self, path: Path, what: str) -> contextlib.AbstractContextManager:
        """OSErrors while writing ``path`` become a UserError naming what the run kept."""
        newest = self.checkpoints.latest()
        kept = f"; kept: {newest}" if newest else f"; kept: {self.dir} (no checkpoint yet)"
        return _writing(path, what, kept)

    def save_state(self, path: str | os.PathLike, state: Any, what: str) -> Path:
        """``atomic_save`` ``state`` to ``path`` (a checkpoint beside the rotating ones, e.g.
        the best epoch's); a failed write is one UserError line: ``path``, ``what``, what the
        run kept."""
        path = Path(path)
        with self._writing(path, what):
            return atomic_save(state, path)

    def write_config(self, config: Any) -> None:
        if self.is_main:
            text = json.dumps(_jsonable(config), indent=2, sort_keys=True)
            path = self.dir / "config.json"
            with self._writing(path, "cannot write the run's config"):
                path.write_text(text + "\n")

    def stored_config(self) -> dict:
        """The run's ``config.json`` as a dict ({} when missing or unreadable)."""
        return _stored_config(self.dir)

    @property
    def stats_path(self) -> Path:
        return self.dir / "stats.jsonl"

    def log(self, step: int, **scalars: float) -> None:
        """Append ``{"step", "time", **scalars}`` to stats.jsonl (and TensorBoard)."""
        if not self.is_main:
            return
        row = {"step": int(step), "time": round(time.time() - self._t0, 3)}
        row.update({k: _jsonable(v) for k, v in scalars.items()})
        with self._writing(self.stats_path, "cannot append to the stats log"):
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
        with self._writing(self.dir / name, "cannot write the image"):
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
            with self._writing(note, "cannot write the loss-curve note"):
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
        try:
            with self._writing(path, "cannot write the loss curves"):
                fig.savefig(path, dpi=100, bbox_inches="tight")
        finally:
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
