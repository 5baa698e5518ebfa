"""Journeys' pure rules: the definition document (parse and validate), the step graph, and the
guard rules decided without a store (quiet hours, frequency caps, holdout and variant
assignment).

No SQL and no HTTP here. Rules on segments (``eligibility``, a branch's ``rule``), templates,
destinations and purposes need the store and are checked by ``journeys.service`` at save; this
module checks the shape of the document and everything that follows from it alone.
"""

from __future__ import annotations

import calendar
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from consentry.errors import FieldError, Invalid
from consentry.profiles.models import is_personal_trait

END = "end"
TRIGGER_TYPES = ("event", "segment_entered", "segment_exited", "date_trait", "inactivity")
SEND_TYPES = ("email", "sms", "webhook")
STEP_TYPES = ("wait", "branch", "split", *SEND_TYPES, "update_trait")
STATUSES = ("draft", "active", "paused", "archived")
# enrollment statuses: one ``active`` enrollment per journey and profile at a time
ACTIVE, COMPLETED, EXITED, HELD_OUT = "active", "completed", "exited", "held_out"
MERGED = "merged"  # the end reason of an enrollment a merge made a second one of a person
ENROLLMENT_STATUSES = (ACTIVE, COMPLETED, EXITED, HELD_OUT)
# what a step did to an enrollment (journey_step_runs.outcome)
OUTCOMES = ("sent", "skipped", "deferred", "branched", "updated", "held_out")
HOLDOUT = "holdout"

MAX_STEPS = 50
MAX_VARIANTS = 10
MAX_WAIT_HOURS = 24 * 365  # a wait is at most a year
MAX_DAYS = 3650
MAX_HOLDOUT_PERCENT = 50
MAX_NAME = 200
MAX_DESCRIPTION = 2000
MAX_TEXT = 100_000  # a template's source
_STEP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_TRAIT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,199}$")
_PURPOSE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


@dataclass(frozen=True, slots=True)
class Trigger:
    """What enrolls a profile: an event, entering or leaving a segment, a date trait's day
    (``days_before`` it), or ``days`` without activity."""

    type: str
    event: str | None = None
    segment_id: str | None = None
    trait: str | None = None
    days_before: int = 0
    days: int | None = None

    def document(self) -> dict[str, Any]:
        """The trigger as the definition document writes it."""
        found: dict[str, Any] = {"type": self.type}
        if self.type == "event":
            found["event"] = self.event
        elif self.type in ("segment_entered", "segment_exited"):
            found["segment_id"] = self.segment_id
        elif self.type == "date_trait":
            found.update(trait=self.trait, days_before=self.days_before)
        else:
            found["days"] = self.days
        return found


@dataclass(frozen=True, slots=True)
class Goal:
    """The conversion a journey works for, counted within ``within_days`` of a send."""

    event: str
    within_days: int


@dataclass(frozen=True, slots=True)
class Template:
    """A message's template sources (``journeys.templates`` renders them)."""

    subject: str | None = None
    text: str = ""
    html: str | None = None


@dataclass(frozen=True, slots=True)
class Variant:
    """One arm of a split: its share among the non-held-out and where it goes."""

    name: str
    weight: float
    next: str


@dataclass(frozen=True, slots=True)
class Step:
    """One step. Which fields matter depends on ``type``:

    - ``wait``: ``hours``
    - ``branch``: ``rule`` (a segment rule), ``then`` and ``otherwise`` (the document's ``else``)
    - ``split``: ``holdout_percent``, ``variants``
    - ``email``/``sms``/``webhook``: ``destination_id``, ``purpose``, ``template``
    - ``update_trait``: ``trait``, ``value``

    ``next`` is where the step goes on to (``None``: the step after it in the list, or the
    end after the last one)."""

    id: str
    type: str
    next: str | None = None
    hours: float = 0.0
    rule: Mapping[str, Any] | None = None
    then: str | None = None
    otherwise: str | None = None
    holdout_percent: float = 0.0
    variants: tuple[Variant, ...] = ()
    destination_id: str | None = None
    purpose: str | None = None
    template: Template | None = None
    trait: str | None = None
    value: Any = None

    @property
    def sends(self) -> bool:
        """Whether this step hands a message to a destination."""
        return self.type in SEND_TYPES


@dataclass(frozen=True, slots=True)
class JourneyDefinition:
    """A parsed and checked journey; ``document`` is the normalised JSON stored for it."""

    name: str
    description: str
    trigger: Trigger
    steps: tuple[Step, ...]
    exit_on_event: str | None = None
    reentry_after_days: int | None = None  # None: never enters again
    eligibility: Mapping[str, Any] | None = None
    goal: Goal | None = None
    document: Mapping[str, Any] = field(default_factory=dict)
    _index: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def first(self) -> str:
        """The id of the step an enrollment starts at."""
        return self.steps[0].id

    def step(self, step_id: str) -> Step:
        """The step named ``step_id`` (KeyError when there is none)."""
        return self.steps[self._index[step_id]]

    def has_step(self, step_id: str) -> bool:
        """Whether the journey has a step of that id."""
        return step_id in self._index

    def after(self, step: Step) -> str:
        """Where a step goes on to when it names nothing else: the next step in the list, or
        the end."""
        if step.next is not None:
            return step.next
        at = self._index[step.id]
        return self.steps[at + 1].id if at + 1 < len(self.steps) else END

    def successors(self, step: Step) -> list[str]:
        """Every step (or ``end``) ``step`` can go on to."""
        if step.type == "branch":
            return [step.then or END, step.otherwise or END]
        if step.type == "split":
            return [v.next for v in step.variants] + ([END] if step.holdout_percent else [])
        return [self.after(step)]

    def sending_steps(self) -> list[Step]:
        """The steps that send a message."""
        return [s for s in self.steps if s.sends]

    def rules(self) -> list[tuple[str, Mapping[str, Any]]]:
        """Every segment rule of the journey with the field it sits in."""
        found: list[tuple[str, Mapping[str, Any]]] = []
        if self.eligibility is not None:
            found.append(("eligibility", self.eligibility))
        for i, s in enumerate(self.steps):
            if s.rule is not None:
                found.append((f"steps[{i}].rule", s.rule))
        return found


# --- parsing ------------------------------------------------------------------------------------


class _Problems:
    """Collects field errors while a document is read, so one answer names them all."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, where: str, reason: str) -> None:
        self.errors.append(FieldError(where, reason))

    def obj(self, value: Any, where: str, allowed: Sequence[str]) -> Mapping[str, Any] | None:
        if not isinstance(value, Mapping):
            self.add(where, "must be an object")
            return None
        for key in value:
            if key not in allowed:
                self.add(f"{where}.{key}" if where else str(key), "unknown field")
        return value

    def text(
        self,
        doc: Mapping[str, Any],
        key: str,
        where: str,
        *,
        limit: int,
        required: bool = True,
        pattern: re.Pattern[str] | None = None,
    ) -> str | None:
        value = doc.get(key)
        path = f"{where}.{key}" if where else key
        if value is None:
            if required:
                self.add(path, "is required")
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            self.add(path, "must be a non-empty string")
            return None
        if len(value) > limit:
            self.add(path, f"must be at most {limit} characters")
            return None
        if pattern is not None and not pattern.match(value):
            self.add(path, "is not a valid name")
            return None
        return value

    def number(
        self,
        doc: Mapping[str, Any],
        key: str,
        where: str,
        *,
        low: float,
        high: float,
        default: float | None = None,
        integer: bool = False,
        above_low: bool = False,
    ) -> float | None:
        value = doc.get(key, default)
        path = f"{where}.{key}" if where else key
        if value is None:
            self.add(path, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(path, "must be a number")
            return None
        if isinstance(value, int) and abs(value) > 2**53:  # beyond any bound, and past floats
            self.add(path, f"must be at most {high:g}")
            return None
        if integer and not float(value).is_integer():
            self.add(path, "must be a whole number")
            return None
        if not math.isfinite(value) or value > high or value < low or (above_low and value == low):
            side = f"more than {low:g}" if above_low else f"at least {low:g}"
            self.add(path, f"must be {side} and at most {high:g}")
            return None
        return float(value)


def parse_journey(doc: Any) -> JourneyDefinition:
    """Read a journey definition document; ``Invalid`` names every problem's field (such as
    ``steps[2].hours`` or ``steps[1].then``)."""
    p = _Problems()
    top = p.obj(
        doc,
        "",
        (
            "name",
            "description",
            "trigger",
            "exit_on",
            "reentry",
            "eligibility",
            "goal",
            "steps",
        ),
    )
    if top is None:
        raise Invalid("a journey is a JSON object", p.errors or [FieldError("", "not an object")])
    name = p.text(top, "name", "", limit=MAX_NAME)
    description = p.text(top, "description", "", limit=MAX_DESCRIPTION, required=False) or ""
    trigger = _trigger(p, top.get("trigger"))
    exit_on = None
    if top.get("exit_on") is not None:
        exit_doc = p.obj(top["exit_on"], "exit_on", ("event",))
        if exit_doc is not None:
            exit_on = p.text(exit_doc, "event", "exit_on", limit=512)
    reentry = None
    if top.get("reentry") is not None:
        reentry_doc = p.obj(top["reentry"], "reentry", ("after_days",))
        if reentry_doc is not None:
            days = p.number(
                reentry_doc, "after_days", "reentry", low=1, high=MAX_DAYS, integer=True
            )
            reentry = None if days is None else int(days)
    eligibility = None
    if top.get("eligibility") is not None:
        if isinstance(top["eligibility"], Mapping):
            eligibility = dict(top["eligibility"])
        else:
            p.add("eligibility", "must be a segment rule (an object)")
    goal = None
    if top.get("goal") is not None:
        goal_doc = p.obj(top["goal"], "goal", ("event", "within_days"))
        if goal_doc is not None:
            event = p.text(goal_doc, "event", "goal", limit=512)
            within = p.number(goal_doc, "within_days", "goal", low=1, high=365, default=7)
            if event is not None and within is not None:
                goal = Goal(event, int(within))
    steps = _steps(p, top.get("steps"))
    if p.errors:
        raise Invalid("the journey definition is not valid", p.errors)
    assert name is not None and trigger is not None
    index = {s.id: i for i, s in enumerate(steps)}
    definition = JourneyDefinition(
        name=name,
        description=description,
        trigger=trigger,
        steps=tuple(steps),
        exit_on_event=exit_on,
        reentry_after_days=reentry,
        eligibility=eligibility,
        goal=goal,
        _index=index,
    )
    _check_graph(p, definition)
    if p.errors:
        raise Invalid("the journey definition is not valid", p.errors)
    return replace(definition, document=_document(definition))


def _trigger(p: _Problems, value: Any) -> Trigger | None:
    if value is None:
        p.add("trigger", "is required")
        return None
    doc = p.obj(value, "trigger", ("type", "event", "segment_id", "trait", "days_before", "days"))
    if doc is None:
        return None
    kind = doc.get("type")
    if kind not in TRIGGER_TYPES:
        p.add("trigger.type", f"must be one of {', '.join(TRIGGER_TYPES)}")
        return None
    expected = {
        "event": {"event"},
        "segment_entered": {"segment_id"},
        "segment_exited": {"segment_id"},
        "date_trait": {"trait", "days_before"},
        "inactivity": {"days"},
    }[kind]
    for key in doc:
        if key != "type" and key not in expected:
            p.add(f"trigger.{key}", f"does not apply to a {kind} trigger")
    if kind == "event":
        event = p.text(doc, "event", "trigger", limit=512)
        return None if event is None else Trigger(kind, event=event)
    if kind in ("segment_entered", "segment_exited"):
        segment = p.text(doc, "segment_id", "trigger", limit=64)
        return None if segment is None else Trigger(kind, segment_id=segment)
    if kind == "date_trait":
        trait = p.text(doc, "trait", "trigger", limit=200, pattern=_TRAIT)
        before = p.number(doc, "days_before", "trigger", low=0, high=365, default=0, integer=True)
        if trait is None or before is None:
            return None
        return Trigger(kind, trait=trait, days_before=int(before))
    days = p.number(doc, "days", "trigger", low=1, high=MAX_DAYS, integer=True)
    return None if days is None else Trigger(kind, days=int(days))


_STEP_FIELDS: dict[str, tuple[str, ...]] = {
    "wait": ("hours", "days", "next"),
    "branch": ("rule", "then", "else"),
    "split": ("holdout_percent", "variants"),
    "email": ("destination_id", "purpose", "template", "next"),
    "sms": ("destination_id", "purpose", "template", "next"),
    "webhook": ("destination_id", "purpose", "template", "next"),
    "update_trait": ("trait", "value", "next"),
}
_TEMPLATE_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("subject", "text", "html"),
    "sms": ("text",),
    "webhook": ("text",),
}


def _steps(p: _Problems, value: Any) -> list[Step]:
    if not isinstance(value, list) or not value:
        p.add("steps", "must be a non-empty list of steps")
        return []
    if len(value) > MAX_STEPS:
        p.add("steps", f"at most {MAX_STEPS} steps")
        return []
    steps: list[Step] = []
    seen: set[str] = set()
    for i, raw in enumerate(value):
        where = f"steps[{i}]"
        if not isinstance(raw, Mapping):
            p.add(where, "must be an object")
            continue
        kind = raw.get("type")
        if kind not in STEP_TYPES:
            p.add(f"{where}.type", f"must be one of {', '.join(STEP_TYPES)}")
            continue
        p.obj(raw, where, ("id", "type", *_STEP_FIELDS[kind]))
        step_id = p.text(raw, "id", where, limit=64, pattern=_STEP_ID)
        if step_id is None:
            continue
        if step_id == END:
            p.add(f"{where}.id", f'"{END}" is reserved: it ends the journey')
            continue
        if step_id in seen:
            p.add(f"{where}.id", f'another step is already called "{step_id}"')
            continue
        seen.add(step_id)
        step = _step(p, raw, where, step_id, kind)
        if step is not None:
            steps.append(step)
    return steps


def _reference(p: _Problems, raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        p.add(f"{where}.{key}", 'must name a step or "end"')
        return None
    return value


def _step(p: _Problems, raw: Mapping[str, Any], where: str, step_id: str, kind: str) -> Step | None:
    nxt = _reference(p, raw, "next", where)
    if kind == "wait":
        if ("hours" in raw) == ("days" in raw):
            p.add(f"{where}.hours", "give the wait in hours or in days (one of them)")
            return None
        if "days" in raw:
            days = p.number(raw, "days", where, low=0, high=MAX_WAIT_HOURS / 24, above_low=True)
            return None if days is None else Step(step_id, kind, nxt, hours=days * 24)
        hours = p.number(raw, "hours", where, low=0, high=MAX_WAIT_HOURS, above_low=True)
        return None if hours is None else Step(step_id, kind, nxt, hours=hours)
    if kind == "branch":
        rule = raw.get("rule")
        if not isinstance(rule, Mapping):
            p.add(f"{where}.rule", "must be a segment rule (an object)")
        then, otherwise = (_reference(p, raw, k, where) for k in ("then", "else"))
        for key, target in (("then", then), ("else", otherwise)):
            if target is None and key in raw:
                continue  # already reported
            if target is None:
                p.add(f"{where}.{key}", 'is required: a step id or "end"')
        if not isinstance(rule, Mapping) or then is None or otherwise is None:
            return None
        return Step(step_id, kind, rule=dict(rule), then=then, otherwise=otherwise)
    if kind == "split":
        return _split(p, raw, where, step_id)
    if kind == "update_trait":
        trait = p.text(raw, "trait", where, limit=200, pattern=_TRAIT)
        value = raw.get("value")
        if "value" not in raw:
            p.add(f"{where}.value", "is required")
        elif not _scalar(value):
            p.add(
                f"{where}.value",
                "must be a string (at most 1000 characters), number, true, false or null",
            )
        if trait is not None and is_personal_trait(trait):
            p.add(f"{where}.trait", "a journey may not write a personal trait")
            return None
        if trait is None or "value" not in raw or not _scalar(value):
            return None
        return Step(step_id, kind, nxt, trait=trait, value=value)
    return _send(p, raw, where, step_id, kind, nxt)


def _scalar(value: Any) -> bool:
    if value is None or isinstance(value, bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and len(value) <= 1000


def _split(p: _Problems, raw: Mapping[str, Any], where: str, step_id: str) -> Step | None:
    holdout = p.number(raw, "holdout_percent", where, low=0, high=MAX_HOLDOUT_PERCENT, default=0)
    value = raw.get("variants")
    if not isinstance(value, list) or not value:
        p.add(f"{where}.variants", "must be a non-empty list of variants")
        return None
    if len(value) > MAX_VARIANTS:
        p.add(f"{where}.variants", f"at most {MAX_VARIANTS} variants")
        return None
    variants: list[Variant] = []
    names: set[str] = set()
    for j, item in enumerate(value):
        vwhere = f"{where}.variants[{j}]"
        doc = p.obj(item, vwhere, ("name", "weight", "next"))
        if doc is None:
            continue
        name = p.text(doc, "name", vwhere, limit=64, pattern=_STEP_ID)
        weight = p.number(doc, "weight", vwhere, low=0, high=1_000_000, above_low=True)
        nxt = _reference(p, doc, "next", vwhere)
        if nxt is None and "next" not in doc:
            p.add(f"{vwhere}.next", 'is required: a step id or "end"')
        if name is not None and (name in names or name == HOLDOUT):
            p.add(f"{vwhere}.name", 'must be unique and not "holdout"')
            continue
        if name is None or weight is None or nxt is None:
            continue
        names.add(name)
        variants.append(Variant(name, weight, nxt))
    if holdout is None or len(variants) != len(value):
        return None
    return Step(step_id, "split", holdout_percent=holdout, variants=tuple(variants))


def _send(
    p: _Problems, raw: Mapping[str, Any], where: str, step_id: str, kind: str, nxt: str | None
) -> Step | None:
    destination = p.text(raw, "destination_id", where, limit=64)
    purpose = p.text(raw, "purpose", where, limit=100, pattern=_PURPOSE)
    doc = p.obj(raw.get("template"), f"{where}.template", _TEMPLATE_FIELDS[kind])
    template = None
    if doc is not None:
        twhere = f"{where}.template"
        text_required = kind != "email" or doc.get("html") is None
        subject = p.text(doc, "subject", twhere, limit=998) if kind == "email" else None
        text = p.text(doc, "text", twhere, limit=MAX_TEXT, required=text_required)
        html = (
            p.text(doc, "html", twhere, limit=MAX_TEXT, required=False) if kind == "email" else None
        )
        if (kind != "email" or subject is not None) and (text is not None or not text_required):
            template = Template(subject=subject, text=text or "", html=html)
    if destination is None or purpose is None or template is None:
        return None
    return Step(step_id, kind, nxt, destination_id=destination, purpose=purpose, template=template)


def _field_of(definition: JourneyDefinition, step: Step, key: str) -> str:
    return f"steps[{definition._index[step.id]}].{key}"


def _check_graph(p: _Problems, definition: JourneyDefinition) -> None:
    """Every reference names a step or ``end``; every step can be reached from the first;
    no cycle goes round without a wait (it would run forever in one tick)."""
    for step in definition.steps:
        refs: list[tuple[str, str | None]] = [("next", step.next)]
        if step.type == "branch":
            refs = [("then", step.then), ("else", step.otherwise)]
        elif step.type == "split":
            refs = [(f"variants[{j}].next", v.next) for j, v in enumerate(step.variants)]
        for key, target in refs:
            if target is not None and target != END and not definition.has_step(target):
                p.add(_field_of(definition, step, key), f'names no step: "{target}"')
            if target == step.id and step.type != "wait":
                p.add(_field_of(definition, step, key), "a step may not go on to itself")
    if p.errors:
        return
    reached = {definition.first}
    todo = [definition.first]
    while todo:
        for nxt in definition.successors(definition.step(todo.pop())):
            if nxt != END and nxt not in reached:
                reached.add(nxt)
                todo.append(nxt)
    for step in definition.steps:
        if step.id not in reached:
            p.add(_field_of(definition, step, "id"), "is never reached from the first step")
    cycle = _cycle_without_wait(definition)
    if cycle is not None:
        p.add(
            _field_of(definition, definition.step(cycle[0]), "id"),
            "goes round in a loop without a wait: " + " -> ".join([*cycle, cycle[0]]),
        )


def _cycle_without_wait(definition: JourneyDefinition) -> list[str] | None:
    """A loop of steps none of which waits, if there is one (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(step_id: str) -> list[str] | None:
        state[step_id] = 1
        path.append(step_id)
        step = definition.step(step_id)
        if step.type != "wait":
            for nxt in definition.successors(step):
                if nxt == END or definition.step(nxt).type == "wait":
                    continue
                if state.get(nxt) == 1:
                    return path[path.index(nxt) :]
                if nxt not in state and (found := visit(nxt)) is not None:
                    return found
        path.pop()
        state[step_id] = 2
        return None

    for step in definition.steps:
        if step.id not in state and (found := visit(step.id)) is not None:
            return found
    return None


def _document(definition: JourneyDefinition) -> dict[str, Any]:
    """The normalised document of a parsed definition (what is stored and shown)."""
    doc: dict[str, Any] = {
        "name": definition.name,
        "description": definition.description,
        "trigger": definition.trigger.document(),
        "steps": [_step_document(s) for s in definition.steps],
    }
    if definition.exit_on_event is not None:
        doc["exit_on"] = {"event": definition.exit_on_event}
    if definition.reentry_after_days is not None:
        doc["reentry"] = {"after_days": definition.reentry_after_days}
    if definition.eligibility is not None:
        doc["eligibility"] = dict(definition.eligibility)
    if definition.goal is not None:
        doc["goal"] = {"event": definition.goal.event, "within_days": definition.goal.within_days}
    return doc


def _step_document(step: Step) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": step.id, "type": step.type}
    if step.type == "wait":
        doc["hours"] = int(step.hours) if float(step.hours).is_integer() else step.hours
    elif step.type == "branch":
        doc.update({"rule": dict(step.rule or {}), "then": step.then, "else": step.otherwise})
    elif step.type == "split":
        doc["holdout_percent"] = _plain_number(step.holdout_percent)
        doc["variants"] = [
            {"name": v.name, "weight": _plain_number(v.weight), "next": v.next}
            for v in step.variants
        ]
    elif step.sends:
        assert step.template is not None
        template: dict[str, Any] = {"text": step.template.text}
        if step.type == "email":
            template["subject"] = step.template.subject
            if step.template.html is not None:
                template["html"] = step.template.html
        doc.update(destination_id=step.destination_id, purpose=step.purpose, template=template)
    else:
        doc.update(trait=step.trait, value=step.value)
    if step.next is not None and step.type not in ("branch", "split"):
        doc["next"] = step.next
    return doc


def _plain_number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


# --- guard rules --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local hours in which nothing is sent: from ``start`` to ``end`` (may wrap midnight)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours | None:
        """``"21:00-08:00"``; ``""`` or ``"off"`` for none. ValueError when malformed."""
        text = text.strip()
        if text in ("", "off", "none"):
            return None
        start, sep, end = text.partition("-")
        if not sep:
            raise ValueError('quiet hours look like "21:00-08:00"')
        found = cls(time.fromisoformat(start.strip()), time.fromisoformat(end.strip()))
        if found.start == found.end:
            raise ValueError("quiet hours must start and end at different times")
        return found

    def contains(self, local: time) -> bool:
        """Whether a local time of day is inside the quiet hours."""
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


def zone_of(name: Any, default: str) -> ZoneInfo:
    """The time zone a profile's ``timezone`` trait names, else ``default`` (else UTC)."""
    for candidate in (name, default):
        if isinstance(candidate, str) and 0 < len(candidate) <= 64:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def quiet_until(now: datetime, zone: ZoneInfo, quiet: QuietHours | None) -> datetime | None:
    """When a message that is due ``now`` may go (UTC): ``None`` when now is outside the quiet
    hours in ``zone``, else the end of the quiet hours (a send is deferred, never dropped)."""
    if quiet is None:
        return None
    local = now.astimezone(zone)
    if not quiet.contains(local.time().replace(tzinfo=None)):
        return None
    day = local.date()
    if local.time().replace(tzinfo=None) >= quiet.end:  # the quiet hours end tomorrow
        day += timedelta(days=1)
    end = datetime.combine(day, quiet.end, tzinfo=zone).astimezone(UTC)
    # a wall time in a daylight-saving gap maps to the instant after it; never earlier than now
    return end if end > now else now + timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """At most ``limit`` messages over ``channel`` in any ``days`` days."""

    channel: str
    limit: int
    days: float

    @classmethod
    def parse(cls, channel: str, text: str) -> FrequencyCap:
        """``"3/7d"``: three per seven days. ValueError when malformed."""
        count, sep, window = text.replace(" ", "").partition("/")
        if not sep or not window.endswith("d"):
            raise ValueError(f'a frequency cap looks like "3/7d" (channel {channel})')
        limit, days = int(count), float(window[:-1])
        if limit < 0 or not 0 < days <= 365:
            raise ValueError(f"a frequency cap needs a count >= 0 and 0 < days <= 365 ({channel})")
        return cls(channel, limit, days)

    def since(self, now: datetime) -> datetime:
        """The start of the window that ends now."""
        return now - timedelta(days=self.days)

    def reached(self, sent: int) -> bool:
        """Whether ``sent`` messages in the window leave no room for another."""
        return sent >= self.limit


_MONTH_DAY = re.compile(r"^(?:--)?(\d{2})-(\d{2})$")


def month_day(value: Any) -> tuple[int, int] | None:
    """The month and day of a date trait's value (``1990-04-23``, an ISO timestamp,
    ``04-23``, ``--04-23``, a date), or None when it is not a date."""
    if isinstance(value, datetime | date):
        return value.month, value.day
    if not isinstance(value, str) or not 5 <= len(value) <= 40:
        return None
    text = value.strip()
    found = _MONTH_DAY.match(text)
    if found is not None:
        month, day = int(found.group(1)), int(found.group(2))
    else:
        try:
            parsed = datetime.fromisoformat(text) if len(text) > 10 else date.fromisoformat(text)
        except ValueError:
            return None
        month, day = parsed.month, parsed.day
    try:
        date(2000, month, day)  # a leap year: 02-29 is a day
    except ValueError:
        return None
    return month, day


def anniversary_is(value: Any, local_today: date, days_before: int) -> bool:
    """Whether the date trait ``value`` falls ``days_before`` days after ``local_today`` (month
    and day; a 29 February falls on 28 February in other years)."""
    found = month_day(value)
    if found is None:
        return False
    target = local_today + timedelta(days=days_before)
    month, day = found
    if (month, day) == (2, 29) and not calendar.isleap(target.year):
        day = 28
    return (target.month, target.day) == (month, day)


def _unit(journey_id: str, step_id: str, profile_id: str) -> float:
    """A number in [0, 1) fixed by the journey, the step and the profile (SHA-256)."""
    digest = hashlib.sha256(f"{journey_id}\x1f{step_id}\x1f{profile_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(journey_id: str, step: Step, profile_id: str) -> str:
    """The arm of a split a profile goes to: ``holdout`` or a variant's name. Deterministic (a
    re-run assigns the same), uniform over profiles: ``holdout_percent`` of them are held out,
    the rest shared by the variants' weights."""
    u = _unit(journey_id, step.id, profile_id)
    held = step.holdout_percent / 100
    if u < held:
        return HOLDOUT
    share = (u - held) / (1 - held) * sum(v.weight for v in step.variants)
    for variant in step.variants:
        share -= variant.weight
        if share < 0:
            return variant.name
    return step.variants[-1].name


def variant_next(step: Step, arm: str) -> str:
    """Where an arm of a split goes on to (``end`` for the holdout)."""
    for variant in step.variants:
        if variant.name == arm:
            return variant.next
    return END
