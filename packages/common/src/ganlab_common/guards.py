"""Checks every trainer runs: losses stay finite, the output folder can be written.

::

    check_writable_dir(outdir, "--outf")          # before loading data or building models
    for step ...:
        losses = train_step(...)
        check_finite_losses(step, losses, ctx)    # before anything of this step is saved
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch

from .errors import OwnLineError, UserError

__all__ = ["NonFiniteLossError", "check_finite_losses", "check_writable_dir"]


class NonFiniteLossError(OwnLineError):
    """Training diverged: a loss became NaN or infinite (one ``Error:`` line, exit code 1)."""

    exit_code = 1


def _non_finite(losses: Mapping[str, torch.Tensor | float]) -> dict[str, float]:
    names = list(losses)
    tensors = [torch.as_tensor(losses[k]).detach().float().reshape(-1)[:1].cpu() for k in names]
    if not tensors:
        return {}
    values = torch.cat(tensors).tolist()  # one device sync for all losses
    return {k: v for k, v in zip(names, values, strict=True) if not math.isfinite(v)}


def check_finite_losses(
    step: int, losses: Mapping[str, torch.Tensor | float], ctx=None, unit: str = "iteration"
) -> None:
    """Stop with a one-line error when any loss of ``step`` is NaN or infinite.

    Call it after the step's losses are known and before anything of that step is saved
    (grid, stats row, checkpoint), so the run folder keeps the last good checkpoint.
    ``losses`` maps names to scalar tensors or floats (one device sync in all).  With a
    distributed ``ctx`` (:class:`ganlab_common.distributed.DistContext`) every rank learns
    whether any rank diverged, so all of them stop at the same step instead of hanging.
    """
    bad = _non_finite(losses)
    if ctx is not None and getattr(ctx, "is_distributed", False):
        flag = torch.tensor([1.0 if bad else 0.0], device=ctx.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if flag.item() and not bad:
            raise NonFiniteLossError(f"{unit} {step}: a loss became non-finite on another "
                                     "process; stopped without saving this step")
    if bad:
        shown = ", ".join(f"{k}={v}" for k, v in bad.items())
        raise NonFiniteLossError(
            f"{unit} {step}: loss became non-finite ({shown}); stopped without saving this "
            "step (the newest checkpoint is unchanged; try a lower learning rate)"
        )


def check_writable_dir(path: str | os.PathLike, flag: str) -> Path:
    """Check that ``path`` can be created (with its parents) and written in; leave no trace.

    One-line UserError naming ``flag`` when it cannot (a path under a file, no permission,
    a read-only or full file system).  Folders created for the check are removed again, so
    a later error still leaves nothing behind; call it before loading data or building
    models.
    """
    path = Path(path).expanduser()
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path) as probe:
            probe.write(b"0")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, NotADirectoryError | FileExistsError):
            reason = "it or a folder above it is a file"
        raise UserError(f"{flag}: cannot write to '{path}' ({reason})") from None
    finally:
        for created in missing:  # deepest first
            with contextlib.suppress(OSError):
                created.rmdir()
    return path
