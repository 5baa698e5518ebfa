"""Delivery through the real app, on SQLite and PostgreSQL: destinations (refused with a 400
naming the field when the processor may not receive what the kind sends), the outbox and its
dead letters retried by hand, the suppression list, scopes, workspace isolation and the
dashboard page."""

from __future__ import annotations

import re
import time

from fastapi.testclient import TestClient

from consentry.delivery.webhook import SIGNATURE_HEADER, verify_signature
from consentry.platform import audit, tenancy
from consentry.platform.db import Database
from tests.conftest import new_workspace
from tests.http.test_web_pages import issue_token, sign_in
from tests.support.delivery import (
    EMAIL_PURPOSE,
    SMS_PURPOSE,
    grant,
    hook,
    hook_server,
    mail,
    person,
    processor,
    smtp_server,
)
from tests.support.segment import bearer

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def register(client: TestClient, token: str, **body: object) -> dict[str, object]:
    answer = client.post("/v1/destinations", json=body, headers=bearer(token))
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_destinations_are_registered_only_for_what_their_processor_may_receive(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    auth = bearer(admin_token)
    narrow = processor(
        db, workspace, "Narrow", purposes=(EMAIL_PURPOSE,), categories=("user.contact.email",)
    )

    def refused(**body: object) -> list[str]:
        answer = client.post("/v1/destinations", json=body, headers=auth)
        assert answer.status_code == 400, answer.text
        return [e["field"] for e in answer.json()["errors"]]

    base = {"name": "X", "processor_id": narrow, "purpose": EMAIL_PURPOSE}
    assert refused(**{**base, "kind": "email", "processor_id": "unknown"}) == ["processor_id"]
    assert refused(
        **{**base, "kind": "sms", "purpose": SMS_PURPOSE, "url": "https://sms.example/send"}
    ) == ["purpose", "processor_id"]
    assert refused(**{**base, "kind": "webhook", "url": "https://hook.example/in"}) == [
        "categories"
    ]
    assert refused(
        **{
            **base,
            "kind": "webhook",
            "url": "http://hook.example/in",
            "categories": ["user.behavior"],
        }
    ) == ["url"]
    assert refused(
        **{
            **base,
            "kind": "webhook",
            "url": "https://hook.example/in",
            "categories": ["user.behavior"],
        }
    ) == ["categories.0"]
    assert refused(**{**base, "kind": "email", "from_address": "not an address"}) == [
        "from_address"
    ]
    assert refused(**{**base, "kind": "pigeon"}) == ["kind"]
    email = register(client, admin_token, **base, kind="email", from_name="The Shop")
    assert "secret" not in email and email["sends"] == ["user.contact.email"]
    assert email["channel"] == "email" and email["active"] is True
    taken = client.post("/v1/destinations", json={**base, "kind": "email"}, headers=auth)
    assert taken.status_code == 409 and taken.json()["errors"][0]["field"] == "name"
    # a deactivated processor refuses the next registration, naming the processor
    with db.write() as session:
        from consentry.privacy import processor_service

        processor_service.deactivate_processor(
            session=session, workspace_id=workspace, processor_id=narrow, actor="test"
        )
    answer = client.post(
        "/v1/destinations", json={**base, "name": "Y", "kind": "email"}, headers=auth
    )
    assert answer.status_code == 400
    assert answer.json()["errors"] == [
        {"index": None, "field": "processor_id", "reason": "active: the processor is deactivated"}
    ]


def test_a_webhook_destination_lives_its_life_through_the_api(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    auth = bearer(admin_token)
    processor_id = processor(db, workspace)
    with hook_server() as server:
        made = register(
            client,
            admin_token,
            name="CRM",
            kind="webhook",
            processor_id=processor_id,
            purpose=EMAIL_PURPOSE,
            url=server.url("/crm"),
            categories=["user.unique_id"],
        )
        secret = str(made["secret"])
        destination_id = str(made["id"])
        listed = client.get("/v1/destinations", headers=auth).json()["destinations"]
        assert [d["id"] for d in listed] == [destination_id] and "secret" not in listed[0]
        assert listed[0]["messages"]["queued"] == 0
        server.answer("/crm", 500, 400, 200)
        first = hook(db, workspace, destination_id, "batch-1", {"n": 1})
        assert first is not None
        ran = client.post("/v1/outbox/run", headers=auth).json()
        assert ran["retrying"] == 1 and ran["sent"] == 0
        page = client.get("/v1/outbox", params={"status": "retrying"}, headers=auth).json()
        assert page["total"] == 1 and page["messages"][0]["last_error"] == "HTTP 500"
        assert "to" not in page["messages"][0] and "content" not in page["messages"][0]
        # a second message is refused for good (400): dead at once
        second = hook(db, workspace, destination_id, "batch-2", {"n": 2})
        ran = client.post("/v1/outbox/run", headers=auth).json()  # the first waits its turn
        assert ran["dead"] == 1
        dead = client.get("/v1/outbox/dead", headers=auth).json()
        assert [m["id"] for m in dead["messages"]] == [second]
        assert client.post(f"/v1/outbox/{first}/retry", headers=auth).status_code == 409
        retried = client.post(f"/v1/outbox/{second}/retry", headers=auth)
        assert retried.status_code == 200 and retried.json()["status"] == "queued"
        ran = client.post("/v1/outbox/run", headers=auth).json()
        assert ran["sent"] == 1
        call = server.to("/crm")[-1]
        assert call.json() == {"n": 2}
        assert verify_signature(
            secret, call.headers[SIGNATURE_HEADER], call.body, now=int(time.time())
        )
        counts = client.get("/v1/outbox/counts", headers=auth).json()
        assert counts["totals"]["sent"] == 1 and counts["totals"]["retrying"] == 1
        assert counts["destinations"][destination_id]["sent"] == 1
        # a rotated secret signs from now on; the old one no longer verifies
        rotated = client.post(f"/v1/destinations/{destination_id}/secret", headers=auth)
        assert rotated.status_code == 201 and rotated.json()["secret"] != secret
        patched = client.patch(
            f"/v1/destinations/{destination_id}", json={"name": "CRM 2"}, headers=auth
        )
        assert patched.status_code == 200 and patched.json()["name"] == "CRM 2"
        bad = client.patch(
            f"/v1/destinations/{destination_id}", json={"url": "ftp://x"}, headers=auth
        )
        assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "url"
        gone = client.delete(f"/v1/destinations/{destination_id}", headers=auth)
        assert gone.status_code == 200 and gone.json()["active"] is False
    with db.read() as session:
        actions = {e.action for e in audit.iter_entries(session=session, workspace_id=workspace)}
    assert {
        "delivery.destination_registered",
        "delivery.destination_secret_rotated",
        "delivery.destination_updated",
        "delivery.destination_deactivated",
        "delivery.dead_letter_retried",
    } <= actions


def test_email_through_the_api_round_reaches_the_smtp_server(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    auth = bearer(admin_token)
    ada = person(db, workspace, "u-ada-api", email="ada@example.com")
    grant(db, workspace, ada)
    made = register(
        client,
        admin_token,
        name="Mail",
        kind="email",
        processor_id=processor(db, workspace),
        purpose=EMAIL_PURPOSE,
        from_address="news@shop.example",
        from_name="Shop News",
    )
    message = mail(
        db, workspace, str(made["id"]), "welcome:ada", to="ada@example.com", subject_id=ada
    )
    with smtp_server() as (sink, mailer):
        client.app.state.mailer = mailer  # type: ignore[attr-defined]
        assert client.post("/v1/outbox/run", headers=auth).json()["sent"] == 1
        (received,) = sink.messages()
    assert received["From"] == "Shop News <news@shop.example>"
    shown = client.get(f"/v1/outbox/{message}", headers=auth).json()
    assert shown["status"] == "sent" and shown["subject_id"] == ada
    assert shown["provider_message_id"] == received["Message-ID"]


def test_the_suppression_list_holds_no_address(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    auth = bearer(admin_token)
    body = {"channel": "email", "address": "Zoe@Example.com", "reason": "unsubscribe"}
    made = client.post("/v1/suppressions", json=body, headers=auth)
    assert made.status_code == 201
    again = client.post(
        "/v1/suppressions", json={**body, "address": " zoe@example.com"}, headers=auth
    )
    assert again.status_code == 200 and again.json()["id"] == made.json()["id"]
    phone = client.post(
        "/v1/suppressions", json={"channel": "sms", "address": "(415) 555-0100"}, headers=auth
    )
    assert phone.status_code == 201 and phone.json()["reason"] == "manual"
    listed = client.get("/v1/suppressions", headers=auth)
    assert listed.json()["total"] == 2
    # neither address in any form ("555" alone also turns up in the hex of blind indexes)
    assert "zoe" not in listed.text.lower()
    assert "5550100" not in listed.text and "555-0100" not in listed.text
    check = client.post(
        "/v1/suppressions/check",
        json={"channel": "sms", "address": "+1 415 555 0100"},
        headers=auth,
    )
    assert check.json()["suppressed"] is True
    bad = client.post(
        "/v1/suppressions", json={"channel": "email", "address": "nope"}, headers=auth
    )
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "address"
    bad = client.post("/v1/suppressions", json={**body, "reason": "spite"}, headers=auth)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "reason"
    removed = client.delete(f"/v1/suppressions/{made.json()['id']}", headers=auth)
    assert removed.status_code == 204
    zoe = {"channel": "email", "address": "zoe@example.com"}
    check = client.post("/v1/suppressions/check", json=zoe, headers=auth).json()
    assert check == {"suppressed": False, "entry": None}
    assert client.delete(f"/v1/suppressions/{made.json()['id']}", headers=auth).status_code == 404


def test_scopes_and_workspaces_are_kept_apart(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    made = register(
        client,
        admin_token,
        name="Mail",
        kind="email",
        processor_id=processor(db, workspace),
        purpose=EMAIL_PURPOSE,
    )
    message = mail(
        db, workspace, str(made["id"]), "k", to="a@example.com", subject_id=None, purpose=None
    )
    analyst = bearer(issue_token(db, workspace, tenancy.Role.ANALYST))
    assert client.get("/v1/destinations", headers=analyst).status_code == 403
    marketer = bearer(issue_token(db, workspace, tenancy.Role.MARKETER))
    assert client.get("/v1/destinations", headers=marketer).status_code == 200
    other = new_workspace(db)
    stranger = bearer(issue_token(db, other, tenancy.Role.ADMIN))
    assert client.get(f"/v1/destinations/{made['id']}", headers=stranger).status_code == 404
    assert client.get(f"/v1/outbox/{message}", headers=stranger).status_code == 404
    assert client.post(f"/v1/outbox/{message}/retry", headers=stranger).status_code == 404
    assert client.get("/v1/outbox", headers=stranger).json() == {"total": 0, "messages": []}
    assert (
        client.get("/v1/outbox", params={"status": "lost"}, headers=bearer(admin_token)).status_code
        == 400
    )


def test_the_deliveries_page_shows_counts_and_retries_a_dead_letter(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    auth = bearer(admin_token)
    with hook_server() as server:
        made = register(
            client,
            admin_token,
            name="Partner hook",
            kind="webhook",
            processor_id=processor(db, workspace),
            purpose=EMAIL_PURPOSE,
            url=server.url("/p"),
            categories=["user.unique_id"],
        )
        server.answer("/p", 404, 200)
        message = hook(db, workspace, str(made["id"]), "p-1", {"x": 1})
        assert client.post("/v1/outbox/run", headers=auth).json()["dead"] == 1
        sign_in(client, admin_token)
        page = client.get("/app/deliveries")
        assert page.status_code == 200
        assert 'data-name="Partner hook"' in page.text and f'data-id="{message}"' in page.text
        assert re.search(r'<td class="num dead">1</td>', page.text)
        token = _CSRF.search(page.text)
        assert token is not None
        forged = client.post(
            f"/app/deliveries/dead/{message}/retry",
            data={"csrf_token": "x"},
            follow_redirects=False,
        )
        assert forged.status_code == 403
        done = client.post(
            f"/app/deliveries/dead/{message}/retry",
            data={"csrf_token": token.group(1)},
            follow_redirects=False,
        )
        assert done.status_code == 303 and done.headers["location"] == "/app/deliveries?done=1"
        assert client.post("/v1/outbox/run", headers=auth).json()["sent"] == 1
        page = client.get("/app/deliveries").text
    assert 'id="no-dead"' in page and re.search(r'<td class="num sent">1</td>', page)
