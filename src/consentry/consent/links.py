"""Signed, expiring links for customers who do not log in: the preference center, the double
opt-in confirmation, one-click unsubscribe, and the verification of a data-subject request
(``privacy.requests``).

A link token is ``base64url(payload) "." base64url(HMAC-SHA256(key, payload))``. The payload is
compact JSON naming the workspace, the subject (a profile id; for a data-subject request, the
request id), what the link is for, when it expires and any extra fields of that kind (a purpose,
a record id, a code reference). The key is derived from the server's secret and the workspace, so
a token of one workspace never opens another, and all of a workspace's links can be revoked by
rotating the secret. A kind may have a key of its own (another derivation label): the
verification links of data-subject requests do, so they stay apart from the consent pages' links.
Pure functions: no SQL, no HTTP.
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
DSR_VERIFY = "dsr-verify"  # a data-subject request's mailed link (privacy.requests)
KINDS = (PREFERENCES, CONFIRM, UNSUBSCRIBE, DSR_VERIFY)

DEFAULT_TTL = {
    PREFERENCES: timedelta(days=30),
    CONFIRM: timedelta(days=2),
    UNSUBSCRIBE: timedelta(days=365),  # RFC 8058 links must keep working for a long while
}  # a DSR_VERIFY link lives as long as the code mailed with it: its expiry is always given
_KEY_LABEL = b"consentry-links"
_OWN_KEY_LABELS = {DSR_VERIFY: b"consentry-dsr-link"}  # kinds signed with a key of their own
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
    profile_id: str  # the subject: a profile id (for DSR_VERIFY, the request id)
    kind: str
    expires_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)


def link_key(secret: str, workspace_id: str, kind: str | None = None) -> bytes:
    """The signing key of one workspace's links, derived from the server's secret: one key for
    the consent pages' kinds, and a key of its own for a kind that has one (``DSR_VERIFY``)."""
    label = _OWN_KEY_LABELS.get(kind or "", _KEY_LABEL)
    return hmac.new(
        secret.encode(), label + b"\x00" + workspace_id.encode(), hashlib.sha256
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
    lifetime = ttl if ttl is not None else DEFAULT_TTL.get(kind)
    if lifetime is None:
        raise ValueError(f"a {kind!r} link has no default lifetime: give its ttl")
    return sign_until(
        key,
        workspace_id=workspace_id,
        profile_id=profile_id,
        kind=kind,
        expires_at=now + lifetime,
        **extra,
    )


def sign_until(
    key: bytes,
    *,
    workspace_id: str,
    profile_id: str,
    kind: str,
    expires_at: datetime,
    **extra: Any,
) -> str:
    """A token for ``kind`` that expires at ``expires_at`` (to the second)."""
    if kind not in KINDS:
        raise ValueError(f"unknown link kind {kind!r}")
    payload = {"w": workspace_id, "s": profile_id, "k": kind, "e": int(expires_at.timestamp())}
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


def read(secret: str, token: str, *, kind: str, now: datetime) -> Link:
    """What ``token`` says, if it was signed here for ``kind`` and has not expired: the
    workspace it claims picks the key (:func:`link_key`), the signature decides."""
    return verify(link_key(secret, workspace_of(token), kind), token, kind=kind, now=now)


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
