"""Dashboard page of identity resolution: the review queue of probabilistic de-duplication.

Each pair shows its match probability, the weight every field contributed (bars), and both
profiles side by side as the profile page shows them; reading it is recorded in the audit trail
under both profiles' ids (``details.via = "dashboard"``). Approve (merge) and reject are POST
forms with the CSRF token and need ``profiles:write``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from consentry.deps import DbDep, ProfilesRead, ProfilesWrite, ReadAudit, SettingsDep
from consentry.errors import FieldError, Invalid
from consentry.platform.tenancy import Scope
from consentry.profiles import dedupe_service as dedupe
from consentry.profiles.dedupe_routes import review_queue
from consentry.web.routes import CsrfChecked, PageRoute, redirect, render

router = APIRouter(prefix="/app", route_class=PageRoute, include_in_schema=False)
PAGE = 25
SHOWN = ("name", "email", "phone", "birthday", "street", "postcode", "city", "country")
STATUS_CHOICES = (*dedupe.STATUSES, "all")
DECISIONS = {"approve": "approved", "reject": "rejected"}


def _bars(explanation: dict[str, Any]) -> list[dict[str, Any]]:
    """The fields of an explanation with the length of their bar (share of the largest)."""
    fields = list(explanation.get("fields", []))
    scale = max((abs(float(f["weight"])) for f in fields), default=0.0) or 1.0
    return [
        {**f, "share": round(abs(float(f["weight"])) / scale, 3), "positive": f["weight"] >= 0}
        for f in fields
    ]


@router.get("/identity/review")
def review_page(
    request: Request,
    principal: ProfilesRead,
    db: DbDep,
    reads: ReadAudit,
    status: str = "pending",
    done: str = "",
) -> Response:
    """The pairs waiting for a decision (or those of another status), most probable first."""
    with db.read() as session:
        latest = dedupe.latest_run(session=session, workspace_id=principal.workspace_id)
    total, found = review_queue(db, principal, reads, status=status, limit=PAGE, via="dashboard")
    pairs = [{"candidate": c, "sides": sides, "bars": _bars(c.explanation)} for c, sides in found]
    return render(
        request,
        "identity_review.html",
        principal=principal,
        pairs=pairs,
        total=total,
        status=status,
        statuses=STATUS_CHOICES,
        shown=SHOWN,
        latest=latest,
        done=done if done in DECISIONS.values() else "",
        can_write=principal.allows(Scope.PROFILES_WRITE),
    )


@router.post("/identity/review/{candidate_id}/{decision}", dependencies=[CsrfChecked])
def decide(
    candidate_id: str,
    decision: str,
    principal: ProfilesWrite,
    db: DbDep,
    settings: SettingsDep,
) -> Response:
    """Approve (merge the two profiles) or reject (never propose them again)."""
    if decision not in DECISIONS:
        raise Invalid("unknown decision", [FieldError("decision", "approve or reject")])
    actor = principal.actor
    with db.write() as session:
        if decision == "approve":
            dedupe.approve(
                session=session,
                workspace_id=principal.workspace_id,
                candidate_id=candidate_id,
                actor=actor,
                cap=settings.identity.cap,
            )
        else:
            dedupe.reject(
                session=session,
                workspace_id=principal.workspace_id,
                candidate_id=candidate_id,
                actor=actor,
            )
    return redirect(f"/app/identity/review?done={quote(DECISIONS[decision], safe='')}")
