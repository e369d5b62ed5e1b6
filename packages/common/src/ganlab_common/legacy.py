"""Flags of the original scripts that have a new spelling or no effect here.

Every CLI accepts the original commands as written: a flag with a meaning keeps it
(``--gpu N`` picks ``cuda:N``, ``--threads N`` sets torch's threads), a flag without one is
a *documented* no-op that prints one ``note:`` line saying why -- never silently different.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from .errors import UserError

__all__ = [
    "dry_run_option",
    "gpu_device",
    "note",
    "noop_callback",
    "parse_bool",
    "require_path",
    "set_threads",
]


def note(message: str) -> None:
    """One ``note: ...`` line on stderr."""
    click.echo(f"note: {message}", err=True)


def noop_callback(flag: str, why: str) -> Callable:
    """A click callback that prints ``note: <flag>: <why>`` when the flag was given."""

    def callback(ctx: click.Context, param: click.Parameter, value: object) -> object:
        given = ctx.get_parameter_source(param.name) is click.core.ParameterSource.COMMANDLINE
        if given:
            note(f"{flag} {'' if value is True else value} has no effect here: {why}".replace(
                "  ", " "))
        return value

    return callback


def gpu_device(flag: str, index: int, shown: str | None = None) -> str:
    """The device of an original GPU index flag: -1 (or below) is the CPU, N is ``cuda:N``.

    Without CUDA, or with fewer GPUs than N + 1, a ``note:`` line says which device is used
    instead (the original commands name their authors' 4-GPU machines).
    """
    import torch

    shown = shown or f"{flag} {index}"
    if index < 0:
        return "cpu"
    if not torch.cuda.is_available():
        note(f"{shown}: no CUDA device here; running on the CPU")
        return "cpu"
    count = torch.cuda.device_count()
    if index >= count:
        note(f"{shown}: this machine has {count} GPU(s); using cuda:0")
        return "cuda:0"
    return f"cuda:{index}"


def set_threads(flag: str, count: int | None) -> None:
    """``torch.set_num_threads(count)`` for the original ``--threads`` / ``-nThreads``."""
    if count is None:
        return
    if count < 1:
        raise UserError(f"{flag}: expected at least 1 thread, got {count}")
    import torch

    torch.set_num_threads(count)


_TRUE = ("true", "1", "yes", "y", "t")
_FALSE = ("false", "0", "no", "n", "f")


def parse_bool(flag: str, value: str | bool) -> bool:
    """``True``/``False`` (any case, 1/0, yes/no) as the original ``type=bool`` flags meant."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise UserError(f"{flag}: expected True or False, got '{value}'")


def require_path(flag: str, path: str | Path, kind: str = "folder", hint: str = "") -> Path:
    """``path`` when it exists (as a folder or a file); a one-line UserError naming it otherwise."""
    p = Path(path).expanduser()
    ok = p.is_dir() if kind == "folder" else p.is_file() if kind == "file" else p.exists()
    if not ok:
        what = {"folder": "no such folder", "file": "no such file"}.get(kind, "does not exist")
        raise UserError(f"{flag}: '{path}': {what}{'; ' + hint if hint else ''}")
    return p


def dry_run_option(*names: str) -> Callable:
    """``--dry_run`` (also ``--dry-run``): parse, resolve and validate, print, exit 0."""
    return click.option(
        *(names or ("--dry_run", "--dry-run")),
        "dry_run",
        is_flag=True,
        help="Check only: parse the flags, resolve the config, check that the given files and "
             "folders exist, print the resolved config and exit without training.",
    )
