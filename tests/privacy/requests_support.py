"""Helpers of the data-subject request tests: an app wired to a real local SMTP server
(aiosmtpd, the double opt-in tests' server), codes and links read from the mails it received,
and requests made in the past through the service (to have due and overdue ones)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from fastapi.testclient import TestClient

from consentry.api import create_app
from consentry.config import PrivacySettings, Settings, SmtpSettings
from consentry.platform import tenancy
from consentry.platform.db import Database
from consentry.privacy import request_service as service
from consentry.privacy import requests as rq
from tests.http.test_double_opt_in import SmtpServer, free_port
from tests.support.segment import bearer
from tests.support.server import TEST_APP

PUBLIC_URL = "https://privacy.shop.example"
SECRET = "dsr-test-secret"
__all__ = ["SmtpServer", "free_port"]


def app_settings(database_url: str, port: int, **privacy: Any) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        secret_key=SECRET,
        public_url=PUBLIC_URL,
        smtp=SmtpSettings(
            host="127.0.0.1",
            port=port,
            timeout=5,
            from_address="privacy@shop.example",
            from_name="The Shop",
        ),
        privacy=PrivacySettings(**privacy),
        **TEST_APP,
    )


def client_for(database_url: str, db: Database, port: int, **privacy: Any) -> Iterator[TestClient]:
    app = create_app(app_settings(database_url, port, **privacy), db)
    with TestClient(app, client=("203.0.113.9", 40000)) as client:
        yield client


def token(db: Database, workspace: str, role: tenancy.Role = tenancy.Role.ADMIN) -> str:
    with db.write() as session:
        return tenancy.issue_key(
            session=session, workspace_id=workspace, kind="token", name=role.value, role=role
        ).secret


def auth(secret: str) -> dict[str, str]:
    return bearer(secret)


@dataclass(frozen=True)
class Mailed:
    """What a verification mail carried."""

    to: str
    subject: str
    code: str
    path: str  # the link, as a path for the test client
    text: str
    html: str


def read_mail(message: EmailMessage, envelope_to: list[str]) -> Mailed:
    text_part = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    assert text_part is not None and html_part is not None
    text, html = text_part.get_content(), html_part.get_content()
    code = re.search(r"Your code: (\d{6})", text)
    link = re.search(r"https://\S+/dsr/[A-Za-z0-9_.-]+", text)
    return Mailed(
        to=envelope_to[0],
        subject=str(message["Subject"]),
        code=code.group(1) if code else "",
        path=urlsplit(link.group(0)).path if link else "",
        text=text,
        html=html,
    )


def last_mail(server: SmtpServer) -> Mailed:
    envelope, message = server.inbox.messages[-1]
    return read_mail(message, list(envelope.rcpt_tos))


def file(client: TestClient, workspace: str, **body: Any) -> Any:
    wanted = {"workspace": workspace, "type": "access", "email": "ada@example.com", **body}
    return client.post("/v1/privacy/requests/public", json=wanted)


def made_at(
    db: Database,
    workspace: str,
    when: datetime,
    *,
    request_type: str = "access",
    email: str = "old.request@example.com",
    country: str | None = None,
    verify: bool = True,
    start: bool = False,
) -> rq.Request:
    """A request received at ``when`` (verified by its code, and started, when asked)."""
    with db.write() as session:
        intake = service.submit(
            session=session,
            workspace_id=workspace,
            request_type=request_type,
            email=email,
            country=country,
            rules=rq.DEFAULT_RULES,
            secret=SECRET,
            now=when,
        )
    assert intake.challenge is not None
    request = intake.request
    if verify:
        with db.write() as session:
            found = service.verify_code(
                session=session,
                workspace_id=workspace,
                request_id=request.id,
                code=intake.challenge.code,
                rules=rq.DEFAULT_RULES,
                secret=SECRET,
                now=when,
            )
        assert found.verified, found
        request = found.request
    if start:
        with db.write() as session:
            request = service.transition(
                session=session,
                workspace_id=workspace,
                request_id=request.id,
                action="start",
                actor="cli:test",
                now=when,
            )
    return request
