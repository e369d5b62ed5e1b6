"""Run the original READMEs' commands through our CLIs in check-only mode (for tests).

A corpus file (``packages/<pkg>/tests/original_commands.txt``) holds

* ``map: <original script> = <our CLI> [fixed args]`` lines
  (``map: th main_mnist.lua = crvae-train``, ``map: th main.lua = crvae-train -dataset celeba``),
  each applying to the command lines below it until the same script is mapped again;
* one original command per line, verbatim (continuation lines joined), then
  ``#=> ok`` (the check passes) or ``#=> missing <path>`` (it fails only because that
  folder or file of the original author's machine does not exist here);
* ``#`` comment lines.

:func:`check_command` runs one through the CLI's ``--dry_run`` in an empty folder and
asserts the outcome: exit 0, or exit 2 with one ``Error:`` line naming the path -- never
"No such option", never a traceback, and nothing written.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import click
from click.testing import CliRunner

__all__ = ["Entry", "check_command", "load_corpus", "resolve_command"]


@dataclass(frozen=True)
class Entry:
    """One original command and what checking it must give."""

    line: int
    original: str
    cli: str  # our console script
    args: tuple[str, ...]
    missing: str | None  # None: must pass

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.cli}"


Mapping = tuple[tuple[str, ...], tuple[str, ...]]  # original words -> our CLI and its args


def _split_mapping(text: str, number: int) -> Mapping:
    left, sep, right = text.partition(" = ")
    if not sep or not left.strip() or not right.strip():
        raise ValueError(f"line {number}: expected 'map: <original script> = <our CLI> [args]'")
    return tuple(shlex.split(left)), tuple(shlex.split(right))


def _parse_command(original: str, number: int, mappings: dict[tuple[str, ...], tuple[str, ...]]
                   ) -> tuple[str, tuple[str, ...]]:
    words = shlex.split(original)
    while words and "=" in words[0] and not words[0].startswith("-"):
        words.pop(0)  # CUDA_VISIBLE_DEVICES=1 ...: environment assignments
    for prefix, ours in sorted(mappings.items(), key=lambda m: -len(m[0])):
        if tuple(words[: len(prefix)]) == prefix:
            return ours[0], (*ours[1:], *words[len(prefix):])
    raise ValueError(f"line {number}: no 'map:' line covers {original!r}")


def load_corpus(path: str | Path) -> list[Entry]:
    """The entries of a corpus file (a ValueError names a malformed line)."""
    mappings: dict[tuple[str, ...], tuple[str, ...]] = {}
    entries: list[Entry] = []
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("map:"):
            prefix, ours = _split_mapping(line[4:], number)
            mappings[prefix] = ours  # applies to the lines below (until mapped again)
            continue
        command, sep, expect = line.partition("#=>")
        if not sep:
            raise ValueError(f"line {number}: expected '<command> #=> ok|missing <path>'")
        kind, _, target = expect.strip().partition(" ")
        if kind not in ("ok", "missing") or (kind == "missing") != bool(target.strip()):
            raise ValueError(f"line {number}: expected '#=> ok' or '#=> missing <path>'")
        cli, args = _parse_command(command.strip(), number, mappings)
        entries.append(Entry(number, command.strip(), cli, args, target.strip() or None))
    return entries


def resolve_command(cli: str) -> click.Command:
    """The click command behind console script ``cli``."""
    found = [e for e in entry_points(group="console_scripts") if e.name == cli]
    if not found:
        raise LookupError(f"no console script '{cli}' is installed")
    return found[0].load()


def check_command(entry: Entry, workdir: str | Path, flag: str = "--dry_run") -> str:
    """Run ``entry`` with ``flag`` in the empty folder ``workdir``; assert; return the output."""
    workdir = Path(workdir)
    before = os.getcwd()
    os.chdir(workdir)
    try:
        result = CliRunner().invoke(resolve_command(entry.cli), [*entry.args, flag])
    finally:
        os.chdir(before)
    out = result.output
    shown = f"{entry.cli} {shlex.join(entry.args)}\n{out}"
    assert "No such option" not in out and "Traceback" not in out, shown
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{shown}\nraised {result.exception!r}") from result.exception
    errors = [line for line in out.splitlines() if line.startswith("Error:")]
    if entry.missing is None:
        assert result.exit_code == 0 and not errors, shown
    else:
        assert not Path(workdir, entry.missing).exists(), f"{entry.missing} exists here"
        assert result.exit_code == 2, shown
        assert len(errors) == 1 and entry.missing in errors[0], shown
        assert out.rstrip().splitlines()[-1] == errors[0], shown
    assert not any(workdir.iterdir()), f"{shown}\nthe check wrote {list(workdir.iterdir())}"
    return out
