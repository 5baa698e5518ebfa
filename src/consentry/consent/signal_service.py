"""Use cases of consent signals: a TC string sent to the API, Global Privacy Control and the
consent object carried on events (applied while ingestion processes them), GPC seen by a customer
page, and each workspace's map of consent categories. The rules are in
:mod:`consentry.consent.signals` and :mod:`consentry.consent.tcf`.

Functions take a session and keyword-only arguments and never commit: the caller owns the
transaction (for events, the one that applies them and moves the ingestion cursor).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.consent.ledger import append, check, get_config
from consentry.consent.models import (
    ANY_CHANNEL,
    DENIED,
    REFUSALS,
    ConsentEntry,
    ConsentRecord,
    ProofIn,
    aware,
    make_proof,
    strip_url,
    truncate_ip,
)
from consentry.consent.signals import (
    CMP_SOURCE,
    GPC_PURPOSE,
    GPC_SOURCE,
    Standing,
    category_map_problems,
    category_needs_record,
    category_preferences,
    effective_map,
    gpc_needs_record,
    has_gpc,
    normalize_category,
    read_categories,
)
from consentry.consent.tables import ConsentRecordRow, ConsentSignalSettingsRow, ConsentStateRow
from consentry.consent.tcf import TCString, TCStringError, decode, tcf_choices
from consentry.errors import FieldError, Invalid
from consentry.platform import tenancy
from consentry.platform.db import utcnow
from consentry.profiles import service as profiles

log = logging.getLogger(__name__)
CHUNK = 500

Key = tuple[str, str]  # (unified profile id, purpose)


# --- TCF ----------------------------------------------------------------------------------------


def record_tcf(
    *,
    session: Session,
    workspace_id: str,
    profile_id: str,
    tc_string: str,
    actor: str,
    occurred_at: datetime | None = None,
    notice_version: str | None = None,
    proof: ProofIn | None = None,
) -> tuple[TCString, list[ConsentRecord]]:
    """Record what a TC string says of each mapped purpose the workspace has, source ``cmp``,
    the raw string kept in the proof; all or nothing. A malformed string is Invalid naming the
    field ``tc_string``, and nothing is recorded."""
    try:
        tc = decode(tc_string)
    except TCStringError as exc:
        raise Invalid(
            "the TC string is malformed; nothing was recorded",
            [FieldError("tc_string", exc.reason)],
        ) from exc
    config = get_config(session=session, workspace_id=workspace_id)
    kept = (proof or ProofIn()).model_copy(update={"cmp_string": tc_string.strip()})
    stored_proof, errors = make_proof(kept)
    if errors:
        raise Invalid("the proof is not valid; nothing was recorded", errors)
    now = utcnow()
    when = aware(occurred_at) if occurred_at else now
    entries = [
        ConsentEntry(
            profile_id=profile_id,
            purpose=choice.purpose,
            channel=ANY_CHANNEL,
            state=choice.state,
            source=CMP_SOURCE,
            occurred_at=when,
            actor=actor,
            legal_basis=choice.legal_basis,
            notice_version=notice_version,
            proof=stored_proof,
        )
        for choice in tcf_choices(tc, config.purpose_keys)
    ]
    return tc, append(session=session, workspace_id=workspace_id, entries=entries, recorded_at=now)


# --- GPC on a customer page ---------------------------------------------------------------------


def record_gpc(
    *,
    session: Session,
    workspace_id: str,
    profile_id: str,
    actor: str,
    occurred_at: datetime | None = None,
    proof: ProofIn | Mapping[str, str] | None = None,
) -> ConsentRecord | None:
    """Honour a ``Sec-GPC: 1`` seen on a request made for ``profile_id`` (e.g. a preference
    center page): deny sale/sharing, source ``gpc``, unless a GPC denial already stands or a
    grant made after the signal acknowledged it. Returns the new record, or None.

    ``proof`` is a ProofIn, or a proof already in its stored form (``make_proof``'s output).
    A page that lets the customer grant sale/sharing despite the signal records that grant with
    the proof's ``gpc`` set (and does not call this in the same request), which acknowledges it.
    """
    if GPC_PURPOSE not in get_config(session=session, workspace_id=workspace_id).purpose_keys:
        return None
    canonical = profiles.canonical_of(
        session=session, workspace_id=workspace_id, profile_id=profile_id
    )
    owner = _owners(session, workspace_id, [canonical])
    standing = _standings(session, workspace_id, owner, {GPC_PURPOSE}).get((canonical, GPC_PURPOSE))
    if not gpc_needs_record(standing):
        return None
    if proof is None or isinstance(proof, ProofIn):
        stored_proof, errors = make_proof((proof or ProofIn()).model_copy(update={"gpc": True}))
        if errors:
            raise Invalid("the proof is not valid; nothing was recorded", errors)
    else:
        stored_proof = {**proof, "gpc": "1"}
    now = utcnow()
    entry = ConsentEntry(
        profile_id=profile_id,
        purpose=GPC_PURPOSE,
        channel=ANY_CHANNEL,
        state=DENIED,
        source=GPC_SOURCE,
        occurred_at=aware(occurred_at) if occurred_at else now,
        actor=actor,
        proof=stored_proof,
    )
    (stored,) = append(session=session, workspace_id=workspace_id, entries=[entry], recorded_at=now)
    return stored


# --- signals on events --------------------------------------------------------------------------


class SignalMessage(Protocol):
    """What event processing knows of a message (``ingest.models.Envelope`` is one)."""

    @property
    def profile_id(self) -> str | None: ...

    @property
    def message_id(self) -> str: ...

    @property
    def timestamp(self) -> datetime: ...

    @property
    def payload(self) -> Mapping[str, Any]: ...


@dataclass(slots=True)
class SignalResult:
    """What the signals of a chunk of events did."""

    gpc_recorded: int = 0
    categories_recorded: int = 0
    unknown_categories: int = 0
    invalid_categories: int = 0
    dropped: int = 0


def apply_event_signals(
    *, session: Session, workspace_id: str, messages: Iterable[SignalMessage]
) -> SignalResult:
    """Record the GPC signal (``context.gpc``) and the consent object
    (``context.consent.categoryPreferences``) of resolved messages, in their order, once per
    change. Costs nothing for messages that carry neither."""
    found = [
        (m, has_gpc(m.payload), category_preferences(m.payload))
        for m in messages
        if m.profile_id is not None
    ]
    found = [item for item in found if item[1] or item[2] is not None]
    result = SignalResult()
    if not found:
        return result
    purposes = get_config(session=session, workspace_id=workspace_id).purpose_keys
    mapping = (
        category_map(session=session, workspace_id=workspace_id)
        if any(prefs is not None for _, _, prefs in found)
        else {}
    )
    canonical = profiles.canonical_map(
        session=session,
        workspace_id=workspace_id,
        profile_ids={m.profile_id for m, _, _ in found if m.profile_id},
    )
    owner = _owners(session, workspace_id, set(canonical.values()))
    watched = ({GPC_PURPOSE} | {p for targets in mapping.values() for p in targets}) & purposes
    standings = _standings(session, workspace_id, owner, watched)
    last_cmp = _last_cmp(session, workspace_id, owner, watched)
    now = utcnow()
    entries: list[ConsentEntry] = []
    for message, gpc, prefs in found:
        unified = canonical.get(message.profile_id or "")
        if unified is None:
            continue
        made = _EntryMaker(message, gpc, now)
        key = (unified, GPC_PURPOSE)
        if gpc and GPC_PURPOSE in purposes and gpc_needs_record(standings.get(key)):
            entries.append(made(GPC_PURPOSE, DENIED, GPC_SOURCE))
            standings[key] = Standing(DENIED, GPC_SOURCE, gpc_seen=True)
            result.gpc_recorded += 1
        if prefs is None:
            continue
        reading = read_categories(prefs, mapping, purposes)
        result.unknown_categories += reading.unknown
        result.invalid_categories += reading.invalid
        for purpose, wanted in reading.states.items():
            key = (unified, purpose)
            if category_needs_record(wanted, last_cmp.get(key), standings.get(key), purpose):
                entries.append(made(purpose, wanted, CMP_SOURCE))
                last_cmp[key] = wanted
                standings[key] = Standing(wanted, CMP_SOURCE, gpc_seen=gpc)
                result.categories_recorded += 1
    _append_valid(session, workspace_id, entries, now, result)
    _log(workspace_id, result)
    return result


class _EntryMaker:
    """Makes a message's entries: its time (never in the future), its message id as the actor,
    and what its context proves (truncated IP, user agent, page), worked out on first use."""

    def __init__(self, message: SignalMessage, gpc: bool, now: datetime) -> None:
        self.message, self.gpc, self.now = message, gpc, now
        self.proof: dict[str, str] | None = None
        self.ready = False

    def __call__(self, purpose: str, state: str, source: str) -> ConsentEntry:
        if not self.ready:
            self.proof, self.ready = _event_proof(self.message.payload, self.gpc), True
        return ConsentEntry(
            profile_id=self.message.profile_id or "",
            purpose=purpose,
            channel=ANY_CHANNEL,
            state=state,
            source=source,
            occurred_at=min(aware(self.message.timestamp), self.now),
            actor=f"event:{self.message.message_id}"[:200],
            proof=self.proof,
        )


def _event_proof(payload: Mapping[str, Any], gpc: bool) -> dict[str, str] | None:
    context = payload.get("context")
    context = context if isinstance(context, Mapping) else {}
    proof: dict[str, str] = {}
    ip = context.get("ip")
    if isinstance(ip, str):
        try:
            proof["ip"] = truncate_ip(ip)
        except ValueError:
            pass
    agent = context.get("userAgent")
    if isinstance(agent, str) and agent:
        proof["user_agent"] = agent[:512]
    page = context.get("page")
    url = page.get("url") if isinstance(page, Mapping) else None
    if isinstance(url, str) and url:
        try:
            proof["page_url"] = strip_url(url)[:2048]
        except ValueError:  # not a URL (e.g. an unclosed IPv6 host): left out
            pass
    if gpc:
        proof["gpc"] = "1"
    return proof or None


def _append_valid(
    session: Session,
    workspace_id: str,
    entries: Sequence[ConsentEntry],
    now: datetime,
    result: SignalResult,
) -> None:
    """Append what the ledger accepts; a bad entry is dropped and counted, never raised: the
    events are stored and must be applied."""
    if not entries:
        return
    problems = check(session=session, workspace_id=workspace_id, entries=entries, now=now)
    bad = {e.index for e in problems}
    if bad:
        result.dropped += len(bad)
        entries = [e for i, e in enumerate(entries) if i not in bad]
    if entries:
        append(session=session, workspace_id=workspace_id, entries=entries, recorded_at=now)


def _log(workspace_id: str, result: SignalResult) -> None:
    """Counts only: category names are free text and could hold personal data."""
    if result.unknown_categories or result.invalid_categories or result.dropped:
        log.warning(
            "consent signals of workspace %s: %d unknown and %d invalid consent categories "
            "ignored, %d records dropped",
            workspace_id,
            result.unknown_categories,
            result.invalid_categories,
            result.dropped,
        )


# --- reading the standing of unified profiles ---------------------------------------------------


def _owners(session: Session, workspace_id: str, canonical_ids: Iterable[str]) -> dict[str, str]:
    """The unified profile of every member of these unified profiles (chunked IN queries)."""
    found = profiles.members_many(
        session=session, workspace_id=workspace_id, canonical_ids=sorted(set(canonical_ids))
    )
    return {member: canonical for canonical, ms in found.items() for member in ms}


def _standings(
    session: Session, workspace_id: str, owner: Mapping[str, str], purposes: Iterable[str]
) -> dict[Key, Standing]:
    """Per (unified profile, purpose), the state of channel ``any`` that decides (the latest by
    occurred_at, a refusal winning a tie, as in ``policy.latest``), with the source and GPC
    proof of its record: one query per chunk of members."""
    wanted = sorted(set(purposes))
    members = sorted(owner)
    if not members or not wanted:
        return {}
    s, r = ConsentStateRow, ConsentRecordRow
    best: dict[Key, tuple[datetime, bool, str, Standing]] = {}
    for start in range(0, len(members), CHUNK):
        rows = session.execute(
            select(s.profile_id, s.purpose, s.state, s.occurred_at, s.record_id, r.source, r.proof)
            .join(r, r.id == s.record_id)
            .where(
                s.workspace_id == workspace_id,
                s.profile_id.in_(members[start : start + CHUNK]),
                s.purpose.in_(wanted),
                s.channel == ANY_CHANNEL,
            )
        )
        for profile_id, purpose, state, occurred_at, record_id, source, proof in rows:
            key = (owner[profile_id], purpose)
            rank = (occurred_at, state in REFUSALS, record_id)
            if key not in best or rank > best[key][:3]:
                best[key] = (*rank, Standing(state, source, _gpc_seen(proof)))
    return {key: value[3] for key, value in best.items()}


def _gpc_seen(proof: Any) -> bool:
    return isinstance(proof, Mapping) and proof.get("gpc") == "1"


def _last_cmp(
    session: Session, workspace_id: str, owner: Mapping[str, str], purposes: Iterable[str]
) -> dict[Key, str]:
    """Per (unified profile, purpose), the state of the latest record a CMP made."""
    wanted = sorted(set(purposes))
    members = sorted(owner)
    if not members or not wanted:
        return {}
    r = ConsentRecordRow
    best: dict[Key, tuple[datetime, int, str]] = {}
    for start in range(0, len(members), CHUNK):
        rows = session.execute(
            select(r.profile_id, r.purpose, r.occurred_at, r.seq, r.state).where(
                r.workspace_id == workspace_id,
                r.profile_id.in_(members[start : start + CHUNK]),
                r.purpose.in_(wanted),
                r.channel == ANY_CHANNEL,
                r.source == CMP_SOURCE,
            )
        )
        for profile_id, purpose, occurred_at, seq, state in rows:
            key = (owner[profile_id], purpose)
            if key not in best or (occurred_at, seq) > best[key][:2]:
                best[key] = (occurred_at, seq, state)
    return {key: value[2] for key, value in best.items()}


# --- the workspace's category map ---------------------------------------------------------------


def workspace_categories(*, session: Session, workspace_id: str) -> dict[str, list[str]]:
    """The workspace's own category entries (normalised names), without the defaults."""
    row = session.get(ConsentSignalSettingsRow, workspace_id)
    return dict(row.categories) if row is not None else {}


def category_map(*, session: Session, workspace_id: str) -> dict[str, tuple[str, ...]]:
    """The categories read on events: the defaults with the workspace's entries over them."""
    return effective_map(workspace_categories(session=session, workspace_id=workspace_id))


def set_categories(
    *, session: Session, workspace_id: str, categories: Mapping[str, Any]
) -> dict[str, list[str]]:
    """Replace the workspace's own category entries (each name maps to a list of purposes;
    an empty list ignores the category). Invalid names every bad entry; nothing is changed."""
    tenancy.get_workspace(session=session, workspace_id=workspace_id)
    purposes = get_config(session=session, workspace_id=workspace_id).purpose_keys
    errors = category_map_problems(categories, purposes)
    if errors:
        raise Invalid("the category map is not valid; nothing was changed", errors)
    stored = {normalize_category(name): list(targets) for name, targets in categories.items()}
    row = session.get(ConsentSignalSettingsRow, workspace_id)
    if row is None:
        row = ConsentSignalSettingsRow(workspace_id=workspace_id)
        session.add(row)
    row.categories, row.updated_at = stored, utcnow()
    session.flush()
    return stored


__all__ = [
    "SignalMessage",
    "SignalResult",
    "apply_event_signals",
    "category_map",
    "record_gpc",
    "record_tcf",
    "set_categories",
    "workspace_categories",
]
