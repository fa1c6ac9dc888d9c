"""The one base class of mistakes a user can fix, and the exit statuses the `gradguard` command uses.

Any error deriving from `UserError` (a bad config, dataset, checkpoint or run name) reaches the command line as
one line on stderr and exit status `EXIT_USER_ERROR`, without a traceback: the message already names the file, key
or value at fault and says what was expected. Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["UserError", "EXIT_OK", "EXIT_USER_ERROR", "EXIT_USAGE", "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_USER_ERROR = 1  # bad config, data, checkpoint or input: the message says which and what was expected
EXIT_USAGE = 2  # the command line itself is wrong (argparse's status too)
EXIT_INTERRUPTED = 130  # Ctrl-C


class UserError(Exception):
    """A mistake in what the user gave (file, key, value), reported as one line; never a bug of gradguard."""
