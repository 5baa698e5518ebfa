"""What a validator answers: a normalised value (with warnings), or a problem.

A :class:`Problem` carries a stable ``code`` (``"email.disposable"``) and a fixed human message.
Neither ever holds the value that was checked, so problems can be logged, counted and shown to an
operator without leaking personal data. A :class:`Normalised` hides its value from ``repr`` for the
same reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeAlias, TypeVar

T = TypeVar("T")


class Severity(StrEnum):
    """An error makes a value unusable; a warning keeps the value but flags it."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Problem:
    """A reason a value is invalid or doubtful.

    ``suggestion`` is only ever public reference data (a well-known mail domain, a country code),
    never part of the checked value.
    """

    code: str
    message: str
    severity: Severity = Severity.ERROR
    suggestion: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


@dataclass(frozen=True, slots=True)
class Normalised(Generic[T]):
    """A usable value in canonical form, with any warnings about it."""

    value: T = field(repr=False)
    warnings: tuple[Problem, ...] = ()

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(w.code for w in self.warnings)


Outcome: TypeAlias = Normalised[T] | Problem
"""What every ``validate_*`` function returns."""


def problem(code: str, message: str, *, suggestion: str | None = None) -> Problem:
    """An error."""
    return Problem(code, message, Severity.ERROR, suggestion)


def warning(code: str, message: str, *, suggestion: str | None = None) -> Problem:
    """A warning."""
    return Problem(code, message, Severity.WARNING, suggestion)
