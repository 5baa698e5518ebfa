"""The one exception tree of consentry. No HTTP here: ``api.py`` maps these to statuses.

::

    ConsentryError
     +-- Invalid          bad input; carries field-level details
     |    +-- LimitExceeded  a size or count limit was passed
     +-- Unauthorized     no or unknown credentials
     +-- Forbidden        credentials lack the scope
     |    +-- TransferRefused  data may not leave to that processor (privacy's gate)
     +-- NotFound         no such thing in this workspace
     +-- Conflict         the request contradicts the current state
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of the input; ``index`` is the message's place in a batch."""

    field: str
    reason: str
    index: int | None = None
    over_limit: bool = False

    def as_dict(self) -> dict[str, object]:
        """Return the JSON shape used in error bodies."""
        return {"index": self.index, "field": self.field, "reason": self.reason}


class ConsentryError(Exception):
    """Base of every error consentry raises on purpose."""

    code = "error"

    def __init__(self, message: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


class Invalid(ConsentryError):
    """The input is malformed."""

    code = "invalid"


class LimitExceeded(Invalid):
    """The input is over a configured limit."""

    code = "limit_exceeded"


class Unauthorized(ConsentryError):
    """Credentials are missing or unknown."""

    code = "unauthorized"


class Forbidden(ConsentryError):
    """Credentials are valid but may not do this."""

    code = "forbidden"


class TransferRefused(Forbidden):
    """Data may not leave to a processor; ``errors`` name every reason."""

    code = "transfer_refused"


class NotFound(ConsentryError):
    """No such object in this workspace."""

    code = "not_found"


class Conflict(ConsentryError):
    """The request contradicts the current state."""

    code = "conflict"


class TooManyRequests(ConsentryError):
    """Over a rate limit: ``errors`` name what was limited, ``retry_after`` the seconds until
    one more attempt is taken (HTTP 429 with a ``Retry-After`` header)."""

    code = "rate_limited"

    def __init__(self, message: str, errors: list[FieldError], retry_after: int) -> None:
        super().__init__(message, errors)
        self.retry_after = retry_after
