"""Erasure through the real app, on both stores: the certificate, the errors a client gets, the
scopes, and the processors' webhooks (signed, retried, then given up), received by a real HTTP
server."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from consentry.delivery.webhook import SIGNATURE_HEADER, verify_signature
from consentry.platform import tenancy
from consentry.platform.db import Database, utcnow
from consentry.platform.vault import Vault
from consentry.privacy import notification_service
from consentry.privacy.erasure import MAX_ATTEMPTS, erasure_subject
from consentry.privacy.tables import NotificationRow
from consentry.profiles.models import normalize_email
from tests.support.segment import basic, bearer, identify, track

MARK = "wq4erase"
EMAIL = f"Ada.{MARK}@Example.com"


def token(db: Database, workspace: str, role: tenancy.Role) -> dict[str, str]:
    with db.write() as session:
        issued = tenancy.issue_key(
            session=session, workspace_id=workspace, kind="token", name=role.value, role=role
        )
    return bearer(issued.secret)


class Hook(http.server.BaseHTTPRequestHandler):
    """A processor's webhook: records what it receives, answers with ``status``."""

    received: list[tuple[dict[str, str], bytes]]
    status: int = 204

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        length = int(self.headers.get("Content-Length", "0"))
        self.received.append((dict(self.headers), self.rfile.read(length)))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:  # quiet
        return None


@pytest.fixture
def hook() -> Iterator[type[Hook]]:
    handler = type("TestHook", (Hook,), {"received": [], "status": 204})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/erase"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def register(client: TestClient, auth: dict[str, str], url: str, name: str = "Mailer") -> str:
    body = {
        "name": name,
        "kind": "processor",
        "purposes": ["marketing.communications.email"],
        "categories": ["user.contact.email"],
        "transfer_country": "DE",
        "dpa_signed_on": "2024-01-10",
        "erasure_webhook_url": url,
    }
    made = client.post("/v1/privacy/processors", json=body, headers=auth)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


@pytest.fixture
def ada(client: TestClient, write_key: str, admin_token: str) -> str:
    batch = [
        identify(userId=f"u-{MARK}", anonymousId=f"a-{MARK}", traits={"email": EMAIL}),
        track("Product Viewed", userId=f"u-{MARK}", properties={"product_id": "p1"}),
        identify(userId="u-bob", traits={"email": "bob@example.com"}),
    ]
    sent = client.post("/v1/batch", json={"batch": batch}, headers=basic(write_key))
    assert sent.status_code == 200
    found = client.get(
        "/v1/profiles", params={"user_id": f"u-{MARK}"}, headers=bearer(admin_token)
    ).json()
    return str(found["profiles"][0]["id"])


def test_an_erasure_answers_with_its_certificate_and_signed_webhooks_follow(
    client: TestClient, db: Database, workspace: str, ada: str, hook: type[Hook], settings: Any
) -> None:
    admin = token(db, workspace, tenancy.Role.ADMIN)
    processor = register(client, admin, hook.url)  # type: ignore[attr-defined]
    officer = token(db, workspace, tenancy.Role.PRIVACY_OFFICER)
    answer = client.post(
        "/v1/privacy/erasures",
        json={"email": EMAIL.upper(), "reason": "erasure request by email"},
        headers=officer,
    )
    assert answer.status_code == 201, answer.text
    erasure = answer.json()
    assert erasure["profile_id"] == ada
    cert = erasure["certificate"]
    assert cert["erased"]["events"] == 2 and cert["erased"]["profiles"] == 1
    assert cert["processors_notified"] == [{"id": processor, "name": "Mailer"}]
    # the webhook was called once the erasure was committed, signed with the processor's secret
    assert len(hook.received) == 1
    headers, body = hook.received[0]
    secret = client.get(
        f"/v1/privacy/processors/{processor}/webhook-secret", headers=officer
    ).json()["secret"]
    assert verify_signature(secret, headers[SIGNATURE_HEADER], body, now=int(time.time()))
    assert headers["Idempotency-Key"] and headers["Consentry-Event"] == "erasure"
    import hashlib
    import json

    sent = json.loads(body)
    assert sent["erasure_id"] == erasure["id"]
    assert sent["subject"]["user_ids"] == [f"u-{MARK}"]
    assert sent["subject"]["anonymous_ids"] == [f"a-{MARK}"]
    expected = hashlib.sha256((normalize_email(EMAIL) or "").encode()).hexdigest()
    assert sent["subject"]["email_sha256"] == [expected]
    assert MARK.lower() not in body.decode().lower().replace(f"u-{MARK}", "").replace(
        f"a-{MARK}", ""
    )
    # delivered: the stored body and its key are gone
    shown = client.get(f"/v1/privacy/erasures/{erasure['id']}", headers=officer).json()
    assert shown["notifications"][0]["status"] == "delivered"
    assert shown["certificate_sha256"] == erasure["certificate_sha256"]
    with db.read() as session:
        assert session.scalars(select(NotificationRow.payload)).all() == [None]
    assert isinstance(db.vault, Vault)
    assert db.vault.keystore.data_key(workspace, erasure_subject(erasure["id"])) is None
    # the person is gone; erasing again is a 404, and so is reading them
    again = client.post(
        "/v1/privacy/erasures", json={"profile_id": ada, "reason": "again"}, headers=officer
    )
    assert again.status_code == 404
    listed = client.get("/v1/privacy/erasures", headers=officer).json()["erasures"]
    assert [e["id"] for e in listed] == [erasure["id"]]
    trail = client.get("/v1/audit", params={"action": "privacy.erasure"}, headers=admin).json()
    entries = trail.get("entries", trail)
    assert [e["target_id"] for e in entries] == [erasure["id"]]


def test_a_failing_webhook_is_retried_then_given_up(
    client: TestClient, db: Database, workspace: str, ada: str, hook: type[Hook], settings: Any
) -> None:
    hook.status = 503
    admin = token(db, workspace, tenancy.Role.ADMIN)
    register(client, admin, hook.url)  # type: ignore[attr-defined]
    answer = client.post(
        "/v1/privacy/erasures", json={"profile_id": ada, "reason": "request"}, headers=admin
    )
    assert answer.status_code == 201
    erasure_id = answer.json()["id"]
    first = client.get(f"/v1/privacy/erasures/{erasure_id}", headers=admin).json()
    (note,) = first["notifications"]
    assert note["status"] == "pending" and note["attempts"] == 1
    assert note["last_error"] == "HTTP 503"
    # not due yet: nothing is sent
    report = notification_service.deliver_due(db=db, server_secret=settings.secret_key)
    assert report.attempted == 0
    # the processor comes back: the next attempt (when due) delivers the same notification
    hook.status = 200
    later = utcnow() + timedelta(minutes=2)
    report = notification_service.deliver_due(db=db, server_secret=settings.secret_key, now=later)
    assert report.delivered == 1
    assert hook.received[0][0]["Idempotency-Key"] == hook.received[1][0]["Idempotency-Key"]


def test_a_webhook_that_never_answers_is_given_up_after_the_last_attempt(
    client: TestClient, db: Database, workspace: str, ada: str, settings: Any
) -> None:
    admin = token(db, workspace, tenancy.Role.ADMIN)
    register(client, admin, "http://127.0.0.1:9/erase")  # the discard port: refused
    answer = client.post(
        "/v1/privacy/erasures", json={"profile_id": ada, "reason": "request"}, headers=admin
    )
    erasure_id = answer.json()["id"]
    moment = utcnow()
    for _ in range(MAX_ATTEMPTS):
        moment += timedelta(days=2)
        notification_service.deliver_due(db=db, server_secret=settings.secret_key, now=moment)
    shown = client.get(f"/v1/privacy/erasures/{erasure_id}", headers=admin).json()
    (note,) = shown["notifications"]
    assert note["status"] == "failed" and note["attempts"] == MAX_ATTEMPTS
    assert note["last_error"].endswith("no answer")


def test_bad_requests_get_clear_errors(
    client: TestClient, db: Database, workspace: str, ada: str
) -> None:
    officer = token(db, workspace, tenancy.Role.PRIVACY_OFFICER)
    marketer = token(db, workspace, tenancy.Role.MARKETER)
    url = "/v1/privacy/erasures"
    unknown = client.post(url, json={"email": "nobody@example.com", "reason": "x"}, headers=officer)
    assert unknown.status_code == 404
    personal = client.post(url, json={"profile_id": ada, "reason": f"for {EMAIL}"}, headers=officer)
    assert personal.status_code == 400
    assert [e["field"] for e in personal.json()["errors"]] == ["reason"]
    nobody = client.post(url, json={"reason": "x"}, headers=officer)
    assert nobody.status_code == 400
    missing = client.post(url, json={"profile_id": ada}, headers=officer)
    assert missing.status_code == 422 or missing.status_code == 400
    assert "reason" in missing.text
    assert (
        client.post(url, json={"profile_id": ada, "reason": "x"}, headers=marketer).status_code
        == 403
    )
    assert client.post(url, json={"profile_id": ada, "reason": "x"}).status_code == 401
    assert client.get(f"{url}/nope", headers=officer).status_code == 404
    # another workspace's officer cannot erase, nor read, this workspace's people
    with db.write() as session:
        tenancy.create_workspace(session=session, workspace_id=f"{workspace}-other")
    other = token(db, f"{workspace}-other", tenancy.Role.PRIVACY_OFFICER)
    assert (
        client.post(url, json={"profile_id": ada, "reason": "x"}, headers=other).status_code == 404
    )
    done = client.post(url, json={"profile_id": ada, "reason": "x"}, headers=officer).json()
    assert client.get(f"{url}/{done['id']}", headers=other).status_code == 404
    # lifting needs a usable identifier
    lift = client.post(
        "/v1/privacy/suppressions/lift",
        json={"email": "not-an-email", "reason": "came back"},
        headers=officer,
    )
    assert lift.status_code == 400 and lift.json()["errors"][0]["field"] == "email"
    ok = client.post(
        "/v1/privacy/suppressions/lift",
        json={"email": EMAIL, "reason": "new account verified in store"},
        headers=officer,
    )
    assert ok.status_code == 200 and ok.json() == {"lifted": 1}


def test_a_verified_erasure_request_is_fulfilled_by_erasing(
    client: TestClient, db: Database, workspace: str, ada: str
) -> None:
    officer = token(db, workspace, tenancy.Role.PRIVACY_OFFICER)
    made = client.post(
        "/v1/privacy/requests",
        json={"type": "erasure", "user_id": f"u-{MARK}", "verified": True, "reason": "letter"},
        headers=officer,
    )
    assert made.status_code == 201, made.text
    request_id = made.json()["request"]["id"]
    access = client.post(
        "/v1/privacy/requests",
        json={"type": "access", "user_id": "u-bob", "verified": True, "reason": "letter"},
        headers=officer,
    ).json()["request"]["id"]
    wrong = client.post(f"/v1/privacy/requests/{access}/erase", headers=officer)
    assert wrong.status_code == 400 and wrong.json()["errors"][0]["field"] == "type"
    done = client.post(f"/v1/privacy/requests/{request_id}/erase", headers=officer)
    assert done.status_code == 201, done.text
    erasure = done.json()
    assert erasure["request_id"] == request_id and erasure["profile_id"] == ada
    assert erasure["certificate"]["request_id"] == request_id
    shown = client.get(f"/v1/privacy/requests/{request_id}", headers=officer).json()
    assert shown["status"] == "completed"
    assert erasure["id"] in (shown.get("resolution") or "")
    again = client.post(f"/v1/privacy/requests/{request_id}/erase", headers=officer)
    assert again.status_code == 409
    assert (
        client.get("/v1/profiles", params={"user_id": f"u-{MARK}"}, headers=officer).json()[
            "profiles"
        ]
        == []
    )


def test_rectification_corrects_traits_and_is_audited(
    client: TestClient, db: Database, workspace: str, ada: str
) -> None:
    officer = token(db, workspace, tenancy.Role.PRIVACY_OFFICER)
    admin = token(db, workspace, tenancy.Role.ADMIN)
    url = "/v1/privacy/rectifications"
    fixed = client.post(
        url,
        json={
            "user_id": f"u-{MARK}",
            "traits": {"email": "ada.correct@example.com", "first_name": "Ada"},
            "reason": "typo reported by the customer",
            "purge_history": True,
        },
        headers=officer,
    )
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["rectified"] == ["email", "first_name"]
    assert fixed.json()["history_deleted"] == 1  # the wrong email, observed once
    view = client.get(f"/v1/profiles/{ada}", headers=admin).json()
    assert view["traits"]["email"] == "ada.correct@example.com"
    assert view["traits"]["first_name"] == "Ada"
    history = client.get(
        f"/v1/profiles/{ada}/traits/history", params={"key": "email"}, headers=admin
    ).json()["history"]
    assert [h["value"] for h in history] == ["ada.correct@example.com"]  # the wrong one is gone
    trail = client.get(
        "/v1/audit", params={"action": "privacy.rectification"}, headers=admin
    ).json()
    (entry,) = trail.get("entries", trail)
    assert entry["target_id"] == ada and entry["details"]["keys"] == "email,first_name"
    assert "correct@" not in str(entry)
    for bad, field in (
        ({"profile_id": ada, "traits": {}, "reason": "x"}, "traits"),
        ({"profile_id": ada, "traits": {"a@b.example": 1}, "reason": "x"}, "traits.a@b.example"),
        ({"profile_id": ada, "traits": {"plan": "x"}, "reason": f"from {EMAIL}"}, "reason"),
    ):
        answer = client.post(url, json=bad, headers=officer)
        assert answer.status_code == 400, answer.text
        assert answer.json()["errors"][0]["field"] == field
    unknown = {"email": "nobody@example.com", "traits": {"plan": "x"}, "reason": "x"}
    assert client.post(url, json=unknown, headers=officer).status_code == 404
    marketer = token(db, workspace, tenancy.Role.MARKETER)
    assert (
        client.post(url, json={**unknown, "profile_id": ada}, headers=marketer).status_code == 403
    )
