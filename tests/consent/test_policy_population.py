"""``can_use_many`` decides every subject of a generated population exactly as ``can_use`` does:
each regime (by country, address, alias, invalid country, the workspace default either way),
each state, expiry before and after the moment of use, GPC opt-outs, legal bases, states on
merged members and on ``any``, ties; on each read path of the audience form, on both stores.
The batch rule itself is checked against ``decide(pick(...))`` on random rows (hypothesis)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.consent import policy
from consentry.consent import service as consent
from consentry.consent.models import CurrentState
from consentry.platform.db import Database
from consentry.profiles import bulk
from tests.consent.support import T0, at
from tests.support.segment import identify, track
from tests.support.store import profile_of, send

EMAIL = "marketing.communications.email"
SALE = "marketing.advertising.third_party"
PATHS = {
    "members": {},
    "purpose-scan": {"SMALL_AUDIENCE": 0},
    "workspace-scans": {"SMALL_AUDIENCE": 0, "SCAN_ABOVE": 0},
}
TRAITS: list[dict[str, Any]] = [
    {"country": "DE"},
    {"country": " fr "},
    {"country": "US"},
    {"country": "UK"},  # an alias of GB
    {"country": "BR"},
    {"country": "Germany"},  # no ISO code: the default regime
    {"address": {"country": "US"}},
    {"address": {"country": "de"}, "country": "US"},  # country first
    {"address.country": "IT"},
    {},
]
STATES = ["granted", "granted", "denied", "withdrawn", "pending", "expired"]
BASES = ["consent", "consent", "contract", "legitimate_interest"]


def population(db: Database, workspace: str, people: int, seed: int) -> tuple[list[str], list[str]]:
    """People with two member profiles each (an anonymous one merged into the identified one)
    and random choices on either member; returns (unified ids, merged member ids)."""
    rnd = random.Random(seed)
    ids, members = [], []
    for n in range(people):
        anon, user = f"anon-{seed}-{n}", f"user-{seed}-{n}"
        send(db, workspace, track("Viewed", anonymousId=anon, timestamp=T0.isoformat()))
        early = profile_of(db, workspace, anonymous_id=anon).id
        send(db, workspace, identify(userId=user, anonymousId=anon, traits=TRAITS[n % 10]))
        unified = profile_of(db, workspace, user_id=user)
        entries = []
        for _ in range(rnd.choice([0, 1, 1, 2, 3])):
            state = rnd.choice(STATES)
            minute = rnd.choice([0, 5, 5, 10, 20])  # repeated minutes: ties across members
            expiry = rnd.choice([None, None, 60, 60 * 24 * 400])
            gpc = rnd.random() < 0.15
            entries.append(
                {
                    "profile_id": rnd.choice(unified.member_ids),
                    "purpose": SALE if gpc else rnd.choice([EMAIL, EMAIL, SALE]),
                    "channel": rnd.choice(["email", "email", "any"]),
                    "state": "denied" if gpc else state,
                    "legal_basis": rnd.choice(BASES) if state == "granted" else "consent",
                    "source": "gpc" if gpc else "web_form",
                    "occurred_at": at(minute),
                    "expires_at": at(minute + expiry) if expiry is not None else None,
                    "actor": "test",
                }
            )
        with db.write() as session:
            for entry in entries:
                consent.record(session=session, workspace_id=workspace, **entry)
        ids.append(unified.id)
        members += [m for m in unified.member_ids if m != unified.id]
        assert early in unified.member_ids
    return ids, members


@pytest.mark.parametrize("path", PATHS, ids=list(PATHS))
def test_every_subject_is_decided_as_can_use_decides(
    db: Database, workspace: str, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    ids, members = population(db, workspace, people=30, seed=len(path))
    for name, value in PATHS[path].items():
        monkeypatch.setattr(policy if name == "SMALL_AUDIENCE" else bulk, name, value)
    asked = [*ids, *members, "not-a-profile", ids[0]]  # an unknown id and a repeated one
    reasons: set[str] = set()
    for default in ("opt_in", "opt_out"):
        with db.write() as session:
            consent.configure(session=session, workspace_id=workspace, default_regime=default)
        for purpose, channel in [(EMAIL, "email"), (EMAIL, "any"), (SALE, "web")]:
            for when in (at(30), at(60 * 24 * 30), at(60 * 24 * 800)):
                with db.read() as session:
                    many = consent.can_use_many(
                        session=session,
                        workspace_id=workspace,
                        profile_ids=asked,
                        purpose=purpose,
                        channel=channel,
                        at=when,
                    )
                    one = {
                        pid: consent.can_use(
                            session=session,
                            workspace_id=workspace,
                            profile_id=pid,
                            purpose=purpose,
                            channel=channel,
                            at=when,
                        )
                        for pid in [*ids, *members]
                    }
                assert many["not-a-profile"].reason == "unknown_profile"
                assert list(many) == list(dict.fromkeys(asked))
                assert {pid: many[pid] for pid in one} == one, (default, purpose, channel, when)
                reasons |= {d.reason for d in one.values()}
    # the population reached every outcome
    assert reasons >= {
        "granted",
        "contract",
        "legitimate_interest",
        "denied",
        "withdrawn",
        "pending_confirmation",
        "expired",
        "no_consent",
        "opt_out_regime_default",
    }


def test_unified_ids_decided_in_batches_agree(db: Database, workspace: str) -> None:
    ids, _ = population(db, workspace, people=12, seed=99)
    when = at(60 * 24)
    with db.read() as session:
        batch = policy.can_use_unified(
            session=session,
            workspace_id=workspace,
            canonical_ids=[*ids, "not-a-profile"],
            purpose=EMAIL,
            channel="email",
            at=when,
        )
        for pid in ids:
            assert batch[pid] == consent.can_use(
                session=session,
                workspace_id=workspace,
                profile_id=pid,
                purpose=EMAIL,
                channel="email",
                at=when,
            )
    assert batch["not-a-profile"].reason == "unknown_profile"


# --- the batch rule against the rule, without a store -------------------------------------------

MOMENT = datetime(2026, 3, 1, tzinfo=UTC)
rows = st.lists(
    st.tuples(
        st.sampled_from(["p1", "p2"]),
        st.sampled_from(["email", "any"]),
        st.sampled_from(["granted", "denied", "withdrawn", "pending", "expired"]),
        st.sampled_from(BASES),
        st.integers(0, 3).map(lambda n: f"r{n}"),
        st.integers(0, 4).map(lambda m: MOMENT + timedelta(minutes=m)),
        st.one_of(st.none(), st.integers(-2, 2).map(lambda m: MOMENT + timedelta(minutes=m))),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(rows=rows, regime=st.sampled_from(["opt_in", "opt_out"]), channel=st.just("email"))
def test_the_batch_rule_is_decide_of_pick(rows: list[Any], regime: str, channel: str) -> None:
    states = [CurrentState(r[0], EMAIL, r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]
    expected = policy.decide(policy.pick(states, channel), regime, MOMENT)
    single, several = policy._split({"c": [tuple(r) for r in rows]})
    found = policy._decide_all(
        single, several, {"c": regime}, "opt_in", EMAIL, channel, MOMENT, policy._as_is
    )
    assert found["c"] == expected
