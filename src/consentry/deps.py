"""FastAPI dependencies shared by the routes: the store, the settings, the caller.

Routes declare what they need with the aliases at the bottom, e.g.
``def route(principal: ProfilesRead, db: DbDep)``.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from consentry.config import Settings
from consentry.errors import FieldError, Forbidden, Invalid, NotFound, Unauthorized
from consentry.platform import audit, tenancy
from consentry.platform.db import Database
from consentry.platform.tenancy import Principal, Scope

_bearer = HTTPBearer(auto_error=False, description="An admin token: Bearer cst_...")
TOKEN_COOKIE = "consentry_token"


def get_db(request: Request) -> Database:
    """The store the app was created with."""
    db: Database = request.app.state.db
    return db


def get_settings_dep(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def basic_username(header: str | None) -> str | None:
    """The user name of an HTTP Basic ``Authorization`` header; Segment sends the write key."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0] or None


def authenticate_write_key(db: Database, secret: str | None) -> Principal:
    """The workspace of a write key, or Unauthorized."""
    if not secret:
        raise Unauthorized("a write key is required: HTTP Basic user name or writeKey in the body")
    with db.read() as session:
        return tenancy.authenticate(session=session, secret=secret, kind="write")


class WriteKeys:
    """Write keys that authenticated in the last ``seconds``, by the hash of the key (never
    the key): ingestion asks the store once a second per key instead of once per request (6%
    of the server's time under load). The price: a revoked write key is refused at most
    ``seconds`` later. Unknown keys are never remembered; at most ``size`` keys are."""

    def __init__(self, seconds: float = 1.0, size: int = 4096) -> None:
        self._seconds = seconds
        self._size = size
        self._known: dict[str, tuple[float, Principal]] = {}

    def recent(self, secret: str | None) -> Principal | None:
        """The principal of a key that authenticated less than ``seconds`` ago, else None."""
        if not secret:
            return None
        found = self._known.get(tenancy.key_digest(secret))
        if found is None or time.monotonic() - found[0] > self._seconds:
            return None
        return found[1]

    def authenticate(self, db: Database, secret: str | None) -> Principal:
        """:func:`authenticate_write_key`, remembered for ``seconds``."""
        principal = authenticate_write_key(db, secret)
        if len(self._known) >= self._size:
            self._known.clear()
        self._known[tenancy.key_digest(secret or "")] = (time.monotonic(), principal)
        return principal


def get_principal(
    security_scopes: SecurityScopes,
    request: Request,
    db: DbDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller of an admin route, holding every scope the route asks for."""
    secret = credentials.credentials if credentials else request.cookies.get(TOKEN_COOKIE)
    if not secret:
        raise Unauthorized("an admin token is required: Authorization: Bearer cst_...")
    with db.read() as session:
        principal = tenancy.authenticate(session=session, secret=secret, kind="token")
    missing = [s for s in security_scopes.scopes if not principal.allows(Scope(s))]
    if missing:
        raise Forbidden(f"this token's role lacks the scope {', '.join(missing)}")
    return principal


REASON_HEADER = "X-Consentry-Reason"


class ReadNote:
    """What a read returned: the pseudonymous ids of the subjects whose data it showed."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def found(self, ids: Iterable[str]) -> None:
        """Note the ids the response carries (each once, in order)."""
        self.ids.extend(i for i in ids if i not in self.ids)


class ReadRecorder:
    """Records in the audit trail each read of personal data by the caller of an admin route.

    The route reads inside ``with recorder.reading(principal, "profile.read", lookup="email")``
    and names what it returned with ``note.found(ids)``; on leaving, one short write (one commit)
    appends an entry per id, or one entry with no target when nothing was found (a NotFound
    is recorded, then raised). Never pass the email, phone or name that was looked up: say which
    kind of lookup it was. The reason is the ``X-Consentry-Reason`` header, else "unspecified".
    """

    def __init__(self, db: Database, reason: str) -> None:
        self.db = db
        self.reason = reason

    @contextmanager
    def reading(
        self,
        principal: Principal,
        action: str,
        *,
        target_type: str = "profile",
        **details: audit.DetailValue,
    ) -> Iterator[ReadNote]:
        """Record the read done inside the block, once it has ended (or found nothing)."""
        note = ReadNote()
        try:
            yield note
        except NotFound:
            self._write(principal, action, target_type, [], details)
            raise
        self._write(principal, action, target_type, note.ids, details)

    def _write(
        self,
        principal: Principal,
        action: str,
        target_type: str,
        ids: list[str],
        details: dict[str, audit.DetailValue],
    ) -> None:
        with self.db.write() as session:
            audit.record_many(
                session=session,
                workspace_id=principal.workspace_id,
                actor=principal.actor,
                action=action,
                target_type=target_type,
                target_ids=ids,
                reason=self.reason,
                details=details,
            )


def read_recorder(request: Request, db: DbDep) -> ReadRecorder:
    """The recorder of this request's reads; a reason header that cannot be stored is a 400."""
    given = request.headers.get(REASON_HEADER, "").strip()
    problem = audit.reason_problem(given) if given else None
    if problem:
        raise Invalid("the reason cannot be recorded", [FieldError(REASON_HEADER, problem)])
    return ReadRecorder(db, given or audit.UNSPECIFIED)


ReadAudit = Annotated[ReadRecorder, Depends(read_recorder)]
ProfilesRead = Annotated[Principal, Security(get_principal, scopes=[Scope.PROFILES_READ])]
ProfilesWrite = Annotated[Principal, Security(get_principal, scopes=[Scope.PROFILES_WRITE])]
CommerceRead = Annotated[Principal, Security(get_principal, scopes=[Scope.COMMERCE_READ])]
ConsentRead = Annotated[Principal, Security(get_principal, scopes=[Scope.CONSENT_READ])]
ConsentWrite = Annotated[Principal, Security(get_principal, scopes=[Scope.CONSENT_WRITE])]
PrivacyRead = Annotated[Principal, Security(get_principal, scopes=[Scope.PRIVACY_READ])]
PrivacyWrite = Annotated[Principal, Security(get_principal, scopes=[Scope.PRIVACY_WRITE])]
AnalyticsRead = Annotated[Principal, Security(get_principal, scopes=[Scope.ANALYTICS_READ])]
AnalyticsWrite = Annotated[Principal, Security(get_principal, scopes=[Scope.ANALYTICS_WRITE])]
RecommendationsRead = Annotated[
    Principal, Security(get_principal, scopes=[Scope.RECOMMENDATIONS_READ])
]
RecommendationsWrite = Annotated[
    Principal, Security(get_principal, scopes=[Scope.RECOMMENDATIONS_WRITE])
]
QualityRead = Annotated[Principal, Security(get_principal, scopes=[Scope.QUALITY_READ])]
QualityWrite = Annotated[Principal, Security(get_principal, scopes=[Scope.QUALITY_WRITE])]
AudiencesRead = Annotated[Principal, Security(get_principal, scopes=[Scope.AUDIENCES_READ])]
AudiencesWrite = Annotated[Principal, Security(get_principal, scopes=[Scope.AUDIENCES_WRITE])]
AudiencesExport = Annotated[Principal, Security(get_principal, scopes=[Scope.AUDIENCES_EXPORT])]
JourneysRead = Annotated[Principal, Security(get_principal, scopes=[Scope.JOURNEYS_READ])]
JourneysWrite = Annotated[Principal, Security(get_principal, scopes=[Scope.JOURNEYS_WRITE])]
DeliveryRead = Annotated[Principal, Security(get_principal, scopes=[Scope.DELIVERY_READ])]
DeliveryWrite = Annotated[Principal, Security(get_principal, scopes=[Scope.DELIVERY_WRITE])]
AuditRead = Annotated[Principal, Security(get_principal, scopes=[Scope.AUDIT_READ])]
AnyToken = Annotated[Principal, Security(get_principal, scopes=[])]
