"""The register of processors and destinations, and the transfer gate: pure rules.

A *processor* is anyone personal data leaves to: a processor or sub-processor (GDPR Art. 28), a
joint controller (Art. 26) or a destination / integration (an ad platform, an ESP account). Each
names the purposes it may receive data for (keys of the workspace's consent purposes), the data
categories it may receive (:data:`DATA_CATEGORIES`, modelled on fideslang's ``user.*``
taxonomy), where the data goes (an ISO 3166-1 alpha-2 country) and, outside the EU/EEA without
an adequacy decision, the safeguard of the transfer (Art. 46/49).

:func:`refusals` is the gate's rule: what keeps data of some categories, for a purpose, from
leaving to a processor. No SQL and no HTTP here.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

from consentry.errors import FieldError

# --- kinds --------------------------------------------------------------------------------------

PROCESSOR = "processor"  # processes on the controller's behalf (Art. 28)
SUB_PROCESSOR = "sub_processor"  # engaged by a processor (Art. 28(2), (4))
JOINT_CONTROLLER = "joint_controller"  # decides purposes and means together (Art. 26)
DESTINATION = "destination"  # an integration data is sent to (ad platform, ESP account, ...)
KINDS = (PROCESSOR, SUB_PROCESSOR, JOINT_CONTROLLER, DESTINATION)
NEEDS_DPA = frozenset({PROCESSOR, SUB_PROCESSOR})

# --- data categories ----------------------------------------------------------------------------

DATA_CATEGORIES: Mapping[str, str] = {
    "user.name": "first, last and full name (traits)",
    "user.contact": "every contact detail below",
    "user.contact.email": "email address",
    "user.contact.phone_number": "phone number (E.164)",
    "user.contact.address": "postal address, including city, postcode and country",
    "user.demographic": "every demographic detail below",
    "user.demographic.date_of_birth": "date of birth or age",
    "user.demographic.gender": "gender",
    "user.device": "every device detail below",
    "user.device.ip_address": "IP address of the device (context.ip)",
    "user.device.cookie_id": "cookie and device identifiers (anonymousId, context.device.id)",
    "user.location": "location derived from the device or address (context.location)",
    "user.behavior": "events: pages and screens viewed, products viewed, carts",
    "user.financial": "every financial detail below",
    "user.financial.transactions": "orders, refunds and their items and amounts",
    "user.unique_id": "pseudonymous identifiers: userId, external ids, profile ids",
    "user.derived": "computed traits, scores and segment memberships",
}
"""The fixed vocabulary of data categories. A parent (``user.contact``) stands for all of its
children: a processor allowed ``user.contact`` may receive ``user.contact.email``."""

# --- countries ----------------------------------------------------------------------------------

ISO_COUNTRIES = frozenset(
    """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO
    DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU
    GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW
    KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU
    MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW
    PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF
    TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA
    ZM ZW""".split()
)
"""ISO 3166-1 alpha-2: the 249 officially assigned codes."""

COUNTRY_ALIASES = {"UK": "GB", "EL": "GR"}  # what people (and the EU) write instead
EEA = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE "
    "IS LI NO".split()
)
"""The EU 27 and Iceland, Liechtenstein and Norway: data moving among them is not a transfer."""

ADEQUATE = frozenset("AD AR CA CH FO GB GG IL IM JE JP KR NZ UY".split())
"""Countries with a European Commission adequacy decision (Art. 45), as of 2025. The United
States is left out: its decision (the EU-US Data Privacy Framework) covers only certified
organisations, so a transfer there names its safeguard (``adequacy`` for a certified one)."""

# --- transfer safeguards ------------------------------------------------------------------------

SAFEGUARDS: Mapping[str, str] = {
    "adequacy": "adequacy decision (Art. 45; for the US: a DPF-certified recipient)",
    "scc": "standard contractual clauses (Art. 46(2)(c))",
    "bcr": "binding corporate rules (Art. 47)",
    "code_of_conduct": "approved code of conduct (Art. 46(2)(e))",
    "certification": "approved certification mechanism (Art. 46(2)(f))",
    "consent": "the subject's explicit consent to the transfer (Art. 49(1)(a))",
    "derogation": "another derogation for a specific situation (Art. 49)",
}

# --- limits -------------------------------------------------------------------------------------

NAME_MAX = 200
CONTACT_MAX = 320
RETENTION_MAX = 1000
URL_MAX = 2000
LIST_MAX = 100
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


@dataclass(frozen=True, slots=True)
class ProcessorSpec:
    """What a workspace says about a processor: the fields one registers or changes."""

    name: str
    kind: str
    transfer_country: str
    purposes: tuple[str, ...]
    categories: tuple[str, ...]
    contact: str | None = None
    dpa_signed_on: date | None = None
    transfer_safeguard: str | None = None
    retention: str | None = None
    erasure_webhook_url: str | None = None
    active: bool = True


SPEC_FIELDS = tuple(f.name for f in fields(ProcessorSpec))
REQUIRED_FIELDS = frozenset({"name", "kind", "transfer_country", "purposes", "categories"})


@dataclass(frozen=True, slots=True)
class Processor:
    """A registered processor as it stands at ``version`` (1 when registered)."""

    id: str
    workspace_id: str
    version: int
    spec: ProcessorSpec
    created_at: datetime
    updated_at: datetime

    @property
    def third_country(self) -> bool:
        """Data leaves the EU/EEA."""
        return self.spec.transfer_country not in EEA

    @property
    def adequate(self) -> bool:
        """The destination country has an adequacy decision (or is in the EU/EEA)."""
        return not self.third_country or self.spec.transfer_country in ADEQUATE

    def document(self) -> dict[str, Any]:
        """The JSON form, as the API shows it and the history keeps it."""
        spec = {name: getattr(self.spec, name) for name in SPEC_FIELDS}
        spec["purposes"] = list(self.spec.purposes)
        spec["categories"] = list(self.spec.categories)
        dpa = self.spec.dpa_signed_on
        spec["dpa_signed_on"] = dpa.isoformat() if dpa else None
        return {
            "id": self.id,
            "version": self.version,
            **spec,
            "third_country_transfer": self.third_country,
            "adequacy": self.adequate,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class ProcessorVersion:
    """One version of a processor in the register's history."""

    processor_id: str
    version: int
    change: str  # registered, updated, deactivated, reactivated
    actor: str
    recorded_at: datetime
    document: Mapping[str, Any]


def processor_from_document(workspace_id: str, document: Mapping[str, Any]) -> Processor:
    """A processor as one history document describes it."""
    return Processor(
        id=document["id"],
        workspace_id=workspace_id,
        version=document["version"],
        spec=spec_from_document(document),
        created_at=datetime.fromisoformat(document["created_at"]),
        updated_at=datetime.fromisoformat(document["updated_at"]),
    )


def spec_from_document(document: Mapping[str, Any]) -> ProcessorSpec:
    """The spec kept in a history document (see :meth:`Processor.document`)."""
    values: dict[str, Any] = {name: document.get(name) for name in SPEC_FIELDS}
    values["purposes"] = tuple(values["purposes"] or ())
    values["categories"] = tuple(values["categories"] or ())
    dpa = values["dpa_signed_on"]
    values["dpa_signed_on"] = date.fromisoformat(dpa) if dpa else None
    values["active"] = bool(values["active"])
    return ProcessorSpec(**values)


# --- normalising and validating -----------------------------------------------------------------


def normal_country(raw: str) -> str:
    """A country code trimmed and upper-cased, with the common aliases (UK, EL) resolved."""
    code = raw.strip()
    code = code.upper() if code.isascii() else code  # "ﬅ".upper() is "ST": not a code
    return COUNTRY_ALIASES.get(code, code)


def _text(value: str | None) -> str | None:
    stripped = value.strip() if value is not None else None
    return stripped or None


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v.strip() for v in values))


def normalise(spec: ProcessorSpec) -> ProcessorSpec:
    """Trim texts, upper-case the country, drop repeated purposes and categories."""
    return ProcessorSpec(
        name=spec.name.strip(),
        kind=spec.kind.strip(),
        transfer_country=normal_country(spec.transfer_country),
        purposes=_unique(spec.purposes),
        categories=_unique(spec.categories),
        contact=_text(spec.contact),
        dpa_signed_on=spec.dpa_signed_on,
        transfer_safeguard=_text(spec.transfer_safeguard),
        retention=_text(spec.retention),
        erasure_webhook_url=_text(spec.erasure_webhook_url),
        active=spec.active,
    )


def country_problem(code: str) -> str | None:
    """Why ``code`` (normalised) is not an ISO 3166-1 alpha-2 country, or None."""
    if code in ISO_COUNTRIES:
        return None
    return "an ISO 3166-1 alpha-2 country code, e.g. DE, IE, US"


def webhook_problem(url: str) -> str | None:
    """Why ``url`` may not receive erasure notifications, or None.

    Only ``https`` with a host, or ``http`` to this machine (localhost, 127.0.0.1, [::1]) for
    tests and development; no user name or password in the URL and no fragment.
    """
    if len(url) > URL_MAX or any(unicodedata.category(c)[0] in "CZ" for c in url):
        return f"a URL of at most {URL_MAX} characters without spaces or control characters"
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port  # the port raises on a bad one
    except ValueError:
        return "not a URL"
    if parts.scheme not in ("https", "http") or not host or not _valid_host(host):
        return "an https:// URL with a host name"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password: use a secret header instead"
    if parts.fragment or url.endswith("#"):
        return "must not have a fragment (#...)"
    if parts.scheme == "http" and host not in LOCAL_HOSTS:
        return "https only (http is allowed for localhost and 127.0.0.1)"
    return None


_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    return len(host) <= 253 and all(_LABEL.match(label) for label in labels)


def category_problem(key: str) -> str | None:
    """Why ``key`` is not a data category of the vocabulary, or None."""
    if key in DATA_CATEGORIES:
        return None
    return f"unknown data category {key[:100]!r}; one of {', '.join(DATA_CATEGORIES)}"


def covers(allowed: Collection[str], category: str) -> bool:
    """``category`` is one of ``allowed`` or a child of one (``user.contact`` covers
    ``user.contact.email``)."""
    return any(category == a or category.startswith(a + ".") for a in allowed)


def spec_problems(spec: ProcessorSpec, purposes: Collection[str], today: date) -> list[FieldError]:
    """What is wrong with a (normalised) spec in a workspace with these consent purposes."""
    return [
        *_identity_problems(spec),
        *_flow_problems(spec, purposes),
        *_contract_problems(spec, today),
        *_transfer_problems(spec),
    ]


def _identity_problems(spec: ProcessorSpec) -> list[FieldError]:
    errors = []
    if not 0 < len(spec.name) <= NAME_MAX or not spec.name.isprintable():
        errors.append(FieldError("name", f"1 to {NAME_MAX} printable characters"))
    if spec.kind not in KINDS:
        errors.append(FieldError("kind", f"one of {', '.join(KINDS)}"))
    if spec.contact is not None and (
        len(spec.contact) > CONTACT_MAX or not spec.contact.isprintable()
    ):
        errors.append(FieldError("contact", f"at most {CONTACT_MAX} printable characters"))
    if spec.retention is not None and len(spec.retention) > RETENTION_MAX:
        errors.append(FieldError("retention", f"at most {RETENTION_MAX} characters"))
    if spec.erasure_webhook_url is not None:
        reason = webhook_problem(spec.erasure_webhook_url)
        if reason:
            errors.append(FieldError("erasure_webhook_url", reason))
    return errors


def _flow_problems(spec: ProcessorSpec, purposes: Collection[str]) -> list[FieldError]:
    errors = []
    if not 0 < len(spec.purposes) <= LIST_MAX:
        errors.append(FieldError("purposes", f"1 to {LIST_MAX} purposes"))
    errors += [
        FieldError(
            f"purposes.{i}",
            f"{p[:100]!r} is not a purpose of this workspace; one of {', '.join(sorted(purposes))}",
        )
        for i, p in enumerate(spec.purposes)
        if p not in purposes
    ]
    if not spec.categories:
        errors.append(FieldError("categories", "at least one data category"))
    for i, key in enumerate(spec.categories):
        reason = category_problem(key)
        if reason:
            errors.append(FieldError(f"categories.{i}", reason))
    return errors


def _contract_problems(spec: ProcessorSpec, today: date) -> list[FieldError]:
    signed = spec.dpa_signed_on
    if signed is None and spec.kind in NEEDS_DPA:
        return [FieldError("dpa_signed_on", "required for a processor or sub-processor (Art. 28)")]
    if signed is not None and signed > today:
        return [FieldError("dpa_signed_on", "a date not after today")]
    return []


def _transfer_problems(spec: ProcessorSpec) -> list[FieldError]:
    country, safeguard = spec.transfer_country, spec.transfer_safeguard
    reason = country_problem(country)
    if reason:
        return [FieldError("transfer_country", reason)]
    if safeguard is not None and safeguard not in SAFEGUARDS:
        return [FieldError("transfer_safeguard", f"one of {', '.join(SAFEGUARDS)}")]
    if country in EEA and safeguard is not None:
        return [FieldError("transfer_safeguard", f"{country} is in the EU/EEA: no transfer, none")]
    if country not in EEA | ADEQUATE and safeguard is None:
        return [FieldError("transfer_safeguard", _needs_safeguard(country))]
    if country not in ADEQUATE | EEA | {"US"} and safeguard == "adequacy":
        return [FieldError("transfer_safeguard", f"{country} has no adequacy decision")]
    return []


def _needs_safeguard(country: str) -> str:
    return (
        f"{country} is outside the EU/EEA without an adequacy decision: name the safeguard, "
        f"one of {', '.join(SAFEGUARDS)}"
    )


def with_defaults(spec: ProcessorSpec) -> ProcessorSpec:
    """A transfer to a country with an adequacy decision is made under it unless said otherwise."""
    if spec.transfer_country in ADEQUATE and spec.transfer_safeguard is None:
        return _replace(spec, transfer_safeguard="adequacy")
    return spec


def _replace(spec: ProcessorSpec, **changes: Any) -> ProcessorSpec:
    values = {name: getattr(spec, name) for name in SPEC_FIELDS}
    values.update(changes)
    return ProcessorSpec(**values)


def changed(spec: ProcessorSpec, changes: Mapping[str, Any]) -> ProcessorSpec:
    """``spec`` with some fields replaced (a PATCH); lists become tuples."""
    values = dict(changes)
    for name in ("purposes", "categories"):
        if values.get(name) is not None:
            values[name] = tuple(values[name])
    return _replace(spec, **values)


# --- the gate -----------------------------------------------------------------------------------


def request_problems(purpose: str, categories: Sequence[str]) -> list[FieldError]:
    """What makes a transfer request malformed (not merely refused)."""
    errors = []
    if not purpose or len(purpose) > 100:
        errors.append(FieldError("purpose", "a purpose key of 1 to 100 characters"))
    if not categories:
        errors.append(FieldError("categories", "at least one data category"))
    for i, key in enumerate(categories):
        reason = category_problem(key)
        if reason:
            errors.append(FieldError(f"categories.{i}", reason))
    return errors


def refusals(
    processor: Processor | None,
    *,
    purpose: str,
    categories: Sequence[str],
    workspace_purposes: Collection[str],
    today: date,
) -> list[FieldError]:
    """Why data of ``categories`` may not leave to ``processor`` for ``purpose``; [] allows it.

    Refused when the processor is not registered or not active, when it needs a DPA (processor,
    sub-processor) and has none in force, when its transfer lacks a safeguard, when the purpose
    is no longer configured in the workspace or not one the processor may receive data for, and
    for each category it may not receive.
    """
    if processor is None:
        return [FieldError("processor_id", "no processor with this id in this workspace")]
    spec = processor.spec
    errors = [] if spec.active else [FieldError("active", "the processor is deactivated")]
    errors += _contract_refusals(spec, today)
    if processor.third_country and not processor.adequate and spec.transfer_safeguard is None:
        errors.append(FieldError("transfer_safeguard", _needs_safeguard(spec.transfer_country)))
    if purpose not in workspace_purposes:
        errors.append(FieldError("purpose", f"{purpose!r} is not a purpose of this workspace"))
    elif purpose not in spec.purposes:
        allowed = ", ".join(spec.purposes)
        errors.append(FieldError("purpose", f"{purpose!r} is not allowed; allowed: {allowed}"))
    errors += [
        FieldError(f"categories.{i}", f"{key!r} is not a data category it may receive")
        for i, key in enumerate(categories)
        if not covers(spec.categories, key)
    ]
    return errors


def _contract_refusals(spec: ProcessorSpec, today: date) -> list[FieldError]:
    if spec.kind not in NEEDS_DPA:
        return []
    if spec.dpa_signed_on is None:
        return [FieldError("dpa_signed_on", f"a {spec.kind} needs a signed DPA (Art. 28(3))")]
    if spec.dpa_signed_on > today:
        return [FieldError("dpa_signed_on", f"the DPA is in force from {spec.dpa_signed_on}")]
    return []


def refusal_message(processor_id: str, errors: Sequence[FieldError]) -> str:
    """One sentence naming every reason, for logs and the error body."""
    return f"data may not leave to processor {processor_id}: " + "; ".join(
        f"{e.field}: {e.reason}" for e in errors
    )
