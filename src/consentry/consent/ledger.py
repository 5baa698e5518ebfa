"""The consent ledger: append-only, hash-chained records per workspace, the current state kept in
the same transaction, verification of the chain, and consent receipts.

Each record's ``hash`` is the SHA-256 of the canonical JSON of every field but the proof (its
digest stands in for it) and includes the previous record's hash, so an edited, deleted or
reordered record breaks the chain where it happened. Appends of one workspace are serialised with
:func:`consentry.platform.db.lock_workspace`. Functions take a session and never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, tuple_, update
from sqlalchemy.orm import Session

from consentry.consent import notices
from consentry.consent.models import (
    ChainFields,
    ConsentConfig,
    ConsentEntry,
    ConsentRecord,
    CurrentState,
    Purpose,
    build_receipt,
    config_problems,
    country_of,
    entry_problems,
    erased_proof,
    is_erased_proof,
    proof_digest,
)
from consentry.consent.rates import Choice
from consentry.consent.tables import (
    ConsentChainHeadRow,
    ConsentRecordRow,
    ConsentSettingsRow,
    ConsentStateRow,
)
from consentry.errors import FieldError, Invalid, NotFound
from consentry.platform import tenancy
from consentry.platform.chain_store import stored_chain
from consentry.platform.db import lock_workspace, utcnow
from consentry.platform.hashchain import GENESIS_HASH, Break
from consentry.platform.vault import is_token, vault_of
from consentry.profiles import service as profiles

CHUNK = 5000  # ids per IN list, rows per page of a walk

# --- configuration ------------------------------------------------------------------------------


def get_config(*, session: Session, workspace_id: str) -> ConsentConfig:
    """The workspace's purposes and default regime (the defaults until configured)."""
    row = session.get(ConsentSettingsRow, workspace_id)
    if row is None:
        return ConsentConfig()
    return config_of(row.default_regime, row.purposes)


def config_of(default_regime: str, purposes: Iterable[Mapping[str, Any]]) -> ConsentConfig:
    """The configuration a settings row holds (its purposes as stored: JSON objects)."""
    return ConsentConfig(
        purposes=tuple(Purpose(**p) for p in purposes), default_regime=default_regime
    )


def configure(
    *,
    session: Session,
    workspace_id: str,
    purposes: Sequence[Purpose] | None = None,
    default_regime: str | None = None,
) -> ConsentConfig:
    """Set the workspace's purposes and/or default regime; what is not given is kept."""
    current = get_config(session=session, workspace_id=workspace_id)
    wanted = ConsentConfig(
        purposes=tuple(purposes) if purposes is not None else current.purposes,
        default_regime=default_regime or current.default_regime,
    )
    errors = config_problems(wanted.purposes, wanted.default_regime)
    if errors:
        raise Invalid("the consent configuration is not valid", errors)
    tenancy.get_workspace(session=session, workspace_id=workspace_id)
    row = session.get(ConsentSettingsRow, workspace_id)
    if row is None:
        row = ConsentSettingsRow(workspace_id=workspace_id)
        session.add(row)
    row.default_regime = wanted.default_regime
    row.purposes = [asdict(p) for p in wanted.purposes]
    row.updated_at = utcnow()
    session.flush()
    return wanted


# --- appending ----------------------------------------------------------------------------------


def check(
    *, session: Session, workspace_id: str, entries: Sequence[ConsentEntry], now: datetime
) -> list[FieldError]:
    """What keeps ``entries`` out of the ledger; each error carries its entry's index."""
    purposes = get_config(session=session, workspace_id=workspace_id).purpose_keys
    errors = [
        replace(error, index=index)
        for index, entry in enumerate(entries)
        for error in entry_problems(entry, purposes, now)
    ]
    references = [(e.notice_version, e.purpose) for e in entries]
    errors += [
        replace(error, index=index)
        for index, error in notices.reference_problems(session, workspace_id, references)
    ]
    return sorted(errors, key=lambda e: e.index or 0)


def append(
    *,
    session: Session,
    workspace_id: str,
    entries: Sequence[ConsentEntry],
    recorded_at: datetime | None = None,
) -> list[ConsentRecord]:
    """Append choices to the workspace's chain and update the current state, all or nothing.

    Callable inside the caller's transaction (ingestion, imports); raises Invalid naming the
    index and field of every bad entry before anything is written.
    """
    now = recorded_at or utcnow()
    errors = check(session=session, workspace_id=workspace_id, entries=entries, now=now)
    if errors:
        raise Invalid("consent records are not valid; nothing was recorded", errors)
    if not entries:
        return []
    lock_workspace(session, workspace_id)
    head = session.get(ConsentChainHeadRow, workspace_id, populate_existing=True)
    seq, prev_hash = (head.seq, head.hash) if head else (0, GENESIS_HASH)
    records = list(_chain(workspace_id, entries, seq, prev_hash, now))
    session.execute(insert(ConsentRecordRow), _stored_rows(session, workspace_id, records))
    if head is None:
        head = ConsentChainHeadRow(workspace_id=workspace_id)
        session.add(head)
    head.seq, head.hash, head.updated_at = records[-1].seq, records[-1].hash, now
    _apply_states(session, workspace_id, records)
    return records


def _chain(
    workspace_id: str, entries: Iterable[ConsentEntry], seq: int, prev_hash: str, now: datetime
) -> Iterator[ConsentRecord]:
    for entry in entries:
        seq += 1
        proof = dict(entry.proof) if entry.proof is not None else None
        chained = ChainFields(
            id=str(uuid.uuid4()),
            workspace_id=workspace_id,
            seq=seq,
            profile_id=entry.profile_id,
            purpose=entry.purpose,
            channel=entry.channel,
            state=entry.state,
            legal_basis=entry.legal_basis,
            source=entry.source,
            notice_version=entry.notice_version,
            occurred_at=entry.occurred_at,
            recorded_at=now,
            actor=entry.actor,
            expires_at=entry.expires_at,
            proof_digest=proof_digest(proof),
            prev_hash=prev_hash,
        )
        prev_hash = chained.digest()
        yield ConsentRecord(**asdict(chained), proof=proof, hash=prev_hash)


def _apply_states(session: Session, workspace_id: str, records: Sequence[ConsentRecord]) -> None:
    """A record becomes the current state of its key unless a later one (by occurred_at) is."""
    keys = {(r.profile_id, r.purpose, r.channel) for r in records}
    current: dict[tuple[str, str, str], ConsentStateRow] = {}
    ordered = sorted(keys)
    for start in range(0, len(ordered), 500):
        rows = session.scalars(
            select(ConsentStateRow).where(
                ConsentStateRow.workspace_id == workspace_id,
                tuple_(
                    ConsentStateRow.profile_id, ConsentStateRow.purpose, ConsentStateRow.channel
                ).in_(ordered[start : start + 500]),
            )
        )
        current.update(((r.profile_id, r.purpose, r.channel), r) for r in rows)
    for record in records:
        key = (record.profile_id, record.purpose, record.channel)
        row = current.get(key)
        if row is None:
            row = current[key] = ConsentStateRow(workspace_id=workspace_id)
            row.profile_id, row.purpose, row.channel = key
            session.add(row)
        elif record.occurred_at < row.occurred_at:
            continue
        row.state, row.legal_basis, row.record_id = record.state, record.legal_basis, record.id
        row.occurred_at, row.expires_at = record.occurred_at, record.expires_at
    session.flush()


# --- reading ------------------------------------------------------------------------------------


# Proof values that identify a person (the address a confirmation went to, the truncated IP,
# the browser) are stored sealed under the subject's key; the rest (GPC, the CMP string, the
# page) stays clear. The proof digest in the chain is of the clear proof, so it still verifies
# once the sealed values can no longer be opened (after an erasure), as the digest is kept.
PERSONAL_PROOF_KEYS = frozenset({"email", "ip", "user_agent"})


def proof_field(key: str) -> str:
    return f"consent.proof:{key}"


def _stored_rows(
    session: Session, workspace_id: str, records: Sequence[ConsentRecord]
) -> list[dict[str, Any]]:
    rows = [asdict(r) for r in records]
    slots = [
        (row, key)
        for row in rows
        if row["proof"]
        for key in sorted(row["proof"])
        if key in PERSONAL_PROOF_KEYS and row["proof"][key] is not None
    ]
    if slots:
        tokens = vault_of(session).seal_many(
            workspace_id,
            [(row["profile_id"], proof_field(key), row["proof"][key]) for row, key in slots],
        )
        for (row, key), token in zip(slots, tokens, strict=True):
            row["proof"] = {**row["proof"], key: token}
    return rows


def records_of(
    session: Session, workspace_id: str, rows: Iterable[ConsentRecordRow]
) -> list[ConsentRecord]:
    """Stored rows as records, the personal values of their proofs opened (None once the
    subject was erased)."""
    records = [
        ConsentRecord(**{f.name: getattr(row, f.name) for f in fields(ConsentRecord)})
        for row in rows
    ]
    slots = [
        (i, key, value)
        for i, record in enumerate(records)
        if record.proof
        for key, value in record.proof.items()
        if is_token(value)
    ]
    if not slots:
        return records
    values = vault_of(session).open_many(
        workspace_id, [(proof_field(key), token) for _, key, token in slots]
    )
    opened: dict[int, dict[str, Any]] = {}
    for (i, key, _), value in zip(slots, values, strict=True):
        opened.setdefault(i, dict(records[i].proof or {}))[key] = value
    return [
        replace(record, proof=opened[i]) if i in opened else record
        for i, record in enumerate(records)
    ]


def _record(session: Session, workspace_id: str, row: ConsentRecordRow) -> ConsentRecord:
    return records_of(session, workspace_id, [row])[0]


def _state(row: ConsentStateRow) -> CurrentState:
    return CurrentState(**{f.name: getattr(row, f.name) for f in fields(CurrentState)})


def get_record(*, session: Session, workspace_id: str, record_id: str) -> ConsentRecord:
    """One record of the workspace's ledger, or NotFound."""
    row = session.get(ConsentRecordRow, record_id)
    if row is None or row.workspace_id != workspace_id:
        raise NotFound(f"no consent record {record_id!r} in this workspace")
    return _record(session, workspace_id, row)


def states_of(
    *,
    session: Session,
    workspace_id: str,
    profile_ids: Sequence[str],
    purpose: str | None = None,
    channels: Sequence[str] | None = None,
) -> list[CurrentState]:
    """The stored states of these profiles (not unified: one per profile, purpose, channel)."""
    out: list[CurrentState] = []
    for start in range(0, len(profile_ids), CHUNK):
        query = select(ConsentStateRow).where(
            ConsentStateRow.workspace_id == workspace_id,
            ConsentStateRow.profile_id.in_(profile_ids[start : start + CHUNK]),
        )
        if purpose is not None:
            query = query.where(ConsentStateRow.purpose == purpose)
        if channels is not None:
            query = query.where(ConsentStateRow.channel.in_(channels))
        out.extend(_state(row) for row in session.scalars(query))
    return out


def history(
    *,
    session: Session,
    workspace_id: str,
    profile_ids: Sequence[str],
    limit: int = 100,
    offset: int = 0,
) -> list[ConsentRecord]:
    """Records of these profiles, newest first (by seq: the order they were recorded)."""
    rows = session.scalars(
        select(ConsentRecordRow)
        .where(
            ConsentRecordRow.workspace_id == workspace_id,
            ConsentRecordRow.profile_id.in_(list(profile_ids)),
        )
        .order_by(ConsentRecordRow.seq.desc())
        .limit(limit)
        .offset(offset)
    )
    return records_of(session, workspace_id, rows)


def walk(*, session: Session, workspace_id: str, after: int = 0) -> Iterator[ConsentRecord]:
    """Every record of the workspace after seq ``after``, in seq order, a page at a time."""
    while True:
        rows = session.scalars(
            select(ConsentRecordRow)
            .where(ConsentRecordRow.workspace_id == workspace_id, ConsentRecordRow.seq > after)
            .order_by(ConsentRecordRow.seq)
            .limit(CHUNK)
        ).all()
        yield from records_of(session, workspace_id, rows)
        if len(rows) < CHUNK:
            return
        after = rows[-1].seq


def subjects_after(
    *, session: Session, workspace_id: str, after: int, limit: int
) -> list[tuple[int, str]]:
    """``(seq, profile id)`` of up to ``limit`` records of the workspace after seq ``after``, in
    seq order: who a record was about, for readers that follow the ledger (segments' catch-up)
    without opening any proof."""
    rows = session.execute(
        select(ConsentRecordRow.seq, ConsentRecordRow.profile_id)
        .where(ConsentRecordRow.workspace_id == workspace_id, ConsentRecordRow.seq > after)
        .order_by(ConsentRecordRow.seq)
        .limit(limit)
    )
    return [(int(seq), str(profile)) for seq, profile in rows]


# --- verification -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """The first break in a chain: ``kind`` is edited, deleted or reordered; ``record_id`` is
    the record at fault (None when it was deleted) and ``seq`` where the chain breaks."""

    kind: str
    seq: int
    record_id: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The result of walking a workspace's chain: ``checked`` records were found intact."""

    ok: bool
    checked: int
    problem: Problem | None = None


def _rehash(record: ConsentRecord, seq: int) -> str:
    return replace(record.chain_fields(), seq=seq).digest()


def verify(*, session: Session, workspace_id: str) -> VerifyReport:
    """Walk the chain in seq order and report the first edited, deleted or reordered record."""

    def proof_intact(record: ConsentRecord) -> Break | None:
        proof = record.proof
        if (
            proof is None
            or is_erased_proof(proof)
            or any(proof.get(k, "") is None for k in PERSONAL_PROOF_KEYS)
        ):
            return None  # erased (reduced, or its values can no longer be opened): digest stands
        if proof_digest(proof) != record.proof_digest:
            return Break("edited", record.seq, record.id, "the proof does not match its digest")
        return None

    chain, head = stored_chain(
        session,
        workspace_id,
        ConsentRecordRow,
        ConsentChainHeadRow,
        rehash=_rehash,
        noun="record",
        plural="records",
        whole="chain",
    )
    result = chain.walk(walk(session=session, workspace_id=workspace_id), head, proof_intact)
    broken = result.broken
    problem = Problem(broken.kind, broken.seq, broken.link_id, broken.detail) if broken else None
    return VerifyReport(ok=result.ok, checked=result.checked, problem=problem)


# --- erasure ------------------------------------------------------------------------------------


def erase_subject(
    *, session: Session, workspace_id: str, profile_ids: Sequence[str], at: datetime
) -> tuple[int, int]:
    """Erase people from consent: their current states go; their ledger records stay (the
    proof that consent was asked and given, Art. 7(1)) with a proof reduced to what does not
    identify them (:func:`erased_proof`). Returns (states deleted, records whose proof was
    reduced). The chain still verifies: a record's hash covers its proof's digest, not the
    proof."""
    states = reduced = 0
    for start in range(0, len(profile_ids), 500):
        part = profile_ids[start : start + 500]
        result = session.execute(
            delete(ConsentStateRow).where(
                ConsentStateRow.workspace_id == workspace_id, ConsentStateRow.profile_id.in_(part)
            )
        )
        states += int(getattr(result, "rowcount", 0) or 0)
        rows = session.execute(
            select(ConsentRecordRow.id, ConsentRecordRow.proof).where(
                ConsentRecordRow.workspace_id == workspace_id,
                ConsentRecordRow.profile_id.in_(part),
                ConsentRecordRow.proof.is_not(None),
            )
        ).all()
        for record_id, proof in rows:
            if proof is None or is_erased_proof(proof):
                continue
            session.execute(
                update(ConsentRecordRow)
                .where(ConsentRecordRow.id == record_id)
                .values(proof=erased_proof(proof, at))
            )
            reduced += 1
    return states, reduced


# --- receipts -----------------------------------------------------------------------------------


def receipt(*, session: Session, workspace_id: str, record_id: str) -> dict[str, Any]:
    """A consent receipt (Kantara CR v1.1 / ISO/IEC TS 27560 fields) for one record."""
    record = get_record(session=session, workspace_id=workspace_id, record_id=record_id)
    workspace = tenancy.get_workspace(session=session, workspace_id=workspace_id)
    config = get_config(session=session, workspace_id=workspace_id)
    purpose = config.purpose(record.purpose) or Purpose(record.purpose, record.purpose, "other")
    shown = build_receipt(
        record,
        controller=workspace.name,
        jurisdiction=_jurisdiction(session, workspace_id, record.profile_id),
        purpose=purpose,
    )
    if record.notice_version is not None:
        shown["noticeHashes"] = notices.hashes_of(
            session=session, workspace_id=workspace_id, version=record.notice_version
        )
    return shown


def _jurisdiction(session: Session, workspace_id: str, profile_id: str) -> str:
    """The subject's country now, or ``unknown`` (the profile may have been erased)."""
    try:
        view = profiles.get_profile(
            session=session, workspace_id=workspace_id, profile_id=profile_id
        )
    except NotFound:
        return "unknown"
    return country_of(view.traits) or "unknown"


# --- rates --------------------------------------------------------------------------------------


def choices(
    *,
    session: Session,
    workspace_id: str,
    since: datetime,
    until: datetime,
    purpose: str | None = None,
    channel: str | None = None,
) -> Iterator[Choice]:
    """The choices made in ``[since, until)``, streamed, for :mod:`consentry.consent.rates`."""
    r = ConsentRecordRow
    query = select(r.occurred_at, r.purpose, r.channel, r.source, r.notice_version, r.state).where(
        r.workspace_id == workspace_id, r.occurred_at >= since, r.occurred_at < until
    )
    if purpose is not None:
        query = query.where(r.purpose == purpose)
    if channel is not None:
        query = query.where(r.channel == channel)
    for row in session.execute(query.execution_options(yield_per=CHUNK)):
        yield Choice(*row)
