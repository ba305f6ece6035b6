"""The errors the engine raises, and how each maps to the CLI's exit status.

`InputError` is bad input (exit 2): it carries every problem found, each able to name its file, line and column.
`OperationError` is a valid request that failed (exit 1).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located as precisely as it can be."""

    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = [str(part) for part in (self.file, self.line, self.column) if part is not None]
        return ":".join([*where, f" {self.message}"]) if where else self.message


class HeadnodeError(Exception):
    """Base of every error the engine raises on purpose."""

    exit_status = 1


class InputError(HeadnodeError):
    """Bad input: nothing was changed. Carries one or more problems."""

    exit_status = 2

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = Problem(problems)
        if isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = problems
        super().__init__("\n".join(str(p) for p in problems))


class OperationError(HeadnodeError):
    """A valid request that could not be carried out."""

    exit_status = 1


class ConnectionLost(OperationError):
    """The connection failed or dropped; worth retrying."""


class GaveUp(OperationError):
    """The connection kept dropping until the retries ran out: the pooled one may be dead without knowing it yet."""

    @classmethod
    def after(cls, lost: ConnectionLost, attempts: int) -> GaveUp:
        return cls(f"{lost} (gave up after {attempts} attempts)")


class Cancelled(OperationError):
    """Stopped because someone asked."""
