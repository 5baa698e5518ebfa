"""Merge and unmerge. Every merge is recorded and can be undone; an unmerge leaves a block so
automatic resolution does not join the two again (an explicit merge by hand may)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from consentry.errors import Conflict, NotFound
from consentry.platform.db import Bulk, utcnow
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

_P = cast(Table, ProfileRow.__table__)
_MOVE_MEMBERS = Bulk(
    update(_P)
    .where(_P.c.workspace_id == bindparam("ws"), _P.c.canonical_id == bindparam("old"))
    .values(canonical_id=bindparam("root"))
)
_SET_PARENT = Bulk(
    update(_P).where(_P.c.id == bindparam("pid")).values(merged_into=bindparam("parent"))
)
_SET_SEEN = Bulk(
    update(_P)
    .where(_P.c.id == bindparam("pid"))
    .values(first_seen=bindparam("first"), last_seen=bindparam("last"))
)
_INSERT_MERGES = Bulk(insert(cast(Table, MergeRow.__table__)))


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
    """Merge two unified profiles (the earlier created wins) and record it."""
    plan = MergePlan(session, workspace_id, [first, second])
    record = plan.merge(first, second, reason=reason, actor=actor, message_id=message_id)
    plan.apply()
    return record


@dataclass(slots=True)
class _Head:
    """A unified profile as a plan sees it."""

    created_at: datetime
    first_seen: datetime
    last_seen: datetime
    seen_changed: bool = False


class MergePlan:
    """Merges of unified profiles decided one after the other in memory and written together.

    Each :meth:`merge` names two profiles that are unified *at that point of the plan* (after
    the merges before it), picks the winner as :func:`merge_canonicals` does (the earlier
    created, then the smaller id) and returns the merge's record at once; :meth:`apply` then
    writes every merge with a handful of statements whatever their number: the members of
    each loser move to the root they end under, each loser's ``merged_into`` names its own
    winner (so an unmerge restores the same subtrees as one merge at a time would), first and
    last seen are widened, the merge rows are inserted, and the current traits of the roots
    are rebuilt from their members' history in one pass. The result is the same as calling
    :func:`merge_canonicals` for each merge in turn.
    """

    def __init__(self, session: Session, workspace_id: str, canonical_ids: Iterable[str]) -> None:
        self.session = session
        self.workspace_id = workspace_id
        self._heads: dict[str, _Head] = {}
        self._root: dict[str, str] = {}  # loser -> the profile it was merged into
        self._rows: list[dict[str, object]] = []
        self._load(canonical_ids)

    def _load(self, canonical_ids: Iterable[str]) -> None:
        wanted = sorted({c for c in canonical_ids if c not in self._heads})
        for start in range(0, len(wanted), 500):
            rows = self.session.connection().execute(
                select(_P.c.id, _P.c.created_at, _P.c.first_seen, _P.c.last_seen).where(
                    _P.c.workspace_id == self.workspace_id,
                    _P.c.id.in_(wanted[start : start + 500]),
                )
            )
            for pid, created_at, first_seen, last_seen in rows:
                self._heads[pid] = _Head(created_at, first_seen, last_seen)

    def merge(
        self, first: str, second: str, *, reason: str, actor: str, message_id: str | None = None
    ) -> MergeRecord:
        """Plan the merge of the unified profiles ``first`` and ``second`` (two, not merged
        away earlier in the plan)."""
        if first not in self._heads or second not in self._heads:
            self._load([first, second])
        a, b = self._heads.get(first), self._heads.get(second)
        if a is None or b is None or first == second:
            raise NotFound("a merge needs two unified profiles of this workspace")
        if first in self._root or second in self._root:
            raise Conflict("a profile was merged away earlier in the plan")
        if (a.created_at, first) <= (b.created_at, second):
            winner_id, winner, loser_id, loser = first, a, second, b
        else:
            winner_id, winner, loser_id, loser = second, b, first, a
        winner.first_seen = min(winner.first_seen, loser.first_seen)
        winner.last_seen = max(winner.last_seen, loser.last_seen)
        winner.seen_changed = True
        self._root[loser_id] = winner_id
        record = MergeRecord(
            id=str(uuid.uuid4()),
            winner_id=winner_id,
            loser_id=loser_id,
            reason=reason,
            actor=actor,
            created_at=utcnow(),
            undone_at=None,
            undone_by=None,
        )
        self._rows.append(
            {
                "id": record.id,
                "workspace_id": self.workspace_id,
                "winner_id": winner_id,
                "loser_id": loser_id,
                "reason": reason,
                "source_message_id": message_id,
                "actor": actor,
                "created_at": record.created_at,
                "undone_at": None,
                "undone_by": None,
            }
        )
        return record

    def root_of(self, profile_id: str) -> str:
        """The unified profile ``profile_id`` ends under once the plan is applied."""
        while profile_id in self._root:
            profile_id = self._root[profile_id]
        return profile_id

    def __len__(self) -> int:
        return len(self._rows)

    def apply(self) -> None:
        """Write every planned merge (then the plan is empty again)."""
        if not self._rows:
            return
        session, ws = self.session, self.workspace_id
        session.flush()  # ORM changes first: the statements below go around the ORM
        connection = session.connection()
        losers = list(self._root)
        _MOVE_MEMBERS.run(
            connection, [{"ws": ws, "old": pid, "root": self.root_of(pid)} for pid in losers]
        )
        _SET_PARENT.run(connection, [{"pid": pid, "parent": self._root[pid]} for pid in losers])
        _SET_SEEN.run(  # winners, including those merged away later in the plan
            connection,
            [
                {"pid": pid, "first": head.first_seen, "last": head.last_seen}
                for pid, head in self._heads.items()
                if head.seen_changed
            ],
        )
        _INSERT_MERGES.run(connection, self._rows)
        roots = sorted({self.root_of(pid) for pid in losers})
        rebuild_traits(session, ws, roots + losers)
        for held in list(session.identity_map.values()):  # stale after the statements above
            if isinstance(held, ProfileRow):
                session.expire(held)
        for head in self._heads.values():
            head.seen_changed = False
        for pid in losers:
            self._heads.pop(pid, None)
        self._root.clear()
        self._rows = []


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
