"""Set-based reads of many unified profiles at once, for audiences and policy decisions.

Small sets are read through chunked ``IN`` lists on the indexed keys; past ``SCAN_ABOVE`` ids a
single scan of the workspace is cheaper than thousands of round trips, so the whole workspace is
read and filtered in memory.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.platform.vault import vault_of
from consentry.profiles.models import is_personal_trait
from consentry.profiles.tables import CurrentTraitRow, ProfileRow
from consentry.profiles.traits import trait_field

CHUNK = 500
SCAN_ABOVE = 20_000
FETCH = 20_000  # rows fetched at a time by a scan (row by row costs more than the database)


def canonical_map_many(
    *, session: Session, workspace_id: str, profile_ids: Collection[str]
) -> dict[str, str]:
    """The unified profile of each given id (unknown ids are left out), for any number of ids."""
    if len(profile_ids) <= SCAN_ABOVE:
        ids = sorted(set(profile_ids))
        out: dict[str, str] = {}
        for start in range(0, len(ids), CHUNK):
            rows = session.execute(
                select(ProfileRow.id, ProfileRow.canonical_id).where(
                    ProfileRow.workspace_id == workspace_id,
                    ProfileRow.id.in_(ids[start : start + CHUNK]),
                )
            )
            out.update((pid, canonical) for pid, canonical in rows)
        return out
    wanted = set(profile_ids)
    every = session.connection().execute(  # Core rows: no ORM bookkeeping for a million rows
        select(ProfileRow.id, ProfileRow.canonical_id).where(
            ProfileRow.workspace_id == workspace_id
        )
    )
    out = {}
    for part in every.partitions(FETCH):
        out.update((pid, canonical) for pid, canonical in part if pid in wanted)
    return out


def current_traits_many(
    *,
    session: Session,
    workspace_id: str,
    canonical_ids: Sequence[str],
    keys: Collection[str],
) -> dict[str, dict[str, Any]]:
    """The current values of ``keys`` for each unified profile that has any of them (personal
    traits opened)."""
    out = _current_traits_stored(
        session=session, workspace_id=workspace_id, canonical_ids=canonical_ids, keys=keys
    )
    if any(is_personal_trait(k) for k in keys):  # one pass over every sealed value
        slots = [(traits, key) for traits in out.values() for key in traits]
        opened = vault_of(session).open_many(
            workspace_id, [(trait_field(key), traits[key]) for traits, key in slots]
        )
        for (traits, key), value in zip(slots, opened, strict=True):
            traits[key] = value
    return out


def _current_traits_stored(
    *,
    session: Session,
    workspace_id: str,
    canonical_ids: Sequence[str],
    keys: Collection[str],
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    t = CurrentTraitRow
    if len(canonical_ids) <= SCAN_ABOVE:
        # By primary key (canonical_id, key); the workspace is checked on each row, as a
        # predicate on it would steer SQLite to the workspace index and a scan.
        ids = sorted(set(canonical_ids))
        for start in range(0, len(ids), CHUNK):
            rows = session.execute(
                select(t.workspace_id, t.canonical_id, t.key, t.value).where(
                    t.canonical_id.in_(ids[start : start + CHUNK]), t.key.in_(sorted(keys))
                )
            )
            for workspace, canonical, key, value in rows:
                if workspace == workspace_id:
                    out.setdefault(canonical, {})[key] = value
        return out
    wanted = set(canonical_ids)
    every = session.connection().execute(
        select(t.canonical_id, t.key, t.value).where(
            t.workspace_id == workspace_id, t.key.in_(sorted(keys))
        )
    )
    for part in every.partitions(FETCH):
        for canonical, key, value in part:
            if canonical in wanted:
                found = out.get(canonical)
                if found is None:
                    out[canonical] = {key: value}
                else:
                    found[key] = value
    return out
