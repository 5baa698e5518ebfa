"""Admin routes of delivery: destinations, the outbox (its messages, counts and dead letters,
retried by hand, and a delivery round on demand) and the suppression list.

Reads need ``delivery:read``; changes need ``delivery:write``. Every query is scoped to the
caller's workspace. A message is shown by its ids, status and error, never its recipient or
content; listing messages names the subjects they went to, so the read is recorded in the audit
trail. An address is sent in a body (``POST /v1/suppressions``, ``/check``), never in a URL.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from consentry.delivery import destinations, outbox, suppressions
from consentry.delivery.models import Mailer
from consentry.delivery.webhook import send
from consentry.deps import DbDep, DeliveryRead, DeliveryWrite, ReadAudit, SettingsDep
from consentry.platform.tenancy import Principal

router = APIRouter(tags=["delivery"])

Key = Annotated[str, Field(max_length=100)]
Limit = Annotated[int, Query(ge=1, le=outbox.MAX_PAGE)]
Offset = Annotated[int, Query(ge=0, le=outbox.MAX_OFFSET)]


def _actor(principal: Principal) -> str:
    return principal.actor


# --- destinations -------------------------------------------------------------------------------


class DestinationIn(BaseModel):
    """A destination: where messages of one kind go, for one purpose, through one processor."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., max_length=200, examples=["Newsletter"])
    kind: str = Field(..., max_length=16, description=", ".join(destinations.KINDS))
    processor_id: str = Field(..., max_length=100, description="A registered, active processor.")
    purpose: str = Field(..., max_length=100, examples=["marketing.communications.email"])
    channel: str | None = Field(
        None, max_length=16, description="email and sms: their own; webhook: default any."
    )
    url: str | None = Field(None, max_length=2000, description="sms and webhook: where to POST.")
    categories: list[Key] = Field(
        default_factory=list,
        max_length=50,
        description="Data categories sent beyond the kind's own (a webhook must declare some).",
    )
    from_address: str | None = Field(None, max_length=320, description="email: the From.")
    from_name: str | None = Field(None, max_length=200, description="email: From's name.")


class DestinationPatch(BaseModel):
    """The fields to change (the kind never changes)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200)
    processor_id: str | None = Field(None, max_length=100)
    purpose: str | None = Field(None, max_length=100)
    channel: str | None = Field(None, max_length=16)
    url: str | None = Field(None, max_length=2000)
    categories: list[Key] | None = Field(None, max_length=50)
    from_address: str | None = Field(None, max_length=320)
    from_name: str | None = Field(None, max_length=200)
    active: bool | None = None


def _registered(made: destinations.Registered) -> dict[str, Any]:
    answer = made.destination.document()
    if made.secret is not None:
        answer["secret"] = made.secret  # shown this once
    return answer


@router.post("/v1/destinations", status_code=201)
def register(body: DestinationIn, principal: DeliveryWrite, db: DbDep) -> dict[str, Any]:
    """Register a destination. Refused (400 naming the field) when its processor may not
    receive, for its purpose, what its kind sends. SMS and webhook destinations answer with
    their signing ``secret``: it is shown only here."""
    spec = destinations.DestinationSpec(**body.model_dump())
    with db.write() as session:
        made = destinations.register_destination(
            session=session,
            workspace_id=principal.workspace_id,
            spec=spec,
            actor=_actor(principal),
        )
    return _registered(made)


@router.get("/v1/destinations")
def list_destinations(
    principal: DeliveryRead, db: DbDep, active: bool | None = None
) -> dict[str, Any]:
    """The workspace's destinations by name, each with its messages per status."""
    with db.read() as session:
        found = destinations.list_destinations(
            session=session, workspace_id=principal.workspace_id, active=active
        )
        counted = outbox.counts(session=session, workspace_id=principal.workspace_id)
    empty = dict.fromkeys(outbox.STATUSES, 0)
    return {"destinations": [{**d.document(), "messages": counted.get(d.id, empty)} for d in found]}


@router.get("/v1/destinations/{destination_id}")
def get_destination(destination_id: str, principal: DeliveryRead, db: DbDep) -> dict[str, Any]:
    """One destination (404 for another workspace's)."""
    with db.read() as session:
        found = destinations.get_destination(
            session=session, workspace_id=principal.workspace_id, destination_id=destination_id
        )
        counted = outbox.counts(session=session, workspace_id=principal.workspace_id)
    return {
        **found.document(),
        "messages": counted.get(found.id, dict.fromkeys(outbox.STATUSES, 0)),
    }


@router.patch("/v1/destinations/{destination_id}")
def update(
    destination_id: str, body: DestinationPatch, principal: DeliveryWrite, db: DbDep
) -> dict[str, Any]:
    """Change some fields; the result must pass the same checks as a registration (a
    deactivation excepted)."""
    changes = body.model_dump(exclude_unset=True)
    with db.write() as session:
        found = destinations.update_destination(
            session=session,
            workspace_id=principal.workspace_id,
            destination_id=destination_id,
            changes=changes,
            actor=_actor(principal),
        )
    return found.document()


@router.delete("/v1/destinations/{destination_id}")
def deactivate(destination_id: str, principal: DeliveryWrite, db: DbDep) -> dict[str, Any]:
    """Deactivate: nothing more goes there; messages still queued for it are cancelled when
    their turn comes. It stays listed (its messages refer to it)."""
    with db.write() as session:
        found = destinations.deactivate_destination(
            session=session,
            workspace_id=principal.workspace_id,
            destination_id=destination_id,
            actor=_actor(principal),
        )
    return found.document()


@router.post("/v1/destinations/{destination_id}/secret", status_code=201)
def rotate_secret(destination_id: str, principal: DeliveryWrite, db: DbDep) -> dict[str, Any]:
    """A new signing secret (sms, webhook), shown only in this answer; the old one stops
    signing at once."""
    with db.write() as session:
        made = destinations.rotate_secret(
            session=session,
            workspace_id=principal.workspace_id,
            destination_id=destination_id,
            actor=_actor(principal),
        )
    return _registered(made)


# --- the outbox ---------------------------------------------------------------------------------


def _page(
    principal: Principal,
    reads: ReadAudit,
    db: DbDep,
    *,
    status: str | None,
    destination_id: str | None,
    subject_id: str | None,
    limit: int,
    offset: int,
) -> dict[str, Any]:
    with reads.reading(principal, "outbox.read", lookup="status") as note:
        with db.read() as session:
            total, found = outbox.list_messages(
                session=session,
                workspace_id=principal.workspace_id,
                status=status,
                destination_id=destination_id,
                subject_id=subject_id,
                limit=limit,
                offset=offset,
            )
        note.found(m.subject_id for m in found if m.subject_id)
    return {"total": total, "messages": [m.document() for m in found]}


@router.get("/v1/outbox")
def list_outbox(
    principal: DeliveryRead,
    db: DbDep,
    reads: ReadAudit,
    status: Annotated[str | None, Query(max_length=16, description="queued, sent, ...")] = None,
    destination_id: Annotated[str | None, Query(max_length=100)] = None,
    subject_id: Annotated[str | None, Query(max_length=100)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Messages, newest first, by status, destination or subject (read recorded)."""
    return _page(
        principal,
        reads,
        db,
        status=status,
        destination_id=destination_id,
        subject_id=subject_id,
        limit=limit,
        offset=offset,
    )


@router.get("/v1/outbox/counts")
def outbox_counts(principal: DeliveryRead, db: DbDep) -> dict[str, Any]:
    """Messages per destination and status, and the totals per status."""
    with db.read() as session:
        counted = outbox.counts(session=session, workspace_id=principal.workspace_id)
    totals = outbox.status_totals(counted)
    return {"destinations": counted, "totals": totals}


@router.get("/v1/outbox/dead")
def dead_letters(
    principal: DeliveryRead,
    db: DbDep,
    reads: ReadAudit,
    destination_id: Annotated[str | None, Query(max_length=100)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """The dead-letter list: messages given up on, with why (read recorded)."""
    return _page(
        principal,
        reads,
        db,
        status=outbox.DEAD,
        destination_id=destination_id,
        subject_id=None,
        limit=limit,
        offset=offset,
    )


class RetryAllIn(BaseModel):
    """Which dead letters to retry: every one, or one destination's."""

    model_config = ConfigDict(extra="forbid")

    destination_id: str | None = Field(None, max_length=100)


@router.post("/v1/outbox/dead/retry")
def retry_all(
    principal: DeliveryWrite, db: DbDep, body: RetryAllIn | None = None
) -> dict[str, Any]:
    """Put every dead letter (of one destination) whose content is still held back in the
    queue, with fresh attempts."""
    wanted = body or RetryAllIn()
    with db.write() as session:
        count = outbox.retry_all_dead(
            session=session,
            workspace_id=principal.workspace_id,
            actor=_actor(principal),
            destination_id=wanted.destination_id,
        )
    return {"retried": count}


@router.post("/v1/outbox/run")
async def run_now(
    request: Request, principal: DeliveryWrite, db: DbDep, settings: SettingsDep
) -> dict[str, Any]:
    """Deliver what is due in this workspace now, rather than at the next scheduled round."""
    mailer: Mailer = request.app.state.mailer
    report = await run_in_threadpool(
        outbox.deliver_configured,
        db,
        settings,
        mailer=mailer,
        post=send,
        workspace_id=principal.workspace_id,
    )
    return report.document()


@router.get("/v1/outbox/{message_id}")
def get_message(
    message_id: str, principal: DeliveryRead, db: DbDep, reads: ReadAudit
) -> dict[str, Any]:
    """One message: its status, attempts and last error (read recorded)."""
    with reads.reading(principal, "outbox.read", lookup="message_id") as note:
        with db.read() as session:
            found = outbox.get_message(
                session=session, workspace_id=principal.workspace_id, message_id=message_id
            )
        note.found([found.subject_id] if found.subject_id else [])
    return found.document()


@router.post("/v1/outbox/{message_id}/retry")
def retry(message_id: str, principal: DeliveryWrite, db: DbDep) -> dict[str, Any]:
    """Put a dead letter back in the queue with fresh attempts (409 unless it is dead)."""
    with db.write() as session:
        found = outbox.retry_dead(
            session=session,
            workspace_id=principal.workspace_id,
            message_id=message_id,
            actor=_actor(principal),
        )
    return found.document()


# --- the suppression list -----------------------------------------------------------------------


class SuppressionIn(BaseModel):
    """An address nothing is sent to over a channel."""

    model_config = ConfigDict(extra="forbid")

    channel: str = Field(..., max_length=16, description=", ".join(suppressions.CHANNELS))
    address: str = Field(..., max_length=320, description="An email address or phone number.")
    reason: str = Field("manual", max_length=16, description=", ".join(suppressions.REASONS))


class AddressIn(BaseModel):
    """An address to look up."""

    model_config = ConfigDict(extra="forbid")

    channel: str = Field(..., max_length=16)
    address: str = Field(..., max_length=320)


@router.post("/v1/suppressions", status_code=201)
def suppress(
    body: SuppressionIn,
    principal: DeliveryWrite,
    db: DbDep,
    settings: SettingsDep,
    response: Response,
) -> dict[str, Any]:
    """Put an address on the list (201), or answer its entry when it is there already (200).
    Only a keyed hash of the normalised address is stored."""
    with db.write() as session:
        entry, new = suppressions.add(
            session=session,
            workspace_id=principal.workspace_id,
            channel=body.channel,
            address=body.address,
            reason=body.reason,
            actor=_actor(principal),
            default_region=settings.default_phone_region,
        )
    if not new:
        response.status_code = 200
    return entry.document()


@router.get("/v1/suppressions")
def list_suppressions(
    principal: DeliveryRead,
    db: DbDep,
    channel: Annotated[str | None, Query(max_length=16)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """The list, newest first: channel, reason, when and by whom (never an address)."""
    with db.read() as session:
        total, found = suppressions.list_suppressions(
            session=session,
            workspace_id=principal.workspace_id,
            channel=channel,
            limit=limit,
            offset=offset,
        )
    return {"total": total, "suppressions": [s.document() for s in found]}


@router.post("/v1/suppressions/check")
def check_suppression(
    body: AddressIn, principal: DeliveryRead, db: DbDep, settings: SettingsDep
) -> dict[str, Any]:
    """Whether an address is on the list, and its entry."""
    with db.read() as session:
        found = suppressions.find(
            session=session,
            workspace_id=principal.workspace_id,
            channel=body.channel,
            address=body.address,
            default_region=settings.default_phone_region,
        )
    return {"suppressed": found is not None, "entry": found.document() if found else None}


@router.delete("/v1/suppressions/{suppression_id}", status_code=204)
def unsuppress(suppression_id: str, principal: DeliveryWrite, db: DbDep) -> Response:
    """Take an entry off the list."""
    with db.write() as session:
        suppressions.remove(
            session=session,
            workspace_id=principal.workspace_id,
            suppression_id=suppression_id,
            actor=_actor(principal),
        )
    return Response(status_code=204)
