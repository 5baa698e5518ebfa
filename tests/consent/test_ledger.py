"""The consent ledger on SQLite and PostgreSQL: the hash chain, the current state kept in the same
transaction, tampering through raw SQL detected and named, receipts, and configuration."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import replace

import pytest
from sqlalchemy import text

from consentry.consent import ledger
from consentry.consent import service as consent
from consentry.consent.models import (
    ConsentEntry,
    ConsentRecord,
    ProofIn,
    Purpose,
)
from consentry.errors import Invalid, NotFound
from consentry.platform import tenancy
from consentry.platform.db import Database
from consentry.platform.hashchain import GENESIS_HASH
from tests.conftest import new_workspace
from tests.consent.support import EMAIL, at, choose, subject


def _verify(db: Database, workspace: str) -> ledger.VerifyReport:
    with db.read() as session:
        return consent.verify(session=session, workspace_id=workspace)


def _states(db: Database, workspace: str, profile_id: str) -> list[consent.CurrentState]:
    with db.read() as session:
        return consent.states_of(session=session, workspace_id=workspace, profile_ids=[profile_id])


def _five(db: Database, workspace: str) -> list[ConsentRecord]:
    pid = subject(db, workspace, "ledger-user")
    kinds = ["granted", "denied", "granted", "withdrawn", "granted"]
    return [
        choose(db, workspace, pid, kind, minutes=i, proof=ProofIn(ip=f"192.0.2.{i + 10}"))
        for i, kind in enumerate(kinds)
    ]


def test_records_are_chained_in_seq_order(db: Database, workspace: str) -> None:
    records = _five(db, workspace)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == GENESIS_HASH
    assert [r.prev_hash for r in records[1:]] == [r.hash for r in records[:-1]]
    with db.read() as session:
        stored = list(ledger.walk(session=session, workspace_id=workspace))
    assert stored == records  # read back field for field
    assert all(r.chain_fields().digest() == r.hash for r in stored)
    assert stored[0].proof == {"ip": "192.0.2.0"}
    assert _verify(db, workspace) == ledger.VerifyReport(ok=True, checked=5)


def test_the_current_state_follows_occurred_at(db: Database, workspace: str) -> None:
    pid = subject(db, workspace, "late-arrival")
    newer = choose(db, workspace, pid, "granted", minutes=10)
    older = choose(db, workspace, pid, "withdrawn", minutes=5)  # arrives late
    (current,) = _states(db, workspace, pid)
    assert (current.state, current.record_id, current.occurred_at) == ("granted", newer.id, at(10))
    assert older.seq == newer.seq + 1  # still in the ledger
    latest = choose(db, workspace, pid, "denied", minutes=20)
    (current,) = _states(db, workspace, pid)
    assert (current.state, current.record_id) == ("denied", latest.id)


def test_each_workspace_has_its_own_chain(db: Database, workspace: str) -> None:
    other = new_workspace(db)
    a = choose(db, workspace, subject(db, workspace, "a"), "granted")
    b = choose(db, other, subject(db, other, "b"), "granted")
    assert a.seq == b.seq == 1 and a.prev_hash == b.prev_hash == GENESIS_HASH
    assert _verify(db, workspace).checked == _verify(db, other).checked == 1


def test_a_bad_entry_keeps_the_whole_append_out(db: Database, workspace: str) -> None:
    pid = subject(db, workspace, "bulk")
    good = ConsentEntry(pid, EMAIL, "email", "granted", "import", at(0), "test")
    with db.write() as session, pytest.raises(Invalid) as caught:
        ledger.append(
            session=session,
            workspace_id=workspace,
            entries=[good, replace(good, channel="fax"), replace(good, purpose="nope")],
        )
    assert [(e.index, e.field) for e in caught.value.errors] == [(1, "channel"), (2, "purpose")]
    assert _verify(db, workspace).checked == 0 and _states(db, workspace, pid) == []
    with db.write() as session:
        stored = ledger.append(session=session, workspace_id=workspace, entries=[good, good])
    assert [r.seq for r in stored] == [1, 2]


def test_concurrent_appends_keep_one_unbroken_chain(db: Database, workspace: str) -> None:
    pid = subject(db, workspace, "busy")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(8):
                choose(db, workspace, pid, "granted" if i % 2 else "denied", minutes=n * 10 + i)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _verify(db, workspace) == ledger.VerifyReport(ok=True, checked=32)


# --- tampering, through raw SQL -------------------------------------------------------------


def _sql(db: Database, statement: str, **params: object) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(statement), params)


def _edit_state(db: Database, records: list[ConsentRecord]) -> None:
    _sql(db, "UPDATE consent_records SET state = 'granted' WHERE id = :id", id=records[1].id)


def _edit_actor(db: Database, records: list[ConsentRecord]) -> None:
    _sql(db, "UPDATE consent_records SET actor = 'someone else' WHERE id = :id", id=records[2].id)


def _delete_middle(db: Database, records: list[ConsentRecord]) -> None:
    _sql(db, "DELETE FROM consent_records WHERE id = :id", id=records[2].id)


def _delete_first(db: Database, records: list[ConsentRecord]) -> None:
    _sql(db, "DELETE FROM consent_records WHERE id = :id", id=records[0].id)


def _delete_last(db: Database, records: list[ConsentRecord]) -> None:
    _sql(db, "DELETE FROM consent_records WHERE id = :id", id=records[4].id)


def _swap(db: Database, records: list[ConsentRecord]) -> None:
    a, b = records[1], records[3]
    with db.engine.begin() as conn:
        for rid, seq in ((a.id, -1), (b.id, a.seq), (a.id, b.seq)):
            conn.execute(
                text("UPDATE consent_records SET seq = :s WHERE id = :id"), {"s": seq, "id": rid}
            )


def _rewrite_with_a_new_hash(db: Database, records: list[ConsentRecord]) -> None:
    forged = replace(records[1], state="granted")
    _sql(
        db,
        "UPDATE consent_records SET state = 'granted', hash = :h WHERE id = :id",
        h=forged.chain_fields().digest(),
        id=forged.id,
    )


def _edit_proof(db: Database, records: list[ConsentRecord]) -> None:
    _sql(
        db,
        "UPDATE consent_records SET proof = :p WHERE id = :id",
        p='{"ip": "10.0.0.0"}',
        id=records[3].id,
    )


TAMPERING: list[tuple[Callable[[Database, list[ConsentRecord]], None], str, int, int | None]] = [
    # (tamper, kind, seq named, index of the record named; None: it was deleted)
    (_edit_state, "edited", 2, 1),
    (_edit_actor, "edited", 3, 2),
    (_delete_middle, "deleted", 3, None),
    (_delete_first, "deleted", 1, None),
    (_delete_last, "deleted", 5, None),
    (_swap, "reordered", 2, 3),
    (_rewrite_with_a_new_hash, "edited", 2, 1),
    (_edit_proof, "edited", 4, 3),
]


@pytest.mark.parametrize(
    ("tamper", "kind", "seq", "named"), TAMPERING, ids=[t[0].__name__ for t in TAMPERING]
)
def test_tampering_is_detected_and_named(
    db: Database,
    workspace: str,
    tamper: Callable[[Database, list[ConsentRecord]], None],
    kind: str,
    seq: int,
    named: int | None,
) -> None:
    records = _five(db, workspace)
    tamper(db, records)
    report = _verify(db, workspace)
    assert not report.ok and report.problem is not None
    assert (report.problem.kind, report.problem.seq) == (kind, seq), report.problem
    assert report.problem.record_id == (records[named].id if named is not None else None)
    assert report.checked == seq - 1


def test_erasing_a_proof_keeps_the_chain_valid(db: Database, workspace: str) -> None:
    records = _five(db, workspace)
    _sql(db, "UPDATE consent_records SET proof = NULL WHERE id = :id", id=records[2].id)
    assert _verify(db, workspace) == ledger.VerifyReport(ok=True, checked=5)
    with db.read() as session:
        erased = consent.get_record(
            session=session, workspace_id=workspace, record_id=records[2].id
        )
    assert erased.proof is None and erased.proof_digest == records[2].proof_digest


# --- receipts and configuration --------------------------------------------------------------


def test_receipt_of_a_stored_record(db: Database) -> None:
    workspace = f"acme-{uuid.uuid4().hex[:8]}"
    with db.write() as session:
        tenancy.create_workspace(session=session, workspace_id=workspace, name="Acme Europe")
    pid = subject(db, workspace, "receipt-user", address={"country": "fr"})
    record = choose(
        db, workspace, pid, "granted", notice_version="2026-01", expires_at=at(60 * 24 * 365)
    )
    with db.read() as session:
        found = consent.receipt(session=session, workspace_id=workspace, record_id=record.id)
        with pytest.raises(NotFound):
            consent.receipt(session=session, workspace_id="elsewhere", record_id=record.id)
    assert found["consentReceiptID"] == record.id and found["jurisdiction"] == "FR"
    assert found["piiControllers"] == [{"piiController": "Acme Europe"}]
    assert found["recordHash"] == record.hash and found["noticeVersion"] == "2026-01"
    assert found["services"][0]["purposes"][0]["termination"] == at(60 * 24 * 365).isoformat()


def test_purposes_are_configured_per_workspace(db: Database, workspace: str) -> None:
    pid = subject(db, workspace, "configured")
    newsletter = Purpose("marketing.newsletter", "Newsletter", "marketing")
    with db.write() as session:
        config = consent.configure(
            session=session, workspace_id=workspace, purposes=[newsletter], default_regime="opt_out"
        )
    assert config.purpose_keys == {"marketing.newsletter"}
    record = choose(db, workspace, pid, "granted", purpose="marketing.newsletter")
    assert record.purpose == "marketing.newsletter"
    with pytest.raises(Invalid) as caught:
        choose(db, workspace, pid, "granted", purpose=EMAIL)
    assert [e.field for e in caught.value.errors] == ["purpose"]
    with db.read() as session:
        assert consent.get_config(session=session, workspace_id=workspace) == config
    with db.write() as session, pytest.raises(Invalid):
        consent.configure(session=session, workspace_id=workspace, default_regime="anything")
