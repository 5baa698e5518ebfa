"""The rules of audience exports (pure): fields, customer-match normalisation and hashing per
platform, file encoding and k-anonymous summaries. No SQL, no HTTP (docs/audience-exports.md).

An export is either a ``download`` (internal: CSV or JSON with the chosen fields, raw
identifiers allowed) or a ``partner`` export (pseudonymised: normalised, SHA-256-hashed
identifiers in the layout an advertising platform's customer-match upload expects, never a raw
one). The platform layouts follow the platforms' published rules:

- ``google`` (Google Ads Customer Match, "Format your customer data file" and the Google Ads
  API's Customer Match upload): columns ``Email, Phone, First Name, Last Name, Country, Zip``;
  email trimmed and lower-cased, phone in E.164 with its ``+``, names lower-cased with extra
  spaces removed, each SHA-256 hex; country (ISO 3166-1 alpha-2) and zip are sent in clear, as
  Google asks. Google asks to drop the dots of gmail.com/googlemail.com addresses only for
  enhanced conversions, not for Customer Match, so they are kept.
- ``meta`` (Meta Marketing API custom audiences, "Hashing and normalizing data"): schema
  ``EMAIL, PHONE, FN, LN, COUNTRY, ZIP``, every value hashed; email trimmed and lower-cased;
  phone digits only with the country code and no ``+`` or leading zeros; names lower-cased,
  without punctuation or spaces; country lower-case ISO alpha-2; zip lower-case without spaces,
  US codes their first five digits, UK codes area/district/sector ("sw1a1").
- ``generic``: ``email_sha256, phone_sha256, first_name_sha256, last_name_sha256, country,
  postcode_sha256``; phone E.164 with ``+``; country upper-case in clear.

A subject whose traits hold no usable identifier of the chosen fields gives no row (a partner
cannot match it); it is counted as ``no_identifier``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import phonenumbers

from consentry.errors import FieldError
from consentry.profiles.models import normalize_phone
from consentry.quality.countries import validate_country
from consentry.quality.postcodes import validate_postcode
from consentry.quality.problems import Normalised

DOWNLOAD = "download"
PARTNER = "partner"
MODES = (DOWNLOAD, PARTNER)
FILE_FORMATS = ("csv", "json")
PLATFORMS = ("google", "meta", "generic")

PROFILE_ID = "profile_id"
IDENTITY_FIELDS = ("email", "phone", "first_name", "last_name", "country", "postcode")
TRAIT_PREFIX = "traits."
MAX_FIELDS = 50
MAX_TRAIT_KEY = 100

# What each field is, in the processor register's vocabulary (privacy.processors)
CATEGORIES: Mapping[str, str] = {
    PROFILE_ID: "user.unique_id",
    "email": "user.contact.email",
    "phone": "user.contact.phone_number",
    "first_name": "user.name",
    "last_name": "user.name",
    "country": "user.contact.address",
    "postcode": "user.contact.address",
}
DEFAULT_FIELDS: Mapping[str, tuple[str, ...]] = {
    DOWNLOAD: (PROFILE_ID, "email", "phone", "first_name", "last_name", "country"),
    PARTNER: ("email", "phone"),
}
DEFAULT_SUMMARY_BY = ("country",)
NO_IDENTIFIER = "no_identifier"  # a left-out reason: nothing a partner could match on

# --- reading a person's identifiers from their traits ---------------------------------------------

_TRAIT_WORDS: Mapping[str, tuple[tuple[str, ...], ...]] = {
    "email": (("email",),),
    "phone": (("phone",), ("mobile",)),
    "first_name": (("first", "name"),),
    "last_name": (("last", "name"), ("surname",)),
    "name": (("name",),),
    "country": (("country",),),
    "postcode": (("postal", "code"), ("postcode",), ("zip",)),
    "address": (("address",),),
}


def _spellings(words: Sequence[str]) -> list[str]:
    """The usual spellings of a trait name: ``first_name``, ``firstname``, ``first-name``,
    ``first name``, ``firstName``, ``FirstName``, ``First_Name``, ``FIRST_NAME`` (each key
    read is a look-up per person, so the list stays short)."""
    if len(words) == 1:
        return list(dict.fromkeys([words[0], words[0].capitalize(), words[0].upper()]))
    out = [separator.join(words) for separator in ("_", "", "-", " ")]
    out.append(words[0] + "".join(w.capitalize() for w in words[1:]))
    out += ["".join(w.capitalize() for w in words), "_".join(w.capitalize() for w in words)]
    out.append("_".join(w.upper() for w in words))
    return out


SPELLINGS: Mapping[str, tuple[str, ...]] = {
    name: tuple(dict.fromkeys(s for words in options for s in _spellings(words)))
    for name, options in _TRAIT_WORDS.items()
}
TRAIT_KEYS: tuple[str, ...] = tuple(sorted({k for keys in SPELLINGS.values() for k in keys}))
"""Every trait key an export reads to find a person's identifiers."""


@dataclass(frozen=True, slots=True)
class Contact:
    """A person's identifiers as their traits hold them (raw, not normalised)."""

    email: Any = field(default=None, repr=False)
    phone: Any = field(default=None, repr=False)
    first_name: Any = field(default=None, repr=False)
    last_name: Any = field(default=None, repr=False)
    country: str | None = None  # ISO 3166-1 alpha-2, upper case
    postcode: Any = field(default=None, repr=False)


def _first(traits: Mapping[str, Any], name: str) -> Any:
    for key in SPELLINGS[name]:
        value = traits.get(key)
        if value not in (None, ""):
            return value
    return None


def _country(value: Any) -> str | None:
    if value is None:
        return None
    found = validate_country(value)
    return found.value if isinstance(found, Normalised) else None


def contact_from_traits(traits: Mapping[str, Any]) -> Contact:
    """The identifiers in a unified profile's current traits (``address`` may be an object
    holding ``country`` and ``postal_code``; a lone ``name`` is split into first and last)."""
    address = _first(traits, "address")
    inner: Mapping[str, Any] = address if isinstance(address, Mapping) else {}
    first, last = _first(traits, "first_name"), _first(traits, "last_name")
    if first is None and last is None and isinstance(name := _first(traits, "name"), str):
        parts = name.split()
        if len(parts) >= 2:
            first, last = parts[0], parts[-1]
    country = _country(_first(traits, "country")) or _country(_first(inner, "country"))
    return Contact(
        email=_first(traits, "email"),
        phone=_first(traits, "phone"),
        first_name=first,
        last_name=last,
        country=country,
        postcode=_first(traits, "postcode") or _first(inner, "postcode"),
    )


# --- normalisers (each returns the value to hash or send, or None when unusable) ------------------

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_US_ZIP = re.compile(r"^([0-9]{5})")


def sha256_hex(text: str) -> str:
    """SHA-256 of the UTF-8 text, lower-case hex (what every platform takes)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalize_email(value: Any) -> str | None:
    """Trimmed and lower-cased, as Google, Meta and the others ask; None when it is no email
    address (one ``@``, no space, a dot in the domain). NFKC first, so full-width forms of
    the same address give the same hash."""
    if not isinstance(value, str):
        return None
    email = unicodedata.normalize("NFKC", value).strip().lower()
    if len(email) > 320 or not _EMAIL.match(email):
        return None
    return email


def normalize_phone_for(
    value: Any, platform: str, *, country: str | None, default_region: str
) -> str | None:
    """E.164 (``+14155550123``) for ``google`` and ``generic``; for ``meta`` the same digits
    without the ``+`` (country code first, no leading zero: ``14155550123``). A number typed
    without ``+`` is read in the person's country, else ``default_region``; None when it is
    not a valid number."""
    e164 = e164_of(value, country or default_region)
    if e164 is None:
        return None
    return e164[1:] if platform == "meta" else e164


_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def e164_of(value: Any, region: str) -> str | None:
    """E.164 of a phone number as identity reads it (``profiles.models.normalize_phone``);
    a value already in E.164 form takes a fast path (a possible number for its country code,
    not the full validity check, which costs ten times more and changes no match)."""
    if isinstance(value, str) and _E164.match(value):
        try:
            number = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException:
            return None
        return value if phonenumbers.is_possible_number(number) else None
    return normalize_phone(value, region)


def normalize_name(value: Any, platform: str) -> str | None:
    """Lower case, NFKC; ``meta``: letters only (no punctuation, digits or spaces: "Mary-Ann
    O'Neil" -> "maryannoneil"); ``google``/``generic``: trimmed, runs of spaces made one."""
    if not isinstance(value, str):
        return None
    text = unicodedata.normalize("NFKC", value).lower()
    if platform == "meta":
        text = "".join(ch for ch in text if unicodedata.category(ch).startswith(("L", "M")))
    else:
        text = " ".join(text.split())
    return text or None


def normalize_country(value: Any, platform: str) -> str | None:
    """ISO 3166-1 alpha-2 ("Germany", "deu", "uk" -> "DE", "DE", "GB"); lower case for
    ``meta``, upper case otherwise."""
    code = _country(value)
    if code is None:
        return None
    return code.lower() if platform == "meta" else code


def normalize_postcode(value: Any, platform: str, *, country: str | None) -> str | None:
    """The postcode in its country's form (quality.postcodes: "sw1a1aa" -> "SW1A 1AA"); US zip
    codes as their first five digits; for ``meta`` lower case without spaces or dashes and UK
    codes cut to area/district/sector ("sw1a1"). None when it is not a postcode."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    checked = validate_postcode(value, country) if country else None
    if isinstance(checked, Normalised):
        text = checked.value
    else:
        text = " ".join(unicodedata.normalize("NFKC", str(value)).upper().split())
        if not text or len(text) > 12 or not re.fullmatch(r"[0-9A-Z][0-9A-Z \-]*", text):
            return None
    if country == "US" and (match := _US_ZIP.match(text)):
        text = match[1]
    if platform != "meta":
        return text
    if country == "GB" and " " in text:
        outward, inward = text.split(" ", 1)
        text = outward + inward[:1]
    return re.sub(r"[\s\-]", "", text).lower() or None


# --- platform layouts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layout:
    """A platform's column names for the identity fields, and which of them are hashed."""

    name: str
    columns: Mapping[str, str]
    hashed: frozenset[str]


LAYOUTS: Mapping[str, Layout] = {
    "google": Layout(
        "google",
        {
            "email": "Email",
            "phone": "Phone",
            "first_name": "First Name",
            "last_name": "Last Name",
            "country": "Country",
            "postcode": "Zip",
        },
        frozenset({"email", "phone", "first_name", "last_name"}),
    ),
    "meta": Layout(
        "meta",
        {
            "email": "EMAIL",
            "phone": "PHONE",
            "first_name": "FN",
            "last_name": "LN",
            "country": "COUNTRY",
            "postcode": "ZIP",
        },
        frozenset(IDENTITY_FIELDS),
    ),
    "generic": Layout(
        "generic",
        {
            "email": "email_sha256",
            "phone": "phone_sha256",
            "first_name": "first_name_sha256",
            "last_name": "last_name_sha256",
            "country": "country",
            "postcode": "postcode_sha256",
        },
        frozenset({"email", "phone", "first_name", "last_name", "postcode"}),
    ),
}
# what makes a row matchable: a hashed email or phone, or first and last name together (with
# country and zip: Google's mailing-address match); a name, country or zip alone match nobody
MATCH_KEYS = frozenset({"email", "phone"})
NAME_KEYS = frozenset({"first_name", "last_name"})


def normalized(contact: Contact, name: str, platform: str, default_region: str) -> str | None:
    """The normalised value of one identity field of a person, before hashing."""
    if name == "email":
        return normalize_email(contact.email)
    if name == "phone":
        return normalize_phone_for(
            contact.phone, platform, country=contact.country, default_region=default_region
        )
    if name == "first_name":
        return normalize_name(contact.first_name, platform)
    if name == "last_name":
        return normalize_name(contact.last_name, platform)
    if name == "country":
        return normalize_country(contact.country, platform)
    if name == "postcode":
        return normalize_postcode(contact.postcode, platform, country=contact.country)
    raise ValueError(f"not an identity field: {name}")


def partner_row(
    contact: Contact, fields: Sequence[str], platform: str, default_region: str
) -> list[str | None] | None:
    """A person's row in a partner file: each field normalised, hashed where the platform's
    layout says; None when it holds nothing to match on (no email or phone, and not both
    names)."""
    layout = LAYOUTS[platform]
    row: list[str | None] = []
    present: set[str] = set()
    for name in fields:
        value = normalized(contact, name, platform, default_region)
        if value is not None and name in layout.hashed:
            value = sha256_hex(value)
            present.add(name)
        row.append(value)
    return row if present & MATCH_KEYS or NAME_KEYS <= present else None


def partner_columns(fields: Sequence[str], platform: str) -> list[str]:
    """The header of a partner file."""
    return [LAYOUTS[platform].columns[name] for name in fields]


def download_row(
    profile_id: str,
    contact: Contact,
    traits: Mapping[str, Any],
    fields: Sequence[str],
    default_region: str,
) -> list[Any]:
    """A person's row in an internal download: identity fields as stored (email and phone
    normalised, so a file is consistent), ``traits.<key>`` as the trait's current value."""
    row: list[Any] = []
    for name in fields:
        if name == PROFILE_ID:
            row.append(profile_id)
        elif name == "email":
            row.append(normalize_email(contact.email) or _text(contact.email))
        elif name == "phone":
            phone = e164_of(contact.phone, contact.country or default_region)
            row.append(phone or _text(contact.phone))
        elif name == "country":
            row.append(contact.country)
        elif name.startswith(TRAIT_PREFIX):
            row.append(traits.get(name[len(TRAIT_PREFIX) :]))
        else:
            row.append(getattr(contact, name))
    return row


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def download_columns(fields: Sequence[str]) -> list[str]:
    """The header of an internal download: the field names."""
    return list(fields)


def trait_keys_of(fields: Iterable[str]) -> list[str]:
    """The trait keys named by ``traits.<key>`` fields."""
    return [f[len(TRAIT_PREFIX) :] for f in fields if f.startswith(TRAIT_PREFIX)]


def categories_of(fields: Iterable[str]) -> list[str]:
    """The data categories (privacy.processors vocabulary) a partner file of ``fields`` holds."""
    return sorted({CATEGORIES[f] for f in fields if f in CATEGORIES})


# --- validation -----------------------------------------------------------------------------------


def field_problems(mode: str, fields: Sequence[str]) -> list[FieldError]:
    """Why ``fields`` cannot be exported in ``mode`` (``[]`` when they can)."""
    errors: list[FieldError] = []
    if not fields:
        return [FieldError("fields", "name at least one field")]
    if len(fields) > MAX_FIELDS:
        return [FieldError("fields", f"at most {MAX_FIELDS} fields")]
    if len(set(fields)) != len(fields):
        errors.append(FieldError("fields", "a field is named twice"))
    allowed = IDENTITY_FIELDS if mode == PARTNER else (PROFILE_ID, *IDENTITY_FIELDS)
    for i, name in enumerate(fields):
        where = f"fields[{i}]"
        if not isinstance(name, str):
            errors.append(FieldError(where, "a field is a string"))
        elif name in allowed:
            continue
        elif name.startswith(TRAIT_PREFIX) and mode == DOWNLOAD:
            key = name[len(TRAIT_PREFIX) :]
            if not key or len(key) > MAX_TRAIT_KEY or key != key.strip():
                errors.append(FieldError(where, "traits.<key> names a trait (1-100 characters)"))
        elif mode == PARTNER:
            errors.append(
                FieldError(
                    where,
                    f"a partner export holds hashed identifiers only: {', '.join(allowed)}",
                )
            )
        else:
            errors.append(
                FieldError(where, f"unknown field; one of {', '.join(allowed)} or traits.<key>")
            )
    if (
        mode == PARTNER
        and not errors
        and not (set(fields) & MATCH_KEYS or NAME_KEYS <= set(fields))
    ):
        errors.append(
            FieldError("fields", "a partner export needs email, phone or first and last name")
        )
    return errors


def summary_problems(summary_by: Sequence[str]) -> list[FieldError]:
    """Why the summary cannot be grouped by ``summary_by``: only the country and clear
    ``traits.<key>`` fields may be counted."""
    errors = []
    if len(summary_by) > 10:
        return [FieldError("summary_by", "at most 10 attributes")]
    for i, name in enumerate(summary_by):
        if name == "country":
            continue
        if not (isinstance(name, str) and name.startswith(TRAIT_PREFIX) and len(name) > 7):
            errors.append(FieldError(f"summary_by[{i}]", "country or traits.<key>"))
    return errors


# --- files ----------------------------------------------------------------------------------------

_FORMULA = ("=", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-][0-9 ().-]*$")


def csv_cell(value: Any) -> str:
    """A value as a CSV cell; one a spreadsheet would run as a formula is prefixed with ``'``
    (a signed number such as a phone number ``+4930...`` is left as it is)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    elif isinstance(value, datetime | date):
        text = value.isoformat()
    else:
        text = str(value)
    if text.startswith(_FORMULA) or (text[:1] in "+-" and not _NUMBER.match(text)):
        return "'" + text
    return text


def csv_lines(rows: Iterable[Sequence[Any]]) -> bytes:
    """CSV rows (RFC 4180 quoting, ``\\r\\n`` line ends), UTF-8."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerows([csv_cell(v) for v in row] for row in rows)
    return buffer.getvalue().encode("utf-8")


def json_rows(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, first: bool) -> bytes:
    """Rows as JSON objects keyed by column, comma-separated, to go inside a JSON array
    (``first``: the first rows of the array, no leading comma)."""
    parts = [
        json.dumps(dict(zip(columns, row, strict=True)), ensure_ascii=False, default=str)
        for row in rows
    ]
    if not parts:
        return b""
    return (("" if first else ",\n") + ",\n".join(parts)).encode("utf-8")


def json_head(document: Mapping[str, Any]) -> bytes:
    """The opening of a JSON export file: its header keys, then ``"rows": [``."""
    head = json.dumps(dict(document), ensure_ascii=False, default=str)
    return (head[:-1] + (", " if document else "") + '"rows": [\n').encode("utf-8")


def json_tail(manifest: Mapping[str, Any]) -> bytes:
    """The end of a JSON export file: the manifest summary after the rows."""
    return ('\n], "manifest": ' + json.dumps(manifest, default=str) + "}\n").encode("utf-8")


# --- k-anonymous summary --------------------------------------------------------------------------


class Summary:
    """Counts of exported subjects per value of a few attributes, safe to share: a count of
    fewer than ``k`` subjects is suppressed (the cell says so, never its count), and when only
    one cell of an attribute would be suppressed, the next smallest is too, so the total minus
    the shown cells never gives a suppressed count away."""

    def __init__(self, attributes: Sequence[str], k: int) -> None:
        if k < 2:
            raise ValueError("k must be at least 2")
        self.attributes = list(attributes)
        self.k = k
        self.total = 0
        self.counts: dict[str, Counter[str | None]] = {a: Counter() for a in self.attributes}

    def add(self, values: Mapping[str, Any]) -> None:
        """Count one subject with its attribute values (missing: None, shown as unknown)."""
        self.total += 1
        for attribute in self.attributes:
            value = values.get(attribute)
            self.counts[attribute][None if value is None else str(value)[:100]] += 1

    def document(self) -> dict[str, Any]:
        """``{"k", "subjects", "by": {attribute: [cells]}}``; a cell is ``{"value", "count"}``
        or ``{"value", "suppressed": true}``."""
        if self.total < self.k:
            return {"k": self.k, "subjects": {"suppressed": True}, "by": {}}
        by: dict[str, list[dict[str, Any]]] = {}
        for attribute, counter in self.counts.items():
            cells = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0] or ""))
            hidden = {value for value, count in cells if count < self.k}
            if len(hidden) == 1:  # complementary suppression: the total would reveal it
                shown = [(value, count) for value, count in cells if value not in hidden]
                if shown:
                    hidden.add(min(shown, key=lambda kv: (kv[1], kv[0] or ""))[0])
            by[attribute] = [
                {"value": value, "suppressed": True}
                if value in hidden
                else {"value": value, "count": count}
                for value, count in cells
            ]
        return {"k": self.k, "subjects": self.total, "by": by}
