"""The pure consent model: vocabulary checks, jurisdiction, proof (truncated IPs, stripped URLs),
canonical hashing of the ledger, bulk parsing and receipts."""

from __future__ import annotations

import ipaddress
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.consent.models import (
    DEFAULT_PURPOSES,
    OPT_IN,
    OPT_OUT,
    ChainFields,
    ConsentEntry,
    ConsentRecord,
    ProofIn,
    Purpose,
    build_receipt,
    canonical_json,
    config_problems,
    country_of,
    entry_problems,
    make_proof,
    parse_items,
    proof_digest,
    regime_for,
    strip_url,
    truncate_ip,
)
from consentry.platform.hashchain import GENESIS_HASH

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PURPOSES = {p.key for p in DEFAULT_PURPOSES}


def entry(**changes: Any) -> ConsentEntry:
    base = ConsentEntry(
        profile_id="p-1",
        purpose="marketing.communications.email",
        channel="email",
        state="granted",
        source="web_form",
        occurred_at=NOW,
        actor="token:k",
    )
    return replace(base, **changes)


def test_default_purposes_are_named_like_fideslang_data_uses() -> None:
    assert [p.key for p in DEFAULT_PURPOSES] == [
        "marketing.communications.email",
        "marketing.communications.sms",
        "marketing.communications.push",
        "marketing.communications.phone",
        "marketing.communications.postal",
        "personalize",
        "analytics",
        "marketing.profiling",
        "third_party_sharing",
        "marketing.advertising.third_party",
    ]
    assert not config_problems(DEFAULT_PURPOSES, OPT_IN)


def test_a_valid_entry_has_no_problems() -> None:
    assert entry_problems(entry(), PURPOSES, NOW) == []
    assert entry_problems(entry(legal_basis="contract", channel="any"), PURPOSES, NOW) == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"purpose": "spam"}, "purpose"),
        ({"channel": "fax"}, "channel"),
        ({"state": "maybe"}, "state"),
        ({"legal_basis": "vital_interest"}, "legal_basis"),
        ({"source": "rumour"}, "source"),
        ({"profile_id": ""}, "profile_id"),
        ({"occurred_at": NOW + timedelta(hours=1)}, "occurred_at"),
        ({"occurred_at": datetime(2026, 1, 1)}, "occurred_at"),
        ({"expires_at": NOW - timedelta(days=1)}, "expires_at"),
        ({"notice_version": "v" * 101}, "notice_version"),
        ({"actor": ""}, "actor"),
    ],
)
def test_each_bad_value_is_named(changes: dict[str, Any], field: str) -> None:
    problems = entry_problems(entry(**changes), PURPOSES, NOW)
    assert [p.field for p in problems] == [field]


def test_configuration_problems_name_the_field() -> None:
    bad = [Purpose("Bad Key", "x", "y"), Purpose("ok", "x", "y"), Purpose("ok", "x", "y")]
    fields_named = {p.field for p in config_problems(bad, "whatever")}
    assert fields_named == {"purposes.0.key", "purposes", "default_regime"}


@pytest.mark.parametrize(
    ("traits", "country"),
    [
        ({"country": "fr"}, "FR"),
        ({"address": {"country": " de "}}, "DE"),
        ({"address.country": "UK"}, "GB"),
        ({"country": "EL"}, "GR"),
        ({"country": "France"}, None),
        ({"country": 33}, None),
        ({"address": "Paris"}, None),
        ({}, None),
    ],
)
def test_country_from_traits(traits: dict[str, Any], country: str | None) -> None:
    assert country_of(traits) == country


def test_regime_by_country() -> None:
    assert [regime_for(c, OPT_IN) for c in ("FR", "NO", "GB", "CH", "US")] == [
        OPT_IN,
        OPT_IN,
        OPT_IN,
        OPT_IN,
        OPT_OUT,
    ]
    assert regime_for("BR", OPT_OUT) == OPT_OUT
    assert regime_for(None, OPT_IN) == OPT_IN


def test_ip_truncation_examples() -> None:
    assert truncate_ip("203.0.113.77") == "203.0.113.0"
    assert truncate_ip("2001:db8:85a3:8d3:1319:8a2e:370:7348") == "2001:db8:85a3::"
    assert truncate_ip("::ffff:198.51.100.9") == "198.51.100.0"
    with pytest.raises(ValueError):
        truncate_ip("not-an-ip")


@given(st.ip_addresses(v=4))
def test_ipv4_keeps_only_the_24_bit_network(address: ipaddress.IPv4Address) -> None:
    kept = ipaddress.ip_address(truncate_ip(str(address)))
    assert int(kept) == int(address) & 0xFFFFFF00
    assert truncate_ip(str(kept)) == str(kept)


@given(st.ip_addresses(v=6))
def test_ipv6_keeps_only_the_48_bit_network(address: ipaddress.IPv6Address) -> None:
    kept = ipaddress.ip_address(truncate_ip(str(address)))
    if address.ipv4_mapped is not None:
        assert int(kept) == int(address.ipv4_mapped) & 0xFFFFFF00
    else:
        assert int(kept) == int(address) & ~((1 << 80) - 1)
        assert int(kept) & ((1 << 80) - 1) == 0


def test_proof_is_truncated_and_stripped() -> None:
    stored, errors = make_proof(
        ProofIn(
            ip="198.51.100.23",
            user_agent="Mozilla/5.0",
            page_url="https://shop.example/signup?email=a@b.c#top",
            cmp_string="CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA",
        )
    )
    assert errors == []
    assert stored == {
        "ip": "198.51.100.0",
        "user_agent": "Mozilla/5.0",
        "page_url": "https://shop.example/signup",
        "cmp_string": "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA",
    }
    assert make_proof(None) == (None, [])
    _, bad = make_proof(ProofIn(ip="999.1.1.1"))
    assert [e.field for e in bad] == ["proof.ip"]
    assert strip_url("https://a.b/c?d=1") == "https://a.b/c"


def test_canonical_json_is_sorted_compact_and_utc() -> None:
    moment = datetime(2026, 1, 2, 4, 5, 6, 7, tzinfo=UTC)
    assert canonical_json({"b": 1, "a": [moment, "é"]}) == (
        '{"a":["2026-01-02T04:05:06.000007Z","é"],"b":1}'.encode()
    )
    assert proof_digest(None) != proof_digest({})


moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
texts = st.text(min_size=1, max_size=20)
hexes = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
chain_fields = st.builds(
    ChainFields,
    id=texts,
    workspace_id=texts,
    seq=st.integers(min_value=1, max_value=10**12),
    profile_id=texts,
    purpose=texts,
    channel=texts,
    state=texts,
    legal_basis=texts,
    source=texts,
    notice_version=st.none() | texts,
    occurred_at=moments,
    recorded_at=moments,
    actor=texts,
    expires_at=st.none() | moments,
    proof_digest=hexes,
    prev_hash=hexes,
)
FIELD_NAMES = [f.name for f in fields(ChainFields)]


def _other(value: Any, data: st.DataObject) -> Any:
    if isinstance(value, datetime):
        return value + timedelta(microseconds=data.draw(st.integers(1, 10**9)))
    if isinstance(value, int):
        return value + data.draw(st.integers(1, 1000))
    if value is None:
        return data.draw(texts)
    return data.draw(texts.filter(lambda t: t != value) | st.none())


@settings(max_examples=300)
@given(chain_fields, st.sampled_from(FIELD_NAMES), st.data())
def test_any_field_change_changes_the_hash(
    original: ChainFields, name: str, data: st.DataObject
) -> None:
    changed = replace(original, **{name: _other(getattr(original, name), data)})
    assert changed.digest() == replace(changed).digest()  # stable
    assert changed.digest() != original.digest(), name


@given(chain_fields, st.dictionaries(st.sampled_from(["ip", "user_agent", "page_url"]), texts))
def test_erasing_the_proof_keeps_the_hash(chained: ChainFields, proof: dict[str, str]) -> None:
    chained = replace(chained, proof_digest=proof_digest(proof))
    record = ConsentRecord(
        **{f.name: getattr(chained, f.name) for f in fields(ChainFields)},
        proof=proof,
        hash=chained.digest(),
    )
    erased = replace(record, proof=None)
    assert erased.chain_fields().digest() == record.hash
    assert replace(record, proof_digest=GENESIS_HASH).chain_fields().digest() != record.hash


def test_bulk_items_are_parsed_with_their_index() -> None:
    items, errors = parse_items(
        [
            {"profile_id": "p", "purpose": "analytics", "state": "granted"},
            {"profile_id": "p", "state": "granted"},
            "not an object",
            {"profile_id": "p", "purpose": "analytics", "state": "granted", "bogus": 1},
        ]
    )
    assert len(items) == 1 and items[0].channel == "any" and items[0].source == "api"
    assert [(e.index, e.field) for e in errors] == [(1, "purpose"), (2, "(item)"), (3, "bogus")]


def test_receipt_has_the_kantara_fields() -> None:
    chained = ChainFields(
        id="r-1",
        workspace_id="w",
        seq=1,
        profile_id="p-1",
        purpose="third_party_sharing",
        channel="any",
        state="granted",
        legal_basis="consent",
        source="checkout",
        notice_version="2026-01",
        occurred_at=NOW,
        recorded_at=NOW,
        actor="a",
        expires_at=NOW + timedelta(days=365),
        proof_digest=proof_digest(None),
        prev_hash=GENESIS_HASH,
    )
    record = ConsentRecord(
        **{f.name: getattr(chained, f.name) for f in fields(ChainFields)},
        proof=None,
        hash=chained.digest(),
    )
    purpose = next(p for p in DEFAULT_PURPOSES if p.key == "third_party_sharing")
    found = build_receipt(record, controller="Acme EU", jurisdiction="FR", purpose=purpose)
    assert found["version"] == "KI-CR-v1.1.0"
    assert found["jurisdiction"] == "FR"
    assert found["consentTimestamp"] == int(NOW.timestamp())
    assert found["collectionMethod"] == "checkout"
    assert found["consentReceiptID"] == "r-1"
    assert found["piiPrincipalId"] == "p-1"
    assert found["piiControllers"] == [{"piiController": "Acme EU"}]
    (listed,) = found["services"][0]["purposes"]
    assert listed["purpose"] == "third_party_sharing"
    assert listed["purposeCategory"] == ["third_party_sharing"]
    assert listed["consentType"] == "EXPLICIT"
    assert listed["termination"] == (NOW + timedelta(days=365)).isoformat()
    assert listed["thirdPartyDisclosure"] is True
    assert found["sensitive"] is False
    assert found["recordHash"] == record.hash and found["noticeVersion"] == "2026-01"
