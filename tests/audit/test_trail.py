"""The audit trail on SQLite and PostgreSQL: the chain, the head, paging and filters, concurrent
appends, and tampering through raw SQL detected and named."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from consentry.errors import Invalid
from consentry.platform import audit
from consentry.platform.audit import AuditEntry
from consentry.platform.db import Database
from consentry.platform.hashchain import GENESIS_HASH
from tests.conftest import new_workspace

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _record(db: Database, workspace: str, n: int, **changes: object) -> AuditEntry:
    values: dict[str, object] = {
        "actor": "token:key-1",
        "action": "profile.read",
        "target_type": "profile",
        "target_id": f"p-{n}",
        "reason": f"ticket {n}",
        "details": {"lookup": "email", "n": n, "found": True},
        "at": T0 + timedelta(minutes=n),
    }
    values.update(changes)
    with db.write() as session:
        return audit.record(session=session, workspace_id=workspace, **values)  # type: ignore[arg-type]


def _five(db: Database, workspace: str) -> list[AuditEntry]:
    return [_record(db, workspace, n) for n in range(5)]


def _verify(db: Database, workspace: str) -> audit.VerifyReport:
    with db.read() as session:
        return audit.verify(session=session, workspace_id=workspace)


def _all(db: Database, workspace: str, **filters: object) -> list[AuditEntry]:
    with db.read() as session:
        return list(audit.iter_entries(session=session, workspace_id=workspace, **filters))  # type: ignore[arg-type]


def test_entries_are_chained_in_seq_order_and_read_back_exactly(
    db: Database, workspace: str
) -> None:
    made = _five(db, workspace)
    assert [e.seq for e in made] == [1, 2, 3, 4, 5]
    assert made[0].prev_hash == GENESIS_HASH
    assert [e.prev_hash for e in made[1:]] == [e.hash for e in made[:-1]]
    stored = _all(db, workspace)
    assert stored == made  # field for field, details and times included
    assert all(e.expected_hash() == e.hash for e in stored)
    assert _verify(db, workspace) == audit.VerifyReport(ok=True, checked=5)


def test_an_empty_trail_verifies(db: Database, workspace: str) -> None:
    assert _verify(db, workspace) == audit.VerifyReport(ok=True, checked=0)


def test_record_many_appends_one_entry_per_target_or_one_for_a_miss(
    db: Database, workspace: str
) -> None:
    with db.write() as session:
        hits = audit.record_many(
            session=session,
            workspace_id=workspace,
            actor="token:k",
            action="profile.search",
            target_type="profile",
            target_ids=["p-1", "p-2"],
            reason=audit.UNSPECIFIED,
            details={"lookup": "email"},
        )
        miss = audit.record_many(
            session=session,
            workspace_id=workspace,
            actor="token:k",
            action="profile.search",
            target_type="profile",
            target_ids=[],
            reason=audit.UNSPECIFIED,
        )
    assert [(e.seq, e.target_id) for e in hits + miss] == [(1, "p-1"), (2, "p-2"), (3, None)]
    assert _verify(db, workspace) == audit.VerifyReport(ok=True, checked=3)


def test_a_bad_entry_writes_nothing(db: Database, workspace: str) -> None:
    _record(db, workspace, 0)
    with pytest.raises(Invalid) as caught, db.write() as session:
        audit.record(
            session=session,
            workspace_id=workspace,
            actor="token:k",
            action="profile.read",
            target_type="profile",
            target_id="p-1",
            reason="for ada@example.com",
            details={"lookup": "email"},
        )
    assert [e.field for e in caught.value.errors] == ["reason"]
    assert "ada@example.com" not in caught.value.message
    assert len(_all(db, workspace)) == 1
    assert _verify(db, workspace).ok


def test_each_workspace_has_its_own_chain(db: Database, workspace: str) -> None:
    other = new_workspace(db)
    a, b = _record(db, workspace, 1), _record(db, other, 2)
    assert a.seq == b.seq == 1 and a.prev_hash == b.prev_hash == GENESIS_HASH
    assert [e.id for e in _all(db, workspace)] == [a.id]
    assert [e.id for e in _all(db, other)] == [b.id]


def test_paging_and_filters(db: Database, workspace: str) -> None:
    made = _five(db, workspace)
    _record(db, workspace, 9, action="dsr.erasure", target_type="dsr", target_id="r-1")
    with db.read() as session:
        first = audit.entries(session=session, workspace_id=workspace, limit=2)
        second = audit.entries(
            session=session, workspace_id=workspace, after_seq=first[-1].seq, limit=2
        )
    assert [e.seq for e in first + second] == [1, 2, 3, 4]
    window = _all(db, workspace, since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3))
    assert [e.id for e in window] == [made[1].id, made[2].id]
    assert [e.target_id for e in _all(db, workspace, action="dsr.erasure")] == ["r-1"]
    assert [e.id for e in _all(db, workspace, target_id="p-3")] == [made[3].id]
    with pytest.raises(Invalid), db.read() as session:
        audit.entries(session=session, workspace_id=workspace, limit=0)


def test_concurrent_appends_keep_one_unbroken_chain(db: Database, workspace: str) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(8):
                _record(db, workspace, n * 10 + i)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _verify(db, workspace) == audit.VerifyReport(ok=True, checked=32)


# --- tampering, through raw SQL -------------------------------------------------------------


def _sql(db: Database, statement: str, **params: object) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(statement), params)


def _edit_reason(db: Database, made: list[AuditEntry]) -> None:
    _sql(db, "UPDATE audit_entries SET reason = 'routine' WHERE id = :id", id=made[1].id)


def _edit_actor(db: Database, made: list[AuditEntry]) -> None:
    _sql(db, "UPDATE audit_entries SET actor = 'token:other' WHERE id = :id", id=made[2].id)


def _edit_details(db: Database, made: list[AuditEntry]) -> None:
    details = '{"lookup": "user_id", "n": 3, "found": true}'
    _sql(db, "UPDATE audit_entries SET details = :d WHERE id = :id", d=details, id=made[3].id)


def _edit_time(db: Database, made: list[AuditEntry]) -> None:
    later = T0 + timedelta(days=1)
    _sql(db, "UPDATE audit_entries SET at = :t WHERE id = :id", t=later, id=made[0].id)


def _delete_middle(db: Database, made: list[AuditEntry]) -> None:
    _sql(db, "DELETE FROM audit_entries WHERE id = :id", id=made[2].id)


def _delete_first(db: Database, made: list[AuditEntry]) -> None:
    _sql(db, "DELETE FROM audit_entries WHERE id = :id", id=made[0].id)


def _delete_last(db: Database, made: list[AuditEntry]) -> None:
    _sql(db, "DELETE FROM audit_entries WHERE id = :id", id=made[4].id)


def _swap(db: Database, made: list[AuditEntry]) -> None:
    a, b = made[1], made[3]
    with db.engine.begin() as conn:
        for eid, seq in ((a.id, -1), (b.id, a.seq), (a.id, b.seq)):
            conn.execute(
                text("UPDATE audit_entries SET seq = :s WHERE id = :id"), {"s": seq, "id": eid}
            )


def _rewrite_with_a_new_hash(db: Database, made: list[AuditEntry]) -> None:
    forged = replace(made[1], reason="routine")
    _sql(
        db,
        "UPDATE audit_entries SET reason = 'routine', hash = :h WHERE id = :id",
        h=forged.expected_hash(),
        id=forged.id,
    )


TAMPERING: list[tuple[Callable[[Database, list[AuditEntry]], None], str, int, int | None]] = [
    # (tamper, kind, seq named, index of the entry named; None: it was deleted)
    (_edit_reason, "edited", 2, 1),
    (_edit_actor, "edited", 3, 2),
    (_edit_details, "edited", 4, 3),
    (_edit_time, "edited", 1, 0),
    (_delete_middle, "deleted", 3, None),
    (_delete_first, "deleted", 1, None),
    (_delete_last, "deleted", 5, None),
    (_swap, "reordered", 2, 3),
    (_rewrite_with_a_new_hash, "edited", 2, 1),
]


@pytest.mark.parametrize(
    ("tamper", "kind", "seq", "named"), TAMPERING, ids=[t[0].__name__ for t in TAMPERING]
)
def test_tampering_is_detected_and_named(
    db: Database,
    workspace: str,
    tamper: Callable[[Database, list[AuditEntry]], None],
    kind: str,
    seq: int,
    named: int | None,
) -> None:
    made = _five(db, workspace)
    tamper(db, made)
    report = _verify(db, workspace)
    assert not report.ok and report.problem is not None
    assert (report.problem.kind, report.problem.seq) == (kind, seq), report.problem
    assert report.problem.entry_id == (made[named].id if named is not None else None)
    assert report.checked == seq - 1


def test_a_tampered_workspace_leaves_the_others_intact(db: Database, workspace: str) -> None:
    other = new_workspace(db)
    made = _five(db, workspace)
    _record(db, other, 1)
    _delete_middle(db, made)
    assert not _verify(db, workspace).ok
    assert _verify(db, other) == audit.VerifyReport(ok=True, checked=1)
