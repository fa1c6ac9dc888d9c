"""The base of the errors whose message is the whole story: the CLI prints it on one line and exits 1
(3 for a run stopped by non-finite values, so scripts can tell the two apart).

A subclass's message names the file, key or value at fault and what to do; no traceback adds to it.
"""

from __future__ import annotations

__all__ = ["GradguardError"]


class GradguardError(Exception):
    """An error a user can act on from its message alone (`gradguard.cli.main` prints it and exits `exit_status`)."""

    exit_status: int = 1
