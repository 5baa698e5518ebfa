"""Pure parsers for the cells of imported CSV files: money, dates, counts, flags, tags, slugs.

Every parser takes the text of one cell and returns ``None`` for an empty cell, the parsed value,
or raises :class:`ValueError` with a reason a shop owner can act on. Nothing else is raised.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal

MAX_AMOUNT = Decimal(10) ** 12  # amounts stay exact as JSON numbers (at most 15 digits)
MAX_DECIMALS = 3

_CURRENCY_AFFIX = re.compile(r"^(?:[A-Za-z]{3}\s*)?(.*?)(?:\s*[A-Za-z]{3})?$")
_SYMBOLS = str.maketrans("", "", "$€£¥₹₩₽₺₪฿ \u00a0\u202f\u2009'’")
_DIGITS_AND_SEPARATORS = re.compile(r"^[0-9.,]*[0-9][0-9.,]*$")
_GROUPED = {sep: re.compile(rf"^[0-9]{{1,3}}(?:{re.escape(sep)}[0-9]{{3}})+$") for sep in ",."}
_DATE_FORMATS = (
    "%Y-%m-%d %H:%M:%S %z",  # Shopify: 2024-03-01 10:15:22 +0100
    "%Y-%m-%d %H:%M %z",
    "%Y-%m-%d %H:%M:%S %Z",  # 2024-03-01 10:15:22 UTC
)
_TRUE = frozenset({"yes", "y", "true", "t", "1", "subscribed", "opted_in", "x"})
_FALSE = frozenset({"no", "n", "false", "f", "0", "unsubscribed", "not_subscribed", "opted_out"})


def clean(value: str | None) -> str:
    """A cell's text, trimmed, without NUL characters (PostgreSQL refuses them in JSON)."""
    if value is None:
        return ""
    return value.replace("\x00", "").strip()


def strip_apostrophe(value: str) -> str:
    """Drop the leading ``'`` that spreadsheets and Shopify put before numbers kept as text."""
    return value.lstrip("'’").strip()


def parse_money(text: str) -> Decimal | None:
    """An amount such as ``12.50``, ``1,234.56``, ``1.234,56``, ``€ 12,50`` or ``-3``.

    The last of ``.`` and ``,`` is the decimal mark when both appear. A lone separator followed
    by exactly three digits groups thousands when it is a comma (``1,234`` is 1234) and is the
    decimal mark when it is a dot (``1.234`` is 1.234). Exponents, NaN and infinities are refused.
    """
    body = clean(text)
    if not body:
        return None
    negative, body = _sign(body)
    match = _CURRENCY_AFFIX.match(body)
    body = (match.group(1) if match else body).translate(_SYMBOLS)
    if not _DIGITS_AND_SEPARATORS.match(body):
        raise ValueError("not an amount: use digits with . or , as decimal mark")
    amount = Decimal(_plain_number(body))
    if amount >= MAX_AMOUNT:
        raise ValueError("amount too large")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_DECIMALS:
        raise ValueError(f"amount has more than {MAX_DECIMALS} decimals")
    return -amount if negative else amount


def _sign(body: str) -> tuple[bool, str]:
    if body.startswith("(") and body.endswith(")"):
        return True, body[1:-1].strip()
    if body[:1] in "-+":
        return body[0] == "-", body[1:].strip()
    if body.endswith("-"):
        return True, body[:-1].strip()
    return False, body


def _plain_number(body: str) -> str:
    """``1.234,56`` -> ``1234.56``; raises ValueError when the grouping is inconsistent."""
    last_dot, last_comma = body.rfind("."), body.rfind(",")
    if last_dot >= 0 and last_comma >= 0:
        mark = "." if last_dot > last_comma else ","
        group = "," if mark == "." else "."
        whole, _, fraction = body.rpartition(mark)
        return _ungroup(whole, group) + "." + _fraction(fraction)
    if last_comma >= 0:
        if body.count(",") == 1 and len(body) - last_comma - 1 != 3:
            whole, _, fraction = body.partition(",")
            return (whole or "0") + "." + _fraction(fraction)
        return _ungroup(body, ",")
    if body.count(".") > 1:
        return _ungroup(body, ".")
    return body if not body.startswith(".") else "0" + body


def _ungroup(whole: str, sep: str) -> str:
    if sep not in whole:
        if not whole.isdigit():
            raise ValueError("not an amount: misplaced separator")
        return whole
    if not _GROUPED[sep].match(whole):
        raise ValueError("not an amount: thousands must be grouped by three digits")
    return whole.replace(sep, "")


def _fraction(fraction: str) -> str:
    if not fraction.isdigit():
        raise ValueError("not an amount: misplaced separator")
    return fraction


def parse_count(text: str) -> int | None:
    """A whole number of at least zero, such as a quantity (``2``, ``2.0``, ``1,000``)."""
    amount = parse_money(text)
    if amount is None:
        return None
    if amount < 0 or amount != amount.to_integral_value():
        raise ValueError("not a whole number of at least 0")
    return int(amount)


def parse_date(text: str) -> datetime | None:
    """A point in time, timezone-aware: ISO 8601 or Shopify's ``2024-03-01 10:15:22 +0100``.

    A date without a time is midnight; a time without an offset is taken as UTC.
    """
    body = clean(text)
    if not body:
        return None
    value = _iso(body) or _formatted(body)
    if value is None:
        raise ValueError("not a date: use 2024-03-01, 2024-03-01T10:15:22Z or similar")
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise ValueError("date out of range") from exc


def _iso(body: str) -> datetime | None:
    if not body[:4].isascii() or not body[:4].isdigit():
        return None
    try:
        return datetime.fromisoformat(body)
    except ValueError:
        return None


def _formatted(body: str) -> datetime | None:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(body, fmt)
        except ValueError:
            continue
    return None


def parse_flag(text: str) -> bool | None:
    """``yes``/``no`` (Shopify), ``true``/``false``, ``1``/``0``; None when empty or unknown."""
    word = re.sub(r"[\s-]+", "_", clean(text).lower())
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    return None


def split_tags(text: str) -> list[str]:
    """Shopify's comma-separated tags as a list without blanks or repeats."""
    return list(dict.fromkeys(t.strip() for t in clean(text).split(",") if t.strip()))


def slug(name: str) -> str:
    """A stable product id made from a product name (``Blue Shirt (L)`` -> ``blue-shirt-l``)."""
    text = unicodedata.normalize("NFKC", name).lower()
    made = re.sub(r"[\W_]+", "-", text).strip("-")[:120].strip("-")
    if made:
        return made
    return "item-" + hashlib.sha256(name.encode()).hexdigest()[:12]
