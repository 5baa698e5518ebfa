"""Countries as ISO 3166-1 alpha-2, from alpha-2, alpha-3, numeric codes or English names.

The code table is the ``iso3166`` package (MIT, self-contained, no dependencies). The aliases
below add the short and common English names people type ("USA", "UK", "Russia", "South Korea",
"Holland") and a few native names frequent in European shops; they are curated here.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

from iso3166 import countries as _iso

from consentry.profiles.models import COUNTRY_CODE_ALIASES, JUNK_VALUES
from consentry.quality.problems import Normalised, Outcome, Problem, problem
from consentry.quality.text import clean_text

# Codes outside ISO 3166-1 that are in common use for a country ISO does list (UK: exceptionally
# reserved for the United Kingdom; EL: Greece in EU usage); identity resolution reads a phone's
# region with the same table.
CODE_ALIASES = COUNTRY_CODE_ALIASES
# Kosovo has no ISO code; XK is the user-assigned code the EU, the IMF and CLDR use (iso3166
# 3.x lists it; kept here so an older table does not refuse it).
EXTRA_ALPHA2 = frozenset({"XK"})

NAME_ALIASES = {
    "america": "US",
    "united states": "US",
    "us": "US",
    "usa": "US",
    "u s": "US",
    "u s a": "US",
    "united kingdom": "GB",
    "great britain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "u k": "GB",
    "holland": "NL",
    "the netherlands": "NL",
    "russia": "RU",
    "south korea": "KR",
    "korea": "KR",
    "republic of korea": "KR",
    "north korea": "KP",
    "vietnam": "VN",
    "iran": "IR",
    "syria": "SY",
    "laos": "LA",
    "moldova": "MD",
    "tanzania": "TZ",
    "venezuela": "VE",
    "bolivia": "BO",
    "czech republic": "CZ",
    "ivory coast": "CI",
    "turkey": "TR",
    "turkiye": "TR",
    "taiwan": "TW",
    "vatican": "VA",
    "vatican city": "VA",
    "macedonia": "MK",
    "swaziland": "SZ",
    "burma": "MM",
    "cape verde": "CV",
    "east timor": "TL",
    "brunei": "BN",
    "micronesia": "FM",
    "palestine": "PS",
    "democratic republic of the congo": "CD",
    "dr congo": "CD",
    "drc": "CD",
    "republic of the congo": "CG",
    "uae": "AE",
    "emirates": "AE",
    "kosovo": "XK",
    # Native names common in European e-commerce data.
    "deutschland": "DE",
    "osterreich": "AT",
    "schweiz": "CH",
    "suisse": "CH",
    "svizzera": "CH",
    "nederland": "NL",
    "belgie": "BE",
    "belgique": "BE",
    "espana": "ES",
    "italia": "IT",
    "sverige": "SE",
    "danmark": "DK",
    "norge": "NO",
    "polska": "PL",
    "eire": "IE",
    "brasil": "BR",
    "suomi": "FI",
    "cesko": "CZ",
}

_NON_WORD = re.compile(r"[^a-z0-9]+")


def name_key(text: str) -> str:
    """A country name folded for look-up: no accents, no case, words joined by single spaces,
    "&" read as "and"."""
    decomposed = unicodedata.normalize("NFKD", text.replace("&", " and "))
    ascii_text = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    return " ".join(_NON_WORD.sub(" ", ascii_text).split())


def _names() -> dict[str, str]:
    index: dict[str, str] = {}
    short: dict[str, set[str]] = {}
    for c in _iso:
        for name in {c.name, c.apolitical_name}:
            index[name_key(name)] = c.alpha2
            if ", " in name:  # "Korea, Republic of" -> "Republic of Korea" and "Korea"
                head, tail = name.split(", ", 1)
                index[name_key(f"{tail} {head}")] = c.alpha2
                short.setdefault(name_key(head), set()).add(c.alpha2)
    for key, codes in short.items():
        if len(codes) == 1:
            index.setdefault(key, next(iter(codes)))
    for key, code in NAME_ALIASES.items():
        index[name_key(key)] = code
    return index


_BY_NAME = _names()
ALPHA2 = frozenset(c.alpha2 for c in _iso) | EXTRA_ALPHA2


def _p(code: str, message: str) -> Problem:
    return problem(f"country.{code}", message)


@lru_cache(maxsize=2048)
def _lookup(text: str) -> str | Problem:
    upper = text.upper()
    if len(upper) == 2 and upper.isascii() and upper.isalpha():
        if upper in ALPHA2:
            return upper
        if upper in CODE_ALIASES:
            return CODE_ALIASES[upper]
        return _p("unknown_code", "The code is not an ISO 3166-1 country code.")
    if len(upper) == 3 and upper.isascii() and upper.isalnum():
        country = _iso.get(upper, None)
        if country is not None:
            return country.alpha2
        if upper == "UNK":  # Kosovo on travel documents
            return "XK"
    found = _BY_NAME.get(name_key(text))
    if found is not None:
        return found
    return _p("unknown", "The value is not a country code or a known country name.")


def validate_country(value: Any) -> Outcome[str]:
    """ISO 3166-1 alpha-2 (upper case) from a code or an English name ("Germany", "DEU", "de",
    "276", "United States of America", "UK" -> "GB"). ``XK`` (Kosovo) is accepted too."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return _p("not_text", "The country is not text.")
    return _validate(f"{value:03d}" if isinstance(value, int) and value >= 0 else str(value))


@lru_cache(maxsize=4096)
def _validate(raw: str) -> Outcome[str]:
    """:func:`validate_country` of text; cached, as a population holds few distinct values."""
    text = clean_text(raw)
    if not text:
        return _p("empty", "The country is empty.")
    if text.lower() in JUNK_VALUES - {"na"}:  # NA is Namibia
        return _p("placeholder", "The country is a placeholder, not a country.")
    if len(text) > 100:
        return _p("unknown", "The value is not a country code or a known country name.")
    found = _lookup(text)
    if isinstance(found, Problem):
        return found
    return Normalised(found)
