"""Use cases of the profiles capability: resolve identities, keep traits, merge and unmerge.

Functions take a session and keyword-only arguments and never commit. Resolution is
deterministic: identifiers that are already known name their profiles; several profiles named by
one message are merged unless a cap or an earlier unmerge forbids it, in which case the event goes
to the profile of its strongest identifier and a warning is recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from consentry.errors import Conflict, Invalid, NotFound
from consentry.platform.db import utcnow
from consentry.profiles.models import (
    ANONYMOUS_ID,
    EMAIL,
    PHONE,
    USER_ID,
    Identifier,
    latest_traits,
    merge_allowed,
    normalize_email,
    normalize_id,
    normalize_phone,
)
from consentry.profiles.tables import (
    CurrentTraitRow,
    IdentifierRow,
    IdentityWarningRow,
    MergeBlockRow,
    MergeRow,
    ProfileRow,
    TraitHistoryRow,
)

CapFn = Callable[[str], int]


@dataclass(slots=True)
class Resolution:
    """Where a message landed."""

    profile_id: str | None
    created: bool = False
    merges: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


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


# --- look-ups -------------------------------------------------------------------------------


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


def member_ids(*, session: Session, workspace_id: str, canonical_id: str) -> list[str]:
    """Every profile id merged into ``canonical_id``, itself included."""
    return list(session.scalars(_members(workspace_id, canonical_id)))


def _members(workspace_id: str, canonical_id: str) -> Any:
    return select(ProfileRow.id).where(
        ProfileRow.workspace_id == workspace_id, ProfileRow.canonical_id == canonical_id
    )


def _known(
    session: Session, workspace_id: str, identifiers: Sequence[Identifier]
) -> dict[Identifier, str]:
    pairs = [(i.type, i.value) for i in identifiers]
    rows = session.execute(
        select(IdentifierRow.type, IdentifierRow.value, ProfileRow.canonical_id)
        .join(ProfileRow, ProfileRow.id == IdentifierRow.profile_id)
        .where(
            IdentifierRow.workspace_id == workspace_id,
            tuple_(IdentifierRow.type, IdentifierRow.value).in_(pairs),
        )
    )
    return {Identifier(t, v): c for t, v, c in rows}


def _counts(session: Session, workspace_id: str, canonical_id: str) -> dict[str, int]:
    rows = session.execute(
        select(IdentifierRow.type, func.count())
        .join(ProfileRow, ProfileRow.id == IdentifierRow.profile_id)
        .where(ProfileRow.workspace_id == workspace_id, ProfileRow.canonical_id == canonical_id)
        .group_by(IdentifierRow.type)
    )
    return {t: int(n) for t, n in rows}


def _between(a_members: Any, b_members: Any) -> Any:
    """Blocks with one side in each group."""
    return or_(
        and_(MergeBlockRow.profile_a.in_(a_members), MergeBlockRow.profile_b.in_(b_members)),
        and_(MergeBlockRow.profile_a.in_(b_members), MergeBlockRow.profile_b.in_(a_members)),
    )


def _blocked(session: Session, workspace_id: str, first: str, second: str) -> bool:
    a_members = _members(workspace_id, first)
    b_members = _members(workspace_id, second)
    hit = session.scalar(
        select(MergeBlockRow.id)
        .where(
            MergeBlockRow.workspace_id == workspace_id,
            _between(a_members, b_members),
        )
        .limit(1)
    )
    return hit is not None


# --- resolution -----------------------------------------------------------------------------


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
    known = _known(session, workspace_id, identifiers)
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
        merge = _merge(
            session,
            workspace_id,
            root,
            other,
            "identifiers shared by one message",
            "identity-resolution",
            message_id,
        )
        result.merges.append(merge.id)
        root = merge.winner_id
    return root


def _refusal(
    session: Session, workspace_id: str, first: str, second: str, cap: CapFn
) -> str | None:
    if _blocked(session, workspace_id, first, second):
        return "the profiles were separated by an unmerge"
    return merge_allowed(
        _counts(session, workspace_id, first), _counts(session, workspace_id, second), cap
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
    counts = _counts(session, workspace_id, profile_id)
    for ident in identifiers:
        if counts.get(ident.type, 0) >= cap(ident.type):
            result.warnings.append(
                f"{ident.type} not linked: the profile already has {cap(ident.type)}"
            )
            continue
        counts[ident.type] = counts.get(ident.type, 0) + 1
        session.add(
            IdentifierRow(
                workspace_id=workspace_id,
                profile_id=profile_id,
                type=ident.type,
                value=ident.value,
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


# --- merge and unmerge ----------------------------------------------------------------------


def _merge(
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
    _rebuild_traits(session, workspace_id, [winner.id, loser.id])
    return _merge_record(row)


def merge_profiles(
    *, session: Session, workspace_id: str, first: str, second: str, actor: str, cap: CapFn
) -> MergeRecord:
    """Merge two profiles by hand. An explicit merge may join profiles an unmerge separated."""
    a = canonical_of(session=session, workspace_id=workspace_id, profile_id=first)
    b = canonical_of(session=session, workspace_id=workspace_id, profile_id=second)
    if a == b:
        raise Conflict("the profiles are already one")
    reason = merge_allowed(
        _counts(session, workspace_id, a), _counts(session, workspace_id, b), cap
    )
    if reason is not None:
        raise Conflict(f"merge refused: {reason}")
    session.execute(
        delete(MergeBlockRow).where(
            MergeBlockRow.workspace_id == workspace_id,
            _between(_members(workspace_id, a), _members(workspace_id, b)),
        )
    )
    return _merge(session, workspace_id, a, b, "merged by hand", actor, None)


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
    _rebuild_traits(session, workspace_id, [old_root, loser.id])
    return _merge_record(row)


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


def _merge_record(row: MergeRow) -> MergeRecord:
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


# --- traits ---------------------------------------------------------------------------------


def record_traits(
    *,
    session: Session,
    workspace_id: str,
    profile_id: str,
    traits: Mapping[str, Any],
    observed_at: datetime,
    message_id: str | None = None,
) -> None:
    """Append traits to the history; a value becomes current unless a later one is known."""
    if not traits:
        return
    keys = [str(k)[:200] for k in traits]
    session.add_all(
        TraitHistoryRow(
            workspace_id=workspace_id,
            profile_id=profile_id,
            key=key,
            value=value,
            observed_at=observed_at,
            source_message_id=message_id,
        )
        for key, value in zip(keys, traits.values(), strict=True)
    )
    current = {
        row.key: row
        for row in session.scalars(
            select(CurrentTraitRow).where(
                CurrentTraitRow.canonical_id == profile_id, CurrentTraitRow.key.in_(keys)
            )
        )
    }
    for key, value in zip(keys, traits.values(), strict=True):
        row = current.get(key)
        if row is None:
            session.add(
                CurrentTraitRow(
                    canonical_id=profile_id,
                    key=key,
                    workspace_id=workspace_id,
                    value=value,
                    observed_at=observed_at,
                )
            )
        elif observed_at >= row.observed_at:
            row.value, row.observed_at = value, observed_at
    session.flush()


def _rebuild_traits(session: Session, workspace_id: str, canonical_ids: Iterable[str]) -> None:
    ids = list(dict.fromkeys(canonical_ids))
    session.execute(delete(CurrentTraitRow).where(CurrentTraitRow.canonical_id.in_(ids)))
    for canonical_id in ids:
        history = session.execute(
            select(
                TraitHistoryRow.key,
                TraitHistoryRow.value,
                TraitHistoryRow.observed_at,
                TraitHistoryRow.id,
            ).where(TraitHistoryRow.profile_id.in_(_members(workspace_id, canonical_id)))
        )
        for key, (value, observed_at) in latest_traits(history.tuples()).items():
            session.add(
                CurrentTraitRow(
                    canonical_id=canonical_id,
                    key=key,
                    workspace_id=workspace_id,
                    value=value,
                    observed_at=observed_at,
                )
            )
    session.flush()


def trait_history(
    *, session: Session, workspace_id: str, profile_id: str, key: str | None = None
) -> list[dict[str, Any]]:
    """Every observed value of a unified profile's traits, newest first."""
    canonical = canonical_of(session=session, workspace_id=workspace_id, profile_id=profile_id)
    query = select(TraitHistoryRow).where(
        TraitHistoryRow.profile_id.in_(_members(workspace_id, canonical))
    )
    if key is not None:
        query = query.where(TraitHistoryRow.key == key)
    rows = session.scalars(query.order_by(TraitHistoryRow.observed_at.desc(), TraitHistoryRow.id))
    return [
        {
            "key": r.key,
            "value": r.value,
            "observed_at": r.observed_at,
            "message_id": r.source_message_id,
        }
        for r in rows
    ]


# --- reading --------------------------------------------------------------------------------


def get_profile(*, session: Session, workspace_id: str, profile_id: str) -> ProfileView:
    """The unified profile that ``profile_id`` belongs to."""
    canonical = canonical_of(session=session, workspace_id=workspace_id, profile_id=profile_id)
    root = session.get(ProfileRow, canonical)
    assert root is not None
    members = member_ids(session=session, workspace_id=workspace_id, canonical_id=canonical)
    traits = {
        row.key: row.value
        for row in session.scalars(
            select(CurrentTraitRow)
            .where(CurrentTraitRow.canonical_id == canonical)
            .order_by(CurrentTraitRow.key)
        )
    }
    identifiers = [
        {"type": r.type, "value": r.value, "profile_id": r.profile_id, "first_seen": r.first_seen}
        for r in session.scalars(
            select(IdentifierRow)
            .where(IdentifierRow.profile_id.in_(members))
            .order_by(IdentifierRow.type, IdentifierRow.first_seen)
        )
    ]
    merges = [
        _merge_record(r)
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
                raise Invalid(f"{kind} is not a usable identifier")
            wanted.append(Identifier(kind, value))
    if phone is not None:
        value = normalize_phone(phone, default_region)
        if value is None:
            raise Invalid("phone is not a valid phone number")
        wanted.append(Identifier(PHONE, value))
    if not wanted:
        raise Invalid("give at least one of email, phone, user_id, anonymous_id")
    return list(dict.fromkeys(_known(session, workspace_id, wanted).values()))


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
            .where(IdentityWarningRow.profile_id.in_(_members(workspace_id, canonical)))
            .order_by(IdentityWarningRow.id)
        )
    )
