"""Consent rates: how often customers say yes, by period and by one dimension. Pure code.

Counted over the choices made in each period (ledger records by ``occurred_at``):

- ``opt_in_rate`` = granted / (granted + denied): of the people asked, how many said yes;
- ``withdrawal_rate`` = withdrawn / (granted + denied + withdrawn);
- ``gpc_share`` = opt-outs carried by a Global Privacy Control signal / all opt-outs
  (denied or withdrawn).

Pending confirmations and expiries are counted but are not choices. Periods are UTC days, ISO
weeks (starting Monday) or calendar months, named by their first day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from consentry.consent.models import DENIED, EXPIRED, GRANTED, PENDING, WITHDRAWN

INTERVALS = ("day", "week", "month")
DIMENSIONS = ("purpose", "channel", "source", "notice_version")
GPC_SOURCE = "gpc"
NONE_KEY = "(none)"


@dataclass(frozen=True, slots=True)
class Choice:
    """The fields of a ledger record that rates are made of."""

    occurred_at: datetime
    purpose: str
    channel: str
    source: str
    notice_version: str | None
    state: str


@dataclass(slots=True)
class Tally:
    """Counts of one period and key, and the rates made of them."""

    period: str
    key: str
    granted: int = 0
    denied: int = 0
    withdrawn: int = 0
    pending: int = 0
    expired: int = 0
    gpc_opt_outs: int = 0

    def add(self, choice: Choice) -> None:
        """Count one choice."""
        if choice.state == GRANTED:
            self.granted += 1
        elif choice.state == DENIED:
            self.denied += 1
        elif choice.state == WITHDRAWN:
            self.withdrawn += 1
        elif choice.state == PENDING:
            self.pending += 1
        elif choice.state == EXPIRED:
            self.expired += 1
        if choice.state in (DENIED, WITHDRAWN) and choice.source == GPC_SOURCE:
            self.gpc_opt_outs += 1

    @property
    def opt_in_rate(self) -> float | None:
        asked = self.granted + self.denied
        return self.granted / asked if asked else None

    @property
    def withdrawal_rate(self) -> float | None:
        total = self.granted + self.denied + self.withdrawn
        return self.withdrawn / total if total else None

    @property
    def gpc_share(self) -> float | None:
        opt_outs = self.denied + self.withdrawn
        return self.gpc_opt_outs / opt_outs if opt_outs else None

    def as_dict(self) -> dict[str, object]:
        """The tally as the API shows it."""
        return {
            "period": self.period,
            "key": self.key,
            "granted": self.granted,
            "denied": self.denied,
            "withdrawn": self.withdrawn,
            "pending": self.pending,
            "expired": self.expired,
            "gpc_opt_outs": self.gpc_opt_outs,
            "opt_in_rate": self.opt_in_rate,
            "withdrawal_rate": self.withdrawal_rate,
            "gpc_share": self.gpc_share,
        }


def period_start(moment: datetime, interval: str) -> date:
    """The first day of the period holding ``moment`` (UTC)."""
    day = moment.date()
    if interval == "day":
        return day
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    raise ValueError(f"interval must be one of {', '.join(INTERVALS)}")


def key_of(choice: Choice, by: str) -> str:
    """The value of dimension ``by`` for a choice."""
    if by not in DIMENSIONS:
        raise ValueError(f"by must be one of {', '.join(DIMENSIONS)}")
    value: str | None = getattr(choice, by)
    return value if value is not None else NONE_KEY


def tally(choices: Iterable[Choice], *, interval: str, by: str) -> tuple[list[Tally], Tally]:
    """Tallies per (period, key), in period then key order, and the overall tally."""
    tallies: dict[tuple[date, str], Tally] = {}
    overall = Tally(period="all", key="all")
    for choice in choices:
        start = period_start(choice.occurred_at, interval)
        key = key_of(choice, by)
        found = tallies.get((start, key))
        if found is None:
            found = tallies[(start, key)] = Tally(period=start.isoformat(), key=key)
        found.add(choice)
        overall.add(choice)
    return [tallies[k] for k in sorted(tallies)], overall
