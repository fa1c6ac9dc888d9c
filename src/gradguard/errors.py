"""The one base class of errors whose message is the whole story, and the exit statuses the `gradguard` command uses.

Any error deriving from `GradguardError` (alias `UserError`: a bad config, dataset, checkpoint, run folder or input)
reaches the command line as one line on stderr and its `exit_status`, without a traceback: the message already
names the file, key or value at fault and says what was expected or what to do. Everything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

__all__ = ["GradguardError", "UserError", "EXIT_OK", "EXIT_USER_ERROR", "EXIT_USAGE", "EXIT_NONFINITE",
           "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_USER_ERROR = 1  # bad config, data, checkpoint, run folder or input: the message says which and what was expected
EXIT_USAGE = 2  # the command line itself is wrong (argparse's status too)
EXIT_NONFINITE = 3  # a run stopped by non-finite loss or weights, or `eval --strict` with a masking flag
EXIT_INTERRUPTED = 130  # Ctrl-C


class GradguardError(Exception):
    """An error a user can act on from its message alone (`gradguard.cli.main` prints it and exits `exit_status`)."""

    exit_status: int = EXIT_USER_ERROR


UserError = GradguardError  # the name the config, data and input checks use
