"""Parsing of Segment messages and batches: pure rules, no store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.ingest.models import (
    FIRST_YEAR,
    LAST_YEAR,
    Envelope,
    corrected_timestamp,
    deep_merge,
    nul_path,
    parse_batch,
    parse_message,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def parse(raw: Any, **kw: Any) -> Any:
    return parse_message(raw, index=0, received_at=NOW, **kw)


def test_clock_skew_is_corrected() -> None:
    original = NOW + timedelta(hours=2)
    sent = original + timedelta(seconds=3)
    assert corrected_timestamp(original, sent, NOW) == NOW - timedelta(seconds=3)
    assert corrected_timestamp(original, None, NOW) == original
    assert corrected_timestamp(None, sent, NOW) == NOW


@given(
    st.datetimes(timezones=st.just(UTC)),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=2)),
)
def test_correction_keeps_the_delay_between_event_and_send(
    original: datetime, delay: timedelta
) -> None:
    try:
        sent = original + delay
    except OverflowError:
        return
    assert NOW - corrected_timestamp(original, sent, NOW) == delay


def test_deep_merge_lets_the_message_win_and_merges_nested_objects() -> None:
    base = {"library": {"name": "a", "version": "1"}, "locale": "en"}
    override = {"library": {"version": "2"}, "ip": "1.2.3.4"}
    assert deep_merge(base, override) == {
        "library": {"name": "a", "version": "2"},
        "locale": "en",
        "ip": "1.2.3.4",
    }
    assert base == {"library": {"name": "a", "version": "1"}, "locale": "en"}


def test_numeric_ids_become_text_and_write_keys_are_dropped() -> None:
    env = parse({"type": "track", "event": "E", "userId": 42, "writeKey": "csw_secret"})
    assert isinstance(env, Envelope)
    assert env.user_id == "42" and "writeKey" not in env.payload
    assert env.payload["receivedAt"] == "2026-11-23T12:00:00Z"


def test_message_id_is_generated_when_missing() -> None:
    a, b = parse({"type": "page", "anonymousId": "x"}), parse({"type": "page", "anonymousId": "x"})
    assert isinstance(a, Envelope) and isinstance(b, Envelope) and a.message_id != b.message_id


def test_errors_name_the_field() -> None:
    cases = {
        "event": {"type": "track", "userId": "u"},
        "userId": {"type": "identify"},
        "previousId": {"type": "alias", "userId": "u"},
        "groupId": {"type": "group", "userId": "u"},
        "type": {"type": "nope", "userId": "u"},
        "properties": {"type": "track", "event": "e", "userId": "u", "properties": [1]},
        "timestamp": {"type": "track", "event": "e", "userId": "u", "timestamp": "soon"},
    }
    for field, raw in cases.items():
        errors = parse(raw)
        assert isinstance(errors, list), field
        assert field in {e.field for e in errors}, (field, errors)


def test_size_limit_per_message() -> None:
    errors = parse(
        {"type": "track", "event": "e", "userId": "u", "properties": {"x": "y" * 100}}, max_bytes=50
    )
    assert isinstance(errors, list) and errors[0].over_limit


def test_batch_limits_and_shapes() -> None:
    ok = {"type": "track", "event": "e", "userId": "u"}
    envs, errors = parse_batch(
        {"batch": [ok] * 3}, received_at=NOW, max_messages=2, max_message_bytes=1000
    )
    assert envs == [] and errors[0].field == "batch" and errors[0].over_limit
    envs, errors = parse_batch(
        {"batch": [ok, {"type": "track"}]}, received_at=NOW, max_messages=10, max_message_bytes=1000
    )
    assert [(e.index, e.field) for e in errors] == [(1, "userId"), (1, "event")]
    for body in ([], {"batch": "x"}, {"nobatch": []}, {"batch": []}):
        assert parse_batch(body, received_at=NOW, max_messages=10, max_message_bytes=1000)[1]


def test_batch_context_reaches_messages() -> None:
    envs, errors = parse_batch(
        {
            "batch": [{"type": "track", "event": "e", "userId": "u", "context": {"a": 1}}],
            "context": {"a": 0, "b": 2},
            "integrations": {"All": True},
            "sentAt": NOW.isoformat(),
        },
        received_at=NOW,
        max_messages=10,
        max_message_bytes=1000,
    )
    assert not errors
    assert envs[0].payload["context"] == {"a": 1, "b": 2}
    assert envs[0].payload["integrations"] == {"All": True}
    assert envs[0].sent_at == NOW


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=20,
)


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "type",
                "event",
                "userId",
                "anonymousId",
                "messageId",
                "timestamp",
                "properties",
                "traits",
                "context",
                "sentAt",
                "previousId",
                "groupId",
                "name",
            ]
        ),
        json_values,
    )
)
def test_any_message_is_either_an_envelope_or_field_errors(raw: dict[str, Any]) -> None:
    out = parse(raw, max_bytes=32_000)
    if isinstance(out, list):
        assert out and all(e.field and e.reason for e in out)
    else:
        assert out.type in {"identify", "track", "page", "screen", "group", "alias"}
        assert out.user_id or out.anonymous_id


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=st.characters(max_codepoint=300)),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(alphabet=st.characters(max_codepoint=300), max_size=4), inner)
    ),
    max_leaves=12,
)


def follow(value: Any, path: str) -> Any:
    """The value at a dotted path as nul_path names it (keys here hold no dots)."""
    for step in path.split("."):
        value = value[int(step)] if isinstance(value, list) else value[step]
    return value


@given(JSON_VALUES)
@settings(max_examples=300)
def test_nul_path_finds_exactly_the_values_postgresql_cannot_store(value: Any) -> None:
    encoded = json.dumps(value).replace("\\\\", "")  # drop escaped backslashes
    where = nul_path({"v": value})
    assert (where is not None) == ("\\u0000" in encoded)
    if where is not None and "." not in "".join(_keys(value)):
        last = where.rsplit(".", 1)[-1]
        holder = follow({"v": value}, where) if "\x00" not in last else None
        assert "\x00" in last or (isinstance(holder, str) and "\x00" in holder)


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return list(value) + [k for v in value.values() for k in _keys(v)]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


@given(st.integers(min_value=1, max_value=9999))
def test_event_times_outside_plausible_years_name_the_field(year: int) -> None:
    raw = {"type": "track", "userId": "u", "event": "E", "timestamp": f"{year:04d}-06-01T00:00:00Z"}
    parsed = parse(raw)
    if FIRST_YEAR <= year <= LAST_YEAR:
        assert isinstance(parsed, Envelope)
    else:
        assert isinstance(parsed, list)
        assert [e.field for e in parsed] == ["timestamp"]
