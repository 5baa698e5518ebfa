"""Conversion attribution of a journey: orders within the goal window after a send, per
journey, step and variant, and the uplift against the holdout.

What counts (docs/journeys.md, "Attribution"):

- A conversion is an order of the enrolled person (any member of their unified profile, as it
  is now) placed within ``goal.within_days`` (default ``DEFAULT_WINDOW_DAYS``) after the
  moment that counts; its revenue is the order's amount net of refunds. Guest, cancelled and
  fully refunded orders convert nobody (``commerce.feed.conversion_rows``).
- The holdout is the held-out arm of the journey's first split with a ``holdout_percent``.
  Held-out and messaged enrolments are compared from the same moment, their assignment at
  that split, so the comparison is randomised: the journey's uplift (every variant against
  the holdout) and each variant's. A journey without such a split has no uplift.
- A step's conversions count orders within the window after each of its sends (several sends
  of one step to one person count once per send). Its comparison with the holdout is shown
  too, but a step is reached through waits and branches, so it is descriptive, not a test.
- Uplift: the difference of the conversion rates with Newcombe's hybrid score interval (95 %,
  from Wilson intervals), the relative uplift with the Katz log interval of the rate ratio,
  and the two-sided p-value of the pooled two-proportion z-test (the normal distribution of the
  standard library: `statistics.NormalDist` and `math.erfc`, the same figures as scipy.stats to
  1e-13 without loading scipy in the server).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from consentry.commerce import feed as commerce_feed
from consentry.journeys import service
from consentry.journeys.engine import definition_of
from consentry.journeys.models import HOLDOUT, JourneyDefinition
from consentry.journeys.tables import EnrollmentRow, StepRunRow
from consentry.profiles import service as profiles

DEFAULT_WINDOW_DAYS = 7
CONFIDENCE = 0.95
SENT = "sent"
HELD_OUT_OUTCOME = "held_out"


# --- statistics (pure) --------------------------------------------------------------------------


def _z(confidence: float = CONFIDENCE) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(converted: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``converted / total``."""
    if total <= 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = converted / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    # at 0 (or all) converted a bound is exactly 0 (or 1): say so rather than leave rounding
    low = 0.0 if converted <= 0 else max(0.0, centre - half)
    high = 1.0 if converted >= total else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True, slots=True)
class Uplift:
    """A group's conversion rate against the holdout's: ``absolute`` (difference of rates)
    with its interval, ``relative`` (rate ratio - 1) with its interval (None when a group has
    no conversion), the p-value, and whether the interval excludes no difference."""

    absolute: float
    absolute_low: float
    absolute_high: float
    relative: float | None
    relative_low: float | None
    relative_high: float | None
    p_value: float
    significant: bool

    def document(self) -> dict[str, Any]:
        """As the API shows it (rates as fractions)."""
        return {
            "absolute": _round(self.absolute),
            "absolute_ci95": [_round(self.absolute_low), _round(self.absolute_high)],
            "relative": _round(self.relative),
            "relative_ci95": (
                None
                if self.relative_low is None or self.relative_high is None
                else [_round(self.relative_low), _round(self.relative_high)]
            ),
            "p_value": _round(self.p_value),
            "significant": self.significant,
        }


def uplift(
    converted: int, total: int, base_converted: int, base_total: int, confidence: float = CONFIDENCE
) -> Uplift | None:
    """The uplift of ``converted / total`` over the holdout's ``base_converted / base_total``;
    None when either group is empty."""
    if total <= 0 or base_total <= 0:
        return None
    p1, p2 = converted / total, base_converted / base_total
    l1, u1 = wilson(converted, total, confidence)
    l2, u2 = wilson(base_converted, base_total, confidence)
    difference = p1 - p2
    low = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    relative = relative_low = relative_high = None
    if converted > 0 and base_converted > 0:
        ratio = p1 / p2
        se = math.sqrt(1 / converted - 1 / total + 1 / base_converted - 1 / base_total)
        z = _z(confidence)
        relative = ratio - 1
        relative_low = ratio * math.exp(-z * se) - 1
        relative_high = ratio * math.exp(z * se) - 1
    pooled = (converted + base_converted) / (total + base_total)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / total + 1 / base_total))
    # two-sided: 2 * P(Z > |d| / se0) = erfc(|d| / (se0 * sqrt 2)), exact in the far tail too
    p_value = 1.0 if se0 == 0 else math.erfc(abs(difference) / se0 / math.sqrt(2))
    return Uplift(
        absolute=difference,
        absolute_low=max(-1.0, low),
        absolute_high=min(1.0, high),
        relative=relative,
        relative_low=relative_low,
        relative_high=relative_high,
        p_value=min(1.0, p_value),
        significant=low > 0 or high < 0,
    )


def _round(value: float | None, places: int = 6) -> float | None:
    return None if value is None else round(value, places)


# --- counting conversions (pure) ----------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """Conversions of a group: how many were counted, how many converted, their revenue (net
    cents per currency)."""

    total: int = 0
    converted: int = 0
    revenue_cents: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float | None:
        """Converted / total; None for an empty group."""
        return self.converted / self.total if self.total else None

    def count(self, orders: Sequence[tuple[float, int, str]]) -> None:
        """Count one member of the group whose orders in its window are ``orders``."""
        self.total += 1
        if orders:
            self.converted += 1
        for _, cents, currency in orders:
            self.revenue_cents[currency] = self.revenue_cents.get(currency, 0) + cents

    def document(self) -> dict[str, Any]:
        """As the API shows it (revenue in currency units, per currency)."""
        return {
            "total": self.total,
            "converted": self.converted,
            "rate": _round(self.rate),
            "revenue": {c: cents / 100 for c, cents in sorted(self.revenue_cents.items())},
        }


class Orders:
    """Orders by unified profile, sorted by time: ``(epoch seconds, net cents, currency)``."""

    def __init__(self) -> None:
        self._by_profile: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
        self._times: dict[str, list[float]] = {}

    def add(self, profile_id: str, at: float, cents: int, currency: str) -> None:
        """Record an order (call :meth:`seal` when all are added)."""
        self._by_profile[profile_id].append((at, cents, currency))

    def seal(self) -> Orders:
        """Sort the orders for look-ups."""
        for orders in self._by_profile.values():
            orders.sort()
        self._times = {p: [o[0] for o in orders] for p, orders in self._by_profile.items()}
        return self

    def within(self, profile_id: str, start: float, seconds: float) -> list[tuple[float, int, str]]:
        """The profile's orders placed in ``[start, start + seconds]``."""
        times = self._times.get(profile_id)
        if not times:
            return []
        orders = self._by_profile[profile_id]
        return orders[
            bisect.bisect_left(times, start) : bisect.bisect_right(times, start + seconds)
        ]


# --- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attribution:
    """A journey's conversions: per arm of the holdout split (``holdout`` and the variants),
    per sending step, and the uplifts."""

    journey_id: str
    window_days: int
    goal_event: str | None
    split_step: str | None
    journey: Tally  # every messaged (non-held-out) enrolment of the holdout split
    holdout: Tally | None
    variants: dict[str, Tally]
    steps: dict[str, Tally]
    step_types: dict[str, str]
    as_of: datetime

    def uplift_of(self, tally: Tally) -> Uplift | None:
        """``tally`` against the holdout (None without a holdout)."""
        if self.holdout is None:
            return None
        return uplift(tally.converted, tally.total, self.holdout.converted, self.holdout.total)

    def document(self) -> dict[str, Any]:
        """The attribution as ``GET /v1/journeys/{id}/attribution`` answers it."""

        def with_uplift(tally: Tally) -> dict[str, Any]:
            found = self.uplift_of(tally)
            return tally.document() | {"uplift": found.document() if found else None}

        return {
            "journey_id": self.journey_id,
            "window_days": self.window_days,
            "goal_event": self.goal_event,
            "conversion": "an order within the window",
            "holdout_split": self.split_step,
            "as_of": self.as_of.isoformat(),
            "journey": with_uplift(self.journey),
            "holdout": self.holdout.document() if self.holdout is not None else None,
            "variants": [{"variant": name} | with_uplift(t) for name, t in self.variants.items()],
            "steps": [
                {"step": step, "type": self.step_types.get(step)} | with_uplift(t)
                for step, t in self.steps.items()
            ],
        }


def groups(document: Mapping[str, Any]) -> list[tuple[str, str | None, dict[str, Any]]]:
    """The groups of an attribution document (:meth:`Attribution.document`) as they are shown,
    each ``(kind, name, group)``: the journey, the holdout (no uplift of its own), each variant
    (named) and each sending step (named with its type)."""
    found: list[tuple[str, str | None, dict[str, Any]]] = [("journey", None, document["journey"])]
    if document["holdout"] is not None:
        found.append((HOLDOUT, None, document["holdout"] | {"uplift": None}))
    found += [("variant", str(v["variant"]), v) for v in document["variants"]]
    found += [("step", f"{s['step']} ({s['type']})", s) for s in document["steps"]]
    return found


def _holdout_split(definition: JourneyDefinition) -> str | None:
    """The id of the journey's first split that holds some entrants out, if any."""
    return next(
        (s.id for s in definition.steps if s.type == "split" and s.holdout_percent > 0), None
    )


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float | str) else float(str(value))


def _epoch(at: datetime) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def _orders(
    session: Session,
    workspace_id: str,
    since: datetime,
    until: datetime,
    wanted: set[str],
) -> Orders:
    """The orders of the wanted unified profiles placed in ``[since, until]``."""
    found = Orders()
    for batch in commerce_feed.conversion_rows(
        session=session, workspace_id=workspace_id, since=since, until=until
    ):
        members = {str(row[0]) for row in batch}
        canonical = profiles.canonical_map_many(
            session=session, workspace_id=workspace_id, profile_ids=members
        )
        for member, placed, cents, currency in batch:
            person = canonical.get(str(member))
            if person is not None and person in wanted:
                found.add(person, _number(placed), int(_number(cents)), str(currency))
    return found.seal()


def journey_attribution(
    *, session: Session, workspace_id: str, journey_id: str, now: datetime | None = None
) -> Attribution:
    """The conversions of a journey's enrolments and sends so far (NotFound for an unknown
    journey). Reads the journey's enrolments and step runs, and the orders of the enrolled
    people within the window after the first moment that counts."""
    journey = service.get_journey(session=session, workspace_id=workspace_id, journey_id=journey_id)
    # the current version's goal, split and steps
    definition = definition_of(journey.id, journey.version, journey.definition)
    goal = definition.goal
    window_days = goal.within_days if goal else DEFAULT_WINDOW_DAYS
    window = timedelta(days=window_days).total_seconds()
    split = _holdout_split(definition)
    step_types = {s.id: s.type for s in definition.steps}

    enrolled: dict[int, str] = {}
    for enrollment_id, profile_id in session.execute(
        select(EnrollmentRow.id, EnrollmentRow.profile_id).where(
            EnrollmentRow.workspace_id == workspace_id, EnrollmentRow.journey_id == journey_id
        )
    ):
        enrolled[enrollment_id] = profile_id
    runs = session.execute(
        select(StepRunRow.enrollment_id, StepRunRow.step, StepRunRow.variant, StepRunRow.at)
        .where(
            StepRunRow.workspace_id == workspace_id,
            StepRunRow.journey_id == journey_id,
            or_(StepRunRow.outcome == SENT, StepRunRow.step == (split or "")),
        )
        .order_by(StepRunRow.id)
    )
    sends: list[tuple[int, str, datetime]] = []
    arms: dict[int, tuple[str, datetime]] = {}  # enrolment -> (arm, when) at the holdout split
    for enrollment_id, step, variant, at in runs:
        if split is not None and step == split:
            arms.setdefault(enrollment_id, (variant or HOLDOUT, at))
        else:
            sends.append((enrollment_id, step, at))

    canonical = profiles.canonical_map_many(
        session=session, workspace_id=workspace_id, profile_ids=set(enrolled.values())
    )
    person = {e: canonical.get(p, p) for e, p in enrolled.items()}
    moments = [at for _, at in arms.values()] + [at for _, _, at in sends]
    as_of = now or datetime.now(UTC)
    orders = (
        _orders(
            session,
            workspace_id,
            min(moments),
            max(moments) + timedelta(seconds=window),
            set(person.values()),
        )
        if moments
        else Orders()
    )

    journey_tally, holdout = Tally(), Tally() if split is not None else None
    variants: dict[str, Tally] = {}
    for enrollment_id, (arm, at) in sorted(arms.items()):
        who = person.get(enrollment_id)
        if who is None:
            continue
        found = orders.within(who, _epoch(at), window)
        if arm == HOLDOUT:
            if holdout is not None:
                holdout.count(found)
            continue
        journey_tally.count(found)
        variants.setdefault(arm, Tally()).count(found)
    if split is None:  # no holdout: the journey's conversions are its sends' people
        first_send: dict[int, datetime] = {}
        for enrollment_id, _, at in sends:
            first_send.setdefault(enrollment_id, at)
        for enrollment_id, at in first_send.items():
            if enrollment_id in person:
                journey_tally.count(orders.within(person[enrollment_id], _epoch(at), window))
    steps: dict[str, Tally] = {s.id: Tally() for s in definition.sending_steps()}
    for enrollment_id, step, at in sends:
        if enrollment_id in person:
            found = orders.within(person[enrollment_id], _epoch(at), window)
            steps.setdefault(step, Tally()).count(found)
    return Attribution(
        journey_id=journey_id,
        window_days=window_days,
        goal_event=goal.event if goal else None,
        split_step=split,
        journey=journey_tally,
        holdout=holdout,
        variants=variants,
        steps=steps,
        step_types=step_types,
        as_of=as_of,
    )
