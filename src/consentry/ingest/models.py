"""The Segment spec as pydantic models, and the pure rules of ingestion.

Parsing turns a request body into :class:`Envelope` objects or a list of field errors naming the
message index and field, so the API can answer 400 without storing anything.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from consentry.consent.signals import category_preferences
from consentry.errors import FieldError
from consentry.platform.jsoncodec import json_bytes

_PROBLEM_SEPARATOR = "; "  # our own rules report "field: reason" items joined by this
MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")


def _stringify_id(value: Any) -> Any:
    """SDKs send numeric ids; the spec treats them as strings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else str(value)
    return value


Id = Annotated[str, BeforeValidator(_stringify_id), Field(max_length=512)]
JsonObject = dict[str, Any]
# Event times outside these years are client bugs; refusing them also keeps the clock-skew
# correction and every store's timestamp type far from the ends of ``datetime``.
FIRST_YEAR, LAST_YEAR = 1900, 2200


def _plausible_time(value: datetime) -> datetime:
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(f"must be between the years {FIRST_YEAR} and {LAST_YEAR}")
    return value


EventTime = Annotated[datetime, AfterValidator(_plausible_time)]


class Message(BaseModel):
    """One call of the Segment spec. Unknown top-level fields are kept as they came."""

    model_config = ConfigDict(extra="allow")

    type: Literal["identify", "track", "page", "screen", "group", "alias"]
    messageId: Id | None = None
    userId: Id | None = None
    anonymousId: Id | None = None
    previousId: Id | None = None
    groupId: Id | None = None
    event: str | None = Field(None, max_length=512)
    name: str | None = Field(None, max_length=512)
    category: str | None = Field(None, max_length=512)
    timestamp: EventTime | None = None
    originalTimestamp: EventTime | None = None
    sentAt: EventTime | None = None
    context: JsonObject | None = None
    integrations: JsonObject | None = None
    properties: JsonObject | None = None
    traits: JsonObject | None = None

    @model_validator(mode="after")
    def _required_by_type(self) -> Message:
        problems = []
        if self.type == "alias":
            problems += [
                f"{f}: required for alias" for f in ("previousId", "userId") if not getattr(self, f)
            ]
        elif not (self.userId or self.anonymousId):
            problems.append("userId: userId or anonymousId is required")
        if self.type == "track" and not self.event:
            problems.append("event: required for track")
        if self.type == "group" and not self.groupId:
            problems.append("groupId: required for group")
        if problems:
            raise ValueError(_PROBLEM_SEPARATOR.join(problems))
        return self


class Batch(BaseModel):
    """The body of ``POST /v1/batch``."""

    model_config = ConfigDict(extra="allow")

    batch: list[JsonObject] = Field(..., description="Messages, each a Segment call.")
    context: JsonObject | None = None
    integrations: JsonObject | None = None
    sentAt: EventTime | None = None
    writeKey: str | None = None


@dataclass(slots=True)
class Envelope:
    """A validated message with server-side fields filled in."""

    index: int
    message_id: str
    type: str
    user_id: str | None
    anonymous_id: str | None
    event: str | None
    original_timestamp: datetime | None
    sent_at: datetime | None
    received_at: datetime
    timestamp: datetime
    payload: dict[str, Any]
    profile_id: str | None = field(default=None)

    @property
    def name(self) -> str | None:
        """The event name, or the page/screen name."""
        return self.event or self.payload.get("name")


_MESSAGE = TypeAdapter(Message)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def corrected_timestamp(
    original: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """Correct client clock skew: ``receivedAt - (sentAt - originalTimestamp)``."""
    if original is None:
        return received_at
    if sent_at is None:
        return original
    return received_at - (sent_at - original)


def deep_merge(base: dict[str, Any] | None, override: dict[str, Any] | None) -> dict[str, Any]:
    """Merge ``override`` into ``base``; nested objects merge, the override wins."""
    if not base:  # nothing to merge into: a copy of the override, as the loop below gives
        return dict(override or {})
    out: dict[str, Any] = dict(base)
    for key, value in (override or {}).items():
        current = out.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            out[key] = deep_merge(current, value)
        else:
            out[key] = value
    return out


def _field_errors(index: int | None, exc: ValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        reason = str(err["msg"]).removeprefix("Value error, ")
        if loc or ": " not in reason:
            errors.append(FieldError(field=loc or "(message)", reason=reason, index=index))
            continue
        for problem in reason.split(_PROBLEM_SEPARATOR):  # our rules name the field first
            field_name, _, why = problem.partition(": ")
            errors.append(FieldError(field=field_name, reason=why, index=index))
    return errors


def nul_path(value: Any, path: str = "") -> str | None:
    """The path of the first key or string holding a NUL character, if any.

    PostgreSQL cannot store U+0000 in text or JSON, so such a message is refused on every store
    rather than accepted by one and lost by the other.
    """
    if isinstance(value, str):
        return (path or "(message)") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return child
            if (found := nul_path(item, child)) is not None:
                return found
    elif isinstance(value, list):
        for position, item in enumerate(value):
            if found := nul_path(item, f"{path}.{position}" if path else str(position)):
                return found
    return None


def parse_message(
    raw: Any,
    *,
    index: int,
    received_at: datetime,
    batch_context: dict[str, Any] | None = None,
    batch_integrations: dict[str, Any] | None = None,
    batch_sent_at: datetime | None = None,
    max_bytes: int | None = None,
    may_hold_nul: bool = True,
) -> Envelope | list[FieldError]:
    """Validate one message and fill server-side fields, or return what is wrong with it.

    ``may_hold_nul=False`` skips the NUL scan when the caller knows the body has none.
    """
    shared = _Shared.of(received_at, batch_context, batch_integrations, _aware(batch_sent_at))
    return _parse(raw, index, shared, max_bytes, may_hold_nul)


@dataclass(frozen=True, slots=True)
class _Shared:
    """What every message of one batch shares, worked out once per batch."""

    received_at: datetime
    received_iso: str
    context: dict[str, Any] | None
    integrations: dict[str, Any] | None
    sent_at: datetime | None  # the batch's sentAt, aware
    sent_iso: str | None

    @classmethod
    def of(
        cls,
        received_at: datetime,
        context: dict[str, Any] | None,
        integrations: dict[str, Any] | None,
        sent_at: datetime | None,
    ) -> _Shared:
        sent_iso = _iso(sent_at) if sent_at is not None else None
        return cls(received_at, _iso(received_at), context, integrations, sent_at, sent_iso)


def _parse(
    raw: Any, index: int, shared: _Shared, max_bytes: int | None, may_hold_nul: bool
) -> Envelope | list[FieldError]:
    if not isinstance(raw, dict):
        return [FieldError(field="(message)", reason="must be a JSON object", index=index)]
    if may_hold_nul and (where := nul_path(raw)) is not None:
        reason = "must not contain the NUL character (U+0000)"
        return [FieldError(field=where.replace("\x00", "\\u0000"), reason=reason, index=index)]
    if max_bytes is not None:
        size = len(json_bytes(raw))
        if size > max_bytes:
            reason = f"message is {size} bytes, over the limit of {max_bytes}"
            return [FieldError(field="(message)", reason=reason, index=index, over_limit=True)]
    try:
        msg = _MESSAGE.validate_python(raw)
    except ValidationError as exc:
        return _field_errors(index, exc)
    return _envelope(msg, raw, index, shared)


def _envelope(msg: Message, raw: dict[str, Any], index: int, shared: _Shared) -> Envelope:
    received_at = shared.received_at
    original = _aware(msg.originalTimestamp or msg.timestamp)
    # a datetime is never false: the message's own sentAt, else the batch's
    sent_at = _aware(msg.sentAt) if msg.sentAt is not None else shared.sent_at
    timestamp = corrected_timestamp(original, sent_at, received_at)
    message_id = msg.messageId or str(uuid.uuid4())
    payload = {k: v for k, v in raw.items() if k != "writeKey"}  # never store a secret
    payload.update(
        messageId=message_id,
        context=deep_merge(shared.context, msg.context),
        integrations=deep_merge(shared.integrations, msg.integrations),
        receivedAt=shared.received_iso,
        timestamp=_iso(timestamp),
    )
    for key, value in (("userId", msg.userId), ("anonymousId", msg.anonymousId)):
        if value is not None:
            payload[key] = value
    if original is not None:
        payload["originalTimestamp"] = _iso(original)
    if sent_at is not None:
        payload["sentAt"] = shared.sent_iso if sent_at is shared.sent_at else _iso(sent_at)
    return Envelope(
        index=index,
        message_id=message_id,
        type=msg.type,
        user_id=msg.userId,
        anonymous_id=msg.anonymousId,
        event=msg.event,
        original_timestamp=original,
        sent_at=sent_at,
        received_at=received_at,
        timestamp=timestamp,
        payload=payload,
    )


def _iso(value: datetime) -> str:
    if value.tzinfo is not UTC:  # most are UTC already (see _aware): no conversion
        value = value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def parse_batch(
    body: Any,
    *,
    received_at: datetime,
    max_messages: int,
    max_message_bytes: int,
    body_bytes: int | None = None,
    may_hold_nul: bool = True,
) -> tuple[list[Envelope], list[FieldError]]:
    """Validate a ``/v1/batch`` body; any error means the whole batch is refused.

    ``body_bytes`` is the size of the body; when it is within the message limit no message can
    be over it, and the per-message size check is skipped. ``may_hold_nul`` as in
    :func:`parse_message`.
    """
    if not isinstance(body, dict):
        return [], [FieldError(field="(body)", reason="must be a JSON object")]
    try:
        batch = Batch.model_validate(body)
    except ValidationError as exc:
        return [], _field_errors(None, exc)
    if len(batch.batch) > max_messages:
        reason = f"{len(batch.batch)} messages, over the limit of {max_messages}"
        return [], [FieldError(field="batch", reason=reason, over_limit=True)]
    if not batch.batch:
        return [], [FieldError(field="batch", reason="must hold at least one message")]
    if may_hold_nul:
        shared = {"context": batch.context, "integrations": batch.integrations}
        if (where := nul_path(shared)) is not None:
            reason = "must not contain the NUL character (U+0000)"
            return [], [FieldError(field=where.replace("\x00", "\\u0000"), reason=reason)]
    small = body_bytes is not None and body_bytes <= max_message_bytes
    return _parse_all(batch, received_at, None if small else max_message_bytes, may_hold_nul)


def _parse_all(
    batch: Batch, received_at: datetime, max_message_bytes: int | None, may_hold_nul: bool
) -> tuple[list[Envelope], list[FieldError]]:
    envelopes: list[Envelope] = []
    errors: list[FieldError] = []
    shared = _Shared.of(received_at, batch.context, batch.integrations, _aware(batch.sentAt))
    for index, raw in enumerate(batch.batch):
        parsed = _parse(raw, index, shared, max_message_bytes, may_hold_nul)
        if isinstance(parsed, list):
            errors.extend(parsed)
        else:
            envelopes.append(parsed)
    return envelopes, errors


def returns_explicitly(env: Envelope, erased_at: datetime) -> bool:
    """Whether a message of an erased person is a new, explicit action that brings them back:
    an ``identify`` (a sign-up or log-in) that grants consent in ``context.consent`` and was made
    after the erasure (its event time, and its ``sentAt`` when it has one, are later). A late or
    replayed message, made before the erasure, never is."""
    if env.type != "identify" or env.timestamp <= erased_at or env.received_at <= erased_at:
        return False
    if env.sent_at is not None and env.sent_at <= erased_at:
        return False
    prefs = category_preferences(env.payload)
    return prefs is not None and any(value is True for value in prefs.values())
