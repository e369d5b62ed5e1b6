"""Pytest fixtures shared by the packages' test suites (import them into a ``conftest.py``).

``from ganlab_common.testing import one_torch_thread  # noqa: F401`` makes every test of that
suite run on one intra-op torch thread: tiny models on a shared 2-core machine are fastest
that way, and two OpenMP threads spinning on busy cores are 10-100x slower.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

__all__ = ["one_torch_thread"]


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for the whole session; the previous count is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
