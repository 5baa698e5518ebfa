"""Data-subject requests through the real app on both stores, with a real SMTP server: public
intake, verification by code and by link, the admin queue and the status machine, history,
audit, duplicates, extension notices, linking a profile, the access archive, and what is
(not) stored in clear."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from consentry.platform import tenancy
from consentry.platform.db import Database, utcnow
from consentry.platform.vault import is_token
from consentry.privacy import requests as rq
from consentry.privacy.request_tables import RequestEventRow, RequestRow
from tests.conftest import new_workspace
from tests.privacy.requests_support import (
    SmtpServer,
    auth,
    client_for,
    file,
    free_port,
    last_mail,
    made_at,
    token,
)
from tests.support.segment import basic, identify

ADA = "ada.dsr@example.com"


@pytest.fixture
def officer(db: Database, workspace: str) -> dict[str, str]:
    return auth(token(db, workspace, tenancy.Role.PRIVACY_OFFICER))


def admin_steps(client: TestClient, headers: dict[str, str], request_id: str) -> list[Any]:
    answer = client.get(f"/v1/privacy/requests/{request_id}/history", headers=headers)
    assert answer.status_code == 200, answer.text
    steps: list[Any] = answer.json()["history"]
    return steps


def audit_actions(client: TestClient, headers: dict[str, str], target: str) -> list[str]:
    answer = client.get("/v1/audit", params={"target_id": target, "limit": 500}, headers=headers)
    assert answer.status_code == 200, answer.text
    return [e["action"] for e in answer.json()["entries"]]


def test_public_intake_verify_by_code_and_work_the_request(
    shop: TestClient, smtp: SmtpServer, db: Database, workspace: str, officer: dict[str, str]
) -> None:
    answer = file(shop, workspace, email=" Ada.DSR@Example.com ", type="erasure", country="de")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    made = body["request"]
    request_id = made["id"]
    assert rq.is_request_id(request_id)
    assert (made["status"], made["type"], made["jurisdiction"]) == ("unverified", "erasure", "gdpr")
    assert "email" not in made and ADA not in answer.text
    assert body["verification"]["sent"] is True
    assert body["verification"]["verify_url"] == f"/v1/privacy/requests/{request_id}/verify"

    mail = last_mail(smtp)
    assert mail.to == ADA and mail.subject == f"Confirm your privacy request to {workspace}"
    assert len(mail.code) == 6 and mail.path.startswith("/dsr/")
    assert mail.code in mail.html

    # stored: no email in clear, the code only as a digest
    with db.read() as session:
        row = session.scalars(select(RequestRow).where(RequestRow.id == request_id)).one()
        sealed, index = row.email_sealed, row.email_index
        texts = [getattr(row, c.name) for c in RequestRow.__table__.columns]
        stored = json.dumps([t for t in texts if isinstance(t, str)])
        events = json.dumps(
            [str(e.details) + str(e.reason) for e in session.scalars(select(RequestEventRow))]
        )
    assert is_token(sealed) and index and len(index) == 64
    assert "ada.dsr" not in stored.lower() and "example.com" not in stored.lower()
    assert mail.code not in stored
    assert "ada.dsr" not in events.lower() and "example.com" not in events.lower()

    # an unverified request cannot be started
    refused = shop.post(f"/v1/privacy/requests/{request_id}/start", headers=officer)
    assert refused.status_code == 409, refused.text
    assert "the request is unverified" in refused.json()["message"]

    verified = shop.post(
        f"/v1/privacy/requests/{request_id}/verify",
        json={"workspace": workspace, "code": mail.code},
    )
    assert verified.status_code == 200, verified.text
    assert verified.json()["request"]["status"] == "verified"
    again = shop.post(
        f"/v1/privacy/requests/{request_id}/verify",
        json={"workspace": workspace, "code": mail.code},
    )
    assert again.status_code == 409 and "the request is verified" in again.json()["message"]

    queue = shop.get("/v1/privacy/requests", headers=officer)
    assert queue.status_code == 200, queue.text
    (listed,) = queue.json()["requests"]
    assert listed["id"] == request_id and listed["status"] == "verified"
    due = listed["due_at"]
    assert listed["days_left"] in (27, 28, 29, 30, 31) and due == made["due_at"]

    one = shop.get(f"/v1/privacy/requests/{request_id}", headers=officer)
    assert one.status_code == 200 and one.json()["email"] == ADA

    for action, expected in (("start", "in_progress"), ("complete", "completed")):
        moved = shop.post(
            f"/v1/privacy/requests/{request_id}/{action}",
            json={"reason": "ZD-12 handled"},
            headers=officer,
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["status"] == expected
    closed = shop.post(f"/v1/privacy/requests/{request_id}/start", headers=officer)
    assert closed.status_code == 409 and "the request is completed" in closed.json()["message"]

    steps = admin_steps(shop, officer, request_id)
    assert [(s["action"], s["from_status"], s["to_status"]) for s in steps] == [
        ("received", None, "unverified"),
        ("verify", "unverified", "verified"),
        ("start", "verified", "in_progress"),
        ("complete", "in_progress", "completed"),
    ]
    with db.read() as session:
        key_id = tenancy.authenticate(
            session=session, secret=officer["Authorization"][7:], kind="token"
        ).key_id
    assert [s["actor"] for s in steps] == [f"subject:{request_id}"] * 2 + [f"token:{key_id}"] * 2
    assert steps[3]["reason"] == "ZD-12 handled" and all(s["at"] for s in steps)

    chain = shop.post("/v1/audit/verify", headers=officer)
    assert chain.status_code == 200 and chain.json()["ok"] is True, chain.text
    actions = audit_actions(shop, officer, request_id)
    for expected_action in (
        "dsr.received",
        "dsr.verify",
        "dsr.list",
        "dsr.read",
        "dsr.start",
        "dsr.complete",
        "dsr.history",
    ):
        assert expected_action in actions, actions


def test_the_signed_link_verifies_after_a_button_press(
    shop: TestClient, smtp: SmtpServer, workspace: str, officer: dict[str, str]
) -> None:
    request_id = file(shop, workspace, type="portability").json()["request"]["id"]
    mail = last_mail(smtp)
    page = shop.get(mail.path)
    assert page.status_code == 200, page.text
    assert "Confirm my request" in page.text and "<script" not in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert shop.get(f"/v1/privacy/requests/{request_id}", headers=officer).json()["status"] == (
        "unverified"  # opening the link (what a mail scanner does) changes nothing
    )
    forged = shop.post(mail.path)  # no CSRF token: another site cannot confirm
    assert forged.status_code == 403
    csrf = shop.cookies.get("consentry_dsr_csrf")
    assert csrf
    confirmed = shop.post(mail.path, data={"csrf_token": csrf})
    assert confirmed.status_code == 200, confirmed.text
    assert "Your request is confirmed" in confirmed.text
    shown = shop.get(f"/v1/privacy/requests/{request_id}", headers=officer).json()
    assert (shown["status"], shown["verified_by"]) == ("verified", "link")
    assert shop.get(mail.path[:-3] + "xyz").status_code == 400


def test_wrong_codes_are_limited_and_a_resent_code_voids_the_old_one(
    database_url: str, db: Database, smtp: SmtpServer, workspace: str
) -> None:
    client = next(client_for(database_url, db, smtp.port, code_attempts=3))
    request_id = file(client, workspace).json()["request"]["id"]
    first = last_mail(smtp)
    wrong = "000000" if first.code != "000000" else "111111"
    url = f"/v1/privacy/requests/{request_id}/verify"
    for left in (2, 1):
        answer = client.post(url, json={"workspace": workspace, "code": wrong})
        assert answer.status_code == 400, answer.text
        assert answer.json()["errors"] == [
            {
                "index": None,
                "field": "code",
                "reason": f"wrong code; {left} attempt" + ("s" if left != 1 else "") + " left",
            }
        ]
    last = client.post(url, json={"workspace": workspace, "code": wrong})
    assert last.status_code == 409 and "too many wrong codes" in last.json()["message"]
    right = client.post(url, json={"workspace": workspace, "code": first.code})
    assert right.status_code == 409  # the code is spent, even the right one
    malformed = client.post(url, json={"workspace": workspace, "code": "12ab56"})
    assert malformed.status_code == 400 and malformed.json()["errors"][0]["field"] == "code"

    resent = client.post(f"/v1/privacy/requests/{request_id}/resend", json={"workspace": workspace})
    assert resent.status_code == 200, resent.text
    second = last_mail(smtp)
    assert second.code and second.path != first.path
    stale = client.post(first.path, data={"csrf_token": _csrf(client, first.path)})
    assert stale.status_code == 410 and "replaced" in stale.text
    ok = client.post(url, json={"workspace": workspace, "code": second.code})
    assert ok.status_code == 200, ok.text


def _csrf(client: TestClient, path: str) -> str:
    client.get(path)
    value = client.cookies.get("consentry_dsr_csrf")
    assert value
    return value


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "ada@"}, "email"),
        ({"type": "forget_me_please"}, "type"),
        ({"country": "ZZ"}, "country"),
        ({"message": "bell\u0007"}, "message"),
        ({"type": None}, "type"),
        ({"surprise": 1}, "surprise"),
        ({"email": "x" * 400 + "@example.com"}, "email"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    shop: TestClient, workspace: str, change: dict[str, Any], field: str
) -> None:
    body = {"workspace": workspace, "type": "access", "email": ADA, **change}
    answer = shop.post("/v1/privacy/requests/public", json=body)
    assert answer.status_code == 400, answer.text
    assert field in [e["field"] for e in answer.json()["errors"]], answer.text


def test_bad_bodies_and_unknown_workspaces_never_give_a_500(shop: TestClient) -> None:
    assert shop.post("/v1/privacy/requests/public", content=b"{").status_code == 400
    assert shop.post("/v1/privacy/requests/public", json=[]).status_code == 400
    unknown = file(shop, "no-such-shop")
    assert unknown.status_code == 404, unknown.text
    assert file(shop, "x" * 65).status_code == 400


def test_every_error_of_the_mail_server_keeps_the_request(
    database_url: str, db: Database, workspace: str, smtp: SmtpServer
) -> None:
    down = SmtpServer(free_port())  # not started
    client = next(client_for(database_url, db, down.port))
    answer = file(client, workspace)
    assert answer.status_code == 502, answer.text
    body = answer.json()
    assert body["code"] == "delivery_failed" and body["verification"]["sent"] is False
    request_id = body["request"]["id"]
    down.start()
    try:
        resent = client.post(body["verification"]["resend_url"], json={"workspace": workspace})
        assert resent.status_code == 200, resent.text
        code = last_mail(down).code
        verified = client.post(
            f"/v1/privacy/requests/{request_id}/verify", json={"workspace": workspace, "code": code}
        )
        assert verified.status_code == 200
    finally:
        down.stop()


def test_another_workspace_sees_nothing(
    shop: TestClient, smtp: SmtpServer, db: Database, workspace: str, officer: dict[str, str]
) -> None:
    request_id = file(shop, workspace).json()["request"]["id"]
    code = last_mail(smtp).code
    other = new_workspace(db)
    stranger = auth(token(db, other))
    for method, path in (
        ("GET", ""),
        ("GET", "/history"),
        ("POST", "/start"),
        ("POST", "/complete"),
        ("POST", "/extend"),
    ):
        answer = shop.request(
            method,
            f"/v1/privacy/requests/{request_id}{path}",
            headers=stranger,
            json={"reason": "because"} if method == "POST" else None,
        )
        assert answer.status_code == 404, (path, answer.text)
    assert shop.get("/v1/privacy/requests", headers=stranger).json()["requests"] == []
    wrong_ws = shop.post(
        f"/v1/privacy/requests/{request_id}/verify", json={"workspace": other, "code": code}
    )
    assert wrong_ws.status_code == 404
    marketer = auth(token(db, workspace, tenancy.Role.MARKETER))
    assert shop.get("/v1/privacy/requests", headers=marketer).status_code == 403
    assert shop.get("/v1/privacy/requests").status_code == 401


def test_the_queue_puts_overdue_first_and_filters(
    shop: TestClient, db: Database, workspace: str, officer: dict[str, str]
) -> None:
    now = utcnow()
    late = made_at(db, workspace, now - timedelta(days=50), country="US", start=True)
    fresh = made_at(db, workspace, now - timedelta(days=1), request_type="erasure", country="FR")
    soon = made_at(db, workspace, now - timedelta(days=40), request_type="objection", country="US")
    pending = made_at(db, workspace, now, verify=False, email="someone@example.com")
    queue = shop.get("/v1/privacy/requests", headers=officer).json()
    rows = queue["requests"]
    assert [r["id"] for r in rows] == [late.id, soon.id, fresh.id, pending.id]
    assert rows[0]["overdue"] is True and rows[0]["days_left"] == -5
    assert rows[1]["days_left"] == 5 and rows[1]["jurisdiction"] == "ccpa"
    assert rows[0]["due_at"] == (late.received_at + timedelta(days=45)).isoformat()
    only = shop.get("/v1/privacy/requests", params={"type": "erasure"}, headers=officer).json()[
        "requests"
    ]
    assert [r["id"] for r in only] == [fresh.id]
    started = shop.get(
        "/v1/privacy/requests", params={"status": "in_progress"}, headers=officer
    ).json()["requests"]
    assert [r["id"] for r in started] == [late.id]
    for bad in ({"status": "done"}, {"type": "nope"}, {"limit": 0}):
        answer = shop.get("/v1/privacy/requests", params=bad, headers=officer)
        assert answer.status_code == 400, answer.text


def test_the_queue_is_paged_in_its_order_and_a_closed_request_is_never_overdue(
    shop: TestClient, db: Database, workspace: str, officer: dict[str, str]
) -> None:
    now = utcnow()
    late = made_at(db, workspace, now - timedelta(days=50), country="US", start=True)
    closed = made_at(
        db, workspace, now - timedelta(days=60), country="US", start=True, email="bo@example.com"
    )
    done = shop.post(f"/v1/privacy/requests/{closed.id}/complete", headers=officer)
    assert done.status_code == 200, done.text
    fresh = made_at(db, workspace, now - timedelta(days=1), request_type="erasure", country="FR")
    everything = shop.get("/v1/privacy/requests", params={"status": "all"}, headers=officer)
    assert everything.json()["total"] == 3
    rows = everything.json()["requests"]
    assert [r["id"] for r in rows] == [late.id, closed.id, fresh.id]
    assert [r["overdue"] for r in rows] == [True, False, False]
    page = shop.get(
        "/v1/privacy/requests",
        params={"status": "all", "limit": 1, "offset": 1},
        headers=officer,
    ).json()
    assert page["total"] == 3 and [r["id"] for r in page["requests"]] == [closed.id]


def test_reject_and_extend_need_a_reason_and_the_person_is_told_of_the_extension(
    shop: TestClient, smtp: SmtpServer, db: Database, workspace: str, officer: dict[str, str]
) -> None:
    made = made_at(db, workspace, utcnow() - timedelta(days=3), email=ADA, country="IE")
    base = f"/v1/privacy/requests/{made.id}"
    assert shop.post(f"{base}/extend", json={}, headers=officer).status_code == 400
    personal = shop.post(f"{base}/extend", json={"reason": "write to x@y.com"}, headers=officer)
    assert personal.status_code == 400 and personal.json()["errors"][0]["field"] == "reason"
    extended = shop.post(
        f"{base}/extend", json={"reason": "records in three systems"}, headers=officer
    )
    assert extended.status_code == 200, extended.text
    shown = extended.json()
    assert shown["extended"] is True and shown["notice_sent"] is True
    assert shown["due_at"] == rq.add_months(made.received_at, 3).isoformat()
    assert shown["original_due_at"] == made.due_at.isoformat()
    notice = last_mail(smtp)
    assert notice.to == ADA and "more time needed" in notice.subject
    assert "records in three systems" in notice.text
    assert rq.add_months(made.received_at, 3).date().isoformat() in notice.text
    twice = shop.post(f"{base}/extend", json={"reason": "again"}, headers=officer)
    assert twice.status_code == 409 and "extended already" in twice.json()["message"]

    assert shop.post(f"{base}/reject", json={}, headers=officer).status_code == 400
    rejected = shop.post(f"{base}/reject", json={"reason": "manifestly unfounded"}, headers=officer)
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert rejected.json()["resolution"] == "manifestly unfounded"


def test_staff_intake_verified_for_a_known_profile_and_duplicates(
    shop: TestClient,
    smtp: SmtpServer,
    db: Database,
    workspace: str,
    write_key: str,
    officer: dict[str, str],
) -> None:
    sent = shop.post(
        "/v1/identify",
        json=identify(userId="u-ada", traits={"email": ADA}),
        headers=basic(write_key),
    )
    assert sent.status_code == 200
    shop.app.state.ingest_writer.settle()  # type: ignore[attr-defined]
    first = shop.post(
        "/v1/privacy/requests",
        json={"type": "erasure", "user_id": "u-ada", "verified": True, "reason": "phone call"},
        headers=officer,
    )
    assert first.status_code == 201, first.text
    made = first.json()["request"]
    assert (made["status"], made["verified_by"], made["source"]) == ("verified", "staff", "staff")
    assert made["profile_id"]
    again = shop.post(
        "/v1/privacy/requests",
        json={"type": "erasure", "email": ADA.upper(), "verified": True},
        headers=officer,
    )
    assert again.status_code == 200, again.text
    assert again.json()["duplicate_of"] == made["id"]
    other_type = shop.post(
        "/v1/privacy/requests",
        json={"type": "access", "email": ADA, "verified": True},
        headers=officer,
    )
    assert other_type.status_code == 201
    unknown = shop.post(
        "/v1/privacy/requests",
        json={"type": "access", "email": "nobody@example.com", "verified": True},
        headers=officer,
    )
    assert unknown.status_code == 404
    nobody = shop.post("/v1/privacy/requests", json={"type": "access"}, headers=officer)
    assert nobody.status_code == 400 and nobody.json()["errors"][0]["field"] == "email"
    steps = admin_steps(shop, officer, made["id"])
    assert [(s["action"], s["details"].get("by")) for s in steps] == [
        ("received", None),
        ("verify", "staff"),
    ]
    assert steps[0]["reason"] == "phone call"
    assert "dsr.duplicate" in audit_actions(shop, officer, made["id"])

    # the person files the same request on the form: once verified, it is the duplicate
    public = file(shop, workspace, type="erasure", email=ADA)
    assert public.status_code == 201, public.text
    code = last_mail(smtp).code
    verified = shop.post(
        f"/v1/privacy/requests/{public.json()['request']['id']}/verify",
        json={"workspace": workspace, "code": code},
    )
    assert verified.status_code == 200, verified.text
    answer = verified.json()
    assert answer["duplicate_of"]["id"] == made["id"]
    assert answer["request"]["status"] == "rejected"


def test_a_verified_request_is_linked_to_the_profile_of_its_email_and_can_be_relinked(
    shop: TestClient,
    smtp: SmtpServer,
    db: Database,
    workspace: str,
    write_key: str,
    officer: dict[str, str],
) -> None:
    for user, email in (("u-1", ADA), ("u-2", "bob.dsr@example.com")):
        shop.post(
            "/v1/identify",
            json=identify(userId=user, traits={"email": email}),
            headers=basic(write_key),
        )
    shop.app.state.ingest_writer.settle()  # type: ignore[attr-defined]
    answer = file(shop, workspace, type="erasure", email=ADA)
    request_id = answer.json()["request"]["id"]
    code = last_mail(smtp).code
    shop.post(
        f"/v1/privacy/requests/{request_id}/verify", json={"workspace": workspace, "code": code}
    )
    ada_id = shop.get("/v1/profiles", params={"user_id": "u-1"}, headers=officer).json()[
        "profiles"
    ][0]["id"]
    assert (
        shop.get(f"/v1/privacy/requests/{request_id}", headers=officer).json()["profile_id"]
        == ada_id
    )
    relinked = shop.post(
        f"/v1/privacy/requests/{request_id}/link", json={"user_id": "u-2"}, headers=officer
    )
    assert relinked.status_code == 200, relinked.text
    assert relinked.json()["profile_id"] != ada_id
    missing = shop.post(
        f"/v1/privacy/requests/{request_id}/link", json={"user_id": "u-404"}, headers=officer
    )
    assert missing.status_code == 404
    shop.post(f"/v1/privacy/requests/{request_id}/reject", json={"reason": "x"}, headers=officer)
    closed = shop.post(
        f"/v1/privacy/requests/{request_id}/link", json={"user_id": "u-1"}, headers=officer
    )
    assert closed.status_code == 409 and "the request is rejected" in closed.json()["message"]


def test_the_access_archive_lists_the_persons_requests(
    shop: TestClient,
    smtp: SmtpServer,
    db: Database,
    workspace: str,
    write_key: str,
    officer: dict[str, str],
) -> None:
    shop.post(
        "/v1/identify",
        json=identify(userId="u-ada", traits={"email": ADA}),
        headers=basic(write_key),
    )
    shop.post(
        "/v1/identify",
        json=identify(userId="u-bob", traits={"email": "bob.dsr@example.com"}),
        headers=basic(write_key),
    )
    shop.app.state.ingest_writer.settle()  # type: ignore[attr-defined]

    def archive(user_id: str) -> dict[str, bytes]:
        answer = shop.post("/v1/privacy/access-exports", json={"user_id": user_id}, headers=officer)
        assert answer.status_code == 200, answer.text
        with zipfile.ZipFile(io.BytesIO(answer.content)) as zipped:
            return {n: zipped.read(n) for n in zipped.namelist()}

    before = archive("u-ada")
    assert json.loads(before["json/requests.json"]) == []
    assert b"No privacy request of yours" in before["summary.html"]

    filed = file(shop, workspace, type="access", email=ADA.upper(), message="all of it please")
    request_id = filed.json()["request"]["id"]  # not verified, not linked: found by its email
    after = archive("u-ada")
    (listed,) = json.loads(after["json/requests.json"])
    assert listed["id"] == request_id and listed["email"] == ADA
    assert listed["message"] == "all of it please"
    assert [s["action"] for s in listed["history"]] == ["received"]
    assert b"No privacy request of yours" not in after["summary.html"]
    assert json.loads(after["manifest.json"])["counts"]["requests"] == 1
    assert json.loads(archive("u-bob")["json/requests.json"]) == []
