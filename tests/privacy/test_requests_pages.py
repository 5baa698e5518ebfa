"""The pages of data-subject requests over HTTP on both stores: the public form (CSRF, errors
that keep what was typed, the code page, resend), the link from the preference center, and the
dashboard queue with overdue requests highlighted and its actions."""

from __future__ import annotations

import html
import re
from datetime import timedelta

from fastapi.testclient import TestClient

from consentry.platform import tenancy
from consentry.platform.db import Database, utcnow
from tests.privacy.requests_support import (
    SmtpServer,
    auth,
    last_mail,
    made_at,
    token,
)
from tests.support.segment import basic, identify

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


def form_token(page_text: str) -> str:
    found = _CSRF.search(page_text)
    assert found is not None, page_text
    return found.group(1)


def test_file_a_request_on_the_form_and_confirm_it_with_the_code(
    shop: TestClient, smtp: SmtpServer, db: Database, workspace: str
) -> None:
    shop.put(
        "/v1/consent/branding",
        json={"brand_name": "Gilded <Goods>", "primary_color": "#ffd700"},
        headers=auth(token(db, workspace)),
    )
    page = shop.get(f"/privacy-request/{workspace}")
    assert page.status_code == 200, page.text
    assert "Make a privacy request" in page.text and "Gilded &lt;Goods&gt;" in page.text
    assert "<script" not in page.text and 'value="opt_out_sale"' in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "form-action 'self'" in policy
    assert "style-src 'sha256-" in policy
    cookie = page.headers["set-cookie"]
    assert "consentry_dsr_csrf=" in cookie and "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    csrf = form_token(page.text)

    # no CSRF token (a form posted from another site): refused, nothing recorded
    forged = shop.post(
        f"/privacy-request/{workspace}", data={"type": "access", "email": "ada@example.com"}
    )
    assert forged.status_code == 403 and "expired" in forged.text
    assert not smtp.inbox.messages

    # errors name the fields and keep what was typed
    bad = shop.post(
        f"/privacy-request/{workspace}",
        data={"csrf_token": csrf, "type": "nope", "email": "ada@", "message": "<b>hi</b>"},
    )
    assert bad.status_code == 400, bad.text
    assert "type: one of access" in bad.text and "email: not an email address" in bad.text
    assert 'value="ada@"' in bad.text and "&lt;b&gt;hi&lt;/b&gt;" in bad.text

    sent = shop.post(
        f"/privacy-request/{workspace}",
        data={"csrf_token": csrf, "type": "erasure", "email": "Ada@Example.com", "country": "fr"},
        follow_redirects=False,
    )
    assert sent.status_code == 303, sent.text
    location = sent.headers["location"]
    assert location.startswith(f"/privacy-request/{workspace}/rq-") and location.endswith("sent=1")
    mail = last_mail(smtp)
    assert mail.to == "ada@example.com"

    code_page = shop.get(location)
    assert code_page.status_code == 200 and "We sent a six-digit code" in code_page.text
    assert "Delete my data" in code_page.text and "GDPR" in code_page.text
    action = html.unescape(_ACTION.findall(code_page.text)[0])
    wrong = "000000" if mail.code != "000000" else "111111"
    refused = shop.post(action, data={"csrf_token": csrf, "code": wrong})
    assert refused.status_code == 400 and "4 attempts left" in refused.text
    short = shop.post(action, data={"csrf_token": csrf, "code": "12"})
    assert short.status_code == 400 and "six digits" in short.text
    done = shop.post(action, data={"csrf_token": csrf, "code": f"{mail.code[:3]} {mail.code[3:]}"})
    assert done.status_code == 200, done.text
    assert "Your request is confirmed" in done.text and 'id="code"' not in done.text
    request_id = location.split("/")[-1].split("?")[0]
    with db.read() as session:
        from consentry.privacy import request_service

        found = request_service.get_request(
            session=session, workspace_id=workspace, request_id=request_id
        )
    assert (found.status, found.verified_by, found.type) == ("verified", "code", "erasure")


def test_resend_from_the_page_and_unknown_pages(
    shop: TestClient, smtp: SmtpServer, workspace: str
) -> None:
    csrf = form_token(shop.get(f"/privacy-request/{workspace}").text)
    location = shop.post(
        f"/privacy-request/{workspace}",
        data={"csrf_token": csrf, "type": "access", "email": "kim@example.com"},
        follow_redirects=False,
    ).headers["location"]
    first = last_mail(smtp)
    page = shop.get(location)
    resend_action = html.unescape(_ACTION.findall(page.text)[1])
    assert resend_action.endswith("/resend")
    again = shop.post(resend_action, data={"csrf_token": csrf}, follow_redirects=False)
    assert again.status_code == 303
    second = last_mail(smtp)
    assert second.code and second.path != first.path and len(smtp.inbox.messages) == 2
    assert shop.get("/privacy-request/no-such-shop").status_code == 404
    assert shop.get(f"/privacy-request/{workspace}/rq-{'0' * 32}").status_code == 404
    assert shop.get("/dsr/not-a-token").status_code == 400


def test_the_preference_center_links_to_the_form(
    shop: TestClient, db: Database, workspace: str, write_key: str
) -> None:
    headers = auth(token(db, workspace))
    shop.post("/v1/identify", json=identify(userId="u-1"), headers=basic(write_key))
    shop.app.state.ingest_writer.settle()  # type: ignore[attr-defined]
    link = shop.post("/v1/consent/links", json={"user_id": "u-1"}, headers=headers)
    assert link.status_code == 201, link.text
    path = "/p/" + link.json()["token"]
    page = shop.get(path)
    assert page.status_code == 200, page.text
    assert f'<a id="data-request" href="/privacy-request/{workspace}">' in page.text
    assert "Make a privacy request" in page.text
    assert "Faire une demande" in shop.get(path, params={"lang": "fr"}).text


def test_the_dashboard_queue_highlights_overdue_requests_and_acts(
    shop: TestClient, smtp: SmtpServer, db: Database, workspace: str
) -> None:
    now = utcnow()
    late = made_at(db, workspace, now - timedelta(days=60), country="DE", start=True)
    fresh = made_at(db, workspace, now - timedelta(days=2), request_type="erasure")
    closed = made_at(db, workspace, now - timedelta(days=3), email="closed@example.com")
    with db.write() as session:
        from consentry.privacy import request_service

        request_service.transition(
            session=session,
            workspace_id=workspace,
            request_id=closed.id,
            action="reject",
            actor="cli:test",
            reason="test",
        )
    officer = token(db, workspace, tenancy.Role.PRIVACY_OFFICER)
    login = shop.get("/app/login")
    signed = shop.post(
        "/app/login",
        data={"token": officer, "csrf_token": form_token(login.text)},
        follow_redirects=False,
    )
    assert signed.status_code == 303
    page = shop.get("/app/privacy/requests")
    assert page.status_code == 200, page.text
    assert '<a href="/app/privacy/requests">Privacy requests</a>' in page.text
    rows = re.findall(r'<tr class="([^"]*)" data-id="([^"]+)">', page.text)
    assert rows == [("overdue", late.id), ("", fresh.id)]  # closed ones are not in the queue
    assert "<strong>overdue</strong>" in page.text
    assert '<span class="value">1</span><span class="label">overdue' in page.text
    everything = shop.get("/app/privacy/requests", params={"status": "all"})
    assert closed.id in everything.text
    assert shop.get("/app/privacy/requests", params={"status": "nope"}).status_code == 400

    one = shop.get(f"/app/privacy/requests/{fresh.id}")
    assert one.status_code == 200 and "old.request@example.com" in one.text
    assert 'id="action-start"' in one.text and 'id="action-complete"' not in one.text
    csrf = form_token(one.text)
    no_csrf = shop.post(f"/app/privacy/requests/{fresh.id}/start", data={})
    assert no_csrf.status_code == 403
    started = shop.post(
        f"/app/privacy/requests/{fresh.id}/start",
        data={"csrf_token": csrf, "reason": "on it"},
        follow_redirects=False,
    )
    assert started.status_code == 303, started.text
    after = shop.get(started.headers["location"])
    assert "Done: start." in after.text and 'id="action-complete"' in after.text
    assert "on it" in after.text  # the history shows the step and its reason
    extended = shop.post(
        f"/app/privacy/requests/{fresh.id}/extend",
        data={"csrf_token": csrf, "reason": "a complex request"},
        follow_redirects=False,
    )
    assert extended.status_code == 303, extended.text
    assert extended.headers["location"].endswith("?done=extend&notice=sent")
    notice = last_mail(smtp)
    assert notice.to == "old.request@example.com" and "a complex request" in notice.text
    assert "mailed the new date" in shop.get(extended.headers["location"]).text
    bad = shop.post(
        f"/app/privacy/requests/{late.id}/start", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert bad.status_code == 409 and "the request is in_progress" in bad.text

    marketer = token(db, workspace, tenancy.Role.MARKETER)
    shop.cookies.clear()
    login = shop.get("/app/login")
    shop.post("/app/login", data={"token": marketer, "csrf_token": form_token(login.text)})
    assert shop.get("/app/privacy/requests").status_code == 403
