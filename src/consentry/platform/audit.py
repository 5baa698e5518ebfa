"""The audit trail: who read personal data or took a privacy action, what, when and why.

Entries are append-only and hash-chained per workspace, like the consent ledger: an entry's
``hash`` is ``sha256(prev_hash + canonical JSON of every other field)``, the first entry links to
:data:`GENESIS_HASH`, and a chain-head row per workspace holds the last seq and hash, so an
edited, deleted or reordered entry, or a truncated tail, breaks the chain where it happened.
Appends of one workspace are serialised with :func:`consentry.platform.db.lock_workspace`.

Nothing here may hold personal data. Targets are pseudonymous ids (a profile id, a request id),
never the email, phone or name used to find them; ``details`` is a small flat mapping of
``str -> str | int | bool`` saying *how* (``{"lookup": "email"}``), not *what*; the ``reason`` is
short free text. Values that look like an email address or an international phone number are
refused, as a guard (not a guarantee): callers must not pass personal data.

The first half of this module is plain rules (canonical form, hashing, limits, export shapes);
the second takes a SQLAlchemy session and keyword-only arguments and never commits.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, insert, select
from sqlalchemy.orm import Session

from consentry.errors import FieldError, Invalid
from consentry.platform.audit_tables import AuditChainHeadRow, AuditEntryRow
from consentry.platform.chain_store import stored_chain
from consentry.platform.db import lock_workspace, utcnow
from consentry.platform.hashchain import GENESIS_HASH

UNSPECIFIED = "unspecified"  # the reason when the caller gave none
MAX_REASON = 200
MAX_ACTOR = 200
MAX_TARGET_ID = 100
MAX_DETAILS = 16
MAX_DETAIL_TEXT = 200
MAX_TARGETS = 1000  # entries one call may append
MAX_PAGE = 1000
CHUNK = 1000  # rows per page of a walk

DetailValue = str | int | bool

_ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")  # profile.read, dsr.erasure
_TARGET_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_TARGET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")  # no '@', '+' or spaces
_ACTOR = re.compile(r"^[a-z][a-z0-9_]*:[A-Za-z0-9._:/-]+$")  # token:<key id>, cli:<name>
_DETAIL_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_PHONE = re.compile(r"\+\s*\d[\d\s().-]{5,}\d")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SAFE_INT = 2**53  # a JSON number every reader keeps exactly

# --- rules --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry of a workspace's trail, as stored."""

    id: str
    workspace_id: str
    seq: int
    at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str | None
    reason: str
    details: dict[str, DetailValue]
    prev_hash: str
    hash: str

    def canonical(self) -> bytes:
        """The canonical JSON of every field but ``prev_hash`` and ``hash``."""
        hashed = {f.name: getattr(self, f.name) for f in fields(self)}
        del hashed["prev_hash"], hashed["hash"]
        return canonical_json(hashed)

    def expected_hash(self) -> str:
        """The hash this entry's fields and ``prev_hash`` give."""
        return chain_hash(self.prev_hash, self.canonical())


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return timestamp(value)
    raise TypeError(f"not canonical JSON: {type(value).__name__}")


def timestamp(value: datetime) -> str:
    """A time as the chain writes it: UTC, microseconds, ``Z`` (a naive time is taken as UTC)."""
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8, datetimes as :func:`timestamp`."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default
    ).encode()


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    """SHA-256 (hex) of the previous entry's hash (ASCII hex) followed by an entry's canonical
    JSON."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical).hexdigest()


def looks_personal(text: str) -> bool:
    """True when ``text`` holds something shaped like an email address or a phone number."""
    return bool(_EMAIL.search(text) or _PHONE.search(text))


def _text_problem(value: str, limit: int) -> str | None:
    if len(value) > limit:
        return f"at most {limit} characters"
    if _CONTROL.search(value):
        return "no control characters"
    if looks_personal(value):
        return "must not hold personal data (it looks like an email address or phone number)"
    return None


def reason_problem(reason: str) -> str | None:
    """Why ``reason`` cannot be recorded, or None."""
    if not reason.strip():
        return "must not be empty"
    return _text_problem(reason, MAX_REASON)


def _detail_problems(details: Mapping[str, Any]) -> list[FieldError]:
    if len(details) > MAX_DETAILS:
        return [FieldError("details", f"at most {MAX_DETAILS} keys")]
    errors = []
    for key, value in details.items():
        field = f"details.{key}"
        if not isinstance(key, str) or not _DETAIL_KEY.match(key):
            errors.append(FieldError("details", f"bad key {str(key)[:40]!r}: [a-z][a-z0-9_]*"))
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if abs(value) >= _SAFE_INT:
                errors.append(FieldError(field, "an integer below 2**53 in magnitude"))
        elif isinstance(value, str):
            problem = _text_problem(value, MAX_DETAIL_TEXT)
            if problem:
                errors.append(FieldError(field, problem))
        else:
            errors.append(FieldError(field, "a string, integer or boolean (no nested data)"))
    return errors


def entry_problems(
    *,
    actor: str,
    action: str,
    target_type: str,
    target_ids: Sequence[str | None],
    reason: str,
    details: Mapping[str, Any],
) -> list[FieldError]:
    """What keeps an entry out of the trail; an empty list when it may be recorded."""
    errors: list[FieldError] = []
    if len(actor) > MAX_ACTOR or not _ACTOR.match(actor):
        errors.append(FieldError("actor", "kind:id, e.g. token:<key id> (no personal data)"))
    if len(action) > 64 or not _ACTION.match(action):
        errors.append(FieldError("action", "dotted lower-case words, e.g. profile.read"))
    if not _TARGET_TYPE.match(target_type):
        errors.append(FieldError("target_type", "a lower-case word, e.g. profile"))
    if len(target_ids) > MAX_TARGETS:
        errors.append(FieldError("target_id", f"at most {MAX_TARGETS} targets at once"))
    for target in target_ids:
        if target is not None and (len(target) > MAX_TARGET_ID or not _TARGET_ID.match(target)):
            errors.append(FieldError("target_id", "a pseudonymous id of letters, digits, ._:-"))
            break
    problem = reason_problem(reason)
    if problem:
        errors.append(FieldError("reason", problem))
    return errors + _detail_problems(details)


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """An entry as the API and the JSON Lines export show it."""
    shown = asdict(entry)
    shown["at"] = timestamp(entry.at)
    return shown


CSV_COLUMNS = tuple(f.name for f in fields(AuditEntry))
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, dict):
        return canonical_json(value).decode()
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text  # no formulas in a spreadsheet


def jsonl_lines(entries: Iterable[AuditEntry]) -> Iterator[str]:
    """One JSON document per line: every field, enough to recompute each hash."""
    for entry in entries:
        yield json.dumps(entry_json(entry), ensure_ascii=False, sort_keys=True) + "\n"


def csv_lines(entries: Iterable[AuditEntry]) -> Iterator[str]:
    """A header row, then one row per entry (``details`` as canonical JSON).

    A cell that would start a spreadsheet formula is prefixed with ``'``; verify from JSON Lines.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        writer.writerow([_cell(getattr(entry, name)) for name in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


# --- appending ----------------------------------------------------------------------------------


def record(
    *,
    session: Session,
    workspace_id: str,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None,
    reason: str,
    details: Mapping[str, DetailValue] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry to the workspace's trail in the caller's transaction.

    ``actor`` is ``kind:id`` (``token:<key id>``, ``cli:<name>``, ``system:<job>``); ``action``
    a dotted name (``profile.read``, ``dsr.erasure``); ``target_type``/``target_id`` the
    pseudonymous object (None when a lookup found nothing); ``reason`` why (at most 200
    characters; :data:`UNSPECIFIED` when the caller gave none). ``details`` must hold no
    personal data. Raises Invalid naming each bad field before anything is written.
    """
    (entry,) = record_many(
        session=session,
        workspace_id=workspace_id,
        actor=actor,
        action=action,
        target_type=target_type,
        target_ids=[target_id],
        reason=reason,
        details=details,
        at=at,
    )
    return entry


def record_many(
    *,
    session: Session,
    workspace_id: str,
    actor: str,
    action: str,
    target_type: str,
    target_ids: Sequence[str | None],
    reason: str,
    details: Mapping[str, DetailValue] | None = None,
    at: datetime | None = None,
) -> list[AuditEntry]:
    """One entry per target (one entry with no target when ``target_ids`` is empty), all with
    the same actor, action, reason and details, appended under one lock; see :func:`record`."""
    targets: Sequence[str | None] = list(target_ids) or [None]
    wanted = dict(details or {})
    errors = entry_problems(
        actor=actor,
        action=action,
        target_type=target_type,
        target_ids=targets,
        reason=reason,
        details=wanted,
    )
    if errors:
        raise Invalid("the audit entry is not valid; nothing was recorded", errors)
    now = at or utcnow()
    lock_workspace(session, workspace_id)
    head = session.get(AuditChainHeadRow, workspace_id, populate_existing=True)
    seq, prev_hash = (head.seq, head.hash) if head else (0, GENESIS_HASH)
    made: list[AuditEntry] = []
    for target in targets:
        seq += 1
        entry = AuditEntry(
            id=str(uuid.uuid4()),
            workspace_id=workspace_id,
            seq=seq,
            at=now,
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=target,
            reason=reason.strip(),
            details=dict(wanted),
            prev_hash=prev_hash,
            hash="",
        )
        prev_hash = entry.expected_hash()
        made.append(replace(entry, hash=prev_hash))
    session.execute(insert(AuditEntryRow), [asdict(e) for e in made])
    if head is None:
        head = AuditChainHeadRow(workspace_id=workspace_id)
        session.add(head)
    head.seq, head.hash, head.updated_at = made[-1].seq, made[-1].hash, now
    session.flush()  # a second append in this transaction must see the head
    return made


# --- reading ------------------------------------------------------------------------------------


def _entry(row: AuditEntryRow) -> AuditEntry:
    return AuditEntry(**{f.name: getattr(row, f.name) for f in fields(AuditEntry)})


def _filtered(
    workspace_id: str,
    since: datetime | None,
    until: datetime | None,
    action: str | None,
    target_id: str | None,
) -> Select[AuditEntryRow]:
    row = AuditEntryRow
    query = select(row).where(row.workspace_id == workspace_id)
    if since is not None:
        query = query.where(row.at >= since)
    if until is not None:
        query = query.where(row.at < until)
    if action is not None:
        query = query.where(row.action == action)
    if target_id is not None:
        query = query.where(row.target_id == target_id)
    return query.order_by(row.seq)


def entries(
    *,
    session: Session,
    workspace_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
    action: str | None = None,
    target_id: str | None = None,
    after_seq: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """A page of the workspace's entries in seq order: ``at`` in ``[since, until)``, the exact
    ``action`` and ``target_id`` when given, seq after ``after_seq``; at most ``limit``
    (1 to 1,000). Pass the last seq of a page as ``after_seq`` to get the next."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid("bad page size", [FieldError("limit", f"1 to {MAX_PAGE}")])
    query = _filtered(workspace_id, since, until, action, target_id)
    if after_seq is not None:
        query = query.where(AuditEntryRow.seq > after_seq)
    return [_entry(row) for row in session.scalars(query.limit(limit))]


def iter_entries(
    *,
    session: Session,
    workspace_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
    action: str | None = None,
    target_id: str | None = None,
) -> Iterator[AuditEntry]:
    """Every matching entry in seq order, a page at a time (for exports of any size)."""
    after = 0
    while True:
        page = entries(
            session=session,
            workspace_id=workspace_id,
            since=since,
            until=until,
            action=action,
            target_id=target_id,
            after_seq=after,
            limit=CHUNK,
        )
        yield from page
        if len(page) < CHUNK:
            return
        after = page[-1].seq


# --- verification -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """The first break in a trail: ``kind`` is edited, deleted or reordered; ``entry_id`` is the
    entry at fault (None when it was deleted) and ``seq`` where the chain breaks."""

    kind: str
    seq: int
    entry_id: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The result of walking a workspace's trail: ``checked`` entries were found intact."""

    ok: bool
    checked: int
    problem: Problem | None = None


def _rehash(entry: AuditEntry, seq: int) -> str:
    return replace(entry, seq=seq).expected_hash()


def verify(*, session: Session, workspace_id: str) -> VerifyReport:
    """Walk the trail in seq order and report the first edited, deleted or reordered entry."""

    chain, head = stored_chain(
        session,
        workspace_id,
        AuditEntryRow,
        AuditChainHeadRow,
        rehash=_rehash,
        noun="entry",
        plural="entries",
        whole="trail",
    )
    result = chain.walk(iter_entries(session=session, workspace_id=workspace_id), head)
    broken = result.broken
    problem = Problem(broken.kind, broken.seq, broken.link_id, broken.detail) if broken else None
    return VerifyReport(ok=result.ok, checked=result.checked, problem=problem)
