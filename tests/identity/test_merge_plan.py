"""``MergePlan`` writes many merges at once with the same result as ``merge_canonicals`` one at
a time: two workspaces get the same people, one is merged merge by merge, the other through
one plan, and every profile, merge row and current trait must agree, also after unmerges."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from consentry.platform.db import Database
from consentry.profiles import service as profiles
from consentry.profiles.graph import canonical_of
from consentry.profiles.merging import MergePlan, merge_canonicals, unmerge
from consentry.profiles.tables import MergeRow, ProfileRow
from tests.conftest import new_workspace
from tests.support.segment import identify
from tests.support.store import send

PEOPLE = 12
START = datetime(2026, 3, 1, tzinfo=UTC)


Said = tuple[str, str, str, datetime]  # user id, trait, value, when


def seed(db: Database, workspace: str, rnd: random.Random) -> tuple[dict[str, str], list[Said]]:
    """``PEOPLE`` profiles with overlapping traits at scattered times: user id -> profile id,
    and what was said in order. Creation times are set (distinct) so each merge has the same
    winner in every workspace."""
    messages, said = [], []
    for person in range(PEOPLE):
        for _ in range(3):
            at = START + timedelta(hours=rnd.randrange(2000))
            key, value = rnd.choice(["name", "city", "plan", "colour"]), f"v{rnd.randrange(50)}"
            said.append((f"u{person}", key, value, at))
            messages.append(
                identify(userId=f"u{person}", traits={key: value}, timestamp=at.isoformat())
            )
    send(db, workspace, *messages)
    with db.write() as session:
        ids = {
            user: canonical_of(session=session, workspace_id=workspace, profile_id=pid)
            for user, pid in _users(session, workspace).items()
        }
        order = rnd.sample(range(PEOPLE), PEOPLE)  # distinct: a tie would fall to the id
        for person in range(PEOPLE):
            created = START + timedelta(minutes=order[person])
            session.execute(
                update(ProfileRow)
                .where(ProfileRow.id == ids[f"u{person}"])
                .values(created_at=created)
            )
    return ids, said


def _users(session: Any, workspace: str) -> dict[str, str]:
    out = {}
    for person in range(PEOPLE):
        found = profiles.search_identifiers(
            session=session, workspace_id=workspace, user_id=f"u{person}"
        )
        out[f"u{person}"] = found[0]
    return out


def snapshot(db: Database, workspace: str, ids: dict[str, str]) -> dict[str, Any]:
    """Everything a merge writes, named by user id rather than by profile id."""
    user_of = {pid: user for user, pid in ids.items()}
    with db.read() as session:
        rows = session.scalars(select(ProfileRow).where(ProfileRow.workspace_id == workspace)).all()
        people = {
            user_of[r.id]: (
                user_of[r.canonical_id],
                user_of.get(r.merged_into or ""),
                r.first_seen,
                r.last_seen,
            )
            for r in rows
        }
        views = {}
        for user, pid in ids.items():
            view = profiles.get_profile(session=session, workspace_id=workspace, profile_id=pid)
            views[user] = (user_of[view.id], view.traits)
        merges = [
            (user_of[m.winner_id], user_of[m.loser_id], m.reason, m.undone_at is not None)
            for m in session.scalars(
                select(MergeRow)
                .where(MergeRow.workspace_id == workspace)
                .order_by(MergeRow.created_at, MergeRow.id)
            )
        ]
    return {"people": people, "views": views, "merges": sorted(merges)}


def merge_ids(db: Database, workspace: str, ids: dict[str, str]) -> list[str]:
    """The workspace's merge ids in the order of the user ids of their losers."""
    user_of = {pid: user for user, pid in ids.items()}
    with db.read() as session:
        rows = session.scalars(select(MergeRow).where(MergeRow.workspace_id == workspace))
        return [m.id for m in sorted(rows, key=lambda m: user_of[m.loser_id])]


def expected(
    before: dict[str, Any], said: list[Said], steps: list[tuple[int, int]], created: dict[str, Any]
) -> dict[str, Any]:
    """What merging ``steps`` in turn must leave, worked out from the rules: the earlier
    created wins, the loser's members follow, first and last seen widen, ``merged_into`` names
    the direct winner, and the latest trait by event time (then by order said) is current."""
    root = {u: u for u in before}
    parent: dict[str, str | None] = dict.fromkeys(before)
    seen = {u: (first, last) for u, (_, _, first, last) in before.items()}

    def find(u: str) -> str:
        while root[u] != u:
            u = root[u]
        return u

    for x, y in steps:
        a, b = find(f"u{x}"), find(f"u{y}")
        if a == b:
            continue
        winner, loser = sorted((a, b), key=lambda u: created[u])
        root[loser], parent[loser] = winner, winner
        seen[winner] = (min(seen[winner][0], seen[loser][0]), max(seen[winner][1], seen[loser][1]))
    people = {u: (find(u), parent[u], *seen[u]) for u in before}
    latest: dict[str, dict[str, tuple[datetime, int, str]]] = {}
    for n, (u, key, value, at) in enumerate(said):
        held = latest.setdefault(find(u), {})
        if key not in held or (at, n) >= held[key][:2]:
            held[key] = (at, n, value)
    views = {
        u: (find(u), {k: v for k, (_, _, v) in latest.get(find(u), {}).items()}) for u in before
    }
    return {"people": people, "views": views}


@pytest.mark.parametrize("seed_value", [1, 2, 3])
def test_a_plan_writes_what_merges_one_at_a_time_write(db: Database, seed_value: int) -> None:
    one, many = new_workspace(db), new_workspace(db)
    ids_one, said = seed(db, one, random.Random(seed_value))
    ids_many, _ = seed(db, many, random.Random(seed_value))
    rnd = random.Random(seed_value * 100)
    steps = [(x, y) for x, y in (rnd.sample(range(PEOPLE), 2) for _ in range(PEOPLE * 2))]
    before = snapshot(db, many, ids_many)["people"]
    with db.read() as session:
        created = {
            u: session.get(ProfileRow, pid).created_at  # type: ignore[union-attr]
            for u, pid in ids_many.items()
        }

    with db.write() as session:  # one at a time, each through the store
        for x, y in steps:
            a = canonical_of(session=session, workspace_id=one, profile_id=ids_one[f"u{x}"])
            b = canonical_of(session=session, workspace_id=one, profile_id=ids_one[f"u{y}"])
            if a != b:
                merge_canonicals(session, one, a, b, f"step {x}-{y}", "test", None)
    with db.write() as session:  # the same decisions planned in memory, written at once
        plan = MergePlan(session, many, ids_many.values())
        for x, y in steps:
            a, b = plan.root_of(ids_many[f"u{x}"]), plan.root_of(ids_many[f"u{y}"])
            if a != b:
                plan.merge(a, b, reason=f"step {x}-{y}", actor="test")
        assert len(plan) > 0
        plan.apply()
        assert len(plan) == 0

    merged = snapshot(db, one, ids_one)
    assert snapshot(db, many, ids_many) == merged
    want = expected(before, said, steps, created)
    assert merged["people"] == want["people"] and merged["views"] == want["views"]
    assert len({root for root, _ in merged["views"].values()}) < PEOPLE  # something merged

    for k in (0, len(merged["merges"]) // 2):  # undo merges: both sides come apart alike
        for workspace, ids in ((one, ids_one), (many, ids_many)):
            with db.write() as session:
                unmerge(
                    session=session,
                    workspace_id=workspace,
                    merge_id=merge_ids(db, workspace, ids)[k],
                    actor="test",
                )
        assert snapshot(db, many, ids_many) == snapshot(db, one, ids_one)


def test_a_plan_refuses_a_profile_it_merged_away(db: Database, workspace: str) -> None:
    ids, _ = seed(db, workspace, random.Random(9))
    with db.write() as session:
        plan = MergePlan(session, workspace, [ids["u0"], ids["u1"], ids["u2"]])
        record = plan.merge(ids["u0"], ids["u1"], reason="r", actor="test")
        with pytest.raises(Exception, match="merged away"):
            plan.merge(record.loser_id, ids["u2"], reason="r", actor="test")
        with pytest.raises(Exception, match="two unified profiles"):
            plan.merge(ids["u2"], "no-such-profile", reason="r", actor="test")
