"""Routes of the ready-made journeys (``journeys.presets``) and of a journey's attribution
(``journeys.attribution``).

``GET /v1/journeys/presets`` (journeys:read): every preset with its channels and options.
``POST /v1/journeys/presets/{name}`` (journeys:write): save the preset as a journey of the
workspace with the given destinations and options; 201 with the journey (a draft unless
``activate``). 400 naming ``preset``, ``destinations.<channel>``, ``options.<name>`` or a step's
field (a destination of the wrong kind or purpose, one privacy's gate refuses); 409 when the
workspace has a journey of that name (choose another with ``options.name``).

``GET /v1/journeys/{journey_id}/attribution`` (journeys:read): conversions (orders within the
goal window) per journey, variant and step, with the uplift against the holdout; aggregates
only, no person is named.

``router`` is mounted before the journeys' own ``/v1/journeys/{journey_id}`` routes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from consentry.deps import DbDep, JourneysRead, JourneysWrite
from consentry.journeys import attribution, presets

router = APIRouter(prefix="/v1/journeys/presets", tags=["journeys"])
attribution_router = APIRouter(prefix="/v1/journeys", tags=["journeys"])


class PresetIn(BaseModel):
    """What a preset needs: the destinations it sends through and its options."""

    model_config = ConfigDict(extra="forbid")

    destinations: dict[str, str] = Field(
        ..., description='Destination id per channel, e.g. {"email": "...", "sms": "..."}.'
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="The preset's options (GET lists them)."
    )
    activate: bool = Field(False, description="Switch the journey on at once.")


@router.get("")
def list_presets(principal: JourneysRead) -> dict[str, Any]:
    """The ready-made journeys a workspace can switch on."""
    del principal  # the scope is the check; presets are the same for every workspace
    return {"presets": presets.list_presets()}


@router.post("/{name}", status_code=201)
def create_from_preset(
    name: str, body: PresetIn, principal: JourneysWrite, db: DbDep
) -> dict[str, Any]:
    """Save a ready-made journey for this workspace (checked like any journey)."""
    with db.write() as session:
        view = presets.create_from_preset(
            session=session,
            workspace_id=principal.workspace_id,
            name=name,
            destinations=body.destinations,
            options=body.options,
            actor=principal.actor,
            activate=body.activate,
        )
    return view.document()


@attribution_router.get("/{journey_id}/attribution")
def journey_attribution(journey_id: str, principal: JourneysRead, db: DbDep) -> dict[str, Any]:
    """Conversions and uplift of a journey so far (404 for an unknown journey)."""
    with db.read() as session:
        found = attribution.journey_attribution(
            session=session, workspace_id=principal.workspace_id, journey_id=journey_id
        )
    return found.document()
