"""can_use as features call it: with the person already resolved, and for a purpose of the
feature's own that the workspace may not have configured."""

from __future__ import annotations

import pytest

from consentry.consent import policy
from consentry.errors import Invalid
from consentry.platform.db import Database
from consentry.profiles import service as profiles
from tests.consent.support import EMAIL, at, choose, subject
from tests.support.segment import identify
from tests.support.store import send


def test_a_resolved_person_is_decided_as_by_profile_id(db: Database, workspace: str) -> None:
    ada = subject(db, workspace, "ada", country="DE")
    send(db, workspace, identify(userId="ada", anonymousId="ada-phone"))  # a second member
    choose(db, workspace, ada, "granted")
    with db.read() as session:
        canonical = profiles.canonical_of(session=session, workspace_id=workspace, profile_id=ada)
        members = profiles.member_ids(
            session=session, workspace_id=workspace, canonical_id=canonical
        )
        ask = {"session": session, "workspace_id": workspace, "purpose": EMAIL}
        plain = policy.can_use(profile_id=ada, channel="email", at=at(10), **ask)
        resolved = policy.can_use(
            profile_id=canonical, members=members, channel="email", at=at(10), **ask
        )
    assert plain == resolved and plain.allowed


def test_an_unconfigured_purpose_is_refused_or_invalid_as_asked(
    db: Database, workspace: str
) -> None:
    ada = subject(db, workspace, "ada")
    with db.read() as session:
        ask = {"session": session, "workspace_id": workspace, "profile_id": ada}
        refused = policy.can_use(
            purpose="no.such.purpose", channel="web", unconfigured="refuse", **ask
        )
        assert not refused.allowed and refused.reason == policy.PURPOSE_NOT_CONFIGURED
        with pytest.raises(Invalid) as plain:
            policy.can_use(purpose="no.such.purpose", channel="web", **ask)
        assert [e.field for e in plain.value.errors] == ["purpose"]
        with pytest.raises(Invalid) as channel:
            policy.can_use(
                purpose="no.such.purpose", channel="pigeon", unconfigured="refuse", **ask
            )
        assert "channel" in [e.field for e in channel.value.errors]
        known = policy.can_use(purpose=EMAIL, channel="email", unconfigured="refuse", **ask)
        assert known.reason != policy.PURPOSE_NOT_CONFIGURED
