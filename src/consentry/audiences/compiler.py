"""Compile a segment rule into SQL and evaluate it, set-based, on SQLite and PostgreSQL.

A rule without consent conditions becomes one ``SELECT`` of unified profile ids of the
workspace, each condition a ``profiles.id [NOT] IN (subquery)``:

- traits: the current value in ``profile_traits`` (clear JSON; a personal trait's value is
  sealed, so a rule on one is refused when saved and matches nobody here), compared by JSON
  type (a number only equals a number, ``"5"`` is not ``5``), dates by calendar day;
- events: track events of one name in a window, counted per unified profile (events keep their
  member profile: joined member -> canonical), through ``ingest.feed.track_select``;
- built-in computed traits: purchases and order lines (``commerce.feed``), the latest analytics
  scores (``analytics.service.score_select``); the workspace's own computed traits: their
  materialised values;
- segments: the stored members of the other segment.

A condition a profile without any row satisfies (``order_count = 0``, an event ``count eq 0``)
is compiled as ``NOT IN (the profiles whose value fails it)``.

Consent is decided by ``consent.policy`` alone, which reads members, states and country traits
in Python: a rule with consent conditions is evaluated as set algebra over the SQL parts, and
each consent condition asks ``can_use_many`` about the profiles still in question (after the
SQL parts of an ``all`` narrowed them down).

Evaluation can be restricted to given profile ids (the incremental refresh, one profile's
``matches``): they are pushed into every subquery, so a few profiles cost a few index look-ups.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Float,
    Select,
    Text,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from consentry.analytics import service as analytics
from consentry.audiences import rules as r
from consentry.audiences.tables import ComputedValueRow, SegmentMemberRow
from consentry.commerce import feed as commerce_feed
from consentry.consent import service as consent
from consentry.ingest import feed as ingest_feed
from consentry.platform.jsoncodec import json_dumps
from consentry.profiles import bulk

CHUNK = 500  # ids in one IN list
RESTRICT_IN_SQL = 5_000  # more restricted ids than this: evaluate the workspace, intersect

# The kinds of values a computed trait or trait has, and the ops that apply to each.
NUMBER, STRING, TIME, LIST, JSON = "number", "string", "time", "list", "json"
OPS_OF_KIND: dict[str, tuple[str, ...]] = {
    NUMBER: ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists", "not_exists"),
    STRING: ("eq", "ne", "in", "not_in", "contains", "exists", "not_exists"),
    TIME: ("before", "after", "within_last_days", "exists", "not_exists"),
    LIST: ("contains", "in", "not_in", "exists", "not_exists"),
    JSON: r.TRAIT_OPS,
}


@dataclass(frozen=True, slots=True)
class Builtin:
    """A built-in computed trait: its kind, what a profile without a row has, what it is."""

    kind: str
    default: Any
    about: str


BUILTINS: dict[str, Builtin] = {
    "total_spent": Builtin(NUMBER, 0, "sum of purchases, net of refunds, in order currency"),
    "order_count": Builtin(NUMBER, 0, "purchases (cancelled and fully refunded left out)"),
    "avg_order_value": Builtin(NUMBER, None, "total_spent / order_count"),
    "first_order_at": Builtin(TIME, None, "when the first purchase was placed"),
    "last_order_at": Builtin(TIME, None, "when the latest purchase was placed"),
    "categories_bought": Builtin(LIST, None, "categories of the products bought"),
    "rfm_segment": Builtin(STRING, None, "named RFM segment (latest analytics run)"),
    "clv": Builtin(NUMBER, None, "customer lifetime value (latest analytics run)"),
    "churn_risk": Builtin(NUMBER, None, "churn risk, 0 to 1 (latest analytics run)"),
    "p_alive": Builtin(NUMBER, None, "probability the customer is alive (latest run)"),
}


@dataclass(frozen=True, slots=True)
class Custom:
    """A workspace's computed trait as the compiler needs it."""

    id: str
    default: Any  # 0 for count and sum, else None


@dataclass(frozen=True, slots=True)
class Context:
    """What a compilation needs: the workspace, now, its custom computed traits, which traits
    are personal, and the ids the evaluation is restricted to (one chunk)."""

    session: Session
    workspace_id: str
    now: datetime
    custom: Mapping[str, Custom]
    personal: Callable[[str], bool]
    chunk: Sequence[str] | None = None

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name

    @property
    def today(self) -> date:
        return self.now.astimezone(UTC).date()


def kind_of_computed(name: str, custom: Mapping[str, Custom]) -> str | None:
    """The kind of values of a computed trait, or None when there is no such trait."""
    if name in BUILTINS:
        return BUILTINS[name].kind
    return JSON if name in custom else None


def condition_problem(kind: str, condition: r.Condition) -> str | None:
    """Why ``condition`` cannot apply to a value of ``kind`` (None: it can)."""
    if condition.op not in OPS_OF_KIND[kind]:
        return (
            f"op {condition.op} does not apply to a {kind}; one of {', '.join(OPS_OF_KIND[kind])}"
        )
    values = condition.value if isinstance(condition.value, tuple) else (condition.value,)
    if condition.op in ("exists", "not_exists"):
        return None
    if kind == NUMBER and condition.op in ("eq", "ne", "in", "not_in"):
        if not all(r.is_number(v) for v in values):
            return "must be a number (or a list of numbers)"
    if kind in (STRING, LIST) and not all(isinstance(v, str) for v in values):
        return "must be a string (or a list of strings)"
    return None


# --- JSON values, per store ---------------------------------------------------------------------


class _Json:
    """Typed reads of a JSON column: SQLite's json functions, PostgreSQL's jsonb operators."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"

    def kind(self, col: Any) -> ColumnElement[str]:
        return func.jsonb_typeof(col) if self.pg else func.json_type(col)

    def text(self, col: Any) -> ColumnElement[Any]:
        if self.pg:
            found: ColumnElement[Any] = col.op("#>>", return_type=Text())(literal_column("'{}'"))
            return found
        return func.json_extract(col, "$")

    def is_string(self, col: Any) -> ColumnElement[bool]:
        return self.kind(col) == ("string" if self.pg else "text")

    def is_number(self, col: Any) -> ColumnElement[bool]:
        return self.kind(col) == "number" if self.pg else self.kind(col).in_(("integer", "real"))

    def string(self, col: Any) -> ColumnElement[Any]:
        return case((self.is_string(col), self.text(col)))

    def number(self, col: Any) -> ColumnElement[Any]:
        value = cast(self.text(col), Float) if self.pg else self.text(col)
        return case((self.is_number(col), value))

    def boolean_is(self, col: Any, wanted: bool) -> ColumnElement[bool]:
        word = "true" if wanted else "false"
        if self.pg:
            return and_(self.kind(col) == "boolean", self.text(col) == word)
        return self.kind(col) == word

    def day(self, col: Any) -> ColumnElement[Any]:
        """``YYYY-MM-DD`` of a string that starts with an ISO date, else NULL."""
        text = self.text(col)
        if self.pg:
            looks = text.op("~")(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}")
        else:
            looks = text.op("GLOB")("[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*")
        return case((and_(self.is_string(col), looks), func.substr(text, 1, 10)))

    def eq(self, col: Any, wanted: r.Scalar) -> ColumnElement[bool]:
        if isinstance(wanted, bool):
            return self.boolean_is(col, wanted)
        if isinstance(wanted, str):
            return self.string(col) == wanted
        return self.number(col) == wanted

    def has_item(self, col: Any, wanted: r.Scalar) -> ColumnElement[bool]:
        """The value is an array holding ``wanted``."""
        if self.pg:
            probe = cast(literal(json_dumps([wanted]), Text()), JSONB)
            return and_(self.kind(col) == "array", col.op("@>")(probe))
        each = func.json_each(col).table_valued("value", "type")
        if isinstance(wanted, bool):
            match = each.c.type == ("true" if wanted else "false")
        elif isinstance(wanted, str):
            match = and_(each.c.type == "text", each.c.value == wanted)
        else:
            match = and_(each.c.type.in_(("integer", "real")), each.c.value == wanted)
        return and_(self.kind(col) == "array", exists(select(1).select_from(each).where(match)))

    def has_text(self, col: Any, wanted: str) -> ColumnElement[bool]:
        finder = func.strpos if self.pg else func.instr
        return finder(self.string(col), wanted) > 0


# --- sources: (canonical id, value) per unified profile -------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """Rows of (canonical id, value): ``stmt`` holds the FROM and WHERE; ``grouped`` sources
    aggregate per canonical id (conditions go to HAVING)."""

    stmt: Select[*tuple[Any, ...]]
    canonical: Any  # a column of canonical ids
    value: Any  # the value's SQL expression
    kind: str
    default: Any = None
    grouped: bool = False

    def ids_where(self, predicate: ColumnElement[bool]) -> Select[str]:
        stmt = self.stmt.with_only_columns(self.canonical)
        if self.grouped:
            return stmt.group_by(self.canonical).having(predicate)
        return stmt.where(predicate)


def _restricted(
    ctx: Context, stmt: Select[*tuple[Any, ...]], canonical: Any
) -> Select[*tuple[Any, ...]]:
    return stmt if ctx.chunk is None else stmt.where(canonical.in_(ctx.chunk))


def _by_member(
    ctx: Context, rows: Select[*tuple[Any, ...]]
) -> tuple[Any, Any, Select[*tuple[Any, ...]]]:
    """A member-keyed selectable joined to its unified profile."""
    sub = rows.subquery()
    members = bulk.membership_select(ctx.workspace_id).subquery()
    stmt = select(members.c.canonical_id).select_from(
        sub.join(members, members.c.member_id == sub.c.profile_id)
    )
    return sub, members, _restricted(ctx, stmt, members.c.canonical_id)


def event_source(ctx: Context, rule: r.EventRule) -> Source:
    since = ctx.now - timedelta(days=rule.within_days) if rule.within_days else None
    events, members, stmt = _by_member(
        ctx, ingest_feed.track_select(ctx.workspace_id, rule.event, since)
    )
    return Source(stmt, members.c.canonical_id, func.count(), NUMBER, 0, grouped=True)


def _purchases(ctx: Context, name: str) -> Source:
    orders, members, stmt = _by_member(ctx, commerce_feed.purchase_select(ctx.workspace_id))
    total = cast(func.sum(orders.c.cents), Float) / 100.0
    value: Any = {
        "total_spent": total,
        "order_count": func.count(),
        "avg_order_value": total / func.count(),
        "first_order_at": func.min(orders.c.placed_at),
        "last_order_at": func.max(orders.c.placed_at),
    }[name]
    spec = BUILTINS[name]
    return Source(stmt, members.c.canonical_id, value, spec.kind, spec.default, grouped=True)


def _categories(ctx: Context) -> Source:
    lines, members, stmt = _by_member(ctx, commerce_feed.category_select(ctx.workspace_id))
    return Source(stmt, members.c.canonical_id, lines.c.category, LIST)


def _scores(ctx: Context, name: str) -> Source:
    scores = analytics.score_select(ctx.workspace_id)
    cols = scores.selected_columns
    value: ColumnElement[Any] = {
        "rfm_segment": cols.rfm_segment,
        "clv": cast(cols.clv_cents, Float) / 100.0,
        "churn_risk": cols.churn_risk,
        "p_alive": cols.p_alive,
    }[name]
    stmt = _restricted(ctx, scores, cols.profile_id)
    return Source(stmt, cols.profile_id, value, BUILTINS[name].kind)


def computed_source(ctx: Context, name: str) -> Source:
    if name in ("rfm_segment", "clv", "churn_risk", "p_alive"):
        return _scores(ctx, name)
    if name == "categories_bought":
        return _categories(ctx)
    if name in BUILTINS:
        return _purchases(ctx, name)
    custom = ctx.custom.get(name)
    if custom is None:
        raise LookupError(name)  # refused when the rule was saved; deleted since
    v = ComputedValueRow
    stmt = select(v.profile_id).where(v.workspace_id == ctx.workspace_id, v.trait_id == custom.id)
    return Source(_restricted(ctx, stmt, v.profile_id), v.profile_id, v.value, JSON, custom.default)


def trait_source(ctx: Context, key: str) -> Source:
    stmt = bulk.trait_select(ctx.workspace_id, key)
    cols = stmt.selected_columns
    return Source(_restricted(ctx, stmt, cols.canonical_id), cols.canonical_id, cols.value, JSON)


# --- predicates ----------------------------------------------------------------------------------


def _moment(text: str, *, end_of_day: bool) -> datetime:
    """An ISO date or date-time as an aware UTC moment; a bare date means its midnight (or
    the next midnight, for ``after``: after a day is from the day after)."""
    if len(text) == 10:
        day = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return day + timedelta(days=1) if end_of_day else day
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _predicate(ctx: Context, source: Source, condition: r.Condition) -> ColumnElement[bool]:
    """The positive condition (eq, in, exists, ...) on the source's value."""
    op, wanted = condition.op, condition.value
    v: ColumnElement[Any] = source.value
    if source.kind == JSON:
        return _json_predicate(ctx, v, condition)
    if op == "exists":
        return v.is_not(None)
    if op == "eq" or (op == "contains" and source.kind == LIST):
        return v == wanted
    if op == "in":
        assert isinstance(wanted, tuple)
        return v.in_(wanted)
    if op == "contains":
        assert isinstance(wanted, str)
        finder = func.strpos if ctx.dialect == "postgresql" else func.instr
        return finder(v, wanted) > 0
    if op in r.NUMBER_OPS:
        return {"gt": v > wanted, "gte": v >= wanted, "lt": v < wanted, "lte": v <= wanted}[op]
    if op == "within_last_days":
        assert isinstance(wanted, int)
        return and_(v >= ctx.now - timedelta(days=wanted), v <= ctx.now)
    assert isinstance(wanted, str)
    if op == "before":
        return v < _moment(wanted, end_of_day=False)
    return (
        v >= _moment(wanted, end_of_day=True)
        if len(wanted) == 10
        else v > _moment(wanted, end_of_day=False)
    )


def _json_predicate(ctx: Context, v: Any, condition: r.Condition) -> ColumnElement[bool]:
    js = _Json(ctx.dialect)
    op, wanted = condition.op, condition.value
    if op == "exists":
        return js.kind(v) != "null"
    if op == "eq":
        assert wanted is not None and not isinstance(wanted, tuple)
        return js.eq(v, wanted)
    if op == "in":
        assert isinstance(wanted, tuple)
        texts = [w for w in wanted if isinstance(w, str)]
        numbers = [w for w in wanted if r.is_number(w)]
        parts = [
            js.boolean_is(v, w) for w in dict.fromkeys(w for w in wanted if w is True or w is False)
        ]
        if texts:
            parts.append(js.string(v).in_(texts))
        if numbers:
            parts.append(js.number(v).in_(numbers))
        return or_(*parts)
    if op in r.NUMBER_OPS:
        n = js.number(v)
        return {"gt": n > wanted, "gte": n >= wanted, "lt": n < wanted, "lte": n <= wanted}[op]
    if op == "contains":
        assert wanted is not None and not isinstance(wanted, tuple)
        if isinstance(wanted, str):
            return or_(js.has_text(v, wanted), js.has_item(v, wanted))
        return js.has_item(v, wanted)
    day = js.day(v)
    if op == "within_last_days":
        assert isinstance(wanted, int)
        since = (ctx.today - timedelta(days=wanted)).isoformat()
        return and_(day >= since, day <= ctx.today.isoformat())
    assert isinstance(wanted, str)
    return day < wanted[:10] if op == "before" else day > wanted[:10]


def _leaf_condition(
    ctx: Context, pid: ColumnElement[str], source: Source, condition: r.Condition
) -> ColumnElement[bool]:
    negated = condition.op in r.NEGATIONS
    positive = r.Condition(r.NEGATIONS[condition.op], condition.value) if negated else condition
    predicate = _predicate(ctx, source, positive)
    if source.default is not None and r.holds(positive, source.default, ctx.today):
        # profiles without a row satisfy it: all but those whose value fails
        failing = source.ids_where(not_(func.coalesce(predicate, false())))
        found = pid.not_in(failing)
    else:
        found = pid.in_(source.ids_where(predicate))
    return not_(found) if negated else found


def condition(ctx: Context, pid: ColumnElement[str], rule: r.Rule) -> ColumnElement[bool]:
    """The SQL condition on the unified profile id ``pid`` (a rule without consent)."""
    match rule:
        case r.AllOf(rules):
            return and_(*(condition(ctx, pid, inner) for inner in rules))
        case r.AnyOf(rules):
            return or_(*(condition(ctx, pid, inner) for inner in rules))
        case r.Not(inner):
            return not_(condition(ctx, pid, inner))
        case r.TraitRule(trait, cond):
            if ctx.personal(trait):  # sealed values: nothing compares (refused at save)
                return false()
            return _leaf_condition(ctx, pid, trait_source(ctx, trait), cond)
        case r.ComputedRule(name, cond):
            return _leaf_condition(ctx, pid, computed_source(ctx, name), cond)
        case r.EventRule():
            return _leaf_condition(ctx, pid, event_source(ctx, rule), rule.effective_count)
        case r.SegmentRule(segment_id, member):
            m = SegmentMemberRow
            stmt = select(m.profile_id).where(
                m.workspace_id == ctx.workspace_id, m.segment_id == segment_id
            )
            found = pid.in_(_restricted(ctx, stmt, m.profile_id))
            return found if member else not_(found)
        case r.ConsentRule():
            raise ValueError("consent is decided by consent.policy, not compiled to SQL")


def compile_select(ctx: Context, rule: r.Rule | None) -> Select[str]:
    """One SELECT of the unified profile ids of the workspace the rule (without consent
    conditions; None: every profile) holds for, within ``ctx.chunk`` when set."""
    root = bulk.unified_select(ctx.workspace_id)
    pid = root.selected_columns[0]
    if ctx.chunk is not None:
        root = root.where(pid.in_(ctx.chunk))
    return root if rule is None else root.where(condition(ctx, pid, rule))


# --- evaluation ----------------------------------------------------------------------------------


def _run(ctx: Context, rule: r.Rule | None) -> set[str]:
    result = ctx.session.connection().execute(compile_select(ctx, rule))
    return {pid for (pid,) in result}


def _sql_ids(ctx: Context, rule: r.Rule | None, restrict: Collection[str] | None) -> set[str]:
    if restrict is None:
        return _run(ctx, rule)
    if len(restrict) > RESTRICT_IN_SQL:  # cheaper to evaluate all and intersect
        wanted = restrict if isinstance(restrict, set | frozenset) else set(restrict)
        return _run(replace(ctx, chunk=None), rule) & wanted
    ids = sorted(restrict)
    found: set[str] = set()
    for start in range(0, len(ids), CHUNK):
        found |= _run(replace(ctx, chunk=ids[start : start + CHUNK]), rule)
    return found


def evaluate(ctx: Context, rule: r.Rule, restrict: Collection[str] | None = None) -> set[str]:
    """The unified profiles (of ``restrict`` only, when given) the rule holds for, now."""
    return _evaluate(ctx, rule, restrict, unified=False)


def _evaluate(
    ctx: Context, rule: r.Rule, restrict: Collection[str] | None, *, unified: bool
) -> set[str]:
    """:func:`evaluate`; ``unified``: ``restrict`` is a set of unified profile ids this
    evaluation already found, so it is the universe as it is, not looked up again."""
    if not r.reads_consent(rule):
        return _sql_ids(ctx, rule, restrict)

    def universe() -> set[str]:
        if unified:
            assert isinstance(restrict, set)
            return restrict
        return _sql_ids(ctx, None, restrict)

    match rule:
        case r.AllOf(rules):
            plain = tuple(inner for inner in rules if not r.reads_consent(inner))
            current = _sql_ids(ctx, r.AllOf(plain), restrict) if plain else universe()
            for inner in rules:
                if r.reads_consent(inner) and current:
                    current = _evaluate(ctx, inner, current, unified=True)
            return current
        case r.AnyOf(rules):
            plain = tuple(inner for inner in rules if not r.reads_consent(inner))
            found = _sql_ids(ctx, r.AnyOf(plain), restrict) if plain else set()
            pool = universe()
            for inner in rules:
                if r.reads_consent(inner):
                    found |= _evaluate(ctx, inner, pool - found, unified=True)
            return found
        case r.Not(inner):
            pool = universe()
            return pool - _evaluate(ctx, inner, pool, unified=True)
        case r.ConsentRule(purpose, channel, allowed):
            pool = universe()
            if not pool:
                return set()
            decisions = consent.can_use_many(
                session=ctx.session,
                workspace_id=ctx.workspace_id,
                profile_ids=pool,
                purpose=purpose,
                channel=channel,
                at=ctx.now,
            )
            return {pid for pid, d in decisions.items() if d.allowed == allowed}
        case _:  # a leaf other than consent reads no consent
            return _sql_ids(ctx, rule, restrict)
