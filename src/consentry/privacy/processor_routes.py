"""Admin routes of the processor register: register, list, read, change, deactivate, the
transfer check, the data-category vocabulary and the record of processing activities (Art. 30).

Reads need the scope ``privacy:read``; changes and checks need ``privacy:write`` (the privacy
officer and admin roles hold both). Every query is scoped to the caller's workspace.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from consentry.deps import DbDep, PrivacyRead, PrivacyWrite
from consentry.errors import FieldError, Invalid
from consentry.platform.tenancy import Principal
from consentry.privacy import processor_service as service
from consentry.privacy.processors import (
    DATA_CATEGORIES,
    KINDS,
    SAFEGUARDS,
    ProcessorSpec,
)
from consentry.privacy.ropa import record_csv, record_json

router = APIRouter(prefix="/v1/privacy", tags=["privacy"])

Key = Annotated[str, Field(max_length=100)]
Keys = Annotated[list[Key], Field(max_length=100)]


class ProcessorIn(BaseModel):
    """A processor, sub-processor, joint controller or destination data may leave to."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., max_length=200, examples=["Mailchimp"])
    kind: str = Field(..., max_length=32, description=", ".join(KINDS))
    purposes: Keys = Field(..., examples=[["marketing.communications.email"]])
    categories: Keys = Field(
        ..., description=", ".join(DATA_CATEGORIES), examples=[["user.contact.email"]]
    )
    transfer_country: str = Field(..., max_length=8, description="ISO 3166-1 alpha-2, e.g. US")
    transfer_safeguard: str | None = Field(None, max_length=32, description=", ".join(SAFEGUARDS))
    dpa_signed_on: date | None = Field(None, description="Required for (sub-)processors.")
    contact: str | None = Field(None, max_length=320)
    retention: str | None = Field(None, max_length=1000)
    erasure_webhook_url: str | None = Field(None, max_length=2000)
    active: bool = True


class ProcessorPatch(BaseModel):
    """The fields to change; a field sent as null is cleared (where it may be)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200)
    kind: str | None = Field(None, max_length=32, description=", ".join(KINDS))
    purposes: Keys | None = None
    categories: Keys | None = None
    transfer_country: str | None = Field(None, max_length=8)
    transfer_safeguard: str | None = Field(None, max_length=32)
    dpa_signed_on: date | None = None
    contact: str | None = Field(None, max_length=320)
    retention: str | None = Field(None, max_length=1000)
    erasure_webhook_url: str | None = Field(None, max_length=2000)
    active: bool | None = None


class CheckIn(BaseModel):
    """A flow to check: data of these categories, for this purpose."""

    model_config = ConfigDict(extra="forbid")

    purpose: str = Field(..., max_length=100, examples=["marketing.communications.email"])
    categories: Keys = Field(..., min_length=1, examples=[["user.contact.email"]])


def _actor(principal: Principal) -> str:
    return principal.actor


def _utc(value: datetime | None, field: str = "at") -> datetime | None:
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as exc:
        raise Invalid("the time is out of range", [FieldError(field, "out of range")]) from exc


@router.get("/data-categories")
def data_categories(principal: PrivacyRead) -> dict[str, Any]:
    """The data-category vocabulary, the kinds of processor and the transfer safeguards."""
    del principal
    return {
        "categories": [{"key": k, "description": d} for k, d in DATA_CATEGORIES.items()],
        "kinds": list(KINDS),
        "safeguards": [{"key": k, "description": d} for k, d in SAFEGUARDS.items()],
    }


@router.post("/processors", status_code=201)
def register(body: ProcessorIn, principal: PrivacyWrite, db: DbDep) -> dict[str, Any]:
    """Register a processor; each bad field is named, a taken name is a 409."""
    lists = {"purposes": tuple(body.purposes), "categories": tuple(body.categories)}
    spec = ProcessorSpec(**{**body.model_dump(), **lists})
    with db.write() as session:
        found = service.register_processor(
            session=session, workspace_id=principal.workspace_id, spec=spec, actor=_actor(principal)
        )
    return found.document()


@router.get("/processors")
def list_all(
    principal: PrivacyRead,
    db: DbDep,
    active: bool | None = None,
    at: Annotated[datetime | None, Query(description="The register as it stood then.")] = None,
) -> dict[str, Any]:
    """The workspace's processors by name, now or at a past time; ``active`` filters."""
    with db.read() as session:
        found = service.list_processors(
            session=session, workspace_id=principal.workspace_id, at=_utc(at), active=active
        )
    return {"processors": [p.document() for p in found]}


@router.get("/processors/{processor_id}")
def read(processor_id: str, principal: PrivacyRead, db: DbDep) -> dict[str, Any]:
    """One processor as it stands now."""
    with db.read() as session:
        found = service.get_processor(
            session=session, workspace_id=principal.workspace_id, processor_id=processor_id
        )
    return found.document()


@router.patch("/processors/{processor_id}")
def change(
    processor_id: str, body: ProcessorPatch, principal: PrivacyWrite, db: DbDep
) -> dict[str, Any]:
    """Change some fields: a new version is kept (none when nothing changed)."""
    with db.write() as session:
        found = service.update_processor(
            session=session,
            workspace_id=principal.workspace_id,
            processor_id=processor_id,
            changes=body.model_dump(exclude_unset=True),
            actor=_actor(principal),
        )
    return found.document()


@router.delete("/processors/{processor_id}")
def deactivate(processor_id: str, principal: PrivacyWrite, db: DbDep) -> dict[str, Any]:
    """Deactivate: no data leaves to it any more; it stays in the register and its history."""
    with db.write() as session:
        found = service.deactivate_processor(
            session=session,
            workspace_id=principal.workspace_id,
            processor_id=processor_id,
            actor=_actor(principal),
        )
    return found.document()


@router.get("/processors/{processor_id}/history")
def history(processor_id: str, principal: PrivacyRead, db: DbDep) -> dict[str, Any]:
    """Every version of the processor, oldest first, with who changed it and when."""
    with db.read() as session:
        versions = service.processor_history(
            session=session, workspace_id=principal.workspace_id, processor_id=processor_id
        )
    return {"versions": [asdict(v) for v in versions]}


@router.post("/processors/{processor_id}/check")
def check(processor_id: str, body: CheckIn, principal: PrivacyWrite, db: DbDep) -> dict[str, Any]:
    """May data of these categories leave to this processor for this purpose? 200 when it may;
    403 ``transfer_refused`` naming every reason when it may not."""
    with db.read() as session:
        service.get_processor(
            session=session, workspace_id=principal.workspace_id, processor_id=processor_id
        )
        found = service.check_transfer(
            session=session,
            workspace_id=principal.workspace_id,
            processor_id=processor_id,
            purpose=body.purpose,
            categories=body.categories,
        )
    return {
        "allowed": True,
        "processor_id": found.id,
        "processor_version": found.version,
        "purpose": body.purpose,
        "categories": body.categories,
    }


CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The record as JSON, or as CSV with a header row (RFC 4180).",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


@router.get("/ropa", response_model=None, responses=CSV_RESPONSE)
def ropa(
    principal: PrivacyRead,
    db: DbDep,
    format: Literal["json", "csv"] = "json",
    at: Annotated[datetime | None, Query(description="The register as it stood then.")] = None,
) -> dict[str, Any] | Response:
    """The record of processing activities (GDPR Art. 30): one activity per purpose, with its
    legal basis, data categories, recipients, third-country transfers, retention and DPAs."""
    with db.read() as session:
        record = service.record_of_processing(
            session=session, workspace_id=principal.workspace_id, at=_utc(at)
        )
    if format == "json":
        return record_json(record)
    filename = f"ropa-{principal.workspace_id}-{record.as_of:%Y%m%d}.csv"
    return Response(
        record_csv(record),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
