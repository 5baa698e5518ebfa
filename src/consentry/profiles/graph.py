"""The identity graph: which profiles form a unified profile, and which identifiers they hold."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from consentry.errors import NotFound
from consentry.profiles.models import (
    Identifier,
)
from consentry.profiles.tables import (
    IdentifierRow,
    MergeBlockRow,
    ProfileRow,
)


def canonical_of(*, session: Session, workspace_id: str, profile_id: str) -> str:
    """The unified profile a profile id belongs to (merged ids keep answering)."""
    canonical = session.scalar(
        select(ProfileRow.canonical_id).where(
            ProfileRow.id == profile_id, ProfileRow.workspace_id == workspace_id
        )
    )
    if canonical is None:
        raise NotFound(f"no profile {profile_id!r} in this workspace")
    return canonical


def canonical_map(
    *, session: Session, workspace_id: str, profile_ids: Iterable[str]
) -> dict[str, str]:
    """The unified profile of each given profile id (ids of other workspaces are left out)."""
    ids = sorted(set(profile_ids))
    out: dict[str, str] = {}
    for start in range(0, len(ids), 500):
        rows = session.execute(
            select(ProfileRow.id, ProfileRow.canonical_id).where(
                ProfileRow.workspace_id == workspace_id, ProfileRow.id.in_(ids[start : start + 500])
            )
        )
        out.update((pid, canonical) for pid, canonical in rows)
    return out


def member_ids(*, session: Session, workspace_id: str, canonical_id: str) -> list[str]:
    """Every profile id merged into ``canonical_id``, itself included."""
    return list(session.scalars(members_query(workspace_id, canonical_id)))


def members_query(workspace_id: str, canonical_id: str) -> Any:
    return select(ProfileRow.id).where(
        ProfileRow.workspace_id == workspace_id, ProfileRow.canonical_id == canonical_id
    )


def known_canonicals(
    session: Session, workspace_id: str, identifiers: Iterable[Identifier]
) -> dict[Identifier, str]:
    """The unified profile of each identifier that is already known.

    One query per identifier type, so each uses the (workspace, type, value) index.
    """
    by_type: dict[str, list[str]] = {}
    for ident in identifiers:
        by_type.setdefault(ident.type, []).append(ident.value)
    found: dict[Identifier, str] = {}
    for kind, values in by_type.items():
        unique = sorted(set(values))
        for start in range(0, len(unique), 500):
            rows = session.execute(
                select(IdentifierRow.value, ProfileRow.canonical_id)
                .join(ProfileRow, ProfileRow.id == IdentifierRow.profile_id)
                .where(
                    IdentifierRow.workspace_id == workspace_id,
                    IdentifierRow.type == kind,
                    IdentifierRow.value.in_(unique[start : start + 500]),
                )
            )
            found.update((Identifier(kind, value), canonical) for value, canonical in rows)
    return found


def identifier_counts(session: Session, workspace_id: str, canonical_id: str) -> dict[str, int]:
    rows = session.execute(
        select(IdentifierRow.type, func.count())
        .join(ProfileRow, ProfileRow.id == IdentifierRow.profile_id)
        .where(ProfileRow.workspace_id == workspace_id, ProfileRow.canonical_id == canonical_id)
        .group_by(IdentifierRow.type)
    )
    return {t: int(n) for t, n in rows}


def identifier_counts_many(
    session: Session, workspace_id: str, canonical_ids: Iterable[str]
) -> dict[str, Counter[str]]:
    """Identifiers per type of each unified profile, in one query per 500 profiles."""
    ids = sorted(set(canonical_ids))
    out: dict[str, Counter[str]] = {c: Counter() for c in ids}
    for start in range(0, len(ids), 500):
        rows = session.execute(
            select(ProfileRow.canonical_id, IdentifierRow.type, func.count())
            .join(ProfileRow, ProfileRow.id == IdentifierRow.profile_id)
            .where(
                ProfileRow.workspace_id == workspace_id,
                ProfileRow.canonical_id.in_(ids[start : start + 500]),
            )
            .group_by(ProfileRow.canonical_id, IdentifierRow.type)
        )
        for canonical, kind, n in rows:
            out[canonical][kind] = int(n)
    return out


def blocks_between(a_members: Any, b_members: Any) -> Any:
    """Blocks with one side in each group."""
    return or_(
        and_(MergeBlockRow.profile_a.in_(a_members), MergeBlockRow.profile_b.in_(b_members)),
        and_(MergeBlockRow.profile_a.in_(b_members), MergeBlockRow.profile_b.in_(a_members)),
    )


def is_blocked(session: Session, workspace_id: str, first: str, second: str) -> bool:
    a_members = members_query(workspace_id, first)
    b_members = members_query(workspace_id, second)
    hit = session.scalar(
        select(MergeBlockRow.id)
        .where(
            MergeBlockRow.workspace_id == workspace_id,
            blocks_between(a_members, b_members),
        )
        .limit(1)
    )
    return hit is not None
