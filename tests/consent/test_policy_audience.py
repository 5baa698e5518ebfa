"""The audience form of the policy gives, for every subject, exactly what ``can_use`` gives —
on each of its read paths (members, purpose scan, workspace scans), on both stores."""

from __future__ import annotations

import pytest

from consentry.consent import policy
from consentry.consent import service as consent
from consentry.platform.db import Database
from consentry.profiles import bulk
from tests.consent.support import EMAIL, T0, at, choose
from tests.support.segment import identify, track
from tests.support.store import profile_of, send

PATHS = {
    "members": {},
    "purpose-scan": {"SMALL_AUDIENCE": 0},
    "workspace-scans": {"SMALL_AUDIENCE": 0, "SCAN_ABOVE": 0},
}


def shop(db: Database, workspace: str) -> tuple[list[str], list[str]]:
    """Subjects across regimes, with merges, and every kind of state; returns (ids, members)."""
    people = [
        ("de-granted", {"country": "DE"}, ["granted"]),
        ("de-none", {"country": "de"}, []),
        ("us-none", {"country": "US"}, []),
        ("us-withdrawn", {"address": {"country": "US"}}, ["granted", "withdrawn"]),
        ("fr-pending", {"country": "FR"}, ["pending"]),
        ("nowhere-granted", {}, ["granted"]),
        ("br-denied", {"country": "BR"}, ["denied"]),
    ]
    ids, members = [], []
    for n, (user, traits, states) in enumerate(people):
        anon = f"anon-{user}"
        send(db, workspace, track("Viewed", anonymousId=anon, timestamp=T0.isoformat()))
        early = profile_of(db, workspace, anonymous_id=anon).id
        for minute, state in enumerate(states):  # the first choice goes to the anonymous member
            choose(db, workspace, early, state, minutes=n * 10 + minute)
        send(db, workspace, identify(userId=user, anonymousId=anon, traits=traits))
        unified = profile_of(db, workspace, user_id=user)
        ids.append(unified.id)
        members += [m for m in unified.member_ids if m != unified.id]
    return ids, members


@pytest.mark.parametrize("path", PATHS, ids=list(PATHS))
def test_the_audience_form_agrees_with_can_use(
    db: Database, workspace: str, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    ids, members = shop(db, workspace)
    for name, value in PATHS[path].items():
        monkeypatch.setattr(policy if name == "SMALL_AUDIENCE" else bulk, name, value)
    asked = [*ids, *members, "not-a-profile"]
    when = at(60 * 24)
    with db.read() as session:
        many = consent.can_use_many(
            session=session,
            workspace_id=workspace,
            profile_ids=asked,
            purpose=EMAIL,
            channel="email",
            at=when,
        )
        one = {
            pid: consent.can_use(
                session=session,
                workspace_id=workspace,
                profile_id=pid,
                purpose=EMAIL,
                channel="email",
                at=when,
            )
            for pid in [*ids, *members]
        }
    assert many["not-a-profile"].reason == "unknown_profile"
    assert {pid: many[pid] for pid in one} == one
    reasons = {pid: d.reason for pid, d in one.items()}
    assert [reasons[i] for i in ids] == [
        "granted",
        "no_consent",
        "opt_out_regime_default",
        "withdrawn",
        "pending_confirmation",
        "granted",
        "denied",
    ]
