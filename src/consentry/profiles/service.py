"""Use cases of the profiles capability: the read side, and the public facade of the package.

Other capabilities and the adapters call ``profiles.service``; the modules behind it are
``resolution`` (deterministic identity resolution), ``merging``, ``traits`` and ``graph``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from consentry.errors import FieldError, Invalid
from consentry.platform.db import row_batches
from consentry.platform.vault import vault_of
from consentry.profiles.bulk import canonical_map_many, current_traits_many, members_many
from consentry.profiles.erasure import (
    Identity,
    Person,
    Suppression,
    count_inactive_people,
    erase_person,
    expired_warnings,
    has_suppressions,
    identifier_values,
    inactive_people,
    person_of,
    suppress,
    suppressed,
)
from consentry.profiles.erasure import lift as lift_suppressions
from consentry.profiles.graph import (
    canonical_map,
    canonical_of,
    known_canonicals,
    member_ids,
    members_query,
)
from consentry.profiles.merging import MergeRecord, merge_profiles, merge_record, unmerge
from consentry.profiles.models import (
    ANONYMOUS_ID,
    EMAIL,
    PHONE,
    USER_ID,
    Identifier,
    message_traits,
    normalize_email,
    normalize_id,
    normalize_phone,
)
from consentry.profiles.personal import (
    MarkReport,
    PersonalTrait,
    builtin_personal,
    is_personal,
    list_personal,
    mark_personal,
    personal_in,
)
from consentry.profiles.resolution import Resolution, Sighting, resolve, resolve_batch
from consentry.profiles.tables import (
    CurrentTraitRow,
    IdentifierRow,
    IdentityWarningRow,
    MergeRow,
    ProfileRow,
)
from consentry.profiles.traits import (
    TraitObservation,
    open_traits,
    record_traits,
    record_traits_batch,
    rectify_traits,
    trait_history,
)

__all__ = [
    "Identity",
    "MarkReport",
    "MergeRecord",
    "PersonalTrait",
    "Person",
    "Suppression",
    "ProfileView",
    "Resolution",
    "Sighting",
    "TraitObservation",
    "builtin_personal",
    "canonical_map",
    "canonical_map_many",
    "canonical_of",
    "count_inactive_people",
    "count_profiles",
    "current_traits_many",
    "erase_person",
    "expired_warnings",
    "get_profile",
    "has_suppressions",
    "identifier_values",
    "inactive_people",
    "is_personal",
    "lift_suppressions",
    "list_personal",
    "list_profiles",
    "mark_personal",
    "member_ids",
    "members_many",
    "merge_profiles",
    "person_of",
    "personal_in",
    "message_traits",
    "record_traits",
    "record_traits_batch",
    "rectify_traits",
    "resolve",
    "resolve_batch",
    "search_identifiers",
    "suppress",
    "suppressed",
    "trait_history",
    "unmerge",
    "warnings_for",
]


@dataclass(frozen=True, slots=True)
class ProfileView:
    """A unified profile: its traits, identifiers and merge history."""

    id: str
    member_ids: list[str]
    created_at: datetime
    first_seen: datetime
    last_seen: datetime
    traits: dict[str, Any]
    identifiers: list[dict[str, Any]]
    merges: list[MergeRecord]


def get_profile(*, session: Session, workspace_id: str, profile_id: str) -> ProfileView:
    """The unified profile that ``profile_id`` belongs to."""
    canonical = canonical_of(session=session, workspace_id=workspace_id, profile_id=profile_id)
    root = session.get(ProfileRow, canonical)
    assert root is not None
    members = member_ids(session=session, workspace_id=workspace_id, canonical_id=canonical)
    traits = open_traits(
        session,
        workspace_id,
        {
            row.key: row.value
            for row in session.scalars(
                select(CurrentTraitRow)
                .where(CurrentTraitRow.canonical_id == canonical)
                .order_by(CurrentTraitRow.key)
            )
        },
    )
    rows = list(
        session.scalars(
            select(IdentifierRow)
            .where(IdentifierRow.profile_id.in_(members))
            .order_by(IdentifierRow.type, IdentifierRow.first_seen)
        )
    )
    values = vault_of(session).open_many(
        workspace_id, [(f"identifier:{r.type}", r.sealed) for r in rows]
    )
    identifiers = [
        {"type": r.type, "value": value, "profile_id": r.profile_id, "first_seen": r.first_seen}
        for r, value in zip(rows, values, strict=True)
    ]
    merges = [
        merge_record(r)
        for r in session.scalars(
            select(MergeRow)
            .where(
                MergeRow.workspace_id == workspace_id,
                or_(MergeRow.winner_id.in_(members), MergeRow.loser_id.in_(members)),
            )
            .order_by(MergeRow.created_at)
        )
    ]
    return ProfileView(
        id=canonical,
        member_ids=members,
        created_at=root.created_at,
        first_seen=root.first_seen,
        last_seen=root.last_seen,
        traits=traits,
        identifiers=identifiers,
        merges=merges,
    )


def search_identifiers(
    *,
    session: Session,
    workspace_id: str,
    email: str | None = None,
    phone: str | None = None,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    default_region: str = "US",
) -> list[str]:
    """Unified profile ids holding any of the given identifiers (normalised first)."""
    wanted: list[Identifier] = []
    for kind, raw, norm in (
        (EMAIL, email, normalize_email),
        (USER_ID, user_id, normalize_id),
        (ANONYMOUS_ID, anonymous_id, normalize_id),
    ):
        if raw is not None:
            value = norm(raw)
            if value is None:
                raise Invalid(f"{kind} is not a usable identifier", [FieldError(kind, "unusable")])
            wanted.append(Identifier(kind, value))
    if phone is not None:
        value = normalize_phone(phone, default_region)
        if value is None:
            raise Invalid("phone is not a valid phone number", [FieldError("phone", "invalid")])
        wanted.append(Identifier(PHONE, value))
    if not wanted:
        raise Invalid(
            "give at least one of email, phone, user_id, anonymous_id",
            [FieldError("email", "one identifier is required")],
        )
    return list(dict.fromkeys(known_canonicals(session, workspace_id, wanted).values()))


def list_profiles(
    *, session: Session, workspace_id: str, limit: int = 50, offset: int = 0
) -> list[tuple[str, datetime]]:
    """Unified profiles, most recently seen first."""
    rows = session.execute(
        select(ProfileRow.id, ProfileRow.last_seen)
        .where(ProfileRow.workspace_id == workspace_id, ProfileRow.merged_into.is_(None))
        .order_by(ProfileRow.last_seen.desc(), ProfileRow.id)
        .limit(limit)
        .offset(offset)
    )
    return [(pid, seen) for pid, seen in rows]


def count_profiles(*, session: Session, workspace_id: str) -> int:
    """How many unified profiles the workspace has."""
    return int(
        session.scalar(
            select(func.count()).where(
                ProfileRow.workspace_id == workspace_id, ProfileRow.merged_into.is_(None)
            )
        )
        or 0
    )


def warnings_for(*, session: Session, workspace_id: str, profile_id: str) -> list[str]:
    """Identity warnings recorded against a unified profile's members."""
    canonical = canonical_of(session=session, workspace_id=workspace_id, profile_id=profile_id)
    return list(
        session.scalars(
            select(IdentityWarningRow.reason)
            .where(IdentityWarningRow.profile_id.in_(members_query(workspace_id, canonical)))
            .order_by(IdentityWarningRow.id)
        )
    )


def merged_members(
    *, session: Session, workspace_id: str, batch: int = 100_000
) -> Iterator[list[tuple[str, str]]]:
    """``(profile id, unified profile id)`` of every profile merged into another, in batches:
    what analytics needs to count a person's activity under one profile."""
    stmt = select(ProfileRow.id, ProfileRow.canonical_id).where(
        ProfileRow.workspace_id == workspace_id, ProfileRow.id != ProfileRow.canonical_id
    )
    yield from row_batches(session, stmt, batch)
