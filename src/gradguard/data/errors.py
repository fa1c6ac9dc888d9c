"""The one error type of the data package: every bad input names the file (or folder) it came from."""

from __future__ import annotations

from gradguard.errors import UserError

__all__ = ["DatasetError", "DatasetNotFoundError", "ChecksumError"]


class DatasetError(UserError):
    """A dataset file is missing, malformed or fails verification.

    ``path`` is the file or folder at fault (also named in the message) so that callers and the CLI can point at it.
    """

    def __init__(self, message: str, path: object | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)


class DatasetNotFoundError(DatasetError):
    """No source holds the dataset; the message lists the files expected and the command that fetches them."""


class ChecksumError(DatasetError):
    """A file decoded fine but is not the published file (its md5 differs)."""
