"""Use cases of the consent capability, and the public facade of the package.

Other capabilities and the adapters call ``consent.service``. Behind it: ``ledger`` (append-only,
hash-chained records, the current state, verification, receipts) and ``policy`` (the one place
that decides). Functions take a session and keyword-only arguments and never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.orm import Session

from consentry.consent import ledger, rates
from consentry.consent.ledger import (
    Problem,
    VerifyReport,
    append,
    configure,
    erase_subject,
    get_config,
    get_record,
    history,
    receipt,
    states_of,
    verify,
)
from consentry.consent.models import (
    ANY_CHANNEL,
    CONSENT,
    ConsentConfig,
    ConsentEntry,
    ConsentIn,
    ConsentRecord,
    CurrentState,
    Decision,
    ProofIn,
    Purpose,
    aware,
    entry_problems,
    make_proof,
)
from consentry.consent.policy import SubjectConsent, can_use, can_use_many, subject_consent
from consentry.consent.preferences import Branding
from consentry.consent.signal_service import (
    SignalResult,
    apply_event_signals,
    category_map,
    record_gpc,
    record_tcf,
    set_categories,
    workspace_categories,
)
from consentry.consent.tables import ConsentBrandingRow
from consentry.errors import Conflict, ConsentryError, FieldError, Invalid, NotFound
from consentry.platform import tenancy
from consentry.platform.db import utcnow
from consentry.profiles import service as profiles

__all__ = [
    "Branding",
    "ConsentConfig",
    "ConsentEntry",
    "ConsentIn",
    "ConsentRecord",
    "CurrentState",
    "Decision",
    "Problem",
    "ProofIn",
    "Purpose",
    "SignalResult",
    "SubjectConsent",
    "VerifyReport",
    "append",
    "apply_event_signals",
    "can_use",
    "can_use_many",
    "category_map",
    "configure",
    "erase_subject",
    "get_branding",
    "get_config",
    "get_record",
    "history",
    "receipt",
    "record",
    "record_gpc",
    "record_request",
    "record_requests",
    "record_tcf",
    "resolve_subject",
    "set_branding",
    "set_categories",
    "states_of",
    "subject_consent",
    "subject_history",
    "verify",
    "workspace_categories",
]


def record(
    *,
    session: Session,
    workspace_id: str,
    profile_id: str,
    purpose: str,
    state: str,
    source: str,
    actor: str,
    channel: str = ANY_CHANNEL,
    legal_basis: str = CONSENT,
    occurred_at: datetime | None = None,
    notice_version: str | None = None,
    expires_at: datetime | None = None,
    proof: ProofIn | None = None,
) -> ConsentRecord:
    """Record one choice of ``profile_id`` (as given, not resolved) in the caller's transaction.

    Raises Invalid naming the field when a value is not allowed; nothing is written then.
    """
    stored_proof, errors = make_proof(proof)
    now = utcnow()
    entry = ConsentEntry(
        profile_id=profile_id,
        purpose=purpose,
        channel=channel,
        state=state,
        source=source,
        occurred_at=aware(occurred_at) if occurred_at else now,
        actor=actor,
        legal_basis=legal_basis,
        notice_version=notice_version,
        expires_at=aware(expires_at) if expires_at else None,
        proof=stored_proof,
    )
    config = get_config(session=session, workspace_id=workspace_id)
    errors += entry_problems(entry, config.purpose_keys, now)
    if errors:
        raise Invalid("the consent record is not valid; nothing was recorded", errors)
    (stored,) = append(session=session, workspace_id=workspace_id, entries=[entry], recorded_at=now)
    return stored


def resolve_subject(
    *,
    session: Session,
    workspace_id: str,
    profile_id: str | None = None,
    email: str | None = None,
    user_id: str | None = None,
) -> str:
    """The profile id of a subject named by profile id, or the unified profile holding the
    email or user id; NotFound when there is none."""
    if profile_id is not None:
        profiles.canonical_of(session=session, workspace_id=workspace_id, profile_id=profile_id)
        return profile_id
    if email is None and user_id is None:
        raise Invalid(
            "name the subject", [FieldError("profile_id", "give profile_id, email or user_id")]
        )
    found = profiles.search_identifiers(
        session=session, workspace_id=workspace_id, email=email, user_id=user_id
    )
    if not found:
        raise NotFound("no profile holds this email or user_id")
    if len(found) > 1:
        raise Conflict("the email and user_id belong to different profiles")
    return found[0]


def _entry(item: ConsentIn, profile_id: str, actor: str, now: datetime) -> ConsentEntry:
    return ConsentEntry(
        profile_id=profile_id,
        purpose=item.purpose,
        channel=item.channel,
        state=item.state,
        source=item.source,
        occurred_at=aware(item.occurred_at) if item.occurred_at else now,
        actor=actor,
        legal_basis=item.legal_basis,
        notice_version=item.notice_version,
        expires_at=aware(item.expires_at) if item.expires_at else None,
    )


def _prepare(
    session: Session, workspace_id: str, item: ConsentIn, actor: str, now: datetime
) -> tuple[ConsentEntry | None, list[FieldError]]:
    proof, errors = make_proof(item.proof)
    try:
        profile_id = resolve_subject(
            session=session,
            workspace_id=workspace_id,
            profile_id=item.profile_id,
            email=item.email,
            user_id=item.user_id,
        )
    except ConsentryError as exc:
        field = (
            "profile_id" if item.profile_id is not None else "email" if item.email else "user_id"
        )
        return None, [*errors, *(exc.errors or [FieldError(field, exc.message)])]
    entry = replace(_entry(item, profile_id, actor, now), proof=proof)
    config = get_config(session=session, workspace_id=workspace_id)
    return entry, errors + entry_problems(entry, config.purpose_keys, now)


def record_request(
    *, session: Session, workspace_id: str, item: ConsentIn, actor: str
) -> ConsentRecord:
    """Record one choice sent to the API; an unknown subject is NotFound."""
    resolve_subject(
        session=session,
        workspace_id=workspace_id,
        profile_id=item.profile_id,
        email=item.email,
        user_id=item.user_id,
    )
    try:
        (stored,) = record_requests(
            session=session, workspace_id=workspace_id, items=[item], actor=actor
        )
    except Invalid as exc:  # one item: its errors have no index
        raise Invalid(exc.message, [replace(e, index=None) for e in exc.errors]) from exc
    return stored


def record_requests(
    *, session: Session, workspace_id: str, items: Sequence[ConsentIn], actor: str
) -> list[ConsentRecord]:
    """Record many choices all or nothing: any bad item (an unknown subject included) raises
    Invalid listing every problem with its item's index, and nothing is written."""
    now = utcnow()
    entries: list[ConsentEntry] = []
    errors: list[FieldError] = []
    for index, item in enumerate(items):
        entry, problems = _prepare(session, workspace_id, item, actor, now)
        errors += [replace(p, index=index) for p in problems]
        if entry is not None:
            entries.append(entry)
    if errors:
        raise Invalid("consent records are not valid; nothing was recorded", errors)
    return append(session=session, workspace_id=workspace_id, entries=entries, recorded_at=now)


def subject_history(
    *, session: Session, workspace_id: str, profile_id: str, limit: int = 100, offset: int = 0
) -> tuple[str, list[ConsentRecord]]:
    """The unified profile of ``profile_id`` and its members' records, newest first."""
    canonical = profiles.canonical_of(
        session=session, workspace_id=workspace_id, profile_id=profile_id
    )
    members = profiles.member_ids(
        session=session, workspace_id=workspace_id, canonical_id=canonical
    )
    records = history(
        session=session, workspace_id=workspace_id, profile_ids=members, limit=limit, offset=offset
    )
    return canonical, records


def get_branding(*, session: Session, workspace_id: str) -> Branding:
    """The look of the workspace's customer pages; until it is set, the workspace's name and
    the defaults. NotFound when there is no such workspace."""
    row = session.get(ConsentBrandingRow, workspace_id)
    if row is None:
        workspace = tenancy.get_workspace(session=session, workspace_id=workspace_id)
        return Branding(brand_name=workspace.name)
    return Branding(
        brand_name=row.brand_name,
        primary_color=row.primary_color,
        logo_url=row.logo_url,
        default_language=row.default_language,
        privacy_policy_url=row.privacy_policy_url,
        support_email=row.support_email,
    )


def set_branding(*, session: Session, workspace_id: str, branding: Branding) -> Branding:
    """Replace the workspace's branding (validated by ``preferences.BrandingIn``)."""
    tenancy.get_workspace(session=session, workspace_id=workspace_id)
    row = session.get(ConsentBrandingRow, workspace_id)
    if row is None:
        row = ConsentBrandingRow(workspace_id=workspace_id)
        session.add(row)
    row.brand_name, row.primary_color = branding.brand_name, branding.primary_color
    row.logo_url, row.default_language = branding.logo_url, branding.default_language
    row.privacy_policy_url, row.support_email = branding.privacy_policy_url, branding.support_email
    row.updated_at = utcnow()
    session.flush()
    return branding


def opt_in_by_period(
    *, session: Session, workspace_id: str, since: datetime, until: datetime, interval: str
) -> dict[str, rates.Tally]:
    """Every purpose's choices in ``[since, until)`` tallied per period (named by its first
    day, ISO), for the KPI of other capabilities: the consent rate is the ``opt_in_rate``."""
    per: dict[str, rates.Tally] = {}
    for choice in ledger.choices(
        session=session, workspace_id=workspace_id, since=since, until=until
    ):
        period = rates.period_start(choice.occurred_at, interval).isoformat()
        per.setdefault(period, rates.Tally(period=period, key="all")).add(choice)
    return per
