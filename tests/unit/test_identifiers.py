"""Normalisers and junk rules of identity resolution (unit and property-based)."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentry.profiles.models import (
    Identifier,
    extract_identifiers,
    is_junk,
    latest_traits,
    merge_allowed,
    normalize_email,
    normalize_id,
    normalize_phone,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Jane.Doe@Example.COM ", "jane.doe@example.com"),
        ("jane@example.com", "jane@example.com"),
        ("ｊａｎｅ@example.com", "jane@example.com"),  # full-width letters fold under NFKC
        ("not-an-email", None),
        ("a@b", None),
        ("two@@example.com", None),
        ("null@example.com", None),
        ("", None),
        (None, None),
        (42, None),
    ],
)
def test_normalize_email(raw: object, expected: str | None) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(415) 555-0132", "US", "+14155550132"),
        ("+1 415 555 0132", "DE", "+14155550132"),
        ("0044 20 7946 0958", "US", "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("030 12345678", "DE", "+493012345678"),
        ("12", "US", None),
        ("call me", "US", None),
        (True, "US", None),
    ],
)
def test_normalize_phone(raw: object, region: str, expected: str | None) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(
    "value",
    [
        "null",
        "NULL",
        "undefined",
        "anonymous",
        "guest",
        "0",
        "-1",
        "",
        "   ",
        "0000",
        "00000000-0000-0000-0000-000000000000",
        "N/A",
        "none",
    ],
)
def test_junk_values(value: str) -> None:
    assert is_junk(value)
    assert normalize_id(value) is None


@pytest.mark.parametrize("value", ["u-1", "10", "guest-42", "anon_7f3a", "0a"])
def test_real_values_are_not_junk(value: str) -> None:
    assert not is_junk(value)
    assert normalize_id(value) == value


@given(st.text(max_size=80))
def test_normalize_email_is_idempotent_and_lowercase(text: str) -> None:
    once = normalize_email(text)
    if once is not None:
        assert once == once.strip().lower()
        assert normalize_email(once) == once
        assert once.count("@") == 1


@given(st.emails())
def test_any_valid_email_normalises_regardless_of_case_and_padding(email: str) -> None:
    base = normalize_email(email)
    if base is not None:
        assert normalize_email(f"  {email.upper()}\t") == base.upper().lower() or (
            normalize_email(f"  {email.upper()}\t") == normalize_email(email.upper())
        )


@given(st.integers(min_value=2_012_000_000, max_value=9_899_999_999))
def test_phone_forms_agree(number: int) -> None:
    national = str(number)
    e164 = normalize_phone(national, "US")
    if e164 is not None:
        assert e164.startswith("+1")
        assert normalize_phone(e164, "FR") == e164
        parsed = phonenumbers.parse(e164)
        formatted = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
        assert normalize_phone(formatted, "US") == e164
        assert normalize_phone("001" + national, "GB") == e164


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=600)))
def test_normalize_id_never_raises_and_never_returns_junk(value: object) -> None:
    out = normalize_id(value)
    if out is not None:
        assert not is_junk(out) and out == out.strip() and len(out) <= 512


def test_extract_identifiers_reads_every_source_strongest_first() -> None:
    payload = {
        "userId": "u-1",
        "anonymousId": "a-1",
        "traits": {"email": "X@Y.com", "address": {"country": "GB"}},
        "context": {
            "traits": {"phone": "020 7946 0958"},
            "externalIds": [
                {"id": "cus_123", "type": "stripe_customer_id"},
                {"id": "null", "type": "shopify_id"},
                {"type": "x"},
                "bad",
            ],
        },
    }
    assert extract_identifiers(payload, "US") == [
        Identifier("user_id", "u-1"),
        Identifier("email", "x@y.com"),
        Identifier("phone", "+442079460958"),
        Identifier("stripe_customer_id", "cus_123"),
        Identifier("anonymous_id", "a-1"),
    ]


@given(
    st.recursive(
        st.none() | st.text(max_size=5) | st.integers(),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=15,
    )
)
def test_extract_identifiers_survives_any_shape(context: object) -> None:
    payload = {"anonymousId": "a", "context": context, "traits": context}
    found = extract_identifiers(payload)
    assert Identifier("anonymous_id", "a") in found


def test_merge_allowed_counts_the_union_against_caps() -> None:
    caps = {"user_id": 1, "email": 2}.get
    assert merge_allowed({"email": 1}, {"email": 1}, lambda t: caps(t) or 9) is None
    assert "2 user_id" in (
        merge_allowed({"user_id": 1}, {"user_id": 1}, lambda t: caps(t) or 9) or ""
    )


def test_latest_traits_prefers_event_time_then_write_order() -> None:
    rows = [
        ("city", "Paris", 5, 1),
        ("city", "Berlin", 10, 2),
        ("city", "Rome", 10, 3),
        ("plan", "pro", 1, 4),
    ]
    assert latest_traits(rows) == {"city": ("Rome", 10), "plan": ("pro", 1)}
