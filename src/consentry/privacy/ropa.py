"""The record of processing activities (GDPR Art. 30(1)), built from the register: pure rules.

One activity per purpose of the workspace's consent configuration, with the recipients allowed
to receive data for it (active processors), the data categories they receive, their third-country
transfers and safeguards, their retention notes and DPA dates. Rendered as JSON or as CSV
(RFC 4180, with cells that a spreadsheet would run as a formula defused). No SQL and no HTTP.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consentry.consent.models import OPT_IN, ConsentConfig, Purpose
from consentry.privacy.processors import DATA_CATEGORIES, Processor

DATA_SUBJECTS = ("customer",)  # fideslang data subject: profiles are the shop's customers
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
LIST_SEPARATOR = "; "
CSV_COLUMNS = (
    "purpose",
    "name",
    "category",
    "description",
    "legal_basis",
    "regime_when_country_unknown",
    "data_subjects",
    "data_categories",
    "recipients",
    "third_country_transfers",
    "retention",
    "dpa_dates",
)


@dataclass(frozen=True, slots=True)
class Activity:
    """One processing activity: a purpose and where its data goes."""

    purpose: Purpose
    legal_basis: str
    default_regime: str
    data_categories: tuple[str, ...]
    recipients: tuple[Processor, ...]


@dataclass(frozen=True, slots=True)
class Record:
    """The record of processing activities of one workspace, as the register stood at ``as_of``."""

    controller_id: str
    controller_name: str
    as_of: datetime
    activities: tuple[Activity, ...]


def legal_basis(purpose: Purpose) -> str:
    """The legal basis of a purpose governed by the consent ledger.

    The policy asks for an opt-in grant from every EU/EEA/UK/CH subject, so under the GDPR
    each purpose rests on consent; the ledger records each subject's choice and its proof.
    """
    third = "; disclosure to third parties" if purpose.third_party else ""
    return f"consent (GDPR Art. 6(1)(a)), recorded in the consent ledger{third}"


def build_record(
    *,
    controller_id: str,
    controller_name: str,
    config: ConsentConfig,
    processors: Sequence[Processor],
    as_of: datetime,
) -> Record:
    """One activity per configured purpose; only active processors are recipients."""
    active = [p for p in processors if p.spec.active]
    activities = tuple(_activity(purpose, config, active) for purpose in config.purposes)
    return Record(controller_id, controller_name, as_of, activities)


def _activity(purpose: Purpose, config: ConsentConfig, active: Sequence[Processor]) -> Activity:
    recipients = tuple(
        sorted((p for p in active if purpose.key in p.spec.purposes), key=lambda p: p.spec.name)
    )
    categories = {c for p in recipients for c in p.spec.categories}
    ordered = tuple(c for c in DATA_CATEGORIES if c in categories)
    return Activity(purpose, legal_basis(purpose), config.default_regime, ordered, recipients)


# --- JSON ---------------------------------------------------------------------------------------


def record_json(record: Record) -> dict[str, Any]:
    """The record as a JSON document."""
    return {
        "controller": {"id": record.controller_id, "name": record.controller_name},
        "as_of": record.as_of.isoformat(),
        "activities": [_activity_json(a) for a in record.activities],
    }


def _activity_json(activity: Activity) -> dict[str, Any]:
    purpose = activity.purpose
    return {
        "purpose": purpose.key,
        "name": purpose.name,
        "category": purpose.category,
        "description": description(activity),
        "legal_basis": activity.legal_basis,
        "regime_when_country_unknown": activity.default_regime,
        "data_subjects": list(DATA_SUBJECTS),
        "data_categories": list(activity.data_categories),
        "recipients": [_recipient_json(p) for p in activity.recipients],
        "third_country_transfers": [
            {
                "recipient": p.spec.name,
                "country": p.spec.transfer_country,
                "safeguard": p.spec.transfer_safeguard,
            }
            for p in activity.recipients
            if p.third_country
        ],
    }


def _recipient_json(processor: Processor) -> dict[str, Any]:
    spec = processor.spec
    return {
        "id": processor.id,
        "version": processor.version,
        "name": spec.name,
        "kind": spec.kind,
        "contact": spec.contact,
        "data_categories": list(spec.categories),
        "country": spec.transfer_country,
        "third_country_transfer": processor.third_country,
        "safeguard": spec.transfer_safeguard,
        "dpa_signed_on": spec.dpa_signed_on.isoformat() if spec.dpa_signed_on else None,
        "retention": spec.retention,
    }


def description(activity: Activity) -> str:
    """A sentence describing the activity."""
    purpose = activity.purpose
    regime = "opt-in" if activity.default_regime == OPT_IN else "opt-out"
    shared = " Data is disclosed to third parties." if purpose.third_party else ""
    return (
        f"{purpose.name} ({purpose.category}); subjects choose per purpose and channel, "
        f"{regime} where the subject's country is unknown.{shared}"
    )


# --- CSV ----------------------------------------------------------------------------------------


def safe_cell(value: str) -> str:
    """A cell a spreadsheet shows as text: one starting with = + - @ (or a tab or carriage
    return) is prefixed with an apostrophe, so it is never run as a formula (CSV injection)."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def csv_rows(record: Record) -> list[list[str]]:
    """The header and one row per activity, lists joined with ``; ``, cells made safe."""
    rows = [list(CSV_COLUMNS)]
    for activity in record.activities:
        row = _csv_values(activity)
        rows.append([safe_cell(row[column]) for column in CSV_COLUMNS])
    return rows


def _csv_values(activity: Activity) -> dict[str, str]:
    purpose, recipients = activity.purpose, activity.recipients
    return {
        "purpose": purpose.key,
        "name": purpose.name,
        "category": purpose.category,
        "description": description(activity),
        "legal_basis": activity.legal_basis,
        "regime_when_country_unknown": activity.default_regime,
        "data_subjects": LIST_SEPARATOR.join(DATA_SUBJECTS),
        "data_categories": LIST_SEPARATOR.join(activity.data_categories),
        "recipients": _join(f"{p.spec.name} ({p.spec.kind})" for p in recipients),
        "third_country_transfers": _join(
            f"{p.spec.name}: {p.spec.transfer_country} ({_safeguard(p)})"
            for p in recipients
            if p.third_country
        ),
        "retention": _join(
            f"{p.spec.name}: {p.spec.retention}" for p in recipients if p.spec.retention
        ),
        "dpa_dates": _join(f"{p.spec.name}: {_dpa(p)}" for p in recipients),
    }


def _safeguard(processor: Processor) -> str:
    return processor.spec.transfer_safeguard or "no safeguard"


def _dpa(processor: Processor) -> str:
    signed = processor.spec.dpa_signed_on
    return signed.isoformat() if signed else "none"


def _join(parts: Iterable[str]) -> str:
    return LIST_SEPARATOR.join(parts)


def record_csv(record: Record) -> str:
    """The record as CSV: RFC 4180 (CRLF line ends, quoting as needed), UTF-8 text."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerows(csv_rows(record))
    return out.getvalue()
