"""Retention policies: how long each category of data is kept (GDPR Art. 5(1)(e)), pure rules.

A workspace has one policy per category; a category without a period is kept until erased.

- ``events``, 395 days (13 months): raw events, by event time;
- ``abandoned_carts``, 90 days: carts that never became an order, by their last change;
- ``inactive_customers``, 1095 days (36 months): people not seen for the period are erased as by
  a request (invoices kept pseudonymised under the legal hold), but may come back at once;
- ``identity_warnings``, 90 days: refused identity links, by time.

What is deleted is deleted for good: a run never undoes. ``consentry retention run --dry-run``
reports what would go.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from consentry.errors import FieldError

CATEGORIES: dict[str, str] = {
    "events": "raw events (page views, actions, identify calls), by event time",
    "abandoned_carts": "carts that never became an order, by their last change",
    "inactive_customers": "people not seen for the period: erased, invoices kept under the hold",
    "identity_warnings": "refused identity links (caps, blocks), by time",
}
DEFAULT_DAYS: dict[str, int | None] = {
    "events": 395,
    "abandoned_carts": 90,
    "inactive_customers": 1095,
    "identity_warnings": 90,
}
MIN_DAYS = 1
MAX_DAYS = 36500
# the fewest days a period may have where deleting too early hurts (a typo of 3 for 30)
FLOORS = {"inactive_customers": 30, "events": 7}


@dataclass(frozen=True, slots=True)
class Policy:
    """How long a workspace keeps each category (None: until erased)."""

    days: Mapping[str, int | None]

    def cutoff(self, category: str, now: datetime) -> datetime | None:
        """Data of ``category`` older than this goes (None: kept)."""
        days = self.days.get(category)
        return None if days is None else now - timedelta(days=days)

    def document(self) -> dict[str, Any]:
        return {
            "policies": [
                {"category": c, "days": self.days.get(c), "description": CATEGORIES[c]}
                for c in CATEGORIES
            ]
        }


DEFAULT_POLICY = Policy(dict(DEFAULT_DAYS))


def policy_of(stored: Mapping[str, Any] | None) -> Policy:
    """The policy a workspace stored (the defaults for what it did not set)."""
    days: dict[str, int | None] = dict(DEFAULT_DAYS)
    for category, value in (stored or {}).items():
        if category in CATEGORIES:
            days[category] = value if value is None else int(value)
    return Policy(days)


def changed(current: Policy, changes: Mapping[str, Any]) -> tuple[Policy, list[FieldError]]:
    """``current`` with ``changes`` (category -> days or None) applied, or the field errors."""
    errors: list[FieldError] = []
    days = dict(current.days)
    for category, value in changes.items():
        field = f"policies.{category}"
        if category not in CATEGORIES:
            errors.append(FieldError(field, f"not a category: one of {', '.join(CATEGORIES)}"))
        elif value is None:
            days[category] = None
        elif isinstance(value, bool) or not isinstance(value, int):
            errors.append(FieldError(field, "a whole number of days, or null to keep"))
        elif not FLOORS.get(category, MIN_DAYS) <= value <= MAX_DAYS:
            low = FLOORS.get(category, MIN_DAYS)
            errors.append(FieldError(field, f"between {low} and {MAX_DAYS} days"))
        else:
            days[category] = value
    return Policy(days), errors


@dataclass(frozen=True, slots=True)
class CategoryRun:
    """What a run did (or, dry, would do) to one category."""

    category: str
    days: int | None
    cutoff: datetime | None
    count: int


def report(runs: list[CategoryRun], *, dry_run: bool, at: datetime) -> dict[str, Any]:
    """The JSON form of a run."""
    return {
        "dry_run": dry_run,
        "at": at.isoformat(),
        "categories": [
            {
                "category": r.category,
                "days": r.days,
                "cutoff": r.cutoff.isoformat() if r.cutoff else None,
                "would_delete" if dry_run else "deleted": r.count,
            }
            for r in runs
        ],
    }
