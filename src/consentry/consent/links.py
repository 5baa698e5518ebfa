"""Signed, expiring links for customers who do not log in: the preference center, the double
opt-in confirmation and one-click unsubscribe.

A link token is ``base64url(payload) "." base64url(HMAC-SHA256(key, payload))``. The payload is
compact JSON naming the workspace, the subject (a profile id), what the link is for, when it
expires and any extra fields of that kind (a purpose, a record id). The key is derived from the
server's secret and the workspace, so a token of one workspace never opens another, and all of a
workspace's links can be revoked by rotating the secret. Pure functions: no SQL, no HTTP.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# What a link is for; a token made for one kind never opens another.
PREFERENCES = "preferences"
CONFIRM = "confirm"  # double opt-in
UNSUBSCRIBE = "unsubscribe"
KINDS = (PREFERENCES, CONFIRM, UNSUBSCRIBE)

DEFAULT_TTL = {
    PREFERENCES: timedelta(days=30),
    CONFIRM: timedelta(days=2),
    UNSUBSCRIBE: timedelta(days=365),  # RFC 8058 links must keep working for a long while
}
MAX_TOKEN_CHARS = 2048


class LinkError(Exception):
    """A token that does not open anything: ``reason`` is malformed, forged, expired or kind."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Link:
    """What a verified token says."""

    workspace_id: str
    profile_id: str
    kind: str
    expires_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)


def link_key(secret: str, workspace_id: str) -> bytes:
    """The signing key of one workspace's links, derived from the server's secret."""
    return hmac.new(
        secret.encode(), b"consentry-links\x00" + workspace_id.encode(), hashlib.sha256
    ).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(
    key: bytes,
    *,
    workspace_id: str,
    profile_id: str,
    kind: str,
    now: datetime,
    ttl: timedelta | None = None,
    **extra: Any,
) -> str:
    """A token for ``kind`` that expires ``ttl`` (the kind's default) after ``now``."""
    if kind not in KINDS:
        raise ValueError(f"unknown link kind {kind!r}")
    expires = now + (ttl if ttl is not None else DEFAULT_TTL[kind])
    payload = {"w": workspace_id, "s": profile_id, "k": kind, "e": int(expires.timestamp())}
    if extra:
        payload["x"] = extra
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    mac = hmac.new(key, body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(mac)}"


def workspace_of(token: str) -> str:
    """The workspace a token claims, read before its signature can be checked (the key depends
    on it). Never trust it further than choosing the key: :func:`verify` checks it."""
    payload = _payload(token)[0]
    workspace = payload.get("w")
    if not isinstance(workspace, str) or not workspace:
        raise LinkError("malformed", "the link is not valid")
    return workspace


def _payload(token: str) -> tuple[dict[str, Any], bytes, bytes]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise LinkError("malformed", "the link is not valid")
    body_text, mac_text = token.split(".")
    try:
        body, mac = _unb64(body_text), _unb64(mac_text)
        if _b64(body) != body_text or _b64(mac) != mac_text:  # one spelling per token
            raise ValueError("not canonical base64")
        payload = json.loads(body)
    except (binascii.Error, ValueError) as exc:
        raise LinkError("malformed", "the link is not valid") from exc
    if not isinstance(payload, dict):
        raise LinkError("malformed", "the link is not valid")
    return payload, body, mac


def verify(key: bytes, token: str, *, kind: str, now: datetime) -> Link:
    """What ``token`` says, if it was signed with ``key`` for ``kind`` and has not expired."""
    payload, body, mac = _payload(token)
    expected = hmac.new(key, body, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise LinkError("forged", "the link is not valid")
    if payload.get("k") != kind:
        raise LinkError("kind", "the link is not meant for this page")
    try:
        expires_at = datetime.fromtimestamp(int(payload["e"]), UTC)
        link = Link(
            workspace_id=str(payload["w"]),
            profile_id=str(payload["s"]),
            kind=kind,
            expires_at=expires_at,
            extra=dict(payload.get("x") or {}),
        )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise LinkError("malformed", "the link is not valid") from exc
    if now >= expires_at:
        raise LinkError("expired", "the link has expired")
    return link
