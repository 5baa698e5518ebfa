"""Segment and computed-trait routes (docs/segments.md).

Reading needs ``audiences:read``; defining, previewing and refreshing need ``audiences:write``.
Bad rules are 400s naming the field (``rule.all[1].count.value``); a taken name is a 409.
Listing members or the history returns profile ids: the read is recorded in the audit trail.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from consentry.audiences import compiler, computed
from consentry.audiences import service as segments
from consentry.deps import AudiencesRead, AudiencesWrite, DbDep, ReadAudit

router = APIRouter(prefix="/v1/segments", tags=["audiences"])
traits_router = APIRouter(prefix="/v1/computed-traits", tags=["audiences"])


class SegmentIn(BaseModel):
    """A new segment: a name (unique in the workspace), a rule (docs/segments.md)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=200)
    description: str = Field("", max_length=2000)
    rule: Any


class SegmentChange(BaseModel):
    """What to change; a new rule is evaluated at once."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=2000)
    rule: Any = None


class PreviewIn(BaseModel):
    """A rule to try: how many match now, and a few of their ids."""

    model_config = ConfigDict(extra="forbid")

    rule: Any
    sample: int = Field(10, ge=0, le=100)


@router.post("", status_code=201)
def create(principal: AudiencesWrite, db: DbDep, body: SegmentIn) -> dict[str, Any]:
    """Define a segment; its members are evaluated at once (each one an entry)."""
    with db.write() as session:
        found, report = segments.create_segment(
            session=session,
            workspace_id=principal.workspace_id,
            name=body.name,
            rule=body.rule,
            description=body.description,
            actor=principal.actor,
        )
    return {**found.document(), "refresh": report.document()}


@router.get("")
def list_segments(principal: AudiencesRead, db: DbDep) -> dict[str, Any]:
    """The workspace's segments with their member counts."""
    with db.read() as session:
        found = segments.list_segments(session=session, workspace_id=principal.workspace_id)
    return {"segments": [s.document() for s in found]}


@router.post("/preview")
def preview(principal: AudiencesWrite, db: DbDep, body: PreviewIn) -> dict[str, Any]:
    """Evaluate a rule now without saving it: count, a sample of ids, its text form."""
    with db.read() as session:
        found = segments.preview(
            session=session, workspace_id=principal.workspace_id, rule=body.rule, sample=body.sample
        )
    return found.document()


@router.post("/refresh")
def refresh_all(principal: AudiencesWrite, db: DbDep) -> dict[str, Any]:
    """A full refresh of every computed trait and segment of the workspace, now: computed in
    reads, applied in short write transactions (ingestion goes on meanwhile)."""
    report = segments.refresh_in_steps(db, workspace_id=principal.workspace_id)
    return report.document()


@router.get("/{segment_id}")
def get_one(segment_id: str, principal: AudiencesRead, db: DbDep) -> dict[str, Any]:
    """One segment: its rule, text form, kinds and member count."""
    with db.read() as session:
        found = segments.get_segment(
            session=session, workspace_id=principal.workspace_id, segment_id=segment_id
        )
    return found.document()


@router.put("/{segment_id}")
def update(
    segment_id: str, principal: AudiencesWrite, db: DbDep, body: SegmentChange
) -> dict[str, Any]:
    """Rename, describe or change the rule of a segment (a new rule is evaluated at once)."""
    with db.write() as session:
        found, report = segments.update_segment(
            session=session,
            workspace_id=principal.workspace_id,
            segment_id=segment_id,
            actor=principal.actor,
            name=body.name,
            description=body.description,
            rule=body.rule,
        )
    return {**found.document(), "refresh": report.document()}


@router.delete("/{segment_id}", status_code=204)
def delete(segment_id: str, principal: AudiencesWrite, db: DbDep) -> Response:
    """Delete a segment with its members and history (409 while another segment reads it)."""
    with db.write() as session:
        segments.delete_segment(
            session=session, workspace_id=principal.workspace_id, segment_id=segment_id
        )
    return Response(status_code=204)


@router.post("/{segment_id}/refresh")
def refresh_one(segment_id: str, principal: AudiencesWrite, db: DbDep) -> dict[str, Any]:
    """Evaluate one segment over the whole workspace now; who entered and who left."""
    with db.write() as session:
        report = segments.refresh_segment(
            session=session, workspace_id=principal.workspace_id, segment_id=segment_id
        )
    return report.document()


@router.get("/{segment_id}/members")
def members(
    segment_id: str,
    principal: AudiencesRead,
    db: DbDep,
    reads: ReadAudit,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(max_length=36, description="The last id of a page.")] = None,
) -> dict[str, Any]:
    """A page of the segment's members (unified profile ids, by id), after ``after``."""
    with reads.reading(principal, "segment.members", segment=segment_id[:64]) as note:
        with db.read() as session:
            page = segments.members(
                session=session,
                workspace_id=principal.workspace_id,
                segment_id=segment_id,
                limit=limit,
                after=after,
            )
        note.found(m.profile_id for m in page)
    following = page[-1].profile_id if len(page) == limit else None
    return {"members": [m.document() for m in page], "next_after": following}


@router.get("/{segment_id}/history")
def history(
    segment_id: str,
    principal: AudiencesRead,
    db: DbDep,
    reads: ReadAudit,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    before: Annotated[int | None, Query(ge=1, description="The last id of a page.")] = None,
) -> dict[str, Any]:
    """Entries and exits of the segment, newest first, before change id ``before``."""
    with reads.reading(principal, "segment.history", segment=segment_id[:64]) as note:
        with db.read() as session:
            page = segments.history(
                session=session,
                workspace_id=principal.workspace_id,
                segment_id=segment_id,
                limit=limit,
                before_id=before,
            )
        note.found(c.profile_id for c in page)
    following = page[-1].id if len(page) == limit else None
    return {"changes": [c.document() for c in page], "next_before": following}


# --- computed traits -----------------------------------------------------------------------------


@traits_router.post("", status_code=201)
def create_trait(principal: AudiencesWrite, db: DbDep, body: dict[str, Any]) -> dict[str, Any]:
    """Define a computed trait (name, op, event, property, window_days); its values are
    computed at once."""
    with db.write() as session:
        found = segments.create_computed_trait(
            session=session,
            workspace_id=principal.workspace_id,
            definition=body,
            actor=principal.actor,
        )
    return found.document()


@traits_router.get("")
def list_traits(principal: AudiencesRead, db: DbDep) -> dict[str, Any]:
    """The workspace's computed traits, and the built-in ones rules can read."""
    with db.read() as session:
        found = computed.list_traits(session=session, workspace_id=principal.workspace_id)
    builtin = [
        {"name": name, "kind": spec.kind, "about": spec.about}
        for name, spec in compiler.BUILTINS.items()
    ]
    return {"computed_traits": [t.document() for t in found], "built_in": builtin}


@traits_router.get("/{trait_id}")
def get_trait(trait_id: str, principal: AudiencesRead, db: DbDep) -> dict[str, Any]:
    """One computed trait, by id or name."""
    with db.read() as session:
        found = computed.get_trait(
            session=session, workspace_id=principal.workspace_id, trait_id=trait_id
        )
    return found.document()


@traits_router.put("/{trait_id}")
def update_trait(
    trait_id: str, principal: AudiencesWrite, db: DbDep, body: dict[str, Any]
) -> dict[str, Any]:
    """Change a computed trait (not its name); values and the segments reading it refresh."""
    with db.write() as session:
        found = segments.update_computed_trait(
            session=session, workspace_id=principal.workspace_id, trait_id=trait_id, definition=body
        )
    return found.document()


@traits_router.delete("/{trait_id}", status_code=204)
def delete_trait(trait_id: str, principal: AudiencesWrite, db: DbDep) -> Response:
    """Delete a computed trait and its values (409 while a segment reads it)."""
    with db.write() as session:
        segments.delete_computed_trait(
            session=session, workspace_id=principal.workspace_id, trait_id=trait_id
        )
    return Response(status_code=204)
