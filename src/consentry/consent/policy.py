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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.consent.ledger import get_config, states_of
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
from consentry.consent.tables import ConsentStateRow
from consentry.errors import FieldError, Invalid
from consentry.platform.db import utcnow
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
    if state.state in REFUSALS:
        return Decision(False, state.state, state.record_id, regime)
    in_force = state.expires_at is None or state.expires_at > at
    if state.state == GRANTED and in_force:
        reason = "granted" if state.legal_basis == CONSENT else state.legal_basis
        return Decision(True, reason, state.record_id, regime)
    reason = "pending_confirmation" if state.state == PENDING and in_force else "expired"
    return _regime_default(regime, reason, state.record_id)


def _regime_default(regime: str, reason: str, record_id: str | None) -> Decision:
    if regime == OPT_OUT:
        return Decision(True, "opt_out_regime_default", None, regime)
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


# --- one subject --------------------------------------------------------------------------------


PURPOSE_NOT_CONFIGURED = "purpose_not_configured"


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
    that asks for its own purpose, not the client's), a refusal: nobody agreed to it."""
    config = get_config(session=session, workspace_id=workspace_id)
    if unconfigured == "refuse" and purpose not in config.purpose_keys:
        if channel not in CHANNELS:  # a bad channel is still the caller's error
            check_use(config, purpose, channel)
        return Decision(False, PURPOSE_NOT_CONFIGURED, None, config.default_regime)
    check_use(config, purpose, channel)
    canonical, state = _deciding(session, workspace_id, profile_id, purpose, channel, members)
    country = _countries(session, workspace_id, [canonical]).get(canonical)
    regime = regime_for(country, config.default_regime)
    return decide(state, regime, at or utcnow())


def deciding_state(
    *, session: Session, workspace_id: str, profile_id: str, purpose: str, channel: str
) -> CurrentState | None:
    """The state that decides for ``channel`` across the unified profile (None: there is none).

    For flows that must know what stands before they record (double opt-in refuses to ask for
    a grant already in force); the decision itself is :func:`can_use`'s.
    """
    return _deciding(session, workspace_id, profile_id, purpose, channel)[1]


def _deciding(
    session: Session,
    workspace_id: str,
    profile_id: str,
    purpose: str,
    channel: str,
    members: Sequence[str] | None = None,
) -> tuple[str, CurrentState | None]:
    if members is None:
        canonical = profiles.canonical_of(
            session=session, workspace_id=workspace_id, profile_id=profile_id
        )
        members = profiles.member_ids(
            session=session, workspace_id=workspace_id, canonical_id=canonical
        )
    else:
        canonical = profile_id
    states = states_of(
        session=session,
        workspace_id=workspace_id,
        profile_ids=members,
        purpose=purpose,
        channels=_channels(channel),
    )
    return canonical, pick(states, channel)


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
    """:func:`can_use` for many subjects in a few set-based queries; ids that are not profiles
    of the workspace are refused with the reason ``unknown_profile``."""
    config = get_config(session=session, workspace_id=workspace_id)
    check_use(config, purpose, channel)
    ids = list(dict.fromkeys(profile_ids))
    canonical = profiles.canonical_map_many(
        session=session, workspace_id=workspace_id, profile_ids=ids
    )
    wanted = set(canonical.values())
    if len(wanted) <= SMALL_AUDIENCE:
        states = _states_by_members(session, workspace_id, wanted, purpose, channel)
    else:
        states = _states_by_scan(session, workspace_id, canonical, purpose, channel)
    regimes = _regimes(session, workspace_id, list(wanted), config.default_regime)
    decisions = _decide_all(wanted, states, regimes, config.default_regime, channel, at)
    unknown = Decision(False, "unknown_profile", None, config.default_regime)
    return {pid: decisions[canonical[pid]] if pid in canonical else unknown for pid in ids}


def _decide_all(
    canonical_ids: Iterable[str],
    states: Mapping[str, list[CurrentState]],
    regimes: Mapping[str, str],
    default_regime: str,
    channel: str,
    at: datetime | None,
) -> dict[str, Decision]:
    """The decision for each unified profile from its states of the purpose and its regime."""
    when = at or utcnow()
    # Without a state, only the regime decides: one shared decision per regime.
    by_regime = {r: decide(None, r, when) for r in REGIMES}
    decisions: dict[str, Decision] = {}
    for canonical_id in canonical_ids:
        regime = regimes.get(canonical_id, default_regime)
        found = states.get(canonical_id)
        if found is None:
            decisions[canonical_id] = by_regime[regime]
        else:  # one state of the channel or of ``any`` is what pick() chooses from one
            state = found[0] if len(found) == 1 else pick(found, channel)
            decisions[canonical_id] = decide(state, regime, when)
    return decisions


def _states_by_members(
    session: Session, workspace_id: str, canonical_ids: Iterable[str], purpose: str, channel: str
) -> dict[str, list[CurrentState]]:
    """States of a few unified profiles, through their member lists (chunked ``IN`` lists)."""
    members = profiles.members_many(
        session=session, workspace_id=workspace_id, canonical_ids=list(canonical_ids)
    )
    return _states_of_members(session, workspace_id, members, purpose, channel)


def _states_of_members(
    session: Session,
    workspace_id: str,
    members: Mapping[str, Sequence[str]],
    purpose: str,
    channel: str,
) -> dict[str, list[CurrentState]]:
    """States of the purpose of each unified profile's ``members``, grouped by unified profile."""
    owner = {member: canonical for canonical, ids in members.items() for member in ids}
    grouped: dict[str, list[CurrentState]] = {}
    for state in states_of(
        session=session,
        workspace_id=workspace_id,
        profile_ids=sorted(owner),
        purpose=purpose,
        channels=_channels(channel),
    ):
        grouped.setdefault(owner[state.profile_id], []).append(state)
    return grouped


def _states_by_scan(
    session: Session, workspace_id: str, canonical: Mapping[str, str], purpose: str, channel: str
) -> dict[str, list[CurrentState]]:
    """States of many unified profiles: one scan of the purpose, grouped by unified profile."""
    rows = (
        session.connection()
        .execute(  # Core rows, fetched in bulk
            select(
                ConsentStateRow.profile_id,
                ConsentStateRow.purpose,
                ConsentStateRow.channel,
                ConsentStateRow.state,
                ConsentStateRow.legal_basis,
                ConsentStateRow.record_id,
                ConsentStateRow.occurred_at,
                ConsentStateRow.expires_at,
            ).where(
                ConsentStateRow.workspace_id == workspace_id,
                ConsentStateRow.purpose == purpose,
                ConsentStateRow.channel.in_(_channels(channel)),
            )
        )
        .all()
    )
    owner = canonical
    strangers = sorted({row[0] for row in rows} - owner.keys())  # members not asked about
    if strangers:
        owner = {
            **canonical,
            **profiles.canonical_map(
                session=session, workspace_id=workspace_id, profile_ids=strangers
            ),
        }
    wanted = set(canonical.values())
    grouped: dict[str, list[CurrentState]] = {}
    for row in rows:
        canonical_id = owner.get(row[0])
        if canonical_id in wanted:
            state = CurrentState(*row)
            found = grouped.get(canonical_id)
            if found is None:
                grouped[canonical_id] = [state]
            else:
                found.append(state)
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
        if len(values) == 1:  # the usual case: one trait, such as country
            ((key, value),) = values.items()
            if isinstance(value, str):
                signature: tuple[tuple[str, str], ...] = ((key, value),)
                regime = memo.get(signature)
                if regime is None:
                    regime = memo[signature] = regime_for(country_of(values), default)
                out[canonical_id] = regime
                continue
        signature = tuple(sorted((k, v) for k, v in values.items() if isinstance(v, str)))
        if len(signature) != len(values):  # an address object: no shortcut
            out[canonical_id] = regime_for(country_of(values), default)
            continue
        regime = memo.get(signature)
        if regime is None:
            regime = memo[signature] = regime_for(country_of(values), default)
        out[canonical_id] = regime
    return out


def _countries(
    session: Session, workspace_id: str, canonical_ids: Sequence[str]
) -> dict[str, str | None]:
    """The country of each unified profile that has one."""
    traits = profiles.current_traits_many(
        session=session, workspace_id=workspace_id, canonical_ids=canonical_ids, keys=COUNTRY_TRAITS
    )
    return {c: country_of(values) for c, values in traits.items()}


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
    members = profiles.members_many(
        session=session, workspace_id=workspace_id, canonical_ids=canonical_ids
    )
    states = _states_of_members(session, workspace_id, members, purpose, channel)
    regimes = _regimes(session, workspace_id, list(members), config.default_regime)
    decisions = _decide_all(members, states, regimes, config.default_regime, channel, at)
    unknown = Decision(False, "unknown_profile", None, config.default_regime)
    return {cid: decisions.get(cid, unknown) for cid in canonical_ids}
