"""The data-quality dashboard: the latest audit (or one chosen from the recent ones) with its
completeness bars, invalid values by reason, warnings, likely duplicates and stale profiles,
and a button that runs an audit now.

The page shows the very document ``GET /v1/quality/audits/latest`` answers with
(``quality.service``), so the page and the API agree. It holds counts and profile ids, never a
value. Reading needs ``quality:read``; "Run audit now" needs ``quality:write`` and a CSRF token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from consentry.deps import DbDep, QualityRead, QualityWrite, SettingsDep
from consentry.platform.tenancy import Scope
from consentry.quality import service
from consentry.web.routes import CsrfChecked, PageRoute, redirect, render

router = APIRouter(prefix="/app", route_class=PageRoute, include_in_schema=False)
RECENT = 10
BAR_WIDTH = 160


def problem_rows(report: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """Every (field, problem code) of a report's ``invalid`` or ``warnings``, the most
    frequent first, with its share of the profiles that have the field."""
    rows = [
        {
            "field": name,
            "code": code,
            "count": c["count"],
            "share": c["count"] / f["present"] if f["present"] else 0.0,
            "examples": c["examples"],
        }
        for name, f in report["fields"].items()
        for code, c in f[kind].items()
    ]
    return sorted(rows, key=lambda r: (-r["count"], r["field"], r["code"]))


@router.get("/quality")
def quality_page(request: Request, principal: QualityRead, db: DbDep, audit: str = "") -> Response:
    """The latest audit, or the one named by ``?audit=``."""
    found: service.AuditRun | None
    with db.read() as session:
        if audit:
            found = service.get(
                session=session, workspace_id=principal.workspace_id, audit_id=audit
            )
        else:
            found = service.latest(session=session, workspace_id=principal.workspace_id)
        recent = service.recent(session=session, workspace_id=principal.workspace_id, limit=RECENT)
    report = found.document() if found is not None else None
    return render(
        request,
        "quality.html",
        principal=principal,
        report=report,
        invalid=problem_rows(report, "invalid") if report else [],
        warnings=problem_rows(report, "warnings") if report else [],
        recent=[r.summary() for r in recent],
        can_run=principal.allows(Scope.QUALITY_WRITE),
        bar_width=BAR_WIDTH,
    )


@router.post("/quality/run", dependencies=[CsrfChecked])
def run_now(principal: QualityWrite, db: DbDep, settings: SettingsDep) -> Response:
    """Audit the workspace now, then show the new report."""
    service.run(
        db,
        principal.workspace_id,
        settings.quality,
        default_country=settings.default_phone_region,
        actor=principal.actor,
    )
    return redirect("/app/quality")
