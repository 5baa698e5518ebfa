"""Postcodes: the format of each main country, in its canonical spacing and case.

The rules check the *format* (and the ranges a format implies, such as Spanish provinces 01-52 or
the letters Canada never uses); they do not prove that a postcode is in use. Sources: each postal
operator's published format (USPS, Canada Post, Royal Mail PAF guide, Deutsche Post, La Poste,
PostNL, bpost, Correos, Poste Italiane, Österreichische Post, Swiss Post, PostNord, Posten,
Poczta Polska, Australia Post, Japan Post, Correios, Eircode), as summarised in the Universal
Postal Union's addressing guides.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consentry.quality.problems import Normalised, Outcome, Problem, problem, warning
from consentry.quality.text import clean_text

MAX_INPUT = 32


@dataclass(frozen=True, slots=True)
class PostcodeRule:
    """``pattern`` matches the postcode with spaces and hyphens removed and in upper case;
    ``render`` puts the canonical separators back from its groups."""

    pattern: re.Pattern[str]
    render: Callable[[re.Match[str]], str]
    example: str
    prefixes: tuple[str, ...] = ()  # country prefixes written before the code ("D-10115")


def _join(sep: str = "") -> Callable[[re.Match[str]], str]:
    return lambda m: sep.join(g for g in m.groups() if g)


def _r(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"^{pattern}$")


# Canada: no D, F, I, O, Q, U anywhere; no W or Z first.
_CA_FIRST = "ABCEGHJKLMNPRSTVXY"
_CA_OTHER = "ABCEGHJKLMNPRSTVWXYZ"
# United Kingdom (BS 7666): outward code A9, A99, AA9, AA99, A9A, AA9A; inward code 9AA whose
# letters are never C, I, K, M, O or V. GIR 0AA is Girobank's historical code, still valid.
_GB_OUTWARD = (
    r"(?:[A-PR-UWYZ][0-9]{1,2}|[A-PR-UWYZ][A-HK-Y][0-9]{1,2}"
    r"|[A-PR-UWYZ][0-9][A-HJKPSTUW]|[A-PR-UWYZ][A-HK-Y][0-9][ABEHMNPRVWXY])"
)
# Netherlands: SA, SD and SS are never issued.
# Ireland (Eircode): routing key (a letter and two digits, or D6W) + a four-character identifier
# drawn from 0-9 and the letters A C D E F H K N P R T V W X Y.
_IE_CHARS = "0-9ACDEFHKNPRTVWXY"

RULES: dict[str, PostcodeRule] = {
    "US": PostcodeRule(
        _r(r"([0-9]{5})([0-9]{4})?"),
        lambda m: m[1] + (f"-{m[2]}" if m[2] else ""),
        "94105-1804",
    ),
    "CA": PostcodeRule(
        _r(f"([{_CA_FIRST}][0-9][{_CA_OTHER}])([0-9][{_CA_OTHER}][0-9])"), _join(" "), "K1A 0B1"
    ),
    "GB": PostcodeRule(
        _r(rf"(?:({_GB_OUTWARD})([0-9][ABD-HJLNP-UW-Z]{{2}})|(GIR)(0AA))"), _join(" "), "SW1A 1AA"
    ),
    "IE": PostcodeRule(
        _r(rf"([AC-FHKNPRTV-Y][0-9]{{2}}|D6W)([{_IE_CHARS}]{{4}})"), _join(" "), "D02 X285"
    ),
    "DE": PostcodeRule(_r(r"(0[1-9][0-9]{3}|[1-9][0-9]{4})"), _join(), "10115", ("DE", "D")),
    "FR": PostcodeRule(_r(r"([0-9]{5})"), _join(), "75008", ("FR", "F")),
    "NL": PostcodeRule(
        _r(r"([1-9][0-9]{3})([A-RT-Z][A-Z]|S[BCE-RT-Z])"), _join(" "), "1012 AB", ("NL",)
    ),
    "BE": PostcodeRule(_r(r"([1-9][0-9]{3})"), _join(), "1000", ("BE", "B")),
    "ES": PostcodeRule(
        _r(r"((?:0[1-9]|[1-4][0-9]|5[0-2])[0-9]{3})"), _join(), "28013", ("ES", "E")
    ),
    "IT": PostcodeRule(_r(r"([0-9]{5})"), _join(), "00184", ("IT", "I")),
    "AT": PostcodeRule(_r(r"([1-9][0-9]{3})"), _join(), "1010", ("AT", "A")),
    "CH": PostcodeRule(_r(r"([1-9][0-9]{3})"), _join(), "8001", ("CH",)),
    "LI": PostcodeRule(_r(r"(94[89][0-9])"), _join(), "9490", ("LI", "FL")),
    "SE": PostcodeRule(_r(r"([1-9][0-9]{2})([0-9]{2})"), _join(" "), "114 55", ("SE", "S")),
    "DK": PostcodeRule(_r(r"([0-9]{4})"), _join(), "1050", ("DK",)),
    "NO": PostcodeRule(_r(r"([0-9]{4})"), _join(), "0150", ("NO", "N")),
    "FI": PostcodeRule(_r(r"([0-9]{5})"), _join(), "00100", ("FI", "FIN")),
    "PL": PostcodeRule(_r(r"([0-9]{2})([0-9]{3})"), _join("-"), "00-950", ("PL",)),
    "PT": PostcodeRule(_r(r"([1-9][0-9]{3})([0-9]{3})"), _join("-"), "1000-205", ("PT", "P")),
    "LU": PostcodeRule(_r(r"([0-9]{4})"), _join(), "1009", ("LU", "L")),
    "CZ": PostcodeRule(_r(r"([1-7][0-9]{2})([0-9]{2})"), _join(" "), "110 00", ("CZ",)),
    "SK": PostcodeRule(_r(r"([089][0-9]{2})([0-9]{2})"), _join(" "), "811 01", ("SK",)),
    "AU": PostcodeRule(_r(r"([0-9]{4})"), _join(), "2000"),
    "NZ": PostcodeRule(_r(r"([0-9]{4})"), _join(), "6011"),
    "JP": PostcodeRule(_r(r"([0-9]{3})([0-9]{4})"), _join("-"), "100-0001"),
    "BR": PostcodeRule(_r(r"([0-9]{5})([0-9]{3})"), _join("-"), "01310-100"),
    "MX": PostcodeRule(_r(r"([0-9]{5})"), _join(), "06000"),
    "IN": PostcodeRule(_r(r"([1-9][0-9]{5})"), _join(), "110001"),
}

# Countries with no postcodes at all (a value there is noise, not an error of format).
NO_POSTCODE = frozenset({"AE", "AG", "AO", "AW", "BS", "BZ", "FJ", "HK", "QA", "ZW"})

_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212\u30fc.]")
_GENERIC = re.compile(r"^[0-9A-Z]{2,10}$")


def _p(code: str, message: str) -> Problem:
    return problem(f"postcode.{code}", message)


def _strip_prefix(compact: str, prefixes: tuple[str, ...], rule: PostcodeRule) -> str:
    for prefix in prefixes:
        if compact.startswith(prefix) and rule.pattern.match(compact[len(prefix) :]):
            return compact[len(prefix) :]
    return compact


def validate_postcode(value: Any, country: str | None) -> Outcome[str]:
    """A postcode in its country's canonical form ("sw1a1aa", GB -> "SW1A 1AA").

    For a country without a rule here, the code is cleaned (upper case, one space between
    groups) and flagged ``postcode.unchecked`` rather than refused.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        return _p("not_text", "The postcode is not text.")
    text = clean_text(str(value)).upper()
    if text.startswith("〒"):  # Japanese postal mark
        text = text[1:].strip()
    if not text:
        return _p("empty", "The postcode is empty.")
    if len(text) > MAX_INPUT:
        return _p("too_long", "The postcode is too long.")
    region = (country or "").strip().upper()
    if not region:
        return _p("country_needed", "A postcode can only be checked with its country.")
    if region in NO_POSTCODE:
        return _p("not_used", "The country does not use postcodes.")
    compact = _SEPARATORS.sub("", text)
    rule = RULES.get(region)
    if rule is None:
        if not _GENERIC.match(compact):
            return _p("format", "The postcode has characters or a length no postcode has.")
        tidy = " ".join(text.split())
        return Normalised(
            tidy, (warning("postcode.unchecked", "There is no postcode rule for this country."),)
        )
    compact = _strip_prefix(compact, rule.prefixes, rule)
    match = rule.pattern.match(compact)
    if match is None:
        return _p("format", "The postcode does not have the format of its country.")
    return Normalised(rule.render(match))
