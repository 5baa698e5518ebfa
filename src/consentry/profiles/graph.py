"""The identity graph: which profiles form a unified profile, and which identifiers they hold."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Table, and_, func, or_, select
from sqlalchemy.orm import Session

from consentry.errors import NotFound
from consentry.platform.vault import Vault, vault_of
from consentry.profiles.models import (
    Identifier,
)
from consentry.profiles.tables import (
    IdentifierRow,
    MergeBlockRow,
    ProfileRow,
)

# The hot-path reads below are Core selects on the tables: rows come back as plain tuples,
# without the ORM's compile and loading layer.
_PROFILES = cast(Table, ProfileRow.__table__)
_IDENTIFIERS = cast(Table, IdentifierRow.__table__)
_BLOCKS = cast(Table, MergeBlockRow.__table__)
_P, _I = _PROFILES.c, _IDENTIFIERS.c


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
        rows = session.connection().execute(
            select(_P.id, _P.canonical_id).where(
                _P.workspace_id == workspace_id, _P.id.in_(ids[start : start + 500])
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


def core_members_query(workspace_id: str, canonical_id: str) -> Any:
    """:func:`members_query` on the table, for Core statements (no ORM layer)."""
    return select(_P.id).where(_P.workspace_id == workspace_id, _P.canonical_id == canonical_id)


def known_canonicals(
    session: Session, workspace_id: str, identifiers: Iterable[Identifier]
) -> dict[Identifier, str]:
    """The unified profile of each identifier that is already known.

    One query per identifier type, so each uses the (workspace, type, value) index.
    """
    vault = vault_of(session)
    by_type: dict[str, dict[str, Identifier]] = {}  # type -> blind index -> identifier
    for ident in identifiers:
        by_type.setdefault(ident.type, {})[vault.index(workspace_id, ident.type, ident.value)] = (
            ident
        )
    found: dict[Identifier, str] = {}
    for kind, by_index in by_type.items():
        unique = sorted(by_index)
        for start in range(0, len(unique), 500):
            rows = session.connection().execute(
                select(_I.value, _P.canonical_id)
                .join_from(_IDENTIFIERS, _PROFILES, _P.id == _I.profile_id)
                .where(
                    _I.workspace_id == workspace_id,
                    _I.type == kind,
                    _I.value.in_(unique[start : start + 500]),
                )
            )
            found.update((by_index[index], canonical) for index, canonical in rows)
    return found


def identifier_row(
    vault: Vault, workspace_id: str, profile_id: str, ident: Identifier
) -> tuple[str, tuple[str, str, str]]:
    """The stored look-up value of an identifier (its blind index) and what to seal for it:
    ``(subject, field, value)``, sealed under the profile's key."""
    return (
        vault.index(workspace_id, ident.type, ident.value),
        (profile_id, f"identifier:{ident.type}", ident.value),
    )


def identifier_counts(session: Session, workspace_id: str, canonical_id: str) -> dict[str, int]:
    rows = session.connection().execute(
        select(_I.type, func.count())
        .join_from(_IDENTIFIERS, _PROFILES, _P.id == _I.profile_id)
        .where(_P.workspace_id == workspace_id, _P.canonical_id == canonical_id)
        .group_by(_I.type)
    )
    return {t: int(n) for t, n in rows}


def identifier_counts_many(
    session: Session, workspace_id: str, canonical_ids: Iterable[str]
) -> dict[str, Counter[str]]:
    """Identifiers per type of each unified profile, in one query per 500 profiles."""
    ids = sorted(set(canonical_ids))
    out: dict[str, Counter[str]] = {c: Counter() for c in ids}
    for start in range(0, len(ids), 500):
        rows = session.connection().execute(
            select(_P.canonical_id, _I.type, func.count())
            .join_from(_IDENTIFIERS, _PROFILES, _P.id == _I.profile_id)
            .where(
                _P.workspace_id == workspace_id,
                _P.canonical_id.in_(ids[start : start + 500]),
            )
            .group_by(_P.canonical_id, _I.type)
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
    a_members = core_members_query(workspace_id, first)
    b_members = core_members_query(workspace_id, second)
    blocks = _BLOCKS.c
    hit = session.connection().scalar(
        select(blocks.id)
        .where(
            blocks.workspace_id == workspace_id,
            or_(
                and_(blocks.profile_a.in_(a_members), blocks.profile_b.in_(b_members)),
                and_(blocks.profile_a.in_(b_members), blocks.profile_b.in_(a_members)),
            ),
        )
        .limit(1)
    )
    return hit is not None
