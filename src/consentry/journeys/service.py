"""Use cases of the journeys capability: build, check, version, switch on and off, watch and
erase; ``run`` is one round of the engine in its own unit of work.

A definition is checked whole at save (``check_definition``), so nothing is left to fail at
send time: its shape (``journeys.models``), its rules (``audiences.service.validate_rule``),
its templates (``journeys.templates.template_problems``), its destinations (they exist, their
kind is the step's, their purpose is the step's, privacy's gate lets the data go:
``delivery.destinations.check_destination``), its purposes (configured for consent) and the
traits it writes (never personal). Every problem comes back at once, each naming its field.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from consentry.config import JourneySettings, RecommendSettings, Settings
from consentry.consent import service as consent
from consentry.consent.policy import check_use
from consentry.delivery import destinations as delivery_destinations
from consentry.errors import Conflict, FieldError, Invalid, NotFound, TransferRefused
from consentry.journeys import templates
from consentry.journeys.engine import TickReport, tick
from consentry.journeys.models import (
    ACTIVE,
    EXITED,
    JourneyDefinition,
    Step,
    parse_journey,
)
from consentry.journeys.tables import (
    EnrollmentRow,
    JourneyRow,
    JourneyVersionRow,
    StepRunRow,
    TriggerCursorRow,
)
from consentry.journeys.triggers import cursor_of, exit_values
from consentry.platform import audit
from consentry.platform.db import Database, utcnow
from consentry.profiles import service as profiles

ENROLLMENTS = cast(Table, EnrollmentRow.__table__)
STEP_RUNS = cast(Table, StepRunRow.__table__)
# which status change each action makes, and from where
ACTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "activate": (ACTIVE, ("draft", "paused")),
    "pause": ("paused", ("active",)),
    "archive": ("archived", ("draft", "active", "paused")),
}


@dataclass(frozen=True, slots=True)
class JourneyView:
    """A journey as it stands."""

    id: str
    name: str
    description: str
    status: str
    version: int
    trigger_type: str
    definition: dict[str, Any]
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    activated_at: datetime | None

    def document(self) -> dict[str, Any]:
        """The JSON form, as the API and the CLI show it."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "status": self.status,
            "version": self.version,
            "trigger_type": self.trigger_type,
            "definition": self.definition,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "updated_at": self.updated_at.isoformat(),
            "updated_by": self.updated_by,
            "activated_at": self.activated_at.isoformat() if self.activated_at else None,
        }


def _view(row: JourneyRow) -> JourneyView:
    return JourneyView(
        id=row.id,
        name=row.name,
        description=row.description,
        status=row.status,
        version=row.version,
        trigger_type=row.trigger_type,
        definition=dict(row.definition),
        created_at=row.created_at,
        created_by=row.created_by,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
        activated_at=row.activated_at,
    )


# --- checking a definition -----------------------------------------------------------------------


def check_definition(*, session: Session, workspace_id: str, document: Any) -> JourneyDefinition:
    """The parsed definition when everything in it holds in this workspace now; Invalid naming
    every problem's field otherwise (``TransferRefused`` reasons included, as 400s: a
    definition that could never send is bad input)."""
    definition = parse_journey(document)
    errors: list[FieldError] = []
    for where, rule in definition.rules():
        errors += _rule_problems(session, workspace_id, where, rule)
    config = consent.get_config(session=session, workspace_id=workspace_id)
    for i, step in enumerate(definition.steps):
        where = f"steps[{i}]"
        if step.type == "update_trait":
            assert step.trait is not None
            if profiles.is_personal(session=session, workspace_id=workspace_id, key=step.trait):
                errors.append(
                    FieldError(f"{where}.trait", "a journey may not write a personal trait")
                )
        if step.sends:
            errors += _send_problems(session, workspace_id, where, step, config)
    if errors:
        raise Invalid("the journey cannot run as defined", errors)
    return definition


def _rule_problems(
    session: Session, workspace_id: str, where: str, rule: Mapping[str, Any]
) -> list[FieldError]:
    from consentry.audiences import service as audiences

    try:
        audiences.validate_rule(session=session, workspace_id=workspace_id, rule=rule)
    except Invalid as exc:
        return [
            FieldError(_under(where, e.field), e.reason)
            for e in (exc.errors or [FieldError("rule", exc.message)])
        ]
    return []


def _under(where: str, field: str) -> str:
    """A rule's own field path (``rule.all[1].value``) placed under the journey's field."""
    if field == "rule" or not field:
        return where
    if field.startswith("rule.") or field.startswith("rule["):
        return where + field[4:]
    return f"{where}.{field}"


def _send_problems(
    session: Session, workspace_id: str, where: str, step: Step, config: Any
) -> list[FieldError]:
    assert step.destination_id is not None and step.purpose is not None
    assert step.template is not None
    errors = templates.template_problems(
        step.template,
        kind=cast(Any, step.type),
        field=f"{where}.template",
    )
    try:
        destination = delivery_destinations.get_destination(
            session=session, workspace_id=workspace_id, destination_id=step.destination_id
        )
    except NotFound:
        return [*errors, FieldError(f"{where}.destination_id", "no such destination")]
    if destination.kind != step.type:
        errors.append(
            FieldError(
                f"{where}.destination_id",
                f"a {step.type} step needs a {step.type} destination, not {destination.kind}",
            )
        )
    if destination.purpose != step.purpose:
        errors.append(
            FieldError(
                f"{where}.purpose",
                f"the destination is registered for {destination.purpose}, not {step.purpose}",
            )
        )
    try:
        check_use(config, step.purpose, destination.channel)
    except Invalid as exc:
        errors += [FieldError(f"{where}.{e.field}", e.reason) for e in exc.errors]
    try:
        delivery_destinations.check_destination(
            session=session,
            workspace_id=workspace_id,
            destination_id=step.destination_id,
            categories=(),
        )
    except TransferRefused as exc:
        errors += [
            FieldError(f"{where}.destination_id", f"{e.field}: {e.reason}") for e in exc.errors
        ] or [FieldError(f"{where}.destination_id", exc.message)]
    return errors


# --- building ------------------------------------------------------------------------------------


def create_journey(
    *,
    session: Session,
    workspace_id: str,
    document: Any,
    actor: str,
    now: datetime | None = None,
) -> JourneyView:
    """Save a new journey (a draft: ``activate`` switches it on); Invalid naming every
    problem's field; Conflict when the workspace has a journey of that name."""
    definition = check_definition(session=session, workspace_id=workspace_id, document=document)
    now = now or utcnow()
    _refuse_taken_name(session, workspace_id, definition.name, None)
    row = JourneyRow(
        id=str(uuid.uuid4()),
        workspace_id=workspace_id,
        name=definition.name,
        description=definition.description,
        trigger_type=definition.trigger.type,
        definition=dict(definition.document),
        status="draft",
        version=1,
        created_at=now,
        created_by=actor[:200],
        updated_at=now,
        updated_by=actor[:200],
        activated_at=None,
        scanned_at=None,
    )
    session.add(row)
    session.flush()
    _add_version(session, row, now, actor)
    _audit(session, row, actor, "journey.create")
    return _view(row)


def _audit(session: Session, row: JourneyRow, actor: str, action: str) -> None:
    """A change of a journey in the audit trail (who switched on what sends messages)."""
    audit.record(
        session=session,
        workspace_id=row.workspace_id,
        actor=actor,
        action=action,
        target_type="journey",
        target_id=row.id,
        reason=action.replace("journey.", "journey ", 1),
        details={"version": row.version, "status": row.status},
    )


def _add_version(session: Session, row: JourneyRow, now: datetime, actor: str) -> None:
    session.add(
        JourneyVersionRow(
            journey_id=row.id,
            version=row.version,
            definition=dict(row.definition),
            created_at=now,
            created_by=actor[:200],
        )
    )
    session.flush()


def _refuse_taken_name(
    session: Session, workspace_id: str, name: str, journey_id: str | None
) -> None:
    taken = session.scalar(
        select(JourneyRow.id).where(
            JourneyRow.workspace_id == workspace_id, JourneyRow.name == name
        )
    )
    if taken is not None and taken != journey_id:
        raise Conflict(
            f"the workspace already has a journey called {name!r}",
            [FieldError("name", "already taken")],
        )


def _row(session: Session, workspace_id: str, journey_id: str) -> JourneyRow:
    row = session.get(JourneyRow, journey_id)
    if row is None or row.workspace_id != workspace_id:
        raise NotFound(f"no journey {journey_id[:64]!r} in this workspace")
    return row


def update_journey(
    *,
    session: Session,
    workspace_id: str,
    journey_id: str,
    document: Any,
    actor: str,
    now: datetime | None = None,
) -> JourneyView:
    """Save a new version of a journey's definition; enrollments already running keep the
    version they entered with. An archived journey cannot change (Conflict)."""
    row = _row(session, workspace_id, journey_id)
    if row.status == "archived":
        raise Conflict("an archived journey cannot change", [FieldError("status", "archived")])
    definition = check_definition(session=session, workspace_id=workspace_id, document=document)
    _refuse_taken_name(session, workspace_id, definition.name, journey_id)
    now = now or utcnow()
    row.name, row.description = definition.name, definition.description
    row.trigger_type, row.definition = definition.trigger.type, dict(definition.document)
    row.version += 1
    row.updated_at, row.updated_by = now, actor[:200]
    session.flush()
    _add_version(session, row, now, actor)
    _audit(session, row, actor, "journey.update")
    return _view(row)


def change_status(
    *,
    session: Session,
    workspace_id: str,
    journey_id: str,
    action: str,
    actor: str,
    now: datetime | None = None,
) -> JourneyView:
    """``activate`` (a draft or paused journey: its definition is checked again, as
    destinations and consent settings may have changed), ``pause`` (enrollments stay where
    they are) or ``archive`` (running enrollments end as exited). Conflict from a status the
    action does not apply to."""
    if action not in ACTIONS:
        raise Invalid(f"unknown action {action[:32]!r}", [FieldError("action", "unknown")])
    row = _row(session, workspace_id, journey_id)
    status, sources = ACTIONS[action]
    if row.status == status:
        return _view(row)
    if row.status not in sources:
        raise Conflict(
            f"a {row.status} journey cannot {action}", [FieldError("status", row.status)]
        )
    now = now or utcnow()
    if action == "activate":
        check_definition(session=session, workspace_id=workspace_id, document=row.definition)
        row.activated_at = now
        row.scanned_at = now  # scans look forward from here: no mass enrollment of the past
        cursor_of(session, workspace_id, now)  # triggers are read from here on
    if action == "archive":
        session.execute(
            update(ENROLLMENTS)
            .where(ENROLLMENTS.c.journey_id == row.id, ENROLLMENTS.c.status == ACTIVE)
            .values(exit_values(now, "journey archived"))
        )
    row.status, row.updated_at, row.updated_by = status, now, actor[:200]
    session.flush()
    _audit(session, row, actor, f"journey.{action}")
    return _view(row)


# --- reading -------------------------------------------------------------------------------------


def get_journey(*, session: Session, workspace_id: str, journey_id: str) -> JourneyView:
    """One journey; NotFound otherwise."""
    return _view(_row(session, workspace_id, journey_id))


def get_version(
    *, session: Session, workspace_id: str, journey_id: str, version: int
) -> dict[str, Any]:
    """The definition of one version of a journey; NotFound otherwise."""
    _row(session, workspace_id, journey_id)
    found = session.get(JourneyVersionRow, (journey_id, version))
    if found is None:
        raise NotFound(f"journey {journey_id[:64]!r} has no version {version}")
    return dict(found.definition)


def list_journeys(
    *, session: Session, workspace_id: str, status: str | None = None
) -> list[JourneyView]:
    """The workspace's journeys, newest first (archived ones only when asked for)."""
    query = select(JourneyRow).where(JourneyRow.workspace_id == workspace_id)
    if status is not None:
        query = query.where(JourneyRow.status == status)
    else:
        query = query.where(JourneyRow.status != "archived")
    return [
        _view(r)
        for r in session.scalars(query.order_by(JourneyRow.created_at.desc(), JourneyRow.id))
    ]


def has_active(*, session: Session, workspace_id: str) -> bool:
    """Whether the workspace has an active journey (the schedule skips the others)."""
    found = session.scalar(
        select(JourneyRow.id)
        .where(JourneyRow.workspace_id == workspace_id, JourneyRow.status == ACTIVE)
        .limit(1)
    )
    return found is not None


def journey_stats(*, session: Session, workspace_id: str, journey_id: str) -> dict[str, Any]:
    """Counts of a journey: enrollments by status, and per step what it did (sent, skipped by
    reason, deferred, branched by arm, updated, held out)."""
    row = _row(session, workspace_id, journey_id)
    return _stats(session, workspace_id, [_view(row)])[row.id]


def journeys_stats(
    *, session: Session, workspace_id: str, journeys: Sequence[JourneyView] | None = None
) -> dict[str, dict[str, Any]]:
    """:func:`journey_stats` of many journeys of the workspace (``journeys``, as
    :func:`list_journeys` gave them, or every one when None) in two queries, whatever their
    number: the list page's."""
    if journeys is None:
        rows = session.scalars(select(JourneyRow).where(JourneyRow.workspace_id == workspace_id))
        journeys = [_view(row) for row in rows]
    return _stats(session, workspace_id, journeys)


def _stats(
    session: Session, workspace_id: str, rows: Sequence[JourneyView]
) -> dict[str, dict[str, Any]]:
    """:func:`journeys_stats` of these journeys (of the workspace)."""
    if not rows:
        return {}
    ids = [row.id for row in rows]
    e, r = ENROLLMENTS.c, STEP_RUNS.c
    by_status: dict[str, dict[str, int]] = defaultdict(dict)
    for jid, status, count in session.execute(
        select(e.journey_id, e.status, func.count())
        .where(e.workspace_id == workspace_id, e.journey_id.in_(ids))
        .group_by(e.journey_id, e.status)
    ):
        by_status[jid][status] = int(count)

    def fresh() -> dict[str, Any]:
        return {
            "sent": 0,
            "skipped": 0,
            "deferred": 0,
            "branched": 0,
            "updated": 0,
            "held_out": 0,
            "reasons": Counter(),
        }

    steps: dict[str, dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(fresh))
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    skipped: dict[str, Counter[str]] = defaultdict(Counter)
    for jid, step, outcome, reason, count in session.execute(
        select(r.journey_id, r.step, r.outcome, r.reason, func.count())
        .where(r.workspace_id == workspace_id, r.journey_id.in_(ids))
        .group_by(r.journey_id, r.step, r.outcome, r.reason)
    ):
        found = steps[jid][step]
        found[outcome] = found.get(outcome, 0) + int(count)
        totals[jid][outcome] += int(count)
        if outcome in ("skipped", "branched", "deferred") and reason:
            kind = reason.split(":", 1)[0] if outcome != "branched" else reason
            found["reasons"][f"{outcome}:{kind}"] += int(count)
            if outcome == "skipped":
                skipped[jid][kind] += int(count)
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        counts, per_step = by_status.get(row.id, {}), steps[row.id]
        order = [s["id"] for s in row.definition.get("steps", [])]
        out[row.id] = {
            "journey_id": row.id,
            "name": row.name,
            "status": row.status,
            "version": row.version,
            "entered": sum(counts.values()),
            "active": counts.get(ACTIVE, 0),
            "completed": counts.get("completed", 0),
            "exited": counts.get(EXITED, 0),
            "held_out": counts.get("held_out", 0),
            "sent": totals[row.id]["sent"],
            "skipped": totals[row.id]["skipped"],
            "skipped_by_reason": dict(sorted(skipped[row.id].items())),
            "steps": [
                {
                    "step": s,
                    **{k: (dict(v) if k == "reasons" else v) for k, v in per_step[s].items()},
                }
                for s in order + sorted(set(per_step) - set(order))
            ],
        }
    return out


def _enrollment_document(row: Any, runs: Sequence[Any] = ()) -> dict[str, Any]:
    found = {
        "id": row.id,
        "journey_id": row.journey_id,
        "version": row.version,
        "profile_id": row.profile_id,
        "status": row.status,
        "step": row.step,
        "due_at": row.due_at.isoformat() if row.due_at else None,
        "variant": row.variant,
        "trigger": dict(row.trigger),
        "entered_at": row.entered_at.isoformat(),
        "ended_at": row.ended_at.isoformat() if row.ended_at else None,
        "end_reason": row.end_reason,
    }
    if runs:
        found["steps"] = [
            {
                "step": r.step,
                "outcome": r.outcome,
                "reason": r.reason,
                "variant": r.variant,
                "message_id": r.message_id,
                "at": r.at.isoformat(),
            }
            for r in runs
        ]
    return found


def list_enrollments(
    *,
    session: Session,
    workspace_id: str,
    journey_id: str,
    status: str | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """A page of a journey's enrollments in id order (``after_id``: the last of the previous
    page)."""
    _row(session, workspace_id, journey_id)
    query = select(EnrollmentRow).where(
        EnrollmentRow.journey_id == journey_id, EnrollmentRow.id > after_id
    )
    if status is not None:
        query = query.where(EnrollmentRow.status == status)
    rows = session.scalars(query.order_by(EnrollmentRow.id).limit(limit))
    return [_enrollment_document(r) for r in rows]


def enrollments_of(*, session: Session, workspace_id: str, profile_id: str) -> list[dict[str, Any]]:
    """Every enrollment of the unified profile ``profile_id`` belongs to (any member id), with
    what each step did; NotFound for an unknown profile."""
    canonical = profiles.canonical_of(
        session=session, workspace_id=workspace_id, profile_id=profile_id
    )
    members = profiles.member_ids(
        session=session, workspace_id=workspace_id, canonical_id=canonical
    )
    rows = list(
        session.scalars(
            select(EnrollmentRow)
            .where(
                EnrollmentRow.workspace_id == workspace_id, EnrollmentRow.profile_id.in_(members)
            )
            .order_by(EnrollmentRow.entered_at.desc(), EnrollmentRow.id.desc())
        )
    )
    runs: dict[int, list[StepRunRow]] = defaultdict(list)
    ids = [r.id for r in rows]
    for start in range(0, len(ids), 500):
        for run in session.scalars(
            select(StepRunRow)
            .where(StepRunRow.enrollment_id.in_(ids[start : start + 500]))
            .order_by(StepRunRow.id)
        ):
            runs[run.enrollment_id].append(run)
    return [_enrollment_document(r, runs[r.id]) for r in rows]


# --- erasure -------------------------------------------------------------------------------------


def erase_subject(*, session: Session, workspace_id: str, profile_ids: Sequence[str]) -> int:
    """Delete every enrollment of these profiles (any of a person's ids) and what their steps
    did; returns how many enrollments went. Journeys keep counting nobody afterwards."""
    ids = sorted(set(profile_ids))
    gone = 0
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        enrollments = select(ENROLLMENTS.c.id).where(
            ENROLLMENTS.c.workspace_id == workspace_id, ENROLLMENTS.c.profile_id.in_(part)
        )
        session.execute(delete(STEP_RUNS).where(STEP_RUNS.c.enrollment_id.in_(enrollments)))
        result = session.execute(
            delete(ENROLLMENTS).where(
                ENROLLMENTS.c.workspace_id == workspace_id, ENROLLMENTS.c.profile_id.in_(part)
            )
        )
        gone += cast(Any, result).rowcount or 0
    return gone


# --- running -------------------------------------------------------------------------------------


def run(
    db: Database,
    workspace_id: str,
    settings: JourneySettings,
    *,
    links: templates.LinkMaker,
    default_region: str = "US",
    recommend: RecommendSettings | None = None,
    now: datetime | None = None,
) -> TickReport:
    """One round of the workspace's journeys in its own unit of work (the schedule, ``POST
    /v1/journeys/run``, ``consentry journeys run``)."""
    with db.write() as session:
        try:
            return tick(
                session,
                workspace_id=workspace_id,
                now=now or utcnow(),
                settings=settings,
                links=links,
                default_region=default_region,
                recommend=recommend,
            )
        except IntegrityError as exc:  # two rounds at once on one workspace (not serialised)
            raise Conflict("another round of this workspace's journeys is running") from exc


def run_configured(
    db: Database, workspace_id: str, settings: Settings, *, now: datetime | None = None
) -> TickReport:
    """:func:`run` with what ``settings`` configure: the journeys' guard rails, the signed
    links, the phone region and the recommendations (``POST /v1/journeys/run``, ``consentry
    journeys run``)."""
    return run(
        db,
        workspace_id,
        settings.journeys,
        links=templates.LinkMaker(secret=settings.secret_key, public_url=settings.public_url),
        default_region=settings.default_phone_region,
        recommend=settings.recommend,
        now=now,
    )


def run_backlog(
    db: Database, workspace_id: str, settings: Settings, *, budget_seconds: float
) -> list[TickReport]:
    """Rounds of :func:`run_configured` back to back while each read a full batch of events or
    segment changes (a backlog), until none is left or ``budget_seconds`` have passed: the
    schedule's rate is then the engine's, not one batch per tick."""
    started = time.monotonic()
    reports = [run_configured(db, workspace_id, settings)]
    batch = settings.journeys.trigger_batch
    while time.monotonic() - started < budget_seconds:
        last = reports[-1].triggers
        if last.events < batch and last.changes < batch:
            break
        reports.append(run_configured(db, workspace_id, settings))
    return reports


def cursor_state(*, session: Session, workspace_id: str) -> dict[str, Any] | None:
    """Where the workspace's triggers have read up to (None before the first round)."""
    row = session.get(TriggerCursorRow, workspace_id)
    if row is None:
        return None
    return {
        "last_event_id": row.last_event_id,
        "last_change_id": row.last_change_id,
        "last_scan_at": row.last_scan_at.isoformat() if row.last_scan_at else None,
        "updated_at": row.updated_at.isoformat(),
    }
