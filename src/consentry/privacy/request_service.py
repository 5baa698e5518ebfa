"""Use cases of data-subject requests: intake (public and staff), verification by code or
signed link, the status machine, the queue, reminders, expiry, and the person's requests for
the access archive. The rules live in :mod:`consentry.privacy.requests`.

Functions that take a session never commit and never send: the routes and the CLI record the
state in one unit of work, then hand mails to the SMTP server outside it (:func:`send`), so a
slow server holds no lock and a failure leaves what was recorded in place. A wrong verification
code is *returned* (not raised), so the attempt it used is committed before the caller answers.

Every change appends a step to the request's history and an entry to the audit trail, in the
caller's transaction. Neither holds personal data: the email is sealed, the history and the
trail name requests and profiles by their ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from consentry.consent import service as consent
from consentry.delivery.models import (
    DeliveryError,
    Mailer,
    OutgoingEmail,
    Sent,
    ascii_address,
    build_message,
)
from consentry.errors import Conflict, FieldError, Invalid, NotFound
from consentry.platform import audit, tenancy
from consentry.platform.db import utcnow
from consentry.platform.vault import vault_of
from consentry.privacy import request_limits as limits
from consentry.privacy import requests as rq
from consentry.privacy.request_tables import RequestEventRow, RequestRow
from consentry.profiles import service as profiles

TARGET = "privacy_request"
EMAIL_FIELD = "request.email"
MESSAGE_FIELD = "request.message"
EMAIL_INDEX = "email"  # the kind of the profiles' email identifiers: the indexes match
MAX_PAGE = 500


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Challenge:
    """A verification to mail: the code in clear (never stored) and the signed link's token."""

    request: rq.Request
    address: str
    code: str
    token: str
    expires_at: datetime
    brand: str


@dataclass(frozen=True, slots=True)
class Intake:
    """What an intake made: a new request (with its challenge unless staff verified it), or
    the open request it duplicates (``duplicate`` set, nothing new recorded)."""

    request: rq.Request
    challenge: Challenge | None = None
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of a code or a link: ``verified``, or why not (``wrong``, ``expired``,
    ``exhausted``). ``duplicate_of`` names the open request this one turned out to repeat."""

    outcome: str
    request: rq.Request
    attempts_left: int = 0
    duplicate_of: rq.Request | None = None

    @property
    def verified(self) -> bool:
        return self.outcome == VERIFIED


VERIFIED = "verified"


@dataclass(frozen=True, slots=True)
class Extension:
    """An extended request and the notice to mail its requester (no address: none to send)."""

    request: rq.Request
    address: str | None
    mail: rq.Mail


@dataclass(frozen=True, slots=True)
class Reminder:
    """A reminder step due for a request, and the steps sending it settles."""

    request: rq.Request
    step: int
    settles: tuple[int, ...]


# --- reading rows -------------------------------------------------------------------------------


def _request(row: RequestRow) -> rq.Request:
    return rq.Request(
        id=row.id,
        workspace_id=row.workspace_id,
        type=row.type,
        status=row.status,
        jurisdiction=row.jurisdiction,
        country=row.country,
        source=row.source,
        profile_id=row.profile_id,
        received_at=row.received_at,
        due_at=row.due_at,
        original_due_at=row.original_due_at,
        verify_by=row.verify_by,
        extended=row.extended,
        extension_reason=row.extension_reason,
        verified_at=row.verified_at,
        verified_by=row.verified_by,
        closed_at=row.closed_at,
        resolution=row.resolution,
        duplicate_of=row.duplicate_of,
        reminders_sent=tuple(row.reminders_sent or ()),
    )


def _row(session: Session, workspace_id: str, request_id: str, *, lock: bool = False) -> RequestRow:
    """The request of the workspace, or NotFound (another workspace's is not found either)."""
    query = select(RequestRow).where(
        RequestRow.workspace_id == workspace_id, RequestRow.id == request_id
    )
    if lock:
        query = query.with_for_update()
    row = session.scalars(query).one_or_none()
    if row is None:
        raise NotFound(f"no privacy request {request_id[:40]!r} in this workspace")
    return row


def _brand(session: Session, workspace_id: str) -> str:
    return consent.get_branding(session=session, workspace_id=workspace_id).brand_name


def _opened(session: Session, row: RequestRow) -> tuple[str | None, str | None]:
    email, message = vault_of(session).open_many(
        row.workspace_id, [(EMAIL_FIELD, row.email_sealed), (MESSAGE_FIELD, row.message_sealed)]
    )
    return (email if isinstance(email, str) else None), (
        message if isinstance(message, str) else None
    )


def _event(
    session: Session,
    row: RequestRow,
    *,
    actor: str,
    action: str,
    from_status: str | None,
    reason: str | None,
    at: datetime,
    details: dict[str, audit.DetailValue] | None = None,
) -> None:
    """Append a step to the request's history and an entry to the audit trail."""
    seq = session.scalar(
        select(func.coalesce(func.max(RequestEventRow.seq), 0)).where(
            RequestEventRow.request_id == row.id
        )
    )
    session.add(
        RequestEventRow(
            request_id=row.id,
            seq=int(seq or 0) + 1,
            workspace_id=row.workspace_id,
            at=at,
            actor=actor,
            action=action,
            from_status=from_status,
            to_status=row.status,
            reason=reason,
            details=dict(details or {}),
        )
    )
    _audit(
        session,
        row,
        actor=actor,
        action=action,
        reason=reason,
        at=at,
        details={"status": row.status, **(details or {})},
    )
    session.flush()


def _audit(
    session: Session,
    row: RequestRow,
    *,
    actor: str,
    action: str,
    reason: str | None,
    at: datetime,
    details: dict[str, audit.DetailValue],
) -> None:
    """An entry of the audit trail (``dsr.<action>``) naming the request by id, with its type."""
    audit.record(
        session=session,
        workspace_id=row.workspace_id,
        actor=actor,
        action=f"dsr.{action}",
        target_type=TARGET,
        target_id=row.id,
        reason=reason or audit.UNSPECIFIED,
        details={"type": row.type, **details},
        at=at,
    )


def check_reason(reason: str | None, *, required: bool) -> str | None:
    """The reason, trimmed, or Invalid naming ``reason``: it goes to the history and the audit
    trail, so it is short and holds no email address or phone number."""
    text = reason.strip() if reason else ""
    if not text:
        if required:
            raise Invalid("a reason is required", [FieldError("reason", "a reason is required")])
        return None
    problem = audit.reason_problem(text)
    if problem is None and len(text) > rq.MAX_REASON:
        problem = f"at most {rq.MAX_REASON} characters"
    if problem:
        raise Invalid("the reason cannot be recorded", [FieldError("reason", problem)])
    return text


# --- intake -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Asked:
    type: str
    email: str | None
    country: str | None
    message: str | None


def _checked(
    request_type: str, email: str | None, country: str | None, message: str | None
) -> _Asked:
    """Every field checked; one Invalid naming each bad field."""
    errors: list[FieldError] = []
    values: dict[str, Any] = {}
    for name, check, raw in (
        ("type", rq.request_type, request_type),
        ("email", rq.requester_email, email),
        ("country", rq.requester_country, country),
        ("message", rq.message_text, message),
    ):
        if raw is None:
            values[name] = None
            continue
        try:
            values[name] = check(raw)
        except Invalid as exc:
            errors.extend(exc.errors)
    if errors:
        raise Invalid("the request is not valid; nothing was recorded", errors)
    return _Asked(values["type"], values["email"], values["country"], values["message"])


def _receive(
    session: Session,
    *,
    workspace_id: str,
    asked: _Asked,
    source: str,
    actor: str | None,
    reason: str | None,
    rules: rq.Rules,
    now: datetime,
    profile_id: str | None = None,
) -> RequestRow:
    """Record a new, unverified request and its first step (``received``). ``actor`` None: the
    requester (``subject:<request id>``)."""
    request_id = rq.new_request_id()
    key = rq.jurisdiction_for(asked.country, rules.default_jurisdiction)
    jurisdiction = rules.jurisdiction(key)
    due = rq.due_at(now, jurisdiction)
    vault = vault_of(session)
    sealed = [
        (request_id, field, value)
        for field, value in ((EMAIL_FIELD, asked.email), (MESSAGE_FIELD, asked.message))
        if value is not None
    ]
    tokens = dict(
        zip([f for _, f, _ in sealed], vault.seal_many(workspace_id, sealed), strict=True)
    )
    row = RequestRow(
        id=request_id,
        workspace_id=workspace_id,
        type=asked.type,
        status=rq.UNVERIFIED,
        jurisdiction=key,
        country=asked.country,
        source=source,
        profile_id=profile_id,
        email_index=vault.index(workspace_id, EMAIL_INDEX, asked.email) if asked.email else None,
        email_sealed=tokens.get(EMAIL_FIELD),
        message_sealed=tokens.get(MESSAGE_FIELD),
        received_at=now,
        due_at=due,
        original_due_at=due,
        verify_by=rq.verification_deadline(now, rules),
        extended=False,
        extension_reason=None,
        code_attempts=0,
        codes_sent=0,
        reminders_sent=[],
        updated_at=now,
    )
    session.add(row)
    session.flush()
    _event(
        session,
        row,
        actor=actor or _subject(row),
        action="received",
        from_status=None,
        reason=reason,
        at=now,
        details={"source": row.source, "jurisdiction": row.jurisdiction},
    )
    return row


def _subject(row: RequestRow) -> str:
    """The requester, as an actor of the history and the audit trail."""
    return f"subject:{row.id}"


def _challenge(
    session: Session, row: RequestRow, *, email: str, rules: rq.Rules, secret: str, now: datetime
) -> Challenge:
    """A fresh code (older codes and links stop working) and the link that goes with it."""
    if row.codes_sent >= rules.max_codes:
        raise Conflict(
            f"{row.codes_sent} codes were sent for this request already; make a new request"
        )
    code = rq.new_code()
    digest = rq.code_digest(rq.code_key(secret, row.workspace_id), row.id, code)
    expires_at = min(now + rules.code_ttl, row.verify_by)
    row.code_hash, row.code_expires_at, row.code_attempts = digest, expires_at, 0
    row.codes_sent += 1
    row.updated_at = now
    token = rq.sign_link(
        secret,
        workspace_id=row.workspace_id,
        request_id=row.id,
        code_ref=rq.code_ref(digest),
        expires_at=expires_at,
    )
    return Challenge(
        request=_request(row),
        address=ascii_address(email),
        code=code,
        token=token,
        expires_at=expires_at,
        brand=_brand(session, row.workspace_id),
    )


def submit(
    *,
    session: Session,
    workspace_id: str,
    request_type: str,
    email: str,
    country: str | None = None,
    message: str | None = None,
    rules: rq.Rules,
    secret: str,
    now: datetime | None = None,
    guard: limits.Guard | None = None,
) -> Intake:
    """Record a request made by the person (the public form or API): ``unverified``, with a
    code and a link to mail. NotFound for an unknown workspace; Invalid naming each bad field;
    with a ``guard`` (the public entrances), RateLimited over the limits of the rules (per
    email address and per client network), nothing recorded.

    No duplicate is looked for here: the caller has not proved the address yet, and telling
    them that this address already has an open request would disclose it. The duplicate is
    found when the address is verified (:func:`verify_code`)."""
    now = now or utcnow()
    tenancy.get_workspace(session=session, workspace_id=workspace_id)
    asked = _checked(request_type, email, country, message)
    assert asked.email is not None
    if guard is not None:
        limits.take(
            session,
            workspace_id=workspace_id,
            checks=limits.intake_checks(
                limits=rules.limits,
                email_index=vault_of(session).index(workspace_id, EMAIL_INDEX, asked.email),
                network=rq.network_key(secret, workspace_id, guard.client),
            ),
            limits=rules.limits,
            now=now,
        )
    row = _receive(
        session,
        workspace_id=workspace_id,
        asked=asked,
        source=rq.SOURCE_FORM,
        actor=None,
        reason=None,
        rules=rules,
        now=now,
    )
    challenge = _challenge(session, row, email=asked.email, rules=rules, secret=secret, now=now)
    return Intake(challenge.request, challenge)


def submit_for_staff(
    *,
    session: Session,
    workspace_id: str,
    request_type: str,
    actor: str,
    email: str | None = None,
    profile_id: str | None = None,
    user_id: str | None = None,
    country: str | None = None,
    message: str | None = None,
    verified: bool = False,
    reason: str | None = None,
    rules: rq.Rules,
    secret: str,
    now: datetime | None = None,
) -> Intake:
    """Record a request received by the shop (mail, phone, in a store) through the admin API.

    ``verified``: the person is a known profile (``profile_id``, ``email`` or ``user_id``
    names it, NotFound otherwise) whom staff identified; the request starts ``verified`` (by
    ``staff``) and an open request of the same type from the same person (its email, else its
    profile) is answered instead (``duplicate``). Otherwise an email is needed (given, or the
    named profile's) and the request starts ``unverified`` with a challenge to mail.
    """
    now = now or utcnow()
    tenancy.get_workspace(session=session, workspace_id=workspace_id)
    why = check_reason(reason, required=False)
    asked = _checked(request_type, email, country, message)
    if verified and profile_id is None and email is None and user_id is None:
        problem = "staff verify a known profile: give profile_id, email or user_id"
        raise Invalid("name the person", [FieldError("profile_id", problem)])
    found: str | None = None
    if verified or profile_id is not None or user_id is not None:
        found = consent.resolve_subject(
            session=session,
            workspace_id=workspace_id,
            profile_id=profile_id,
            email=asked.email,
            user_id=user_id,
        )
    if asked.email is None and found is not None:
        addresses = _profile_emails(session, workspace_id, found)
        if addresses:
            asked = replace(asked, email=rq.requester_email(addresses[0]))
    if asked.email is None and not verified:
        raise Invalid(
            "no address to verify the request with",
            [FieldError("email", "give the email, or verify the person (verified: true)")],
        )
    if verified:
        assert found is not None
        existing = _open_duplicate(
            session,
            workspace_id=workspace_id,
            request_type=asked.type,
            email_index=(
                vault_of(session).index(workspace_id, EMAIL_INDEX, asked.email)
                if asked.email
                else None
            ),
            profile_id=found,
            exclude=None,
        )
        if existing is not None:
            _audit(
                session,
                existing,
                actor=actor,
                action="duplicate",
                reason=why,
                at=now,
                details={"status": existing.status, "source": "staff"},
            )
            return Intake(_request(existing), None, duplicate=True)
    row = _receive(
        session,
        workspace_id=workspace_id,
        asked=asked,
        source=rq.SOURCE_STAFF,
        actor=actor,
        reason=why,
        rules=rules,
        now=now,
        profile_id=found,
    )
    if verified:
        _verify_row(session, row, actor=actor, by=rq.BY_STAFF, now=now, reason=why)
        return Intake(_request(row))
    assert asked.email is not None
    challenge = _challenge(session, row, email=asked.email, rules=rules, secret=secret, now=now)
    return Intake(challenge.request, challenge)


def _profile_emails(session: Session, workspace_id: str, profile_id: str) -> list[str]:
    view = profiles.get_profile(session=session, workspace_id=workspace_id, profile_id=profile_id)
    return [str(i["value"]) for i in view.identifiers if i["type"] == EMAIL_INDEX and i["value"]]


def _open_duplicate(
    session: Session,
    *,
    workspace_id: str,
    request_type: str,
    email_index: str | None,
    profile_id: str | None,
    exclude: str | None,
) -> RequestRow | None:
    """The oldest open, verified request of the type from the same email (or profile)."""
    same = [RequestRow.email_index == email_index] if email_index else []
    if profile_id:
        same.append(RequestRow.profile_id == profile_id)
    if not same:
        return None
    query = (
        select(RequestRow)
        .where(
            RequestRow.workspace_id == workspace_id,
            RequestRow.type == request_type,
            RequestRow.status.in_(sorted(rq.ACTIVE)),
            or_(*same),
        )
        .order_by(RequestRow.received_at, RequestRow.id)
        .limit(1)
    )
    if exclude is not None:
        query = query.where(RequestRow.id != exclude)
    return session.scalars(query).first()


# --- verification -------------------------------------------------------------------------------


def _verify_row(
    session: Session,
    row: RequestRow,
    *,
    actor: str,
    by: str,
    now: datetime,
    reason: str | None = None,
) -> RequestRow | None:
    """Move ``row`` to verified; then close it as a duplicate of an open verified request of
    the same type and email, if there is one (returned), else link the profile of its email."""
    before = row.status
    row.status = rq.next_status(row.status, "verify")
    row.verified_at, row.verified_by = now, by
    row.code_hash, row.code_expires_at = None, None
    row.updated_at = now
    _event(
        session,
        row,
        actor=actor,
        action="verify",
        from_status=before,
        reason=reason,
        at=now,
        details={"by": by},
    )
    if by == rq.BY_STAFF:
        return None
    original = _open_duplicate(
        session,
        workspace_id=row.workspace_id,
        request_type=row.type,
        email_index=row.email_index,
        profile_id=None,
        exclude=row.id,
    )
    if original is not None:
        row.status = rq.next_status(row.status, "reject")
        row.duplicate_of, row.resolution, row.closed_at = original.id, "duplicate", now
        _event(
            session,
            row,
            actor=actor,
            action="reject",
            from_status=rq.VERIFIED,
            reason="duplicate",
            at=now,
            details={"duplicate_of": original.id},
        )
        return original
    _link_by_email(session, row, actor=actor, now=now)
    return None


def _link_by_email(session: Session, row: RequestRow, *, actor: str, now: datetime) -> None:
    """Link the one profile holding the verified email, when exactly one does."""
    if row.profile_id is not None:
        return
    email, _ = _opened(session, row)
    if email is None:
        return
    try:
        found = profiles.search_identifiers(
            session=session, workspace_id=row.workspace_id, email=email
        )
    except Invalid:  # an address the profiles never link (a placeholder): nothing to link
        return
    if len(found) == 1:
        row.profile_id = found[0]
        _event(
            session,
            row,
            actor=actor,
            action="link",
            from_status=row.status,
            reason=None,
            at=now,
            details={"lookup": "email", "profile_id": found[0]},
        )


def verify_code(
    *,
    session: Session,
    workspace_id: str,
    request_id: str,
    code: str,
    rules: rq.Rules,
    secret: str,
    now: datetime | None = None,
    guard: limits.Guard | None = None,
) -> Verification:
    """Try a code. A wrong one uses an attempt and is *returned* (``wrong``, with the attempts
    left), so the caller commits the attempt; an expired or spent code is ``expired`` or
    ``exhausted``. Conflict when the request is not unverified; NotFound when it is not in the
    workspace; with a ``guard``, RateLimited over the codes tried from the client's network."""
    now = now or utcnow()
    row = _row(session, workspace_id, request_id, lock=True)
    rq.next_status(row.status, "verify")  # Conflict naming the status
    if guard is not None:
        limits.take(
            session,
            workspace_id=workspace_id,
            checks=limits.code_checks(
                limits=rules.limits, network=rq.network_key(secret, workspace_id, guard.client)
            ),
            limits=rules.limits,
            now=now,
        )
    problem = rq.code_problem(
        expires_at=row.code_expires_at,
        attempts=row.code_attempts,
        max_attempts=rules.code_attempts,
        now=now,
    )
    if problem is not None:
        return Verification(problem, _request(row))
    key = rq.code_key(secret, workspace_id)
    if not rq.code_matches(key, row.id, code.strip(), row.code_hash):
        row.code_attempts += 1
        row.updated_at = now
        left = max(rules.code_attempts - row.code_attempts, 0)
        _audit(
            session,
            row,
            actor=_subject(row),
            action="verify_failed",
            reason=None,
            at=now,
            details={"attempts": row.code_attempts},
        )
        return Verification(rq.WRONG if left else rq.EXHAUSTED, _request(row), left)
    return _verified(session, row, by=rq.BY_CODE, now=now)


def verify_link(
    *, session: Session, link: rq.VerificationLink, now: datetime | None = None
) -> Verification:
    """Verify by a signed link (checked by :func:`requests.read_link`). A link mailed with an
    older code, or after the request left ``unverified``, verifies nothing: ``expired``, or
    Conflict naming the status (a second press answers Conflict ``verified``)."""
    now = now or utcnow()
    row = _row(session, link.workspace_id, link.request_id, lock=True)
    rq.next_status(row.status, "verify")
    if row.code_hash is None or rq.code_ref(row.code_hash) != link.code_ref:
        return Verification(rq.EXPIRED_CODE, _request(row))
    return _verified(session, row, by=rq.BY_LINK, now=now)


def _verified(session: Session, row: RequestRow, *, by: str, now: datetime) -> Verification:
    """The requester proved the address (``by`` code or link): verify the request."""
    original = _verify_row(session, row, actor=_subject(row), by=by, now=now)
    return Verification(
        VERIFIED, _request(row), duplicate_of=_request(original) if original else None
    )


def resend(
    *,
    session: Session,
    workspace_id: str,
    request_id: str,
    rules: rq.Rules,
    secret: str,
    now: datetime | None = None,
    guard: limits.Guard | None = None,
) -> Challenge:
    """A new code and link for an unverified request (the old ones stop working). Conflict
    when it is not unverified, when it has no address, or after ``max_codes`` codes; with a
    ``guard``, RateLimited over the new codes of the request or of the client's network."""
    now = now or utcnow()
    row = _row(session, workspace_id, request_id, lock=True)
    rq.next_status(row.status, "verify")
    if guard is not None:
        limits.take(
            session,
            workspace_id=workspace_id,
            checks=limits.resend_checks(
                limits=rules.limits,
                request_id=row.id,
                network=rq.network_key(secret, workspace_id, guard.client),
            ),
            limits=rules.limits,
            now=now,
        )
    email, _ = _opened(session, row)
    if email is None:
        raise Conflict("the request has no address to send a code to")
    challenge = _challenge(session, row, email=email, rules=rules, secret=secret, now=now)
    _event(
        session,
        row,
        actor=_subject(row),
        action="code_sent",
        from_status=row.status,
        reason=None,
        at=now,
        details={"codes_sent": row.codes_sent},
    )
    return challenge


# --- staff actions ------------------------------------------------------------------------------


def transition(
    *,
    session: Session,
    workspace_id: str,
    request_id: str,
    action: str,
    actor: str,
    reason: str | None = None,
    now: datetime | None = None,
) -> rq.Request:
    """``start``, ``complete`` or ``reject`` a request (a reason is required to reject).
    Conflict naming the current status when the machine does not allow it."""
    if action not in ("start", "complete", "reject"):
        raise Invalid("unknown action", [FieldError("action", "start, complete or reject")])
    now = now or utcnow()
    why = check_reason(reason, required=action == "reject")
    row = _row(session, workspace_id, request_id, lock=True)
    before = row.status
    row.status = rq.next_status(row.status, action)
    row.updated_at = now
    if row.status in rq.CLOSED:
        row.closed_at, row.resolution = now, why
    _event(session, row, actor=actor, action=action, from_status=before, reason=why, at=now)
    return _request(row)


def extend(
    *,
    session: Session,
    workspace_id: str,
    request_id: str,
    actor: str,
    reason: str | None,
    rules: rq.Rules,
    now: datetime | None = None,
) -> Extension:
    """Extend the deadline once, with a reason the person is told (the notice is returned to
    be mailed). Conflict when the request cannot be extended (see ``requests.extension_due``)."""
    now = now or utcnow()
    why = check_reason(reason, required=True)
    assert why is not None
    row = _row(session, workspace_id, request_id, lock=True)
    jurisdiction = rules.jurisdiction(row.jurisdiction)
    new_due = rq.extension_due(
        status=row.status,
        extended=row.extended,
        received_at=row.received_at,
        due=row.due_at,
        now=now,
        jurisdiction=jurisdiction,
    )
    old_due = row.due_at
    row.extended, row.extension_reason, row.due_at = True, why, new_due
    row.reminders_sent = []  # the steps count down to the new date
    row.updated_at = now
    _event(
        session,
        row,
        actor=actor,
        action="extend",
        from_status=row.status,
        reason=why,
        at=now,
        details={"from_due": old_due.date().isoformat(), "to_due": new_due.date().isoformat()},
    )
    request = _request(row)
    email, _ = _opened(session, row)
    mail = rq.extension_mail(
        brand=_brand(session, workspace_id), request=request, reason=why, jurisdiction=jurisdiction
    )
    return Extension(request, ascii_address(email) if email else None, mail)


def link_profile(
    *,
    session: Session,
    workspace_id: str,
    request_id: str,
    actor: str,
    profile_id: str | None = None,
    email: str | None = None,
    user_id: str | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> rq.Request:
    """Link the request to the person's unified profile (named by profile id, email or user
    id), so it can be fulfilled (an erasure erases that profile). Conflict once it is closed."""
    now = now or utcnow()
    why = check_reason(reason, required=False)
    row = _row(session, workspace_id, request_id, lock=True)
    rq.link_allowed(row.status)
    found = consent.resolve_subject(
        session=session,
        workspace_id=workspace_id,
        profile_id=profile_id,
        email=email,
        user_id=user_id,
    )
    canonical = profiles.canonical_of(session=session, workspace_id=workspace_id, profile_id=found)
    lookup = "profile_id" if profile_id is not None else "email" if email is not None else "user_id"
    row.profile_id, row.updated_at = canonical, now
    _event(
        session,
        row,
        actor=actor,
        action="link",
        from_status=row.status,
        reason=why,
        at=now,
        details={"lookup": lookup, "profile_id": canonical},
    )
    return _request(row)


# --- reading ------------------------------------------------------------------------------------


def _status_filter(status: str | None) -> list[str]:
    if status is None or status == "open":
        return sorted(rq.OPEN)
    if status == "all":
        return list(rq.STATUSES)
    if status not in rq.STATUSES:
        raise Invalid(
            "unknown status",
            [FieldError("status", "open, all or one of " + ", ".join(rq.STATUSES))],
        )
    return [status]


def list_requests(
    *,
    session: Session,
    workspace_id: str,
    status: str | None = None,
    request_type: str | None = None,
    limit: int = 100,
    offset: int = 0,
    now: datetime | None = None,
) -> tuple[int, list[rq.Request]]:
    """The queue: requests of the workspace (open ones by default), overdue first, then by
    due date; ``status`` is ``open``, ``all`` or one status. Returns the total and a page,
    ordered and cut by the database (``status=all`` reaches every request ever made)."""
    now = now or utcnow()
    where = [RequestRow.workspace_id == workspace_id, RequestRow.status.in_(_status_filter(status))]
    if request_type is not None:
        where.append(RequestRow.type == rq.request_type(request_type))
    total = session.scalar(select(func.count()).select_from(RequestRow).where(*where))
    overdue_first = case(
        (and_(RequestRow.status.in_(sorted(rq.OPEN)), RequestRow.due_at < now), 0), else_=1
    )
    rows = session.scalars(  # the order of requests.queue_order
        select(RequestRow)
        .where(*where)
        .order_by(overdue_first, RequestRow.due_at, RequestRow.received_at, RequestRow.id)
        .limit(max(1, min(limit, MAX_PAGE)))
        .offset(max(offset, 0))
    )
    return int(total or 0), [_request(r) for r in rows]


def get_request(*, session: Session, workspace_id: str, request_id: str) -> rq.Request:
    """One request of the workspace, or NotFound."""
    return _request(_row(session, workspace_id, request_id))


def get_detail(*, session: Session, workspace_id: str, request_id: str) -> rq.Detail:
    """One request with the requester's email and words, opened (None once erased)."""
    row = _row(session, workspace_id, request_id)
    email, message = _opened(session, row)
    return rq.Detail(_request(row), email, message)


def history(*, session: Session, workspace_id: str, request_id: str) -> list[rq.HistoryEntry]:
    """Every step of a request, oldest first. NotFound when it is not in the workspace."""
    _row(session, workspace_id, request_id)
    return _histories(session, workspace_id, [request_id]).get(request_id, [])


def _histories(
    session: Session, workspace_id: str, request_ids: Sequence[str]
) -> dict[str, list[rq.HistoryEntry]]:
    """The steps of each request, oldest first, in one query."""
    out: dict[str, list[rq.HistoryEntry]] = {}
    if not request_ids:
        return out
    rows = session.scalars(
        select(RequestEventRow)
        .where(
            RequestEventRow.workspace_id == workspace_id,
            RequestEventRow.request_id.in_(list(request_ids)),
        )
        .order_by(RequestEventRow.request_id, RequestEventRow.seq)
    )
    for r in rows:
        out.setdefault(r.request_id, []).append(
            rq.HistoryEntry(
                seq=r.seq,
                at=r.at,
                actor=r.actor,
                action=r.action,
                from_status=r.from_status,
                to_status=r.to_status,
                reason=r.reason,
                details=dict(r.details or {}),
            )
        )
    return out


def requests_of_subject(
    *, session: Session, workspace_id: str, profile_ids: Sequence[str], emails: Iterable[str]
) -> list[dict[str, Any]]:
    """The person's requests for their access archive: those linked to one of their profiles
    or made from one of their email addresses (by blind index), oldest first, each with its
    steps and the email and words the person gave."""
    vault = vault_of(session)
    indexes = sorted(
        {
            vault.index(workspace_id, EMAIL_INDEX, normal)
            for e in emails
            if (normal := _normal_or_none(e)) is not None
        }
    )
    matches = []
    if profile_ids:
        matches.append(RequestRow.profile_id.in_(list(profile_ids)))
    if indexes:
        matches.append(RequestRow.email_index.in_(indexes))
    if not matches:
        return []
    rows = list(
        session.scalars(
            select(RequestRow)
            .where(RequestRow.workspace_id == workspace_id, or_(*matches))
            .order_by(RequestRow.received_at, RequestRow.id)
        )
    )
    histories = _histories(session, workspace_id, [row.id for row in rows])
    now = utcnow()
    out = []
    for row in rows:
        email, message = _opened(session, row)
        shown = rq.request_json(_request(row), now)
        for internal in ("workspace_id", "reminders_sent", "days_left", "overdue", "verify_by"):
            shown.pop(internal, None)
        steps = histories.get(row.id, [])
        shown["email"] = email
        shown["message"] = message
        shown["history"] = [
            {"at": s.at.isoformat(), "action": s.action, "status": s.to_status} for s in steps
        ]
        out.append(shown)
    return out


def _normal_or_none(email: str) -> str | None:
    try:
        return rq.requester_email(email)
    except Invalid:
        return None


# --- reminders and expiry -----------------------------------------------------------------------


def due_reminders(
    *, session: Session, workspace_id: str, rules: rq.Rules, now: datetime | None = None
) -> list[Reminder]:
    """Verified and in-progress requests whose next reminder step is due, in queue order."""
    now = now or utcnow()
    rows = session.scalars(
        select(RequestRow).where(
            RequestRow.workspace_id == workspace_id, RequestRow.status.in_(sorted(rq.ACTIVE))
        )
    )
    out = []
    for request in rq.queue_order([_request(r) for r in rows], now):
        step, settles = rq.reminder_step(
            request.due_at, now, rules.reminder_days, request.reminders_sent
        )
        if step is not None:
            out.append(Reminder(request, step, settles))
    return out


def mark_reminded(
    *,
    session: Session,
    workspace_id: str,
    reminders: Sequence[Reminder],
    actor: str,
    now: datetime | None = None,
) -> None:
    """Record that each reminder was mailed: its steps are not sent again."""
    now = now or utcnow()
    for reminder in reminders:
        row = _row(session, workspace_id, reminder.request.id, lock=True)
        row.reminders_sent = sorted(set(row.reminders_sent or ()) | set(reminder.settles))
        row.updated_at = now
        _event(
            session,
            row,
            actor=actor,
            action="remind",
            from_status=row.status,
            reason=None,
            at=now,
            details={"days": reminder.step},
        )


def expire_unverified(
    *, session: Session, workspace_id: str, actor: str, now: datetime | None = None
) -> list[rq.Request]:
    """Close every unverified request whose time to verify has passed (``expired``)."""
    now = now or utcnow()
    rows = list(
        session.scalars(
            select(RequestRow)
            .where(
                RequestRow.workspace_id == workspace_id,
                RequestRow.status == rq.UNVERIFIED,
                RequestRow.verify_by <= now,
            )
            .order_by(RequestRow.received_at)
            .with_for_update()
        )
    )
    out = []
    for row in rows:
        row.status = rq.next_status(row.status, "expire")
        row.closed_at, row.resolution, row.updated_at = now, "not verified in time", now
        row.code_hash, row.code_expires_at = None, None
        _event(
            session,
            row,
            actor=actor,
            action="expire",
            from_status=rq.UNVERIFIED,
            reason="not verified in time",
            at=now,
        )
        out.append(_request(row))
    return out


def contact_of(
    *, session: Session, workspace_id: str, contacts: dict[str, str], fallback: str | None
) -> str | None:
    """Who receives a workspace's reminders: its entry in the settings' ``contacts``, else the
    settings' ``contact_email``, else the support email of its consent branding."""
    if contacts.get(workspace_id):
        return contacts[workspace_id]
    if fallback:
        return fallback
    return consent.get_branding(session=session, workspace_id=workspace_id).support_email


# --- sending ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """The result of handing a mail to the SMTP server; a failure is returned, not raised."""

    sent: Sent | None
    error: DeliveryError | None


def send(
    *,
    mailer: Mailer,
    to: str,
    mail: rq.Mail,
    from_address: str,
    from_name: str | None,
    now: datetime | None = None,
) -> Delivery:
    """Hand one mail to the server."""
    try:
        message = build_message(
            OutgoingEmail(
                to=to,
                subject=mail.subject,
                text=mail.text,
                html=mail.html,
                language="en",
                headers={"Auto-Submitted": "auto-generated"},
            ),
            from_address=from_address,
            from_name=from_name,
            now=now,
        )
        return Delivery(mailer.send(message), None)
    except ValueError as exc:
        return Delivery(None, DeliveryError(f"the mail cannot be built: {exc}", permanent=True))
    except DeliveryError as exc:
        return Delivery(None, exc)


def send_challenge(
    *,
    mailer: Mailer,
    challenge: Challenge,
    public_url: str,
    from_address: str,
    from_name: str | None,
) -> Delivery:
    """Mail the code and the link of a challenge to the requester."""
    mail = rq.verification_mail(
        brand=challenge.brand,
        request_type=challenge.request.type,
        code=challenge.code,
        url=rq.verify_url(public_url, challenge.token),
        expires_at=challenge.expires_at,
    )
    return send(
        mailer=mailer,
        to=challenge.address,
        mail=mail,
        from_address=from_address,
        from_name=from_name or challenge.brand,
    )
