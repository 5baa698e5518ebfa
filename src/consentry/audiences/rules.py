"""The segment rule language (pure): parse a JSON rule into a typed tree, write it back, show it
as readable text, and say which kinds of facts it reads.

A rule is one of::

    {"all": [<rule>, ...]}   {"any": [<rule>, ...]}   {"not": <rule>}
    {"trait": "plan", "op": "eq", "value": "gold"}
    {"computed": "total_spent", "op": "gte", "value": 100}
    {"event": "Product Viewed", "count": {"op": "gte", "value": 2}, "within_days": 7}
    {"consent": {"purpose": "marketing.communications.email", "channel": "email"}, "allowed": true}
    {"segment": "<segment id>", "member": true}

An event rule without ``count`` means "at least once", without ``within_days`` "ever";
``count`` ``{"op": "eq", "value": 0}`` means "never" (within the window). ``allowed`` and
``member`` default to true. Errors name the field by its path from ``rule``, such as
``rule.all[1].count.value``; every problem of a document is reported at once.

Which computed traits exist, whether a trait is personal data and whether a segment exists are
the service's questions (:mod:`consentry.audiences.service`); this module only knows the
language.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from consentry.errors import FieldError, Invalid

MAX_DEPTH = 8  # nesting of all/any/not
MAX_NODES = 200  # conditions and groups in one rule
MAX_LIST = 1000  # values of in / not_in
MAX_DAYS = 36_500  # a window of a hundred years
MAX_COUNT = 1_000_000_000
MAX_TEXT = 512  # a trait, event or compared string

TRAIT_OPS = (
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "not_in",
    "contains",
    "exists",
    "not_exists",
    "before",
    "after",
    "within_last_days",
)
COUNT_OPS = ("eq", "ne", "gt", "gte", "lt", "lte")
NUMBER_OPS = ("gt", "gte", "lt", "lte")
LIST_OPS = ("in", "not_in")
DATE_OPS = ("before", "after")
NO_VALUE_OPS = ("exists", "not_exists")
NEGATIONS = {"ne": "eq", "not_in": "in", "not_exists": "exists"}  # op -> the op it negates

KINDS = ("traits", "computed", "events", "consent", "segments")
SYMBOLS = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}

Scalar = str | int | float | bool
Value = Scalar | tuple[Scalar, ...] | None

_DATE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?$"
)


# --- the tree ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    """A comparison: ``op`` and its value (a tuple for in/not_in, None for exists)."""

    op: str
    value: Value = None


@dataclass(frozen=True, slots=True)
class AllOf:
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Not:
    rule: Rule


@dataclass(frozen=True, slots=True)
class TraitRule:
    trait: str
    condition: Condition


@dataclass(frozen=True, slots=True)
class ComputedRule:
    computed: str
    condition: Condition


@dataclass(frozen=True, slots=True)
class EventRule:
    """``count`` None: at least once; ``within_days`` None: ever."""

    event: str
    count: Condition | None = None
    within_days: int | None = None

    @property
    def effective_count(self) -> Condition:
        return self.count or Condition("gte", 1)


@dataclass(frozen=True, slots=True)
class ConsentRule:
    purpose: str
    channel: str
    allowed: bool = True


@dataclass(frozen=True, slots=True)
class SegmentRule:
    segment_id: str
    member: bool = True


Rule = AllOf | AnyOf | Not | TraitRule | ComputedRule | EventRule | ConsentRule | SegmentRule
Leaf = TraitRule | ComputedRule | EventRule | ConsentRule | SegmentRule


# --- parsing -------------------------------------------------------------------------------------


class _Parser:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.nodes = 0

    def fail(self, field: str, reason: str) -> None:
        self.errors.append(FieldError(field, reason))

    def rule(self, doc: Any, field: str, depth: int) -> Rule | None:
        self.nodes += 1
        if self.nodes == MAX_NODES + 1:
            self.fail(field, f"a rule holds at most {MAX_NODES} conditions and groups")
        if self.nodes > MAX_NODES:
            return None
        if not isinstance(doc, Mapping):
            self.fail(field, "must be an object")
            return None
        for group in ("all", "any"):
            if group in doc:
                return self._group(doc, group, field, depth)
        if "not" in doc:
            self._only(doc, field, {"not"})
            if depth >= MAX_DEPTH:
                self.fail(f"{field}.not", f"rules nest at most {MAX_DEPTH} deep")
                return None
            inner = self.rule(doc["not"], f"{field}.not", depth + 1)
            return Not(inner) if inner is not None else None
        if "trait" in doc:
            return self._trait(doc, field)
        if "computed" in doc:
            return self._computed(doc, field)
        if "event" in doc:
            return self._event(doc, field)
        if "consent" in doc:
            return self._consent(doc, field)
        if "segment" in doc:
            return self._segment(doc, field)
        self.fail(field, "expected one of all, any, not, trait, computed, event, consent, segment")
        return None

    def _only(self, doc: Mapping[str, Any], field: str, allowed: set[str]) -> None:
        for key in doc:
            if key not in allowed:
                self.fail(f"{field}.{str(key)[:50]}", "unknown field")

    def _group(self, doc: Mapping[str, Any], group: str, field: str, depth: int) -> Rule | None:
        self._only(doc, field, {group})
        items = doc[group]
        where = f"{field}.{group}"
        if not isinstance(items, list) or not items:
            self.fail(where, "must be a non-empty list of rules")
            return None
        if depth >= MAX_DEPTH:
            self.fail(where, f"rules nest at most {MAX_DEPTH} deep")
            return None
        parsed = [self.rule(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(items)]
        if any(p is None for p in parsed):
            return None
        rules = tuple(p for p in parsed if p is not None)
        return AllOf(rules) if group == "all" else AnyOf(rules)

    def _name(self, value: Any, field: str, what: str) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.fail(field, f"must name the {what} (a non-empty string)")
            return None
        if len(value) > MAX_TEXT:
            self.fail(field, f"at most {MAX_TEXT} characters")
            return None
        return value

    def _condition(
        self, doc: Mapping[str, Any], field: str, ops: Sequence[str]
    ) -> Condition | None:
        op = doc.get("op")
        if not isinstance(op, str) or op not in ops:
            self.fail(f"{field}.op", f"unknown op; one of {', '.join(ops)}")
            return None
        where = f"{field}.value"
        value = doc.get("value")
        if op in NO_VALUE_OPS:
            if value is not None:
                self.fail(where, f"{op} takes no value")
                return None
            return Condition(op)
        if op in LIST_OPS:
            if not isinstance(value, list) or not value or len(value) > MAX_LIST:
                self.fail(where, f"must be a list of 1 to {MAX_LIST} values")
                return None
            items = [self._scalar(v, f"{where}[{i}]") for i, v in enumerate(value)]
            if any(v is None for v in items):
                return None
            return Condition(op, tuple(v for v in items if v is not None))
        if op in NUMBER_OPS:
            if not is_number(value):
                self.fail(where, f"{op} compares numbers: the value must be a number")
                return None
            return Condition(op, value)
        if op in DATE_OPS:
            if not isinstance(value, str) or not _DATE.match(value):
                self.fail(where, "must be an ISO date such as 2025-01-31 (or a date and time)")
                return None
            return Condition(op, value)
        if op == "within_last_days":
            days = self._days(value, where)
            return Condition(op, days) if days is not None else None
        scalar = self._scalar(value, where)  # eq, ne, contains
        return Condition(op, scalar) if scalar is not None else None

    def _scalar(self, value: Any, field: str) -> Scalar | None:
        if isinstance(value, str):
            if len(value) > MAX_TEXT:
                self.fail(field, f"at most {MAX_TEXT} characters")
                return None
            return value
        if isinstance(value, bool) or is_number(value):
            return value  # type: ignore[no-any-return]
        self.fail(field, "must be a string, a number or a boolean")
        return None

    def _days(self, value: Any, field: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DAYS:
            self.fail(field, f"must be a whole number of days from 1 to {MAX_DAYS}")
            return None
        return value

    def _trait(self, doc: Mapping[str, Any], field: str) -> Rule | None:
        self._only(doc, field, {"trait", "op", "value"})
        name = self._name(doc["trait"], f"{field}.trait", "trait")
        condition = self._condition(doc, field, TRAIT_OPS)
        return TraitRule(name, condition) if name and condition else None

    def _computed(self, doc: Mapping[str, Any], field: str) -> Rule | None:
        self._only(doc, field, {"computed", "op", "value"})
        name = self._name(doc["computed"], f"{field}.computed", "computed trait")
        condition = self._condition(doc, field, TRAIT_OPS)
        return ComputedRule(name, condition) if name and condition else None

    def _event(self, doc: Mapping[str, Any], field: str) -> Rule | None:
        self._only(doc, field, {"event", "count", "within_days"})
        name = self._name(doc["event"], f"{field}.event", "event")
        count: Condition | None = None
        ok = name is not None
        if "count" in doc:
            raw = doc["count"]
            if not isinstance(raw, Mapping):
                self.fail(f"{field}.count", 'must be an object such as {"op": "gte", "value": 2}')
                ok = False
            else:
                self._only(raw, f"{field}.count", {"op", "value"})
                count = self._count(raw, f"{field}.count")
                ok = ok and count is not None
        days: int | None = None
        if "within_days" in doc:
            days = self._days(doc["within_days"], f"{field}.within_days")
            ok = ok and days is not None
        if not ok or name is None:
            return None
        return EventRule(name, count, days)

    def _count(self, raw: Mapping[str, Any], field: str) -> Condition | None:
        op = raw.get("op")
        if op not in COUNT_OPS:
            self.fail(f"{field}.op", f"unknown op; one of {', '.join(COUNT_OPS)}")
            return None
        value = raw.get("value")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
            self.fail(f"{field}.value", "must be a whole number, 0 or more")
            return None
        return Condition(op, value)

    def _consent(self, doc: Mapping[str, Any], field: str) -> Rule | None:
        self._only(doc, field, {"consent", "allowed"})
        raw = doc["consent"]
        if not isinstance(raw, Mapping):
            self.fail(f"{field}.consent", "must be an object with purpose and channel")
            return None
        self._only(raw, f"{field}.consent", {"purpose", "channel"})
        purpose = self._name(raw.get("purpose"), f"{field}.consent.purpose", "purpose")
        channel = self._name(raw.get("channel"), f"{field}.consent.channel", "channel")
        allowed = doc.get("allowed", True)
        if not isinstance(allowed, bool):
            self.fail(f"{field}.allowed", "must be true or false")
            return None
        return ConsentRule(purpose, channel, allowed) if purpose and channel else None

    def _segment(self, doc: Mapping[str, Any], field: str) -> Rule | None:
        self._only(doc, field, {"segment", "member"})
        segment = self._name(doc["segment"], f"{field}.segment", "segment (its id)")
        member = doc.get("member", True)
        if not isinstance(member, bool):
            self.fail(f"{field}.member", "must be true or false")
            return None
        return SegmentRule(segment, member) if segment else None


def is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and value == value  # not NaN
        and abs(value) != float("inf")
    )


def parse_rule(doc: Any, field: str = "rule") -> Rule:
    """The rule tree of a JSON document; Invalid naming every bad field otherwise."""
    parser = _Parser()
    tree = parser.rule(doc, field, 1)
    if parser.errors or tree is None:
        errors = parser.errors or [FieldError(field, "is not a rule")]
        raise Invalid("the segment rule is invalid", errors)
    return tree


# --- back to JSON ---------------------------------------------------------------------------------


def _condition_doc(condition: Condition) -> dict[str, Any]:
    doc: dict[str, Any] = {"op": condition.op}
    if isinstance(condition.value, tuple):
        doc["value"] = list(condition.value)
    elif condition.value is not None:
        doc["value"] = condition.value
    return doc


def to_document(rule: Rule) -> dict[str, Any]:
    """The JSON document of a rule tree (``allowed`` and ``member`` always written)."""
    match rule:
        case AllOf(rules):
            return {"all": [to_document(r) for r in rules]}
        case AnyOf(rules):
            return {"any": [to_document(r) for r in rules]}
        case Not(inner):
            return {"not": to_document(inner)}
        case TraitRule(trait, condition):
            return {"trait": trait, **_condition_doc(condition)}
        case ComputedRule(computed, condition):
            return {"computed": computed, **_condition_doc(condition)}
        case EventRule(event, count, within_days):
            doc: dict[str, Any] = {"event": event}
            if count is not None:
                doc["count"] = _condition_doc(count)
            if within_days is not None:
                doc["within_days"] = within_days
            return doc
        case ConsentRule(purpose, channel, allowed):
            return {"consent": {"purpose": purpose, "channel": channel}, "allowed": allowed}
        case SegmentRule(segment_id, member):
            return {"segment": segment_id, "member": member}


# --- what a rule reads ----------------------------------------------------------------------------


def leaves(rule: Rule) -> Iterator[Leaf]:
    """Every condition of the rule, depth first."""
    match rule:
        case AllOf(rules) | AnyOf(rules):
            for inner in rules:
                yield from leaves(inner)
        case Not(inner):
            yield from leaves(inner)
        case _:
            yield rule


def kinds(rule: Rule) -> frozenset[str]:
    """The kinds of facts the rule reads, among ``KINDS``: what must change for its members
    to change (drives the incremental refresh)."""
    found: set[str] = set()
    for leaf in leaves(rule):
        match leaf:
            case TraitRule():
                found.add("traits")
            case ComputedRule():
                found.add("computed")
            case EventRule():
                found.add("events")
            case ConsentRule():
                found.add("consent")
            case SegmentRule():
                found.add("segments")
    return frozenset(found)


def segments_read(rule: Rule) -> set[str]:
    """The ids of the segments the rule reads."""
    return {leaf.segment_id for leaf in leaves(rule) if isinstance(leaf, SegmentRule)}


def reads_consent(rule: Rule) -> bool:
    return any(isinstance(leaf, ConsentRule) for leaf in leaves(rule))


def paths(rule: Rule, field: str = "rule") -> Iterator[tuple[str, Leaf]]:
    """Each condition with the path that names it in errors (``rule.all[0]``)."""
    match rule:
        case AllOf(rules) | AnyOf(rules):
            group = "all" if isinstance(rule, AllOf) else "any"
            for i, inner in enumerate(rules):
                yield from paths(inner, f"{field}.{group}[{i}]")
        case Not(inner):
            yield from paths(inner, f"{field}.not")
        case _:
            yield field, rule


# --- readable text --------------------------------------------------------------------------------


def _quote(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return repr(value) if isinstance(value, float) else str(value)


def _condition_text(subject: str, condition: Condition) -> str:
    op, value = condition.op, condition.value
    if op in SYMBOLS:
        assert value is not None and not isinstance(value, tuple)
        return f"{subject} {SYMBOLS[op]} {_quote(value)}"
    if op in LIST_OPS:
        assert isinstance(value, tuple)
        shown = ", ".join(_quote(v) for v in value)
        return f"{subject} {'in' if op == 'in' else 'not in'} ({shown})"
    if op == "contains":
        assert value is not None and not isinstance(value, tuple)
        return f"{subject} contains {_quote(value)}"
    if op == "exists":
        return f"{subject} exists"
    if op == "not_exists":
        return f"{subject} does not exist"
    if op == "within_last_days":
        return f"{subject} within the last {value} days"
    return f"{subject} {op} {value}"  # before / after a date


def _window(days: int | None) -> str:
    if days is None:
        return ""
    return " in the last day" if days == 1 else f" in the last {days} days"


def _event_text(rule: EventRule) -> str:
    window = _window(rule.within_days)
    count = rule.count
    if count is None or (count.op == "gte" and count.value == 1):
        return f"{rule.event}{window}"
    if count.op == "eq" and count.value == 0:
        return f"no {rule.event}{window}"
    times = "time" if count.value == 1 else "times"
    return f"{rule.event} {SYMBOLS[count.op]} {count.value} {times}{window}"


def describe(rule: Rule, segment_names: Mapping[str, str] | None = None) -> str:
    """The readable form shown in the UI, e.g. ``plan = "gold" AND Product Viewed >= 2 times
    in the last 7 days AND no Order Completed in the last 7 days``; segments are shown by name
    when ``segment_names`` knows them."""
    names = segment_names or {}

    def inner(node: Rule, top: bool) -> str:
        match node:
            case AllOf(rules) | AnyOf(rules):
                joiner = " AND " if isinstance(node, AllOf) else " OR "
                text = joiner.join(inner(r, False) for r in rules)
                return text if top or len(rules) == 1 else f"({text})"
            case Not(child):
                return f"NOT ({inner(child, True)})"
            case TraitRule(trait, condition):
                return _condition_text(trait, condition)
            case ComputedRule(computed, condition):
                return _condition_text(computed, condition)
            case EventRule():
                return _event_text(node)
            case ConsentRule(purpose, channel, allowed):
                verb = "consent" if allowed else "no consent"
                return f"{verb} to {purpose} by {channel}"
            case SegmentRule(segment_id, member):
                shown = _quote(names.get(segment_id, segment_id))
                return f"in segment {shown}" if member else f"not in segment {shown}"

    return inner(rule, True)


# --- comparisons in Python (the value a missing fact defaults to) --------------------------------


def holds(condition: Condition, value: Any, today: date) -> bool:
    """Whether ``value`` (a number, string, bool, list, ISO date text or None) satisfies
    ``condition``, with the semantics the compiled SQL gives; used for the default of facts a
    profile has no row for (a count of 0)."""
    op, wanted = condition.op, condition.value
    if op in NEGATIONS:
        return not holds(Condition(NEGATIONS[op], wanted), value, today)
    if op == "exists":
        return value is not None
    if value is None:
        return False
    if op == "eq":
        return _same(value, wanted)
    if op == "in":
        assert isinstance(wanted, tuple)
        return any(_same(value, w) for w in wanted)
    if op in NUMBER_OPS:
        if not is_number(value):
            return False
        assert isinstance(wanted, int | float)
        number = float(value)
        return {
            "gt": number > wanted,
            "gte": number >= wanted,
            "lt": number < wanted,
            "lte": number <= wanted,
        }[op]
    if op == "contains":
        if isinstance(value, list):
            return any(_same(v, wanted) for v in value)
        return isinstance(value, str) and isinstance(wanted, str) and wanted in value
    day = _day_of(value)
    if day is None:
        return False
    if op == "within_last_days":
        assert isinstance(wanted, int)
        return (today - day).days <= wanted and day <= today
    assert isinstance(wanted, str)
    limit = date.fromisoformat(wanted[:10])
    return day < limit if op == "before" else day > limit


def _same(value: Any, wanted: Any) -> bool:
    if isinstance(value, bool) or isinstance(wanted, bool):
        return isinstance(value, bool) and isinstance(wanted, bool) and value == wanted
    if is_number(value) and is_number(wanted):
        return bool(value == wanted)
    return isinstance(value, str) and isinstance(wanted, str) and value == wanted


def _day_of(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str) and _DATE.match(value):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None
