"""Routes of consent signals: TC strings (IAB TCF v2) sent by a server, the workspace's map of
consent categories read on events, and ``/.well-known/gpc.json``.

GPC and the consent object on events need no route of their own: the ingestion API carries them
(``Sec-GPC: 1``, ``context.consent``) and processing records them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from consentry.consent import service
from consentry.consent.models import ProofIn
from consentry.consent.routes import record_json
from consentry.consent.signals import DEFAULT_CATEGORY_MAP, GPC_LAST_UPDATE, MAX_CATEGORIES
from consentry.deps import ConsentRead, ConsentWrite, DbDep
from consentry.platform.db import Database

router = APIRouter(prefix="/v1/consent", tags=["consent"])
well_known = APIRouter(tags=["consent"])


class TcfIn(BaseModel):
    """A TC string of a subject (profile_id, email or user_id), as a CMP stored it."""

    model_config = ConfigDict(extra="forbid")

    profile_id: str | None = Field(None, max_length=36)
    email: str | None = Field(None, max_length=512)
    user_id: str | None = Field(None, max_length=512)
    tc_string: str = Field(
        ...,
        min_length=1,
        max_length=8192,
        description="An IAB TCF v2 TC string (core segment, optionally the others).",
    )
    occurred_at: datetime | None = Field(None, description="When the choice was made; now.")
    notice_version: str | None = Field(None, max_length=100, pattern=r"^[^\x00]*$")
    proof: ProofIn | None = Field(None, description="The TC string is kept as proof.cmp_string.")


class CategoriesIn(BaseModel):
    """The workspace's own category names, each mapped to purposes ([] ignores it)."""

    model_config = ConfigDict(extra="forbid")

    categories: dict[str, list[str]] = Field(
        ..., max_length=MAX_CATEGORIES, examples=[{"C0004": ["marketing.advertising.third_party"]}]
    )


@router.post("/tcf", status_code=201)
def record_tcf(body: TcfIn, principal: ConsentWrite, db: DbDep) -> dict[str, Any]:
    """Record a TC string: one record per mapped purpose (docs/consent.md, "TCF"), source
    ``cmp``, the raw string in the proof; all or nothing. A malformed string is a 400 naming
    the field ``tc_string``."""
    with db.write() as session:
        subject = service.resolve_subject(
            session=session,
            workspace_id=principal.workspace_id,
            profile_id=body.profile_id,
            email=body.email,
            user_id=body.user_id,
        )
        tc, records = service.record_tcf(
            session=session,
            workspace_id=principal.workspace_id,
            profile_id=subject,
            tc_string=body.tc_string,
            actor=principal.actor,
            occurred_at=body.occurred_at,
            notice_version=body.notice_version,
            proof=body.proof,
        )
    return {
        "profile_id": subject,
        "recorded": len(records),
        "records": [record_json(r) for r in records],
        "tc_string": tc.summary(),
    }


def _categories(db: Database, workspace_id: str) -> dict[str, Any]:
    with db.read() as session:
        own = service.workspace_categories(session=session, workspace_id=workspace_id)
        effective = service.category_map(session=session, workspace_id=workspace_id)
    return {
        "categories": own,
        "defaults": {k: list(v) for k, v in DEFAULT_CATEGORY_MAP.items()},
        "effective": {k: list(v) for k, v in sorted(effective.items())},
    }


@router.get("/signals/categories")
def read_categories(principal: ConsentRead, db: DbDep) -> dict[str, Any]:
    """How ``context.consent.categoryPreferences`` is read: the workspace's own entries, the
    defaults, and the two merged (names normalised: lower case, letters and digits)."""
    return _categories(db, principal.workspace_id)


@router.put("/signals/categories")
def write_categories(body: CategoriesIn, principal: ConsentWrite, db: DbDep) -> dict[str, Any]:
    """Replace the workspace's own category entries; they add to or replace the defaults."""
    with db.write() as session:
        service.set_categories(
            session=session, workspace_id=principal.workspace_id, categories=body.categories
        )
    return _categories(db, principal.workspace_id)


@well_known.get("/.well-known/gpc.json", include_in_schema=False)
def gpc_support() -> JSONResponse:
    """This site honours Global Privacy Control (the GPC specification's well-known resource)."""
    return JSONResponse(
        {"gpc": True, "lastUpdate": GPC_LAST_UPDATE.isoformat()},
        headers={"Cache-Control": "public, max-age=86400"},
    )
