"""Identifiers and the pure rules of deterministic identity resolution.

An identifier is a (type, value) pair: ``user_id``, ``anonymous_id``, ``email``, ``phone`` or an
external id type from ``context.externalIds``. Values are normalised before they are compared, and
junk values (``null``, ``guest``, ``0``, all zeros, ...) never link anything.

These are also the base normalisers of ``consentry.quality`` (text, junk, mail domains, country
code aliases), so the audit judges values the way identity resolution reads them. A change
here changes the blind index of stored identifiers (``identifiers.value``, the suppression
list): a value that normalised to something before must normalise to the same thing after,
or existing identifiers stop matching. Changes only ever accept values that were refused
before, except where their docstring says otherwise.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import idna
import phonenumbers

USER_ID = "user_id"
ANONYMOUS_ID = "anonymous_id"
EMAIL = "email"
PHONE = "phone"

# Lower number wins: the identifier that names a profile when several profiles match.
PRIORITY = {USER_ID: 0, EMAIL: 1, PHONE: 2, ANONYMOUS_ID: 9}

# Traits that name a person directly: stored sealed (platform.vault), never in clear. Compared
# without case, "_" or "-" ("first_name" and "firstName" are the same trait). Traits such as
# country or plan stay clear for analysis.
PERSONAL_TRAITS = frozenset(
    {
        "address",
        "avatar",
        "birthdate",
        "birthday",
        "dateofbirth",
        "dob",
        "email",
        "emailaddress",
        "familyname",
        "firstname",
        "fullname",
        "givenname",
        "ip",
        "ipaddress",
        "lastname",
        "middlename",
        "name",
        "phone",
        "phonenumber",
        "postalcode",
        "postcode",
        "street",
        "streetaddress",
        "surname",
        "username",
        "zip",
        "zipcode",
    }
)


def trait_slug(key: str) -> str:
    """A trait name folded for comparison: lower case, without "_", "-" or spaces."""
    return key.lower().replace("_", "").replace("-", "").replace(" ", "")


def trait_field(key: str) -> str:
    """The field a trait's sealed value is bound to."""
    return f"trait:{str(key)[:200]}"


def is_personal_trait(key: str) -> bool:
    """Whether a trait names a person directly."""
    return trait_slug(key) in PERSONAL_TRAITS


JUNK_VALUES = frozenset(
    {
        "",
        "null",
        "none",
        "nil",
        "undefined",
        "nan",
        "anonymous",
        "anon",
        "guest",
        "unknown",
        "n/a",
        "na",
        "-1",
        "test",
        "[object object]",
        "false",
        "true",
    }
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_EXTERNAL_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# A value is junk when it holds no letter or digit other than zero: the fast path for ASCII.
_MEANINGFUL = re.compile(r"[1-9a-z]")

# Country codes in common use outside ISO 3166-1 for a country ISO lists: UK is reserved by ISO
# for the United Kingdom (GB), EL is Greece (GR) in EU usage. libphonenumber knows neither.
COUNTRY_CODE_ALIASES = {"UK": "GB", "EL": "GR"}


@dataclass(frozen=True, slots=True, order=True)
class Identifier:
    """A normalised identifier."""

    type: str
    value: str

    @property
    def priority(self) -> int:
        """Lower is stronger evidence of who the person is."""
        return PRIORITY.get(self.type, 3)


def _meaningful(ch: str) -> bool:
    """A letter or digit of any script, but not a zero ("0", "٠", "०", "〇", ...)."""
    return ch.isalnum() and unicodedata.numeric(ch, None) != 0


def is_junk(value: str) -> bool:
    """True for values that must never link profiles: placeholders, zeros, -1, empty.

    A value is meaningful when it holds a letter or a non-zero digit of any script, so "Иван",
    "王伟" and "Γιώργος" are ids like "ivan" (before, only [1-9a-z] counted: every value
    without a Latin letter was junk and never linked).
    """
    text = value.strip().lower()
    if text in JUNK_VALUES:
        return True
    if _MEANINGFUL.search(text) is not None:
        return False
    return text.isascii() or not any(_meaningful(ch) for ch in text)


def normalize_text(value: str) -> str:
    """Unicode NFKC and trimmed."""
    return unicodedata.normalize("NFKC", value).strip()


@lru_cache(maxsize=4096)
def ascii_domain(domain: str) -> str | None:
    """The ASCII (punycode) form of a domain name by IDNA 2008 with the UTS #46 mapping
    ("Bücher.de" -> "xn--bcher-kva.de"), or None when it is not a valid internationalised
    domain name. An ASCII domain is checked too ("xn--" labels must decode)."""
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return None


def normalize_email(value: Any) -> str | None:
    """Trimmed, NFKC, lower-cased email, its domain in punycode; None when it is not an email
    address.

    The domain is IDNA-encoded, so "jane@bücher.de" and "jane@xn--bcher-kva.de" are one
    identifier. A non-ASCII domain that is no valid IDN is kept as it is (as it always was).
    Note: an address with a non-ASCII domain stored by an earlier release was indexed in its
    Unicode form; it now normalises to the punycode form (see docs/quality.md).
    """
    if not isinstance(value, str):
        return None
    email = normalize_text(value).lower()
    if not _EMAIL.match(email) or len(email) > 320:
        return None
    local, domain = email.split("@", 1)
    if is_junk(local):
        return None
    if not domain.isascii():
        # IDNA's UTS #46 mapping normalises by itself, and differs from NFKC for a few
        # characters (NFKC turns U+1D6D3, a mathematical final sigma, into "ς"; UTS #46 into
        # "σ", as a registry does): the domain is mapped from what was given when it is the
        # same part of the address, else (an "@" that NFKC made) from the normalised text.
        given = value.strip().rpartition("@")[2]
        encoded = ascii_domain(given) if normalize_text(given).lower() == domain else None
        if encoded is None:
            encoded = ascii_domain(domain)
        if encoded is not None:
            return f"{local}@{encoded}"
    return email


def phone_region(country: Any, default_region: str) -> str:
    """The region to read a national phone number in: a two-letter country code (any case,
    "UK" read as GB, "EL" as GR), else ``default_region`` (aliases read the same way)."""
    if isinstance(country, str) and len(code := country.strip().upper()) == 2:
        return COUNTRY_CODE_ALIASES.get(code, code)
    code = default_region.strip().upper()
    return COUNTRY_CODE_ALIASES.get(code, code)


def normalize_phone(value: Any, default_region: str = "US") -> str | None:
    """E.164 form of a valid phone number, or None. ``default_region`` is where a number
    without ``+`` is dialled ("UK" is read as GB)."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    return _phone(value, phone_region(None, default_region))


@lru_cache(maxsize=8192, typed=True)
def _phone(value: str | int, default_region: str) -> str | None:
    """:func:`normalize_phone` of a str or int; kept because parsing costs tens of µs and a
    person's number comes back with every identify call. Pure: same answer for same input."""
    text = normalize_text(str(value))
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, default_region.upper())
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def normalize_id(value: Any) -> str | None:
    """A userId/anonymousId as text, or None when it is junk."""
    if value is None or isinstance(value, bool):
        return None
    text = normalize_text(str(value))
    if not text or is_junk(text) or len(text) > 512:
        return None
    return text


def _region_of(traits: Mapping[str, Any], default_region: str) -> str:
    address = traits.get("address")
    country = address.get("country") if isinstance(address, Mapping) else None
    return phone_region(country or traits.get("country"), default_region)


def _external_ids(context: Mapping[str, Any]) -> Iterable[Identifier]:
    entries = context.get("externalIds")
    if not isinstance(entries, list):
        return
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        kind = str(entry.get("type", "")).strip().lower()
        value = normalize_id(entry.get("id"))
        if value and _EXTERNAL_TYPE.match(kind) and kind not in PRIORITY:
            yield Identifier(kind, value)


def message_traits(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The traits a message carries: ``context.traits`` overlaid by top-level ``traits``.

    Segment's libraries send identify traits at the top level; RudderStack's send them in
    ``context.traits`` only. Both are the same person's traits.
    """
    raw_context = payload.get("context")
    context: Mapping[str, Any] = raw_context if isinstance(raw_context, Mapping) else {}
    traits: dict[str, Any] = {}
    for source in (context.get("traits"), payload.get("traits")):
        if isinstance(source, Mapping):
            traits.update(source)
    return traits


def extract_identifiers(payload: Mapping[str, Any], default_region: str = "US") -> list[Identifier]:
    """Every usable identifier a message carries, strongest first, without duplicates."""
    raw_context = payload.get("context")
    context: Mapping[str, Any] = raw_context if isinstance(raw_context, Mapping) else {}
    traits = message_traits(payload)
    found: set[Identifier] = set()
    if (user_id := normalize_id(payload.get("userId"))) is not None:
        found.add(Identifier(USER_ID, user_id))
    if (anonymous_id := normalize_id(payload.get("anonymousId"))) is not None:
        found.add(Identifier(ANONYMOUS_ID, anonymous_id))
    if (email := normalize_email(traits.get("email"))) is not None:
        found.add(Identifier(EMAIL, email))
    raw_phone = traits.get("phone")
    if raw_phone is not None:  # normalize_phone(None) is None: the region is not needed
        phone = normalize_phone(raw_phone, _region_of(traits, default_region))
        if phone is not None:
            found.add(Identifier(PHONE, phone))
    found.update(_external_ids(context))
    return sorted(found, key=lambda i: (i.priority, i.type, i.value))


def merge_allowed(
    counts_a: Mapping[str, int], counts_b: Mapping[str, int], cap: Callable[[str], int]
) -> str | None:
    """None when two profiles may merge, else the reason: the union would break a cap."""
    union = Counter(counts_a) + Counter(counts_b)
    for kind, count in sorted(union.items()):
        if count > cap(kind):
            return f"merge would give {count} {kind} identifiers, over the cap of {cap(kind)}"
    return None


def latest_traits(history: Iterable[tuple[str, Any, Any, int]]) -> dict[str, tuple[Any, Any]]:
    """Current trait values from history rows ``(key, value, observed_at, seq)``.

    The latest observation by event time wins; ties go to the later write (``seq``).
    """
    best: dict[str, tuple[Any, Any, int]] = {}
    for key, value, observed_at, seq in history:
        current = best.get(key)
        if current is None or (observed_at, seq) >= (current[1], current[2]):
            best[key] = (value, observed_at, seq)
    return {k: (v[0], v[1]) for k, v in best.items()}
