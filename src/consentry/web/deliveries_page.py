"""Dashboard page of delivery: each destination with its messages per status (queued, sent,
retrying, dead, ...) and its circuit, and the dead-letter list with a Retry button per message
and one for all of them.

Reading needs ``delivery:read``; the dead letters name the profiles they were for, so the read
is recorded in the audit trail (``details.via = "dashboard"``). Retrying needs
``delivery:write`` and a CSRF token. Nothing here shows a recipient or a message's content.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from consentry.delivery import destinations, outbox
from consentry.deps import DbDep, DeliveryRead, DeliveryWrite, ReadAudit
from consentry.platform.db import utcnow
from consentry.platform.tenancy import Scope
from consentry.web.routes import CsrfChecked, PageRoute, redirect, render

router = APIRouter(prefix="/app", route_class=PageRoute, include_in_schema=False)
DEAD_PAGE = 100
ACTOR_PREFIX = "token:"
SHOWN = ("queued", "sending", "retrying", "sent", "dead", "cancelled")  # the totals
COLUMNS = ("queued", "retrying", "sent", "dead", "cancelled")  # per destination


@router.get("/deliveries")
def deliveries_page(
    request: Request, principal: DeliveryRead, db: DbDep, reads: ReadAudit, done: str = ""
) -> Response:
    """Destinations with their counts, then the dead letters, newest first."""
    with reads.reading(principal, "outbox.read", lookup="dead_letters", via="dashboard") as note:
        with db.read() as session:
            found = destinations.list_destinations(
                session=session, workspace_id=principal.workspace_id
            )
            counted = outbox.counts(session=session, workspace_id=principal.workspace_id)
            total_dead, dead = outbox.dead_letters(
                session=session, workspace_id=principal.workspace_id, limit=DEAD_PAGE
            )
        note.found(m.subject_id for m in dead if m.subject_id)
    empty = dict.fromkeys(outbox.STATUSES, 0)
    totals = outbox.status_totals(counted)
    names = {d.id: d.name for d in found}
    now = utcnow()
    return render(
        request,
        "deliveries.html",
        principal=principal,
        destinations=[
            {
                "destination": d,
                "counts": counted.get(d.id, empty),
                "paused": d.paused_until is not None and d.paused_until > now,
            }
            for d in found
        ],
        totals=totals,
        shown=SHOWN,
        columns=COLUMNS,
        dead=dead,
        total_dead=total_dead,
        names=names,
        done=done if done.isdigit() else "",
        can_write=principal.allows(Scope.DELIVERY_WRITE),
    )


@router.post("/deliveries/dead/{message_id}/retry", dependencies=[CsrfChecked])
def retry_one(message_id: str, principal: DeliveryWrite, db: DbDep) -> Response:
    """Queue one dead letter again; the next delivery round sends it."""
    with db.write() as session:
        outbox.retry_dead(
            session=session,
            workspace_id=principal.workspace_id,
            message_id=message_id,
            actor=f"{ACTOR_PREFIX}{principal.key_id}",
        )
    return redirect("/app/deliveries?done=1")


@router.post("/deliveries/dead/retry", dependencies=[CsrfChecked])
def retry_all(principal: DeliveryWrite, db: DbDep) -> Response:
    """Queue every dead letter whose content is still held again."""
    with db.write() as session:
        count = outbox.retry_all_dead(
            session=session,
            workspace_id=principal.workspace_id,
            actor=f"{ACTOR_PREFIX}{principal.key_id}",
        )
    return redirect(f"/app/deliveries?done={count}")
