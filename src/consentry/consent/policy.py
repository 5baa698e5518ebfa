"""The one place that decides whether consent allows a use of a subject's data.

Every activation path asks :func:`can_use` (one subject) or :func:`can_use_many` (an audience);
nothing else reads consent state to decide. The rules, in order:

1. The subject is the unified profile: per (purpose, channel) the latest state by occurred_at
   across all its member profiles counts (a refusal wins a tie).
2. A channel-specific state wins over the channel ``any``, except that a denial or withdrawal
   for ``any`` recorded after the channel's own state overrides it.
3. A denial or withdrawal always refuses (it does not expire).
4. A grant in force (no expiry, or expiry after ``at``) allows, whatever its legal basis.
5. Otherwise (no state, pending confirmation, expired) the regime decides: opt-in refuses,
   opt-out allows.

The regime comes from the subject's country (trait ``country`` or ``address.country``): the EU,
EEA, UK and Switzerland are opt-in, the US opt-out, anything else the workspace's default.

How it reads. Both forms decide through one function, :func:`_decide_all`, over the same input:
per unified profile, its states of the purpose as plain tuples (``StateRow``: timestamps as the
driver gives them, turned into datetimes only where a rule compares them), and its regime.

- One subject (:func:`can_use`, :func:`decide_person`): one statement, one round trip, returns
  the person (unified profile and members, through ``profiles.bulk.person_select``), the
  members' states of the purpose, the country traits and the workspace's consent settings.
- An audience (:func:`can_use_many`): small sets through chunked ``IN`` lists; past
  ``profiles.bulk.SCAN_ABOVE`` ids, the workspace is read whole with raw cursors in big
  batches: the unified ids and merged members, the purpose's states, each distinct country
  value once (``profiles.bulk.trait_values``), then only the profiles holding a value that
  picks another regime than the default (``profiles.bulk.trait_code_holders``). Subjects
  without a state share one decision per regime; the answer is built with ``dict`` updates.
"""

from __future__ import annotations

import functools
import gc
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any, Literal, cast

from sqlalchemy import (
    CompoundSelect,
    Select,
    String,
    any_,
    bindparam,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from consentry.consent.ledger import config_of, get_config, states_of
from consentry.consent.models import (
    ANY_CHANNEL,
    CHANNELS,
    CONSENT,
    GRANTED,
    OPT_OUT,
    PENDING,
    REFUSALS,
    REGIMES,
    ConsentConfig,
    CurrentState,
    Decision,
    country_of,
    regime_for,
)
from consentry.consent.tables import ConsentSettingsRow, ConsentStateRow
from consentry.errors import FieldError, Invalid, NotFound
from consentry.platform.columnar import raw_batches
from consentry.platform.db import JSONType, UTCDateTime, one_of, utcnow
from consentry.profiles import bulk
from consentry.profiles import service as profiles

SMALL_AUDIENCE = 1000  # up to this many unified profiles, read members; beyond, scan the purpose
COUNTRY_TRAITS = ("country", "address", "address.country")

# --- the rules (pure) ---------------------------------------------------------------------------


def latest(states: Iterable[CurrentState]) -> CurrentState | None:
    """The latest state by occurred_at; on a tie a refusal wins."""
    return max(
        states,
        key=lambda s: (s.occurred_at, s.state in REFUSALS, s.record_id),
        default=None,
    )


def effective(specific: CurrentState | None, blanket: CurrentState | None) -> CurrentState | None:
    """The channel's own state wins over ``any``, unless ``any`` is a later refusal."""
    if specific is None or blanket is None:
        return specific or blanket
    if blanket.state in REFUSALS and blanket.occurred_at > specific.occurred_at:
        return blanket
    return specific


def pick(states: Iterable[CurrentState], channel: str) -> CurrentState | None:
    """The state that decides for ``channel`` among a unified profile's states of one purpose."""
    states = list(states)
    specific = latest(s for s in states if s.channel == channel)
    if channel == ANY_CHANNEL:
        return specific
    return effective(specific, latest(s for s in states if s.channel == ANY_CHANNEL))


def decide(state: CurrentState | None, regime: str, at: datetime) -> Decision:
    """Allow or refuse on the deciding state, under the subject's regime."""
    if state is None:
        return _regime_default(regime, "no_consent", None)
    return _verdict(state.state, state.legal_basis, state.record_id, state.expires_at, regime, at)


def _verdict(
    state: str,
    legal_basis: str,
    record_id: str,
    expires_at: datetime | None,
    regime: str,
    at: datetime,
) -> Decision:
    """:func:`decide` on the fields of the deciding state (the batch form has no object)."""
    if state in REFUSALS:
        return Decision(False, state, record_id, regime)
    in_force = expires_at is None or expires_at > at
    if state == GRANTED and in_force:
        reason = "granted" if legal_basis == CONSENT else legal_basis
        return Decision(True, reason, record_id, regime)
    reason = "pending_confirmation" if state == PENDING and in_force else "expired"
    return _regime_default(regime, reason, record_id)


_OPT_OUT_DEFAULT = Decision(True, "opt_out_regime_default", None, OPT_OUT)


def _regime_default(regime: str, reason: str, record_id: str | None) -> Decision:
    if regime == OPT_OUT:
        return _OPT_OUT_DEFAULT  # immutable: one instance serves every subject
    return Decision(False, reason, record_id, regime)


def check_use(config: ConsentConfig, purpose: str, channel: str) -> None:
    """Raise Invalid naming the field when the purpose or channel is unknown."""
    errors = []
    if purpose not in config.purpose_keys:
        errors.append(FieldError("purpose", f"unknown purpose {purpose[:100]!r}"))
    if channel not in CHANNELS:
        errors.append(FieldError("channel", f"unknown channel; one of {', '.join(CHANNELS)}"))
    if errors:
        raise Invalid("unknown purpose or channel", errors)


def _channels(channel: str) -> list[str]:
    return [channel] if channel == ANY_CHANNEL else [channel, ANY_CHANNEL]


# --- the one decision over store rows -----------------------------------------------------------

# A member's state of the purpose as read: (profile_id, channel, state, legal_basis, record_id,
# occurred_at, expires_at), the timestamps as the driver returns them.
StateRow = tuple[Any, ...]
Timestamp = Callable[[Any], datetime | None]


def _as_is(value: Any) -> datetime | None:
    """Timestamps of rows SQLAlchemy already converted."""
    return value  # type: ignore[no-any-return]


def _raw_timestamps(session: Session) -> Timestamp:
    """How a raw cursor's timestamp becomes the datetime ``UTCDateTime`` reads (SQLite: text)."""
    dialect = session.get_bind().dialect
    process = UTCDateTime().result_processor(dialect, None)
    if process is None:
        return _as_is
    return cast(Timestamp, process)


def _decide_all(
    single: Mapping[str, StateRow],
    several: Mapping[str, Sequence[StateRow]],
    regimes: Mapping[str, str],
    default_regime: str,
    purpose: str,
    channel: str,
    at: datetime,
    timestamp: Timestamp,
) -> dict[str, Decision]:
    """The decision for each unified profile that has states of the purpose: ``single``, those
    with one state (of the channel or of ``any``: what :func:`pick` chooses from one), and
    ``several``, the others with all theirs (picked as :func:`can_use` picks). A unified
    profile without a state is decided by its regime alone: :func:`_stateless`.

    A single state without expiry is decided once per (state, legal basis, regime) by
    :func:`_verdict`, and the outcome copied with the subject's record: the same rule, not one
    call per subject."""
    decisions: dict[str, Decision] = {}
    regime_of = regimes.get
    outcomes: dict[tuple[str, str, str], Decision] = {}
    for canonical_id, (_, _, state, legal_basis, record_id, _, expires_at) in single.items():
        regime = regime_of(canonical_id, default_regime)
        if expires_at is not None:
            expiry = timestamp(expires_at)
            decisions[canonical_id] = _verdict(state, legal_basis, record_id, expiry, regime, at)
            continue
        outcome = outcomes.get((state, legal_basis, regime))
        if outcome is None:
            outcome = outcomes[(state, legal_basis, regime)] = _verdict(
                state, legal_basis, _SOME_RECORD, None, regime, at
            )
        if outcome.record_id is None:  # the regime's shared default: no record of its own
            decisions[canonical_id] = outcome
        else:
            decisions[canonical_id] = Decision(outcome.allowed, outcome.reason, record_id, regime)
    for canonical_id, rows in several.items():
        found = [
            CurrentState(
                row[0],
                purpose,
                row[1],
                row[2],
                row[3],
                row[4],
                timestamp(row[5]),  # type: ignore[arg-type]  # occurred_at is never null
                None if row[6] is None else timestamp(row[6]),
            )
            for row in rows
        ]
        regime = regime_of(canonical_id, default_regime)
        decisions[canonical_id] = decide(pick(found, channel), regime, at)
    return decisions


_SOME_RECORD = "record"  # stands for the subject's record while an outcome is worked out


def _split(
    grouped: Mapping[str, list[StateRow]],
) -> tuple[dict[str, StateRow], dict[str, list[StateRow]]]:
    """``(single, several)`` for :func:`_decide_all` from states grouped by unified profile."""
    single = {c: rows[0] for c, rows in grouped.items() if len(rows) == 1}
    several = {c: rows for c, rows in grouped.items() if len(rows) > 1}
    return single, several


def _stateless(at: datetime) -> dict[str, Decision]:
    """The decision of a subject without any state, per regime (shared by all such subjects)."""
    return {regime: decide(None, regime, at) for regime in REGIMES}


def _decide_each(
    canonical_ids: Iterable[str],
    states: Mapping[str, list[StateRow]],
    regimes: Mapping[str, str],
    default_regime: str,
    purpose: str,
    channel: str,
    at: datetime,
    timestamp: Timestamp,
) -> dict[str, Decision]:
    """The decision of each of ``canonical_ids`` from its ``states`` (grouped by unified
    profile) through :func:`_decide_all`; one without a state gets its regime's shared one."""
    decided = _decide_all(*_split(states), regimes, default_regime, purpose, channel, at, timestamp)
    stateless = _stateless(at)
    return {c: decided.get(c) or stateless[regimes.get(c, default_regime)] for c in canonical_ids}


# --- one subject --------------------------------------------------------------------------------


PURPOSE_NOT_CONFIGURED = "purpose_not_configured"


@dataclass(frozen=True, slots=True)
class _Subject:
    """What one round trip read about a subject."""

    config: ConsentConfig
    canonical: str | None  # None: no profile of the workspace
    members: list[str]
    states: list[StateRow]
    country_traits: list[tuple[str, Any]]


def _read_subject(
    session: Session,
    workspace_id: str,
    profile_id: str,
    purpose: str,
    channel: str,
    members: Sequence[str] | None,
) -> _Subject:
    """The person, their members' states of the purpose over ``channel`` and ``any``, their
    country traits and the workspace's consent settings: one statement (``UNION ALL`` of
    indexed look-ups), one round trip. With ``members`` given, ``profile_id`` is the unified
    profile and is not looked up."""
    postgres = session.get_bind().dialect.name == "postgresql"
    params: dict[str, Any] = {
        "workspace_id": workspace_id,
        "profile_id": profile_id,
        "purpose": purpose,
        "channels": _channels(channel),
    }
    if members is not None:
        params["members"] = list(members)
    found_states: list[StateRow] = []
    found_members: list[str] = []
    traits_found: list[tuple[str, Any]] = []
    settings: tuple[str, Any] | None = None
    unified = profile_id if members is not None else None
    statement = _subject_statement(postgres, members is not None)
    for kind, a, b, c, d, e, t1, t2, v in session.execute(statement, params):
        if kind == "s":
            found_states.append((a, b, c, d, e, t1, t2))
        elif kind == "m":
            found_members.append(a)
            unified = b
        elif kind == "t":
            traits_found.append((a, v))
        else:
            settings = (a, v)
    return _Subject(
        config=ConsentConfig() if settings is None else config_of(*settings),
        canonical=unified,
        members=list(members) if members is not None else sorted(found_members),
        states=found_states,
        country_traits=traits_found,
    )


@functools.cache
def _subject_statement(postgres: bool, members_given: bool) -> CompoundSelect[*tuple[Any, ...]]:
    """The statement of :func:`_read_subject`, built once per form with bound parameters
    (``workspace_id``, ``profile_id``, ``purpose``, ``channels``, ``members``): building it
    was most of a decision's cost, and the same statement object reuses SQLAlchemy's compiled
    form. Rows: ``(kind, a, b, c, d, e, t1, t2, v)``; kind ``s``: a state, ``m``: a member and
    its unified profile, ``t``: a country trait ``(key, value)``, ``c``: the consent settings
    ``(default_regime, purposes)``."""
    s = ConsentStateRow
    workspace_id = bindparam("workspace_id", type_=String)
    text_null = sql_cast(null(), String)
    time_null = sql_cast(null(), UTCDateTime())
    json_null = sql_cast(null(), JSONType)
    parts: list[Select[*tuple[Any, ...]]] = []
    canonical: ColumnElement[str]
    owned: ColumnElement[bool]
    if members_given:
        if postgres:  # one array parameter: the same text whatever the count
            owned = s.profile_id == any_(bindparam("members", type_=ARRAY(String)))
        else:
            owned = s.profile_id.in_(bindparam("members", expanding=True))
        canonical = bindparam("profile_id", type_=String)
    else:
        profile_id = bindparam("profile_id", type_=String)
        person = bulk.person_select(workspace_id, profile_id).cte("person")
        owned = s.profile_id.in_(select(person.c.member_id))
        canonical = select(person.c.canonical_id).limit(1).scalar_subquery()
        parts.append(
            select(
                literal_column("'m'"),
                person.c.member_id,
                person.c.canonical_id,
                text_null,
                text_null,
                text_null,
                time_null,
                time_null,
                json_null,
            )
        )
    states: Select[*tuple[Any, ...]] = select(
        literal_column("'s'").label("kind"),
        s.profile_id.label("a"),
        s.channel.label("b"),
        s.state.label("c"),
        s.legal_basis.label("d"),
        s.record_id.label("e"),
        s.occurred_at.label("t1"),
        s.expires_at.label("t2"),
        json_null.label("v"),
    ).where(
        s.workspace_id == workspace_id,
        owned,
        s.purpose == bindparam("purpose", type_=String),
        s.channel.in_(bindparam("channels", expanding=True)),
    )
    traits = bulk.person_traits_select(workspace_id, canonical, COUNTRY_TRAITS).subquery()
    parts.append(
        select(
            literal_column("'t'"),
            traits.c.key,
            text_null,
            text_null,
            text_null,
            text_null,
            time_null,
            time_null,
            traits.c.value,
        )
    )
    c = ConsentSettingsRow
    parts.append(
        select(
            literal_column("'c'"),
            c.default_regime,
            text_null,
            text_null,
            text_null,
            text_null,
            time_null,
            time_null,
            c.purposes,
        ).where(c.workspace_id == workspace_id)
    )
    return union_all(states, *parts)


def _decide_subject(
    session: Session,
    workspace_id: str,
    subject: _Subject,
    purpose: str,
    channel: str,
    at: datetime | None,
) -> Decision:
    """The decision for a subject read by :func:`_read_subject` (a known profile)."""
    assert subject.canonical is not None
    default = subject.config.default_regime
    values = bulk.open_trait_values(session, workspace_id, subject.country_traits)
    traits = {key: value for (key, _), value in zip(subject.country_traits, values, strict=True)}
    regime = regime_for(country_of(traits), default)
    canonical = subject.canonical
    states = {canonical: subject.states} if subject.states else {}
    when = at or utcnow()
    return _decide_each([canonical], states, {}, regime, purpose, channel, when, _as_is)[canonical]


def can_use(
    *,
    session: Session,
    workspace_id: str,
    profile_id: str,
    purpose: str,
    channel: str,
    at: datetime | None = None,
    members: Sequence[str] | None = None,
    unconfigured: Literal["invalid", "refuse"] = "invalid",
) -> Decision:
    """May ``purpose`` use the unified profile of ``profile_id`` over ``channel`` at ``at``?

    A caller that already resolved the person passes the unified profile's id as
    ``profile_id`` and its ``members`` (no second look-up). A purpose the workspace has not
    configured is a bad request (``Invalid``), or, with ``unconfigured="refuse"`` (a feature
    that asks for its own purpose, not the client's), a refusal: nobody agreed to it.
    One round trip to the store."""
    subject = _read_subject(session, workspace_id, profile_id, purpose, channel, members)
    return _decision(session, workspace_id, profile_id, subject, purpose, channel, at, unconfigured)


def _decision(
    session: Session,
    workspace_id: str,
    profile_id: str,
    subject: _Subject,
    purpose: str,
    channel: str,
    at: datetime | None,
    unconfigured: Literal["invalid", "refuse"],
) -> Decision:
    """:func:`can_use`'s answer on what :func:`_read_subject` read: an unconfigured purpose
    refused (``unconfigured="refuse"``) or invalid, an unknown channel invalid, an unknown
    profile not found, else the decision."""
    config = subject.config
    if unconfigured == "refuse" and purpose not in config.purpose_keys:
        if channel not in CHANNELS:  # a bad channel is still the caller's error
            check_use(config, purpose, channel)
        return Decision(False, PURPOSE_NOT_CONFIGURED, None, config.default_regime)
    check_use(config, purpose, channel)
    if subject.canonical is None:
        raise NotFound(f"no profile {profile_id!r} in this workspace")
    return _decide_subject(session, workspace_id, subject, purpose, channel, at)


@dataclass(frozen=True, slots=True)
class PersonDecision:
    """:func:`can_use` for a profile id, with the person it resolved to."""

    profile_id: str  # the unified profile
    member_ids: list[str]  # every member, the unified profile included, sorted
    decision: Decision


def decide_person(
    *,
    session: Session,
    workspace_id: str,
    profile_id: str,
    purpose: str,
    channel: str,
    at: datetime | None = None,
    unconfigured: Literal["invalid", "refuse"] = "invalid",
) -> PersonDecision:
    """:func:`can_use` for a profile id not resolved yet, returning the unified profile and its
    members too, in the same single round trip (a serving path needs both: recommendations).
    ``NotFound`` for an id that is no profile of the workspace, before any other check."""
    subject = _read_subject(session, workspace_id, profile_id, purpose, channel, None)
    if subject.canonical is None:
        raise NotFound(f"no profile {profile_id!r} in this workspace")
    decision = _decision(
        session, workspace_id, profile_id, subject, purpose, channel, at, unconfigured
    )
    return PersonDecision(subject.canonical, subject.members, decision)


def deciding_state(
    *, session: Session, workspace_id: str, profile_id: str, purpose: str, channel: str
) -> CurrentState | None:
    """The state that decides for ``channel`` across the unified profile (None: there is none).

    For flows that must know what stands before they record (double opt-in refuses to ask for
    a grant already in force); the decision itself is :func:`can_use`'s.
    """
    canonical = profiles.canonical_of(
        session=session, workspace_id=workspace_id, profile_id=profile_id
    )
    members = profiles.member_ids(
        session=session, workspace_id=workspace_id, canonical_id=canonical
    )
    states = states_of(
        session=session,
        workspace_id=workspace_id,
        profile_ids=members,
        purpose=purpose,
        channels=_channels(channel),
    )
    return pick(states, channel)


@dataclass(frozen=True, slots=True)
class SubjectConsent:
    """The current state of every purpose and channel of a unified profile."""

    profile_id: str
    member_ids: list[str]
    country: str | None
    regime: str
    states: list[CurrentState]


def subject_consent(*, session: Session, workspace_id: str, profile_id: str) -> SubjectConsent:
    """Per (purpose, channel), the latest state across the unified profile's members."""
    config = get_config(session=session, workspace_id=workspace_id)
    view = profiles.get_profile(session=session, workspace_id=workspace_id, profile_id=profile_id)
    grouped: dict[tuple[str, str], list[CurrentState]] = {}
    for state in states_of(session=session, workspace_id=workspace_id, profile_ids=view.member_ids):
        grouped.setdefault((state.purpose, state.channel), []).append(state)
    current = [s for s in (latest(group) for group in grouped.values()) if s is not None]
    country = country_of(view.traits)
    return SubjectConsent(
        profile_id=view.id,
        member_ids=view.member_ids,
        country=country,
        regime=regime_for(country, config.default_regime),
        states=sorted(current, key=lambda s: (s.purpose, s.channel)),
    )


# --- an audience --------------------------------------------------------------------------------


def can_use_many(
    *,
    session: Session,
    workspace_id: str,
    profile_ids: Iterable[str],
    purpose: str,
    channel: str,
    at: datetime | None = None,
) -> dict[str, Decision]:
    """:func:`can_use` for many subjects in a few set-based reads; ids that are not profiles
    of the workspace are refused with the reason ``unknown_profile``. Past
    ``profiles.bulk.SCAN_ABOVE`` ids the workspace is read whole (a million subjects: a few
    seconds, bench/consent.py)."""
    config = get_config(session=session, workspace_id=workspace_id)
    check_use(config, purpose, channel)
    ids = profile_ids if isinstance(profile_ids, Collection) else list(profile_ids)
    when = at or utcnow()
    unknown = Decision(False, "unknown_profile", None, config.default_regime)
    with _no_cyclic_gc():
        if len(ids) > bulk.SCAN_ABOVE:
            return _many_by_scan(session, workspace_id, ids, purpose, channel, when, config)
        canonical = profiles.canonical_map_many(
            session=session, workspace_id=workspace_id, profile_ids=ids
        )
        wanted = set(canonical.values())
        if len(wanted) <= SMALL_AUDIENCE:
            members = profiles.members_many(
                session=session, workspace_id=workspace_id, canonical_ids=list(wanted)
            )
            states = _states_of_members(session, workspace_id, members, purpose, channel)
        else:
            states = _states_by_purpose(session, workspace_id, canonical, purpose, channel)
        decided = _decide_audience(
            session, workspace_id, wanted, states, config, purpose, channel, when
        )
        return {pid: unknown if (c := canonical.get(pid)) is None else decided[c] for pid in ids}


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of plain tuples and strings are built:
    they never form cycles, and it would otherwise scan them again and again."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _many_by_scan(
    session: Session,
    workspace_id: str,
    ids: Collection[str],
    purpose: str,
    channel: str,
    at: datetime,
    config: ConsentConfig,
) -> dict[str, Decision]:
    """:func:`can_use_many` over the whole workspace: the unified ids and merged members, the
    purpose's states and the country values, each read once with raw cursors; then set
    operations and ``dict`` updates (C loops) wherever a subject needs no rule of its own."""
    unified, members = bulk.unified_index(session=session, workspace_id=workspace_id)
    rows: list[StateRow] = []
    for part in _purpose_batches(session, workspace_id, purpose, channel):
        rows.extend(part)
    first = itemgetter(0)
    strangers = set(map(first, rows)).difference(unified)  # members' states (or erased ones)
    own = [row for row in rows if row[0] not in strangers] if strangers else rows
    single: dict[str, StateRow] = dict(zip(map(first, own), own, strict=True))
    several: dict[str, list[StateRow]] = {}
    if len(single) < len(own):  # a profile with states of both the channel and ``any``
        twice = {pid for pid, n in Counter(map(first, own)).items() if n > 1}
        for row in own:
            if row[0] in twice:
                several.setdefault(row[0], []).append(row)
    for row in rows if strangers else ():
        canonical = members.get(row[0]) if row[0] in strangers else None
        if canonical is None:
            continue  # not a stranger, or a profile erased since its state was written
        found = several.get(canonical)
        if found is None:
            mine = single.pop(canonical, None)
            several[canonical] = found = [] if mine is None else [mine]
        found.append(row)
    for canonical in several.keys() & single.keys():
        del single[canonical]
    del rows, own
    default = config.default_regime
    by_regime = _regimes_by_scan(session, workspace_id, default)
    regimes: dict[str, str] = {}
    for regime, holders in by_regime.items():
        regimes.update(dict.fromkeys(holders, regime))
    decided = _decide_all(
        single, several, regimes, default, purpose, channel, at, _raw_timestamps(session)
    )
    del single, several
    return _answers(ids, unified, members, decided, by_regime, default, at)


def _decide_audience(
    session: Session,
    workspace_id: str,
    canonical_ids: Collection[str],
    states: Mapping[str, list[StateRow]],
    config: ConsentConfig,
    purpose: str,
    channel: str,
    at: datetime,
) -> dict[str, Decision]:
    """The decision of each of ``canonical_ids`` (unified profiles of the workspace) from its
    states read raw (:func:`_states_of_members`, :func:`_states_by_purpose`), under the regime
    its country traits pick."""
    default = config.default_regime
    regimes = _regimes(session, workspace_id, list(canonical_ids), default)
    return _decide_each(
        canonical_ids, states, regimes, default, purpose, channel, at, _raw_timestamps(session)
    )


def _answers(
    ids: Collection[str],
    unified: set[str],
    members: Mapping[str, str],
    decided: Mapping[str, Decision],
    by_regime: Mapping[str, set[str]],
    default: str,
    at: datetime,
) -> dict[str, Decision]:
    """The decision of each asked id, in the order asked: its unified profile's own (it has a
    state), else its regime's shared one; ``unknown_profile`` for an id that is no profile.
    When every unified profile is asked (an audience of the whole workspace), only ``dict``
    updates (C loops); otherwise one dict of the exceptions, then one pass over the ids."""
    stateless = _stateless(at)
    usual = stateless[default]
    unknown = Decision(False, "unknown_profile", None, default)
    if len(ids) >= len(unified) and unified.issuperset(ids):  # every unified profile asked
        out = dict.fromkeys(ids, usual)
        if len(out) == len(unified):  # and nothing else: C loops only
            for regime, holders in by_regime.items():
                out.update(dict.fromkeys(unified.intersection(holders), stateless[regime]))
            if decided.keys() <= unified:
                out.update(decided)
            else:  # a member pointing at no unified profile: only what was asked
                out.update((c, d) for c, d in decided.items() if c in unified)
            return out
    special: dict[str, Decision] = {}
    for regime, holders in by_regime.items():
        special.update(dict.fromkeys(holders, stateless[regime]))
    special.update(decided)
    decision_of = special.get

    def other(pid: str) -> Decision:  # a merged member asked by its own id, or no profile
        canonical = members.get(pid)
        return unknown if canonical is None else decision_of(canonical, usual)

    return {pid: decision_of(pid, usual) if pid in unified else other(pid) for pid in ids}


def _state_columns() -> Select[*tuple[Any, ...]]:
    s = ConsentStateRow
    return select(
        s.profile_id,
        s.channel,
        s.state,
        s.legal_basis,
        s.record_id,
        s.occurred_at,
        s.expires_at,
    )


def _purpose_batches(
    session: Session, workspace_id: str, purpose: str, channel: str
) -> Iterator[list[StateRow]]:
    """Every state of the purpose over ``channel`` and ``any`` in the workspace, raw, in big
    batches (the covering index ``ix_consent_state_policy`` serves it alone)."""
    s = ConsentStateRow
    statement = _state_columns().where(
        s.workspace_id == workspace_id,
        s.purpose == purpose,
        s.channel.in_(_channels(channel)),
    )
    return raw_batches(session, statement)


def _states_of_members(
    session: Session,
    workspace_id: str,
    members: Mapping[str, Sequence[str]],
    purpose: str,
    channel: str,
) -> dict[str, list[StateRow]]:
    """States of the purpose of each unified profile's ``members``, grouped by unified profile:
    one array parameter per read on PostgreSQL, chunked ``IN`` lists on SQLite."""
    owner = {member: canonical for canonical, ids in members.items() for member in ids}
    s = ConsentStateRow
    wanted = sorted(owner)
    postgres = session.get_bind().dialect.name == "postgresql"
    step = bulk.FETCH if postgres else bulk.CHUNK  # PostgreSQL: one array parameter
    grouped: dict[str, list[StateRow]] = {}
    for start in range(0, len(wanted), step):
        statement = _state_columns().where(
            s.workspace_id == workspace_id,
            one_of(session, s.profile_id, wanted[start : start + step]),
            s.purpose == purpose,
            s.channel.in_(_channels(channel)),
        )
        for part in raw_batches(session, statement):
            for row in part:
                grouped.setdefault(owner[row[0]], []).append(row)
    return grouped


def _states_by_purpose(
    session: Session, workspace_id: str, canonical: Mapping[str, str], purpose: str, channel: str
) -> dict[str, list[StateRow]]:
    """States of many unified profiles: one scan of the purpose, grouped by unified profile."""
    rows = [
        row for part in _purpose_batches(session, workspace_id, purpose, channel) for row in part
    ]
    owner = canonical
    strangers = sorted({row[0] for row in rows} - owner.keys())  # members not asked about
    if strangers:
        owner = {
            **canonical,
            **profiles.canonical_map_many(
                session=session, workspace_id=workspace_id, profile_ids=strangers
            ),
        }
    wanted = set(canonical.values())
    grouped: dict[str, list[StateRow]] = {}
    for row in rows:
        canonical_id = owner.get(row[0])
        if canonical_id in wanted:
            found = grouped.get(canonical_id)
            if found is None:
                grouped[canonical_id] = [row]
            else:
                found.append(row)
    return grouped


def _regimes(
    session: Session, workspace_id: str, canonical_ids: Sequence[str], default: str
) -> dict[str, str]:
    """The regime of each unified profile whose country traits are known; the country of equal
    trait values is worked out once."""
    traits = profiles.current_traits_many(
        session=session, workspace_id=workspace_id, canonical_ids=canonical_ids, keys=COUNTRY_TRAITS
    )
    memo: dict[tuple[tuple[str, str], ...], str] = {}
    out: dict[str, str] = {}
    for canonical_id, values in traits.items():
        signature = tuple(sorted((k, v) for k, v in values.items() if isinstance(v, str)))
        if len(signature) != len(values):  # an address object: no shortcut
            out[canonical_id] = regime_for(country_of(values), default)
            continue
        regime = memo.get(signature)
        if regime is None:
            regime = memo[signature] = regime_for(country_of(values), default)
        out[canonical_id] = regime
    return out


def _regimes_by_scan(session: Session, workspace_id: str, default: str) -> dict[str, set[str]]:
    """Per regime other than ``default``, the unified profiles of the workspace whose country
    traits pick it (the others fall back to ``default``). Each distinct value of each country
    trait is judged once (``country_of`` on that trait alone); then only the profiles holding
    a value that matters are read: those of another regime, and, for a trait that ranks
    before another present one, every valid country (it settles the profile: ``country_of``
    takes the first trait holding a valid country)."""
    present = [
        (key, values)
        for key in COUNTRY_TRAITS
        if (values := bulk.trait_values(session=session, workspace_id=workspace_id, key=key))
    ]
    out: dict[str, set[str]] = {}
    settled: set[str] = set()  # profiles whose country an earlier trait gave
    for i, (key, values) in enumerate(present):
        last = i == len(present) - 1
        regime_of: dict[Any, str] = {}
        for code, value in values.items():
            country = country_of({key: value})
            if country is None:
                continue
            regime = regime_for(country, default)
            if regime != default or not last:
                regime_of[code] = regime
        if not regime_of:
            continue
        holders = bulk.trait_code_holders(
            session=session, workspace_id=workspace_id, key=key, codes=regime_of
        )
        for canonical in settled.intersection(holders):
            del holders[canonical]
        for regime in set(regime_of.values()) - {default}:
            codes = {code for code, r in regime_of.items() if r == regime}
            out.setdefault(regime, set()).update(
                canonical for canonical, code in holders.items() if code in codes
            )
        if not last:
            settled.update(holders)
    return out


def can_use_unified(
    *,
    session: Session,
    workspace_id: str,
    canonical_ids: Sequence[str],
    purpose: str,
    channel: str,
    at: datetime | None = None,
) -> dict[str, Decision]:
    """:func:`can_use_many` for a batch of unified profile ids already resolved (a segment's
    members, an export read in batches): their members, states and countries are read with
    chunked ``IN`` lists whatever the batch size, never by scanning the purpose, so an audience
    of millions decided batch by batch costs in proportion to its size. An id that is no
    unified profile of the workspace is refused with the reason ``unknown_profile``."""
    config = get_config(session=session, workspace_id=workspace_id)
    check_use(config, purpose, channel)
    when = at or utcnow()
    members = profiles.members_many(
        session=session, workspace_id=workspace_id, canonical_ids=canonical_ids
    )
    states = _states_of_members(session, workspace_id, members, purpose, channel)
    decided = _decide_audience(
        session, workspace_id, members.keys(), states, config, purpose, channel, when
    )
    unknown = Decision(False, "unknown_profile", None, config.default_regime)
    return {cid: decided.get(cid, unknown) for cid in canonical_ids}
