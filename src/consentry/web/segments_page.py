"""Dashboard pages of segments: the list with member counts, the builder (a JSON rule, its
text form and an htmx preview count as you type), and one segment with its entries and exits.
Reads need ``audiences:read``; saving and refreshing need ``audiences:write`` and a CSRF token.
The history shows profile ids: its read is recorded in the audit trail."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from consentry.audiences import compiler, computed
from consentry.audiences import service as segments
from consentry.deps import AudiencesRead, AudiencesWrite, DbDep, ReadAudit
from consentry.errors import FieldError, Invalid
from consentry.platform.db import utcnow
from consentry.platform.tenancy import Scope
from consentry.web.routes import CsrfChecked, PageRoute, fragment, redirect, render

router = APIRouter(prefix="/app", route_class=PageRoute, include_in_schema=False)
HISTORY_PAGE = 50
MAX_RULE_TEXT = 100_000
EXAMPLE = {
    "all": [
        {"event": "Product Viewed", "count": {"op": "gte", "value": 2}, "within_days": 7},
        {"event": "Order Completed", "count": {"op": "eq", "value": 0}, "within_days": 7},
    ]
}


def _parse(rule: str) -> Any:
    """The rule document typed in the builder (Invalid naming ``rule`` when it is not JSON)."""
    if len(rule) > MAX_RULE_TEXT:
        raise Invalid("the rule is too long", [FieldError("rule", "at most 100,000 characters")])
    try:
        return json.loads(rule)
    except json.JSONDecodeError as exc:
        reason = f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        raise Invalid("the rule is not JSON", [FieldError("rule", reason)]) from None


def _helpers(db: Any, workspace_id: str) -> dict[str, Any]:
    """What the builder lists beside the rule: computed traits and segments to refer to."""
    with db.read() as session:
        custom = computed.list_traits(session=session, workspace_id=workspace_id)
        found = segments.list_segments(session=session, workspace_id=workspace_id)
    return {
        "builtins": compiler.BUILTINS,
        "custom": custom,
        "others": found,
    }


@router.get("/segments")
def list_page(request: Request, principal: AudiencesRead, db: DbDep) -> Response:
    """Every segment with its member count and rule in words."""
    with db.read() as session:
        found = segments.list_segments(session=session, workspace_id=principal.workspace_id)
    return render(
        request,
        "segments.html",
        principal=principal,
        segments=found,
        can_write=principal.allows(Scope.AUDIENCES_WRITE),
    )


@router.get("/segments/new")
def builder_page(request: Request, principal: AudiencesWrite, db: DbDep) -> Response:
    """The builder: name, description, the rule as JSON, its preview."""
    return render(
        request,
        "segments_builder.html",
        principal=principal,
        segment=None,
        name="",
        description="",
        rule=json.dumps(EXAMPLE, indent=2),
        errors=[],
        **_helpers(db, principal.workspace_id),
    )


@router.get("/segments/preview")
def preview_fragment(principal: AudiencesWrite, db: DbDep, rule: str = "") -> Response:
    """The count, text form and a few ids of the rule being typed (an htmx fragment); a bad
    rule shows its field errors instead."""
    try:
        document = _parse(rule)
        with db.read() as session:
            found = segments.preview(
                session=session, workspace_id=principal.workspace_id, rule=document, sample=5
            )
    except Invalid as exc:
        return fragment("_segments_preview.html", preview=None, errors=exc.errors)
    return fragment("_segments_preview.html", preview=found, errors=[])


@router.post("/segments", dependencies=[CsrfChecked])
def save(
    request: Request,
    principal: AudiencesWrite,
    db: DbDep,
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    rule: Annotated[str, Form()] = "",
    segment_id: Annotated[str, Form()] = "",
) -> Response:
    """Create a segment (or change the one named by ``segment_id``), then show it; bad input
    shows the builder again with each field's problem."""
    try:
        document = _parse(rule)
        with db.write() as session:
            if segment_id:
                found, _ = segments.update_segment(
                    session=session,
                    workspace_id=principal.workspace_id,
                    segment_id=segment_id,
                    actor=principal.actor,
                    name=name,
                    description=description,
                    rule=document,
                )
            else:
                found, _ = segments.create_segment(
                    session=session,
                    workspace_id=principal.workspace_id,
                    name=name,
                    rule=document,
                    description=description,
                    actor=principal.actor,
                )
    except Invalid as exc:
        existing = None
        if segment_id:
            with db.read() as session:
                existing = segments.get_segment(
                    session=session, workspace_id=principal.workspace_id, segment_id=segment_id
                )
        return render(
            request,
            "segments_builder.html",
            status_code=400,
            principal=principal,
            segment=existing,
            name=name,
            description=description,
            rule=rule,
            errors=exc.errors or [FieldError("rule", exc.message)],
            **_helpers(db, principal.workspace_id),
        )
    return redirect(f"/app/segments/{found.id}")


@router.get("/segments/{segment_id}/edit")
def edit_page(request: Request, segment_id: str, principal: AudiencesWrite, db: DbDep) -> Response:
    """The builder, filled with a segment's name, description and rule."""
    with db.read() as session:
        found = segments.get_segment(
            session=session, workspace_id=principal.workspace_id, segment_id=segment_id
        )
    return render(
        request,
        "segments_builder.html",
        principal=principal,
        segment=found,
        name=found.name,
        description=found.description,
        rule=json.dumps(found.rule, indent=2, ensure_ascii=False),
        errors=[],
        **_helpers(db, principal.workspace_id),
    )


@router.get("/segments/{segment_id}")
def segment_page(
    request: Request,
    segment_id: str,
    principal: AudiencesRead,
    db: DbDep,
    reads: ReadAudit,
    refreshed: str = "",
) -> Response:
    """One segment: its rule in words and as JSON, size, entries and exits of the last day and
    week, and the latest changes."""
    now = utcnow()
    with reads.reading(
        principal, "segment.history", segment=segment_id[:64], via="dashboard"
    ) as note:
        with db.read() as session:
            found = segments.get_segment(
                session=session, workspace_id=principal.workspace_id, segment_id=segment_id
            )
            changes = segments.history(
                session=session,
                workspace_id=principal.workspace_id,
                segment_id=segment_id,
                limit=HISTORY_PAGE,
            )
            day, week = (
                segments.change_counts(
                    session=session,
                    workspace_id=principal.workspace_id,
                    segment_id=segment_id,
                    since=now - span,
                )
                for span in (timedelta(days=1), timedelta(days=7))
            )
        note.found(c.profile_id for c in changes)
    return render(
        request,
        "segments_detail.html",
        principal=principal,
        segment=found,
        changes=changes,
        day=day,
        week=week,
        rule_json=json.dumps(found.rule, indent=2, ensure_ascii=False),
        refreshed=refreshed,
        can_write=principal.allows(Scope.AUDIENCES_WRITE),
    )


@router.post("/segments/{segment_id}/refresh", dependencies=[CsrfChecked])
def refresh(segment_id: str, principal: AudiencesWrite, db: DbDep) -> Response:
    """Evaluate the segment now, then show it with what changed."""
    with db.write() as session:
        report = segments.refresh_segment(
            session=session, workspace_id=principal.workspace_id, segment_id=segment_id
        )
    return redirect(
        f"/app/segments/{segment_id}?refreshed={report.entered}+entered,+{report.exited}+left"
    )
