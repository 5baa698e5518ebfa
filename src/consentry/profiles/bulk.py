"""Set-based reads of many unified profiles at once, for audiences and policy decisions.

Small sets are read through chunked ``IN`` lists on the indexed keys; past ``SCAN_ABOVE`` ids a
single scan of the workspace is cheaper than thousands of round trips, so the whole workspace is
read and filtered in memory.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, Text, func, or_, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from consentry.platform.columnar import raw_batches
from consentry.platform.jsoncodec import json_loads
from consentry.platform.vault import vault_of
from consentry.profiles.models import trait_field
from consentry.profiles.personal import personal_in
from consentry.profiles.tables import CurrentTraitRow, ProfileRow

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
    is_personal = personal_in(session, workspace_id)
    if any(is_personal(k) for k in keys):  # one pass over every sealed value
        slots = [(traits, key) for traits in out.values() for key in traits]
        opened = open_trait_values(
            session, workspace_id, [(key, traits[key]) for traits, key in slots]
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


def lapsed_between(
    *, session: Session, workspace_id: str, since: datetime, until: datetime
) -> list[str]:
    """Unified profiles whose latest sighting (of any member) falls in ``[since, until)``:
    people whose inactivity crossed a threshold in a window (journeys' inactivity trigger
    moves the window on from scan to scan, so each lapse is seen once)."""
    latest = func.max(ProfileRow.last_seen)
    rows = session.execute(
        select(ProfileRow.canonical_id)
        .where(ProfileRow.workspace_id == workspace_id)
        .group_by(ProfileRow.canonical_id)
        .having(latest >= since, latest < until)
        .order_by(ProfileRow.canonical_id)
    )
    return [canonical for (canonical,) in rows]


def trait_holders(
    *, session: Session, workspace_id: str, key: str, batch: int = FETCH
) -> Iterator[list[tuple[str, Any]]]:
    """``(unified profile id, current value)`` of every unified profile that has the trait
    ``key``, ``batch`` at a time, sealed values opened (``None`` where the key was destroyed):
    a scan over one trait, such as journeys' birthday trigger."""
    t = CurrentTraitRow
    rows = session.connection().execute(
        select(t.canonical_id, t.value).where(t.workspace_id == workspace_id, t.key == key)
    )
    vault = vault_of(session)
    field = trait_field(key)
    for part in rows.partitions(batch):
        opened = vault.open_many(workspace_id, [(field, value) for _, value in part])
        yield [(canonical, value) for (canonical, _), value in zip(part, opened, strict=True)]


# --- audiences: selectables the segment compiler builds on ---------------------------------------


def unified_select(workspace_id: str) -> Select[str]:
    """The id of every unified profile of the workspace (a profile that is its own canonical;
    an erased person has no row left), as a selectable to filter further."""
    return select(ProfileRow.id).where(
        ProfileRow.workspace_id == workspace_id, ProfileRow.id == ProfileRow.canonical_id
    )


def membership_select(workspace_id: str) -> Select[str, str]:
    """``(member id, canonical id)`` of every profile of the workspace: events and orders keep
    their member profile, and are joined through this to the unified profile.

    The workspace predicate is written so no index can serve it (``workspace_id || ''``):
    otherwise SQLite drives a join from the workspace's profiles and looks events up one
    profile at a time; this way it reads the events a rule names (by their index) and finds
    each one's profile by primary key (bench/activation.py: 10.8 s -> 4.5 s on 1M profiles
    and 10M events, the same members)."""
    return select(
        ProfileRow.id.label("member_id"), ProfileRow.canonical_id.label("canonical_id")
    ).where(ProfileRow.workspace_id.concat("") == workspace_id)


def trait_select(workspace_id: str, key: str) -> Select[str, Any]:
    """``(canonical id, value)`` of the current trait ``key`` of every unified profile that
    has it, the value as stored (JSON; a personal trait's value is a sealed token)."""
    t = CurrentTraitRow
    return select(t.canonical_id.label("canonical_id"), t.value.label("value")).where(
        t.workspace_id == workspace_id, t.key == key
    )


def members_many(
    *, session: Session, workspace_id: str, canonical_ids: Sequence[str]
) -> dict[str, list[str]]:
    """Every member profile of each unified profile (itself included), for a batch of unified
    profile ids, through chunked ``IN`` lists on the covering index; ids that are no unified
    profile of the workspace are left out."""
    ids = sorted(set(canonical_ids))
    out: dict[str, list[str]] = {}
    for start in range(0, len(ids), CHUNK):
        rows = session.connection().execute(
            select(ProfileRow.canonical_id, ProfileRow.id).where(
                ProfileRow.workspace_id == workspace_id,
                ProfileRow.canonical_id.in_(ids[start : start + CHUNK]),
            )
        )
        for canonical, member in rows:
            found = out.get(canonical)
            if found is None:
                out[canonical] = [member]
            else:
                found.append(member)
    return out


def people_of(
    *, session: Session, workspace_id: str, profile_ids: Iterable[str]
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Who these profile ids are now: each id -> its unified profile (unknown and erased ids
    left out), and each of those unified profiles -> every member profile id (itself
    included). Ids that are unified profiles cost one look-up per chunk; ids merged away
    since are followed to the profile they were merged into."""
    ids = sorted(set(profile_ids))
    members = members_many(session=session, workspace_id=workspace_id, canonical_ids=ids)
    owner = {member: person for person, found in members.items() for member in found}
    stale = [pid for pid in ids if pid not in owner]
    if stale:
        moved = canonical_map_many(session=session, workspace_id=workspace_id, profile_ids=stale)
        more = members_many(
            session=session,
            workspace_id=workspace_id,
            canonical_ids=sorted(set(moved.values()) - set(members)),
        )
        members.update(more)
        owner.update({member: person for person, found in more.items() for member in found})
        owner.update(moved)
    return owner, members


# --- whole-workspace reads for decisions over audiences of any size ------------------------------

UNIFIED_PAGE = 250_000  # unified ids per page of :func:`unified_index`
_SEPARATOR = "\x1f"  # joins ids in one text value (ids are UUIDs: never in them)


def unified_index(*, session: Session, workspace_id: str) -> tuple[set[str], dict[str, str]]:
    """Every unified profile id of the workspace, and the unified profile of every other profile
    (a merged member), for deciding over audiences too large for ``IN`` lists. The store joins
    the unified ids into one text value (one Python object instead of one row per id): SQLite
    a page at a time along the covering index on ``(workspace_id, canonical_id, id)``
    (``group_concat``); PostgreSQL in one ``string_agg`` over the workspace, as its planner
    sorts each page of an ordered read instead of following the index (a text value holds up
    to 1 GB: about 27 million ids)."""
    unified = _unified_ids(session, workspace_id)
    members: dict[str, str] = {}
    for part in raw_batches(
        session,
        select(ProfileRow.id, ProfileRow.canonical_id).where(
            ProfileRow.workspace_id == workspace_id, ProfileRow.id != ProfileRow.canonical_id
        ),
    ):
        members.update(part)
    return unified, members


def _unified_ids(session: Session, workspace_id: str) -> set[str]:
    is_unified = ProfileRow.id == ProfileRow.canonical_id
    if session.get_bind().dialect.name == "postgresql":
        every = select(func.string_agg(ProfileRow.id, _SEPARATOR)).where(
            ProfileRow.workspace_id == workspace_id, is_unified
        )
        text = session.execute(every).scalar()
        return set(text.split(_SEPARATOR)) if text else set()
    unified: set[str] = set()
    after = ""
    while True:
        page = (
            select(ProfileRow.canonical_id.label("id"))
            .where(
                ProfileRow.workspace_id == workspace_id,
                is_unified,
                ProfileRow.canonical_id > after,
            )
            .order_by(ProfileRow.canonical_id)
            .limit(UNIFIED_PAGE)
            .subquery()
        )
        text = session.execute(select(func.group_concat(page.c.id, _SEPARATOR))).scalar()
        if not text:
            return unified
        ids = text.split(_SEPARATOR)
        unified.update(ids)
        if len(ids) < UNIFIED_PAGE:
            return unified
        after = max(ids)


def trait_values(*, session: Session, workspace_id: str, key: str) -> dict[Any, Any]:
    """Each distinct current value of trait ``key`` in the workspace: its stored form (an opaque
    code, as :func:`trait_code_holders` takes it) -> the value (personal values opened, ``None``
    where the key was destroyed). One pass the store makes alone (``DISTINCT``); a value
    shared by a million profiles is decoded once."""
    t = CurrentTraitRow
    stored = sql_cast(t.value, Text)
    statement = select(stored).where(t.workspace_id == workspace_id, t.key == key).distinct()
    codes = [code for part in raw_batches(session, statement) for (code,) in part]
    decoded = [(key, None if code is None else json_loads(code)) for code in codes]
    return dict(zip(codes, open_trait_values(session, workspace_id, decoded), strict=True))


HOLDERS_IN_LIST = 1000  # codes asked for in the statement; beyond, every holder is read


def trait_code_holders(
    *, session: Session, workspace_id: str, key: str, codes: Collection[Any]
) -> dict[str, Any]:
    """The unified profiles whose trait ``key`` has one of these stored forms (codes of
    :func:`trait_values`), each with its code: only the rows asked for cross into Python."""
    t = CurrentTraitRow
    stored = sql_cast(t.value, Text)
    statement = select(t.canonical_id, stored).where(t.workspace_id == workspace_id, t.key == key)
    wanted = set(codes)
    out: dict[str, Any] = {}
    if len(wanted) <= HOLDERS_IN_LIST:
        asked = sorted(c for c in wanted if c is not None)
        conditions = [stored.in_(asked)] if asked else []
        if None in wanted:
            conditions.append(t.value.is_(None))
        if not conditions:
            return out
        for part in raw_batches(session, statement.where(or_(*conditions))):
            out.update(part)
        return out
    for part in raw_batches(session, statement):
        out.update((canonical, code) for canonical, code in part if code in wanted)
    return out


def person_select(
    workspace_id: str | ColumnElement[str], profile_id: str | ColumnElement[str]
) -> Select[str, str]:
    """``(member id, canonical id)`` of every member of the unified profile ``profile_id``
    belongs to (none when it is no profile of the workspace): one indexed look-up, as a
    selectable that a single-subject query can join (consent.policy reads a person's consent
    in one round trip). Either argument may be a bound parameter, so that the statement is
    built once and executed many times."""
    person = (
        select(ProfileRow.canonical_id)
        .where(ProfileRow.workspace_id == workspace_id, ProfileRow.id == profile_id)
        .scalar_subquery()
    )
    return select(
        ProfileRow.id.label("member_id"), ProfileRow.canonical_id.label("canonical_id")
    ).where(ProfileRow.workspace_id == workspace_id, ProfileRow.canonical_id == person)


def person_traits_select(
    workspace_id: str | ColumnElement[str],
    canonical_id: str | ColumnElement[str],
    keys: Collection[str],
) -> Select[str, Any]:
    """``(key, value)`` of the current traits ``keys`` of one unified profile (values as stored:
    a personal trait's value is a sealed token, see :func:`open_trait_values`). Read by the
    primary key; the workspace predicate is kept off the indexes (``workspace_id || ''``),
    as SQLite would otherwise scan the workspace's index on ``(workspace_id, key)``."""
    t = CurrentTraitRow
    return select(t.key.label("key"), t.value.label("value")).where(
        t.canonical_id == canonical_id,
        t.key.in_(sorted(keys)),
        t.workspace_id.concat("") == workspace_id,
    )


def open_trait_values(
    session: Session, workspace_id: str, items: Sequence[tuple[str, Any]]
) -> list[Any]:
    """The values of ``(key, stored value)`` pairs (read through :func:`person_traits_select`,
    say): sealed ones opened (``None`` where the key was destroyed), the others as they are."""
    return vault_of(session).open_many(
        workspace_id, [(trait_field(key), value) for key, value in items]
    )
