"""Data-quality audits on the store (SQLite and PostgreSQL): the stored report counts exactly
the planted problems, reads the sealed traits, leaves erased people out, keeps to its
workspace, and is kept, listed and scheduled as documented."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from consentry.config import QualitySettings
from consentry.errors import NotFound
from consentry.platform.db import Database, utcnow
from consentry.privacy import erasure_service
from consentry.profiles.models import is_personal_trait, trait_slug
from consentry.quality import service, spellings
from consentry.quality.audit import default_fields
from tests.conftest import new_workspace
from tests.quality.planted import (
    DUPLICATES,
    PEOPLE,
    RECORDS,
    WITH_ERRORS,
    check_report,
    messages,
)
from tests.support.segment import identify
from tests.support.store import profile_of, send

SETTINGS = QualitySettings()


def _audit(db: Database, workspace: str, **options: object) -> service.AuditRun:
    return service.run(
        db, workspace, SETTINGS.model_copy(update=options), default_country="US", actor="test"
    )


def _ids(db: Database, workspace: str, users: set[str]) -> set[str]:
    return {profile_of(db, workspace, user_id=u).id for u in users}


def test_the_report_counts_what_was_planted(db: Database, workspace: str) -> None:
    send(db, workspace, *messages())
    steps: list[tuple[int, int]] = []
    found = service.run(
        db,
        workspace,
        SETTINGS,
        default_country="US",
        actor="test",
        progress=lambda *s: steps.append(s),
    )
    document = found.document()
    check_report(document)
    assert steps[0] == (0, RECORDS) and steps[-1] == (RECORDS, RECORDS)

    # the examples are the planted profiles, by id; no value of theirs is in the report
    errors = {
        i for f in document["fields"].values() for c in f["invalid"].values() for i in c["examples"]
    }
    assert errors == _ids(db, workspace, WITH_ERRORS)
    assert set(document["duplicates"]["examples"]) <= _ids(db, workspace, DUPLICATES)
    assert document["stale"]["examples"] == [profile_of(db, workspace, user_id="stale").id]
    text = json.dumps(document, ensure_ascii=False)
    for user, traits in PEOPLE.items():
        for key, value in traits.items():
            if is_personal_trait(key) and isinstance(value, str) and len(value) > 3:
                assert value not in text, (user, key)

    with db.read() as session:
        latest = service.latest(session=session, workspace_id=workspace)
        assert latest is not None and latest.document() == document
        assert service.get(session=session, workspace_id=workspace, audit_id=found.id) == latest
        assert [a.id for a in service.recent(session=session, workspace_id=workspace)] == [found.id]


def test_a_profile_without_a_country_is_judged_by_the_default(db: Database, workspace: str) -> None:
    send(
        db, workspace, *messages(), identify(userId="no-country", traits={"phone": "030 12345678"})
    )
    german = service.run(db, workspace, SETTINGS, default_country="DE", actor="test").document()
    us = service.run(db, workspace, SETTINGS, default_country="US", actor="test").document()
    assert (german["fields"]["phone"]["valid"], us["fields"]["phone"]["valid"]) == (3, 2)
    assert german["default_country"] == "DE" and us["default_country"] == "US"


def test_erased_people_are_left_out(db: Database, workspace: str) -> None:
    send(db, workspace, *messages())
    before = _audit(db, workspace)
    erased = {u: profile_of(db, workspace, user_id=u).id for u in ("dup-a", "bad-email")}
    assert before.report["fields"]["email"]["invalid"]["email.at_sign"]["examples"] == [
        erased["bad-email"]
    ]
    for profile_id in erased.values():
        with db.write() as session:
            erasure_service.erase(
                session=session,
                workspace_id=workspace,
                profile_id=profile_id,
                actor="test:dpo",
                reason="erasure request 2026-11",
            )
    replay = [m for m in messages() if m.get("userId") in erased]
    send(db, workspace, *replay)  # late events of erased people: suppressed, no new profile
    after = _audit(db, workspace).document()
    assert after["profiles"] == RECORDS - 2
    assert after["totals"]["likely_duplicates"] == len(DUPLICATES) - 2  # dup-b lost its twin
    assert after["duplicates"]["pairs"] == 2
    assert after["totals"]["records_with_errors"] == len(WITH_ERRORS) - 1
    assert after["fields"]["email"]["invalid"] == {}
    assert after["fields"]["birthday"]["present"] == 4
    with db.read() as session:  # the earlier report no longer names the erased profiles
        earlier = service.get(session=session, workspace_id=workspace, audit_id=before.id)
    text = json.dumps(earlier.document())
    assert not any(profile_id in text for profile_id in erased.values())
    assert earlier.report["fields"]["email"]["invalid"]["email.at_sign"] == {
        "count": 1,
        "examples": [],
    }
    assert earlier.report["totals"] == before.report["totals"]  # counts are as audited


def test_an_audit_keeps_to_its_workspace(db: Database, workspace: str) -> None:
    send(db, workspace, *messages())
    other = new_workspace(db)
    send(db, other, *messages()[:2])
    mine = _audit(db, workspace)
    theirs = _audit(db, other)
    assert mine.profiles == RECORDS and theirs.profiles == 2
    with db.read() as session:
        with pytest.raises(NotFound):
            service.get(session=session, workspace_id=other, audit_id=mine.id)
        latest = service.latest(session=session, workspace_id=other)
        assert latest is not None and latest.id == theirs.id


def test_an_empty_workspace_has_an_empty_report(db: Database, workspace: str) -> None:
    with db.read() as session:
        assert service.latest(session=session, workspace_id=workspace) is None
    found = _audit(db, workspace).document()
    assert found["profiles"] == 0 and found["totals"]["records"] == 0
    assert found["duplicates"]["likely_duplicates"] == 0


def test_old_reports_are_pruned_and_the_schedule_waits(db: Database, workspace: str) -> None:
    runs = [_audit(db, workspace, keep_audits=2) for _ in range(3)]
    with db.read() as session:
        kept = service.recent(session=session, workspace_id=workspace, limit=10)
        assert {a.id for a in kept} == {runs[1].id, runs[2].id}
        with pytest.raises(NotFound):
            service.get(session=session, workspace_id=workspace, audit_id=runs[0].id)
        now = utcnow()
        day = timedelta(hours=24)
        assert not service.due(session=session, workspace_id=workspace, every=day, now=now)
        assert service.due(session=session, workspace_id=workspace, every=day, now=now + day)
        assert service.due(session=session, workspace_id=new_workspace(db), every=day, now=now)


def test_the_trait_names_read_cover_every_field() -> None:
    slugs = {trait_slug(k) for k in service.TRAIT_KEYS}
    wanted = {key for f in default_fields() for key in f.keys} | {"address"}
    assert wanted <= slugs
    assert {"firstName", "first_name", "FirstName", "first-name", "First Name"} <= set(
        service.TRAIT_KEYS
    )
    for words in service.TRAIT_WORDS:
        assert {trait_slug(k) for k in spellings.written(words)} == {"".join(words)}
