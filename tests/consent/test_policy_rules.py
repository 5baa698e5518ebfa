"""The decision rules of consent.policy, without a store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consentry.consent.models import OPT_IN, OPT_OUT, ConsentConfig, CurrentState, Decision
from consentry.consent.policy import check_use, decide, effective, latest, pick
from consentry.errors import Invalid

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def state(
    kind: str,
    *,
    minutes: int = 0,
    channel: str = "email",
    basis: str = "consent",
    expires_in: int | None = None,
    record: str | None = None,
) -> CurrentState:
    at = T0 + timedelta(minutes=minutes)
    return CurrentState(
        profile_id="p",
        purpose="marketing.communications.email",
        channel=channel,
        state=kind,
        legal_basis=basis,
        record_id=record or f"{kind}-{channel}-{minutes}",
        occurred_at=at,
        expires_at=at + timedelta(minutes=expires_in) if expires_in is not None else None,
    )


NOW = T0 + timedelta(days=1)


@pytest.mark.parametrize(
    ("current", "regime", "allowed", "reason"),
    [
        (None, OPT_IN, False, "no_consent"),
        (None, OPT_OUT, True, "opt_out_regime_default"),
        (state("granted"), OPT_IN, True, "granted"),
        (state("granted"), OPT_OUT, True, "granted"),
        (state("granted", basis="contract"), OPT_IN, True, "contract"),
        (state("granted", basis="legitimate_interest"), OPT_IN, True, "legitimate_interest"),
        (state("denied"), OPT_IN, False, "denied"),
        (state("denied"), OPT_OUT, False, "denied"),
        (state("withdrawn"), OPT_OUT, False, "withdrawn"),
        (state("denied", expires_in=1), OPT_OUT, False, "denied"),  # refusals do not expire
        (state("granted", expires_in=60), OPT_IN, False, "expired"),
        (state("granted", expires_in=60), OPT_OUT, True, "opt_out_regime_default"),
        (state("granted", expires_in=10 * 24 * 60), OPT_IN, True, "granted"),
        (state("expired"), OPT_IN, False, "expired"),
        (state("pending"), OPT_IN, False, "pending_confirmation"),
        (state("pending"), OPT_OUT, True, "opt_out_regime_default"),
        (state("pending", expires_in=5), OPT_IN, False, "expired"),
    ],
)
def test_decide(current: CurrentState | None, regime: str, allowed: bool, reason: str) -> None:
    found = decide(current, regime, NOW)
    assert (found.allowed, found.reason, found.regime) == (allowed, reason, regime)


def test_the_deciding_record_is_named() -> None:
    grant = state("granted", record="r-9")
    assert decide(grant, OPT_IN, NOW) == Decision(True, "granted", "r-9", OPT_IN)
    assert decide(state("denied", record="r-1"), OPT_IN, NOW).record_id == "r-1"
    assert decide(None, OPT_OUT, NOW).record_id is None


def test_expiry_is_exclusive_at_the_moment_of_use() -> None:
    grant = state("granted", expires_in=60)
    assert grant.expires_at is not None
    assert decide(grant, OPT_IN, grant.expires_at).reason == "expired"
    assert decide(grant, OPT_IN, grant.expires_at - timedelta(seconds=1)).allowed


def test_latest_by_time_and_a_refusal_wins_a_tie() -> None:
    assert latest([]) is None
    early, late = state("denied", minutes=1), state("granted", minutes=2)
    assert latest([late, early]) == late
    tie = [state("granted", minutes=3, record="z"), state("withdrawn", minutes=3, record="a")]
    found = latest(tie)
    assert found is not None and found.state == "withdrawn"


def test_channel_specific_wins_over_any() -> None:
    email_grant = state("granted", minutes=1)
    blanket_grant = state("granted", minutes=5, channel="any")
    blanket_deny_before = state("denied", minutes=0, channel="any")
    blanket_withdraw_after = state("withdrawn", minutes=9, channel="any")
    assert effective(email_grant, blanket_deny_before) == email_grant
    assert effective(email_grant, blanket_grant) == email_grant
    assert effective(email_grant, blanket_withdraw_after) == blanket_withdraw_after
    assert effective(None, blanket_grant) == blanket_grant
    assert effective(email_grant, None) == email_grant
    assert effective(None, None) is None


def test_pick_uses_only_any_states_for_the_any_channel() -> None:
    states = [state("granted", minutes=1), state("denied", minutes=0, channel="any")]
    assert pick(states, "email") == states[0]
    assert pick(states, "any") == states[1]
    assert pick(states, "sms") == states[1]


def test_unknown_purpose_or_channel_is_named() -> None:
    with pytest.raises(Invalid) as caught:
        check_use(ConsentConfig(), "spam", "carrier_pigeon")
    assert [e.field for e in caught.value.errors] == ["purpose", "channel"]
    check_use(ConsentConfig(), "analytics", "web")
