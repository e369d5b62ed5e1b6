"""One exception type for user mistakes.

Every CLI lets :class:`UserError` propagate to click, which prints a single
``Error: <message>`` line and exits with code 2 -- never a torch traceback.
"""

from __future__ import annotations

import re
from typing import IO, Any

import click

_WORKER_HEADER = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.")
_CLASS_PREFIX = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*: ")


def _worker_message(message: str) -> str:
    """The original one-line message of a UserError re-raised from a DataLoader worker.

    torch re-raises a worker's exception as ``type(exc)(text)`` where ``text`` is
    "Caught UserError in DataLoader worker process 0." plus the worker's traceback, whose
    last line is ``<module>.UserError: <message>``.
    """
    if not _WORKER_HEADER.match(message):
        return message
    lines = [line for line in message.splitlines() if line.strip()]
    return _CLASS_PREFIX.sub("", lines[-1], count=1) if len(lines) > 1 else message


def _close_progress_bars() -> None:
    """Close every open tqdm bar, so that what is printed next starts on its own line."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


class OwnLineError(click.ClickException):
    """A ClickException whose ``Error:`` line never lands on a progress bar's line."""

    def show(self, file: IO[Any] | None = None) -> None:
        _close_progress_bars()
        super().show(file)


class UserError(OwnLineError):
    """A mistake in a flag, a file or a folder the user gave us.

    The message must name the flag or file and say what was expected.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(_worker_message(message))
