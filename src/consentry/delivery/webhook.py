"""Signed JSON webhooks: how consentry signs what it posts, and the one way it posts.

Every webhook consentry calls (processors' erasure notifications, webhook and SMS
destinations of the outbox) carries ``Consentry-Signature: t=<unix time>,v1=<hex HMAC-SHA256
of "t.body">`` under the receiver's secret, and is posted to the registered URL only: a
redirect is never followed (it answers with its 3xx status, as a failed attempt).

:func:`sign`, :func:`verify_signature`, :func:`encode` and :func:`classify` are pure;
:func:`post` and :func:`send` do the HTTP with the standard library.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

SIGNATURE_HEADER = "Consentry-Signature"
TIMEOUT = 10.0  # seconds per attempt
MAX_ANSWER = 4096  # bytes of an answer read (for the provider's message id)

# (url, body, headers, timeout) -> HTTP status; raises OSError when nothing answered
Sender = Callable[[str, bytes, Mapping[str, str], float], int]


@dataclass(frozen=True, slots=True)
class Answer:
    """What a receiver answered: its status and, when its JSON body named one, the id it gave
    the message (``id``, ``message_id``, ``messageId`` or ``sid``)."""

    status: int
    message_id: str | None = None


# (url, body, headers, timeout) -> Answer; raises OSError when nothing answered
Poster = Callable[[str, bytes, Mapping[str, str], float], Answer]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Consentry-Signature`` header: ``t=<unix time>,v1=<HMAC-SHA256 of "t.body">``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, *, now: int, tolerance: int = 300
) -> bool:
    """What a receiver does (and our tests): the signature matches and is recent."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def encode(body: Any) -> bytes:
    """The bytes sent (and signed): compact, sorted JSON."""
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


Outcome = Literal["delivered", "retry", "permanent"]


def classify(status: int) -> Outcome:
    """What an answer means for the message: a 2xx delivered it; 408 (timeout), 429 (too many
    requests), 3xx (a redirect not followed) and 5xx are worth another attempt; any other 4xx
    will be refused again (the request itself is wrong): permanent."""
    if 200 <= status < 300:
        return "delivered"
    if 400 <= status < 500 and status not in (408, 429):
        return "permanent"
    return "retry"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook is posted to the registered URL only: a redirect is a failed attempt."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def send(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
    """POST ``body`` to ``url``: the status (error statuses too) and the message id a JSON
    answer names. OSError (refused, unreachable, timed out) when nothing answered; ValueError
    for a URL urllib cannot use."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return Answer(int(response.status), _message_id(response.read(MAX_ANSWER)))
    except urllib.error.HTTPError as exc:
        return Answer(int(exc.code))


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    """POST ``body`` to ``url``; the HTTP status (error statuses too)."""
    return send(url, body, headers, timeout).status


def _message_id(raw: bytes) -> str | None:
    try:
        found = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(found, dict):
        return None
    for key in ("id", "message_id", "messageId", "sid"):
        value = found.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()[:300]
    return None
