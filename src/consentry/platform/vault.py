"""The vault: how services seal personal values and look them up, without seeing keys.

A personal value is stored as a *token*: ``pv1:<subject>:<base64url(nonce + ciphertext)>``. The
subject (a profile id, or the blind index of a user or anonymous id) names the data key that
sealed it, so a token can move between rows (a merged profile's current traits) and still opens;
the AES-GCM associated data binds it to its workspace, subject and field, so it opens only as
the field it was sealed for. Shredding the subject's key makes every copy of the token
unreadable: :meth:`Vault.open_many` then gives ``None`` for it.

Equality look-ups go through :meth:`Vault.index`, the keyed blind index of a normalised value.

Services reach the vault of their session with :func:`vault_of`; :class:`Database` puts it there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.orm import Session

from consentry.platform.crypto import CryptoError, Keyring, field_context, open_body, seal_body
from consentry.platform.jsoncodec import json_dumps, json_loads
from consentry.platform.keystore import KeyStore

TOKEN_PREFIX = "pv1:"


def is_token(value: object) -> bool:
    """Whether ``value`` is a sealed personal value."""
    return isinstance(value, str) and value.startswith(TOKEN_PREFIX)


def token_subject(token: str) -> str:
    """The subject whose key sealed ``token``."""
    subject, sep, _ = token[len(TOKEN_PREFIX) :].partition(":")
    if not sep or not subject:
        raise CryptoError("a sealed value names no subject")
    return subject


class Vault:
    """Seals and opens personal values of a data store with the keys of its key store."""

    def __init__(self, keyring: Keyring, keystore: KeyStore) -> None:
        self.keyring = keyring
        self.keystore = keystore

    def close(self) -> None:
        """Close the key store's connections."""
        self.keystore.dispose()

    def index(self, workspace_id: str, kind: str, normalized: str) -> str:
        """The blind index of a normalised value of ``kind`` (64 hex digits)."""
        return self.keyring.blind_index(workspace_id, kind, normalized)

    # --- sealing -------------------------------------------------------------------------------

    def seal_many(self, workspace_id: str, items: Sequence[tuple[str, str, Any]]) -> list[str]:
        """A token for each ``(subject, field, value)``; ``value`` is anything JSON can hold.
        Missing data keys are made (and committed to the key store) first."""
        if not items:
            return []
        keys = self.keystore.data_keys(workspace_id, (s for s, _, _ in items), create=True)
        out = []
        ciphers: dict[str, AESGCM] = {}
        for subject, field, value in items:
            cipher = ciphers.get(subject)
            if cipher is None:
                cipher = ciphers[subject] = AESGCM(keys[subject])
            context = field_context(workspace_id, subject, field)
            body = seal_body(cipher, json_dumps(value).encode(), context)
            out.append(f"{TOKEN_PREFIX}{subject}:{body}")
        return out

    def seal(self, workspace_id: str, subject: str, field: str, value: Any) -> str:
        return self.seal_many(workspace_id, [(subject, field, value)])[0]

    # --- opening -------------------------------------------------------------------------------

    def open_many(self, workspace_id: str, items: Sequence[tuple[str, Any]]) -> list[Any]:
        """The value of each ``(field, stored)``: a token is opened (``None`` when its subject
        was erased); anything else is returned as stored (a value that is not personal)."""
        subjects = {token_subject(v) for _, v in items if is_token(v)}
        keys = self.keystore.data_keys(workspace_id, subjects) if subjects else {}
        ciphers = {s: AESGCM(k) for s, k in keys.items()}
        out: list[Any] = []
        for field, stored in items:
            if not is_token(stored):
                out.append(stored)
                continue
            subject = token_subject(stored)
            cipher = ciphers.get(subject)
            if cipher is None:  # shredded: the value is gone for good
                out.append(None)
                continue
            body = stored[len(TOKEN_PREFIX) + len(subject) + 1 :]
            context = field_context(workspace_id, subject, field)
            out.append(json_loads(open_body(cipher, body, context)))
        return out


def vault_of(session: Session) -> Vault:
    """The vault of the store this session belongs to."""
    vault = session.info.get("vault")
    if not isinstance(vault, Vault):
        raise CryptoError("this session has no vault: open the store with a key store")
    return vault
