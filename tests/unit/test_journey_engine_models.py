"""Journeys' pure rules: parsing and checking a definition, the step graph, quiet hours,
frequency caps, split assignment and date-trait anniversaries."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.errors import Invalid
from consentry.journeys.models import (
    END,
    HOLDOUT,
    FrequencyCap,
    QuietHours,
    anniversary_is,
    assign,
    month_day,
    parse_journey,
    quiet_until,
    zone_of,
)

MAIL = {"subject": "Hi {{ profile.first_name }}", "text": "Bye: {{ unsubscribe_url }}"}


def _doc(*steps: dict[str, Any], **top: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "Cart",
        "trigger": {"type": "event", "event": "Checkout Started"},
        "steps": list(steps)
        or [
            {"id": "wait", "type": "wait", "hours": 4},
            {
                "id": "mail",
                "type": "email",
                "destination_id": "d1",
                "purpose": "marketing.x",
                "template": MAIL,
            },
        ],
    }
    doc.update(top)
    return doc


def _fields(doc: Any) -> list[str]:
    with pytest.raises(Invalid) as caught:
        parse_journey(doc)
    return [e.field for e in caught.value.errors]


def test_a_full_definition_parses_and_normalises() -> None:
    doc = _doc(
        {"id": "wait", "type": "wait", "days": 1},
        {
            "id": "check",
            "type": "branch",
            "rule": {"trait": "plan", "op": "eq", "value": "gold"},
            "then": "split",
            "else": "end",
        },
        {
            "id": "split",
            "type": "split",
            "holdout_percent": 10,
            "variants": [
                {"name": "A", "weight": 50, "next": "mail"},
                {"name": "B", "weight": 50, "next": "tag"},
            ],
        },
        {
            "id": "mail",
            "type": "email",
            "destination_id": "d1",
            "purpose": "marketing.communications.email",
            "template": MAIL,
            "next": "end",
        },
        {"id": "tag", "type": "update_trait", "trait": "winback_sent", "value": True},
        exit_on={"event": "Order Completed"},
        reentry={"after_days": 30},
        eligibility={"trait": "instalments", "op": "not_exists"},
        goal={"event": "Order Completed", "within_days": 7},
    )
    found = parse_journey(doc)
    assert found.first == "wait" and found.step("wait").hours == 24
    assert found.exit_on_event == "Order Completed" and found.reentry_after_days == 30
    assert found.goal is not None and found.goal.within_days == 7
    assert found.successors(found.step("check")) == ["split", END]
    assert found.successors(found.step("split")) == ["mail", "tag", END]
    assert found.after(found.step("tag")) == END
    assert [w for w, _ in found.rules()] == ["eligibility", "steps[1].rule"]
    assert found.document["steps"][0] == {"id": "wait", "type": "wait", "hours": 24}
    assert parse_journey(found.document).document == found.document  # stable


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ([], ""),
        (_doc(name=" "), "name"),
        (_doc(trigger={"type": "event"}), "trigger.event"),
        (
            _doc(trigger={"type": "date_trait", "trait": "birthday", "days_before": -1}),
            "trigger.days_before",
        ),
        (_doc(trigger={"type": "inactivity", "days": 10, "event": "x"}), "trigger.event"),
        (_doc(reentry={"after_days": 0}), "reentry.after_days"),
        (_doc(goal={"event": "Order Completed", "within_days": 400}), "goal.within_days"),
        (_doc({"id": "w", "type": "wait"}), "steps[0].hours"),
        (_doc({"id": "w", "type": "wait", "hours": 1, "days": 1}), "steps[0].hours"),
        (_doc({"id": "w", "type": "wait", "hours": float("nan")}), "steps[0].hours"),
        (_doc({"id": "w", "type": "wait", "hours": True}), "steps[0].hours"),
        (_doc({"id": "w", "type": "wait", "hours": 10**400}), "steps[0].hours"),
        (_doc({"id": "end", "type": "wait", "hours": 1}), "steps[0].id"),
        (_doc({"id": "a b", "type": "wait", "hours": 1}), "steps[0].id"),
        (
            _doc({"id": "w", "type": "wait", "hours": 1}, {"id": "w", "type": "wait", "hours": 2}),
            "steps[1].id",
        ),
        (_doc({"id": "w", "type": "teleport"}), "steps[0].type"),
        (_doc({"id": "b", "type": "branch", "rule": {}, "then": "end"}), "steps[0].else"),
        (
            _doc({"id": "b", "type": "branch", "rule": 3, "then": "end", "else": "end"}),
            "steps[0].rule",
        ),
        (
            _doc(
                {
                    "id": "m",
                    "type": "email",
                    "destination_id": "d",
                    "purpose": "Bad Purpose",
                    "template": MAIL,
                }
            ),
            "steps[0].purpose",
        ),
        (
            _doc(
                {
                    "id": "m",
                    "type": "email",
                    "destination_id": "d",
                    "purpose": "p",
                    "template": {"text": "x"},
                }
            ),
            "steps[0].template.subject",
        ),
        (
            _doc(
                {
                    "id": "m",
                    "type": "sms",
                    "destination_id": "d",
                    "purpose": "p",
                    "template": {"text": "x", "subject": "y"},
                }
            ),
            "steps[0].template.subject",
        ),
        (
            _doc({"id": "m", "type": "email", "destination_id": "d", "purpose": "p"}),
            "steps[0].template",
        ),
        (
            _doc({"id": "t", "type": "update_trait", "trait": "plan", "value": [1]}),
            "steps[0].value",
        ),
        (
            _doc({"id": "t", "type": "update_trait", "trait": "Email", "value": "x"}),
            "steps[0].trait",
        ),
        (
            _doc(
                {
                    "id": "s",
                    "type": "split",
                    "variants": [{"name": "holdout", "weight": 1, "next": "end"}],
                }
            ),
            "steps[0].variants[0].name",
        ),
        (_doc({"id": "s", "type": "split", "variants": []}), "steps[0].variants"),
        (_doc({"id": "w", "type": "wait", "hours": 1, "next": "ghost"}), "steps[0].next"),
        (
            _doc(
                {"id": "w", "type": "wait", "hours": 1, "next": "end"},
                {"id": "orphan", "type": "wait", "hours": 1},
            ),
            "steps[1].id",
        ),
        (
            _doc({"id": "t", "type": "update_trait", "trait": "x", "value": 1, "next": "t"}),
            "steps[0].next",
        ),
    ],
)
def test_each_problem_names_its_field(doc: Any, field: str) -> None:
    assert field in _fields(doc)


def test_a_loop_needs_a_wait() -> None:
    loop = [
        {"id": "a", "type": "update_trait", "trait": "x", "value": 1},
        {"id": "b", "type": "branch", "rule": {}, "then": "a", "else": "end"},
    ]
    with pytest.raises(Invalid) as caught:
        parse_journey(_doc(*loop))
    (error,) = caught.value.errors
    assert error.field == "steps[0].id" and "a -> b -> a" in error.reason
    waited = [{"id": "w", "type": "wait", "hours": 24}, *loop]
    waited[2] = {**waited[2], "then": "w"}
    assert parse_journey(_doc(*waited)).first == "w"


def test_every_problem_is_reported_at_once() -> None:
    fields = _fields(
        _doc(
            {"id": "w", "type": "wait", "hours": -2},
            {"id": "m", "type": "sms", "purpose": "p", "template": {"text": "x"}},
            name="",
        )
    )
    assert set(fields) == {"name", "steps[0].hours", "steps[1].destination_id"}


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "name",
                        "trigger",
                        "steps",
                        "type",
                        "id",
                        "hours",
                        "event",
                        "next",
                        "variants",
                        "weight",
                        "template",
                        "text",
                        "then",
                        "else",
                        "rule",
                    ]
                ),
                inner,
                max_size=5,
            )
        ),
        max_leaves=25,
    )
)
def test_any_document_parses_or_is_invalid(doc: Any) -> None:
    try:
        parse_journey(doc)
    except Invalid as exc:
        assert exc.errors


# --- guard rules --------------------------------------------------------------------------------


QUIET = QuietHours.parse("21:00-08:00")


def test_quiet_hours_wrap_midnight_in_the_customers_zone() -> None:
    assert QUIET is not None and QUIET.contains(time(23)) and QUIET.contains(time(7, 59))
    assert not QUIET.contains(time(8)) and not QUIET.contains(time(20, 59))
    berlin = ZoneInfo("Europe/Berlin")
    late = datetime(2025, 6, 10, 21, 30, tzinfo=UTC)  # 23:30 in Berlin (summer time)
    assert quiet_until(late, berlin, QUIET) == datetime(2025, 6, 11, 6, 0, tzinfo=UTC)
    early = datetime(2025, 6, 11, 4, 0, tzinfo=UTC)  # 06:00 in Berlin
    assert quiet_until(early, berlin, QUIET) == datetime(2025, 6, 11, 6, 0, tzinfo=UTC)
    assert quiet_until(datetime(2025, 6, 11, 10, 0, tzinfo=UTC), berlin, QUIET) is None
    assert quiet_until(late, berlin, None) is None


def test_quiet_hours_over_a_daylight_saving_change() -> None:
    ny = ZoneInfo("America/New_York")
    quiet = QuietHours.parse("01:00-02:30")  # 02:30 does not exist on 9 March 2025 there
    assert quiet is not None
    at = datetime(2025, 3, 9, 6, 30, tzinfo=UTC)  # 01:30 EST
    until = quiet_until(at, ny, quiet)
    assert until is not None and until > at
    assert until.astimezone(ny).hour == 3  # the instant after the gap


def test_a_daytime_window_and_bad_quiet_hours() -> None:
    lunch = QuietHours.parse("12:00-13:00")
    assert lunch is not None and lunch.contains(time(12, 30)) and not lunch.contains(time(13))
    assert QuietHours.parse("off") is None
    for bad in ("21:00", "25:00-08:00", "08:00-08:00"):
        with pytest.raises(ValueError):
            QuietHours.parse(bad)


def test_zones_fall_back_to_the_default() -> None:
    assert zone_of("Asia/Tokyo", "UTC").key == "Asia/Tokyo"
    assert zone_of("Mars/Olympus", "Europe/Paris").key == "Europe/Paris"
    assert zone_of(None, "nonsense").key == "UTC"
    assert zone_of("../../etc/passwd", "UTC").key == "UTC"


def test_frequency_caps() -> None:
    cap = FrequencyCap.parse("email", "3/7d")
    assert (cap.limit, cap.days) == (3, 7)
    assert not cap.reached(2) and cap.reached(3)
    now = datetime(2025, 1, 8, tzinfo=UTC)
    assert cap.since(now) == datetime(2025, 1, 1, tzinfo=UTC)
    assert FrequencyCap.parse("sms", "0/1d").reached(0)
    for bad in ("3", "3/7", "-1/7d", "3/0d", "x/7d"):
        with pytest.raises(ValueError):
            FrequencyCap.parse("email", bad)


def test_split_assignment_is_deterministic_and_follows_the_weights() -> None:
    step = parse_journey(
        _doc(
            {
                "id": "s",
                "type": "split",
                "holdout_percent": 20,
                "variants": [
                    {"name": "A", "weight": 3, "next": "end"},
                    {"name": "B", "weight": 1, "next": "end"},
                ],
            }
        )
    ).step("s")
    arms = Counter(assign("j1", step, f"p{i}") for i in range(20_000))
    assert abs(arms[HOLDOUT] / 20_000 - 0.20) < 0.015
    assert abs(arms["A"] / 20_000 - 0.60) < 0.015
    assert abs(arms["B"] / 20_000 - 0.20) < 0.015
    assert all(assign("j1", step, f"p{i}") == assign("j1", step, f"p{i}") for i in range(100))
    other = Counter(assign("j1", step, f"p{i}") == assign("j2", step, f"p{i}") for i in range(2000))
    assert other[False] > 500  # another journey draws its own arms


def test_anniversaries() -> None:
    assert month_day("1990-04-23") == (4, 23)
    assert month_day("--04-23") == (4, 23) and month_day("04-23") == (4, 23)
    assert month_day("1990-04-23T10:00:00+02:00") == (4, 23)
    assert month_day(date(1990, 2, 28)) == (2, 28)
    assert month_day("13-40") is None and month_day("someday") is None and month_day(42) is None
    assert anniversary_is("1990-04-23", date(2025, 4, 23), 0)
    assert anniversary_is("1990-04-23", date(2025, 4, 16), 7)
    assert not anniversary_is("1990-04-23", date(2025, 4, 22), 0)
    assert anniversary_is("2000-02-29", date(2025, 2, 28), 0)  # not a leap year
    assert anniversary_is("2000-02-29", date(2024, 2, 29), 0)
    assert not anniversary_is("2000-02-29", date(2024, 2, 28), 0)
    assert anniversary_is("1999-12-31", date(2025, 12, 30), 1)
    assert anniversary_is("2000-01-01", date(2025, 12, 31), 1)  # across the year's end
    assert not anniversary_is(None, date(2025, 1, 1), 0)
