"""Atomic checkpoints, keep-last-K, and exact resume (models, optimizers, RNG).

A checkpoint is a plain ``dict`` saved with :func:`torch.save`.  Writing goes
to a temporary file in the same folder, is fsync'ed, then ``os.replace``'d over
the target, so a kill mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import random
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import UserError

__all__ = [
    "CheckpointManager",
    "atomic_save",
    "capture_rng_state",
    "load_checkpoint",
    "move_to",
    "restore_rng_state",
    "state_dicts",
    "load_state_dicts",
]

_NAME = re.compile(r"^(?P<prefix>.+)-(?P<step>\d{6,})\.pt$")


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` so that readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def _kept_note(directory: Path) -> str:
    kept = sorted(directory.glob("*.pt")) if directory.is_dir() else []
    return f"kept: {kept[-1]}" if kept else "no earlier checkpoint was kept"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", flag: str = "checkpoint"
) -> dict:
    """Load a checkpoint dict, turning any failure into a one-line :class:`UserError`.

    ``flag`` names the option the path came from (e.g. ``--netG``) for the message.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{flag}: no such file '{path}'")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # any unpickling/zip error means "not a checkpoint"
        raise UserError(
            f"{flag}: '{path}' is not a PyTorch checkpoint ({type(exc).__name__})"
        ) from None
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        raise UserError(f"{flag}: '{path}' holds a {kind}, expected a checkpoint dict")
    return obj


def capture_rng_state() -> dict:
    """The state of python's, numpy's and torch's (CPU and CUDA) generators."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Restore what :func:`capture_rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return getattr(module, "module", module)  # DDP / DataParallel wrappers


def state_dicts(objects: dict[str, Any]) -> dict[str, Any]:
    """``{name: obj.state_dict()}`` for modules, optimizers, schedulers and scalers."""
    return {k: _unwrap(v).state_dict() for k, v in objects.items() if v is not None}


def load_state_dicts(objects: dict[str, Any], states: dict[str, Any], source: str = "") -> None:
    """Load ``states[name]`` into each object; a missing or mismatched entry is a UserError."""
    for name, obj in objects.items():
        if obj is None:
            continue
        if name not in states:
            raise UserError(f"{source or 'checkpoint'} has no '{name}' entry")
        try:
            _unwrap(obj).load_state_dict(states[name])
        except (RuntimeError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"{source or 'checkpoint'}: '{name}' does not match this model ({first})"
            ) from None


class CheckpointManager:
    """``<dir>/<prefix>-<step:06d>.pt`` files; keeps the newest ``keep`` of them.

    ``readonly`` managers (non-main ranks under torchrun) load but never write.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        prefix: str = "ckpt",
        keep: int = 3,
        readonly: bool = False,
    ):
        self.directory = Path(directory)
        self.prefix = prefix
        self.keep = keep
        self.readonly = readonly
        self.loaded_path: Path | None = None  # the file the last load_latest() used
        self._preloaded: tuple[Path, dict] | None = None

    def path(self, step: int) -> Path:
        return self.directory / f"{self.prefix}-{step:06d}.pt"

    def list(self) -> list[tuple[int, Path]]:
        """Complete checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for p in self.directory.iterdir():
            m = _NAME.match(p.name)
            if m and m["prefix"] == self.prefix:
                found.append((int(m["step"]), p))
        return sorted(found)

    def save(self, step: int, state: dict) -> Path | None:
        """Atomically write ``state`` for ``step`` (with RNG states) and prune old files.

        Temp files left by a save that was killed are removed first.  A write that fails
        (disk full, folder made read-only) is a one-line UserError naming what was kept.
        """
        if self.readonly:
            return None
        if self.directory.is_dir():
            for leftover in self.directory.glob(f".{self.prefix}-*.tmp"):
                leftover.unlink(missing_ok=True)
        state = {**state, "step": step, "rng": capture_rng_state()}
        try:
            path = atomic_save(state, self.path(step))
        except OSError as exc:
            raise UserError(
                f"{self.path(step)}: could not write the checkpoint of step {step} "
                f"({exc.strerror or ' '.join(str(exc).split()) or type(exc).__name__}); "
                f"{_kept_note(self.directory)}"
            ) from None
        if self.keep > 0:
            for _, old in self.list()[: -self.keep]:
                old.unlink(missing_ok=True)
        return path

    def latest(self) -> Path | None:
        items = self.list()
        return items[-1][1] if items else None

    def iter_loadable(
        self, map_location: str | torch.device = "cpu", announce: bool = True,
        flag: str = "--resume", notes: list[str] | None = None,
    ) -> Iterator[tuple[Path, dict]]:
        """``(path, state)`` of every checkpoint that loads, newest first.

        An unreadable one (cut short, overwritten, not a checkpoint) is skipped with a
        one-line note: appended to ``notes`` when given, else printed on stderr when
        ``announce``.
        """
        for _, path in reversed(self.list()):
            try:
                yield path, load_checkpoint(path, map_location, flag=flag)
            except UserError as exc:
                note = f"warning: {exc.message}; trying an older checkpoint"
                if notes is not None:
                    notes.append(note)
                elif announce:
                    print(note, file=sys.stderr)

    def preload(self, path: Path, state: dict) -> None:
        """Hand ``state`` (already loaded from ``path``) to the next :meth:`load_latest`."""
        self._preloaded = (Path(path), state)

    def load_latest(
        self, map_location: str | torch.device = "cpu", restore_rng: bool = True,
        flag: str = "--resume",
    ) -> dict | None:
        """The newest checkpoint that loads (RNG states restored), or ``None`` when none does.

        A corrupt newest checkpoint is skipped, saying so (naming ``flag``, the option that
        led here), for the one before it; :attr:`loaded_path` says which file was used.
        """
        preloaded, self._preloaded = self._preloaded, None
        if preloaded is not None and preloaded[0].is_file():
            path, state = preloaded[0], move_to(preloaded[1], map_location)
        else:
            loadable = self.iter_loadable(map_location, not self.readonly, flag)
            path, state = next(loadable, (None, None))
        self.loaded_path = path
        if state is not None and restore_rng and "rng" in state:
            restore_rng_state(state["rng"])
        return state


def move_to(obj: Any, device: str | torch.device) -> Any:
    """``obj`` with every tensor inside (dicts, lists, tuples) moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: move_to(v, device) for k, v in obj.items()}
    if isinstance(obj, list | tuple) and not hasattr(obj, "_fields"):
        return type(obj)(move_to(v, device) for v in obj)
    return obj
