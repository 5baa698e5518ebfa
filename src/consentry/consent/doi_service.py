"""Use cases of double opt-in for email: request (a pending record), the mail and its link,
resend, and confirmation (a grant). The rules live in :mod:`consentry.consent.doi`.

Functions that take a session never commit and never send: the routes record the pending state
in one unit of work, then hand the mail to the SMTP server outside it (:func:`send`), so a slow
or failing server never holds the workspace's ledger lock and a failure leaves the pending
record in place (it is true that the subject asked), ready to be sent again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.consent import doi, links
from consentry.consent.ledger import append, get_config, get_record, records_of
from consentry.consent.models import (
    CONSENT,
    GRANTED,
    OPT_IN,
    PENDING,
    ConsentEntry,
    ConsentRecord,
    CurrentState,
    entry_problems,
    make_proof,
)
from consentry.consent.policy import deciding_state
from consentry.consent.service import resolve_subject
from consentry.consent.tables import ConsentRecordRow
from consentry.delivery.models import (
    DeliveryError,
    Mailer,
    OutgoingEmail,
    Sent,
    ascii_address,
    build_message,
)
from consentry.errors import Conflict, FieldError, Invalid, NotFound
from consentry.platform import tenancy
from consentry.platform.db import lock_workspace, utcnow
from consentry.profiles import service as profiles


@dataclass(frozen=True, slots=True)
class Pending:
    """A pending double opt-in request: its record, where the mail goes and in which words."""

    record: ConsentRecord
    address: str
    language: str
    brand: str


@dataclass(frozen=True, slots=True)
class LinkState:
    """What a verified confirmation link points at, and what it can still do."""

    pending: ConsentRecord
    outcome: str  # doi.OPEN, doi.ALREADY_CONFIRMED or doi.SUPERSEDED
    language: str
    brand: str
    grant: ConsentRecord | None = None  # the grant a confirmation appended


# --- request ------------------------------------------------------------------------------------


def _brand(session: Session, workspace_id: str) -> str:
    return tenancy.get_workspace(session=session, workspace_id=workspace_id).name


def _address(session: Session, workspace_id: str, profile_id: str, wanted: str | None) -> str:
    view = profiles.get_profile(session=session, workspace_id=workspace_id, profile_id=profile_id)
    addresses = doi.profile_addresses(view.traits, view.identifiers)
    address = doi.choose_address(addresses, wanted)
    if address is None:
        reason = (
            "the profile has no email address; send its email first (identify)"
            if not addresses
            else "is not an email address of this profile"
        )
        raise Invalid("no address to confirm", [FieldError("email", reason)])
    try:
        return ascii_address(address)
    except ValueError as exc:
        raise Invalid("no address to confirm", [FieldError("email", str(exc))]) from exc


def _deciding(
    session: Session, workspace_id: str, profile_id: str, purpose: str
) -> CurrentState | None:
    return deciding_state(
        session=session,
        workspace_id=workspace_id,
        profile_id=profile_id,
        purpose=purpose,
        channel=doi.CHANNEL,
    )


def _refuse_if_granted(session: Session, workspace_id: str, profile_id: str, purpose: str) -> None:
    deciding = _deciding(session, workspace_id, profile_id, purpose)
    if doi.already_granted(deciding, utcnow()):
        raise Conflict(
            "the subject's consent to this purpose over email is already granted; "
            "no confirmation was asked for"
        )


def request_confirmation(
    *, session: Session, workspace_id: str, item: doi.DoubleOptInIn, actor: str
) -> Pending:
    """Append the pending record of a double opt-in request (nothing is sent here).

    The subject must be an existing profile (NotFound otherwise); the address is the ``email``
    named, which must be one of the profile's, else the profile's current email. Conflict when
    a grant is already in force: a pending record would stop mail the subject agreed to.
    """
    if item.language is not None and not doi.is_language_tag(item.language):
        raise Invalid(
            "not a language", [FieldError("language", "a BCP 47 tag such as fr or pt-BR")]
        )
    profile_id = resolve_subject(
        session=session,
        workspace_id=workspace_id,
        profile_id=item.profile_id,
        email=item.email,
        user_id=item.user_id,
    )
    base_proof, errors = make_proof(item.proof)
    if errors:
        raise Invalid("the double opt-in request is not valid; nothing was recorded", errors)
    address = _address(session, workspace_id, profile_id, item.email)
    language = doi.language_of(item.language)
    now = utcnow()
    entry = ConsentEntry(
        profile_id=profile_id,
        purpose=item.purpose,
        channel=doi.CHANNEL,
        state=PENDING,
        source=doi.SOURCE,
        occurred_at=now,
        actor=actor,
        legal_basis=CONSENT,
        notice_version=item.notice_version,
        proof=doi.request_proof(base_proof, address=address, language=language),
    )
    config = get_config(session=session, workspace_id=workspace_id)
    errors = entry_problems(entry, config.purpose_keys, now)
    if errors:
        raise Invalid("the double opt-in request is not valid; nothing was recorded", errors)
    lock_workspace(session, workspace_id)  # the check below and the append see the same ledger
    _refuse_if_granted(session, workspace_id, profile_id, item.purpose)
    (record,) = append(session=session, workspace_id=workspace_id, entries=[entry], recorded_at=now)
    return Pending(record, address, language, _brand(session, workspace_id))


# --- grants made on the customer's own pages ----------------------------------------------------


def route_page_grants(
    *,
    session: Session,
    workspace_id: str,
    profile_id: str,
    regime: str,
    entries: list[ConsentEntry],
    language: str,
) -> list[ConsentEntry]:
    """The entries to append for a preference-center submission, with double opt-in applied.

    Under the ``opt_in`` regime, a grant over ``email`` becomes a pending request (source
    ``double_opt_in``, the page's proof plus the address and language of the mail) that the
    subject confirms from the mail, like a request made through the API. A profile without an
    email address keeps its grant: there is no address to confirm and none to write to. Under
    ``opt_out`` and for every other channel or state, the entries are returned as they are.
    The caller appends them, then mails each pending record of :func:`pending_of_records`
    after its transaction commits.
    """
    if regime != OPT_IN or not any(_needs_confirmation(e) for e in entries):
        return entries
    view = profiles.get_profile(session=session, workspace_id=workspace_id, profile_id=profile_id)
    addresses = doi.profile_addresses(view.traits, view.identifiers)
    address = doi.choose_address(addresses, None)
    if address is None:
        return entries
    try:
        address = ascii_address(address)
    except ValueError:  # an address no SMTP server takes: nothing can be confirmed
        return entries
    language = doi.language_of(language)
    routed: list[ConsentEntry] = []
    for entry in entries:
        if _needs_confirmation(entry):
            entry = replace(
                entry,
                state=PENDING,
                source=doi.SOURCE,
                proof=doi.request_proof(entry.proof, address=address, language=language),
            )
        routed.append(entry)
    return routed


def _needs_confirmation(entry: ConsentEntry) -> bool:
    return entry.state == GRANTED and entry.channel == doi.CHANNEL


def pending_of_records(*, session: Session, records: list[ConsentRecord]) -> list[Pending]:
    """The double opt-in requests among appended ``records``, ready for :func:`send`."""
    out: list[Pending] = []
    for record in records:
        proof = record.proof or {}
        address = proof.get("email")
        if record.state != PENDING or record.source != doi.SOURCE or not isinstance(address, str):
            continue
        language = doi.language_of(str(proof.get("language") or ""))
        out.append(Pending(record, address, language, _brand(session, record.workspace_id)))
    return out


# --- reading the ledger around a request --------------------------------------------------------


def _records_after(
    session: Session, workspace_id: str, pending: ConsentRecord
) -> list[ConsentRecord]:
    """Records of the pending record's unified profile, for its purpose, recorded after it."""
    canonical = profiles.canonical_of(
        session=session, workspace_id=workspace_id, profile_id=pending.profile_id
    )
    members = profiles.member_ids(
        session=session, workspace_id=workspace_id, canonical_id=canonical
    )
    rows = session.scalars(
        select(ConsentRecordRow)
        .where(
            ConsentRecordRow.workspace_id == workspace_id,
            ConsentRecordRow.profile_id.in_(members),
            ConsentRecordRow.purpose == pending.purpose,
            ConsentRecordRow.seq > pending.seq,
        )
        .order_by(ConsentRecordRow.seq)
    )
    return records_of(session, workspace_id, rows)


def _request(session: Session, workspace_id: str, record_id: str) -> ConsentRecord:
    """The pending record of a double opt-in request, or NotFound."""
    record = get_record(session=session, workspace_id=workspace_id, record_id=record_id)
    if not doi.is_request(record):
        raise NotFound(f"consent record {record_id!r} is not a double opt-in request")
    return record


def pending_request(*, session: Session, workspace_id: str, record_id: str) -> Pending:
    """A request whose mail may be sent again: NotFound when ``record_id`` is not a double
    opt-in request; Conflict when it was confirmed or superseded, when a grant is in force or
    when the address it was sent to is no longer known (its proof was erased)."""
    record = _request(session, workspace_id, record_id)
    state = doi.outcome(record, _records_after(session, workspace_id, record))
    if state == doi.ALREADY_CONFIRMED:
        raise Conflict("this double opt-in request is already confirmed")
    if state == doi.SUPERSEDED:
        raise Conflict("a denial or withdrawal was recorded after this request; ask anew")
    _refuse_if_granted(session, workspace_id, record.profile_id, record.purpose)
    proof = record.proof or {}
    address = proof.get("email")
    if not isinstance(address, str) or not address:
        raise Conflict("the address of this request is no longer known; ask anew")
    language = doi.language_of(str(proof.get("language") or ""))
    return Pending(record, address, language, _brand(session, workspace_id))


# --- the mail -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """The result of handing a confirmation mail to the SMTP server."""

    url: str
    expires_at: datetime
    sent: Sent | None
    error: DeliveryError | None


def sign_link(
    *, secret: str, pending: Pending, now: datetime, ttl: timedelta
) -> tuple[str, datetime]:
    """The token of ``pending``'s confirmation link and when it expires."""
    record = pending.record
    token = links.sign(
        links.link_key(secret, record.workspace_id),
        workspace_id=record.workspace_id,
        profile_id=record.profile_id,
        kind=links.CONFIRM,
        now=now,
        ttl=ttl,
        **doi.link_extra(record.id, record.purpose, pending.language),
    )
    return token, links.verify(
        links.link_key(secret, record.workspace_id), token, kind=links.CONFIRM, now=now
    ).expires_at


def send(
    *,
    mailer: Mailer,
    pending: Pending,
    secret: str,
    public_url: str,
    ttl: timedelta,
    from_address: str,
    from_name: str | None,
) -> Delivery:
    """Sign a fresh link for ``pending`` and hand its mail to the server; a failure is returned
    (``error``), not raised, so the caller can report it next to the record that stays."""
    now = utcnow()
    token, expires_at = sign_link(secret=secret, pending=pending, now=now, ttl=ttl)
    url = doi.confirm_url(public_url, token)
    mail = doi.compose(
        language=pending.language, brand=pending.brand, url=url, expires_at=expires_at
    )
    message = build_message(
        OutgoingEmail(
            to=pending.address,
            subject=mail.subject,
            text=mail.text,
            html=mail.html,
            language=pending.language,
            headers={"Auto-Submitted": "auto-generated"},  # RFC 3834: no auto-replies, please
        ),
        from_address=from_address,
        from_name=from_name or pending.brand,
        now=now,
    )
    try:
        sent = mailer.send(message)
    except DeliveryError as exc:
        return Delivery(url, expires_at, None, exc)
    return Delivery(url, expires_at, sent, None)


# --- the link -----------------------------------------------------------------------------------


def read_link(*, secret: str, token: str, now: datetime | None = None) -> links.Link:
    """The verified link of ``token``; LinkError (malformed, forged, expired, kind) otherwise."""
    return links.read(secret, token, kind=links.CONFIRM, now=now or utcnow())


def _pending_of(session: Session, link: links.Link) -> tuple[ConsentRecord, doi.LinkClaims]:
    """The request a verified link names; NotFound when it names none that matches."""
    try:
        claims = doi.claims_of(link.extra)
    except ValueError as exc:
        raise NotFound("the link names no double opt-in request") from exc
    tenancy.get_workspace(session=session, workspace_id=link.workspace_id)
    pending = _request(session, link.workspace_id, claims.record_id)
    if (pending.profile_id, pending.purpose) != (link.profile_id, claims.purpose):
        raise NotFound("the link does not match its double opt-in request")
    return pending, claims


def link_state(*, session: Session, link: links.Link) -> LinkState:
    """What the link can still do (to show the page); NotFound when it names no request."""
    pending, claims = _pending_of(session, link)
    state = doi.outcome(pending, _records_after(session, link.workspace_id, pending))
    return LinkState(pending, state, claims.language, _brand(session, link.workspace_id))


def confirm(
    *, session: Session, link: links.Link, ip: str | None, user_agent: str | None
) -> LinkState:
    """Confirm the request of a verified link: append a grant (source ``double_opt_in``, actor
    naming the pending record, proof with the truncated IP, user agent and pending record id)
    when the link is open; otherwise nothing is written and the outcome says why."""
    lock_workspace(session, link.workspace_id)  # two clicks at once: one grant
    current = link_state(session=session, link=link)
    if current.outcome != doi.OPEN:
        return current
    pending, now = current.pending, utcnow()
    entry = ConsentEntry(
        profile_id=pending.profile_id,
        purpose=pending.purpose,
        channel=doi.CHANNEL,
        state=GRANTED,
        source=doi.SOURCE,
        occurred_at=now,
        actor=doi.ACTOR_PREFIX + pending.id,
        legal_basis=CONSENT,
        notice_version=pending.notice_version,
        proof=doi.confirmation_proof(pending_id=pending.id, ip=ip, user_agent=user_agent),
    )
    (grant,) = append(
        session=session, workspace_id=link.workspace_id, entries=[entry], recorded_at=now
    )
    return LinkState(pending, doi.OPEN, current.language, current.brand, grant)
