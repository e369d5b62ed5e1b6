"""Pytest fixtures shared by the packages' test suites (import them into a ``conftest.py``).

``from ganlab_common.testing import one_torch_thread  # noqa: F401`` makes every test of that
suite run on one intra-op torch thread: tiny models on a shared 2-core machine are fastest
that way, and two OpenMP threads spinning on busy cores are 10-100x slower.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

__all__ = ["assert_one_line_error", "assert_ranks_agree", "one_torch_thread", "two_rank_run"]


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


_TWO_RANK_WORKER = textwrap.dedent(
    """
    import importlib, os, sys
    import torch
    from torch import nn

    out, tag, module_name, hook, command = sys.argv[1:6]
    module = importlib.import_module(module_name)
    captured = []
    real = getattr(module, hook)

    def capturing(*args, **kwargs):
        result = real(*args, **kwargs)
        items = [*args, *kwargs.values(), *(result if isinstance(result, tuple) else (result,))]
        captured.extend(m for m in items if isinstance(m, nn.Module))
        return result

    setattr(module, hook, capturing)
    cli_module, name = command.split(":")
    cli = getattr(importlib.import_module(cli_module), name)
    cli.main(sys.argv[6:], prog_name=name, standalone_mode=False)
    seen, params = set(), []
    for m in captured:
        m = getattr(m, "module", m)
        if id(m) not in seen:
            seen.add(id(m))
            params.append({k: v.detach().cpu().clone() for k, v in m.named_parameters()})
    torch.save(params, os.path.join(out, f"{tag}-rank{os.environ['RANK']}.pt"))
    """
)


def two_rank_run(
    out: str | os.PathLike, tag: str, module: str, hook: str, command: str, args: list,
    timeout: float = 900,
) -> list[list[dict]]:
    """Run a click ``command`` ("pkg.cli:name") under ``torchrun --nproc_per_node 2`` (gloo, CPU).

    Every ``nn.Module`` passed to or returned by ``module.hook`` (e.g. ``"lrgan.train"``,
    ``"wrap_model"``) is captured in each rank; after the command returns, each rank saves
    the parameters of those modules.  Returns ``[rank 0's, rank 1's]`` lists of
    ``{name: tensor}``, in capture order.  The command's output is in the assertion message
    when it fails.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    script = out / "two_rank_worker.py"
    script.write_text(_TWO_RANK_WORKER)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", str(script), str(out), tag, module, hook, command, *map(str, args)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return [torch.load(out / f"{tag}-rank{r}.pt", weights_only=False) for r in range(2)]


def assert_ranks_agree(ranks: list[list[dict]], modules: int = 2) -> None:
    """The parameters :func:`two_rank_run` captured are identical on both ranks, for at least
    ``modules`` modules (e.g. 2: G and D)."""
    first, second = ranks
    assert len(first) == len(second) >= modules
    for x, y in zip(first, second):
        assert x.keys() == y.keys()
        for name in x:
            assert torch.equal(x[name], y[name]), name
