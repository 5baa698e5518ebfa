"""The audit trail's plain rules: canonical form, the hash, limits, export shapes."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from consentry.platform import audit
from consentry.platform.audit import AuditEntry
from consentry.platform.hashchain import GENESIS_HASH

AT = datetime(2026, 5, 1, 12, 30, 0, 250, tzinfo=UTC)


def _entry(**changes: object) -> AuditEntry:
    entry = AuditEntry(
        id="7f0c1d2e-0000-4000-8000-000000000001",
        workspace_id="ws-a",
        seq=1,
        at=AT,
        actor="token:key-1",
        action="profile.read",
        target_type="profile",
        target_id="p-1",
        reason="ticket 42",
        details={"lookup": "email", "count": 2, "found": True},
        prev_hash=GENESIS_HASH,
        hash="",
    )
    return replace(entry, **changes)  # type: ignore[arg-type]


def test_the_canonical_form_is_sorted_compact_json_without_the_hashes() -> None:
    assert _entry().canonical() == (
        b'{"action":"profile.read","actor":"token:key-1","at":"2026-05-01T12:30:00.000250Z",'
        b'"details":{"count":2,"found":true,"lookup":"email"},'
        b'"id":"7f0c1d2e-0000-4000-8000-000000000001","reason":"ticket 42","seq":1,'
        b'"target_id":"p-1","target_type":"profile","workspace_id":"ws-a"}'
    )


def test_the_hash_is_sha256_of_the_previous_hash_then_the_canonical_entry() -> None:
    entry = _entry(prev_hash="ab" * 32)
    expected = hashlib.sha256(("ab" * 32).encode() + entry.canonical()).hexdigest()
    assert entry.expected_hash() == expected
    assert entry.expected_hash() != replace(entry, prev_hash=GENESIS_HASH).expected_hash()


@pytest.mark.parametrize(
    "name", [f.name for f in fields(AuditEntry) if f.name not in ("prev_hash", "hash")]
)
def test_every_field_but_the_hash_is_covered(name: str) -> None:
    other = {
        "id": "other",
        "workspace_id": "ws-b",
        "seq": 2,
        "at": AT + timedelta(microseconds=1),
        "actor": "token:key-2",
        "action": "profile.search",
        "target_type": "dsr",
        "target_id": None,
        "reason": "ticket 43",
        "details": {"lookup": "phone", "count": 2, "found": True},
    }[name]
    assert _entry(**{name: other}).expected_hash() != _entry().expected_hash()


def test_a_time_hashes_the_same_in_any_zone_and_naive_means_utc() -> None:
    cest = AT.astimezone(timezone(timedelta(hours=2)))
    naive = AT.replace(tzinfo=None)
    hashes = {_entry(at=t).expected_hash() for t in (AT, cest, naive)}
    assert len(hashes) == 1


def _problems(**changes: object) -> list[str]:
    values: dict[str, object] = {
        "actor": "token:key-1",
        "action": "profile.read",
        "target_type": "profile",
        "target_ids": ["p-1"],
        "reason": "unspecified",
        "details": {"lookup": "email"},
    }
    values.update(changes)
    return [e.field for e in audit.entry_problems(**values)]  # type: ignore[arg-type]


def test_a_good_entry_has_no_problems() -> None:
    assert _problems() == []
    assert _problems(target_ids=[None], details={}) == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"reason": "x" * 201}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"reason": "asked by ada@example.com"}, "reason"),
        ({"reason": "called from +44 20 7946 0958"}, "reason"),
        ({"reason": "two\nlines"}, "reason"),
        ({"actor": "ada@example.com"}, "actor"),
        ({"action": "Profile Read"}, "action"),
        ({"target_type": "Profile"}, "target_type"),
        ({"target_ids": ["ada@example.com"]}, "target_id"),
        ({"target_ids": ["+442079460958"]}, "target_id"),
        ({"target_ids": ["p"] * 1001}, "target_id"),
        ({"details": {"email": "ada@example.com"}}, "details.email"),
        ({"details": {"nested": {"a": 1}}}, "details.nested"),
        ({"details": {"ratio": 0.5}}, "details.ratio"),
        ({"details": {"none": None}}, "details.none"),
        ({"details": {"big": 2**60}}, "details.big"),
        ({"details": {"Bad Key": "x"}}, "details"),
        ({"details": {f"k{i}": i for i in range(17)}}, "details"),
    ],
)
def test_bad_values_are_named(changes: dict[str, object], field: str) -> None:
    assert field in _problems(**changes)


def test_exports_carry_every_field_and_defuse_spreadsheet_formulas() -> None:
    entry = _entry(reason="=HYPERLINK(1)", hash="cd" * 32)
    (line,) = audit.jsonl_lines([entry])
    shown = json.loads(line)
    assert shown["at"] == "2026-05-01T12:30:00.000250Z" and shown["hash"] == "cd" * 32
    assert shown["reason"] == "=HYPERLINK(1)"  # JSON Lines is exact: verify from it
    rows = list(csv.DictReader(io.StringIO("".join(audit.csv_lines([entry, entry])))))
    assert len(rows) == 2
    assert rows[0]["reason"] == "'=HYPERLINK(1)"
    assert json.loads(rows[0]["details"]) == entry.details
    assert list(rows[0]) == list(audit.CSV_COLUMNS)
