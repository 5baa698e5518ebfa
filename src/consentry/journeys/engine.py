"""The journey engine: one round (``tick``) reads the triggers, then advances every active
enrollment that is due, step after step, until it waits, is deferred or ends.

Steps: a wait sets when the enrollment is due again; a branch asks ``audiences.service.matches``;
a split assigns an arm (deterministic: the same profile always gets the same arm), and a
held-out enrollment ends as ``held_out`` (kept for attribution, never sent); ``update_trait``
writes through ``profiles.service.record_traits``; a send step checks its guard rails **at
send time**, in this order: the destination and privacy's transfer gate
(``delivery.destinations.check_destination``), the journey's eligibility rule, consent
(``consent.policy.can_use`` for the step's purpose on the destination's channel), quiet hours
in the customer's time zone (deferred to their end, never dropped), the channel's frequency
cap (``delivery.outbox.sent_count``), an address, the global suppression list; then it renders
the template (``journeys.templates``) and hands the message to the outbox with the key
``journey:<enrollment>:<step>`` (exactly once: a second round finds the key taken). Every
skip is recorded with its reason; nothing personal goes into a reason.

One person, one enrollment: before a due enrollment runs, the engine looks at the person it
belongs to now (a unified profile and its member profiles): when a merge made two active
enrollments of one journey one person's, the earliest goes on and the other ends as
``exited`` with the reason ``merged`` (see ``_one_per_person``), so nobody gets a step twice
for having been two profiles. Frequency caps count the person's messages across their member
profiles (``delivery.outbox.sent_count``), and consent, quiet hours and the address are those
of the unified profile the enrollment's profile belongs to now.

The round runs in the caller's transaction: enrollments move, step runs are written and
messages are enqueued together, or not at all.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, tuple_, update
from sqlalchemy.orm import Session

from consentry.config import JourneySettings, RecommendSettings
from consentry.consent import policy
from consentry.delivery import destinations as delivery_destinations
from consentry.delivery import outbox, suppressions
from consentry.delivery.destinations import Destination
from consentry.errors import ConsentryError, NotFound, TransferRefused
from consentry.ingest import feed as events_feed
from consentry.journeys import templates
from consentry.journeys.models import (
    ACTIVE,
    COMPLETED,
    END,
    HELD_OUT,
    HOLDOUT,
    MERGED,
    FrequencyCap,
    JourneyDefinition,
    QuietHours,
    Step,
    assign,
    parse_journey,
    quiet_until,
    variant_next,
    zone_of,
)
from consentry.journeys.tables import (
    EnrollmentRow,
    JourneyRow,
    JourneyVersionRow,
    StepRunRow,
)
from consentry.journeys.triggers import (
    CHUNK,
    ActiveJourney,
    TriggerReport,
    exit_values,
    read_triggers,
)
from consentry.platform.db import Bulk, lock_workspace
from consentry.profiles import bulk as profiles_bulk
from consentry.profiles import service as profiles
from consentry.profiles.models import normalize_email, normalize_phone

ENROLLMENTS = cast(Table, EnrollmentRow.__table__)
STEP_RUNS = cast(Table, StepRunRow.__table__)
MAX_HOPS = 100  # steps one enrollment may take in one round (loops always pass a wait)
_INSERT_RUNS = Bulk(insert(STEP_RUNS))
_MOVE = Bulk(
    update(ENROLLMENTS)
    .where(ENROLLMENTS.c.id == bindparam("e_id"))
    .values(
        status=bindparam("e_status"),
        open_profile_id=bindparam("e_open"),
        step=bindparam("e_step"),
        due_at=bindparam("e_due"),
        variant=bindparam("e_variant"),
        ended_at=bindparam("e_ended"),
        end_reason=bindparam("e_reason"),
    )
)


@dataclass(frozen=True, slots=True)
class Guards:
    """The guard rails of the settings, parsed once per round."""

    quiet: QuietHours | None
    caps: Mapping[str, FrequencyCap]
    default_timezone: str
    default_region: str

    @classmethod
    def of(cls, settings: JourneySettings, default_region: str) -> Guards:
        """The guard rails ``settings`` describe (they were checked when loaded)."""
        return cls(
            quiet=QuietHours.parse(settings.quiet_hours),
            caps={c: FrequencyCap.parse(c, cap) for c, cap in settings.frequency_caps.items()},
            default_timezone=settings.default_timezone,
            default_region=default_region,
        )


@dataclass(slots=True)
class TickReport:
    """What one round did."""

    triggers: TriggerReport = field(default_factory=TriggerReport)
    advanced: int = 0
    sent: int = 0
    deferred: int = 0
    held_out: int = 0
    completed: int = 0
    merged: int = 0  # second enrollments of a merged person, ended before their step ran
    skipped: Counter[str] = field(default_factory=Counter)

    def document(self) -> dict[str, Any]:
        """The JSON form, as the API and the CLI show it."""
        t = self.triggers
        return {
            "triggers": {
                "events": t.events,
                "changes": t.changes,
                "scanned": t.scanned,
                "candidates": t.candidates,
                "enrolled": t.enrolled,
                "exited": t.exited,
            },
            "advanced": self.advanced,
            "sent": self.sent,
            "deferred": self.deferred,
            "held_out": self.held_out,
            "completed": self.completed,
            "merged": self.merged,
            "skipped": dict(sorted(self.skipped.items())),
        }


@dataclass(slots=True)
class _Enrollment:
    id: int
    journey_id: str
    version: int
    profile_id: str
    step: str | None
    due_at: datetime
    variant: str | None
    trigger: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _Sending:
    """What a send step needs besides the enrollment; ``destinations`` holds each destination's
    check of this round (the destination, or why nothing may go to it), so a round asks
    privacy's gate once per destination, not once per message."""

    workspace_id: str
    now: datetime
    guards: Guards
    links: templates.LinkMaker
    recommend: RecommendSettings | None
    destinations: dict[str, Destination | str] = field(default_factory=dict)


_DEFINITIONS: dict[tuple[str, int], JourneyDefinition] = {}


def definition_of(journey_id: str, version: int, document: Mapping[str, Any]) -> JourneyDefinition:
    """A stored version parsed (versions never change, so each is parsed once per process)."""
    key = (journey_id, version)
    found = _DEFINITIONS.get(key)
    if found is None:
        if len(_DEFINITIONS) > 2000:
            _DEFINITIONS.clear()
        found = _DEFINITIONS[key] = parse_journey(document)
    return found


def active_journeys(session: Session, workspace_id: str) -> list[ActiveJourney]:
    """The workspace's active journeys with their current definitions."""
    rows = session.execute(
        select(
            JourneyRow.id,
            JourneyRow.version,
            JourneyRow.definition,
            JourneyRow.activated_at,
            JourneyRow.scanned_at,
            JourneyRow.updated_at,
        ).where(JourneyRow.workspace_id == workspace_id, JourneyRow.status == ACTIVE)
    )
    return [
        ActiveJourney(
            id=jid,
            version=version,
            definition=definition_of(jid, version, document),
            activated_at=activated or updated,
            scanned_at=scanned,
        )
        for jid, version, document, activated, scanned, updated in rows
    ]


def tick(
    session: Session,
    *,
    workspace_id: str,
    now: datetime,
    settings: JourneySettings,
    links: templates.LinkMaker,
    default_region: str = "US",
    recommend: RecommendSettings | None = None,
) -> TickReport:
    """One round of a workspace's journeys: triggers read, due enrollments advanced."""
    lock_workspace(session, workspace_id)
    report = TickReport()
    journeys = active_journeys(session, workspace_id)
    if not journeys:
        return report
    report.triggers = read_triggers(
        session, workspace_id=workspace_id, journeys=journeys, now=now, settings=settings
    )
    if report.triggers.scanned_journeys:
        session.execute(
            update(JourneyRow)
            .where(JourneyRow.id.in_(report.triggers.scanned_journeys))
            .values(scanned_at=now)
        )
    sending = _Sending(workspace_id, now, Guards.of(settings, default_region), links, recommend)
    advance(
        session,
        journeys=[j.id for j in journeys],
        sending=sending,
        limit=settings.step_batch,
        report=report,
    )
    return report


def advance(
    session: Session,
    *,
    journeys: Sequence[str],
    sending: _Sending,
    limit: int,
    report: TickReport,
) -> None:
    """Advance up to ``limit`` due active enrollments of these (active) journeys."""
    e = ENROLLMENTS.c
    rows = session.execute(
        select(e.id, e.journey_id, e.version, e.profile_id, e.step, e.due_at, e.variant, e.trigger)
        .where(
            e.workspace_id == sending.workspace_id,
            e.status == ACTIVE,
            e.due_at <= sending.now,
            e.journey_id.in_(journeys),
        )
        .order_by(e.due_at, e.id)
        .limit(limit)
    ).all()
    if not rows:
        return
    due = _one_per_person(session, sending, [_Enrollment(*row) for row in rows], report)
    if not due:
        return
    definitions = _versions(session, {(d.journey_id, d.version) for d in due})
    moves: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for enrollment in due:
        definition = definitions[(enrollment.journey_id, enrollment.version)]
        moves.append(_run(session, enrollment, definition, sending, runs, report))
    report.advanced += len(due)
    _INSERT_RUNS.run(session.connection(), runs)
    _MOVE.run(session.connection(), moves)


def _one_per_person(
    session: Session, sending: _Sending, due: list[_Enrollment], report: TickReport
) -> list[_Enrollment]:
    """The due enrollments that may run: of the active enrollments of one journey that belong
    to one person now (two profiles each enrolled, then merged), the earliest (by entry, then
    id) goes on and the others end now as ``exited``, reason ``merged``, before any of their
    steps runs. Only people with more than one member profile are looked at again."""
    owner, members = profiles_bulk.people_of(
        session=session, workspace_id=sending.workspace_id, profile_ids={d.profile_id for d in due}
    )
    suspects = [d for d in due if len(members.get(owner.get(d.profile_id, ""), ())) > 1]
    if not suspects:
        return due
    wanted = sorted({m for d in suspects for m in members[owner[d.profile_id]]})
    e = ENROLLMENTS.c
    active = select(e.id, e.journey_id, e.profile_id, e.entered_at).where(
        e.workspace_id == sending.workspace_id,
        e.status == ACTIVE,
        e.journey_id.in_(sorted({d.journey_id for d in suspects})),
    )
    groups: dict[tuple[str, str], list[tuple[datetime, int]]] = {}
    for start in range(0, len(wanted), CHUNK):
        part = wanted[start : start + CHUNK]
        for eid, journey_id, profile_id, entered in session.execute(
            active.where(e.profile_id.in_(part))
        ):
            groups.setdefault((journey_id, owner[profile_id]), []).append((entered, eid))
    ended = sorted(eid for found in groups.values() for _, eid in sorted(found)[1:])
    for start in range(0, len(ended), CHUNK):
        session.execute(
            update(ENROLLMENTS)
            .where(e.id.in_(ended[start : start + CHUNK]), e.status == ACTIVE)
            .values(exit_values(sending.now, MERGED))
        )
    report.merged += len(ended)
    gone = set(ended)
    return [d for d in due if d.id not in gone]


def _versions(
    session: Session, wanted: set[tuple[str, int]]
) -> dict[tuple[str, int], JourneyDefinition]:
    found = {key: _DEFINITIONS[key] for key in wanted if key in _DEFINITIONS}
    missing = [key for key in wanted if key not in found]
    for start in range(0, len(missing), 200):
        for jid, version, document in session.execute(
            select(
                JourneyVersionRow.journey_id,
                JourneyVersionRow.version,
                JourneyVersionRow.definition,
            ).where(
                tuple_(JourneyVersionRow.journey_id, JourneyVersionRow.version).in_(
                    missing[start : start + 200]
                )
            )
        ):
            found[(jid, version)] = definition_of(jid, version, document)
    return found


def _run(
    session: Session,
    enrollment: _Enrollment,
    definition: JourneyDefinition,
    sending: _Sending,
    runs: list[dict[str, Any]],
    report: TickReport,
) -> dict[str, Any]:
    """Take the enrollment's steps until it waits, is deferred or ends; returns its new state
    (as the update's values) and appends what each step did to ``runs``."""
    now = sending.now
    at = enrollment.due_at  # when the current step became due: waits count from there
    step_id = enrollment.step or END
    variant = enrollment.variant

    def record(step: Step, outcome: str, reason: str | None, message: str | None = None) -> None:
        runs.append(
            {
                "workspace_id": sending.workspace_id,
                "journey_id": enrollment.journey_id,
                "enrollment_id": enrollment.id,
                "version": enrollment.version,
                "step": step.id,
                "outcome": outcome,
                "reason": reason[:300] if reason else None,
                "variant": variant,
                "message_id": message,
                "at": now,
            }
        )

    def state(
        status: str, step: str | None, due: datetime | None, reason: str | None = None
    ) -> dict[str, Any]:
        ended = status != ACTIVE
        return {
            "e_id": enrollment.id,
            "e_status": status,
            "e_open": None if ended else enrollment.profile_id,
            "e_step": None if ended else step,
            "e_due": None if ended else due,
            "e_variant": variant,
            "e_ended": now if ended else None,
            "e_reason": reason,
        }

    for _ in range(MAX_HOPS):
        if step_id == END or not definition.has_step(step_id):
            report.completed += 1
            return state(COMPLETED, None, None, None if step_id == END else "step removed")
        step = definition.step(step_id)
        if step.type == "wait":
            return state(ACTIVE, definition.after(step), at + timedelta(hours=step.hours))
        if step.type == "branch":
            assert step.rule is not None
            taken = _holds(session, sending.workspace_id, step.rule, enrollment.profile_id, now)
            if isinstance(taken, str):
                record(step, "branched", f"else: {taken}")
                taken = False
            else:
                record(step, "branched", "then" if taken else "else")
            step_id = (step.then if taken else step.otherwise) or END
        elif step.type == "split":
            arm = assign(enrollment.journey_id, step, enrollment.profile_id)
            variant = arm
            if arm == HOLDOUT:
                record(step, HELD_OUT, "holdout")
                report.held_out += 1
                return state(HELD_OUT, None, None, "held out")
            record(step, "branched", arm)
            step_id = variant_next(step, arm)
        elif step.type == "update_trait":
            assert step.trait is not None
            profiles.record_traits(
                session=session,
                workspace_id=sending.workspace_id,
                profile_id=enrollment.profile_id,
                traits={step.trait: step.value},
                observed_at=now,
            )
            record(step, "updated", step.trait)
            step_id = definition.after(step)
        else:
            outcome, reason, message, until = _send(session, enrollment, definition, step, sending)
            if outcome == "deferred":
                assert until is not None
                record(step, "deferred", reason)
                report.deferred += 1
                return state(ACTIVE, step.id, until)
            record(step, outcome, reason, message)
            if outcome == "sent":
                report.sent += 1
            else:
                report.skipped[(reason or "").split(":", 1)[0]] += 1
            step_id = definition.after(step)
    return state(ACTIVE, step_id, now)  # a long chain: it goes on in the next round


def _holds(
    session: Session, workspace_id: str, rule: Mapping[str, Any], profile_id: str, now: datetime
) -> bool | str:
    """Whether a segment rule holds for the profile now; the reason it could not be evaluated
    (a segment the rule names was deleted since it was saved) otherwise."""
    from consentry.audiences import service as audiences

    try:
        return audiences.matches(
            session=session, workspace_id=workspace_id, rule=rule, profile_id=profile_id, now=now
        )
    except ConsentryError as exc:
        return f"the rule could not be evaluated ({exc.code})"


def _send(
    session: Session,
    enrollment: _Enrollment,
    definition: JourneyDefinition,
    step: Step,
    sending: _Sending,
) -> tuple[str, str | None, str | None, datetime | None]:
    """(outcome, reason, outbox message id, deferred until) of one send step, now."""
    workspace_id, now, profile = sending.workspace_id, sending.now, enrollment.profile_id
    assert step.destination_id is not None and step.purpose is not None
    destination = _destination(session, sending, step.destination_id)
    if isinstance(destination, str):
        return "skipped", destination, None, None
    if destination.kind != step.type:
        return "skipped", f"destination_kind: {destination.kind}", None, None
    if definition.eligibility is not None:
        eligible = _holds(session, workspace_id, definition.eligibility, profile, now)
        if isinstance(eligible, str):
            return "skipped", f"not_eligible: {eligible}", None, None
        if not eligible:
            return "skipped", "not_eligible", None, None
    decision = policy.can_use(
        session=session,
        workspace_id=workspace_id,
        profile_id=profile,
        purpose=step.purpose,
        channel=destination.channel,
        at=now,
        unconfigured="refuse",
    )
    if not decision.allowed:
        return "skipped", f"consent: {decision.reason}", None, None
    if sending.guards.quiet is not None:  # the customer's time zone matters only then
        zone_trait = profiles_bulk.current_traits_many(
            session=session, workspace_id=workspace_id, canonical_ids=[profile], keys=["timezone"]
        )
        zone = zone_of(zone_trait.get(profile, {}).get("timezone"), sending.guards.default_timezone)
        until = quiet_until(now, zone, sending.guards.quiet)
        if until is not None:
            return (
                "deferred",
                f"quiet_hours: until {until.astimezone(zone):%H:%M} {zone.key}",
                None,
                until,
            )
    cap = sending.guards.caps.get(destination.channel)
    if cap is not None:
        sent = outbox.sent_count(
            session=session,
            workspace_id=workspace_id,
            subject_id=profile,
            channel=destination.channel,
            since=cap.since(now),
        )
        if cap.reached(sent):
            return "skipped", f"frequency_cap: {cap.limit} per {cap.days:g} days", None, None
    try:
        context = templates.message_context(
            session=session,
            workspace_id=workspace_id,
            profile_id=profile,
            trigger=_with_references(session, workspace_id, enrollment.trigger),
            links=sending.links,
            purpose=step.purpose,
            channel=destination.channel,
            recommend_settings=sending.recommend,
        )
    except NotFound:
        return "skipped", "profile_missing", None, None
    to = _address(step.type, context, sending.guards.default_region)
    if step.type != "webhook":
        if to is None:
            return "skipped", "no_address", None, None
        if suppressions.is_suppressed(
            session=session,
            workspace_id=workspace_id,
            channel=destination.channel,
            address=to,
            default_region=sending.guards.default_region,
        ):
            return "skipped", "suppressed", None, None
    assert step.template is not None
    try:
        rendered = templates.render(step.template, kind=cast(Any, step.type), context=context)
    except templates.TemplateFailure as exc:
        return "skipped", f"template_failed: {exc.part}", None, None
    message = outbox.enqueue(
        session=session,
        workspace_id=workspace_id,
        destination_id=destination.id,
        key=f"journey:{enrollment.id}:{step.id}",
        subject_id=profile,
        purpose=step.purpose,
        channel=destination.channel,
        to=to,
        content=_content(step.type, rendered, context),
        origin=f"journey:{enrollment.journey_id}:{step.id}",
    )
    if message is None:
        return "skipped", "already_sent", None, None
    return "sent", None, message, None


def _destination(session: Session, sending: _Sending, destination_id: str) -> Destination | str:
    """The destination when privacy's gate lets data go to it this round, else the skip's
    reason (checked once per round and destination)."""
    found = sending.destinations.get(destination_id)
    if found is None:
        try:
            found = delivery_destinations.check_destination(
                session=session,
                workspace_id=sending.workspace_id,
                destination_id=destination_id,
                categories=(),
            )
        except NotFound:
            found = "destination_missing"
        except TransferRefused as exc:
            found = f"transfer_refused: {exc.errors[0].field if exc.errors else 'refused'}"
        sending.destinations[destination_id] = found
    return found


def _with_references(
    session: Session, workspace_id: str, trigger: Mapping[str, Any]
) -> dict[str, Any]:
    """The trigger context with the ids its event's properties name (cart, checkout, order,
    product), read from the sealed payload now: only for a message, not for every trigger."""
    found = dict(trigger)
    event_id = trigger.get("event_id")
    if isinstance(event_id, int) and not isinstance(event_id, bool):
        refs = events_feed.event_references(
            session=session, workspace_id=workspace_id, event_ids=[event_id]
        )
        for key, value in refs.get(event_id, {}).items():
            found.setdefault(key, value)
    return found


def _address(kind: str, context: Mapping[str, Any], default_region: str) -> str | None:
    person = context.get("profile") or {}
    if kind == "email":
        return normalize_email(person.get("email"))
    if kind == "sms":
        return normalize_phone(person.get("phone"), default_region)
    return None


def _content(kind: str, rendered: templates.Rendered, context: Mapping[str, Any]) -> dict[str, Any]:
    if kind == "email":
        brand = context.get("brand") or {}
        return {
            "subject": rendered.subject,
            "text": rendered.text,
            "html": rendered.html,
            "headers": templates.mail_headers(
                unsubscribe_url=str(context["unsubscribe_url"]),
                mailto=brand.get("support_email"),
            ),
        }
    if kind == "sms":
        return {"text": rendered.text}
    return {"body": json.loads(rendered.text)}
