"""Destinations: the named endpoints messages leave through, each bound to a registered
processor and a purpose.

A destination is an ``email`` account (the configured SMTP server, optionally with its own From
address), an ``sms`` provider (its URL receives ``{"to": E.164, "text": ...}``) or a
``webhook`` (its URL receives the message's JSON body). SMS and webhook requests are signed
(``Consentry-Signature``) with the destination's secret, which is shown once, when the
destination is registered or its secret rotated, and stored sealed.

Registration refuses a destination whose processor may not receive, for the destination's
purpose, the data categories its kind sends (email: ``user.contact.email``; sms:
``user.contact.phone_number``; plus any declared ``categories``, which a webhook must declare)
(privacy's gate, :func:`consentry.privacy.processor_service.transfer_refusals`): a 400 naming
the field. :func:`check_destination` asks the same gate again before every send. Functions
take a session and keyword-only arguments and never commit.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from consentry.consent.models import ANY_CHANNEL
from consentry.consent.models import CHANNELS as CONSENT_CHANNELS
from consentry.delivery.models import ascii_address
from consentry.delivery.tables import DestinationRow
from consentry.errors import Conflict, FieldError, Invalid, NotFound, TransferRefused
from consentry.platform import audit, tenancy
from consentry.platform.db import utcnow
from consentry.platform.vault import vault_of
from consentry.privacy import processor_service
from consentry.privacy.processors import DATA_CATEGORIES, Processor, webhook_problem

Kind = Literal["email", "sms", "webhook"]
KINDS: tuple[Kind, ...] = ("email", "sms", "webhook")
KIND_CATEGORY: Mapping[str, str | None] = {
    "email": "user.contact.email",
    "sms": "user.contact.phone_number",
    "webhook": None,
}
KIND_CHANNEL: Mapping[str, str | None] = {"email": "email", "sms": "sms", "webhook": None}
SECRET_FIELD = "delivery.destination_secret"
NAME_MAX = 200
EDITABLE = frozenset(
    ("name", "processor_id", "purpose", "channel", "url", "categories")
    + ("from_address", "from_name", "active")
)


@dataclass(frozen=True, slots=True)
class Destination:
    """A destination as it stands (never its secret)."""

    id: str
    name: str
    kind: Kind
    processor_id: str
    purpose: str
    channel: str
    url: str | None
    active: bool
    categories: tuple[str, ...] = ()
    from_address: str | None = None
    from_name: str | None = None
    failures: int = 0
    paused_until: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def sends(self) -> list[str]:
        """Every data category a message to it carries: the kind's own and the declared."""
        return sent_categories(self.kind, self.categories)

    def document(self) -> dict[str, Any]:
        """The JSON form, as the API and the CLI show it."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "processor_id": self.processor_id,
            "purpose": self.purpose,
            "channel": self.channel,
            "url": self.url,
            "categories": list(self.categories),
            "sends": self.sends,
            "from_address": self.from_address,
            "from_name": self.from_name,
            "active": self.active,
            "failures": self.failures,
            "paused_until": self.paused_until.isoformat() if self.paused_until else None,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


@dataclass(frozen=True, slots=True)
class DestinationSpec:
    """What a destination is registered with."""

    name: str
    kind: str
    processor_id: str
    purpose: str
    channel: str | None = None
    url: str | None = None
    categories: Sequence[str] = field(default_factory=tuple)
    from_address: str | None = None
    from_name: str | None = None


@dataclass(frozen=True, slots=True)
class Registered:
    """A destination just registered (or its secret rotated): the secret is shown this once."""

    destination: Destination
    secret: str | None


def sent_categories(kind: str, declared: Sequence[str]) -> list[str]:
    """The kind's own category first, then the declared ones, each once."""
    own = KIND_CATEGORY.get(kind)
    return list(dict.fromkeys([*([own] if own else []), *declared]))


# --- the gate -----------------------------------------------------------------------------------


def get_destination(*, session: Session, workspace_id: str, destination_id: str) -> Destination:
    """One destination of the workspace; NotFound otherwise."""
    return _destination(_row(session, workspace_id, destination_id))


def check_destination(
    *, session: Session, workspace_id: str, destination_id: str, categories: Sequence[str]
) -> Destination:
    """The destination, when data of ``categories`` (with what its kind always sends) may go
    to its processor for its purpose now. NotFound for an unknown destination; TransferRefused
    (403) naming every reason when it is deactivated or privacy's gate refuses the transfer."""
    destination = get_destination(
        session=session, workspace_id=workspace_id, destination_id=destination_id
    )
    processor, errors = transfer_refusals(
        session=session, workspace_id=workspace_id, destination=destination, categories=categories
    )
    if not destination.active:
        errors = [FieldError("destination_id", "the destination is deactivated"), *errors]
    if errors:
        reasons = "; ".join(f"{e.field}: {e.reason}" for e in errors)
        name = destination.name if processor is None else f"{destination.name} ({processor.id})"
        raise TransferRefused(f"nothing may go to destination {name}: {reasons}", errors)
    return destination


def transfer_refusals(
    *, session: Session, workspace_id: str, destination: Destination, categories: Sequence[str]
) -> tuple[Processor | None, list[FieldError]]:
    """Privacy's gate for a destination already read: its processor (None when unknown) and
    why data of ``categories`` (with what its kind always sends) may not go there now ([] when
    it may). Whether the destination is active is the caller's to ask."""
    return processor_service.transfer_refusals(
        session=session,
        workspace_id=workspace_id,
        processor_id=destination.processor_id,
        purpose=destination.purpose,
        categories=sent_categories(destination.kind, [*destination.categories, *categories]),
    )


# --- the register -------------------------------------------------------------------------------


def register_destination(
    *, session: Session, workspace_id: str, spec: DestinationSpec, actor: str
) -> Registered:
    """Register a destination; Invalid names each bad field (including what privacy's gate
    refuses), Conflict a name already taken. Its secret (sms, webhook) is returned this once."""
    tenancy.get_workspace(session=session, workspace_id=workspace_id)
    wanted = _normalised(spec)
    _refuse_problems(session, workspace_id, wanted)
    _refuse_taken_name(session, workspace_id, wanted.name, destination_id=None)
    now = utcnow()
    row = DestinationRow(
        id=str(uuid.uuid4()),
        workspace_id=workspace_id,
        active=True,
        failures=0,
        paused_until=None,
        created_at=now,
        created_by=actor[:200],
    )
    _write(row, wanted, now)
    secret = None
    if wanted.kind != "email":
        secret = new_secret()
        row.secret = _seal_secret(session, workspace_id, row.id, secret)
    try:
        with session.begin_nested():  # a concurrent registration of the same name
            session.add(row)
    except IntegrityError as exc:
        raise Conflict(
            f"a destination named {wanted.name!r} is already registered",
            [FieldError("name", "taken by another destination")],
        ) from exc
    _audit(session, row, actor, "registered")
    return Registered(_destination(row), secret)


def update_destination(
    *,
    session: Session,
    workspace_id: str,
    destination_id: str,
    changes: Mapping[str, Any],
    actor: str,
) -> Destination:
    """Change some fields (a PATCH). The result passes the same checks as a registration,
    privacy's gate included, unless it is a deactivation. The kind never changes."""
    unknown = [
        FieldError(n, "not a field that can be changed") for n in changes if n not in EDITABLE
    ]
    if unknown:
        raise Invalid("the changes are not valid", unknown)
    row = _row(session, workspace_id, destination_id, lock=True)
    current = _spec_of(row)
    values = {k: v for k, v in changes.items() if k != "active"}
    if "categories" in values and values["categories"] is None:
        values["categories"] = ()
    active = changes.get("active", row.active)
    if not isinstance(active, bool):
        raise Invalid("the changes are not valid", [FieldError("active", "true or false")])
    wanted = _normalised(_replace(current, values))
    if wanted == current and active == row.active:
        return _destination(row)
    if active:  # a deactivation needs no permission: it stops data leaving
        _refuse_problems(session, workspace_id, wanted)
    _refuse_taken_name(session, workspace_id, wanted.name, destination_id=row.id)
    change = "updated"
    if row.active and not active:
        change = "deactivated"
    elif active and not row.active:
        change = "reactivated"
        row.failures, row.paused_until = 0, None
    now = utcnow()
    _write(row, wanted, now)
    row.active = active
    session.flush()
    _audit(session, row, actor, change)
    return _destination(row)


def deactivate_destination(
    *, session: Session, workspace_id: str, destination_id: str, actor: str
) -> Destination:
    """Stop sending there: messages still queued for it are cancelled when their turn comes."""
    return update_destination(
        session=session,
        workspace_id=workspace_id,
        destination_id=destination_id,
        changes={"active": False},
        actor=actor,
    )


def rotate_secret(
    *, session: Session, workspace_id: str, destination_id: str, actor: str
) -> Registered:
    """A new signing secret for an sms or webhook destination, shown this once; the old one
    stops signing at once."""
    row = _row(session, workspace_id, destination_id, lock=True)
    if row.kind == "email":
        raise Invalid(
            "an email destination signs nothing",
            [FieldError("kind", "only sms and webhook destinations have a secret")],
        )
    secret = new_secret()
    row.secret = _seal_secret(session, workspace_id, row.id, secret)
    row.updated_at = utcnow()
    session.flush()
    _audit(session, row, actor, "secret_rotated")
    return Registered(_destination(row), secret)


def list_destinations(
    *, session: Session, workspace_id: str, active: bool | None = None
) -> list[Destination]:
    """The workspace's destinations by name; ``active`` filters."""
    query = select(DestinationRow).where(DestinationRow.workspace_id == workspace_id)
    if active is not None:
        query = query.where(DestinationRow.active.is_(active))
    found = [_destination(r) for r in session.scalars(query)]
    return sorted(found, key=lambda d: (d.name.casefold(), d.id))


def signing_secret(*, session: Session, workspace_id: str, destination_id: str) -> str | None:
    """The secret that signs what is posted to the destination (None: email, or its key is
    gone). For the outbox only: never shown again."""
    row = _row(session, workspace_id, destination_id)
    if row.secret is None:
        return None
    (opened,) = vault_of(session).open_many(workspace_id, [(SECRET_FIELD, row.secret)])
    return str(opened) if opened is not None else None


def new_secret() -> str:
    """A fresh signing secret (256 random bits)."""
    return "whsec_" + secrets.token_urlsafe(32)


def name_key(name: str) -> str:
    """Names are unique whatever their case; a digest, as case-folding may lengthen a name."""
    return hashlib.sha256(name.casefold().encode()).hexdigest()


# --- helpers ------------------------------------------------------------------------------------


def _row(
    session: Session, workspace_id: str, destination_id: str, *, lock: bool = False
) -> DestinationRow:
    query = select(DestinationRow).where(
        DestinationRow.id == destination_id, DestinationRow.workspace_id == workspace_id
    )
    row = session.scalars(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(f"no destination {destination_id[:100]!r} in this workspace")
    return row


def _text(value: Any) -> Any:
    return value.strip() or None if isinstance(value, str) else value


def _normalised(spec: DestinationSpec) -> DestinationSpec:
    kind = spec.kind.strip().lower() if isinstance(spec.kind, str) else spec.kind
    channel = _text(spec.channel)
    if channel is None:
        channel = KIND_CHANNEL.get(kind) or ANY_CHANNEL
    categories = spec.categories
    if isinstance(categories, list | tuple):
        categories = tuple(
            dict.fromkeys(c.strip() if isinstance(c, str) else c for c in categories)
        )
    return DestinationSpec(
        name=_text(spec.name) or "",
        kind=kind,
        processor_id=_text(spec.processor_id) or "",
        purpose=_text(spec.purpose) or "",
        channel=channel,
        url=_text(spec.url),
        categories=categories,
        from_address=_text(spec.from_address),
        from_name=_text(spec.from_name),
    )


def _replace(spec: DestinationSpec, values: Mapping[str, Any]) -> DestinationSpec:
    current: dict[str, Any] = {
        "name": spec.name,
        "kind": spec.kind,
        "processor_id": spec.processor_id,
        "purpose": spec.purpose,
        "channel": spec.channel,
        "url": spec.url,
        "categories": spec.categories,
        "from_address": spec.from_address,
        "from_name": spec.from_name,
    }
    current.update(values)
    return DestinationSpec(**current)


def spec_problems(spec: DestinationSpec) -> list[FieldError]:
    """What is wrong with a destination's fields by themselves (the gate aside)."""
    errors: list[FieldError] = []
    if not isinstance(spec.name, str) or not spec.name or len(spec.name) > NAME_MAX:
        errors.append(FieldError("name", f"1 to {NAME_MAX} characters"))
    elif any(c in spec.name for c in "\r\n\t"):
        errors.append(FieldError("name", "one line"))
    if spec.kind not in KINDS:
        errors.append(FieldError("kind", f"one of {', '.join(KINDS)}"))
        return errors
    if not spec.processor_id:
        errors.append(FieldError("processor_id", "the id of a registered processor"))
    if not spec.purpose or len(spec.purpose) > 100:
        errors.append(FieldError("purpose", "a purpose key of 1 to 100 characters"))
    errors += _channel_problems(spec)
    errors += _url_problems(spec)
    errors += _category_problems(spec)
    errors += _sender_problems(spec)
    return errors


def _channel_problems(spec: DestinationSpec) -> list[FieldError]:
    fixed = KIND_CHANNEL[spec.kind]
    if fixed is not None and spec.channel != fixed:
        return [FieldError("channel", f"an {spec.kind} destination's channel is {fixed}")]
    if spec.channel not in CONSENT_CHANNELS:
        return [FieldError("channel", f"one of {', '.join(CONSENT_CHANNELS)}")]
    return []


def _url_problems(spec: DestinationSpec) -> list[FieldError]:
    if spec.kind == "email":
        if spec.url is not None:
            return [FieldError("url", "an email destination sends through the SMTP server")]
        return []
    if not isinstance(spec.url, str):
        return [FieldError("url", f"required: where the {spec.kind} requests go")]
    reason = webhook_problem(spec.url)
    return [FieldError("url", reason)] if reason else []


def _category_problems(spec: DestinationSpec) -> list[FieldError]:
    if not isinstance(spec.categories, tuple) or not all(
        isinstance(c, str) for c in spec.categories
    ):
        return [FieldError("categories", "a list of data categories")]
    errors = [
        FieldError(f"categories.{i}", f"unknown data category {c[:100]!r}")
        for i, c in enumerate(spec.categories)
        if c not in DATA_CATEGORIES
    ]
    if spec.kind == "webhook" and not spec.categories:
        errors.append(FieldError("categories", "a webhook must declare the categories it sends"))
    return errors


def _sender_problems(spec: DestinationSpec) -> list[FieldError]:
    errors = []
    if spec.kind != "email":
        for name in ("from_address", "from_name"):
            if getattr(spec, name) is not None:
                errors.append(FieldError(name, "only an email destination has a sender"))
        return errors
    if spec.from_address is not None:
        try:
            ascii_address(spec.from_address)
        except ValueError as exc:
            errors.append(FieldError("from_address", str(exc)))
    shown = spec.from_name
    if shown is not None and (len(shown) > NAME_MAX or any(c in shown for c in "\r\n")):
        errors.append(FieldError("from_name", f"one line of at most {NAME_MAX} characters"))
    return errors


def _refuse_problems(session: Session, workspace_id: str, spec: DestinationSpec) -> None:
    errors = spec_problems(spec)
    if not errors:
        errors = _gate_problems(session, workspace_id, spec)
    if errors:
        raise Invalid("the destination is not valid", errors)


def _gate_problems(session: Session, workspace_id: str, spec: DestinationSpec) -> list[FieldError]:
    """Privacy's gate for the destination's processor, purpose and categories, its reasons
    named by the destination's fields."""
    wanted = sent_categories(spec.kind, spec.categories)
    _processor, refusals = processor_service.transfer_refusals(
        session=session,
        workspace_id=workspace_id,
        processor_id=spec.processor_id,
        purpose=spec.purpose,
        categories=wanted,
    )
    errors = []
    for refusal in refusals:
        if refusal.field == "purpose":
            errors.append(refusal)
        elif refusal.field.startswith("categories."):
            category = wanted[int(refusal.field.split(".", 1)[1])]
            if category in spec.categories:
                place = list(spec.categories).index(category)
                errors.append(FieldError(f"categories.{place}", refusal.reason))
            else:  # the kind's own category
                errors.append(
                    FieldError(
                        "processor_id",
                        f"may not receive {category!r}, which every {spec.kind} message "
                        "carries: add it to the processor's categories",
                    )
                )
        else:  # not registered, deactivated, no DPA, no transfer safeguard
            errors.append(FieldError("processor_id", f"{refusal.field}: {refusal.reason}"))
    return errors


def _refuse_taken_name(
    session: Session, workspace_id: str, name: str, *, destination_id: str | None
) -> None:
    taken = session.scalars(
        select(DestinationRow.id).where(
            DestinationRow.workspace_id == workspace_id, DestinationRow.name_key == name_key(name)
        )
    ).first()
    if taken is not None and taken != destination_id:
        raise Conflict(
            f"a destination named {name!r} is already registered: {taken}",
            [FieldError("name", f"taken by destination {taken}")],
        )


def _write(row: DestinationRow, spec: DestinationSpec, now: datetime) -> None:
    row.name, row.name_key, row.kind = spec.name, name_key(spec.name), spec.kind
    row.processor_id, row.purpose = spec.processor_id, spec.purpose
    row.channel = spec.channel or ANY_CHANNEL
    row.url, row.categories = spec.url, list(spec.categories)
    row.from_address, row.from_name = spec.from_address, spec.from_name
    row.updated_at = now


def _spec_of(row: DestinationRow) -> DestinationSpec:
    return DestinationSpec(
        name=row.name,
        kind=row.kind,
        processor_id=row.processor_id,
        purpose=row.purpose,
        channel=row.channel,
        url=row.url,
        categories=tuple(row.categories),
        from_address=row.from_address,
        from_name=row.from_name,
    )


def _destination(row: DestinationRow) -> Destination:
    return Destination(
        id=row.id,
        name=row.name,
        kind=cast(Kind, row.kind),
        processor_id=row.processor_id,
        purpose=row.purpose,
        channel=row.channel,
        url=row.url,
        active=row.active,
        categories=tuple(row.categories),
        from_address=row.from_address,
        from_name=row.from_name,
        failures=row.failures,
        paused_until=row.paused_until,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def secret_subject(destination_id: str) -> str:
    """The key-store subject that seals a destination's secret."""
    return "dst-" + destination_id.replace("-", "")[:32]


def _seal_secret(session: Session, workspace_id: str, destination_id: str, secret: str) -> str:
    return vault_of(session).seal(
        workspace_id, secret_subject(destination_id), SECRET_FIELD, secret
    )


def _audit(session: Session, row: DestinationRow, actor: str, change: str) -> None:
    audit.record(
        session=session,
        workspace_id=row.workspace_id,
        actor=actor,
        action=f"delivery.destination_{change}",
        target_type="destination",
        target_id=row.id,
        reason=f"destination {change}",
        details={
            "kind": row.kind,
            "processor_id": row.processor_id,
            "purpose": row.purpose,
            "active": row.active,
        },
    )
