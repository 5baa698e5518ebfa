"""Erasure of a data subject (GDPR Art. 17, CCPA deletion): the pure rules.

What an erasure does is in :mod:`consentry.privacy.erasure_service`; this module holds what it
writes down and sends: the erasure certificate (what was erased, when, by whom, what was kept
and why), the notification a processor's webhook receives (Art. 17(2) and 19), how that
notification is signed, and when a failed delivery is tried again.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from consentry.delivery.webhook import encode
from consentry.profiles.models import normalize_email, normalize_phone

CERTIFICATE_VERSION = "consentry-erasure-certificate/1"
NOTIFICATION_TYPE = "consentry.erasure"
NOTIFICATION_FIELD = "privacy.erasure_notification"  # the field a sealed notification is bound to
DEFAULT_ORDER_HOLD_DAYS = 3650  # ten years: the longest common retention of invoices (DE, FR)

# How long to wait before each further attempt: 1 and 5 minutes, then half an hour, 2, 6 and 12
# hours, then daily; after the last, the notification is given up (``failed``) and the
# certificate's read-out says so, for a person to follow up.
RETRY_DELAYS = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
    timedelta(hours=12),
    timedelta(days=1),
    timedelta(days=1),
    timedelta(days=1),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1

# Why each kind of row is kept after an erasure, in the certificate's words.
KEPT_REASONS = {
    "orders": (
        "invoice data the law requires the shop to keep (legal hold); kept pseudonymised: "
        "unlinked from the person, without the coupon code"
    ),
    "consent_records": (
        "proof that consent was asked and given or refused (GDPR Art. 7(1)); each keeps what "
        "does not identify the person (time, purpose, state, GPC, the CMP's string, the page's "
        "origin); the address, IP and browser were removed and their key destroyed; the "
        "ledger's hash chain still verifies"
    ),
    "suppression_list": (
        "keyed hashes (blind indexes) of the person's identifiers, not the identifiers: "
        "messages that carry one are dropped, so late or replayed events do not bring the "
        "person back"
    ),
    "audit_trail": (
        "the record of who read or changed the person's data and of this erasure "
        "(accountability, GDPR Art. 5(2)); it names profile ids only, never personal data"
    ),
}


def erasure_subject(erasure_id: str) -> str:
    """The key-store subject that seals an erasure's notifications (shredded once all of
    them are settled)."""
    return "er-" + erasure_id.replace("-", "")[:32]


@dataclass(frozen=True, slots=True)
class Recipient:
    """A processor to notify."""

    id: str
    name: str
    url: str


def notification_body(
    *,
    erasure_id: str,
    workspace_id: str,
    erased_at: datetime,
    identifiers: Iterable[tuple[str, Any]],
) -> dict[str, Any]:
    """What a processor receives: who to erase, by the ids the shop shares with processors
    (userIds, anonymous ids, external ids) and by the SHA-256 of the normalised email and phone
    (as advertising platforms' customer-match lists take them), never the address itself."""
    subject: dict[str, list[str]] = {}
    for kind, value in identifiers:
        text = str(value)
        if kind == "email":
            normalised = normalize_email(text) or text.strip().lower()
            subject.setdefault("email_sha256", []).append(_sha256(normalised))
        elif kind == "phone":
            normalised = normalize_phone(text, "US") or text.strip()
            subject.setdefault("phone_sha256", []).append(_sha256(normalised))
        else:
            subject.setdefault(f"{kind}s", []).append(text)
    return {
        "type": NOTIFICATION_TYPE,
        "erasure_id": erasure_id,
        "workspace_id": workspace_id,
        "erased_at": erased_at.isoformat(),
        "subject": {k: sorted(set(v)) for k, v in sorted(subject.items())},
    }


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def webhook_secret(server_secret: str, workspace_id: str, processor_id: str) -> str:
    """The key a processor checks our signatures with (derived, so nothing is stored)."""
    message = f"consentry/erasure-webhook/{workspace_id}/{processor_id}".encode()
    return hmac.new(server_secret.encode(), message, hashlib.sha256).hexdigest()


def next_attempt(attempts: int, now: datetime) -> datetime | None:
    """When to try again after ``attempts`` failed ones (None: give up)."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return now + RETRY_DELAYS[attempts - 1]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one erasure reached: counts of erased rows per store, and what was kept."""

    erased: Mapping[str, int]
    kept: Mapping[str, int]
    keys_destroyed: int
    orders_kept_until: datetime | None


def certificate(
    *,
    erasure_id: str,
    workspace_id: str,
    profile_id: str,
    member_ids: Sequence[str],
    request_id: str | None,
    actor: str,
    reason: str,
    requested_at: datetime,
    completed_at: datetime,
    outcome: Outcome,
    processors: Sequence[Recipient],
) -> dict[str, Any]:
    """The erasure certificate: what was erased, when, by whom, what was kept and why. It
    names the person by pseudonymous profile ids only (a certificate outlives the data)."""
    kept = []
    for what, count in outcome.kept.items():
        if not count:
            continue
        item: dict[str, Any] = {"what": what, "count": count, "why": KEPT_REASONS[what]}
        if what == "orders" and outcome.orders_kept_until is not None:
            item["until"] = outcome.orders_kept_until.isoformat()
        kept.append(item)
    kept.append({"what": "audit_trail", "why": KEPT_REASONS["audit_trail"]})
    return {
        "certificate": CERTIFICATE_VERSION,
        "erasure_id": erasure_id,
        "workspace_id": workspace_id,
        "subject": {"profile_id": profile_id, "member_ids": sorted(member_ids)},
        "request_id": request_id,
        "erased_by": actor,
        "reason": reason,
        "requested_at": requested_at.isoformat(),
        "completed_at": completed_at.isoformat(),
        "erased": dict(sorted(outcome.erased.items())),
        "keys_destroyed": outcome.keys_destroyed,
        "kept": kept,
        "processors_notified": [{"id": p.id, "name": p.name} for p in processors],
        "statement": (
            "Every record of this person held by consentry was deleted, and the keys that "
            "sealed their personal data were destroyed, so copies made earlier (backups, "
            "exports) can no longer be read. What is listed under 'kept' stays, for the "
            "reason given."
        ),
    }


def certificate_hash(document: Mapping[str, Any]) -> str:
    """SHA-256 of the certificate's canonical JSON (recorded in the audit trail)."""
    return hashlib.sha256(encode(document)).hexdigest()
