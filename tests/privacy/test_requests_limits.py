"""The limits of the public intake of data-subject requests, on both stores through the real
app (the public API and the form): per email address, per client network, new codes per
request, codes tried per network; 429 with Retry-After and the field limited; the window
expiring (attempts made in the past through the service, the clock injected as the other
request tests do); the counts shared by two server processes; duplicates still answered."""

from __future__ import annotations

import html
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from consentry.api import create_app
from consentry.config import Settings
from consentry.errors import TooManyRequests
from consentry.platform.db import Database, utcnow
from consentry.privacy import request_limits as limits
from consentry.privacy import request_service as service
from consentry.privacy import requests as rq
from consentry.privacy.request_tables import RequestAttemptRow, RequestRow
from consentry.stores import close_database, open_database
from tests.privacy.requests_support import (
    SECRET,
    SmtpServer,
    app_settings,
    client_for,
    file,
    last_mail,
)

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CLIENT = "203.0.113.9"  # the test client's address (requests_support.client_for)


def requests_of(db: Database, workspace: str) -> int:
    with db.read() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(RequestRow)
                .where(RequestRow.workspace_id == workspace)
            )
            or 0
        )


def attempts_of(db: Database, workspace: str) -> list[tuple[str, str, datetime]]:
    """The workspace's counted attempts: (kind, key, at)."""
    with db.read() as session:
        r = RequestAttemptRow
        return [
            (kind, key, at)
            for kind, key, at in session.execute(
                select(r.kind, r.key, r.at).where(r.workspace_id == workspace)
            )
        ]


def assert_limited(answer: Any, field: str, reason: str, most: int) -> int:
    assert answer.status_code == 429, answer.text
    body = answer.json()
    assert body["code"] == "rate_limited"
    assert body["errors"] == [{"index": None, "field": field, "reason": reason}]
    wait = int(answer.headers["retry-after"])
    assert 1 <= wait <= most and body["retry_after"] == wait
    return wait


# --- the rules (pure) ---------------------------------------------------------------------------


def test_the_window_slides_and_says_how_long_to_wait() -> None:
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    limit = rq.Limit(3, timedelta(hours=1))
    newest_first = [now - timedelta(minutes=m) for m in (1, 10, 40)]
    assert rq.retry_after(newest_first[:2], limit, now) is None
    assert rq.retry_after(newest_first, limit, now) == 20 * 60  # the 40-minute-old one leaves
    old = [now - timedelta(minutes=m) for m in (1, 10, 61)]
    assert rq.retry_after(old, limit, now) is None  # one is outside the window already
    assert rq.retry_after(newest_first, rq.Limit(0, timedelta(hours=1)), now) is None
    assert rq.retry_after([now] * 3, limit, now) == 3600
    assert (rq.window_text(timedelta(hours=24)), rq.window_text(timedelta(minutes=90))) == (
        "24 hours",
        "90 minutes",
    )
    assert rq.wait_text(30) == "a minute" and rq.wait_text(3600) == "about 60 minutes"
    assert rq.wait_text(5 * 3600) == "about 5 hours"


def test_a_client_is_counted_by_its_network_and_never_stored_in_clear() -> None:
    assert rq.client_network("203.0.113.9") == rq.client_network("203.0.113.200")
    assert rq.client_network("203.0.113.9") != rq.client_network("203.0.114.9")
    assert rq.client_network("2001:db8:1:2::7") == rq.client_network("2001:db8:1:ffff::1")
    assert rq.client_network("::ffff:203.0.113.9") == "203.0.113.0"
    assert rq.client_network(None) == rq.client_network(" ") == rq.UNKNOWN_CLIENT
    assert rq.client_network("testclient") == "host:testclient"
    key = rq.network_key("secret", "ws-a", "203.0.113.9")
    assert re.fullmatch(r"[0-9a-f]{64}", key) and "203" not in key
    assert key == rq.network_key("secret", "ws-a", "203.0.113.77")
    assert key != rq.network_key("secret", "ws-b", "203.0.113.9")  # per workspace
    assert key != rq.network_key("other", "ws-a", "203.0.113.9")  # keyed by the secret
    defaults = rq.DEFAULT_RULES.limits
    assert (defaults.per_email.count, defaults.per_email.window) == (5, timedelta(hours=24))
    assert (defaults.per_network.count, defaults.resends.count) == (20, 3)
    assert defaults.longest == timedelta(hours=24)


# --- the public API -----------------------------------------------------------------------------


def test_requests_per_email_are_limited_and_a_duplicate_is_still_answered(
    database_url: str, db: Database, smtp: SmtpServer, workspace: str
) -> None:
    client = next(client_for(database_url, db, smtp.port, limit_per_email=2))
    first = file(client, workspace, email="Ada@Example.com")
    assert first.status_code == 201, first.text
    code = last_mail(smtp).code
    verify = f"/v1/privacy/requests/{first.json()['request']['id']}/verify"
    assert client.post(verify, json={"workspace": workspace, "code": code}).status_code == 200
    again = file(client, workspace, email="ada@example.com")  # the same address, normalised
    assert again.status_code == 201, again.text
    code = last_mail(smtp).code
    repeat = f"/v1/privacy/requests/{again.json()['request']['id']}/verify"
    answered = client.post(repeat, json={"workspace": workspace, "code": code})
    assert answered.status_code == 200, answered.text
    assert answered.json()["duplicate_of"]["id"] == first.json()["request"]["id"]

    mails = len(smtp.inbox.messages)
    third = file(client, workspace, email="ada@example.com", type="erasure")
    assert_limited(third, "email", "at most 2 requests for this email address in 24 hours", 86400)
    assert len(smtp.inbox.messages) == mails and requests_of(db, workspace) == 2
    other = file(client, workspace, email="grace@example.com")
    assert other.status_code == 201, other.text
    counted = attempts_of(db, workspace)
    assert {kind for kind, _, _ in counted} == {rq.BY_EMAIL, rq.BY_NETWORK, rq.BY_CODE_NETWORK}
    for _, key, _ in counted:  # no address, no email in clear
        assert re.fullmatch(r"[0-9a-f]{64}", key), key
    assert requests_of(db, workspace) == 3


def test_requests_per_network_are_limited_and_another_network_is_not(
    database_url: str, db: Database, smtp: SmtpServer, workspace: str
) -> None:
    settings = app_settings(database_url, smtp.port, limit_per_network=3)
    app = create_app(settings, db)
    with (
        TestClient(app, client=(CLIENT, 40000)) as near,
        TestClient(app, client=("203.0.113.250", 40001)) as same_net,
        TestClient(app, client=("198.51.100.7", 40002)) as far,
    ):
        for n in range(3):
            assert file(near, workspace, email=f"p{n}@example.com").status_code == 201
        limited = file(same_net, workspace, email="p9@example.com")  # the same /24
        assert_limited(
            limited, "client", "at most 3 requests and new codes from your network in 1 hour", 3600
        )
        assert file(far, workspace, email="p9@example.com").status_code == 201
    assert requests_of(db, workspace) == 4


def test_the_window_expires(
    database_url: str, db: Database, smtp: SmtpServer, workspace: str
) -> None:
    now = utcnow()
    guard = limits.Guard(CLIENT)

    def made(email: str, when: datetime) -> None:
        with db.write() as session:
            service.submit(
                session=session,
                workspace_id=workspace,
                request_type="access",
                email=email,
                rules=rq.DEFAULT_RULES,
                secret=SECRET,
                now=when,
                guard=guard,
            )

    for minutes in range(5):  # five requests 23 hours ago: the sixth waits about an hour
        made("late@example.com", now - timedelta(hours=23, minutes=minutes))
    for minutes in range(5):  # five 25 hours ago: out of the window
        made("early@example.com", now - timedelta(hours=25, minutes=minutes))
    with db.write() as session, pytest.raises(rq.RateLimited) as refused:
        service.submit(
            session=session,
            workspace_id=workspace,
            request_type="access",
            email="late@example.com",
            rules=rq.DEFAULT_RULES,
            secret=SECRET,
            now=now - timedelta(hours=22),
            guard=guard,
        )
    # at that time the oldest of the five leaves the window 22 h 56 min later
    assert isinstance(refused.value, TooManyRequests)
    assert refused.value.retry_after == 22 * 3600 + 56 * 60

    client = next(client_for(database_url, db, smtp.port))
    wait = assert_limited(
        file(client, workspace, email="late@example.com"),
        "email",
        "at most 5 requests for this email address in 24 hours",
        3600,
    )
    assert 3600 - 4 * 60 - 120 <= wait <= 3600 - 4 * 60  # the oldest of the five leaves first
    allowed = file(client, workspace, email="early@example.com")
    assert allowed.status_code == 201, allowed.text
    # the attempts past the longest window were deleted as the workspace counted
    stale = [at for _, _, at in attempts_of(db, workspace) if at <= now - timedelta(hours=24)]
    assert stale == []


def test_resends_per_request_are_limited(
    database_url: str, db: Database, smtp: SmtpServer, workspace: str
) -> None:
    client = next(client_for(database_url, db, smtp.port, limit_resends=2))
    request_id = file(client, workspace).json()["request"]["id"]
    url = f"/v1/privacy/requests/{request_id}/resend"
    for _ in range(2):
        assert client.post(url, json={"workspace": workspace}).status_code == 200
    mails = len(smtp.inbox.messages)
    assert_limited(
        client.post(url, json={"workspace": workspace}),
        "request",
        "at most 2 new codes for this request in 1 hour",
        3600,
    )
    assert len(smtp.inbox.messages) == mails == 3
    # the last code still works
    verify = f"/v1/privacy/requests/{request_id}/verify"
    code = last_mail(smtp).code
    assert client.post(verify, json={"workspace": workspace, "code": code}).status_code == 200


def test_codes_tried_per_network_are_limited(
    database_url: str, db: Database, smtp: SmtpServer, workspace: str
) -> None:
    settings = app_settings(database_url, smtp.port, limit_codes_per_network=3)
    app = create_app(settings, db)
    with (
        TestClient(app, client=(CLIENT, 40000)) as guesser,
        TestClient(app, client=("198.51.100.7", 40001)) as owner,
    ):
        request_id = file(owner, workspace).json()["request"]["id"]
        code = last_mail(smtp).code
        wrong = "000000" if code != "000000" else "111111"
        url = f"/v1/privacy/requests/{request_id}/verify"
        for _ in range(3):
            answer = guesser.post(url, json={"workspace": workspace, "code": wrong})
            assert answer.status_code == 400, answer.text
        assert_limited(
            guesser.post(url, json={"workspace": workspace, "code": code}),
            "code",
            "at most 3 codes tried from your network in 1 hour",
            3600,
        )
        done = owner.post(url, json={"workspace": workspace, "code": code})
        assert done.status_code == 200, done.text


def test_the_counts_hold_across_server_processes(
    database_url: str, db: Database, smtp: SmtpServer, workspace: str
) -> None:
    """Two servers over the same store (another process, or the same after a restart) share
    the counts: the limit is in the database, not in memory."""
    settings = app_settings(database_url, smtp.port, limit_per_email=2)
    other_store = open_database(Settings(environment="test", database_url=database_url))
    try:
        with (
            TestClient(create_app(settings, db), client=(CLIENT, 1)) as one,
            TestClient(create_app(settings, other_store), client=(CLIENT, 2)) as two,
        ):
            assert file(one, workspace).status_code == 201
            assert file(two, workspace).status_code == 201
            assert file(one, workspace).status_code == 429
            assert file(two, workspace).status_code == 429
    finally:
        close_database(other_store)


def test_concurrent_intakes_never_pass_the_limit(
    database_url: str, db: Database, workspace: str
) -> None:
    rules = rq.Rules(
        jurisdictions=rq.DEFAULT_RULES.jurisdictions,
        limits=rq.Limits(per_email=rq.Limit(3, timedelta(hours=24))),
    )
    stores = [
        open_database(Settings(environment="test", database_url=database_url)) for _ in range(4)
    ]

    def attempt(n: int) -> bool:
        try:
            with stores[n % 4].write() as session:
                service.submit(
                    session=session,
                    workspace_id=workspace,
                    request_type="access",
                    email="race@example.com",
                    rules=rules,
                    secret=SECRET,
                    guard=limits.Guard(f"198.51.{n}.1"),
                )
        except rq.RateLimited:
            return False
        return True

    try:
        with ThreadPoolExecutor(8) as pool:
            taken = list(pool.map(attempt, range(12)))
    finally:
        for store in stores:
            close_database(store)
    assert sum(taken) == 3 and requests_of(db, workspace) == 3


# --- the form -----------------------------------------------------------------------------------


def test_the_form_says_what_was_limited_with_a_429(
    database_url: str, db: Database, smtp: SmtpServer, workspace: str
) -> None:
    client = next(
        client_for(
            database_url,
            db,
            smtp.port,
            limit_per_email=1,
            limit_resends=1,
            limit_codes_per_network=2,
        )
    )
    page = client.get(f"/privacy-request/{workspace}")
    csrf = _CSRF.search(page.text)
    assert csrf is not None
    token = csrf.group(1)
    form = {"csrf_token": token, "type": "access", "email": "ada@example.com"}
    sent = client.post(f"/privacy-request/{workspace}", data=form, follow_redirects=False)
    assert sent.status_code == 303, sent.text
    location = sent.headers["location"].split("?")[0]

    again = client.post(f"/privacy-request/{workspace}", data={**form, "message": "hi <3"})
    assert again.status_code == 429, again.text
    assert 1 <= int(again.headers["retry-after"]) <= 86400
    assert "Several requests were made for this email address recently" in again.text
    assert 'value="ada@example.com"' in again.text and "hi &lt;3" in again.text
    assert requests_of(db, workspace) == 1

    resend = f"{location}/resend"
    assert (
        client.post(resend, data={"csrf_token": token}, follow_redirects=False).status_code == 303
    )
    refused = client.post(resend, data={"csrf_token": token})
    assert refused.status_code == 429 and "retry-after" in refused.headers
    assert "You asked for new codes too often" in html.unescape(refused.text)

    code = last_mail(smtp).code
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(2):
        assert client.post(location, data={"csrf_token": token, "code": wrong}).status_code == 400
    blocked = client.post(location, data={"csrf_token": token, "code": code})
    assert blocked.status_code == 429 and "retry-after" in blocked.headers
    assert "Too many codes were tried from your network" in blocked.text
    assert 'id="code"' in blocked.text  # still unverified: the box stays
