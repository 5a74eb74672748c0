"""One error hierarchy. Messages are written for the person at the terminal.

The CLI catches :class:`ClueTriageError` in one place, prints ``str(error)`` to stderr and
exits with ``error.exit_code``; no traceback reaches a user for bad input.
"""

from __future__ import annotations


class ClueTriageError(Exception):
    """Base error: a one-line message saying what went wrong and where."""

    exit_code = 1


class InputError(ClueTriageError):
    """A file or value given by the user cannot be used (exit code 2)."""

    exit_code = 2

    def __init__(
        self, message: str, *, path: object = None, row: int | None = None, column: str | None = None
    ) -> None:
        where = [str(p) for p in (path,) if p is not None]
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.path, self.row, self.column = path, row, column


class NoModelError(ClueTriageError):
    """The home has no usable model yet (exit code 2)."""

    exit_code = 2


class ModelIntegrityError(ClueTriageError):
    """A model artifact does not match its manifest, its format is unknown, or the registry
    or a manifest is damaged (exit code 2: the home needs fixing before anything runs)."""

    exit_code = 2


class StoreError(ClueTriageError):
    """The review store refused an operation (recusal, unknown reviewer, …): exit code 2,
    like any other input the user can correct."""

    exit_code = 2


class ValidationError(InputError):
    """Several rows of an import are bad; ``problems`` lists every one of them."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems
