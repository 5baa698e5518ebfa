"""Audience export routes: ``/v1/audiences/exports`` (scope ``audiences:export``).

``POST`` starts an export: a file (CSV or JSON) streamed in the response, or, for a partner
export with a ``destination_id``, a push queued in the delivery outbox (202, the manifest
summary in the body). The file's response names the export in ``X-Consentry-Export-Id``; its
manifest summary is ``GET /v1/audiences/exports/{id}`` once the file is out (a JSON file also
ends with it), its entries ``GET /v1/audiences/exports/{id}/manifest``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from consentry.audiences import export_service as service
from consentry.audiences import exports
from consentry.deps import AudiencesExport, DbDep, ReadAudit, SettingsDep

router = APIRouter(prefix="/v1/audiences/exports", tags=["audiences"])

MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


class ExportIn(BaseModel):
    """An export: the audience (a segment or profile ids), the purpose and channel consent is
    asked for, the mode and what to put in the file."""

    model_config = ConfigDict(extra="forbid")

    purpose: str = Field(max_length=100, description="The consent purpose the export serves.")
    channel: str = Field(max_length=16, description="The channel: email, sms, ..., or any.")
    mode: str = Field(exports.DOWNLOAD, max_length=16, description="download or partner.")
    segment_id: str | None = Field(None, max_length=100)
    profile_ids: list[str] | None = Field(None, description="Profile ids (any member id).")
    fields: list[str] | None = Field(None, description="Columns; default: the mode's.")
    format: str = Field("csv", max_length=8, description="The file: csv or json.")
    platform: str = Field("generic", max_length=16, description="google, meta or generic.")
    destination_id: str | None = Field(None, max_length=64, description="Push to (partner).")
    processor_id: str | None = Field(None, max_length=64, description="File for (partner).")
    summary_by: list[str] = Field(
        list(exports.DEFAULT_SUMMARY_BY), description="country or traits.<key>, counted k-safe."
    )
    k: int | None = Field(None, description="The k of the summary (at least the setting).")

    def request(self) -> service.ExportRequest:
        return service.ExportRequest(
            purpose=self.purpose,
            channel=self.channel,
            mode=self.mode,
            fields=self.fields,
            profile_ids=self.profile_ids,
            segment_id=self.segment_id,
            file_format=self.format,
            platform=self.platform,
            destination_id=self.destination_id,
            processor_id=self.processor_id,
            summary_by=self.summary_by,
            k=self.k,
        )


@router.post("", response_model=None)
def start(
    body: ExportIn,
    principal: AudiencesExport,
    db: DbDep,
    settings: SettingsDep,
    recorder: ReadAudit,
) -> StreamingResponse | JSONResponse:
    """Export an audience: consent decides who is in, a manifest lists why each one is."""
    config = settings.audience_exports
    with db.write() as session:
        plan = service.start_export(
            session=session,
            workspace_id=principal.workspace_id,
            request=body.request(),
            actor=principal.actor,
            reason=recorder.reason,
            settings=config,
            default_region=settings.default_phone_region,
        )
    if plan.delivery == service.PUSH:
        record = service.push(db, plan, config)
        return JSONResponse(record.document(), status_code=202)
    name = f"audience-{plan.id}.{plan.delivery}"
    return StreamingResponse(
        service.stream_file(db, plan, config),
        media_type=MEDIA[plan.delivery],
        headers={
            "X-Consentry-Export-Id": plan.id,
            "Content-Disposition": f'attachment; filename="{name}"',
            "Link": f"</v1/audiences/exports/{plan.id}>; rel=describedby",
            "Cache-Control": "no-store",
        },
    )


@router.get("")
def list_exports(
    principal: AudiencesExport,
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
) -> dict[str, Any]:
    """The latest exports, newest first (their summaries: no personal data)."""
    with db.read() as session:
        found = service.list_exports(
            session=session, workspace_id=principal.workspace_id, limit=limit
        )
    return {"exports": [r.document() for r in found]}


@router.get("/{export_id}")
def get_export(export_id: str, principal: AudiencesExport, db: DbDep) -> dict[str, Any]:
    """One export's manifest summary: counts by reason, the k-anonymous summary, status."""
    with db.read() as session:
        found = service.get_export(
            session=session, workspace_id=principal.workspace_id, export_id=export_id
        )
    return found.document()


@router.get("/{export_id}/manifest")
def manifest(
    export_id: str,
    principal: AudiencesExport,
    db: DbDep,
    recorder: ReadAudit,
    after: Annotated[int, Query(ge=0, description="Entries after this position.")] = 0,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = service.MAX_PAGE,
) -> dict[str, Any]:
    """Each exported subject (unified profile id) with the consent record, reason and regime
    that justified it, a page at a time (reading it is recorded in the audit trail)."""
    with recorder.reading(
        principal, "audience_export.manifest", target_type=service.TARGET
    ) as note:
        with db.read() as session:
            found = service.get_export(
                session=session, workspace_id=principal.workspace_id, export_id=export_id
            )
            entries = service.manifest_page(
                session=session,
                workspace_id=principal.workspace_id,
                export_id=export_id,
                after=after,
                limit=limit,
            )
        note.found([export_id])
    return {
        "export": found.document(),
        "entries": [e.document() for e in entries],
        "next_after": entries[-1].seq if len(entries) == limit else None,
    }
