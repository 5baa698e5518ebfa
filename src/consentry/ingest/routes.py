"""The Segment/RudderStack-compatible HTTP tracking API: ``/v1/batch`` and the single calls."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from consentry.config import Settings
from consentry.deps import DbDep, SettingsDep, WriteKeys, basic_username
from consentry.errors import FieldError, Invalid, LimitExceeded
from consentry.ingest.models import Batch, Envelope, Message, parse_batch, parse_message
from consentry.ingest.writer import IngestWriter
from consentry.platform.db import Database, utcnow
from consentry.platform.tenancy import Principal

router = APIRouter(prefix="/v1", tags=["ingest"])

_ACK = {"description": "Every message is durably stored (duplicates of a messageId once)."}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _ACK,
    400: {"description": "Malformed or over a limit: `{code, message, errors:[...]}`."},
    401: {"description": "Missing or unknown write key."},
}


# JSON can carry U+0000 only as this escape, so a body without it needs no NUL scan.
_NUL_ESCAPE = b"\\u0000"


def _body_schema(model: type[Message] | type[Batch]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


async def _read_body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise LimitExceeded(
                f"request body is over the limit of {limit} bytes",
                [FieldError("(body)", f"over {limit} bytes")],
            )
        chunks.append(chunk)
    raw = b"".join(chunks)
    if request.headers.get("content-encoding", "").lower() in ("gzip", "x-gzip"):
        raw = _gunzip(raw, limit)
    return raw


def _gunzip(raw: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=47)  # gzip or zlib, detected from the header
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise Invalid("body is not valid gzip", [FieldError("(body)", str(exc))]) from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise LimitExceeded(
            f"decompressed body is over the limit of {limit} bytes",
            [FieldError("(body)", f"over {limit} bytes once decompressed")],
        )
    return out


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Invalid("body is not valid JSON", [FieldError("(body)", str(exc))]) from exc


def _write_key(request: Request, body: Any) -> str | None:
    from_header = basic_username(request.headers.get("authorization"))
    if from_header:
        return from_header
    key = body.get("writeKey") if isinstance(body, dict) else None
    return key if isinstance(key, str) else None


async def _principal(request: Request, db: Database, secret: str | None) -> Principal:
    """The workspace of the write key: from the app's recent keys (deps.WriteKeys), else
    looked up in the store on a worker thread."""
    keys: WriteKeys = request.app.state.write_keys
    recent = keys.recent(secret)
    if recent is not None:
        return recent
    return await run_in_threadpool(keys.authenticate, db, secret)


def _carry_gpc(request: Request, envelopes: list[Envelope]) -> None:
    """``Sec-GPC: 1`` is the browser's Global Privacy Control: carry it on each message as
    ``context.gpc``, where Segment's libraries put such signals, so processing records the
    opt-out of sale/sharing for each message's subject (consent.signal_service)."""
    if request.headers.get("sec-gpc", "").strip() != "1":
        return
    for env in envelopes:
        context = env.payload.get("context")
        env.payload["context"] = {**(context if isinstance(context, dict) else {}), "gpc": True}


async def _store(request: Request, workspace_id: str, envelopes: list[Envelope]) -> dict[str, Any]:
    _carry_gpc(request, envelopes)
    writer: IngestWriter = request.app.state.ingest_writer
    result = await writer.write(workspace_id, envelopes)
    return {"success": True, "accepted": result.accepted, "duplicates": result.duplicates}


@router.post("/batch", responses=_RESPONSES, openapi_extra=_body_schema(Batch))
async def batch(request: Request, db: DbDep, settings: SettingsDep) -> dict[str, Any]:
    """Accept a batch of Segment messages; all are stored or none is."""
    limits = settings.ingest
    raw = await _read_body(request, limits.max_batch_bytes)
    body = _json(raw)
    principal = await _principal(request, db, _write_key(request, body))
    envelopes, errors = parse_batch(
        body,
        received_at=utcnow(),
        max_messages=limits.max_batch_messages,
        max_message_bytes=limits.max_message_bytes,
        body_bytes=len(raw),
        may_hold_nul=_NUL_ESCAPE in raw,
    )
    if errors:
        kind = LimitExceeded if any(e.over_limit for e in errors) else Invalid
        raise kind(f"{len(errors)} problem(s) in the batch; nothing was stored", errors)
    return await _store(request, principal.workspace_id, envelopes)


async def _single(request: Request, db: Database, settings: Settings, kind: str) -> dict[str, Any]:
    limits = settings.ingest
    raw = await _read_body(request, limits.max_message_bytes)
    body = _json(raw)
    principal = await _principal(request, db, _write_key(request, body))
    if isinstance(body, dict):
        if body.setdefault("type", kind) != kind:
            raise Invalid(
                "type does not match the endpoint",
                [FieldError("type", f"must be {kind!r} on /v1/{kind}", 0)],
            )
        body.pop("writeKey", None)
    parsed = parse_message(
        body,
        index=0,
        received_at=utcnow(),
        max_bytes=limits.max_message_bytes,
        may_hold_nul=_NUL_ESCAPE in raw,
    )
    if isinstance(parsed, list):
        error = LimitExceeded if any(e.over_limit for e in parsed) else Invalid
        raise error("the message is malformed; nothing was stored", parsed)
    return await _store(request, principal.workspace_id, [parsed])


def _register(kind: str) -> None:
    async def endpoint(request: Request, db: DbDep, settings: SettingsDep) -> dict[str, Any]:
        return await _single(request, db, settings, kind)

    endpoint.__name__ = kind
    endpoint.__doc__ = f"Accept one Segment {kind} call."
    router.post(f"/{kind}", responses=_RESPONSES, openapi_extra=_body_schema(Message))(endpoint)


for _kind in ("identify", "track", "page", "screen", "group", "alias"):
    _register(_kind)
