"""Deterministic identity resolution."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, Update, and_, bindparam, case, insert, or_, update
from sqlalchemy.orm import Session

from consentry.platform.db import Bulk, utcnow
from consentry.platform.vault import vault_of
from consentry.profiles.graph import (
    identifier_counts,
    identifier_counts_many,
    identifier_row,
    is_blocked,
    known_canonicals,
)
from consentry.profiles.merging import merge_canonicals
from consentry.profiles.models import (
    Identifier,
    merge_allowed,
)
from consentry.profiles.tables import (
    IdentifierRow,
    IdentityWarningRow,
    ProfileRow,
)

CapFn = Callable[[str], int]


@dataclass(slots=True)
class Resolution:
    """Where a message landed."""

    profile_id: str | None
    created: bool = False
    merges: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    warnings_recorded: bool = False
    absorbed: list[str] = field(default_factory=list)  # unified profiles merged away
    attached: list[Identifier] = field(default_factory=list)  # identifiers newly linked


@dataclass(frozen=True, slots=True)
class Sighting:
    """The identifiers one message carries, and when it happened."""

    identifiers: Sequence[Identifier]
    seen_at: datetime
    message_id: str | None = None


class _Batch:
    """Profiles and identifiers created by a batch, written in bulk when the batch needs it."""

    def __init__(self, workspace_id: str) -> None:
        self.workspace_id = workspace_id
        self.profiles: dict[str, dict[str, Any]] = {}
        self.identifiers: list[dict[str, Any]] = []
        self.seen: dict[str, tuple[datetime, datetime]] = {}  # existing profile -> first, last

    def new_profile(self, seen_at: datetime) -> str:
        profile_id = str(uuid.uuid4())
        self.profiles[profile_id] = {
            "id": profile_id,
            "workspace_id": self.workspace_id,
            "canonical_id": profile_id,
            "merged_into": None,
            "created_at": utcnow(),
            "first_seen": seen_at,
            "last_seen": seen_at,
        }
        return profile_id

    def add_identifier(self, profile_id: str, ident: Identifier, s: Sighting) -> None:
        self.identifiers.append(
            {
                "workspace_id": self.workspace_id,
                "profile_id": profile_id,
                "type": ident.type,
                "value": ident.value,
                "first_seen": s.seen_at,
                "source_message_id": s.message_id,
            }
        )

    def saw(self, profile_id: str, seen_at: datetime) -> None:
        first, last = self.seen.get(profile_id, (seen_at, seen_at))
        self.seen[profile_id] = (min(first, seen_at), max(last, seen_at))

    def write(self, session: Session) -> None:
        """Core executemany of the plain rows: no ORM bookkeeping on the hot path."""
        connection = session.connection()
        _INSERT_PROFILES.run(connection, list(self.profiles.values()))
        _INSERT_IDENTIFIERS.run(connection, _sealed(session, self.workspace_id, self.identifiers))
        self.profiles, self.identifiers = {}, []

    def write_seen(self, session: Session) -> None:
        """Widen first/last seen of existing profiles: one statement per profile, and only a
        row that changes is written."""
        rows = [{"pid": p, "first": f, "last": la} for p, (f, la) in self.seen.items()]
        _WIDEN_SEEN.run(session.connection(), rows)


def _sealed(
    session: Session, workspace_id: str, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Identifier rows as stored: the blind index to look up by, the value sealed."""
    vault = vault_of(session)
    looked_up = [
        identifier_row(vault, workspace_id, r["profile_id"], Identifier(r["type"], r["value"]))
        for r in rows
    ]
    tokens = vault.seal_many(workspace_id, [seal for _, seal in looked_up])
    for row, (index, _), token in zip(rows, looked_up, tokens, strict=True):
        row["value"], row["sealed"] = index, token
    return rows


_PROFILES = cast(Table, ProfileRow.__table__)
_IDENTIFIERS = cast(Table, IdentifierRow.__table__)
_INSERT_PROFILES = Bulk(insert(_PROFILES))
_INSERT_IDENTIFIERS = Bulk(insert(_IDENTIFIERS))


def _widen_seen() -> Update:
    table = _PROFILES
    first = bindparam("first", type_=table.c.first_seen.type)
    last = bindparam("last", type_=table.c.last_seen.type)
    later, earlier = table.c.last_seen < last, table.c.first_seen > first
    return (
        update(table)
        .where(and_(table.c.id == bindparam("pid"), or_(later, earlier)))
        .values(
            last_seen=case((later, last), else_=table.c.last_seen),
            first_seen=case((earlier, first), else_=table.c.first_seen),
        )
    )


_WIDEN_SEEN = Bulk(_widen_seen())


def _memo(cap: CapFn) -> CapFn:
    """``cap`` with its answers kept: caps do not change during a batch."""
    known: dict[str, int] = {}

    def cached(kind: str) -> int:
        found = known.get(kind)
        if found is None:
            found = known[kind] = cap(kind)
        return found

    return cached


def resolve_batch(
    *, session: Session, workspace_id: str, sightings: Sequence[Sighting], cap: CapFn
) -> list[Resolution]:
    """Resolve many messages in order, with one look-up for the whole batch.

    A message whose identifiers are new or name one profile is decided in memory (its counts of
    identifiers per type are loaded in one query for the batch and kept current) and written in
    bulk; only a message that joins several profiles takes the careful path of :func:`resolve`.
    """
    cap = _memo(cap)
    batch = _Batch(workspace_id)
    wanted = {i for s in sightings for i in s.identifiers}
    known = known_canonicals(session, workspace_id, wanted)
    counts = _Counts(session, workspace_id)
    counts.preload(set(known.values()))
    out: list[Resolution] = []
    for s in sightings:
        candidates = list(dict.fromkeys(known[i] for i in s.identifiers if i in known))
        if not s.identifiers:
            out.append(_unresolvable(session, workspace_id, s))
        elif len(candidates) <= 1:
            new = [i for i in s.identifiers if i not in known]
            out.append(_in_memory(batch, counts, known, candidates, new, s, cap))
        else:
            batch.write(session)
            res = resolve(
                session=session,
                workspace_id=workspace_id,
                identifiers=s.identifiers,
                seen_at=s.seen_at,
                cap=cap,
                message_id=s.message_id,
            )
            out.append(res)
            counts.forget([res.profile_id, *res.absorbed])
            _remap(known, res)
    batch.write(session)
    batch.write_seen(session)
    for res, s in zip(out, sightings, strict=True):
        if res.warnings and res.profile_id is not None and not res.warnings_recorded:
            for reason in res.warnings:
                _warn(session, workspace_id, res.profile_id, s.message_id, reason)
    return out


class _Counts:
    """Identifiers per type of each unified profile a batch touches, kept current in memory.

    Loaded from the store when first needed; everything the batch attached before a load was
    written by then (the careful path writes the batch first).
    """

    def __init__(self, session: Session, workspace_id: str) -> None:
        self._session = session
        self._workspace_id = workspace_id
        self._counts: dict[str, Counter[str]] = {}

    def preload(self, canonical_ids: set[str]) -> None:
        self._counts.update(
            identifier_counts_many(self._session, self._workspace_id, canonical_ids)
        )

    def of(self, canonical_id: str) -> Counter[str]:
        if canonical_id not in self._counts:
            self.preload({canonical_id})
        return self._counts[canonical_id]

    def created(self, canonical_id: str) -> None:
        self._counts[canonical_id] = Counter()

    def forget(self, canonical_ids: Sequence[str | None]) -> None:
        for canonical_id in canonical_ids:
            if canonical_id is not None:
                self._counts.pop(canonical_id, None)


def _remap(known: dict[Identifier, str], res: Resolution) -> None:
    """Keep the batch's look-up true after the careful path merged or attached; identifiers a
    cap refused stay unknown."""
    if res.profile_id is None:
        return
    gone = set(res.absorbed)
    for ident, canonical in known.items():
        if canonical in gone:
            known[ident] = res.profile_id
    for ident in res.attached:
        known[ident] = res.profile_id


def _unresolvable(session: Session, workspace_id: str, s: Sighting) -> Resolution:
    reason = "message carries no usable identifier"
    _warn(session, workspace_id, None, s.message_id, reason)
    return Resolution(profile_id=None, warnings=[reason], warnings_recorded=True)


def _in_memory(
    batch: _Batch,
    counts: _Counts,
    known: dict[Identifier, str],
    candidates: list[str],
    new: list[Identifier],
    s: Sighting,
    cap: CapFn,
) -> Resolution:
    created = not candidates
    if created:
        profile_id = batch.new_profile(s.seen_at)
        counts.created(profile_id)
    else:
        profile_id = candidates[0]
        _extend_seen(batch, profile_id, s.seen_at)
    have = counts.of(profile_id)
    result = Resolution(profile_id=profile_id, created=created)
    for ident in new:
        if have[ident.type] >= cap(ident.type):
            result.warnings.append(
                f"{ident.type} not linked: the profile already has {cap(ident.type)}"
            )
            continue
        have[ident.type] += 1
        known[ident] = profile_id
        batch.add_identifier(profile_id, ident, s)
    return result


def _extend_seen(batch: _Batch, profile_id: str, seen_at: datetime) -> None:
    row = batch.profiles.get(profile_id)
    if row is None:
        batch.saw(profile_id, seen_at)  # already written by an earlier slow path
        return
    row["first_seen"] = min(row["first_seen"], seen_at)
    row["last_seen"] = max(row["last_seen"], seen_at)


def resolve(
    *,
    session: Session,
    workspace_id: str,
    identifiers: Sequence[Identifier],
    seen_at: datetime,
    cap: CapFn,
    message_id: str | None = None,
) -> Resolution:
    """Find, create or merge the profile that ``identifiers`` name, and attach new identifiers."""
    if not identifiers:
        return Resolution(profile_id=None, warnings=["message carries no usable identifier"])
    known = known_canonicals(session, workspace_id, identifiers)
    candidates = list(dict.fromkeys(known[i] for i in identifiers if i in known))
    result = Resolution(profile_id=None)
    if not candidates:
        result.profile_id = _create_profile(session, workspace_id, seen_at)
        result.created = True
    else:
        result.profile_id = _merge_candidates(
            session, workspace_id, candidates, cap, message_id, result
        )
    new = [i for i in identifiers if i not in known]
    _attach(session, workspace_id, result.profile_id, new, cap, message_id, seen_at, result)
    _touch(session, result.profile_id, seen_at)
    for reason in result.warnings:
        _warn(session, workspace_id, result.profile_id, message_id, reason)
    result.warnings_recorded = True
    return result


def _create_profile(session: Session, workspace_id: str, seen_at: datetime) -> str:
    profile_id = str(uuid.uuid4())
    session.add(
        ProfileRow(
            id=profile_id,
            workspace_id=workspace_id,
            canonical_id=profile_id,
            created_at=utcnow(),
            first_seen=seen_at,
            last_seen=seen_at,
        )
    )
    session.flush()
    return profile_id


def _merge_candidates(
    session: Session,
    workspace_id: str,
    candidates: list[str],
    cap: CapFn,
    message_id: str | None,
    result: Resolution,
) -> str:
    root = candidates[0]
    for other in candidates[1:]:
        reason = _refusal(session, workspace_id, root, other, cap)
        if reason is not None:
            result.warnings.append(f"merge refused: {reason}")
            continue
        merge = merge_canonicals(
            session,
            workspace_id,
            root,
            other,
            "identifiers shared by one message",
            "identity-resolution",
            message_id,
        )
        result.merges.append(merge.id)
        result.absorbed.append(merge.loser_id)
        root = merge.winner_id
    return root


def _refusal(
    session: Session, workspace_id: str, first: str, second: str, cap: CapFn
) -> str | None:
    if is_blocked(session, workspace_id, first, second):
        return "the profiles were separated by an unmerge"
    return merge_allowed(
        identifier_counts(session, workspace_id, first),
        identifier_counts(session, workspace_id, second),
        cap,
    )


def _attach(
    session: Session,
    workspace_id: str,
    profile_id: str,
    identifiers: Iterable[Identifier],
    cap: CapFn,
    message_id: str | None,
    seen_at: datetime,
    result: Resolution,
) -> None:
    counts = identifier_counts(session, workspace_id, profile_id)
    for ident in identifiers:
        if counts.get(ident.type, 0) >= cap(ident.type):
            result.warnings.append(
                f"{ident.type} not linked: the profile already has {cap(ident.type)}"
            )
            continue
        counts[ident.type] = counts.get(ident.type, 0) + 1
        result.attached.append(ident)
        vault = vault_of(session)
        index, seal = identifier_row(vault, workspace_id, profile_id, ident)
        session.add(
            IdentifierRow(
                workspace_id=workspace_id,
                profile_id=profile_id,
                type=ident.type,
                value=index,
                sealed=vault.seal(workspace_id, *seal),
                first_seen=seen_at,
                source_message_id=message_id,
            )
        )
    session.flush()


def _touch(session: Session, profile_id: str, seen_at: datetime) -> None:
    row = session.get(ProfileRow, profile_id)
    if row is None:
        return
    if seen_at > row.last_seen:
        row.last_seen = seen_at
    if seen_at < row.first_seen:
        row.first_seen = seen_at


def _warn(
    session: Session, workspace_id: str, profile_id: str | None, message_id: str | None, reason: str
) -> None:
    session.add(
        IdentityWarningRow(
            workspace_id=workspace_id,
            profile_id=profile_id,
            source_message_id=message_id,
            reason=reason,
            created_at=utcnow(),
        )
    )
