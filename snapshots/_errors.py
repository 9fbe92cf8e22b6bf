"""The error every tvcache layer raises: what was wrong, and what to do about it."""

from __future__ import annotations


class TvcacheError(Exception):
    """Base of all tvcache errors.

    ``hint`` says what the user can do; ``str(error)`` includes it so that a log line
    is enough to act on.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")


class SnapshotError(TvcacheError):
    """A snapshot could not be taken, restored, forked or deleted."""


class SnapshotRefusedError(SnapshotError):
    """This state cannot be captured faithfully at this level (say, processes are running
    and the level keeps only files): no snapshot is better than a wrong one."""
