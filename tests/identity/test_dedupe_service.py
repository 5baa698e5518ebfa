"""Probabilistic de-duplication through the store, on SQLite and PostgreSQL: planted duplicates
merged or queued, distinct people kept apart, unmerge, review decisions remembered across runs,
incremental runs with the stored model, erasure and workspace isolation."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from sqlalchemy import func, select

from consentry.config import DedupeSettings, IdentitySettings, Settings
from consentry.errors import Conflict, Invalid, NotFound
from consentry.platform.db import Database
from consentry.privacy import erasure_service
from consentry.profiles import dedupe_review
from consentry.profiles import dedupe_service as dedupe
from consentry.profiles import service as profiles
from consentry.profiles.dedupe_tables import DedupeRunRow, MatchCandidateRow
from consentry.stores import open_database
from tests.conftest import new_workspace
from tests.identity.people import Shop, shop
from tests.support.segment import identify
from tests.support.store import send

CAP = IdentitySettings().cap
SETTINGS = DedupeSettings()


def seed(db: Database, workspace: str, found: Shop) -> None:
    for start in range(0, len(found.messages), 200):
        send(db, workspace, *found.messages[start : start + 200])


def run(db: Database, workspace: str, **options: Any) -> dedupe.RunReport:
    return dedupe.run(db, workspace, SETTINGS, cap=CAP, default_region="US", **options)


def users_by_profile(db: Database, workspace: str) -> dict[str, set[str]]:
    """The userIds and anonymousIds of each unified profile."""
    out: dict[str, set[str]] = {}
    with db.read() as session:
        for pid, _ in profiles.list_profiles(session=session, workspace_id=workspace, limit=5000):
            view = profiles.get_profile(session=session, workspace_id=workspace, profile_id=pid)
            out[view.id] = {
                i["value"] for i in view.identifiers if i["type"] in ("user_id", "anonymous_id")
            }
    return out


def profile_of_user(db: Database, workspace: str, user: str) -> str:
    with db.read() as session:
        ids = profiles.search_identifiers(session=session, workspace_id=workspace, user_id=user)
        if not ids:
            ids = profiles.search_identifiers(
                session=session, workspace_id=workspace, anonymous_id=user
            )
    assert len(ids) == 1
    return ids[0]


def candidates(db: Database, workspace: str, status: str = "all") -> list[dedupe.Candidate]:
    with db.read() as session:
        return dedupe.list_candidates(
            session=session, workspace_id=workspace, status=status, limit=200
        )[1]


@pytest.fixture
def planted(db: Database, workspace: str) -> Shop:
    found = shop(300, duplicates=60, namesakes=30)
    seed(db, workspace, found)
    return found


def test_a_batch_run_merges_the_clear_duplicates_and_queues_the_grey_ones(
    db: Database, workspace: str, planted: Shop
) -> None:
    report = run(db, workspace)
    assert report.profiles == 390 and report.auto_merged > 0 and report.queued > 0
    truth = planted.true_pairs()
    # merged: every unified profile holds one person only (precision 1 on the merges)
    groups = users_by_profile(db, workspace)
    for users in groups.values():
        assert len({planted.truth[u] for u in users}) == 1, [planted.kinds.get(u) for u in users]
    merged = {frozenset((x, y)) for users in groups.values() for x in users for y in users if x < y}
    # queued: the pending pairs, by the users their profiles hold
    queued: set[frozenset[str]] = set()
    false_queued = 0
    owner = {u: pid for pid, users in groups.items() for u in users}
    for c in candidates(db, workspace, "pending"):
        a = {u for u, pid in owner.items() if pid == c.profile_a}
        b = {u for u, pid in owner.items() if pid == c.profile_b}
        pairs = {frozenset((x, y)) for x in a for y in b}
        queued |= pairs
        false_queued += not (pairs & truth)
    found = merged | queued
    recall = len(found & truth) / len(truth)
    precision = len(merged & truth) / len(merged)
    assert precision == 1.0
    assert recall >= 0.95, recall
    assert len(merged & truth) / len(truth) >= 0.8  # most duplicates need nobody's time
    assert false_queued <= 2  # namesakes are kept apart, not even queued
    namesakes = [u for u, kind in planted.kinds.items() if kind == "namesake"]
    assert all(len(groups[owner[u]]) == 1 for u in namesakes)
    # the grey zone: a surname and a city only
    sparse = {u for u, kind in planted.kinds.items() if kind == "sparse"}
    assert any(pair & sparse for pair in queued)
    with db.read() as session:
        latest = dedupe.latest_run(session=session, workspace_id=workspace)
    assert latest is not None and latest["id"] == report.id
    assert latest["model"]["fields"] and latest["auto_merged"] == report.auto_merged


def test_worker_processes_read_the_same_keys_in_the_same_order(
    db: Database, database_url: str, workspace: str, planted: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large workspace is read by worker processes, range by range: the keys must be those
    of reading it in the running process, in the same order."""

    def read(readers: dedupe.KeyReaders | None, progress: list[int]) -> Any:
        with db.read() as session:
            keys = dedupe.read_keys(
                session=session,
                workspace_id=workspace,
                batch_size=50,  # ranges of 390 // 7 = 55 profiles: 8 ranges
                default_region="US",
                readers=readers,
                progress=lambda _stage, done, _total: progress.append(done),
            )
        return keys, progress

    alone, alone_progress = read(None, [])
    monkeypatch.setattr(dedupe, "PARALLEL_FROM", 0)
    monkeypatch.setattr(dedupe, "_RANGES", 7)
    opener = partial(open_database, Settings(environment="test", database_url=database_url))
    shared, shared_progress = read(dedupe.KeyReaders(opener, 2), [])
    assert len(alone) == 390 and alone.ids == sorted(alone.ids)
    assert shared.ids == alone.ids and shared.columns == alone.columns
    assert len(shared_progress) >= 7 and shared_progress == sorted(shared_progress)
    assert shared_progress[-1] == alone_progress[-1] == 390  # every profile counted
    # a run given a way to open the store reads through workers and finds the same pairs
    report = run(db, workspace, dry_run=True, open_store=opener)
    assert (
        report.profiles == 390
        and report.auto_merged == run(db, workspace, dry_run=True).auto_merged
    )


def test_an_auto_merge_names_the_run_and_unmerge_undoes_it_for_good(
    db: Database, workspace: str, planted: Shop
) -> None:
    report = run(db, workspace)
    merged = candidates(db, workspace, "merged")
    assert len(merged) == report.auto_merged
    pick = merged[0]
    assert pick.merge_id is not None and pick.decided_by == f"dedupe:{report.id}"
    assert all(f.keys() == {"field", "level", "weight"} for f in pick.explanation["fields"])
    with db.read() as session:
        view = profiles.get_profile(
            session=session, workspace_id=workspace, profile_id=pick.profile_a
        )
    record = next(m for m in view.merges if m.id == pick.merge_id)
    assert record.actor == f"dedupe:{report.id}" and report.id in record.reason
    with db.write() as session:
        profiles.unmerge(
            session=session, workspace_id=workspace, merge_id=pick.merge_id, actor="test"
        )
    with db.read() as session:
        a = profiles.canonical_of(
            session=session, workspace_id=workspace, profile_id=record.winner_id
        )
        b = profiles.canonical_of(
            session=session, workspace_id=workspace, profile_id=record.loser_id
        )
    assert a != b
    again = run(db, workspace)  # the unmerge is a decision: the pair is not merged again
    assert again.skipped.get("unmerged", 0) + again.skipped.get("decided", 0) >= 1
    with db.read() as session:
        a = profiles.canonical_of(
            session=session, workspace_id=workspace, profile_id=record.winner_id
        )
        b = profiles.canonical_of(
            session=session, workspace_id=workspace, profile_id=record.loser_id
        )
    assert a != b


def test_approve_merges_and_reject_is_remembered_across_runs(
    db: Database, workspace: str, planted: Shop
) -> None:
    run(db, workspace)
    pending = candidates(db, workspace, "pending")
    assert len(pending) >= 2
    yes, no = pending[0], pending[1]
    with db.write() as session:
        approved = dedupe.approve(
            session=session, workspace_id=workspace, candidate_id=yes.id, actor="token:k1", cap=CAP
        )
        rejected = dedupe.reject(
            session=session, workspace_id=workspace, candidate_id=no.id, actor="token:k2"
        )
    assert approved.status == "approved" and approved.decided_by == "token:k1"
    assert approved.decided_at is not None and approved.merge_id is not None
    assert rejected.status == "rejected" and rejected.decided_by == "token:k2"
    with db.read() as session:
        assert profiles.canonical_of(
            session=session, workspace_id=workspace, profile_id=yes.profile_a
        ) == profiles.canonical_of(
            session=session, workspace_id=workspace, profile_id=yes.profile_b
        )
        view = profiles.get_profile(
            session=session, workspace_id=workspace, profile_id=yes.profile_a
        )
    assert any(m.id == approved.merge_id and m.actor == "token:k1" for m in view.merges)
    with db.write() as session, pytest.raises(Conflict):  # decided already
        dedupe.reject(session=session, workspace_id=workspace, candidate_id=yes.id, actor="x")
    with db.write() as session, pytest.raises(Conflict):
        dedupe.approve(
            session=session, workspace_id=workspace, candidate_id=no.id, actor="x", cap=CAP
        )
    # the duplicates are merged: too few are left to train on, so the second run scores with
    # the first run's model, meets the rejected pair again, and skips it
    again = run(db, workspace)
    assert again.matching["model"].startswith("previous")
    assert again.skipped.get("rejected", 0) >= 1
    pairs = {(c.profile_a, c.profile_b): c.status for c in candidates(db, workspace)}
    assert pairs[(no.profile_a, no.profile_b)] == "rejected"
    rows = [
        c
        for c in candidates(db, workspace)
        if {c.profile_a, c.profile_b} == {no.profile_a, no.profile_b}
    ]
    assert len(rows) == 1  # never proposed again


def test_an_incremental_run_scores_a_new_duplicate_with_the_stored_model(
    db: Database, workspace: str, planted: Shop
) -> None:
    with pytest.raises(Conflict):
        run(db, workspace, mode="incremental")
    first = run(db, workspace)
    original = planted.traits["p-7"]
    first_name = original.get("first_name") or original["firstName"]
    last_name = original.get("last_name") or original["lastName"]
    send(
        db,
        workspace,
        identify(
            anonymousId="till-42",
            traits={
                "first_name": first_name.upper(),
                "last_name": last_name,
                "birthday": original["birthday"],
                "address": original["address"],
            },
        ),
    )
    second = run(db, workspace, mode="incremental")
    assert second.mode == "incremental" and second.scored == 1
    assert second.model == first.model  # no retraining
    assert second.auto_merged + second.queued == 1
    till, p7 = profile_of_user(db, workspace, "till-42"), profile_of_user(db, workspace, "p-7")
    if till != p7:  # not merged: then queued, as this pair
        pending = candidates(db, workspace, "pending")
        assert any({c.profile_a, c.profile_b} == {till, p7} for c in pending)
    with db.read() as session:
        stored = session.get(DedupeRunRow, second.id)
        assert stored is not None and stored.mode == "incremental"
        assert stored.model == first.model
    third = run(db, workspace, mode="incremental")  # nothing new since
    assert third.auto_merged == 0 and third.queued == 0


def test_a_dry_run_writes_nothing(db: Database, workspace: str, planted: Shop) -> None:
    report = run(db, workspace, dry_run=True)
    assert report.dry_run and report.auto_merged > 0 and report.queued > 0
    assert candidates(db, workspace) == []
    with db.read() as session:
        assert dedupe.latest_run(session=session, workspace_id=workspace) is None
        assert profiles.count_profiles(session=session, workspace_id=workspace) == 390


def test_an_auto_merge_the_caps_refuse_goes_to_review(db: Database, workspace: str) -> None:
    found = shop(120, duplicates=0, seed=5)
    seed(db, workspace, found)
    twin = dict(found.traits["p-3"])
    twin.pop("email")
    twin.pop("phone", None)
    send(db, workspace, identify(userId="second-account", traits=twin))  # one userId each
    report = run(db, workspace)
    assert report.refused >= 1
    refused = [c for c in candidates(db, workspace, "pending") if c.note and "refused" in c.note]
    assert refused and "user_id" in (refused[0].note or "")
    with db.write() as session, pytest.raises(Conflict):
        dedupe.approve(
            session=session,
            workspace_id=workspace,
            candidate_id=refused[0].id,
            actor="x",
            cap=CAP,
        )


def test_erasure_deletes_the_persons_candidate_pairs(
    db: Database, workspace: str, planted: Shop
) -> None:
    run(db, workspace)
    pending = candidates(db, workspace, "pending")[0]
    with db.write() as session:
        done = erasure_service.erase(
            session=session,
            workspace_id=workspace,
            profile_id=pending.profile_a,
            actor="test:dpo",
            reason="erasure request 2026-11",
        )
    assert done.certificate["erased"]["match_candidates"] >= 1
    with db.read() as session:
        left = session.scalar(
            select(func.count()).where(
                MatchCandidateRow.workspace_id == workspace,
                (MatchCandidateRow.profile_a == pending.profile_a)
                | (MatchCandidateRow.profile_b == pending.profile_a),
            )
        )
    assert left == 0


def test_workspaces_are_kept_apart(db: Database, workspace: str, planted: Shop) -> None:
    other = new_workspace(db)
    seed(db, other, shop(40, duplicates=4, seed=9, prefix="o-"))
    run(db, workspace)
    theirs = candidates(db, other)
    assert theirs == []
    mine = candidates(db, workspace, "pending")[0]
    with db.write() as session, pytest.raises(NotFound):
        dedupe.reject(session=session, workspace_id=other, candidate_id=mine.id, actor="x")
    with db.read() as session:
        assert dedupe.latest_run(session=session, workspace_id=other) is None
        assert (
            dedupe.summaries(session=session, workspace_id=other, profile_ids=[mine.profile_a])
            == {}
        )


def test_bad_arguments_are_refused(db: Database, workspace: str) -> None:
    with pytest.raises(Invalid):
        run(db, workspace, mode="sometimes")
    with pytest.raises(Invalid):
        run(db, workspace, auto_merge_threshold=0.2)  # below the review threshold
    with pytest.raises(Conflict):  # an empty workspace has nothing to train on
        run(db, workspace)
    with db.read() as session, pytest.raises(Invalid):
        dedupe.list_candidates(session=session, workspace_id=workspace, status="maybe")


def test_a_persons_pairs_for_their_access_request_name_no_other_profile(
    db: Database, workspace: str, planted: Shop
) -> None:
    run(db, workspace)
    found = candidates(db, workspace)
    assert found
    pair = found[0]
    with db.read() as session:
        mine = dedupe_review.pairs_of(
            session=session, workspace_id=workspace, profile_ids=[pair.profile_a]
        )
    assert {(p["status"], p["probability"]) for p in mine} >= {(pair.status, pair.probability)}
    text = repr(mine)
    assert pair.profile_b not in text and pair.profile_a not in text
    assert all(f["field"] and "weight" in f for p in mine for f in p["fields_compared"])
