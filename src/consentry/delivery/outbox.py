"""The outbox: every message a journey step or an audience push hands over is delivered once,
with retries, and one failing destination never stalls the others.

:func:`enqueue` stores a message under a key unique in its workspace (a retry of the same step
for the same subject finds it and stores nothing), its recipient and content sealed. The
delivery round, :func:`deliver_due`:

1. **claims** the messages that are due, at most ``per_destination_cap`` per destination and
   ``limit`` in all, skipping destinations whose circuit is open: one short write transaction
   sets them ``sending`` under a lease and a claim token (PostgreSQL: ``SELECT ... FOR UPDATE
   SKIP LOCKED``; SQLite: its one writer, and on both a conditional ``UPDATE``), so two workers
   never take the same message;
2. per destination, in parallel threads, for each message: **re-checks**, in a read
   transaction, the destination (active, and privacy's gate for its processor), the subject's
   consent for the message's purpose and channel (:func:`consentry.consent.policy.can_use`)
   and the suppression list, then **sends outside any transaction** (SMTP, or a signed POST),
   then **records** the outcome in a short write transaction (only while the claim is still
   its own);
3. a failure is tried again after an exponential back-off with jitter, up to ``max_attempts``,
   then the message is ``dead`` (the dead-letter list, retried by hand with
   :func:`retry_dead`). A refusal that will not change by waiting (an HTTP 4xx but 408/429,
   an SMTP 5xx reply, a processor the gate refuses) is dead at once, while an SMTP 4xx reply
   (greylisting's 451, 421, 450, 452) is retried like any failure; a consent that no longer
   allows, a suppressed address, a deactivated destination or an erased subject cancel the message.
   After ``circuit_threshold`` consecutive failures a destination is paused, its pause doubling
   each time it fails again, while the others go on.

A message is sent at least once and, short of a crash between the send and its record, exactly
once; a webhook's ``Idempotency-Key`` (the message id) lets the receiver drop a repeat. Content
is dropped once a message is sent or cancelled. ``last_error`` never holds personal data:
addresses and numbers in a server's answer are masked. Functions that take a session never
commit; :func:`deliver_due` runs its own units of work.
"""

from __future__ import annotations

import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from consentry.config import DeliverySettings, Settings
from consentry.consent.models import CHANNELS as CONSENT_CHANNELS
from consentry.consent.policy import can_use
from consentry.delivery import destinations as dest
from consentry.delivery import suppressions
from consentry.delivery.models import (
    DeliveryError,
    Mailer,
    OutgoingEmail,
    ascii_address,
    build_message,
)
from consentry.delivery.tables import DestinationRow, OutboxMessageRow
from consentry.delivery.webhook import SIGNATURE_HEADER, Poster, classify, encode, sign
from consentry.errors import Conflict, FieldError, Invalid, NotFound
from consentry.platform import audit
from consentry.platform.db import Database, utcnow
from consentry.platform.vault import vault_of
from consentry.profiles import service as profiles
from consentry.profiles.models import normalize_phone

log = logging.getLogger("consentry.delivery")

QUEUED, SENDING, SENT, RETRYING, DEAD, CANCELLED = (
    "queued",
    "sending",
    "sent",
    "retrying",
    "dead",
    "cancelled",
)
STATUSES = (QUEUED, SENDING, SENT, RETRYING, DEAD, CANCELLED)
WAITING = (QUEUED, RETRYING)  # due once next_attempt_at has come
OPEN = (QUEUED, SENDING, RETRYING)  # will still be sent
_JITTER = random.Random()  # retries' jitter: never the global PRNG, which others seed
TO_FIELD = "delivery.outbox.to"
CONTENT_FIELD = "delivery.outbox.content"
MAX_KEY = 200
MAX_ORIGIN = 200
MAX_ERROR = 500
MAX_TEXT = 1_000_000  # characters of an email's text or HTML
MAX_SMS = 1600  # ten concatenated segments
MAX_BODY = 1_000_000  # bytes of a webhook's JSON body
MAX_PAGE = 1000
MAX_OFFSET = 10**9  # rows skipped at most (a 64-bit store integer either way)
USER_AGENT = "consentry-delivery/1"
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,76}$")
_RESERVED_HEADERS = frozenset({"to", "from", "subject", "date", "message-id", "cc", "bcc"})
# masks in what a server answered: it often quotes the address it refused
_EMAIL = re.compile(r"[^\s<>@:;,\"']+@[^\s<>@:;,\"']+")
_PHONE = re.compile(r"\+?\d[\d\s().-]{6,}\d")


# --- what the outbox holds ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message of the outbox as the API shows it: never its recipient or content."""

    id: str
    destination_id: str
    key: str
    subject_id: str | None
    purpose: str | None
    channel: str
    origin: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    provider_message_id: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None

    def document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "destination_id": self.destination_id,
            "key": self.key,
            "subject_id": self.subject_id,
            "purpose": self.purpose,
            "channel": self.channel,
            "origin": self.origin,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": _iso(self.next_attempt_at),
            "last_error": self.last_error,
            "provider_message_id": self.provider_message_id,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "sent_at": _iso(self.sent_at),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass(slots=True)
class DeliveryReport:
    """What one round of :func:`deliver_due` did."""

    sent: int = 0
    retrying: int = 0
    dead: int = 0
    cancelled: int = 0
    released: int = 0  # claimed but handed back (circuit opened, round's time up)
    paused: list[str] = field(default_factory=list)  # destinations whose circuit opened
    errors: list[str] = field(default_factory=list)  # no personal data

    @property
    def attempted(self) -> int:
        return self.sent + self.retrying + self.dead + self.cancelled

    def document(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "retrying": self.retrying,
            "dead": self.dead,
            "cancelled": self.cancelled,
            "released": self.released,
            "paused": list(self.paused),
            "errors": list(self.errors),
        }


# --- enqueue ------------------------------------------------------------------------------------


def enqueue(
    *,
    session: Session,
    workspace_id: str,
    destination_id: str,
    key: str,
    subject_id: str | None,
    purpose: str | None,
    channel: str,
    to: str | None,
    content: Mapping[str, Any],
    origin: str,
    not_before: datetime | None = None,
    default_region: str = "US",
) -> str | None:
    """Store a message for delivery: its id, or None when ``key`` was already enqueued in the
    workspace (a retry of the same step for the same subject: nothing is stored twice).

    ``subject_id`` is any profile id of the person (stored as their unified profile's id);
    ``purpose`` the consent purpose checked at every attempt (None: a message consent does not
    govern, such as a receipt). ``content``: email ``{"subject", "text", "html"?,
    "headers"?}``; sms ``{"text"}``; webhook ``{"body": <JSON>}``. Invalid names each bad field;
    NotFound an unknown destination or subject."""
    destination = dest.get_destination(
        session=session, workspace_id=workspace_id, destination_id=destination_id
    )
    errors = _message_problems(destination, key, purpose, channel, origin)
    address, body, content_errors = _checked_content(destination.kind, to, content, default_region)
    errors += content_errors
    if errors:
        raise Invalid("the message is not valid", errors)
    if _id_of_key(session, workspace_id, key) is not None:
        return None
    canonical = None
    if subject_id is not None:
        canonical = profiles.canonical_of(
            session=session, workspace_id=workspace_id, profile_id=subject_id
        )
    message_id = str(uuid.uuid4())
    sealer = canonical or own_subject(message_id)
    sealed_to, sealed_content = vault_of(session).seal_many(
        workspace_id, [(sealer, TO_FIELD, address), (sealer, CONTENT_FIELD, body)]
    )
    now = utcnow()
    row = OutboxMessageRow(
        id=message_id,
        workspace_id=workspace_id,
        destination_id=destination.id,
        key=key,
        subject_id=canonical,
        purpose=purpose,
        channel=channel,
        to=sealed_to if address is not None else None,
        content=sealed_content,
        origin=origin,
        status=QUEUED,
        attempts=0,
        next_attempt_at=not_before or now,
        lease_until=None,
        claim=None,
        last_error=None,
        provider_message_id=None,
        created_at=now,
        updated_at=now,
        sent_at=None,
    )
    try:
        with session.begin_nested():  # the same key enqueued at the same moment elsewhere
            session.add(row)
    except IntegrityError:
        if _id_of_key(session, workspace_id, key) is not None:
            return None
        raise
    return message_id


def own_subject(message_id: str) -> str:
    """The key-store subject sealing a message that names no person (shredded once it is
    settled)."""
    return "ob-" + message_id.replace("-", "")[:32]


def _id_of_key(session: Session, workspace_id: str, key: str) -> str | None:
    return session.scalar(
        select(OutboxMessageRow.id).where(
            OutboxMessageRow.workspace_id == workspace_id, OutboxMessageRow.key == key
        )
    )


def _message_problems(
    destination: dest.Destination, key: str, purpose: str | None, channel: str, origin: str
) -> list[FieldError]:
    errors = []
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY:
        errors.append(FieldError("key", f"1 to {MAX_KEY} characters"))
    if purpose is not None and (not isinstance(purpose, str) or not purpose or len(purpose) > 100):
        errors.append(FieldError("purpose", "a purpose key of 1 to 100 characters, or null"))
    fixed = dest.KIND_CHANNEL.get(destination.kind)
    if channel not in CONSENT_CHANNELS:
        errors.append(FieldError("channel", f"one of {', '.join(CONSENT_CHANNELS)}"))
    elif fixed is not None and channel != fixed:
        errors.append(FieldError("channel", f"an {destination.kind} message goes by {fixed}"))
    if not isinstance(origin, str) or not origin.strip() or len(origin) > MAX_ORIGIN:
        errors.append(FieldError("origin", f"1 to {MAX_ORIGIN} characters"))
    return errors


def _checked_content(
    kind: str, to: str | None, content: Mapping[str, Any], default_region: str
) -> tuple[str | None, dict[str, Any], list[FieldError]]:
    """The recipient as it will be used, the content as it is stored, and what is wrong."""
    if not isinstance(content, Mapping):
        return None, {}, [FieldError("content", "an object")]
    if kind == "email":
        return _email_content(to, content)
    if kind == "sms":
        return _sms_content(to, content, default_region)
    errors = []
    if to is not None:
        errors.append(FieldError("to", "a webhook has no recipient address: null"))
    if "body" not in content:
        return None, {}, [*errors, FieldError("content.body", "required: the JSON to post")]
    try:
        size = len(encode(content["body"]))
    except (TypeError, ValueError):
        return None, {}, [*errors, FieldError("content.body", "not JSON")]
    if size > MAX_BODY:
        errors.append(FieldError("content.body", f"at most {MAX_BODY} bytes as JSON"))
    return None, {"body": content["body"]}, errors


def _email_content(
    to: str | None, content: Mapping[str, Any]
) -> tuple[str | None, dict[str, Any], list[FieldError]]:
    errors = []
    address = None
    if not isinstance(to, str):
        errors.append(FieldError("to", "required: the email address"))
    else:
        try:
            address = ascii_address(to)
        except ValueError as exc:
            errors.append(FieldError("to", str(exc)))
    subject, text, html = content.get("subject"), content.get("text"), content.get("html")
    if not isinstance(subject, str) or not subject.strip() or len(subject) > 998:
        errors.append(FieldError("content.subject", "one line of 1 to 998 characters"))
    elif "\r" in subject or "\n" in subject:
        errors.append(FieldError("content.subject", "one line"))
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        errors.append(FieldError("content.text", f"1 to {MAX_TEXT} characters"))
    if html is not None and (not isinstance(html, str) or len(html) > MAX_TEXT):
        errors.append(FieldError("content.html", f"at most {MAX_TEXT} characters, or null"))
    headers = content.get("headers") or {}
    if not isinstance(headers, Mapping):
        errors.append(FieldError("content.headers", "an object of header names and values"))
        headers = {}
    for name, value in headers.items():
        where = f"content.headers.{str(name)[:80]}"
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            errors.append(FieldError(where, "not a header name"))
        elif name.lower() in _RESERVED_HEADERS:
            errors.append(FieldError(where, "set by the outbox, not the content"))
        elif not isinstance(value, str) or "\r" in value or "\n" in value or len(value) > 998:
            errors.append(FieldError(where, "one line of at most 998 characters"))
    body = {"subject": subject, "text": text, "html": html, "headers": dict(headers)}
    return address, body, errors


def _sms_content(
    to: str | None, content: Mapping[str, Any], default_region: str
) -> tuple[str | None, dict[str, Any], list[FieldError]]:
    errors = []
    address = normalize_phone(to, default_region) if isinstance(to, str) else None
    if address is None:
        errors.append(FieldError("to", "required: a valid phone number"))
    text = content.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_SMS:
        errors.append(FieldError("content.text", f"1 to {MAX_SMS} characters"))
    return address, {"text": text}, errors


# --- reads --------------------------------------------------------------------------------------


def sent_count(
    *, session: Session, workspace_id: str, subject_id: str, channel: str, since: datetime
) -> int:
    """Messages to the unified profile of ``subject_id`` over ``channel`` sent since ``since``
    or still on their way (queued, sending, retrying): what a frequency cap counts."""
    try:
        canonical = profiles.canonical_of(
            session=session, workspace_id=workspace_id, profile_id=subject_id
        )
        members = profiles.member_ids(
            session=session, workspace_id=workspace_id, canonical_id=canonical
        )
    except NotFound:
        members = [subject_id]
    m = OutboxMessageRow
    total = session.scalar(
        select(func.count())
        .select_from(m)
        .where(
            m.workspace_id == workspace_id,
            m.subject_id.in_(members),
            m.channel == channel,
            or_(m.status.in_(OPEN), and_(m.status == SENT, m.sent_at >= since)),
        )
    )
    return int(total or 0)


def get_message(*, session: Session, workspace_id: str, message_id: str) -> OutboxMessage:
    """One message of the workspace (NotFound otherwise)."""
    return _message(_row(session, workspace_id, message_id))


def list_messages(
    *,
    session: Session,
    workspace_id: str,
    status: str | None = None,
    destination_id: str | None = None,
    subject_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[OutboxMessage]]:
    """How many messages match and one page of them, newest first."""
    if status is not None and status not in STATUSES:
        raise Invalid("unknown status", [FieldError("status", f"one of {', '.join(STATUSES)}")])
    m = OutboxMessageRow
    where = [m.workspace_id == workspace_id]
    if status is not None:
        where.append(m.status == status)
    if destination_id is not None:
        where.append(m.destination_id == destination_id)
    if subject_id is not None:
        where.append(m.subject_id == subject_id)
    total = session.scalar(select(func.count()).select_from(m).where(*where))
    rows = session.scalars(
        select(m)
        .where(*where)
        .order_by(m.updated_at.desc(), m.id)
        .limit(min(max(limit, 1), MAX_PAGE))
        .offset(min(max(offset, 0), MAX_OFFSET))
    )
    return int(total or 0), [_message(r) for r in rows]


def dead_letters(
    *,
    session: Session,
    workspace_id: str,
    destination_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[OutboxMessage]]:
    """The dead-letter list: messages given up on, newest first."""
    return list_messages(
        session=session,
        workspace_id=workspace_id,
        status=DEAD,
        destination_id=destination_id,
        limit=limit,
        offset=offset,
    )


def counts(*, session: Session, workspace_id: str) -> dict[str, dict[str, int]]:
    """Messages per destination and status (every status present, 0 when none)."""
    m = OutboxMessageRow
    found: dict[str, dict[str, int]] = {}
    rows = session.execute(
        select(m.destination_id, m.status, func.count())
        .where(m.workspace_id == workspace_id)
        .group_by(m.destination_id, m.status)
    )
    for destination_id, status, n in rows:
        found.setdefault(destination_id, dict.fromkeys(STATUSES, 0))[status] = int(n)
    return found


def status_totals(counted: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """The messages per status over every destination of :func:`counts`."""
    totals = dict.fromkeys(STATUSES, 0)
    for per_status in counted.values():
        for status, n in per_status.items():
            totals[status] += n
    return totals


# --- by hand and by erasure ---------------------------------------------------------------------


def retry_dead(
    *, session: Session, workspace_id: str, message_id: str, actor: str
) -> OutboxMessage:
    """Put a dead letter back in the queue with fresh attempts (Conflict when it is not dead or
    its content is gone); recorded in the audit trail."""
    row = _row(session, workspace_id, message_id, lock=True)
    if row.status != DEAD:
        raise Conflict(
            f"message {message_id} is {row.status}, not dead",
            [FieldError("status", f"only a dead message can be retried; it is {row.status}")],
        )
    if row.content is None:
        raise Conflict(
            f"message {message_id} can no longer be sent",
            [FieldError("content", "no longer held (its subject was erased)")],
        )
    now = utcnow()
    row.status, row.attempts, row.next_attempt_at = QUEUED, 0, now
    row.lease_until, row.claim, row.last_error, row.updated_at = None, None, None, now
    session.flush()
    _audit_retry(session, workspace_id, actor, [row.id], row.destination_id)
    return _message(row)


def retry_all_dead(
    *, session: Session, workspace_id: str, actor: str, destination_id: str | None = None
) -> int:
    """Put every dead letter (of one destination) whose content is still held back in the
    queue; how many."""
    m = OutboxMessageRow
    where = [m.workspace_id == workspace_id, m.status == DEAD, m.content.is_not(None)]
    if destination_id is not None:
        dest.get_destination(
            session=session, workspace_id=workspace_id, destination_id=destination_id
        )
        where.append(m.destination_id == destination_id)
    ids = list(session.scalars(select(m.id).where(*where)))
    now = utcnow()
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        session.execute(
            update(m)
            .where(m.id.in_(part), m.status == DEAD)
            .values(
                status=QUEUED,
                attempts=0,
                next_attempt_at=now,
                lease_until=None,
                claim=None,
                last_error=None,
                updated_at=now,
            )
        )
    for start in range(0, len(ids), audit.MAX_TARGETS):
        _audit_retry(
            session, workspace_id, actor, ids[start : start + audit.MAX_TARGETS], destination_id
        )
    return len(ids)


def _audit_retry(
    session: Session, workspace_id: str, actor: str, ids: list[str], destination_id: str | None
) -> None:
    if not ids:
        return
    audit.record_many(
        session=session,
        workspace_id=workspace_id,
        actor=actor,
        action="delivery.dead_letter_retried",
        target_type="message",
        target_ids=ids,
        reason="dead letter retried by hand",
        details={"destination_id": destination_id} if destination_id else {},
    )


def cancel_for_subject(
    *, session: Session, workspace_id: str, profile_ids: Sequence[str], reason: str
) -> int:
    """Cancel every message to these profiles that is not sent yet (dead letters too), their
    recipient and content dropped; how many. A worker sending one right now does not record it
    as sent (its claim is gone)."""
    m = OutboxMessageRow
    ids = sorted(set(profile_ids))
    now = utcnow()
    cancelled = 0
    for start in range(0, len(ids), 500):
        result = session.execute(
            update(m)
            .where(
                m.workspace_id == workspace_id,
                m.subject_id.in_(ids[start : start + 500]),
                m.status.in_((*OPEN, DEAD)),
            )
            .values(
                status=CANCELLED,
                to=None,
                content=None,
                lease_until=None,
                claim=None,
                next_attempt_at=None,
                last_error=_scrub(reason),
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        cancelled += int(getattr(result, "rowcount", 0) or 0)
    return cancelled


def erase_subject(*, session: Session, workspace_id: str, profile_ids: Sequence[str]) -> int:
    """Delete every message to these profiles, sent or not (an erasure); how many."""
    m = OutboxMessageRow
    ids = sorted(set(profile_ids))
    erased = 0
    for start in range(0, len(ids), 500):
        result = session.execute(
            delete(m)
            .where(m.workspace_id == workspace_id, m.subject_id.in_(ids[start : start + 500]))
            .execution_options(synchronize_session=False)
        )
        erased += int(getattr(result, "rowcount", 0) or 0)
    return erased


def prune(*, session: Session, before: datetime, workspace_id: str | None = None) -> int:
    """Delete sent and cancelled messages settled before ``before`` (their content is already
    gone; what is left names a profile and an origin, kept only as long as frequency caps and
    the dashboard need it); how many. Dead letters stay until retried or erased."""
    m = OutboxMessageRow
    scope = [m.workspace_id == workspace_id] if workspace_id is not None else []
    result = session.execute(
        delete(m)
        .where(m.status.in_((SENT, CANCELLED)), m.updated_at < before, *scope)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- the delivery round -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Claim:
    id: str
    workspace_id: str
    destination_id: str
    token: str
    attempts: int
    own_key: bool  # sealed under a key of its own (no subject)


@dataclass(frozen=True, slots=True)
class _Ready:
    """A message checked and opened, ready to go."""

    kind: str
    to: str | None
    content: dict[str, Any]
    url: str | None
    secret: str | None
    from_address: str | None
    from_name: str | None


Verdict = Literal["sent", "retry", "dead", "cancelled"]


@dataclass(frozen=True, slots=True)
class _Outcome:
    verdict: Verdict
    error: str | None = None
    provider_id: str | None = None
    bounce: bool = False  # the address was refused for good: suppress it
    counts_attempt: bool = True  # False: not tried (a check refused it before sending)


@dataclass(frozen=True, slots=True)
class _Round:
    """What every message of a round shares."""

    db: Database
    mailer: Mailer
    post: Poster
    settings: DeliverySettings
    now: datetime
    from_address: str
    from_name: str | None
    default_region: str
    jitter: Callable[[], float]
    deadline: float  # time.monotonic() after which the round hands back what it has not sent


def deliver_due(
    db: Database,
    *,
    mailer: Mailer,
    post: Poster,
    now: datetime | None = None,
    limit: int = 500,
    settings: DeliverySettings | None = None,
    from_address: str = "consentry@localhost",
    from_name: str | None = None,
    default_region: str = "US",
    jitter: Callable[[], float] = _JITTER.random,
    workspace_id: str | None = None,
) -> DeliveryReport:
    """Deliver what is due now (see the module's text): at most ``limit`` messages,
    ``settings.per_destination_cap`` per destination, destinations in parallel; every
    workspace's, or only ``workspace_id``'s."""
    config = settings or DeliverySettings()
    at = now or utcnow()
    claims = _claim(db, at, limit, config, workspace_id)
    report = DeliveryReport()
    if not claims:
        return report
    run = _Round(
        db,
        mailer,
        post,
        config,
        at,
        from_address,
        from_name,
        default_region,
        jitter,
        time.monotonic() + config.lease_seconds / 2,
    )
    groups: dict[str, list[_Claim]] = {}
    for claim in claims:
        groups.setdefault(claim.destination_id, []).append(claim)
    workers = max(1, min(config.parallel_destinations, len(groups)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="delivery") as pool:
        futures = {
            destination_id: pool.submit(_deliver_destination, run, group)
            for destination_id, group in groups.items()
        }
    for destination_id, future in futures.items():
        problem = future.exception()
        if problem is not None:  # its claims come back when their lease ends
            what = type(problem).__name__  # only the type: a message may quote a value
            log.error("delivery to destination %s failed: %s", destination_id, what)
            report.errors.append(f"destination {destination_id}: internal error ({what})")
            continue
        part = future.result()
        report.sent += part.sent
        report.retrying += part.retrying
        report.dead += part.dead
        report.cancelled += part.cancelled
        report.released += part.released
        report.paused += part.paused
        report.errors += part.errors
    return report


def deliver_configured(
    db: Database,
    settings: Settings,
    *,
    mailer: Mailer,
    post: Poster,
    workspace_id: str | None = None,
) -> DeliveryReport:
    """:func:`deliver_due` as configured (``delivery``, the SMTP sender, the default phone
    region): the server's scheduled round, ``POST /v1/outbox/run`` and ``consentry delivery
    run``."""
    return deliver_due(
        db,
        mailer=mailer,
        post=post,
        limit=settings.delivery.batch,
        settings=settings.delivery,
        from_address=settings.smtp.from_address,
        from_name=settings.smtp.from_name,
        default_region=settings.default_phone_region,
        workspace_id=workspace_id,
    )


def _due(m: type[OutboxMessageRow], now: datetime) -> Any:
    return or_(
        and_(m.status.in_(WAITING), m.next_attempt_at <= now),
        and_(m.status == SENDING, m.lease_until < now),  # a worker died holding it
    )


def _claim(
    db: Database, now: datetime, limit: int, settings: DeliverySettings, workspace_id: str | None
) -> list[_Claim]:
    m, d = OutboxMessageRow, DestinationRow
    claims: list[_Claim] = []
    lease_until = now + timedelta(seconds=settings.lease_seconds)
    with db.write() as session:
        open_circuit = and_(d.paused_until.is_not(None), d.paused_until > now)
        scope = [m.workspace_id == workspace_id] if workspace_id is not None else []
        ready = session.execute(
            select(m.destination_id, func.min(m.next_attempt_at))
            .join(d, d.id == m.destination_id)
            .where(_due(m, now), ~open_circuit, *scope)
            .group_by(m.destination_id)
            .order_by(func.min(m.next_attempt_at), m.destination_id)
        ).all()
        postgres = session.get_bind().dialect.name == "postgresql"
        for destination_id, _oldest in ready:
            room = min(settings.per_destination_cap, limit - len(claims))
            if room <= 0:
                break
            query = (
                select(m.id)
                .where(m.destination_id == destination_id, _due(m, now))
                .order_by(m.next_attempt_at, m.created_at, m.id)
                .limit(room)
            )
            if postgres:  # rows another worker is claiming are skipped, not waited for
                query = query.with_for_update(skip_locked=True)
            ids = list(session.scalars(query))
            if not ids:
                continue
            token = str(uuid.uuid4())
            session.execute(
                update(m)
                .where(m.id.in_(ids), _due(m, now))  # taken only if still due: never twice
                .values(status=SENDING, lease_until=lease_until, claim=token, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            rows = session.execute(
                select(m.id, m.workspace_id, m.attempts, m.subject_id)
                .where(m.claim == token)
                .order_by(m.next_attempt_at, m.created_at, m.id)
            )
            claims += [
                _Claim(i, w, destination_id, token, attempts, subject is None)
                for i, w, attempts, subject in rows
            ]
    return claims


def _deliver_destination(run: _Round, claims: list[_Claim]) -> DeliveryReport:
    """One destination's share of a round, in order; stops (handing the rest back) when its
    circuit opens or the round's time is up."""
    report = DeliveryReport()
    for place, claim in enumerate(claims):
        if time.monotonic() > run.deadline:
            report.released += _release(run, claims[place:], None)
            break
        ready, outcome = _prepare(run, claim)
        if ready is not None:
            outcome = _send(run, claim, ready)
        assert outcome is not None
        recorded, paused_until = _record(run, claim, outcome, ready)
        if not recorded:
            continue
        _count(report, outcome.verdict)
        if outcome.error and outcome.verdict != "cancelled":
            report.errors.append(f"message {claim.id}: {outcome.error}")
        if paused_until is not None:
            report.paused.append(claim.destination_id)
            report.released += _release(run, claims[place + 1 :], paused_until)
            break
    return report


def _count(report: DeliveryReport, verdict: Verdict) -> None:
    if verdict == "sent":
        report.sent += 1
    elif verdict == "retry":
        report.retrying += 1
    elif verdict == "dead":
        report.dead += 1
    else:
        report.cancelled += 1


def _prepare(run: _Round, claim: _Claim) -> tuple[_Ready | None, _Outcome | None]:
    """Check the message again and open it: ready to send, or the outcome that stops it."""
    with run.db.read() as session:
        row = session.get(OutboxMessageRow, claim.id)
        if row is None or row.claim != claim.token or row.status != SENDING:
            return None, _Outcome("cancelled", "no longer claimed", counts_attempt=False)
        destination = dest.get_destination(
            session=session, workspace_id=claim.workspace_id, destination_id=claim.destination_id
        )
        if not destination.active:
            return None, _stop("cancelled", "the destination is deactivated")
        try:
            _processor, refusals = dest.transfer_refusals(
                session=session,
                workspace_id=claim.workspace_id,
                destination=destination,
                categories=(),
            )
        except Invalid as exc:  # the gate found the request itself malformed
            refusals = exc.errors
            if not refusals:
                return None, _stop("dead", f"transfer refused: {exc.message}")
        if refusals:
            reasons = "; ".join(f"{e.field}: {e.reason}" for e in refusals)
            return None, _stop("dead", f"transfer refused: {reasons}")
        if row.subject_id is not None and row.purpose is not None:
            try:
                decision = can_use(
                    session=session,
                    workspace_id=claim.workspace_id,
                    profile_id=row.subject_id,
                    purpose=row.purpose,
                    channel=row.channel,
                    unconfigured="refuse",
                )
            except NotFound:
                return None, _stop("cancelled", "the subject no longer exists")
            if not decision.allowed:
                return None, _stop("cancelled", f"consent: {decision.reason}")
        to, content = vault_of(session).open_many(
            claim.workspace_id, [(TO_FIELD, row.to), (CONTENT_FIELD, row.content)]
        )
        if content is None or (row.to is not None and to is None):
            return None, _stop("cancelled", "the content is no longer readable (erased)")
        if to is not None and suppressions.is_suppressed(
            session=session,
            workspace_id=claim.workspace_id,
            channel=destination.kind,
            address=str(to),
            default_region=run.default_region,
        ):
            return None, _stop("cancelled", "the address is on the suppression list")
        secret = None
        if destination.kind != "email":
            secret = dest.signing_secret(
                session=session,
                workspace_id=claim.workspace_id,
                destination_id=claim.destination_id,
            )
            if secret is None:
                return None, _stop("dead", "the destination's signing secret is unreadable")
    ready = _Ready(
        kind=destination.kind,
        to=str(to) if to is not None else None,
        content=dict(content),
        url=destination.url,
        secret=secret,
        from_address=destination.from_address,
        from_name=destination.from_name,
    )
    return ready, None


def _stop(verdict: Verdict, why: str) -> _Outcome:
    return _Outcome(verdict, why, counts_attempt=False)


def _send(run: _Round, claim: _Claim, ready: _Ready) -> _Outcome:
    """Hand the message over (no transaction is open here)."""
    if ready.kind == "email":
        return _send_email(run, ready)
    if ready.kind == "sms":
        body = encode({"to": ready.to, "text": ready.content.get("text")})
    else:
        body = encode(ready.content.get("body"))
    moment = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Consentry-Event": ready.kind,
        "Idempotency-Key": claim.id,
        SIGNATURE_HEADER: sign(ready.secret or "", moment, body),
    }
    try:
        answer = run.post(ready.url or "", body, headers, run.settings.timeout_seconds)
    except Exception as exc:  # refused, unreachable, timed out, a broken answer
        return _Outcome("retry", f"no answer ({type(exc).__name__})")
    verdict = classify(answer.status)
    if verdict == "delivered":
        return _Outcome("sent", provider_id=answer.message_id)
    return _Outcome("dead" if verdict == "permanent" else "retry", f"HTTP {answer.status}")


def _send_email(run: _Round, ready: _Ready) -> _Outcome:
    content = ready.content
    try:
        message = build_message(
            OutgoingEmail(
                to=ready.to or "",
                subject=str(content.get("subject") or ""),
                text=str(content.get("text") or ""),
                html=content.get("html"),
                headers=dict(content.get("headers") or {}),
            ),
            from_address=ready.from_address or run.from_address,
            from_name=ready.from_name or run.from_name,
        )
    except ValueError as exc:
        return _Outcome("dead", f"the message cannot be built: {_scrub(str(exc))}")
    try:
        sent = run.mailer.send(message)
    except DeliveryError as exc:
        verdict: Verdict = "dead" if exc.permanent else "retry"
        return _Outcome(verdict, _scrub(exc.message), bounce=exc.bounce)
    except Exception as exc:  # a mailer that broke its contract: try again later
        return _Outcome("retry", f"the mailer failed ({type(exc).__name__})")
    return _Outcome("sent", provider_id=sent.message_id[:300] or None)


def _record(
    run: _Round, claim: _Claim, outcome: _Outcome, ready: _Ready | None
) -> tuple[bool, datetime | None]:
    """Write the outcome while the claim is still ours: whether it was recorded, and until when
    the destination is paused when this failure opened its circuit."""
    settings, now = run.settings, run.now
    paused_until = None
    settled = False
    with run.db.write() as session:
        row = session.get(OutboxMessageRow, claim.id, with_for_update=True)
        if row is None or row.claim != claim.token or row.status != SENDING:
            return False, None  # cancelled meanwhile (erasure), or the lease was lost
        if outcome.counts_attempt:
            row.attempts += 1
        row.lease_until, row.claim, row.updated_at = None, None, now
        row.last_error = outcome.error[:MAX_ERROR] if outcome.error else None
        verdict = outcome.verdict
        if verdict == "retry" and row.attempts >= settings.max_attempts:
            verdict = "dead"
            row.last_error = f"gave up after {row.attempts} attempts: {outcome.error or ''}"[
                :MAX_ERROR
            ]
        if verdict == "sent":
            row.status, row.sent_at, row.next_attempt_at = SENT, now, None
            row.provider_message_id = outcome.provider_id
            row.to, row.content = None, None
            settled = True
        elif verdict == "retry":
            row.status = RETRYING
            row.next_attempt_at = now + backoff(row.attempts, settings, run.jitter())
        elif verdict == "dead":
            row.status, row.next_attempt_at = DEAD, None
        else:
            row.status, row.next_attempt_at = CANCELLED, None
            row.to, row.content = None, None
            settled = True
        if outcome.counts_attempt:
            paused_until = _circuit(session, claim, outcome, settings, now)
        if outcome.bounce and ready is not None and ready.to is not None:
            suppressions.add(
                session=session,
                workspace_id=claim.workspace_id,
                channel=ready.kind,
                address=ready.to,
                reason="bounce",
                actor="system:delivery",
                default_region=run.default_region,
            )
    if settled and claim.own_key:  # nothing sealed under its own key is needed any more
        with run.db.read() as session:
            vault_of(session).keystore.shred(claim.workspace_id, [own_subject(claim.id)])
    return True, paused_until


def _circuit(
    session: Session,
    claim: _Claim,
    outcome: _Outcome,
    settings: DeliverySettings,
    now: datetime,
) -> datetime | None:
    """Count the destination's consecutive failures; open its circuit at the threshold. A
    message the receiver refused for good says nothing of the destination's health."""
    row = session.get(DestinationRow, claim.destination_id, with_for_update=True)
    if row is None:
        return None
    if outcome.verdict == "sent":
        row.failures, row.paused_until = 0, None
        return None
    if outcome.verdict != "retry":
        return None
    row.failures += 1
    if row.failures < settings.circuit_threshold:
        return None
    over = row.failures - settings.circuit_threshold
    pause = min(settings.circuit_pause_seconds * 2 ** min(over, 30), settings.backoff_max_seconds)
    row.paused_until = now + timedelta(seconds=pause)
    log.warning(
        "destination %s paused for %.0f s after %d consecutive failures",
        row.id,
        pause,
        row.failures,
    )
    return row.paused_until


def _release(run: _Round, claims: Iterable[_Claim], until: datetime | None) -> int:
    """Hand claimed messages back untried, due again at ``until`` (or now)."""
    pending = list(claims)
    if not pending:
        return 0
    m = OutboxMessageRow
    released = 0
    with run.db.write() as session:
        for claim in pending:
            result = session.execute(
                update(m)
                .where(m.id == claim.id, m.claim == claim.token, m.status == SENDING)
                .values(
                    status=RETRYING if claim.attempts else QUEUED,
                    next_attempt_at=until or run.now,
                    lease_until=None,
                    claim=None,
                    updated_at=run.now,
                )
                .execution_options(synchronize_session=False)
            )
            released += int(getattr(result, "rowcount", 0) or 0)
    return released


def backoff(attempts: int, settings: DeliverySettings, jitter: float) -> timedelta:
    """The wait after ``attempts`` failed attempts: the base doubled per attempt, capped, half
    of it fixed and half random (``jitter`` in [0, 1)), so retries of many messages spread."""
    full = min(
        settings.backoff_base_seconds * 2 ** min(max(attempts - 1, 0), 30),
        settings.backoff_max_seconds,
    )
    return timedelta(seconds=full / 2 + full / 2 * min(max(jitter, 0.0), 1.0))


def _scrub(text: str) -> str:
    """``text`` with addresses and phone numbers masked (a server's answer may quote them);
    runs of fewer than 8 digits (reply codes such as ``550 5.1.1``) stay."""

    def number(found: re.Match[str]) -> str:
        return "<number>" if sum(c.isdigit() for c in found.group()) >= 8 else found.group()

    return _PHONE.sub(number, _EMAIL.sub("<address>", text))[:MAX_ERROR]


# --- helpers ------------------------------------------------------------------------------------


def _row(
    session: Session, workspace_id: str, message_id: str, *, lock: bool = False
) -> OutboxMessageRow:
    query = select(OutboxMessageRow).where(
        OutboxMessageRow.id == message_id, OutboxMessageRow.workspace_id == workspace_id
    )
    row = session.scalars(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(f"no message {message_id[:100]!r} in this workspace")
    return row


def _message(row: OutboxMessageRow) -> OutboxMessage:
    return OutboxMessage(
        id=row.id,
        destination_id=row.destination_id,
        key=row.key,
        subject_id=row.subject_id,
        purpose=row.purpose,
        channel=row.channel,
        origin=row.origin,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        provider_message_id=row.provider_message_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        sent_at=row.sent_at,
    )
