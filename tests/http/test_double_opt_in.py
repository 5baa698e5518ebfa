"""Double opt-in end to end on both stores, with a real SMTP server (aiosmtpd) on a free port:
request, read the message the server received, open the link, press the button, and find the
grant in the history and an allowed decision. Also: the SMTP server down (502, the pending
record kept, resend once it is up), expired, forged and superseded links, a second press."""

from __future__ import annotations

import email
import email.policy
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi.testclient import TestClient

from consentry.api import create_app
from consentry.config import DoubleOptInSettings, Settings, SmtpSettings
from consentry.consent import doi, links
from consentry.consent import service as consent
from consentry.platform.db import Database, utcnow
from tests.support.segment import basic, bearer, identify
from tests.support.server import TEST_APP

EMAIL = "marketing.communications.email"
PUBLIC_URL = "https://consent.shop.example"
SECRET = "doi-test-secret"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"


@dataclass
class Inbox:
    """What the SMTP server received."""

    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope, parsed))
        return "250 Message accepted for delivery"

    def last(self) -> EmailMessage:
        assert self.messages, "the SMTP server received nothing"
        return self.messages[-1][1]


class SmtpServer:
    """An aiosmtpd server on a fixed local port that a test can stop and start."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = Inbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def smtp_down() -> Iterator[SmtpServer]:
    """A server that is not running yet (its port is free): start it in the test."""
    server = SmtpServer(free_port())
    yield server
    server.stop()


def app_settings(database_url: str, port: int, ttl_hours: int = 48) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        secret_key=SECRET,
        public_url=PUBLIC_URL + "/",
        smtp=SmtpSettings(
            host="127.0.0.1",
            port=port,
            timeout=5,
            from_address="hello@shop.example",
            from_name="The Shop",
        ),
        double_opt_in=DoubleOptInSettings(link_ttl_hours=ttl_hours),
        **TEST_APP,
    )


def make_client(database_url: str, db: Database, port: int) -> Iterator[TestClient]:
    app = create_app(app_settings(database_url, port), db)
    with TestClient(app, client=("203.0.113.77", 51234)) as test_client:
        yield test_client


@pytest.fixture
def shop(database_url: str, db: Database, smtp_server: SmtpServer) -> Iterator[TestClient]:
    yield from make_client(database_url, db, smtp_server.port)


@pytest.fixture
def shop_without_smtp(
    database_url: str, db: Database, smtp_down: SmtpServer
) -> Iterator[TestClient]:
    yield from make_client(database_url, db, smtp_down.port)


def person(client: TestClient, write_key: str, user_id: str, **traits: Any) -> str:
    """A profile made through ingestion; returns its id."""
    sent = client.post(
        "/v1/identify", json=identify(userId=user_id, traits=traits), headers=basic(write_key)
    )
    assert sent.status_code == 200, sent.text
    client.app.state.ingest_writer.settle()  # type: ignore[attr-defined]
    found = client.get("/v1/consent", params={"user_id": user_id}, headers=AUTH[0])
    assert found.status_code == 200, found.text
    profile_id: str = found.json()["profile_id"]
    return profile_id


AUTH: list[dict[str, str]] = []


@pytest.fixture(autouse=True)
def _auth(admin_token: str) -> Iterator[None]:
    AUTH[:] = [bearer(admin_token)]
    yield
    AUTH.clear()


def ask(client: TestClient, **body: Any) -> Any:
    return client.post("/v1/consent/double-opt-in", json=body, headers=AUTH[0])


def link_in(message: EmailMessage) -> str:
    """The confirmation link of a received message, as a path for the test client."""
    text = message.get_body(("plain",))
    assert text is not None
    found = re.search(r"https?://\S+/c/[A-Za-z0-9_.-]+", text.get_content())
    assert found, text.get_content()
    url = found.group(0)
    assert url.startswith(PUBLIC_URL + "/c/")
    return urlsplit(url).path


def history(client: TestClient, profile_id: str) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/consent/{profile_id}/history", headers=AUTH[0])
    assert answer.status_code == 200, answer.text
    records: list[dict[str, Any]] = answer.json()["records"]
    return records


def decision(client: TestClient, profile_id: str) -> dict[str, Any]:
    answer = client.get(
        "/v1/consent/decision",
        params={"profile_id": profile_id, "purpose": EMAIL, "channel": "email"},
        headers=AUTH[0],
    )
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def test_double_opt_in_end_to_end_over_real_smtp(
    shop: TestClient, smtp_server: SmtpServer, write_key: str, db: Database, workspace: str
) -> None:
    pid = person(shop, write_key, "u-1", email="Ada@Example.com", country="FR")
    answer = ask(shop, user_id="u-1", language="fr-FR", notice_version="newsletter-v2")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["sent"] is True and body["state"] == "pending"
    assert (body["to"], body["language"], body["profile_id"]) == ("ada@example.com", "fr", pid)
    assert body["resend_url"] == f"/v1/consent/double-opt-in/{body['record_id']}/resend"

    envelope, message = smtp_server.inbox.messages[-1]
    assert envelope.rcpt_tos == ["ada@example.com"]
    assert envelope.mail_from == "hello@shop.example"
    assert message["To"] == "ada@example.com"
    assert message["From"].addresses[0].display_name == "The Shop"
    assert message["From"].addresses[0].addr_spec == "hello@shop.example"
    assert message["Subject"] == f"Merci de confirmer votre abonnement à {workspace}"
    assert message["Message-ID"] == body["message_id"]
    assert message["Message-ID"].endswith("@shop.example>")
    sent_at = message["Date"].datetime
    assert abs(sent_at - utcnow()) < timedelta(minutes=1)
    assert message["Content-Language"] == "fr"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "multipart/alternative"
    html = message.get_body(("html",))
    assert html is not None and "Confirmer mon abonnement" in html.get_content()
    path = link_in(message)
    assert f'href="{PUBLIC_URL}{path}"' in html.get_content()

    # while pending: refused
    assert [r["state"] for r in history(shop, pid)] == ["pending"]
    pending = decision(shop, pid)
    assert (pending["allowed"], pending["reason"]) == (False, "pending_confirmation")

    # opening the link (what a mail scanner does) changes nothing
    page = shop.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<form method="post">' in page.text and "Oui, je confirme" in page.text
    assert '<html lang="fr">' in page.text and "<script" not in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert len(history(shop, pid)) == 1

    confirmed = shop.post(path, headers={"user-agent": BROWSER})
    assert confirmed.status_code == 200, confirmed.text
    assert "Merci, votre abonnement est confirmé" in confirmed.text
    records = history(shop, pid)
    assert [r["state"] for r in records] == ["granted", "pending"]
    grant = records[0]
    assert (grant["source"], grant["channel"], grant["purpose"]) == (
        "double_opt_in",
        "email",
        EMAIL,
    )
    assert grant["notice_version"] == "newsletter-v2"
    assert grant["actor"] == f"double_opt_in:{body['record_id']}"
    with db.read() as session:
        stored = consent.get_record(session=session, workspace_id=workspace, record_id=grant["id"])
    assert stored.proof == {
        "pending_record_id": body["record_id"],
        "ip": "203.0.113.0",
        "user_agent": BROWSER,
    }
    allowed = decision(shop, pid)
    assert (allowed["allowed"], allowed["reason"], allowed["record_id"]) == (
        True,
        "granted",
        grant["id"],
    )

    # a second press, and opening the link again: already confirmed, nothing recorded
    again = shop.post(path, headers={"user-agent": BROWSER})
    assert again.status_code == 200 and "Déjà confirmé" in again.text
    reopened = shop.get(path)
    assert reopened.status_code == 200 and "<form" not in reopened.text
    assert len(history(shop, pid)) == 2
    assert shop.post("/v1/consent/verify", headers=AUTH[0]).json()["ok"] is True

    resend = shop.post(body["resend_url"], headers=AUTH[0])
    assert resend.status_code == 409, resend.text
    assert len(smtp_server.inbox.messages) == 1


@pytest.mark.parametrize("language", doi.LANGUAGES)
def test_every_language_mails_and_asks_in_its_own_words(
    shop: TestClient, smtp_server: SmtpServer, write_key: str, language: str
) -> None:
    person(shop, write_key, "u-1", email="ada@example.com")
    answer = ask(shop, email="ada@example.com", language=language)
    assert answer.status_code == 201, answer.text
    message = smtp_server.inbox.last()
    words = doi.words(language)
    assert message["Subject"].startswith(words["subject"].split("{")[0].strip())
    page = shop.get(link_in(message))
    assert words["page_button"] in page.text and f'lang="{language}"' in page.text


def test_smtp_down_answers_502_keeps_the_pending_record_and_resend_works(
    shop_without_smtp: TestClient, smtp_down: SmtpServer, write_key: str
) -> None:
    client = shop_without_smtp
    pid = person(client, write_key, "u-1", email="ada@example.com", country="DE")
    failed = ask(client, user_id="u-1", language="de")
    assert failed.status_code == 502, failed.text
    body = failed.json()
    assert body["code"] == "delivery_failed" and body["sent"] is False
    assert f"127.0.0.1:{smtp_down.port}" in body["message"]
    assert body["state"] == "pending"
    records = history(client, pid)
    assert [(r["id"], r["state"]) for r in records] == [(body["record_id"], "pending")]

    still_down = client.post(body["resend_url"], headers=AUTH[0])
    assert still_down.status_code == 502 and still_down.json()["code"] == "delivery_failed"

    smtp_down.start()
    resent = client.post(body["resend_url"], headers=AUTH[0])
    assert resent.status_code == 200, resent.text
    assert resent.json()["sent"] is True and resent.json()["record_id"] == body["record_id"]
    message = smtp_down.inbox.last()
    assert message["Subject"].startswith("Bitte bestätigen")
    assert len(history(client, pid)) == 1  # resending records nothing

    confirmed = client.post(link_in(message))
    assert confirmed.status_code == 200, confirmed.text
    assert decision(client, pid)["allowed"] is True


def test_an_expired_link_shows_410_and_grants_nothing(
    shop: TestClient, smtp_server: SmtpServer, write_key: str, workspace: str
) -> None:
    pid = person(shop, write_key, "u-1", email="ada@example.com")
    body = ask(shop, user_id="u-1", language="es").json()
    token = links.sign(
        links.link_key(SECRET, workspace),
        workspace_id=workspace,
        profile_id=pid,
        kind=links.CONFIRM,
        now=utcnow() - timedelta(hours=49),
        ttl=timedelta(hours=48),
        **doi.link_extra(body["record_id"], EMAIL, "es"),
    )
    for method in ("GET", "POST"):
        page = shop.request(method, f"/c/{token}")
        assert page.status_code == 410, page.text
        assert "Este enlace ha caducado" in page.text and "<form" not in page.text
    assert [r["state"] for r in history(shop, pid)] == ["pending"]


def test_forged_and_malformed_links_show_400_and_grant_nothing(
    shop: TestClient, smtp_server: SmtpServer, write_key: str, workspace: str
) -> None:
    pid = person(shop, write_key, "u-1", email="ada@example.com")
    ask(shop, user_id="u-1", language="it")
    path = link_in(smtp_server.inbox.last())
    token = path.removeprefix("/c/")
    body, mac = token.split(".")
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    record_id = ask_record_id(shop, pid)
    other_kind = links.sign(
        links.link_key(SECRET, workspace),
        workspace_id=workspace,
        profile_id=pid,
        kind=links.PREFERENCES,
        now=utcnow(),
        **doi.link_extra(record_id, EMAIL, "it"),
    )
    other_secret = links.sign(
        links.link_key("another-secret", workspace),
        workspace_id=workspace,
        profile_id=pid,
        kind=links.CONFIRM,
        now=utcnow(),
        **doi.link_extra(record_id, EMAIL, "it"),
    )
    no_record = links.sign(
        links.link_key(SECRET, workspace),
        workspace_id=workspace,
        profile_id=pid,
        kind=links.CONFIRM,
        now=utcnow(),
        **doi.link_extra("00000000-0000-0000-0000-000000000000", EMAIL, "it"),
    )
    for bad in (f"{body}.{flipped}", other_kind, other_secret, no_record, "nonsense", "a.b.c"):
        for method in ("GET", "POST"):
            page = shop.request(method, f"/c/{bad}")
            assert page.status_code == 400, (bad, page.text)
            assert "<form" not in page.text
    assert "Questo link non è valido" in shop.get(f"/c/{body}.{flipped}").text
    assert [r["state"] for r in history(shop, pid)] == ["pending"]


def ask_record_id(client: TestClient, profile_id: str) -> str:
    record_id: str = history(client, profile_id)[0]["id"]
    return record_id


def test_a_link_superseded_by_a_later_withdrawal_grants_nothing(
    shop: TestClient, smtp_server: SmtpServer, write_key: str
) -> None:
    pid = person(shop, write_key, "u-1", email="ada@example.com", country="NL")
    assert ask(shop, user_id="u-1", language="nl").status_code == 201
    path = link_in(smtp_server.inbox.last())
    withdrawn = shop.post(
        "/v1/consent",
        json={
            "profile_id": pid,
            "purpose": EMAIL,
            "channel": "email",
            "state": "withdrawn",
            "source": "preference_center",
        },
        headers=AUTH[0],
    )
    assert withdrawn.status_code == 201, withdrawn.text
    for method in ("GET", "POST"):
        page = shop.request(method, path)
        assert page.status_code == 409, page.text
        assert "Dit verzoek staat niet meer open" in page.text and "<form" not in page.text
    assert [r["state"] for r in history(shop, pid)] == ["withdrawn", "pending"]
    assert decision(shop, pid)["allowed"] is False


def test_request_errors(shop: TestClient, smtp_server: SmtpServer, write_key: str) -> None:
    unknown = ask(shop, email="nobody@example.com")
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
    person(shop, write_key, "u-2", name="No Mail")
    no_mail = ask(shop, user_id="u-2")
    assert no_mail.status_code == 400 and no_mail.json()["errors"][0]["field"] == "email"
    extra = ask(shop, user_id="u-2", state="granted")
    assert extra.status_code == 400
    unauthenticated = shop.post("/v1/consent/double-opt-in", json={"user_id": "u-2"})
    assert unauthenticated.status_code == 401
    missing = shop.post("/v1/consent/double-opt-in/nope/resend", headers=AUTH[0])
    assert missing.status_code == 404
    pid = person(shop, write_key, "u-3", email="sam@example.com")
    assert (
        shop.post(
            "/v1/consent",
            json={"profile_id": pid, "purpose": EMAIL, "channel": "email", "state": "granted"},
            headers=AUTH[0],
        ).status_code
        == 201
    )
    already = ask(shop, profile_id=pid)
    assert already.status_code == 409 and already.json()["code"] == "conflict"
    assert smtp_server.inbox.messages == []


# --- grants made on the preference center -------------------------------------------------------


def preference_link(client: TestClient, profile_id: str) -> str:
    made = client.post("/v1/consent/links", json={"profile_id": profile_id}, headers=AUTH[0])
    assert made.status_code == 201, made.text
    return urlsplit(made.json()["url"]).path


def test_an_email_grant_on_the_preference_center_in_an_opt_in_country_asks_for_confirmation(
    shop: TestClient, smtp_server: SmtpServer, write_key: str, db: Database, workspace: str
) -> None:
    pid = person(shop, write_key, "u-1", email="Ada@Example.com", country="DE")
    page = preference_link(shop, pid)
    saved = shop.post(
        page + "?lang=de",
        data={f"choice:{EMAIL}:email": "yes", "choice:analytics:any": "yes"},
        follow_redirects=False,
        headers={"user-agent": BROWSER},
    )
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"].endswith("&done=pending")
    records = {r["purpose"]: r for r in history(shop, pid)}
    # The email grant waits for the mail; analytics (no mail to confirm) is granted at once.
    assert (records[EMAIL]["state"], records[EMAIL]["source"]) == ("pending", "double_opt_in")
    assert (records["analytics"]["state"], records["analytics"]["source"]) == (
        "granted",
        "preference_center",
    )
    with db.read() as session:
        stored = consent.get_record(
            session=session, workspace_id=workspace, record_id=records[EMAIL]["id"]
        )
    assert stored.proof is not None
    assert stored.proof["email"] == "ada@example.com" and stored.proof["language"] == "de"
    assert stored.proof["ip"] == "203.0.113.0" and "/p/" in stored.proof["page_url"]
    assert decision(shop, pid)["reason"] == "pending_confirmation"

    envelope, message = smtp_server.inbox.messages[-1]
    assert envelope.rcpt_tos == ["ada@example.com"]
    assert message["Subject"].startswith("Bitte bestätigen")
    confirmed = shop.post(link_in(message), headers={"user-agent": BROWSER})
    assert confirmed.status_code == 200, confirmed.text
    allowed = decision(shop, pid)
    assert (allowed["allowed"], allowed["reason"]) == (True, "granted")
    assert shop.get(page).text.count('value="yes" checked') == 2


def test_an_email_grant_on_the_preference_center_in_an_opt_out_country_is_a_grant(
    shop: TestClient, smtp_server: SmtpServer, write_key: str
) -> None:
    pid = person(shop, write_key, "u-1", email="bo@example.com", country="US")
    page = preference_link(shop, pid)
    # Under opt-out the page shows "yes" already; a "no" then a "yes" are direct records.
    for answer, state in [("no", "denied"), ("yes", "granted")]:
        saved = shop.post(page, data={f"choice:{EMAIL}:email": answer}, follow_redirects=False)
        assert saved.status_code == 303, saved.text
        assert history(shop, pid)[0]["state"] == state
    assert smtp_server.inbox.messages == []


def test_the_preference_center_keeps_the_pending_request_when_smtp_is_down(
    shop_without_smtp: TestClient, smtp_down: SmtpServer, write_key: str
) -> None:
    client = shop_without_smtp
    pid = person(client, write_key, "u-1", email="cy@example.com", country="FR")
    saved = client.post(
        preference_link(client, pid),
        data={f"choice:{EMAIL}:email": "yes"},
        follow_redirects=False,
    )
    assert saved.status_code == 303 and saved.headers["location"].endswith("done=pending")
    (record,) = history(client, pid)
    assert (record["state"], record["source"]) == ("pending", "double_opt_in")
    smtp_down.start()
    resent = client.post(f"/v1/consent/double-opt-in/{record['id']}/resend", headers=AUTH[0])
    assert resent.status_code == 200, resent.text
    assert client.post(link_in(smtp_down.inbox.last())).status_code == 200
    assert decision(client, pid)["allowed"] is True
