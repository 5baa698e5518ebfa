"""Use cases of ingestion: store a validated batch once, then apply it to profiles and commerce.

Ingestion over HTTP has three steps. :func:`seal_stages` and :func:`stage` write each request
as one row of the spool (``ingest.spool``), its new messages sealed as one value under a key of
its own: that is all a client waits for, and once that commits the messages are durable.
:func:`expand_stages` then writes the messages of the oldest stages as events (one row per
``messageId``, through :func:`store`); once that commits the stages are deleted and their keys
discarded. And
:func:`process_pending` applies stored events in id order (identity resolution, traits,
e-commerce) and moves the workspace's cursor in the same transaction, so every event is applied
exactly once, also after a crash. :func:`ingest` stores and applies in one unit of work, for
imports and the demo. Writers of one workspace are serialised, so ids commit in order.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from consentry.commerce import service as commerce
from consentry.config import IdentitySettings
from consentry.consent import service as consent
from consentry.ingest.models import Envelope, returns_explicitly
from consentry.ingest.spool import Spool, spool_of
from consentry.ingest.tables import EventRow, IngestCursorRow
from consentry.platform.crypto import CryptoError
from consentry.platform.db import Bulk, after_commit, lock_workspace, utcnow
from consentry.platform.keystore import ShreddedKey
from consentry.platform.vault import Vault, is_token, token_subject, vault_of
from consentry.profiles import service as profiles
from consentry.profiles.models import (
    ANONYMOUS_ID,
    USER_ID,
    Identifier,
    extract_identifiers,
    normalize_id,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class IngestResult:
    """What happened to a batch."""

    accepted: int = 0
    duplicates: int = 0
    suppressed: int = 0  # messages of an erased person, dropped (see profiles.erasure)
    processed: int = 0
    profiles_created: int = 0
    merges: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class EventView:
    id: int
    message_id: str
    type: str
    event: str | None
    profile_id: str | None
    timestamp: datetime
    received_at: datetime
    payload: dict[str, Any]


def store(
    *,
    session: Session,
    workspace_id: str,
    envelopes: Sequence[Envelope],
) -> IngestResult:
    """Write each message that is new as an event; a retried ``messageId`` is stored once, and
    a message of an erased person is screened (see :func:`_screen`)."""
    lock_workspace(session, workspace_id)
    fresh = _new_messages(session, workspace_id, envelopes)
    result = IngestResult(duplicates=len(envelopes) - len(fresh))
    if not fresh:
        return result
    rows = _rows(session, vault_of(session), workspace_id, fresh)
    _INSERT_EVENTS.run(session.connection(), rows)  # Core executemany: no ORM bookkeeping
    result.accepted = len(rows)
    result.suppressed = len(fresh) - len(rows)
    return result


# --- stages: a request acknowledged as one row --------------------------------------------------

STAGE = "ingest.stage"  # the field a stage's sealed messages are bound to
STAGE_SUBJECT = "st-"  # the key-store subjects of stages: "st-" and a random hex id


@dataclass(frozen=True, slots=True)
class Staged:
    """A request made ready to acknowledge (:func:`seal_stages`): what its answer says, and its
    stage row (None when every message of it is stored already)."""

    result: IngestResult
    row: dict[str, Any] | None


class StageKeys:
    """Data keys for stages, made ahead: ``batch`` of a workspace in one commit of the key
    store, so that acknowledging a request seldom waits for one (it cost a fifth of the
    server's time). A key is handed out only while it is younger than ``max_age``, far below
    :data:`SPENT_AFTER`: :func:`discard_spent_stage_keys` discards keys that old with no stage,
    and must never take one that a stage is being sealed under. The keys of an older batch
    are left to it. One per writer."""

    def __init__(self, batch: int = 256, max_age: float = 900.0) -> None:
        self._batch = batch
        self._max_age = max_age
        self._ready: dict[str, tuple[float, list[str]]] = {}

    def take(self, vault: Vault, workspace_id: str) -> str:
        """The subject of a stage key of the workspace that exists in the key store."""
        made_at, ready = self._ready.get(workspace_id, (0.0, []))
        if not ready or time.monotonic() - made_at > self._max_age:
            made_at = time.monotonic()
            made = [STAGE_SUBJECT + uuid.uuid4().hex for _ in range(self._batch)]
            vault.keystore.data_keys(workspace_id, made, create=True)
            ready = made[::-1]
            self._ready[workspace_id] = (made_at, ready)
        return ready.pop()


def seal_stages(
    *, session: Session, batches: Sequence[tuple[str, Sequence[Envelope]]], keys: StageKeys
) -> list[Staged]:
    """Each batch as the stage row that acknowledges it: its distinct messages whose
    ``messageId`` is not stored yet, sealed as one value under a data key of the stage's own,
    made ahead (``keys``). ``session`` may be a read. A retry of a message that is itself still
    staged is not seen here: it is dropped as a duplicate when its stage is expanded."""
    vault = vault_of(session)
    now = utcnow()
    out = []
    for workspace_id, envelopes in batches:
        fresh = _new_messages(session, workspace_id, envelopes)
        result = IngestResult(accepted=len(fresh), duplicates=len(envelopes) - len(fresh))
        row = None
        if fresh:
            subject = keys.take(vault, workspace_id)
            row = {
                "workspace_id": workspace_id,
                "messages": len(fresh),
                "received_at": now,
                "body": vault.seal(workspace_id, subject, STAGE, _pack(fresh)),
            }
        out.append(Staged(result, row))
    return out


def stage(*, spool: Spool, staged: Sequence[Staged]) -> None:
    """Write the stage rows of sealed requests to the spool (one durable commit)."""
    spool.write([s.row for s in staged if s.row is not None])


@dataclass(slots=True)
class Expansion:
    """What :func:`expand_stages` did: stages and messages expanded, and how storing went."""

    stages: int = 0
    messages: int = 0
    stored: IngestResult = field(default_factory=IngestResult)


def expand_stages(
    *, session: Session, workspace_id: str, max_messages: int | None = None
) -> Expansion:
    """Store the messages of the workspace's oldest stages as events (:func:`store`: a
    duplicate ``messageId`` dropped, a message of an erased person screened). Once the unit of
    work commits, the stages are deleted from the spool and their keys discarded (a crash in
    between expands them again, and :func:`store` drops what is stored); until then this unit
    of work does not expand them again (an erasure per person of a retention round). At least
    one stage, then as many as fit ``max_messages`` (None: every stage).

    If storing them together fails, each is stored in a savepoint of its own, and a stage that
    fails by itself is set aside in the spool (:meth:`Spool.fail`, logged), so that one bad
    request never holds up its workspace's others, nor its erasures."""
    lock_workspace(session, workspace_id)
    spool = spool_of(session)
    expanded: set[int] = session.info.setdefault(_EXPANDED, set())
    chosen = spool.oldest(workspace_id, max_messages, skip=expanded)
    if not chosen:
        return Expansion()
    vault = vault_of(session)
    try:
        with session.begin_nested():
            stored = _store_stages(session, vault, workspace_id, chosen)
        done = chosen
    except Exception:  # noqa: BLE001 - one stage at a time finds the one that fails
        stored, done = IngestResult(), []
        for one in chosen:
            try:
                with session.begin_nested():
                    step = _store_stages(session, vault, workspace_id, [one])
            except Exception as exc:  # noqa: BLE001 - set aside, not lost
                log.exception(
                    "ingest stage %s of %s set aside: it cannot be expanded", one[0], workspace_id
                )
                spool.fail(workspace_id, one[0], type(exc).__name__)
                continue
            done.append(one)
            stored.accepted += step.accepted
            stored.duplicates += step.duplicates
            stored.suppressed += step.suppressed
    ids = [stage_id for stage_id, _, _ in done]
    spent = [token_subject(body) for _, _, body in done]
    expanded.update(ids)

    def finished() -> None:
        spool.delete(workspace_id, ids)
        vault.keystore.discard(workspace_id, spent)

    if ids:
        after_commit(session, finished)
    return Expansion(stages=len(chosen), messages=sum(n for _, n, _ in chosen), stored=stored)


_EXPANDED = "ingest.expanded_stages"  # session.info: stages expanded by this unit of work


def _store_stages(
    session: Session, vault: Vault, workspace_id: str, chosen: Sequence[tuple[int, int, str]]
) -> IngestResult:
    """Open stages and store their messages, in order."""
    tokens = [body for _, _, body in chosen]
    envelopes: list[Envelope] = []
    for packed in vault.open_many(workspace_id, [(STAGE, t) for t in tokens]):
        if packed is None:  # its key was discarded while the stage stayed: never expected
            raise CryptoError(f"an ingest stage of {workspace_id} cannot be opened")
        envelopes.extend(_unpack(packed, start=len(envelopes)))
    return store(session=session, workspace_id=workspace_id, envelopes=envelopes)


def workspaces_with_stages(*, session: Session) -> list[str]:
    """Workspaces that have stages not expanded yet."""
    return spool_of(session).workspaces()


# A stage is written right after its key is made; a key this old with no stage is spent.
SPENT_AFTER = timedelta(hours=1)


def discard_spent_stage_keys(*, session: Session) -> int:
    """Discard the keys of stages that are gone (a crash between the commit of an expansion
    and the discarding of its keys, or a request whose stage was never written); returns how
    many. Only keys older than :data:`SPENT_AFTER` are looked at, as another process may be
    between making a stage's key and writing the stage."""
    vault = vault_of(session)
    live = spool_of(session).subjects()
    spent: dict[str, list[str]] = {}
    for workspace_id, subject in vault.keystore.subjects(STAGE_SUBJECT, utcnow() - SPENT_AFTER):
        if subject not in live:
            spent.setdefault(workspace_id, []).append(subject)
    for workspace_id, subjects in spent.items():
        vault.keystore.discard(workspace_id, subjects)
    return sum(len(subjects) for subjects in spent.values())


def _pack(envelopes: Sequence[Envelope]) -> list[tuple[Any, ...]]:
    """Messages as JSON values, for a stage (the JSON encoder writes datetimes in ISO 8601)."""
    return [
        (
            env.message_id,
            env.type,
            env.user_id,
            env.anonymous_id,
            env.event,
            env.original_timestamp,
            env.sent_at,
            env.received_at,
            env.timestamp,
            env.payload,
        )
        for env in envelopes
    ]


def _unpack(packed: Sequence[Sequence[Any]], start: int = 0) -> list[Envelope]:
    """The messages of a stage again (:func:`_pack`), numbered from ``start``."""
    return [
        Envelope(
            index=start + i,
            message_id=m[0],
            type=m[1],
            user_id=m[2],
            anonymous_id=m[3],
            event=m[4],
            original_timestamp=_datetime(m[5]),
            sent_at=_datetime(m[6]),
            received_at=datetime.fromisoformat(m[7]),
            timestamp=datetime.fromisoformat(m[8]),
            payload=m[9],
        )
        for i, m in enumerate(packed)
    ]


def _datetime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def process_pending(
    *,
    session: Session,
    workspace_id: str,
    identity: IdentitySettings,
    default_region: str = "US",
    limit: int = 1000,
) -> IngestResult:
    """Apply up to ``limit`` stored events after the workspace's cursor, in id order."""
    lock_workspace(session, workspace_id)
    cursor = _cursor(session, workspace_id)
    events = _events_table()
    rows = (
        session.connection()  # Core rows, only the columns applying needs: no ORM instances
        .execute(
            select(*(events.c[name] for name in _ENVELOPE_COLUMNS))
            .where(events.c.workspace_id == workspace_id, events.c.id > cursor.last_event_id)
            .order_by(events.c.id)
            .limit(limit)
        )
        .all()
    )
    result = IngestResult(processed=len(rows))
    if not rows:
        return result
    payloads = vault_of(session).open_many(workspace_id, [(PAYLOAD, row[-1]) for row in rows])
    envelopes = [
        _envelope(i, row, p) for i, (row, p) in enumerate(zip(rows, payloads, strict=True))
    ]
    last_id = rows[-1][0]
    ids = [row[0] for row in rows]
    found = [_identifiers(session, workspace_id, env, default_region) for env in envelopes]
    kept = _screen_identified(session, workspace_id, envelopes, found)
    if len(kept) < len(envelopes):  # messages of an erased person: dropped, not applied
        keep = set(kept)
        _delete_events(session, [ids[i] for i in range(len(ids)) if i not in keep])
        result.suppressed = len(ids) - len(kept)
        envelopes, found, ids = (
            [envelopes[i] for i in kept],
            [found[i] for i in kept],
            [ids[i] for i in kept],
        )
    _resolve(session, workspace_id, envelopes, found, identity, result)
    _link_events(session, ids, envelopes)
    _apply(session, workspace_id, envelopes)
    # GPC and context.consent of resolved messages, in this transaction (consent.signals)
    consent.apply_event_signals(session=session, workspace_id=workspace_id, messages=envelopes)
    cursor.last_event_id, cursor.updated_at = last_id, utcnow()
    session.flush()
    return result


def ingest(
    *,
    session: Session,
    workspace_id: str,
    envelopes: Sequence[Envelope],
    identity: IdentitySettings,
    default_region: str = "US",
) -> IngestResult:
    """Store and apply in one unit of work (imports, the demo, tests)."""
    result = store(session=session, workspace_id=workspace_id, envelopes=envelopes)
    while True:
        step = process_pending(
            session=session,
            workspace_id=workspace_id,
            identity=identity,
            default_region=default_region,
            limit=5000,
        )
        result.processed += step.processed
        result.profiles_created += step.profiles_created
        result.merges += step.merges
        result.suppressed += step.suppressed
        result.warnings += step.warnings
        if step.processed == 0:
            return result


def pending_count(*, session: Session, workspace_id: str) -> int:
    """How many acknowledged messages the processor has not applied yet: stored events after
    the cursor, and the messages of stages not expanded yet."""
    cursor = session.get(IngestCursorRow, workspace_id)
    after = cursor.last_event_id if cursor is not None else 0
    total = session.scalar(
        select(func.count())
        .select_from(EventRow)
        .where(EventRow.workspace_id == workspace_id, EventRow.id > after)
    )
    return int(total or 0) + spool_of(session).messages(workspace_id)


def workspaces_with_pending(*, session: Session) -> list[str]:
    """Workspaces that have stored events the processor has not applied, or stages (after a
    restart)."""
    last = (
        select(EventRow.workspace_id, func.max(EventRow.id).label("last"))
        .group_by(EventRow.workspace_id)
        .subquery()
    )
    rows = session.execute(
        select(last.c.workspace_id)
        .outerjoin(IngestCursorRow, IngestCursorRow.workspace_id == last.c.workspace_id)
        .where(
            or_(
                IngestCursorRow.last_event_id.is_(None), IngestCursorRow.last_event_id < last.c.last
            )
        )
    )
    found = [w for (w,) in rows]
    return found + [w for w in workspaces_with_stages(session=session) if w not in found]


def _cursor(session: Session, workspace_id: str) -> IngestCursorRow:
    cursor = session.get(IngestCursorRow, workspace_id)
    if cursor is None:
        cursor = IngestCursorRow(workspace_id=workspace_id, last_event_id=0, updated_at=utcnow())
        session.add(cursor)
        session.flush()
    return cursor


def _events_table() -> Table:
    return cast(Table, EventRow.__table__)


# The columns :func:`_envelope` reads, in its order (``id`` first, the sealed payload last; the
# ids come from the opened payload, as the columns hold only their blind indexes).
_ENVELOPE_COLUMNS = (
    "id",
    "message_id",
    "type",
    "event",
    "original_timestamp",
    "sent_at",
    "received_at",
    "timestamp",
    "payload",
)


def _envelope(index: int, row: Sequence[Any], payload: dict[str, Any] | None) -> Envelope:
    """The stored event as a message again (its payload opened; ``{}`` if it was erased)."""
    _, message_id, kind, event, original, sent, received, ts, _ = row
    payload = payload or {}
    return Envelope(
        index=index,
        message_id=message_id,
        type=kind,
        user_id=_text(payload.get("userId")),
        anonymous_id=_text(payload.get("anonymousId")),
        event=event if kind == "track" else None,
        original_timestamp=original,
        sent_at=sent,
        received_at=received,
        timestamp=ts,
        payload=payload,
    )


_INSERT_EVENTS = Bulk(insert(_events_table()))
_LINK_EVENT = Bulk(
    update(_events_table())
    .where(_events_table().c.id == bindparam("event_pk"))
    .values(profile_id=bindparam("pid"))
)


def _link_events(session: Session, ids: Sequence[int], envelopes: Sequence[Envelope]) -> None:
    params = [
        {"event_pk": event_id, "pid": env.profile_id}
        for event_id, env in zip(ids, envelopes, strict=True)
        if env.profile_id is not None
    ]
    _LINK_EVENT.run(session.connection(), params)


def _distinct(envelopes: Sequence[Envelope]) -> list[Envelope]:
    """The first message of each messageId, in order (a batch may repeat one)."""
    return list({env.message_id: env for env in reversed(envelopes)}.values())[::-1]


def _new_messages(
    session: Session, workspace_id: str, envelopes: Sequence[Envelope]
) -> list[Envelope]:
    unique = _distinct(envelopes)
    ids = [env.message_id for env in unique]
    seen: set[str] = set()
    events = _events_table()
    for chunk in range(0, len(ids), 500):
        seen.update(
            session.connection().scalars(  # Core: the same query without the ORM layer
                select(events.c.message_id).where(
                    events.c.workspace_id == workspace_id,
                    events.c.message_id.in_(ids[chunk : chunk + 500]),
                )
            )
        )
    return [env for env in unique if env.message_id not in seen]


def _identifiers(
    session: Session, workspace_id: str, env: Envelope, default_region: str
) -> list[Identifier]:
    found = extract_identifiers(env.payload, default_region)
    if env.type == "alias":
        previous = normalize_id(env.payload.get("previousId"))
        if previous is not None:
            found.append(_alias_target(session, workspace_id, previous))
    return list(dict.fromkeys(found))


def _alias_target(session: Session, workspace_id: str, previous: str) -> Identifier:
    """``previousId`` names a known userId if there is one, else an anonymousId."""
    as_user = Identifier(USER_ID, previous)
    hits = profiles.search_identifiers(session=session, workspace_id=workspace_id, user_id=previous)
    return as_user if hits else Identifier(ANONYMOUS_ID, previous)


def _resolve(
    session: Session,
    workspace_id: str,
    envelopes: Sequence[Envelope],
    found: Sequence[list[Identifier]],
    identity: IdentitySettings,
    result: IngestResult,
) -> None:
    sightings = [
        profiles.Sighting(identifiers=ids, seen_at=env.timestamp, message_id=env.message_id)
        for env, ids in zip(envelopes, found, strict=True)
    ]
    resolutions = profiles.resolve_batch(
        session=session, workspace_id=workspace_id, sightings=sightings, cap=identity.cap
    )
    for env, resolution in zip(envelopes, resolutions, strict=True):
        env.profile_id = resolution.profile_id
        result.profiles_created += int(resolution.created)
        result.merges += len(resolution.merges)
        result.warnings.extend(f"message {env.index}: {w}" for w in resolution.warnings)


PAYLOAD = "event.payload"  # the field an event's sealed payload is bound to


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def identity_index(vault: Vault, workspace_id: str, kind: str, raw: Any) -> str | None:
    """The blind index of a userId or anonymousId as the events table stores it: the same as
    the identifier's when the id is usable, else of its text (a junk id such as "null")."""
    return _indexed(vault, workspace_id, kind, raw)[0]


def _indexed(vault: Vault, workspace_id: str, kind: str, raw: Any) -> tuple[str | None, bool]:
    """:func:`identity_index` of ``raw``, and whether the id is usable (then the index is also
    the identity's, which :func:`event_subject` keys by)."""
    if raw is None:
        return None, False
    usable = normalize_id(raw)
    return vault.index(workspace_id, kind, usable or str(raw)), usable is not None


def event_subject(
    vault: Vault,
    workspace_id: str,
    user_id: Any,
    anonymous_id: Any,
    message_id: str,
    generations: Mapping[str, int] | None = None,
) -> str:
    """Whose key seals an event: its userId's, else its anonymousId's (as identifiers, so an
    erasure of the person reaches it); a message with only junk ids gets a key of its own.
    ``generations`` (by blind index) names the fresh key of an identity that came back after
    an erasure."""
    user = _indexed(vault, workspace_id, USER_ID, user_id)
    anonymous = _indexed(vault, workspace_id, ANONYMOUS_ID, anonymous_id)
    return _subject(vault, workspace_id, user, anonymous, message_id, generations or {})


def _subject(
    vault: Vault,
    workspace_id: str,
    user: tuple[str | None, bool],
    anonymous: tuple[str | None, bool],
    message_id: str,
    generations: Mapping[str, int],
) -> str:
    """:func:`event_subject` of ids already indexed by :func:`_indexed`."""
    for index, usable in (user, anonymous):
        if usable and index is not None:
            return subject_of_index(index, generations.get(index, 0))
    return message_subject(vault, workspace_id, message_id)


def message_subject(vault: Vault, workspace_id: str, message_id: str) -> str:
    """The key of a message that carries no usable id."""
    return subject_of_index(vault.index(workspace_id, "message_id", message_id))


def subject_of_index(index: str, generation: int = 0) -> str:
    """The key-store subject of an identity, from its blind index; an identity that came back
    after an erasure (``generation`` 1, 2, ...) has a fresh one, as the old one was shredded."""
    if generation == 0:
        return "id-" + index[:32]
    return f"i{generation}-{index[:30]}"


@dataclass(frozen=True, slots=True)
class _Ids:
    """A message's userId and anonymousId as stored (blind indexes), and the subject whose key
    seals it while neither identity was erased (generation 0)."""

    user: str | None
    anonymous: str | None
    subject: str
    identities: tuple[profiles.Identity, ...]


def _ids(
    vault: Vault, workspace_id: str, env: Envelope, generations: Mapping[str, int] | None = None
) -> _Ids:
    user = _indexed(vault, workspace_id, USER_ID, env.user_id)
    anonymous = _indexed(vault, workspace_id, ANONYMOUS_ID, env.anonymous_id)
    subject = _subject(vault, workspace_id, user, anonymous, env.message_id, generations or {})
    identities = tuple(
        profiles.Identity(kind, index)
        for kind, (index, _) in ((USER_ID, user), (ANONYMOUS_ID, anonymous))
        if index is not None
    )
    return _Ids(user[0], anonymous[0], subject, identities)


def _row(workspace_id: str, env: Envelope, ids: _Ids) -> dict[str, Any]:
    """The event row of a message, but its payload."""
    return {
        "workspace_id": workspace_id,
        "message_id": env.message_id,
        "type": env.type,
        "event": env.name,
        "user_id": ids.user,
        "anonymous_id": ids.anonymous,
        "profile_id": env.profile_id,
        "original_timestamp": env.original_timestamp,
        "sent_at": env.sent_at,
        "received_at": env.received_at,
        "timestamp": env.timestamp,
    }


def _rows(
    session: Session, vault: Vault, workspace_id: str, envelopes: Sequence[Envelope]
) -> list[dict[str, Any]]:
    """Event rows as stored: ids as blind indexes, the payload sealed under the identity's key.
    A message of an erased person is left out (see :func:`_screen_stored`)."""
    plan = [_ids(vault, workspace_id, env) for env in envelopes]
    kept, generations = _screen_stored(session, workspace_id, envelopes, plan)
    pairs = []
    for i in kept:
        env, ids = envelopes[i], plan[i]
        if any(ident.index in generations for ident in ids.identities):  # it came back after
            # an erasure: its fresh key seals
            ids = _ids(vault, workspace_id, env, generations)
        pairs.append((env, ids))
    try:
        return _sealed_rows(vault, workspace_id, pairs)
    except ShreddedKey:  # a message keyed by itself (no usable id) of a person erased since:
        # its key was shredded with the person's, so it is the person's, and dropped
        gone = vault.keystore.shredded(workspace_id, [ids.subject for _, ids in pairs])
        return _sealed_rows(vault, workspace_id, [p for p in pairs if p[1].subject not in gone])


def _sealed_rows(
    vault: Vault, workspace_id: str, pairs: Sequence[tuple[Envelope, _Ids]]
) -> list[dict[str, Any]]:
    """The event row of each message, its payload sealed under its subject's key (made if
    missing)."""
    rows = [_row(workspace_id, env, ids) for env, ids in pairs]
    tokens = vault.seal_many(
        workspace_id, [(ids.subject, PAYLOAD, env.payload) for env, ids in pairs]
    )
    for row, token in zip(rows, tokens, strict=True):
        row["payload"] = token
    return rows


# --- messages of erased people -------------------------------------------------------------------


def _screen(
    session: Session,
    workspace_id: str,
    envelopes: Sequence[Envelope],
    identities: Sequence[Sequence[profiles.Identity]],
) -> tuple[list[int], dict[str, int]]:
    """Which messages may be kept (by position), and the generation of each identity (by blind
    index) that came back after an erasure. A message that carries an identity of an erased
    person is dropped, unless it is the person's new, explicit return (``returns_explicitly``),
    which takes its identities off the suppression list. Callers first ask
    ``profiles.has_suppressions`` (most workspaces have none: one cheap query per batch)."""
    entries = profiles.suppressed(
        session=session,
        workspace_id=workspace_id,
        identities=(i for ids in identities for i in ids),
    )
    if not entries:
        return list(range(len(envelopes))), {}
    kept: list[int] = []
    for position, (env, ids) in enumerate(zip(envelopes, identities, strict=True)):
        active = [entries[i] for i in ids if i in entries and entries[i].active]
        if active and returns_explicitly(env, max(e.created_at for e in active)):
            lifted = profiles.lift_suppressions(
                session=session,
                workspace_id=workspace_id,
                identities=[e.identity for e in active],
                actor=f"message:{env.message_id}"[:200],
                at=utcnow(),
            )
            for ident, generation in lifted.items():
                entries[ident] = replace(
                    entries[ident], lifted_at=env.received_at, generation=generation
                )
            active = []
        if not active:
            kept.append(position)
    generations = {i.index: e.generation for i, e in entries.items() if e.generation}
    return kept, generations


def _screen_stored(
    session: Session, workspace_id: str, envelopes: Sequence[Envelope], plan: Sequence[_Ids]
) -> tuple[list[int], dict[str, int]]:
    """:func:`_screen` by the userId and anonymousId, before a message is stored (its key would
    be a shredded one)."""
    if not profiles.has_suppressions(session=session, workspace_id=workspace_id):
        return list(range(len(envelopes))), {}
    return _screen(session, workspace_id, envelopes, [ids.identities for ids in plan])


def _screen_identified(
    session: Session,
    workspace_id: str,
    envelopes: Sequence[Envelope],
    found: Sequence[Sequence[Identifier]],
) -> list[int]:
    """:func:`_screen` by every identifier of a message (its email, phone, external ids), before
    it is applied; returns the positions of the messages to apply."""
    if not profiles.has_suppressions(session=session, workspace_id=workspace_id):
        return list(range(len(envelopes)))
    vault = vault_of(session)
    identities = [
        [profiles.Identity(i.type, vault.index(workspace_id, i.type, i.value)) for i in ids]
        for ids in found
    ]
    return _screen(session, workspace_id, envelopes, identities)[0]


def _delete_events(session: Session, ids: Sequence[int]) -> int:
    events = _events_table()
    deleted = 0
    for start in range(0, len(ids), 500):
        result = session.execute(delete(events).where(events.c.id.in_(ids[start : start + 500])))
        deleted += int(getattr(result, "rowcount", 0) or 0)
    return deleted


@dataclass(frozen=True, slots=True)
class ErasedEvents:
    """What :func:`erase_events` deleted: how many events, and for each, the key-store subject
    that sealed it with its messageId (the caller decides which keys are the person's)."""

    count: int
    sealed_by: list[tuple[str, str]]


def erase_events(
    *,
    session: Session,
    workspace_id: str,
    profile_ids: Sequence[str],
    identity_indexes: Sequence[str],
) -> ErasedEvents:
    """Delete the events of these profiles, and the stored events not applied yet that carry one
    of these userId or anonymousId blind indexes."""
    events = _events_table()
    cursor = session.get(IngestCursorRow, workspace_id)
    after = cursor.last_event_id if cursor is not None else 0
    found: dict[int, tuple[str, str]] = {}
    for start in range(0, len(profile_ids), 500):
        for event_id, message_id, payload in session.connection().execute(
            select(events.c.id, events.c.message_id, events.c.payload).where(
                events.c.workspace_id == workspace_id,
                events.c.profile_id.in_(profile_ids[start : start + 500]),
            )
        ):
            found[event_id] = (token_subject(payload) if is_token(payload) else "", message_id)
    # the backlog not applied yet: a range of ids after the cursor (by the primary key, which
    # stays small, rather than an index that scans the workspace), filtered here
    wanted = set(identity_indexes)
    pending = [
        event_id
        for event_id, ws, user, anonymous in session.connection().execute(
            select(
                events.c.id, events.c.workspace_id, events.c.user_id, events.c.anonymous_id
            ).where(events.c.id > after)
        )
        if ws == workspace_id and (user in wanted or anonymous in wanted)
    ]
    for start in range(0, len(pending), 500):
        for event_id, message_id, payload in session.connection().execute(
            select(events.c.id, events.c.message_id, events.c.payload).where(
                events.c.id.in_(pending[start : start + 500])
            )
        ):
            found[event_id] = (token_subject(payload) if is_token(payload) else "", message_id)
    count = _delete_events(session, sorted(found))
    return ErasedEvents(count, [(s, m) for s, m in found.values() if s])


def _apply(session: Session, workspace_id: str, envelopes: Sequence[Envelope]) -> None:
    """Traits of identify calls and e-commerce events, each kind in one pass."""
    canonical = profiles.canonical_map(
        session=session,
        workspace_id=workspace_id,
        profile_ids=[e.profile_id for e in envelopes if e.profile_id and e.type == "identify"],
    )
    observations = [
        profiles.TraitObservation(
            e.profile_id, canonical[e.profile_id], traits, e.timestamp, e.message_id
        )
        for e in envelopes
        if e.type == "identify"
        and e.profile_id in canonical
        and (traits := profiles.message_traits(e.payload))
    ]
    profiles.record_traits_batch(
        session=session, workspace_id=workspace_id, observations=observations
    )
    commerce_events = [
        commerce.CommerceEvent(e.profile_id, e.event or "", _properties(e), e.timestamp)
        for e in envelopes
        if e.type == "track" and commerce.is_commerce_event(e.event)
    ]
    if commerce_events:
        commerce.apply_events(session=session, workspace_id=workspace_id, events=commerce_events)


def _properties(env: Envelope) -> dict[str, Any]:
    props = env.payload.get("properties")
    return props if isinstance(props, dict) else {}


def events_of(
    *,
    session: Session,
    workspace_id: str,
    profile_ids: Sequence[str],
    limit: int = 50,
    before: tuple[datetime, int] | None = None,
) -> list[EventView]:
    """A page of the timeline of these profiles, newest event time first.

    ``before`` is the (timestamp, id) of the last event of the previous page.
    """
    query = select(EventRow).where(
        EventRow.workspace_id == workspace_id, EventRow.profile_id.in_(profile_ids)
    )
    if before is not None:
        ts, event_id = before
        query = query.where(
            or_(EventRow.timestamp < ts, and_(EventRow.timestamp == ts, EventRow.id < event_id))
        )
    order = (EventRow.timestamp.desc(), EventRow.id.desc())
    rows = list(session.scalars(query.order_by(*order).limit(limit)))
    return _views(session, workspace_id, rows)


def _views(session: Session, workspace_id: str, rows: Sequence[EventRow]) -> list[EventView]:
    payloads = vault_of(session).open_many(workspace_id, [(PAYLOAD, r.payload) for r in rows])
    return [
        EventView(
            r.id, r.message_id, r.type, r.event, r.profile_id, r.timestamp, r.received_at, p or {}
        )
        for r, p in zip(rows, payloads, strict=True)
    ]


def count_events(*, session: Session, workspace_id: str) -> int:
    """How many events the workspace holds."""
    total = session.scalar(
        select(func.count()).select_from(EventRow).where(EventRow.workspace_id == workspace_id)
    )
    return int(total or 0)


def get_event(*, session: Session, workspace_id: str, message_id: str) -> EventView | None:
    """One stored event by its messageId."""
    r = session.scalar(
        select(EventRow).where(
            EventRow.workspace_id == workspace_id, EventRow.message_id == message_id
        )
    )
    if r is None:
        return None
    return _views(session, workspace_id, [r])[0]


def expired_events(
    *, session: Session, workspace_id: str, before: datetime, remove_up_to: int = 0
) -> int:
    """How many applied events of the workspace have an event time before ``before``; with
    ``remove_up_to``, delete up to that many of them (oldest first) and return how many went.
    Events not applied yet are never counted nor deleted (their effect is still to come)."""
    events = _events_table()
    cursor = session.get(IngestCursorRow, workspace_id)
    applied = cursor.last_event_id if cursor is not None else 0
    where = (
        events.c.workspace_id == workspace_id,
        events.c.timestamp < before,
        events.c.id <= applied,
    )
    if not remove_up_to:
        return int(session.scalar(select(func.count()).select_from(events).where(*where)) or 0)
    ids = list(
        session.scalars(
            select(events.c.id).where(*where).order_by(events.c.timestamp).limit(remove_up_to)
        )
    )
    return _delete_events(session, ids)
