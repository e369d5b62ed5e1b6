"""One exception type for user mistakes.

Every CLI lets :class:`UserError` propagate to click, which prints a single
``Error: <message>`` line and exits with code 2 -- never a torch traceback.
"""

from __future__ import annotations

import click


class UserError(click.ClickException):
    """A mistake in a flag, a file or a folder the user gave us.

    The message must name the flag or file and say what was expected.
    """

    exit_code = 2
