"""Erasure of a person from the identity graph, and the suppression of their identities.

:func:`person_of` gathers a unified profile's members and identifiers; :func:`erase_person`
deletes every row of them (profiles, identifiers, trait history, current traits, merges,
blocks, warnings). The identifiers' blind indexes go on the suppression list
(:func:`suppress`): a later message carrying one of them is dropped, so a late or replayed
event does not bring the person back (:func:`suppressed`), unless the person returns by a new,
explicit action (:func:`lift`, which bumps the identity's ``generation``: its events are then
sealed under a fresh key, as the old one was shredded).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, exists, func, insert, or_, select, tuple_, update
from sqlalchemy.orm import Session

from consentry.platform.vault import vault_of
from consentry.profiles.dedupe_tables import MatchCandidateRow
from consentry.profiles.graph import canonical_of, member_ids
from consentry.profiles.tables import (
    CurrentTraitRow,
    IdentifierRow,
    IdentityWarningRow,
    MergeBlockRow,
    MergeRow,
    ProfileRow,
    SuppressionRow,
    TraitHistoryRow,
)

CHUNK = 500
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Identity:
    """An identifier as stored: its type and blind index (never the value)."""

    type: str
    index: str


@dataclass(frozen=True, slots=True)
class Person:
    """A unified profile to erase: its id, every member and every identifier."""

    canonical_id: str
    member_ids: tuple[str, ...]
    identities: tuple[Identity, ...]


@dataclass(frozen=True, slots=True)
class Suppression:
    """Where an identity stands on the suppression list."""

    identity: Identity
    erasure_id: str
    created_at: datetime
    lifted_at: datetime | None
    generation: int

    @property
    def active(self) -> bool:
        return self.lifted_at is None


def person_of(*, session: Session, workspace_id: str, profile_id: str) -> Person:
    """The unified profile that ``profile_id`` belongs to (NotFound when there is none)."""
    canonical = canonical_of(session=session, workspace_id=workspace_id, profile_id=profile_id)
    members = member_ids(session=session, workspace_id=workspace_id, canonical_id=canonical)
    identities = [
        Identity(kind, index)
        for part in _chunks(members)
        for kind, index in session.execute(
            select(IdentifierRow.type, IdentifierRow.value)
            .where(IdentifierRow.workspace_id == workspace_id, IdentifierRow.profile_id.in_(part))
            .order_by(IdentifierRow.type, IdentifierRow.id)
        )
    ]
    return Person(canonical, tuple(members), tuple(identities))


def identifier_values(
    *, session: Session, workspace_id: str, profile_ids: Sequence[str]
) -> list[tuple[str, Any]]:
    """``(type, value)`` of every identifier of these profiles, opened (before an erasure
    destroys the keys: the processors' notification names them)."""
    rows = [
        (kind, sealed)
        for part in _chunks(profile_ids)
        for kind, sealed in session.execute(
            select(IdentifierRow.type, IdentifierRow.sealed)
            .where(IdentifierRow.workspace_id == workspace_id, IdentifierRow.profile_id.in_(part))
            .order_by(IdentifierRow.type, IdentifierRow.id)
        )
    ]
    values = vault_of(session).open_many(workspace_id, [(f"identifier:{k}", s) for k, s in rows])
    return [(kind, value) for (kind, _), value in zip(rows, values, strict=True) if value]


def erase_person(*, session: Session, workspace_id: str, person: Person) -> dict[str, int]:
    """Delete every row of the person's profiles; returns how many rows of each kind."""
    # each kind of row, and which of its columns point at a profile
    owned: dict[str, tuple[Any, tuple[Any, ...]]] = {
        "trait_history": (TraitHistoryRow, (TraitHistoryRow.profile_id,)),
        "current_traits": (CurrentTraitRow, (CurrentTraitRow.canonical_id,)),
        "identifiers": (IdentifierRow, (IdentifierRow.profile_id,)),
        "merges": (MergeRow, (MergeRow.winner_id, MergeRow.loser_id)),
        "merge_blocks": (MergeBlockRow, (MergeBlockRow.profile_a, MergeBlockRow.profile_b)),
        "identity_warnings": (IdentityWarningRow, (IdentityWarningRow.profile_id,)),
        "match_candidates": (
            MatchCandidateRow,
            (MatchCandidateRow.profile_a, MatchCandidateRow.profile_b),
        ),
    }
    counts = dict.fromkeys([*owned, "profiles"], 0)
    for part in _chunks(person.member_ids):
        for name, (row, columns) in owned.items():
            counts[name] += _delete(
                session,
                delete(row).where(
                    row.workspace_id == workspace_id, or_(*(c.in_(part) for c in columns))
                ),
            )
        # a profile unmerged from this person earlier points at a member as its parent: it is
        # somebody else now, its own root
        session.execute(
            update(ProfileRow)
            .where(
                ProfileRow.workspace_id == workspace_id,
                ProfileRow.merged_into.in_(part),
                ProfileRow.canonical_id != person.canonical_id,
            )
            .values(merged_into=None)
        )
    for part in _chunks(person.member_ids):  # last: the rows above point at them
        counts["profiles"] += _delete(
            session,
            delete(ProfileRow).where(
                ProfileRow.workspace_id == workspace_id, ProfileRow.id.in_(part)
            ),
        )
    return counts


# --- suppression ----------------------------------------------------------------------------------


def suppress(
    *,
    session: Session,
    workspace_id: str,
    identities: Iterable[Identity],
    erasure_id: str,
    at: datetime,
    lift_now: bool = False,
) -> tuple[int, dict[Identity, int]]:
    """Put identities on the suppression list (again, when they had been lifted); with
    ``lift_now``, take them off at once, so only their key generation moves on (retention).

    Returns how many stay listed, and the generation each identity had before (the keys of
    generations 0 to that one sealed its events so far)."""
    wanted = list(dict.fromkeys(identities))
    known = suppressed(session=session, workspace_id=workspace_id, identities=wanted)
    before = {i: known[i].generation if i in known else 0 for i in wanted}
    fresh = [i for i in wanted if i not in known]
    if fresh:
        session.execute(
            insert(SuppressionRow),
            [
                {
                    "workspace_id": workspace_id,
                    "type": i.type,
                    "value": i.index,
                    "erasure_id": erasure_id,
                    "created_at": at,
                    "lifted_at": at if lift_now else None,
                    "lifted_by": f"erasure:{erasure_id}" if lift_now else None,
                    "generation": 1 if lift_now else 0,
                }
                for i in fresh
            ],
        )
    for ident in (i for i in wanted if i in known):
        if known[ident].active and not lift_now:
            continue
        session.execute(
            update(SuppressionRow)
            .where(*_key(workspace_id, ident))
            .values(
                erasure_id=erasure_id,
                created_at=at,
                lifted_at=at if lift_now else None,
                lifted_by=f"erasure:{erasure_id}" if lift_now else None,
                generation=before[ident] + 1 if lift_now else before[ident],
            )
        )
    return (0 if lift_now else len(wanted)), before


def suppressed(
    *, session: Session, workspace_id: str, identities: Iterable[Identity]
) -> dict[Identity, Suppression]:
    """The suppression entry of each identity that has one (active or lifted)."""
    wanted = list(dict.fromkeys(identities))
    found: dict[Identity, Suppression] = {}
    t = SuppressionRow
    for part in _chunks(wanted):
        rows = session.execute(
            select(t.type, t.value, t.erasure_id, t.created_at, t.lifted_at, t.generation).where(
                t.workspace_id == workspace_id,
                tuple_(t.type, t.value).in_([(i.type, i.index) for i in part]),
            )
        )
        for kind, value, erasure_id, created, lifted, generation in rows:
            ident = Identity(kind, value)
            found[ident] = Suppression(ident, erasure_id, created, lifted, generation)
    return found


def has_suppressions(*, session: Session, workspace_id: str) -> bool:
    """Whether the workspace has any identity on the list (the hot path skips the look-up
    when it has none)."""
    return bool(session.scalar(select(exists().where(SuppressionRow.workspace_id == workspace_id))))


def lift(
    *,
    session: Session,
    workspace_id: str,
    identities: Iterable[Identity],
    actor: str,
    at: datetime,
) -> dict[Identity, int]:
    """Take active identities off the list (the person came back by a new, explicit action);
    returns each lifted identity's new generation."""
    known = suppressed(session=session, workspace_id=workspace_id, identities=identities)
    out: dict[Identity, int] = {}
    for ident, entry in known.items():
        if not entry.active:
            continue
        generation = entry.generation + 1
        session.execute(
            update(SuppressionRow)
            .where(*_key(workspace_id, ident))
            .values(lifted_at=at, lifted_by=actor[:200], generation=generation)
        )
        out[ident] = generation
    return out


def _key(workspace_id: str, ident: Identity) -> tuple[Any, ...]:
    return (
        SuppressionRow.workspace_id == workspace_id,
        SuppressionRow.type == ident.type,
        SuppressionRow.value == ident.index,
    )


def _delete(session: Session, statement: Any) -> int:
    return int(getattr(session.execute(statement), "rowcount", 0) or 0)


def _chunks(items: Sequence[_T]) -> Iterable[Sequence[_T]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


# --- retention -----------------------------------------------------------------------------------


def _inactive(workspace_id: str, before: datetime) -> Any:
    """Unified profiles none of whose members was seen since ``before``."""
    return (
        select(ProfileRow.canonical_id)
        .where(ProfileRow.workspace_id == workspace_id)
        .group_by(ProfileRow.canonical_id)
        .having(func.max(ProfileRow.last_seen) < before)
    )


def inactive_people(
    *, session: Session, workspace_id: str, before: datetime, limit: int | None = None
) -> list[str]:
    """Unified profiles none of whose members was seen since ``before`` (oldest first)."""
    query = _inactive(workspace_id, before).order_by(
        func.max(ProfileRow.last_seen), ProfileRow.canonical_id
    )
    return list(session.scalars(query if limit is None else query.limit(limit)))


def count_inactive_people(*, session: Session, workspace_id: str, before: datetime) -> int:
    """How many unified profiles :func:`inactive_people` would give."""
    inner = _inactive(workspace_id, before).subquery()
    return int(session.scalar(select(func.count()).select_from(inner)) or 0)


def expired_warnings(
    *, session: Session, workspace_id: str, before: datetime, remove_up_to: int = 0
) -> int:
    """How many identity warnings were recorded before ``before``; with ``remove_up_to``,
    delete up to that many (oldest first) and return how many went."""
    where = (
        IdentityWarningRow.workspace_id == workspace_id,
        IdentityWarningRow.created_at < before,
    )
    if not remove_up_to:
        total = session.scalar(select(func.count()).select_from(IdentityWarningRow).where(*where))
        return int(total or 0)
    ids = list(
        session.scalars(
            select(IdentityWarningRow.id)
            .where(*where)
            .order_by(IdentityWarningRow.created_at)
            .limit(remove_up_to)
        )
    )
    return _delete(session, delete(IdentityWarningRow).where(IdentityWarningRow.id.in_(ids)))
