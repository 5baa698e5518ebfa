"""FastAPI dependencies shared by the routes: the store, the settings, the caller.

Routes declare what they need with the aliases at the bottom, e.g.
``def route(principal: ProfilesRead, db: DbDep)``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from consentry.config import Settings
from consentry.errors import Forbidden, Unauthorized
from consentry.platform import tenancy
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


ProfilesRead = Annotated[Principal, Security(get_principal, scopes=[Scope.PROFILES_READ])]
ProfilesWrite = Annotated[Principal, Security(get_principal, scopes=[Scope.PROFILES_WRITE])]
CommerceRead = Annotated[Principal, Security(get_principal, scopes=[Scope.COMMERCE_READ])]
ConsentRead = Annotated[Principal, Security(get_principal, scopes=[Scope.CONSENT_READ])]
ConsentWrite = Annotated[Principal, Security(get_principal, scopes=[Scope.CONSENT_WRITE])]
AnyToken = Annotated[Principal, Security(get_principal, scopes=[])]
