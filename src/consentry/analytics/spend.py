"""Marketing spend per channel and month, for customer acquisition cost. Pure parsing and checks.

Entries come as JSON (``{"month": "2026-03", "channel": "google_ads", "amount": "1250.00"}``) or
as CSV with the header ``month,channel,amount``. Amounts are in the workspace's reporting
currency, non-negative, with at most two decimals; a bad entry is named by its index (JSON) or
line (CSV) and nothing is stored.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from consentry.errors import FieldError, Invalid

MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
MAX_ENTRIES = 5000
MAX_CENTS = 10**14
COLUMNS = ("month", "channel", "amount")


@dataclass(frozen=True, slots=True)
class Spend:
    """Spend of one channel in one month, in cents."""

    month: str
    channel: str
    cents: int


def _entry(raw: Mapping[str, object], where: str) -> tuple[Spend | None, list[FieldError]]:
    errors: list[FieldError] = []
    month = str(raw.get("month") or "").strip()
    if not MONTH.match(month):
        errors.append(FieldError(f"{where}month", "must be YYYY-MM"))
    channel = str(raw.get("channel") or "").strip().lower()
    if not channel or len(channel) > 50:
        errors.append(FieldError(f"{where}channel", "1 to 50 characters"))
    cents = 0
    try:
        amount = Decimal(str(raw.get("amount")).strip())
        if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
            raise InvalidOperation
        cents = int(amount * 100)
        if cents >= MAX_CENTS:
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        errors.append(FieldError(f"{where}amount", "a non-negative amount, at most two decimals"))
    if errors:
        return None, errors
    return Spend(month=month, channel=channel, cents=cents), []


def check(entries: Iterable[Mapping[str, object]], *, label: str = "entries") -> list[Spend]:
    """Entries checked all or nothing; the same month and channel twice is refused."""
    found: list[Spend] = []
    errors: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    for i, raw in enumerate(entries):
        if i >= MAX_ENTRIES:
            raise Invalid("too many entries", [FieldError(label, f"at most {MAX_ENTRIES}")])
        where = f"{label}.{i}." if label != "line" else f"line {i + 2}: "
        spend, problems = _entry(raw, where)
        errors.extend(problems)
        if spend is not None:
            key = (spend.month, spend.channel)
            if key in seen:
                errors.append(FieldError(f"{where}month", "this month and channel twice"))
            seen.add(key)
            found.append(spend)
    if errors:
        raise Invalid("marketing spend refused", errors)
    return found


def parse_csv(text: str) -> list[Spend]:
    """Spend from CSV text with the header ``month,channel,amount`` (any column order)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise Invalid(
            "the CSV lacks columns", [FieldError("header", f"missing {', '.join(missing)}")]
        )
    reader.fieldnames = header
    return check(reader, label="line")
