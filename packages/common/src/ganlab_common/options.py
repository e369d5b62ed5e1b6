"""Click types and helpers shared by every CLI: finite floats, seeds, the flags given.

Every float option of a ganlab CLI uses :class:`FiniteFloat` (``nan`` and ``inf`` parse
as floats, and click's ``FloatRange`` lets NaN through every bound), and every seed
option uses :data:`SEED`, so bad numbers end in click's one ``Error:`` line (exit 2)
before anything is built::

    @click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=2e-4)
    @click.option("--manualSeed", type=SEED, default=None)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import click
from click.core import ParameterSource

from .errors import UserError

__all__ = ["SEED", "SEED_MAX", "FiniteFloat", "check_finite_values", "explicit_options"]

#: Largest seed: numpy's generators take 32-bit seeds; torch takes them too.
SEED_MAX = 2**32 - 1


class FiniteFloat(click.FloatRange):
    """A float that must be finite (no ``nan``/``inf``), optionally inside a range.

    Takes ``click.FloatRange``'s ``min``, ``max``, ``min_open``, ``max_open`` and
    ``clamp`` arguments; without them any finite float is accepted.
    """

    def __init__(self, min: float | None = None, max: float | None = None,
                 min_open: bool = False, max_open: bool = False, clamp: bool = False) -> None:
        super().__init__(min=min, max=max, min_open=min_open, max_open=max_open, clamp=clamp)
        self.name = "float" if min is None and max is None else "float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        number = click.types.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)

    def _describe_range(self) -> str:
        if self.min is None and self.max is None:
            return ""
        return super()._describe_range()


#: A seed: an integer in 0..2**32-1.
SEED = click.IntRange(0, SEED_MAX)


def explicit_options(ctx: click.Context | None = None) -> dict[str, str] | None:
    """``{parameter name: flag}`` of the options given on the command line (or by env).

    ``None`` outside a click command (a trainer called from Python).  Used on resume to
    tell flags the user typed from defaults (see ``ganlab_common.runs.merge_resume_config``).
    """
    ctx = ctx or click.get_current_context(silent=True)
    if ctx is None:
        return None
    given = {}
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            given[param.name] = param.opts[0] if param.opts else param.name
    return given


def check_finite_values(values: Mapping[str, Any], source: str, prefix: str = "") -> None:
    """UserError naming ``source`` and the key of the first NaN/inf float in ``values``.

    Nested mappings are walked (keys joined with "."), e.g. a YAML config tree.
    """
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            check_finite_values(value, source, f"{name}.")
        elif isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{source}: {name}={value} is not a finite number")
