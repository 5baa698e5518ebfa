"""Parsing of Segment messages and batches: pure rules, no store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.ingest.models import (
    Envelope,
    corrected_timestamp,
    deep_merge,
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
