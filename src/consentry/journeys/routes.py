"""Journey routes: build, version, switch on and off, watch, and run one round.

Reading needs ``journeys:read``; building, switching and running need ``journeys:write``. A
definition with a problem is refused whole with a 400 naming each field (``steps[2].hours``,
``steps[0].destination_id``, ``steps[1].template.subject``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query

from consentry.deps import DbDep, JourneysRead, JourneysWrite, ReadAudit, SettingsDep
from consentry.errors import FieldError, Invalid
from consentry.journeys import service

router = APIRouter(prefix="/v1/journeys", tags=["journeys"])

Definition = Annotated[
    dict[str, Any],
    Body(description="The journey definition document (docs/journeys.md)."),
]
Status = Literal["draft", "active", "paused", "archived"]
EnrollmentStatus = Literal["active", "completed", "exited", "held_out"]


@router.post("", status_code=201)
def create(document: Definition, principal: JourneysWrite, db: DbDep) -> dict[str, Any]:
    """Save a new journey as a draft (``POST /v1/journeys/{id}/activate`` switches it on)."""
    with db.write() as session:
        found = service.create_journey(
            session=session,
            workspace_id=principal.workspace_id,
            document=document,
            actor=principal.actor,
        )
    return found.document()


@router.get("")
def list_journeys(
    principal: JourneysRead, db: DbDep, status: Status | None = None
) -> dict[str, Any]:
    """The workspace's journeys, newest first (archived ones only with ``status=archived``)."""
    with db.read() as session:
        found = service.list_journeys(
            session=session, workspace_id=principal.workspace_id, status=status
        )
    return {"journeys": [j.document() for j in found]}


@router.post("/run")
def run(
    principal: JourneysWrite,
    db: DbDep,
    settings: SettingsDep,
    now: Annotated[
        datetime | None,
        Query(description="Run as of this moment (default: now). Not in production."),
    ] = None,
) -> dict[str, Any]:
    """One round now: read the triggers, advance every due enrollment, enqueue what is sent.
    ``now`` (a round as of another moment, which would cut waits short) is for development
    and tests: refused in production."""
    if now is not None and settings.environment == "production":
        raise Invalid(
            "a round as of another moment is not allowed in production",
            [FieldError("now", "not allowed in production")],
        )
    return service.run_configured(db, principal.workspace_id, settings, now=now).document()


@router.get("/profiles/{profile_id}/enrollments")
def profile_enrollments(
    profile_id: str, principal: JourneysRead, db: DbDep, reads: ReadAudit
) -> dict[str, Any]:
    """Every journey a unified profile entered, with what each step did (recorded in the audit
    trail as a read of the person)."""
    with reads.reading(principal, "journey.enrollments.read") as note:
        with db.read() as session:
            found = service.enrollments_of(
                session=session, workspace_id=principal.workspace_id, profile_id=profile_id
            )
        note.found([profile_id])
    return {"profile_id": profile_id, "enrollments": found}


@router.get("/{journey_id}")
def get(journey_id: str, principal: JourneysRead, db: DbDep) -> dict[str, Any]:
    """One journey with its current definition."""
    with db.read() as session:
        return service.get_journey(
            session=session, workspace_id=principal.workspace_id, journey_id=journey_id
        ).document()


@router.put("/{journey_id}")
def update(
    journey_id: str, document: Definition, principal: JourneysWrite, db: DbDep
) -> dict[str, Any]:
    """Save a new version; enrollments already running keep the version they entered."""
    with db.write() as session:
        found = service.update_journey(
            session=session,
            workspace_id=principal.workspace_id,
            journey_id=journey_id,
            document=document,
            actor=principal.actor,
        )
    return found.document()


@router.get("/{journey_id}/versions/{version}")
def version(journey_id: str, version: int, principal: JourneysRead, db: DbDep) -> dict[str, Any]:
    """The definition of one version of a journey."""
    with db.read() as session:
        definition = service.get_version(
            session=session,
            workspace_id=principal.workspace_id,
            journey_id=journey_id,
            version=version,
        )
    return {"journey_id": journey_id, "version": version, "definition": definition}


def _change(journey_id: str, action: str, principal: Any, db: Any) -> dict[str, Any]:
    with db.write() as session:
        found = service.change_status(
            session=session,
            workspace_id=principal.workspace_id,
            journey_id=journey_id,
            action=action,
            actor=principal.actor,
        )
    return found.document()


@router.post("/{journey_id}/activate")
def activate(journey_id: str, principal: JourneysWrite, db: DbDep) -> dict[str, Any]:
    """Switch a draft or paused journey on (its definition is checked again first)."""
    return _change(journey_id, "activate", principal, db)


@router.post("/{journey_id}/pause")
def pause(journey_id: str, principal: JourneysWrite, db: DbDep) -> dict[str, Any]:
    """Stop enrolling and advancing; enrollments stay where they are until it is activated."""
    return _change(journey_id, "pause", principal, db)


@router.post("/{journey_id}/archive")
def archive(journey_id: str, principal: JourneysWrite, db: DbDep) -> dict[str, Any]:
    """Retire a journey: running enrollments end as exited."""
    return _change(journey_id, "archive", principal, db)


@router.get("/{journey_id}/stats")
def stats(journey_id: str, principal: JourneysRead, db: DbDep) -> dict[str, Any]:
    """Entered, active, completed, exited, held out; sent and skipped by reason, per step."""
    with db.read() as session:
        return service.journey_stats(
            session=session, workspace_id=principal.workspace_id, journey_id=journey_id
        )


@router.get("/{journey_id}/enrollments")
def enrollments(
    journey_id: str,
    principal: JourneysRead,
    db: DbDep,
    status: EnrollmentStatus | None = None,
    after_id: Annotated[int, Query(ge=0, description="The last id of the previous page.")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """A page of a journey's enrollments (profile ids, steps, status; no personal data)."""
    with db.read() as session:
        found = service.list_enrollments(
            session=session,
            workspace_id=principal.workspace_id,
            journey_id=journey_id,
            status=status,
            after_id=after_id,
            limit=limit,
        )
    return {"enrollments": found, "next_after_id": found[-1]["id"] if found else None}
