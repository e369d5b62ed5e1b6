"""Pytest fixtures shared by the packages' test suites (import them into a ``conftest.py``).

``from ganlab_common.testing import one_torch_thread  # noqa: F401`` makes every test of that
suite run on one intra-op torch thread: tiny models on a shared 2-core machine are fastest
that way, and two OpenMP threads spinning on busy cores are 10-100x slower.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

__all__ = ["assert_one_line_error", "one_torch_thread"]


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for the whole session; the previous count is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_one_line_error(result: Any, exit_code: int = 2) -> str:
    """Check a ``CliRunner`` result is a clean failure; return its ``Error:`` line.

    Clean means: ``exit_code``, exactly one line starting with ``Error:``, no traceback
    (the command raised nothing but click's own exit) and no ``Error:`` glued to the end of
    another line (a progress bar's).
    """
    output = result.output
    assert result.exit_code == exit_code, f"exit {result.exit_code}: {output[-2000:]}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output, output[-2000:]
    errors = [line for line in output.splitlines() if "Error:" in line]
    assert len(errors) == 1 and errors[0].startswith("Error: "), output[-2000:]
    return errors[0]
