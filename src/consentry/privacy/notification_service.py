"""Deliver erasure notifications to processors' webhooks, from the outbox, with retries.

An erasure writes one ``privacy_notifications`` row per processor with an erasure webhook, in
its own transaction (:mod:`consentry.privacy.erasure_service`). :func:`deliver_due` sends the
rows that are due: it claims them (a short lease, so two workers do not send the same one),
posts each outside any transaction, then records the outcome. A 2xx answer delivers; anything
else (an error status, a redirect, a timeout, a refused connection) is tried again later
(:data:`consentry.privacy.erasure.RETRY_DELAYS`) until the attempts run out (``failed``).

The body names the person (hashed email and phone, userIds): it is stored sealed under a key
of the erasure's own, and once every notification of an erasure is settled that key is
destroyed and the stored bodies dropped.

Each request carries ``Consentry-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">``
under the processor's secret (:func:`consentry.privacy.erasure.webhook_secret`),
``Consentry-Event: erasure`` and ``Idempotency-Key`` (the notification's id, the same on every
attempt).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, update

# signing, encoding and posting (no redirects followed) are shared with the outbox's webhooks
from consentry.delivery.webhook import SIGNATURE_HEADER, Sender, encode, post, sign
from consentry.platform.db import Database, utcnow
from consentry.platform.vault import vault_of
from consentry.privacy.erasure import (
    NOTIFICATION_FIELD,
    erasure_subject,
    next_attempt,
    webhook_secret,
)
from consentry.privacy.tables import NotificationRow

LEASE = timedelta(minutes=5)  # a claimed notification is not claimed again this soon
TIMEOUT = 10.0  # seconds per delivery attempt
MAX_ERROR = 500


@dataclass(slots=True)
class DeliveryReport:
    """What one run of :func:`deliver_due` did."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def attempted(self) -> int:
        return self.delivered + self.retrying + self.failed


@dataclass(frozen=True, slots=True)
class _Claim:
    id: str
    workspace_id: str
    erasure_id: str
    processor_id: str
    url: str
    body: bytes | None


def deliver_due(
    *,
    db: Database,
    server_secret: str,
    now: datetime | None = None,
    send: Sender = post,
    limit: int = 100,
) -> DeliveryReport:
    """Send every notification that is due (at most ``limit``) and record each outcome."""
    report = DeliveryReport()
    claims = _claim(db, now or utcnow(), limit)
    outcomes: list[tuple[_Claim, int | None, str | None]] = []
    for claim in claims:
        if claim.body is None:  # its key is gone: nothing can be sent any more
            outcomes.append((claim, None, "the notification's content is no longer readable"))
            continue
        moment = int((now or utcnow()).timestamp())
        secret = webhook_secret(server_secret, claim.workspace_id, claim.processor_id)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "consentry-erasure-webhook/1",
            "Consentry-Event": "erasure",
            "Idempotency-Key": claim.id,
            SIGNATURE_HEADER: sign(secret, moment, claim.body),
        }
        try:
            status = send(claim.url, claim.body, headers, TIMEOUT)
        except (OSError, ValueError) as exc:  # refused, timed out, unreachable, bad URL
            outcomes.append((claim, None, f"{type(exc).__name__}: no answer"))
            continue
        problem = None if 200 <= status < 300 else f"HTTP {status}"
        outcomes.append((claim, status, problem))
    _record(db, outcomes, report)
    _settle(db, {c.erasure_id for c in claims})
    return report


def _claim(db: Database, now: datetime, limit: int) -> list[_Claim]:
    with db.write() as session:
        rows = list(
            session.scalars(
                select(NotificationRow)
                .where(NotificationRow.status == "pending", NotificationRow.next_attempt_at <= now)
                .order_by(NotificationRow.next_attempt_at, NotificationRow.id)
                .limit(limit)
            )
        )
        vault = vault_of(session)
        claims = []
        for row in rows:
            row.next_attempt_at = now + LEASE
            body = None
            if row.payload is not None:
                (opened,) = vault.open_many(row.workspace_id, [(NOTIFICATION_FIELD, row.payload)])
                body = encode(opened) if opened is not None else None
            claims.append(
                _Claim(row.id, row.workspace_id, row.erasure_id, row.processor_id, row.url, body)
            )
    return claims


def _record(
    db: Database, outcomes: list[tuple[_Claim, int | None, str | None]], report: DeliveryReport
) -> None:
    if not outcomes:
        return
    with db.write() as session:
        for claim, _status, problem in outcomes:
            row = session.get(NotificationRow, claim.id)
            if row is None or row.status != "pending":
                continue
            at = utcnow()
            row.attempts += 1
            if problem is None:
                row.status, row.delivered_at, row.next_attempt_at = "delivered", at, None
                row.last_error = None
                report.delivered += 1
                continue
            row.last_error = problem[:MAX_ERROR]
            again = next_attempt(row.attempts, at) if claim.body is not None else None
            if again is None:
                row.status, row.next_attempt_at = "failed", None
                report.failed += 1
            else:
                row.next_attempt_at = again
                report.retrying += 1
            report.errors.append(f"{row.processor_name}: {problem}")


def _settle(db: Database, erasure_ids: set[str]) -> None:
    """Destroy the notification key of every erasure none of whose notifications is pending."""
    for erasure_id in sorted(erasure_ids):
        with db.write() as session:
            rows = list(
                session.scalars(
                    select(NotificationRow).where(NotificationRow.erasure_id == erasure_id)
                )
            )
            if not rows or any(r.status == "pending" for r in rows):
                continue
            vault_of(session).keystore.shred(rows[0].workspace_id, [erasure_subject(erasure_id)])
            session.execute(
                update(NotificationRow)
                .where(NotificationRow.erasure_id == erasure_id)
                .values(payload=None)
            )


def pending_count(*, db: Database) -> int:
    """How many notifications wait for delivery, in every workspace."""
    with db.read() as session:
        total = session.scalar(
            select(func.count())
            .select_from(NotificationRow)
            .where(NotificationRow.status == "pending")
        )
    return int(total or 0)
