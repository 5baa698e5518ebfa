"""The consent vocabulary and its pure rules: purposes, channels, states, legal bases, sources,
jurisdiction regimes, proof (with truncated IP addresses) and the canonical hashing of the ledger.

No SQL and no HTTP here. The decision rules themselves live in :mod:`consentry.consent.policy`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from consentry.errors import FieldError

# States of a consent record.
GRANTED = "granted"
DENIED = "denied"
WITHDRAWN = "withdrawn"
PENDING = "pending"
EXPIRED = "expired"
STATES = (GRANTED, DENIED, WITHDRAWN, PENDING, EXPIRED)
REFUSALS = frozenset({DENIED, WITHDRAWN})

ANY_CHANNEL = "any"
CHANNELS = ("email", "sms", "push", "phone", "postal", "web", "app", ANY_CHANNEL)

CONSENT = "consent"
LEGAL_BASES = (CONSENT, "contract", "legitimate_interest")

SOURCES = (
    "web_form",
    "checkout",
    "store",
    "customer_care",
    "preference_center",
    "api",
    "import",
    "cmp",
    "gpc",
    "double_opt_in",  # a pending request and the grant of its confirmation link (doi.py)
)

OPT_IN = "opt_in"  # GDPR-style: nothing without a valid grant
OPT_OUT = "opt_out"  # CCPA-style: allowed unless denied or withdrawn
REGIMES = (OPT_IN, OPT_OUT)

# EU 27, the rest of the EEA, the United Kingdom and Switzerland.
OPT_IN_COUNTRIES = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE "
    "IS LI NO GB CH".split()
)
OPT_OUT_COUNTRIES = frozenset({"US"})
COUNTRY_ALIASES = {"UK": "GB", "EL": "GR"}

CLOCK_SKEW = timedelta(minutes=5)
_PURPOSE_KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


@dataclass(frozen=True, slots=True)
class Purpose:
    """A use of personal data a subject can agree to or refuse."""

    key: str
    name: str
    category: str
    third_party: bool = False


DEFAULT_PURPOSES = (
    Purpose("marketing.communications.email", "Email marketing", "marketing"),
    Purpose("marketing.communications.sms", "SMS marketing", "marketing"),
    Purpose("marketing.communications.push", "Push notifications", "marketing"),
    Purpose("marketing.communications.phone", "Phone marketing", "marketing"),
    Purpose("marketing.communications.postal", "Postal mail marketing", "marketing"),
    Purpose("personalize", "Personalisation", "personalisation"),
    Purpose("analytics", "Analytics", "analytics"),
    Purpose("marketing.profiling", "Profiling", "profiling"),
    Purpose("third_party_sharing", "Sharing with third parties", "third_party_sharing", True),
    Purpose(
        "marketing.advertising.third_party",
        "Sale or sharing of data and targeted advertising",
        "sale_and_targeted_advertising",
        True,
    ),
)


@dataclass(frozen=True, slots=True)
class ConsentConfig:
    """A workspace's purposes and the regime of subjects whose country is unknown."""

    purposes: tuple[Purpose, ...] = DEFAULT_PURPOSES
    default_regime: str = OPT_IN

    @property
    def purpose_keys(self) -> frozenset[str]:
        """The keys of the workspace's purposes."""
        return frozenset(p.key for p in self.purposes)

    def purpose(self, key: str) -> Purpose | None:
        """The purpose named ``key``, or None."""
        return next((p for p in self.purposes if p.key == key), None)


def config_problems(purposes: Collection[Purpose], default_regime: str) -> list[FieldError]:
    """What is wrong with a workspace's consent configuration."""
    errors = [
        FieldError(f"purposes.{i}.key", "dotted lower-case words, e.g. marketing.newsletter")
        for i, p in enumerate(purposes)
        if not _PURPOSE_KEY.match(p.key) or len(p.key) > 100
    ]
    if len({p.key for p in purposes}) != len(purposes):
        errors.append(FieldError("purposes", "purpose keys must be unique"))
    if not purposes:
        errors.append(FieldError("purposes", "at least one purpose is required"))
    if default_regime not in REGIMES:
        errors.append(FieldError("default_regime", f"one of {', '.join(REGIMES)}"))
    return errors


# --- jurisdiction -------------------------------------------------------------------------------


def country_of(traits: Mapping[str, Any]) -> str | None:
    """The ISO 3166-1 alpha-2 country of a profile's traits (``country`` or ``address.country``)."""
    address = traits.get("address")
    candidates = [
        traits.get("country"),
        address.get("country") if isinstance(address, Mapping) else None,
        traits.get("address.country"),
    ]
    for raw in candidates:
        if isinstance(raw, str):
            code = raw.strip().upper()
            code = COUNTRY_ALIASES.get(code, code)
            if len(code) == 2 and code.isascii() and code.isalpha():
                return code
    return None


def regime_for(country: str | None, default: str) -> str:
    """Opt-in for the EU, EEA, UK and Switzerland; opt-out for the US; else the default."""
    if country in OPT_IN_COUNTRIES:
        return OPT_IN
    if country in OPT_OUT_COUNTRIES:
        return OPT_OUT
    return default


# --- proof --------------------------------------------------------------------------------------


def truncate_ip(raw: str) -> str:
    """The network of an address: IPv4 to its /24, IPv6 to its /48; ValueError if not an IP."""
    address = ipaddress.ip_address(raw.strip())
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def strip_url(raw: str) -> str:
    """A page URL without its query string and fragment (they often carry personal data)."""
    parts = urlsplit(raw.strip())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


ERASED_PROOF_KEY = "erased_at"


def erased_proof(proof: Mapping[str, Any] | None, at: datetime) -> dict[str, Any] | None:
    """What stays of a proof once its subject is erased: the time of the erasure, the GPC
    signal, the CMP's TC string (the choices and the CMP, nothing about the person) and the
    origin of the page (scheme and host). The address, IP and browser go, as does the page's
    path. The chain keeps the digest of the whole proof, so it still verifies."""
    if proof is None:
        return None
    if is_erased_proof(proof):
        return dict(proof)
    kept: dict[str, Any] = {ERASED_PROOF_KEY: at.isoformat()}
    for key in ("gpc", "cmp_string"):
        if key in proof:
            kept[key] = proof[key]
    page = proof.get("page_url")
    if isinstance(page, str) and page:
        parts = urlsplit(page)
        kept["page_origin"] = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    return kept


def is_erased_proof(proof: Mapping[str, Any] | None) -> bool:
    """Whether a stored proof was reduced by an erasure (its digest no longer matches it)."""
    return proof is not None and ERASED_PROOF_KEY in proof


class ProofIn(BaseModel):
    """Evidence of how a choice was made. The IP address is stored truncated."""

    model_config = ConfigDict(extra="forbid")

    ip: str | None = Field(None, max_length=64, description="Client IP; kept as /24 or /48.")
    user_agent: str | None = Field(None, max_length=512)
    page_url: str | None = Field(None, max_length=2048, description="Query string is dropped.")
    cmp_string: str | None = Field(None, max_length=8192, description="Raw CMP / TC string.")
    gpc: bool | None = Field(
        None, description="The request carried Sec-GPC: 1 (Global Privacy Control)."
    )


def make_proof(proof: ProofIn | None) -> tuple[dict[str, str] | None, list[FieldError]]:
    """The stored form of a proof, or the field errors that prevent it."""
    if proof is None:
        return None, []
    for name in ("ip", "user_agent", "page_url", "cmp_string"):
        if "\x00" in (getattr(proof, name) or ""):  # PostgreSQL cannot store it in JSON
            return None, [FieldError(f"proof.{name}", "must not contain the NUL character")]
    stored: dict[str, str] = {}
    if proof.ip:
        try:
            stored["ip"] = truncate_ip(proof.ip)
        except ValueError:
            return None, [FieldError("proof.ip", "not an IP address")]
    if proof.user_agent:
        stored["user_agent"] = proof.user_agent
    if proof.page_url:
        stored["page_url"] = strip_url(proof.page_url)
    if proof.cmp_string:
        stored["cmp_string"] = proof.cmp_string
    if proof.gpc:
        stored["gpc"] = "1"
    return stored or None, []


# --- what a record says -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsentEntry:
    """A choice to append to the ledger, for a profile id as given (not resolved)."""

    profile_id: str
    purpose: str
    channel: str
    state: str
    source: str
    occurred_at: datetime
    actor: str
    legal_basis: str = CONSENT
    notice_version: str | None = None
    expires_at: datetime | None = None
    proof: Mapping[str, str] | None = None


def _one_of(field: str, value: str, allowed: Collection[str]) -> list[FieldError]:
    if value in allowed:
        return []
    return [FieldError(field, f"unknown {field} {value[:100]!r}; one of {', '.join(allowed)}")]


def entry_problems(
    entry: ConsentEntry, purposes: Collection[str], now: datetime
) -> list[FieldError]:
    """What makes ``entry`` unfit for the ledger of a workspace with these purposes."""
    errors = [
        *_one_of("purpose", entry.purpose, sorted(purposes)),
        *_one_of("channel", entry.channel, CHANNELS),
        *_one_of("state", entry.state, STATES),
        *_one_of("legal_basis", entry.legal_basis, LEGAL_BASES),
        *_one_of("source", entry.source, SOURCES),
    ]
    if not entry.profile_id or len(entry.profile_id) > 36:
        errors.append(FieldError("profile_id", "a profile id of 1 to 36 characters"))
    if entry.occurred_at.tzinfo is None:
        errors.append(FieldError("occurred_at", "needs a time zone"))
    elif entry.occurred_at > now + CLOCK_SKEW:
        errors.append(FieldError("occurred_at", "is in the future"))
    if entry.expires_at is not None and (
        entry.expires_at.tzinfo is None or entry.expires_at <= entry.occurred_at
    ):
        errors.append(FieldError("expires_at", "must be a zoned time after occurred_at"))
    if entry.notice_version is not None and not 0 < len(entry.notice_version) <= 100:
        errors.append(FieldError("notice_version", "1 to 100 characters"))
    if not 0 < len(entry.actor) <= 200:
        errors.append(FieldError("actor", "1 to 200 characters"))
    return errors


class ConsentIn(BaseModel):
    """One choice sent to the API. The subject is a profile id, an email or a user id."""

    model_config = ConfigDict(extra="forbid")

    profile_id: str | None = Field(None, max_length=36)
    email: str | None = Field(None, max_length=512)
    user_id: str | None = Field(None, max_length=512)
    purpose: str = Field(..., max_length=100, examples=["marketing.communications.email"])
    channel: str = Field(ANY_CHANNEL, max_length=16, description=", ".join(CHANNELS))
    state: str = Field(..., max_length=16, description=", ".join(STATES))
    legal_basis: str = Field(CONSENT, max_length=32, description=", ".join(LEGAL_BASES))
    source: str = Field("api", max_length=32, description=", ".join(SOURCES))
    notice_version: str | None = Field(None, max_length=100)
    occurred_at: datetime | None = Field(None, description="When the choice was made; now.")
    expires_at: datetime | None = None
    proof: ProofIn | None = None


def parse_items(raw: list[Any]) -> tuple[list[ConsentIn], list[FieldError]]:
    """Validate the items of a bulk request; errors carry the item's index."""
    items: list[ConsentIn] = []
    errors: list[FieldError] = []
    for index, item in enumerate(raw):
        try:
            items.append(ConsentIn.model_validate(item))
        except ValidationError as exc:
            errors.extend(
                FieldError(".".join(str(p) for p in e["loc"]) or "(item)", e["msg"], index)
                for e in exc.errors(include_url=False)
            )
    return items, errors


def aware(value: datetime) -> datetime:
    """A timestamp in UTC; a naive one is taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- the chain ----------------------------------------------------------------------------------


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return aware(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    raise TypeError(f"not canonical JSON: {type(value).__name__}")


def canonical_json(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8, datetimes as UTC with microseconds."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    ).encode()


def proof_digest(proof: Mapping[str, Any] | None) -> str:
    """SHA-256 of the canonical JSON of a proof (of ``null`` when there is none)."""
    return hashlib.sha256(canonical_json(proof)).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainFields:
    """Every field of a ledger record that its hash covers: all but the proof itself, whose
    digest stands in for it, so erasing a proof leaves the chain intact."""

    id: str
    workspace_id: str
    seq: int
    profile_id: str
    purpose: str
    channel: str
    state: str
    legal_basis: str
    source: str
    notice_version: str | None
    occurred_at: datetime
    recorded_at: datetime
    actor: str
    expires_at: datetime | None
    proof_digest: str
    prev_hash: str

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the fields."""
        document = {f.name: getattr(self, f.name) for f in fields(self)}
        return hashlib.sha256(canonical_json(document)).hexdigest()


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One record of the ledger, as stored."""

    id: str
    workspace_id: str
    seq: int
    profile_id: str
    purpose: str
    channel: str
    state: str
    legal_basis: str
    source: str
    notice_version: str | None
    occurred_at: datetime
    recorded_at: datetime
    actor: str
    expires_at: datetime | None
    proof: dict[str, Any] | None
    proof_digest: str
    prev_hash: str
    hash: str

    def chain_fields(self) -> ChainFields:
        """The hashed fields of this record."""
        return ChainFields(**{f.name: getattr(self, f.name) for f in fields(ChainFields)})


@dataclass(frozen=True, slots=True)
class CurrentState:
    """The state of one (purpose, channel) of a profile: the latest record by occurred_at."""

    profile_id: str
    purpose: str
    channel: str
    state: str
    legal_basis: str
    record_id: str
    occurred_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a purpose may use a subject over a channel, why, and the record that says so."""

    allowed: bool
    reason: str
    record_id: str | None
    regime: str


# --- receipts -----------------------------------------------------------------------------------

RECEIPT_VERSION = "KI-CR-v1.1.0"


def build_receipt(
    record: ConsentRecord, *, controller: str, jurisdiction: str, purpose: Purpose
) -> dict[str, Any]:
    """A consent receipt with the fields of Kantara CR v1.1 / ISO/IEC TS 27560, and our own
    ``recordHash`` (the record's place in the hash chain) and ``noticeVersion``."""
    termination = record.expires_at.isoformat() if record.expires_at else "until withdrawn"
    return {
        "version": RECEIPT_VERSION,
        "jurisdiction": jurisdiction,
        "consentTimestamp": int(record.occurred_at.timestamp()),
        "collectionMethod": record.source,
        "consentReceiptID": record.id,
        "piiPrincipalId": record.profile_id,
        "piiControllers": [{"piiController": controller}],
        "services": [
            {
                "service": controller,
                "purposes": [
                    {
                        "purpose": purpose.key,
                        "purposeCategory": [purpose.category],
                        "consentType": "EXPLICIT" if record.legal_basis == CONSENT else "IMPLICIT",
                        "primaryPurpose": False,
                        "termination": termination,
                        "thirdPartyDisclosure": purpose.third_party,
                        "state": record.state,
                        "channel": record.channel,
                        "legalBasis": record.legal_basis,
                    }
                ],
            }
        ],
        "sensitive": False,
        "spiCat": [],
        "recordHash": record.hash,
        "noticeVersion": record.notice_version,
    }
