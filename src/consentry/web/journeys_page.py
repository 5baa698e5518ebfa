"""Dashboard pages of journeys: the list (status, entered, active and sent counts) with the
ready-made journeys to switch on, and one journey (its definition as readable steps, what each
step did with skips by reason, conversions and uplift against the holdout, activate and pause).

Auth by the admin cookie like every dashboard page: reading needs ``journeys:read``; switching
on a preset, activating and pausing need ``journeys:write`` and the CSRF token. The pages show
counts only, never a person, so no read is recorded in the audit trail (the changes are, by
``journeys.service``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from consentry.audiences import rules as segment_rules
from consentry.audiences import service as audiences
from consentry.delivery import destinations as delivery
from consentry.deps import DbDep, JourneysRead, JourneysWrite
from consentry.errors import FieldError, Invalid, NotFound
from consentry.journeys import attribution, presets, service, templates
from consentry.journeys.models import HOLDOUT
from consentry.platform.db import Database
from consentry.platform.tenancy import Principal, Scope
from consentry.web.routes import CsrfChecked, PageRoute, redirect, render

router = APIRouter(prefix="/app", route_class=PageRoute, include_in_schema=False)
ACTIONS = {"activate": "activated", "pause": "paused"}
DONE = {"created": "Journey saved.", "activated": "Journey switched on.", "paused": "Paused."}
OPTION_FIELD = "option:"


# --- readable definitions -----------------------------------------------------------------------


def _hours(hours: float) -> str:
    if hours >= 24 and hours % 24 == 0:
        days = int(hours // 24)
        return f"{days} day" + ("s" if days != 1 else "")
    shown = int(hours) if float(hours).is_integer() else round(hours, 2)
    return f"{shown} hour" + ("s" if shown != 1 else "")


def _days(days: int) -> str:
    return f"{days} day" + ("s" if days != 1 else "")


def _rule_text(db_session: Any, workspace_id: str, rule: Any) -> str:
    try:
        tree = segment_rules.parse_rule(rule)
        return audiences.describe(session=db_session, workspace_id=workspace_id, tree=tree)
    except Invalid:  # saved before a change of the rule language: show what is stored
        return str(rule)


def _segment_name(session: Any, workspace_id: str, segment_id: str) -> str:
    try:
        return audiences.get_segment(
            session=session, workspace_id=workspace_id, segment_id=segment_id
        ).name
    except NotFound:
        return f"{segment_id} (deleted)"


def _example(step: Mapping[str, Any]) -> str:
    """What the step's message says to the sample profile: the subject of an email, the text
    of an SMS."""
    kind = step.get("type")
    document = step.get("template")
    if kind not in ("email", "sms") or not isinstance(document, Mapping):
        return ""
    shown = templates.preview(templates.template_of(document), kind=kind)
    if shown is None:
        return ""
    said = shown.subject if kind == "email" else shown.text
    return f', e.g. "{said}"'


def trigger_text(session: Any, workspace_id: str, trigger: Mapping[str, Any]) -> str:
    """What enrolls a profile, in words."""
    kind = trigger.get("type")
    if kind == "event":
        return f"When {trigger.get('event')} happens"
    if kind in ("segment_entered", "segment_exited"):
        name = _segment_name(session, workspace_id, str(trigger.get("segment_id")))
        verb = "entering" if kind == "segment_entered" else "leaving"
        return f"On {verb} the segment {name}"
    if kind == "date_trait":
        before = int(trigger.get("days_before") or 0)
        when = f"{_days(before)} before" if before else "On"
        return f"{when} the date in the trait {trigger.get('trait')}"
    if kind == "inactivity":
        return f"After {_days(int(trigger.get('days') or 0))} without activity"
    return str(kind)


def _target(target: str | None) -> str:
    return "the end" if target in (None, "end") else f"step {target}"


def step_text(
    session: Any,
    workspace_id: str,
    step: Mapping[str, Any],
    names: Mapping[str, str],
) -> str:
    """One step of a definition in words."""
    kind = step.get("type")
    if kind == "wait":
        hours = float(step["hours"]) if "hours" in step else float(step.get("days", 0)) * 24
        return f"Wait {_hours(hours)}"
    if kind == "branch":
        rule = _rule_text(session, workspace_id, step.get("rule"))
        return f"If {rule}: go to {_target(step.get('then'))}, else {_target(step.get('else'))}"
    if kind == "split":
        arms = [
            f"{v.get('name')} (weight {v.get('weight')}) to {_target(v.get('next'))}"
            for v in step.get("variants") or []
        ]
        held = step.get("holdout_percent") or 0
        return f"Split: {held} % held out (sent nothing), then " + "; ".join(arms)
    if kind in ("email", "sms", "webhook"):
        destination = names.get(str(step.get("destination_id")), "an unknown destination")
        what = {"email": "Send an email", "sms": "Send an SMS", "webhook": "Call a webhook"}[kind]
        return f"{what} through {destination} for {step.get('purpose')}{_example(step)}"
    if kind == "update_trait":
        return f"Set the trait {step.get('trait')} to {step.get('value')!r}"
    return str(kind)


def _steps(
    session: Any, workspace_id: str, definition: Mapping[str, Any], stats: Mapping[str, Any]
) -> list[dict[str, Any]]:
    names = {
        d.id: d.name for d in delivery.list_destinations(session=session, workspace_id=workspace_id)
    }
    counts = {s["step"]: s for s in stats.get("steps", [])}
    shown = []
    for step in definition.get("steps") or []:
        found = counts.get(step["id"], {})
        reasons = sorted(
            (k.split(":", 1)[1], v)
            for k, v in (found.get("reasons") or {}).items()
            if k.startswith("skipped:")
        )
        shown.append(
            {
                "id": step["id"],
                "type": step["type"],
                "text": step_text(session, workspace_id, step, names),
                "next": step.get("next"),
                "sent": found.get("sent", 0),
                "skipped": found.get("skipped", 0),
                "deferred": found.get("deferred", 0),
                "branched": found.get("branched", 0),
                "updated": found.get("updated", 0),
                "held_out": found.get("held_out", 0),
                "skip_reasons": reasons,
            }
        )
    return shown


def _rows(found: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The attribution's groups as rows of one table: the journey, the holdout, the
    variants and the steps."""
    labels = {"journey": "All messaged", HOLDOUT: "Holdout"}
    return [
        {"label": labels.get(kind) or f"{kind.capitalize()} {name}", "kind": kind, **group}
        for kind, name, group in attribution.groups(found)
    ]


# --- the list -----------------------------------------------------------------------------------


def _list_context(db: Database, principal: Principal) -> dict[str, Any]:
    workspace = principal.workspace_id
    with db.read() as session:
        journeys = service.list_journeys(session=session, workspace_id=workspace)
        rows: list[dict[str, Any]] = []
        every = service.journeys_stats(session=session, workspace_id=workspace, journeys=journeys)
        for journey in journeys:
            stats = every[journey.id]
            rows.append(
                {
                    "journey": journey,
                    "trigger": trigger_text(session, workspace, journey.definition["trigger"]),
                    "stats": stats,
                }
            )
        destinations = delivery.list_destinations(
            session=session, workspace_id=workspace, active=True
        )
    return {
        "principal": principal,
        "rows": rows,
        "active": sum(1 for r in rows if r["journey"].status == "active"),
        "presets": list(presets.PRESETS.values()),
        "email_destinations": [d for d in destinations if d.kind == "email"],
        "sms_destinations": [d for d in destinations if d.kind == "sms"],
        "can_write": principal.allows(Scope.JOURNEYS_WRITE),
    }


@router.get("/journeys")
def journeys_page(request: Request, principal: JourneysRead, db: DbDep, done: str = "") -> Response:
    """Every journey with its counts, and the ready-made journeys to switch on."""
    return render(
        request,
        "journeys.html",
        **_list_context(db, principal),
        done=DONE.get(done, ""),
        errors=[],
        open_preset="",
        form={},
    )


def _preset_input(name: str, form: FormData) -> tuple[dict[str, str], dict[str, Any], bool]:
    """The destinations, options and activation a preset's form asks for."""
    preset = presets.get_preset(name)
    destinations = {
        channel: str(form.get(f"destination:{channel}") or "").strip()
        for channel in (*preset.channels, *preset.optional_channels)
    }
    destinations = {k: v for k, v in destinations.items() if v or k in preset.channels}
    kinds = {o["name"]: o["type"] for o in preset.document()["options"]}
    options: dict[str, Any] = {}
    for key, raw in form.multi_items():
        if not key.startswith(OPTION_FIELD) or not isinstance(raw, str) or not raw.strip():
            continue
        option = key.removeprefix(OPTION_FIELD)
        value: Any = raw.strip()
        if kinds.get(option) == "integer":
            try:
                value = int(value)
            except ValueError:
                raise Invalid(
                    "the options are not valid",
                    [FieldError(f"options.{option}", "must be a whole number")],
                ) from None
        options[option] = value
    return destinations, options, form.get("activate") == "yes"


@router.post("/journeys/presets/{name}", dependencies=[CsrfChecked])
async def switch_on_preset(
    name: str, request: Request, principal: JourneysWrite, db: DbDep
) -> Response:
    """Save a ready-made journey (and switch it on when asked); the list again, naming each
    problem, when it cannot run as set up."""
    form = await request.form()

    def save() -> str:
        destinations, options, activate = _preset_input(name, form)
        with db.write() as session:
            return presets.create_from_preset(
                session=session,
                workspace_id=principal.workspace_id,
                name=name,
                destinations=destinations,
                options=options,
                actor=principal.actor,
                activate=activate,
            ).id

    try:
        journey_id = await run_in_threadpool(save)
    except Invalid as exc:
        context = await run_in_threadpool(_list_context, db, principal)
        return render(
            request,
            "journeys.html",
            400,
            **context,
            done="",
            errors=exc.errors or [FieldError("preset", exc.message)],
            open_preset=name,
            form={k: v for k, v in form.multi_items() if isinstance(v, str)},
        )
    return redirect(f"/app/journeys/{quote(journey_id, safe='')}?done=created")


# --- one journey --------------------------------------------------------------------------------


def _journey_context(db: Database, principal: Principal, journey_id: str) -> dict[str, Any]:
    workspace = principal.workspace_id
    with db.read() as session:
        journey = service.get_journey(
            session=session, workspace_id=workspace, journey_id=journey_id
        )
        stats = service.journey_stats(
            session=session, workspace_id=workspace, journey_id=journey_id
        )
        definition = journey.definition
        steps = _steps(session, workspace, definition, stats)
        trigger = trigger_text(session, workspace, definition["trigger"])
        eligibility = (
            _rule_text(session, workspace, definition["eligibility"])
            if definition.get("eligibility") is not None
            else None
        )
        found = attribution.journey_attribution(
            session=session, workspace_id=workspace, journey_id=journey_id
        ).document()
    return {
        "principal": principal,
        "journey": journey,
        "stats": stats,
        "steps": steps,
        "trigger": trigger,
        "eligibility": eligibility,
        "exit_on": (definition.get("exit_on") or {}).get("event"),
        "reentry": (definition.get("reentry") or {}).get("after_days"),
        "goal": definition.get("goal"),
        "attribution": found,
        "groups": _rows(found),
        "can_write": principal.allows(Scope.JOURNEYS_WRITE),
    }


@router.get("/journeys/{journey_id}")
def journey_page(
    journey_id: str, request: Request, principal: JourneysRead, db: DbDep, done: str = ""
) -> Response:
    """One journey: readable steps with their counts, conversions and uplift."""
    return render(
        request,
        "journeys_detail.html",
        **_journey_context(db, principal, journey_id),
        done=DONE.get(done, ""),
        errors=[],
    )


@router.post("/journeys/{journey_id}/{action}", dependencies=[CsrfChecked])
def change_status(
    journey_id: str, action: str, request: Request, principal: JourneysWrite, db: DbDep
) -> Response:
    """Activate (checked again: destinations and consent settings may have changed) or pause."""
    if action not in ACTIONS:
        raise Invalid("unknown action", [FieldError("action", "activate or pause")])
    try:
        with db.write() as session:
            service.change_status(
                session=session,
                workspace_id=principal.workspace_id,
                journey_id=journey_id,
                action=action,
                actor=principal.actor,
            )
    except Invalid as exc:
        return render(
            request,
            "journeys_detail.html",
            400,
            **_journey_context(db, principal, journey_id),
            done="",
            errors=exc.errors or [FieldError("journey", exc.message)],
        )
    return redirect(f"/app/journeys/{quote(journey_id, safe='')}?done={ACTIONS[action]}")
