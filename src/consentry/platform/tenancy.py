"""Workspaces (one per brand or region), write keys, admin tokens, roles and scopes.

A write key authenticates ingestion only. An admin token carries a role; a role grants scopes, and
each admin route asks for the scopes it needs. Keys and tokens are random, shown once, and stored
as SHA-256 digests; a presented secret is hashed and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from consentry.errors import Conflict, Invalid, NotFound, Unauthorized
from consentry.platform.db import Base, JSONType, UTCDateTime, utcnow

WRITE_KEY_PREFIX = "csw_"
TOKEN_PREFIX = "cst_"
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


class Role(StrEnum):
    """Roles of admin tokens."""

    ADMIN = "admin"
    MARKETER = "marketer"
    ANALYST = "analyst"
    SUPPORT = "support"
    PRIVACY_OFFICER = "privacy_officer"


class Scope(StrEnum):
    """What a route may need. Admins hold every scope."""

    PROFILES_READ = "profiles:read"
    PROFILES_WRITE = "profiles:write"
    EVENTS_READ = "events:read"
    IMPORTS_WRITE = "imports:write"
    COMMERCE_READ = "commerce:read"
    CONSENT_READ = "consent:read"
    CONSENT_WRITE = "consent:write"
    PRIVACY_READ = "privacy:read"  # data-subject requests, processors, retention, certificates
    PRIVACY_WRITE = "privacy:write"
    AUDIT_READ = "audit:read"  # the audit trail: read, verify, export
    ANALYTICS_READ = "analytics:read"  # KPIs, cohorts, RFM, CLV, churn lists
    ANALYTICS_WRITE = "analytics:write"  # run analytics, enter marketing spend
    RECOMMENDATIONS_READ = "recommendations:read"  # serve recommendations, list models
    RECOMMENDATIONS_WRITE = "recommendations:write"  # train, activate a version
    QUALITY_READ = "quality:read"  # data-quality audit reports (counts and profile ids)
    QUALITY_WRITE = "quality:write"  # run a data-quality audit
    AUDIENCES_READ = "audiences:read"  # segments, members (profile ids), membership history
    AUDIENCES_WRITE = "audiences:write"  # define segments and computed traits, refresh
    AUDIENCES_EXPORT = "audiences:export"  # export an audience (files, partner uploads)
    JOURNEYS_READ = "journeys:read"  # journeys, their runs, sends, attribution
    JOURNEYS_WRITE = "journeys:write"  # build, start, pause journeys
    DELIVERY_READ = "delivery:read"  # destinations, the outbox, dead letters
    DELIVERY_WRITE = "delivery:write"  # register destinations, retry dead letters, suppress
    WORKSPACE_ADMIN = "workspace:admin"


ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.ADMIN: frozenset(Scope),
    Role.MARKETER: frozenset(
        {
            Scope.PROFILES_READ,
            Scope.EVENTS_READ,
            Scope.COMMERCE_READ,
            Scope.CONSENT_READ,
            Scope.ANALYTICS_READ,
            Scope.ANALYTICS_WRITE,
            Scope.RECOMMENDATIONS_READ,
            Scope.RECOMMENDATIONS_WRITE,
            Scope.QUALITY_READ,
            Scope.QUALITY_WRITE,
            Scope.AUDIENCES_READ,
            Scope.AUDIENCES_WRITE,
            Scope.AUDIENCES_EXPORT,
            Scope.JOURNEYS_READ,
            Scope.JOURNEYS_WRITE,
            Scope.DELIVERY_READ,
            Scope.DELIVERY_WRITE,
        }
    ),
    Role.ANALYST: frozenset(
        {
            Scope.EVENTS_READ,
            Scope.COMMERCE_READ,
            Scope.CONSENT_READ,
            Scope.ANALYTICS_READ,
            Scope.ANALYTICS_WRITE,
            Scope.RECOMMENDATIONS_READ,
            Scope.QUALITY_READ,
            Scope.QUALITY_WRITE,
            Scope.AUDIENCES_READ,
            Scope.JOURNEYS_READ,
        }
    ),
    Role.SUPPORT: frozenset(
        {
            Scope.PROFILES_READ,
            Scope.PROFILES_WRITE,
            Scope.EVENTS_READ,
            Scope.COMMERCE_READ,
            Scope.CONSENT_READ,
            Scope.CONSENT_WRITE,
            Scope.RECOMMENDATIONS_READ,
            Scope.QUALITY_READ,
        }
    ),
    Role.PRIVACY_OFFICER: frozenset(
        {
            Scope.PROFILES_READ,
            Scope.PROFILES_WRITE,
            Scope.EVENTS_READ,
            Scope.COMMERCE_READ,
            Scope.CONSENT_READ,
            Scope.CONSENT_WRITE,
            Scope.PRIVACY_READ,
            Scope.PRIVACY_WRITE,
            Scope.AUDIT_READ,
            Scope.QUALITY_READ,
        }
    ),
}


class WorkspaceRow(Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # write | token
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str | None] = mapped_column(String(32))
    scopes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    display_prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


@dataclass(frozen=True, slots=True)
class Workspace:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a workspace and what the credential may do."""

    workspace_id: str
    key_id: str
    kind: str
    role: Role | None
    scopes: frozenset[Scope]

    def allows(self, scope: Scope) -> bool:
        """Return True when the credential holds ``scope``."""
        return scope in self.scopes

    @property
    def actor(self) -> str:
        """The credential as an actor of the audit trail and the records (``token:<key id>``)."""
        return f"token:{self.key_id}"


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key; ``secret`` is shown once and never stored."""

    id: str
    workspace_id: str
    kind: str
    name: str
    role: Role | None
    secret: str


def key_digest(secret: str) -> str:
    """What is stored of a key or token: its SHA-256 (keys are long and random)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_workspace(*, session: Session, workspace_id: str, name: str | None = None) -> Workspace:
    """Create a workspace with a slug id such as ``acme-eu``."""
    if not _SLUG.match(workspace_id):
        raise Invalid(
            "workspace id must be 2-63 lower-case letters, digits or dashes",
        )
    if session.get(WorkspaceRow, workspace_id) is not None:
        raise Conflict(f"workspace {workspace_id!r} already exists")
    row = WorkspaceRow(id=workspace_id, name=name or workspace_id, created_at=utcnow())
    session.add(row)
    session.flush()
    return Workspace(row.id, row.name, row.created_at)


def get_workspace(*, session: Session, workspace_id: str) -> Workspace:
    """Return a workspace or raise NotFound."""
    row = session.get(WorkspaceRow, workspace_id)
    if row is None:
        raise NotFound(f"no workspace {workspace_id!r}")
    return Workspace(row.id, row.name, row.created_at)


def list_workspaces(*, session: Session) -> list[Workspace]:
    """Return every workspace, oldest first."""
    rows = session.scalars(select(WorkspaceRow).order_by(WorkspaceRow.created_at))
    return [Workspace(r.id, r.name, r.created_at) for r in rows]


def issue_key(
    *, session: Session, workspace_id: str, kind: str, name: str, role: Role | None = None
) -> IssuedKey:
    """Issue a write key (``kind='write'``) or an admin token (``kind='token'`` with a role)."""
    get_workspace(session=session, workspace_id=workspace_id)
    if kind not in ("write", "token"):
        raise Invalid("kind must be 'write' or 'token'")
    if kind == "token" and role is None:
        raise Invalid("an admin token needs a role")
    secret = (WRITE_KEY_PREFIX if kind == "write" else TOKEN_PREFIX) + secrets.token_urlsafe(32)
    scopes = sorted(ROLE_SCOPES[role]) if kind == "token" and role else []
    row = ApiKeyRow(
        id=str(uuid.uuid4()),
        workspace_id=workspace_id,
        kind=kind,
        name=name,
        role=role.value if kind == "token" and role else None,
        scopes=scopes,
        display_prefix=secret[:10],
        secret_hash=key_digest(secret),
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return IssuedKey(row.id, workspace_id, kind, name, role if kind == "token" else None, secret)


def revoke_key(*, session: Session, workspace_id: str, key_id: str) -> None:
    """Revoke a key or token of this workspace."""
    row = session.get(ApiKeyRow, key_id)
    if row is None or row.workspace_id != workspace_id:
        raise NotFound(f"no key {key_id!r} in this workspace")
    row.revoked_at = utcnow()


def authenticate(*, session: Session, secret: str, kind: str) -> Principal:
    """Return the principal of a presented secret, or raise Unauthorized."""
    expected_prefix = WRITE_KEY_PREFIX if kind == "write" else TOKEN_PREFIX
    digest = key_digest(secret)
    row = session.scalars(
        select(ApiKeyRow).where(ApiKeyRow.secret_hash == digest, ApiKeyRow.kind == kind)
    ).first()
    stored = row.secret_hash if row is not None else key_digest("")
    valid = hmac.compare_digest(stored, digest) and secret.startswith(expected_prefix)
    if row is None or not valid or row.revoked_at is not None:
        raise Unauthorized("unknown or revoked credentials")
    role = Role(row.role) if row.role else None
    return Principal(
        workspace_id=row.workspace_id,
        key_id=row.id,
        kind=row.kind,
        role=role,
        # A role's scopes as this version defines them: a token made before a scope existed
        # (say, an admin's before privacy:write) holds it after an upgrade.
        scopes=ROLE_SCOPES[role] if role else frozenset(),
    )
