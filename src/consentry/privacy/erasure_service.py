"""Erase a person: every identity merged into them, in every store, in one transaction.

:func:`erase` reaches each capability through its public service:

- profiles: the unified profile and every member (identifiers, trait history, current traits,
  merges, blocks, warnings), and the identifiers' blind indexes go on the suppression list;
- ingest: the events of those profiles, and stored events not applied yet that carry one of
  the person's userIds or anonymous ids (acknowledged requests still staged are expanded into
  events first, and their stages' keys discarded once the erasure commits);
- commerce: carts; orders within the legal hold are kept pseudonymised, older ones go;
- consent: current states go; ledger records keep a proof that does not identify the person;
- analytics and recommendations: the computed traits go, and the person is removed from
  every stored recommendation model (their id, list and segment);
- delivery: every outbox message to the person (sent, queued or dead) goes;
- the person's data keys are destroyed (crypto-shredding): the keys of every member profile and
  of each identity that sealed their events, so every copy of their sealed fields made before
  (a backup, a copied database) can no longer be opened.

The keys are destroyed last, just before the caller commits (they live in the key store, which
commits on its own): should the commit then fail, the data is already unreadable and erasing
the same profile again deletes the rows. An erasure is recorded with its certificate and in the
audit trail, and each processor with an erasure webhook gets a notification through the outbox
(:mod:`consentry.privacy.notification_service`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.analytics import service as analytics
from consentry.audiences import service as audiences
from consentry.commerce import service as commerce
from consentry.consent import service as consent
from consentry.delivery import outbox
from consentry.errors import Conflict, FieldError, Invalid, NotFound
from consentry.ingest import service as ingest
from consentry.journeys import service as journeys
from consentry.platform import audit
from consentry.platform.db import lock_workspace, utcnow
from consentry.platform.vault import vault_of
from consentry.privacy import processor_service, request_service
from consentry.privacy.erasure import (
    NOTIFICATION_FIELD,
    Outcome,
    Recipient,
    certificate,
    certificate_hash,
    erasure_subject,
    notification_body,
)
from consentry.privacy.tables import ErasureRow, NotificationRow
from consentry.profiles import service as profiles
from consentry.profiles.models import (
    ANONYMOUS_ID,
    USER_ID,
    normalize_email,
    normalize_id,
    normalize_phone,
)
from consentry.recommend import service as recommend

ACTION = "privacy.erasure"
EVENT_KEYED_TYPES = (USER_ID, ANONYMOUS_ID)  # identities whose key seals their events


@dataclass(frozen=True, slots=True)
class Erasure:
    """A recorded erasure: its certificate and where its notifications stand."""

    id: str
    workspace_id: str
    profile_id: str
    request_id: str | None
    status: str
    actor: str
    reason: str
    requested_at: datetime
    completed_at: datetime | None
    certificate: dict[str, Any]
    certificate_hash: str
    notifications: list[dict[str, Any]]

    def document(self) -> dict[str, Any]:
        """The JSON form, as the API and the CLI show it."""
        return {
            "id": self.id,
            "profile_id": self.profile_id,
            "request_id": self.request_id,
            "status": self.status,
            "erased_by": self.actor,
            "reason": self.reason,
            "requested_at": self.requested_at,
            "completed_at": self.completed_at,
            "certificate": self.certificate,
            "certificate_sha256": self.certificate_hash,
            "notifications": self.notifications,
        }


def erase(
    *,
    session: Session,
    workspace_id: str,
    profile_id: str,
    actor: str,
    reason: str,
    request_id: str | None = None,
    order_hold: timedelta | None = None,
    now: datetime | None = None,
    suppress: bool = True,
) -> Erasure:
    """Erase the person that ``profile_id`` belongs to (see the module's text).

    Raises Invalid for a reason that cannot be recorded (empty, or holding personal data) and
    NotFound when no profile of the workspace has this id (an erased one has none).
    ``suppress=False`` (retention) lets the person's identifiers come back at once: their next
    events start a new profile, sealed under fresh keys.
    """
    erasure_id = str(uuid.uuid4())
    problems = audit.entry_problems(
        actor=actor,
        action=ACTION,
        target_type="erasure",
        target_ids=[erasure_id],
        reason=reason,
        details={},
    )
    if problems:  # checked first: nothing is erased that could not be recorded
        raise Invalid("the erasure cannot be recorded", problems)
    at = now or utcnow()
    lock_workspace(session, workspace_id)  # no event of the person is applied meanwhile
    person = profiles.person_of(session=session, workspace_id=workspace_id, profile_id=profile_id)
    # acknowledged requests not expanded yet may hold the person's events: expanded first,
    # so they are erased below like any stored event (their stages' keys go after the commit)
    ingest.expand_stages(session=session, workspace_id=workspace_id)
    vault = vault_of(session)

    recipients = [
        Recipient(p.id, p.spec.name, p.spec.erasure_webhook_url or "")
        for p in processor_service.erasure_recipients(session=session, workspace_id=workspace_id)
    ]
    sealed_notice = None
    if recipients:  # read the identifiers while their keys still exist
        values = profiles.identifier_values(
            session=session, workspace_id=workspace_id, profile_ids=person.member_ids
        )
        body = notification_body(
            erasure_id=erasure_id, workspace_id=workspace_id, erased_at=at, identifiers=values
        )
        sealed_notice = vault.seal(
            workspace_id, erasure_subject(erasure_id), NOTIFICATION_FIELD, body
        )

    suppressed, generations = profiles.suppress(
        session=session,
        workspace_id=workspace_id,
        identities=person.identities,
        erasure_id=erasure_id,
        at=at,
        lift_now=not suppress,
    )
    # the keys of the identities that sealed the person's events, of every generation
    event_keyed = [i for i in person.identities if i.type in EVENT_KEYED_TYPES]
    subjects = set(person.member_ids)
    subjects.update(
        ingest.subject_of_index(ident.index, generation)
        for ident in event_keyed
        for generation in range(generations[ident] + 1)
    )
    events = ingest.erase_events(
        session=session,
        workspace_id=workspace_id,
        profile_ids=person.member_ids,
        identity_indexes=[i.index for i in event_keyed],
    )
    # a message without a usable id had a key of its own: it is the person's too
    subjects.update(
        subject
        for subject, message_id in events.sealed_by
        if subject == ingest.message_subject(vault, workspace_id, message_id)
    )
    shop = commerce.erase_customer(
        session=session,
        workspace_id=workspace_id,
        profile_ids=person.member_ids,
        hold=order_hold,
        now=at,
    )
    states, proofs = consent.erase_subject(
        session=session, workspace_id=workspace_id, profile_ids=person.member_ids, at=at
    )
    scores = analytics.erase_scores(
        session=session, workspace_id=workspace_id, profile_ids=person.member_ids
    )
    recommended = recommend.erase_subject(
        session=session, workspace_id=workspace_id, profile_ids=person.member_ids
    )
    messages = outbox.erase_subject(
        session=session, workspace_id=workspace_id, profile_ids=person.member_ids
    )
    memberships = audiences.erase_subject(
        session=session, workspace_id=workspace_id, profile_ids=person.member_ids
    )
    enrollments = journeys.erase_subject(
        session=session, workspace_id=workspace_id, profile_ids=person.member_ids
    )
    rows = profiles.erase_person(session=session, workspace_id=workspace_id, person=person)
    session.flush()

    destroyed = vault.keystore.shred(workspace_id, sorted(subjects))
    outcome = Outcome(
        erased={
            **rows,
            "events": events.count,
            "carts": shop.carts,
            "orders": shop.orders_deleted,
            "consent_states": states,
            "computed_traits": scores,
            "recommendations": recommended,
            "outbox_messages": messages,
            "segment_memberships": memberships,
            "journey_enrollments": enrollments,
        },
        kept={
            "orders": shop.orders_kept,
            "consent_records": proofs,
            "suppression_list": suppressed,
        },
        keys_destroyed=destroyed,
        orders_kept_until=shop.kept_until,
    )
    completed = utcnow()
    document = certificate(
        erasure_id=erasure_id,
        workspace_id=workspace_id,
        profile_id=person.canonical_id,
        member_ids=person.member_ids,
        request_id=request_id,
        actor=actor,
        reason=reason,
        requested_at=at,
        completed_at=completed,
        outcome=outcome,
        processors=recipients,
    )
    digest = certificate_hash(document)
    session.add(
        ErasureRow(
            id=erasure_id,
            workspace_id=workspace_id,
            profile_id=person.canonical_id,
            request_id=request_id,
            status="completed",
            actor=actor,
            reason=reason,
            requested_at=at,
            completed_at=completed,
            certificate=document,
            certificate_hash=digest,
        )
    )
    session.flush()
    for recipient in recipients:
        session.add(
            NotificationRow(
                id=str(uuid.uuid4()),
                workspace_id=workspace_id,
                erasure_id=erasure_id,
                processor_id=recipient.id,
                processor_name=recipient.name,
                url=recipient.url,
                payload=sealed_notice,
                status="pending",
                attempts=0,
                next_attempt_at=completed,
                last_error=None,
                created_at=completed,
                delivered_at=None,
            )
        )
    audit.record(
        session=session,
        workspace_id=workspace_id,
        actor=actor,
        action=ACTION,
        target_type="erasure",
        target_id=erasure_id,
        reason=reason,
        details={
            "profile_id": person.canonical_id,
            "profiles": rows["profiles"],
            "events": events.count,
            "keys_destroyed": destroyed,
            "certificate_sha256": digest,
        },
        at=completed,
    )
    session.flush()
    return get_erasure(session=session, workspace_id=workspace_id, erasure_id=erasure_id)


def get_erasure(*, session: Session, workspace_id: str, erasure_id: str) -> Erasure:
    """One erasure of the workspace (NotFound otherwise)."""
    row = session.get(ErasureRow, erasure_id)
    if row is None or row.workspace_id != workspace_id:
        raise NotFound(f"no erasure {erasure_id!r} in this workspace")
    return _erasure(session, row)


def list_erasures(
    *, session: Session, workspace_id: str, limit: int = 50, offset: int = 0
) -> list[Erasure]:
    """The workspace's erasures, newest first."""
    rows = session.scalars(
        select(ErasureRow)
        .where(ErasureRow.workspace_id == workspace_id)
        .order_by(ErasureRow.requested_at.desc(), ErasureRow.id)
        .limit(limit)
        .offset(offset)
    )
    return [_erasure(session, row) for row in rows]


def _erasure(session: Session, row: ErasureRow) -> Erasure:
    notes = session.scalars(
        select(NotificationRow)
        .where(NotificationRow.erasure_id == row.id)
        .order_by(NotificationRow.processor_name)
    )
    return Erasure(
        id=row.id,
        workspace_id=row.workspace_id,
        profile_id=row.profile_id,
        request_id=row.request_id,
        status=row.status,
        actor=row.actor,
        reason=row.reason,
        requested_at=row.requested_at,
        completed_at=row.completed_at,
        certificate=row.certificate,
        certificate_hash=row.certificate_hash,
        notifications=[
            {
                "processor_id": n.processor_id,
                "processor": n.processor_name,
                "status": n.status,
                "attempts": n.attempts,
                "next_attempt_at": n.next_attempt_at,
                "last_error": n.last_error,
                "delivered_at": n.delivered_at,
            }
            for n in notes
        ],
    )


def lift_suppression(
    *,
    session: Session,
    workspace_id: str,
    identifiers: Mapping[str, str | None],
    actor: str,
    reason: str,
) -> int:
    """Let an erased person's identifiers be used again, because the person came back by a new,
    explicit action the shop verified (a new account, a request in writing). ``identifiers``
    maps a type (email, phone, user_id, anonymous_id) to a value; a None value is left out.
    Returns how many were lifted; recorded in the audit trail. Invalid names a value that is not
    an identifier."""
    problem = audit.reason_problem(reason)
    errors = [FieldError("reason", problem)] if problem else []
    vault = vault_of(session)
    identities = []
    named = {kind: raw for kind, raw in identifiers.items() if raw is not None}
    for kind, raw in named.items():
        normalised = normalized_identifier(kind, raw)
        if normalised is None:
            errors.append(FieldError(kind, f"not a usable {kind.replace('_', ' ')}"))
            continue
        identities.append(profiles.Identity(kind, vault.index(workspace_id, kind, normalised)))
    if not named:
        errors.append(FieldError("email", "name at least one identifier to lift"))
    if errors:
        raise Invalid("nothing was lifted", errors)
    lifted = profiles.lift_suppressions(
        session=session, workspace_id=workspace_id, identities=identities, actor=actor, at=utcnow()
    )
    audit.record(
        session=session,
        workspace_id=workspace_id,
        actor=actor,
        action="privacy.suppression_lift",
        target_type="suppression",
        target_id=None,
        reason=reason,
        details={"lifted": len(lifted), "asked": len(identities)},
    )
    return len(lifted)


def normalized_identifier(kind: str, raw: str) -> str | None:
    """The stored form of an identifier named by an operator (None: not usable)."""
    if kind == "email":
        return normalize_email(raw)
    if kind == "phone":
        return normalize_phone(raw)
    if kind in (USER_ID, ANONYMOUS_ID):
        return normalize_id(raw)
    return None


def fulfil_request(
    *,
    session: Session,
    workspace_id: str,
    request_id: str,
    actor: str,
    order_hold: timedelta | None = None,
) -> Erasure:
    """Fulfil a verified erasure request: erase the profile linked to it and complete the
    request (resolution: the erasure's id), in the caller's transaction. Invalid when the
    request is not an erasure request or names no profile yet; Conflict (from the request's
    status machine) when it is not verified or in progress."""
    found = request_service.get_request(
        session=session, workspace_id=workspace_id, request_id=request_id
    )
    if found.type != "erasure":
        raise Invalid(
            "only an erasure request is fulfilled by erasing",
            [FieldError("type", f"this request is of type {found.type}")],
        )
    if found.profile_id is None:
        raise Invalid(
            "the request names no profile yet",
            [FieldError("profile_id", "link the request to a profile first (POST .../link)")],
        )
    if found.status == "verified":
        request_service.transition(
            session=session,
            workspace_id=workspace_id,
            request_id=request_id,
            action="start",
            actor=actor,
        )
    elif found.status != "in_progress":
        raise Conflict(f"the request is {found.status}; only a verified one can be fulfilled")
    done = erase(
        session=session,
        workspace_id=workspace_id,
        profile_id=found.profile_id,
        actor=actor,
        reason=f"erasure request {request_id}",
        request_id=request_id,
        order_hold=order_hold,
    )
    request_service.transition(
        session=session,
        workspace_id=workspace_id,
        request_id=request_id,
        action="complete",
        actor=actor,
        reason=f"erased: certificate {done.id}",
    )
    return done
