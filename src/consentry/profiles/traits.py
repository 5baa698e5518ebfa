"""Traits: an append-only history per profile and the current value per unified profile.

The latest observation by event time wins; the history keeps every value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from consentry.platform.db import Bulk, utcnow
from consentry.platform.vault import is_token, vault_of
from consentry.profiles.graph import canonical_of, members_query
from consentry.profiles.models import latest_traits, trait_field
from consentry.profiles.personal import personal_in
from consentry.profiles.tables import (
    CurrentTraitRow,
    ProfileRow,
    TraitHistoryRow,
)


@dataclass(frozen=True, slots=True)
class TraitObservation:
    """Traits a message said a profile has, at the message's time.

    ``profile_id`` is the profile the message resolved to (the history is kept there, so an
    unmerge can give each side its own); ``canonical_id`` is the unified profile it belongs to
    now (the current value is kept there).
    """

    profile_id: str
    canonical_id: str
    traits: Mapping[str, Any]
    observed_at: datetime
    message_id: str | None = None


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
    traits = seal_traits(session, workspace_id, profile_id, traits)
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


def record_traits_batch(
    *, session: Session, workspace_id: str, observations: Sequence[TraitObservation]
) -> None:
    """Record the traits of many identify calls at once, in order.

    Core statements on plain rows: the history is appended with one executemany; the current
    values of the profiles concerned are read once (key and time only), decided in memory in
    message order, then new ones are inserted and replaced ones updated, each in one
    executemany.
    """
    observations = [
        replace(o, traits=seal_traits(session, workspace_id, o.profile_id, o.traits))
        for o in observations
        if o.traits
    ]
    if not observations:
        return
    connection = session.connection()
    _INSERT_HISTORY.run(
        connection,
        [
            {
                "workspace_id": workspace_id,
                "profile_id": o.profile_id,
                "key": str(k)[:200],
                "value": v,
                "observed_at": o.observed_at,
                "source_message_id": o.message_id,
            }
            for o in observations
            for k, v in o.traits.items()
        ],
    )
    profile_ids = sorted({o.canonical_id for o in observations})
    stored: dict[tuple[str, str], datetime] = {}
    for start in range(0, len(profile_ids), 500):
        stored.update(
            ((canonical_id, key), observed_at)
            for canonical_id, key, observed_at in connection.execute(
                select(_CURRENT.c.canonical_id, _CURRENT.c.key, _CURRENT.c.observed_at).where(
                    _CURRENT.c.canonical_id.in_(profile_ids[start : start + 500])
                )
            )
        )
    latest: dict[tuple[str, str], tuple[Any, datetime]] = {}  # what this batch makes current
    for o in observations:
        for raw_key, value in o.traits.items():
            slot = (o.canonical_id, str(raw_key)[:200])
            known = latest.get(slot)
            since = known[1] if known is not None else stored.get(slot)
            if since is None or o.observed_at >= since:
                latest[slot] = (value, o.observed_at)
    new = [
        {
            "canonical_id": canonical_id,
            "key": key,
            "workspace_id": workspace_id,
            "value": value,
            "observed_at": observed_at,
        }
        for (canonical_id, key), (value, observed_at) in latest.items()
        if (canonical_id, key) not in stored
    ]
    replaced = [
        {"cid": canonical_id, "k": key, "v": value, "at": observed_at}
        for (canonical_id, key), (value, observed_at) in latest.items()
        if (canonical_id, key) in stored
    ]
    _INSERT_CURRENT.run(connection, new)
    _REPLACE_CURRENT.run(connection, replaced)


def seal_traits(
    session: Session, workspace_id: str, profile_id: str, traits: Mapping[str, Any]
) -> dict[str, Any]:
    """The stored form of traits: a personal trait's value (by name, or marked personal by the
    workspace: :mod:`consentry.profiles.personal`) sealed under the profile's key (field
    ``trait:<key>``), any other as it is."""
    is_personal = personal_in(session, workspace_id)
    personal = [
        (profile_id, trait_field(k), v)
        for k, v in traits.items()
        if v is not None and is_personal(str(k))
    ]
    if not personal:
        return dict(traits)
    tokens = iter(vault_of(session).seal_many(workspace_id, personal))
    return {
        k: next(tokens) if v is not None and is_personal(str(k)) else v for k, v in traits.items()
    }


def open_traits(session: Session, workspace_id: str, traits: Mapping[str, Any]) -> dict[str, Any]:
    """Traits as stored, with their sealed values opened (None where the subject was erased)."""
    if not any(is_token(v) for v in traits.values()):
        return dict(traits)
    opened = vault_of(session).open_many(
        workspace_id, [(trait_field(k), v) for k, v in traits.items()]
    )
    return dict(zip(traits, opened, strict=True))


_HISTORY = cast(Table, TraitHistoryRow.__table__)
_CURRENT = cast(Table, CurrentTraitRow.__table__)
_P = cast(Table, ProfileRow.__table__)
_INSERT_HISTORY = Bulk(insert(_HISTORY))
_INSERT_CURRENT = Bulk(insert(_CURRENT))
_REPLACE_CURRENT = Bulk(
    update(_CURRENT)
    .where(_CURRENT.c.canonical_id == bindparam("cid"), _CURRENT.c.key == bindparam("k"))
    .values(value=bindparam("v"), observed_at=bindparam("at"))
)


def rebuild_traits(session: Session, workspace_id: str, canonical_ids: Iterable[str]) -> None:
    """Recompute the current traits of unified profiles from their members' history (a
    profile no longer unified, merged away, is left with none): one read per 500 profiles."""
    ids = list(dict.fromkeys(canonical_ids))
    session.flush()
    connection = session.connection()
    rows: list[dict[str, Any]] = []
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        connection.execute(delete(_CURRENT).where(_CURRENT.c.canonical_id.in_(part)))
        history: dict[str, list[tuple[str, Any, Any, int]]] = {}
        for canonical_id, key, value, observed_at, seq in connection.execute(
            select(_P.c.canonical_id, _HISTORY.c.key, _HISTORY.c.value, _HISTORY.c.observed_at)
            .add_columns(_HISTORY.c.id)
            .join_from(_HISTORY, _P, _P.c.id == _HISTORY.c.profile_id)
            .where(_P.c.workspace_id == workspace_id, _P.c.canonical_id.in_(part))
        ):
            history.setdefault(canonical_id, []).append((key, value, observed_at, seq))
        rows.extend(
            {
                "canonical_id": canonical_id,
                "key": key,
                "workspace_id": workspace_id,
                "value": value,
                "observed_at": observed_at,
            }
            for canonical_id, observed in history.items()
            for key, (value, observed_at) in latest_traits(observed).items()
        )
    _INSERT_CURRENT.run(connection, rows)
    for held in list(session.identity_map.values()):  # stale after the statements above
        if isinstance(held, CurrentTraitRow):
            session.expire(held)


def trait_history(
    *, session: Session, workspace_id: str, profile_id: str, key: str | None = None
) -> list[dict[str, Any]]:
    """Every observed value of a unified profile's traits, newest first."""
    canonical = canonical_of(session=session, workspace_id=workspace_id, profile_id=profile_id)
    query = select(TraitHistoryRow).where(
        TraitHistoryRow.profile_id.in_(members_query(workspace_id, canonical))
    )
    if key is not None:
        query = query.where(TraitHistoryRow.key == key)
    rows = list(
        session.scalars(query.order_by(TraitHistoryRow.observed_at.desc(), TraitHistoryRow.id))
    )
    values = vault_of(session).open_many(
        workspace_id, [(trait_field(r.key), r.value) for r in rows]
    )
    return [
        {
            "key": r.key,
            "value": value,
            "observed_at": r.observed_at,
            "message_id": r.source_message_id,
        }
        for r, value in zip(rows, values, strict=True)
    ]


def rectify_traits(
    *,
    session: Session,
    workspace_id: str,
    canonical_id: str,
    member_ids: Sequence[str],
    traits: Mapping[str, Any],
    purge_history: bool,
    source: str,
) -> int:
    """Correct traits of a unified profile (GDPR Art. 16): each value becomes current, later
    than anything known, and is kept in the history like any other; with ``purge_history``,
    the earlier values of those keys are deleted from every member's history first. Returns
    how many earlier history rows were deleted."""
    keys = [str(k)[:200] for k in traits]
    purged = 0
    if purge_history:
        result = session.execute(
            delete(TraitHistoryRow).where(
                TraitHistoryRow.workspace_id == workspace_id,
                TraitHistoryRow.profile_id.in_(list(member_ids)),
                TraitHistoryRow.key.in_(keys),
            )
        )
        purged = int(getattr(result, "rowcount", 0) or 0)
    latest = session.scalar(
        select(func.max(CurrentTraitRow.observed_at)).where(
            CurrentTraitRow.canonical_id == canonical_id, CurrentTraitRow.key.in_(keys)
        )
    )
    now = utcnow()
    at = max(now, latest + timedelta(microseconds=1)) if latest is not None else now
    record_traits(
        session=session,
        workspace_id=workspace_id,
        profile_id=canonical_id,
        traits=dict(zip(keys, traits.values(), strict=True)),
        observed_at=at,
        message_id=source[:128],
    )
    return purged
