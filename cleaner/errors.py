"""The one exception type a command turns into a one-line error and exit code 1."""

from __future__ import annotations


class CleanerError(Exception):
    """A failure the user can act on: the message names the file or value at fault and the fix.

    The CLI prints ``error: <message>`` on one line on stderr and exits 1; nothing was changed.
    """


class DatasetError(CleanerError):
    """ROOT is missing or holds no usable class folder."""


class PathEscapeError(CleanerError):
    """A path would leave ROOT (``..``, absolute, or a symlink that leads out)."""


class LockedError(CleanerError):
    """Another cleaner process holds the write lock on ROOT."""
