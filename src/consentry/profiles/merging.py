"""Merge and unmerge. Every merge is recorded and can be undone; an unmerge leaves a block so
automatic resolution does not join the two again (an explicit merge by hand may)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from consentry.errors import Conflict, NotFound
from consentry.platform.db import utcnow
from consentry.profiles.graph import (
    blocks_between,
    canonical_of,
    identifier_counts,
    members_query,
)
from consentry.profiles.models import (
    merge_allowed,
)
from consentry.profiles.tables import (
    MergeBlockRow,
    MergeRow,
    ProfileRow,
)
from consentry.profiles.traits import rebuild_traits

CapFn = Callable[[str], int]


@dataclass(frozen=True, slots=True)
class MergeRecord:
    id: str
    winner_id: str
    loser_id: str
    reason: str
    actor: str
    created_at: datetime
    undone_at: datetime | None
    undone_by: str | None


def merge_canonicals(
    session: Session,
    workspace_id: str,
    first: str,
    second: str,
    reason: str,
    actor: str,
    message_id: str | None,
) -> MergeRecord:
    a, b = session.get(ProfileRow, first), session.get(ProfileRow, second)
    assert a is not None and b is not None  # both are canonical ids found in this workspace
    winner, loser = (a, b) if (a.created_at, a.id) <= (b.created_at, b.id) else (b, a)
    session.execute(
        update(ProfileRow)
        .where(ProfileRow.workspace_id == workspace_id, ProfileRow.canonical_id == loser.id)
        .values(canonical_id=winner.id)
    )
    session.refresh(loser)
    loser.merged_into = winner.id
    winner.first_seen = min(winner.first_seen, loser.first_seen)
    winner.last_seen = max(winner.last_seen, loser.last_seen)
    row = MergeRow(
        id=str(uuid.uuid4()),
        workspace_id=workspace_id,
        winner_id=winner.id,
        loser_id=loser.id,
        reason=reason,
        source_message_id=message_id,
        actor=actor,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    rebuild_traits(session, workspace_id, [winner.id, loser.id])
    return merge_record(row)


def merge_profiles(
    *, session: Session, workspace_id: str, first: str, second: str, actor: str, cap: CapFn
) -> MergeRecord:
    """Merge two profiles by hand. An explicit merge may join profiles an unmerge separated."""
    a = canonical_of(session=session, workspace_id=workspace_id, profile_id=first)
    b = canonical_of(session=session, workspace_id=workspace_id, profile_id=second)
    if a == b:
        raise Conflict("the profiles are already one")
    reason = merge_allowed(
        identifier_counts(session, workspace_id, a),
        identifier_counts(session, workspace_id, b),
        cap,
    )
    if reason is not None:
        raise Conflict(f"merge refused: {reason}")
    session.execute(
        delete(MergeBlockRow).where(
            MergeBlockRow.workspace_id == workspace_id,
            blocks_between(members_query(workspace_id, a), members_query(workspace_id, b)),
        )
    )
    return merge_canonicals(session, workspace_id, a, b, "merged by hand", actor, None)


def unmerge(*, session: Session, workspace_id: str, merge_id: str, actor: str) -> MergeRecord:
    """Undo a merge: the loser and everything merged into it become a profile of their own
    again, with their identifiers, traits and events; resolution will not join them again."""
    row = session.get(MergeRow, merge_id)
    if row is None or row.workspace_id != workspace_id:
        raise NotFound(f"no merge {merge_id!r} in this workspace")
    if row.undone_at is not None:
        raise Conflict("this merge was already undone")
    loser = session.get(ProfileRow, row.loser_id)
    assert loser is not None  # foreign key
    old_root = loser.canonical_id
    subtree = _subtree(session, workspace_id, loser.id)
    session.execute(
        update(ProfileRow).where(ProfileRow.id.in_(subtree)).values(canonical_id=loser.id)
    )
    session.refresh(loser)
    loser.merged_into = None
    row.undone_at, row.undone_by = utcnow(), actor
    session.add(
        MergeBlockRow(
            workspace_id=workspace_id,
            profile_a=row.winner_id,
            profile_b=row.loser_id,
            created_at=utcnow(),
        )
    )
    session.flush()
    rebuild_traits(session, workspace_id, [old_root, loser.id])
    return merge_record(row)


def _subtree(session: Session, workspace_id: str, root: str) -> list[str]:
    found, frontier = [root], [root]
    while frontier:
        frontier = list(
            session.scalars(
                select(ProfileRow.id).where(
                    ProfileRow.workspace_id == workspace_id, ProfileRow.merged_into.in_(frontier)
                )
            )
        )
        found.extend(frontier)
    return found


def merges_changed_since(
    *, session: Session, workspace_id: str, since: datetime
) -> list[tuple[str, str]]:
    """``(winner id, loser id)`` of each merge of the workspace made or undone at or after
    ``since``: the profiles whose person changed, for readers that keep state per unified
    profile (segment membership) and are not told by an event."""
    rows = session.execute(
        select(MergeRow.winner_id, MergeRow.loser_id).where(
            MergeRow.workspace_id == workspace_id,
            or_(MergeRow.created_at >= since, MergeRow.undone_at >= since),
        )
    )
    return [(str(winner), str(loser)) for winner, loser in rows]


def merge_record(row: MergeRow) -> MergeRecord:
    return MergeRecord(
        id=row.id,
        winner_id=row.winner_id,
        loser_id=row.loser_id,
        reason=row.reason,
        actor=row.actor,
        created_at=row.created_at,
        undone_at=row.undone_at,
        undone_by=row.undone_by,
    )
