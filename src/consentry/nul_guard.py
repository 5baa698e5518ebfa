"""An ASGI guard that refuses U+0000 anywhere in a request to the admin and customer routes.

PostgreSQL cannot store the NUL character in text or JSON; rather than let one store accept what
the other fails on with a 500, a request carrying it (in the path, the query or the body) is
answered 400 naming where it was. The ingestion routes check their bodies themselves, naming the
message and field, so their bodies pass through here untouched; the customer pages (preference
center, confirmation, unsubscribe) take only a signed token and choices from a closed set, and
answer bad input with their own translated pages, so they are left alone.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

from consentry.ingest.models import nul_path

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

INGEST_PATHS = frozenset(
    f"/v1/{kind}" for kind in ("batch", "identify", "track", "page", "screen", "group", "alias")
)
CUSTOMER_PAGES = ("/p/", "/u/", "/c/")
REASON = "must not contain the NUL character (U+0000)"


def _body_nul(body: bytes, content_type: str) -> str | None:
    """Where a NUL is in a body, or None."""
    if b"\x00" in body:
        return "(body)"
    if "application/x-www-form-urlencoded" in content_type:
        if b"%00" not in body:
            return None
        pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True)
        return next((k.replace("\x00", "") or "(body)" for k, v in pairs if "\x00" in k + v), None)
    if b"\\u0000" not in body:
        return None
    try:
        decoded = json.loads(body)
    except ValueError:
        return None  # not JSON: the route reports what is wrong with it
    where = nul_path(decoded)
    return where.replace("\x00", "\\u0000") if where is not None else None


class NulGuard:
    """Wraps an ASGI app; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CUSTOMER_PAGES):
            await self.app(scope, receive, send)
            return
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        if b"\x00" in unquote_to_bytes(raw_path):
            await _refuse(send, "(path)")
            return
        if b"%00" in query or b"\x00" in query:
            await _refuse(send, "(query)")
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS") or scope["path"] in INGEST_PATHS:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        if (where := _body_nul(body, content_type)) is not None:
            await _refuse(send, where)
            return
        replay = _replay([{"type": "http.request", "body": body}], receive)
        await self.app(scope, replay, send)


def _replay(messages: list[Message], original: Receive) -> Receive:
    """A receive callable that hands back the buffered body, then waits on the original."""
    queue = list(messages)

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        return await original()

    return receive


async def _refuse(send: Send, field: str) -> None:
    body = json.dumps(
        {
            "code": "invalid",
            "message": "the request contains a NUL character; nothing was stored",
            "errors": [{"index": None, "field": field, "reason": REASON}],
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
