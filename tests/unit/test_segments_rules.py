"""The segment rule language (pure): parsing with field paths, the text form, kinds, and
property tests: any valid document round-trips through the tree, and nothing crashes the
parser or the text form."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.audiences import rules
from consentry.audiences.computed import aggregate
from consentry.errors import Invalid


def problems(doc: Any) -> dict[str, str]:
    with pytest.raises(Invalid) as caught:
        rules.parse_rule(doc)
    return {e.field: e.reason for e in caught.value.errors}


def test_the_example_rule_reads_as_text() -> None:
    doc = {
        "all": [
            {"trait": "plan", "op": "eq", "value": "gold"},
            {"event": "Product Viewed", "count": {"op": "gte", "value": 2}, "within_days": 7},
            {"not": {"event": "Order Completed", "within_days": 7}},
        ]
    }
    tree = rules.parse_rule(doc)
    assert rules.describe(tree) == (
        'plan = "gold" AND Product Viewed >= 2 times in the last 7 days'
        " AND NOT (Order Completed in the last 7 days)"
    )
    assert rules.kinds(tree) == {"traits", "events"}
    assert rules.to_document(tree) == doc


def test_texts_of_each_condition() -> None:
    exists_b = {"trait": "b", "op": "exists"}
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"any": [{"trait": "a", "op": "in", "value": [1, "x"]}, exists_b]},
            'a in (1, "x") OR b exists',
        ),
        (
            {"computed": "last_order_at", "op": "within_last_days", "value": 30},
            "last_order_at within the last 30 days",
        ),
        (
            {"event": "Order Completed", "count": {"op": "eq", "value": 0}, "within_days": 1},
            "no Order Completed in the last day",
        ),
        (
            {"consent": {"purpose": "p", "channel": "sms"}, "allowed": False},
            "no consent to p by sms",
        ),
        ({"segment": "s1", "member": False}, 'not in segment "VIPs"'),
        (
            {
                "all": [
                    {"trait": "a", "op": "not_exists"},
                    {
                        "any": [
                            {"trait": "b", "op": "eq", "value": True},
                            {"trait": "c", "op": "before", "value": "2025-01-01"},
                        ]
                    },
                ]
            },
            "a does not exist AND (b = true OR c before 2025-01-01)",
        ),
    ]
    for doc, text in cases:
        assert rules.describe(rules.parse_rule(doc), {"s1": "VIPs"}) == text


def test_errors_name_the_field_by_its_path() -> None:
    found = problems(
        {
            "all": [
                {"trait": "plan", "op": "eq", "value": "gold"},
                {"event": "Product Viewed", "count": {"op": "gte", "value": -1}},
                {"trait": "plan", "op": "between", "value": 1},
                {"event": "X", "within_days": -3},
                {"any": []},
                {"trait": "n", "op": "gt", "value": "ten"},
                {"trait": "d", "op": "before", "value": "yesterday"},
                {"trait": "e", "op": "exists", "value": 1},
                {"colour": "red"},
                {"trait": "x", "op": "eq", "value": 1, "extra": 2},
            ]
        }
    )
    assert set(found) == {
        "rule.all[1].count.value",
        "rule.all[2].op",
        "rule.all[3].within_days",
        "rule.all[4].any",
        "rule.all[5].value",
        "rule.all[6].value",
        "rule.all[7].value",
        "rule.all[8]",
        "rule.all[9].extra",
    }
    assert "unknown op" in found["rule.all[2].op"]


def test_nesting_deeper_than_eight_is_refused() -> None:
    doc: dict[str, Any] = {"trait": "a", "op": "exists"}
    for _ in range(7):
        doc = {"not": doc}
    rules.parse_rule(doc)  # eight levels
    assert "nest" in next(iter(problems({"all": [doc]}).values()))
    assert set(problems("plan = gold")) == {"rule"}


def test_holds_agrees_with_counting_defaults() -> None:
    today = date(2026, 1, 10)
    assert rules.holds(rules.Condition("eq", 0), 0, today)
    assert rules.holds(rules.Condition("lt", 2), 0, today)
    assert not rules.holds(rules.Condition("gte", 1), 0, today)
    assert rules.holds(rules.Condition("ne", 1), 0, today)
    assert not rules.holds(rules.Condition("eq", True), 1, today)  # a bool is not a number
    assert rules.holds(rules.Condition("within_last_days", 10), "2026-01-01T08:00:00Z", today)
    assert rules.holds(rules.Condition("contains", "b"), ["a", "b"], today)


def test_aggregates_of_computed_traits() -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    seen = [(t0 + timedelta(hours=h), v) for h, v in ((2, "b"), (0, "a"), (1, "b"), (3, "12.5"))]
    assert aggregate("count", seen) == 4
    assert aggregate("sum", seen) == 12.5  # only numbers (and numeric text) add up
    assert aggregate("first", seen) == "a" and aggregate("last", seen) == "12.5"
    assert aggregate("most_frequent", seen) == "b"
    assert aggregate("unique", seen) == ["12.5", "a", "b"]
    assert aggregate("avg", [(t0, 1), (t0, 2), (t0, True)]) == 1.5
    assert aggregate("sum", [(t0, "x")]) is None


# --- properties ----------------------------------------------------------------------------------

names = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != "")
scalars = st.one_of(
    st.text(max_size=10),
    st.integers(-1000, 1000),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
numbers = st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False))
days = st.integers(1, rules.MAX_DAYS)
dates = st.dates(date(1900, 1, 1), date(2100, 1, 1)).map(date.isoformat)


def _condition() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(
            lambda op, v: {"op": op, "value": v}, st.sampled_from(["eq", "ne", "contains"]), scalars
        ),
        st.builds(lambda op, v: {"op": op, "value": v}, st.sampled_from(rules.NUMBER_OPS), numbers),
        st.builds(
            lambda op, v: {"op": op, "value": v},
            st.sampled_from(rules.LIST_OPS),
            st.lists(scalars, min_size=1, max_size=4),
        ),
        st.builds(lambda op: {"op": op}, st.sampled_from(rules.NO_VALUE_OPS)),
        st.builds(lambda op, v: {"op": op, "value": v}, st.sampled_from(rules.DATE_OPS), dates),
        st.builds(lambda v: {"op": "within_last_days", "value": v}, days),
    )


def _event(name: str, count: dict[str, Any] | None, within: int | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"event": name}
    if count is not None:
        doc["count"] = count
    if within is not None:
        doc["within_days"] = within
    return doc


leaves = st.one_of(
    st.builds(lambda n, c: {"trait": n, **c}, names, _condition()),
    st.builds(lambda n, c: {"computed": n, **c}, names, _condition()),
    st.builds(
        _event,
        names,
        st.none()
        | st.builds(
            lambda op, v: {"op": op, "value": v},
            st.sampled_from(rules.COUNT_OPS),
            st.integers(0, 100),
        ),
        st.none() | days,
    ),
    st.builds(
        lambda p, c, a: {"consent": {"purpose": p, "channel": c}, "allowed": a},
        names,
        names,
        st.booleans(),
    ),
    st.builds(lambda s, m: {"segment": s, "member": m}, names, st.booleans()),
)
documents = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"all": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda xs: {"any": xs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda x: {"not": x}, inner),
    ),
    max_leaves=12,
)


def _depth(doc: Any) -> int:
    if isinstance(doc, dict):
        for key in ("all", "any"):
            if key in doc:
                return 1 + max(_depth(x) for x in doc[key])
        if "not" in doc:
            return 1 + _depth(doc["not"])
    return 1


@settings(max_examples=300, deadline=None)
@given(documents)
def test_valid_documents_round_trip(doc: dict[str, Any]) -> None:
    if _depth(doc) > rules.MAX_DEPTH:
        with pytest.raises(Invalid):
            rules.parse_rule(doc)
        return
    tree = rules.parse_rule(doc)
    assert rules.to_document(tree) == doc
    assert rules.parse_rule(rules.to_document(tree)) == tree
    assert isinstance(rules.describe(tree), str)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["all", "any", "not", "trait", "op", "value", "event", "count", "x"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_any_json_parses_or_is_refused_with_fields(doc: Any) -> None:
    try:
        tree = rules.parse_rule(doc)
    except Invalid as exc:
        assert exc.errors and all(e.field.startswith("rule") for e in exc.errors)
    else:
        assert rules.describe(tree)
