"""``POST /v1/privacy/access-exports``: the access and portability archive of one person.

Needs ``privacy:read`` (privacy officer, admin). The subject is named by ``profile_id``,
``email`` or ``user_id``; the answer is the ZIP itself (``application/zip``), never cached.
404 when no profile matches, 409 when the email and user id name different people.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from consentry.consent import service as consent
from consentry.deps import DbDep, PrivacyRead, ReadAudit
from consentry.platform.db import Database
from consentry.privacy import access, access_service

router = APIRouter(prefix="/v1/privacy", tags=["privacy"])


class AccessExportIn(BaseModel):
    """Who the archive is for: one of profile_id, email, user_id."""

    model_config = ConfigDict(extra="forbid")

    profile_id: str | None = Field(None, min_length=1, max_length=36)
    email: str | None = Field(None, min_length=3, max_length=320)
    user_id: str | None = Field(None, min_length=1, max_length=512)


def _build(db: Database, workspace_id: str, body: AccessExportIn) -> tuple[str, str, bytes]:
    with db.read() as session:
        profile_id = consent.resolve_subject(
            session=session,
            workspace_id=workspace_id,
            profile_id=body.profile_id,
            email=body.email,
            user_id=body.user_id,
        )
        data = access_service.collect(
            session=session, workspace_id=workspace_id, profile_id=profile_id
        )
    name = access.archive_name(data.profile_id, data.generated_at)
    return data.profile_id, name, access.build_archive(data)


@router.post(
    "/access-exports",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "The ZIP archive."}},
)
async def access_export(
    body: AccessExportIn, principal: PrivacyRead, db: DbDep, reads: ReadAudit
) -> Response:
    """Build the person's archive: JSON and CSV per category, a readable summary, a manifest.
    The export is recorded in the audit trail (action ``privacy.access_export``)."""
    lookup = "profile_id" if body.profile_id else "email" if body.email else "user_id"
    with reads.reading(principal, "privacy.access_export", lookup=lookup) as note:
        profile_id, name, archive = await run_in_threadpool(
            _build, db, principal.workspace_id, body
        )
        note.found([profile_id])
    return Response(
        archive,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )
