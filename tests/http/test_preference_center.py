"""The preference center and one-click unsubscribe through the real app, on both stores:
links and branding (admin API), the page, saving what changed, unsubscribe, error pages."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consentry.config import Settings
from consentry.consent import links
from consentry.consent import preferences as pc
from consentry.consent import service as consent
from consentry.platform import tenancy
from consentry.platform.db import Database, utcnow
from tests.support.segment import basic, bearer, identify

EMAIL = "marketing.communications.email"
SMS = "marketing.communications.sms"
_CHECKED = re.compile(r'name="(choice:[^"]+)" value="(yes|no)" checked')
_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


@dataclass(frozen=True)
class Admin:
    """The admin API of the test's workspace."""

    client: TestClient
    token: str
    write_key: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)

    def person(self, user_id: str, **traits: Any) -> str:
        """A profile made through ingestion; returns its id."""
        sent = self.client.post(
            "/v1/identify",
            json=identify(userId=user_id, traits=traits),
            headers=basic(self.write_key),
        )
        assert sent.status_code == 200, sent.text
        found = self.client.get("/v1/profiles", params={"user_id": user_id}, headers=self.auth)
        return str(found.json()["profiles"][0]["id"])

    def issue(self, **body: Any) -> dict[str, Any]:
        made = self.client.post("/v1/consent/links", json=body, headers=self.auth)
        assert made.status_code == 201, made.text
        return dict(made.json())

    def record(self, profile_id: str, purpose: str, channel: str, state: str) -> None:
        body = {"profile_id": profile_id, "purpose": purpose, "channel": channel, "state": state}
        made = self.client.post("/v1/consent", json=body, headers=self.auth)
        assert made.status_code == 201, made.text

    def history(self, profile_id: str) -> list[dict[str, Any]]:
        found = self.client.get(f"/v1/consent/{profile_id}/history", headers=self.auth)
        assert found.status_code == 200, found.text
        return list(found.json()["records"])


@pytest.fixture
def admin(client: TestClient, admin_token: str, write_key: str) -> Admin:
    return Admin(client, admin_token, write_key)


@pytest.fixture
def customer(client: TestClient) -> TestClient:
    """The same app seen from a customer's browser at a real address (for the proof's IP)."""
    browser = TestClient(client.app, client=("203.0.113.77", 50000))
    browser.headers["user-agent"] = "Firefox/130"
    return browser


def path_of(url: str) -> str:
    return url.removeprefix("http://127.0.0.1:8000")


def shown(page: str) -> dict[str, str]:
    """The answer each choice of a page shows, by form field."""
    return {html.unescape(f): v for f, v in _CHECKED.findall(page)}


def action_of(page: str) -> str:
    found = _ACTION.search(page)
    assert found is not None
    return html.unescape(found.group(1))


def sign(settings: Settings, workspace: str, profile_id: str, kind: str, **kw: Any) -> str:
    key = links.link_key(settings.secret_key, workspace)
    now = kw.pop("now", utcnow())
    return links.sign(key, workspace_id=workspace, profile_id=profile_id, kind=kind, now=now, **kw)


# --- links and branding -------------------------------------------------------------------------


def test_a_preferences_link_opens_the_page_of_its_subject(
    admin: Admin, customer: TestClient, settings: Settings
) -> None:
    pid = admin.person("u-ada", email="ada@example.com", country="DE")
    link = admin.issue(email="ADA@example.com", language="fr")
    assert link["kind"] == "preferences" and link["profile_id"] == pid
    assert link["url"] == f"{settings.public_url}/p/{link['token']}?lang=fr"
    assert "headers" not in link
    key = links.link_key(settings.secret_key, links.workspace_of(link["token"]))
    opened = links.verify(key, link["token"], kind=links.PREFERENCES, now=utcnow())
    assert opened.expires_at.isoformat() == link["expires_at"]
    assert opened.expires_at - utcnow() > timedelta(days=29)

    page = customer.get(path_of(link["url"]))
    assert page.status_code == 200
    assert '<html lang="fr">' in page.text
    assert "Vos choix de confidentialité" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in page.headers
    # Germany is opt-in: nothing is allowed yet, every choice shows "no".
    assert set(shown(page.text).values()) == {"no"}
    assert len(shown(page.text)) == len(consent.ConsentConfig().purposes)
    for field in shown(page.text):
        dom = field.removeprefix("choice:").replace(".", "-").replace(":", "-")
        assert f'<label for="c-{dom}-yes">Oui</label>' in page.text
    assert page.text.count("<fieldset") == 2 + len(consent.ConsentConfig().purposes)
    assert "<legend>E-mails marketing</legend>" in page.text
    assert f'href="/p/{link["token"]}/data/export?lang=fr"' in page.text
    assert f'href="/p/{link["token"]}/data/erase?lang=fr"' in page.text


def test_saving_records_only_what_changed_with_source_and_proof(
    admin: Admin, customer: TestClient, db: Database, workspace: str
) -> None:
    pid = admin.person("u-bea", country="FR")
    admin.record(pid, "analytics", "any", "granted")
    link = admin.issue(profile_id=pid)
    page = customer.get(path_of(link["url"]), headers={"accept-language": "de-DE,de;q=0.9"})
    form = shown(page.text)
    assert form["choice:analytics:any"] == "yes" and form[f"choice:{EMAIL}:email"] == "no"
    action = action_of(page.text)
    assert action == f"/p/{link['token']}?lang=de"

    form[f"choice:{EMAIL}:email"] = "yes"
    form["choice:analytics:any"] = "no"
    saved = customer.post(action, data={**form, "action": "save"}, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == f"/p/{link['token']}?lang=de&done=saved"
    assert "set-cookie" not in saved.headers

    made = admin.history(pid)[:2]
    assert sorted((r["purpose"], r["channel"], r["state"]) for r in made) == [
        ("analytics", "any", "withdrawn"),
        (EMAIL, "email", "granted"),
    ]
    assert len(admin.history(pid)) == 3  # the earlier grant and the two changes, nothing else
    assert {(r["source"], r["actor"]) for r in made} == {("preference_center", "link:preferences")}
    with db.read() as session:
        stored = consent.get_record(
            session=session, workspace_id=workspace, record_id=made[0]["id"]
        )
    assert stored.proof == {
        "ip": "203.0.113.0",
        "user_agent": "Firefox/130",
        "page_url": f"http://127.0.0.1:8000/p/{pc.token_digest(link['token'])}",
    }

    again = customer.get(saved.headers["location"])
    assert "Ihre Auswahl wurde gespeichert." in again.text
    assert shown(again.text)[f"choice:{EMAIL}:email"] == "yes"
    resubmitted = customer.post(action, data=shown(again.text), follow_redirects=False)
    assert resubmitted.status_code == 303
    assert len(admin.history(pid)) == 3  # unchanged answers record nothing


def test_htmx_saves_one_choice_without_reload(admin: Admin, customer: TestClient) -> None:
    pid = admin.person("u-cy", country="IT")
    token = admin.issue(profile_id=pid)["token"]
    saved = customer.post(
        f"/p/{token}?lang=it",
        data={f"choice:{SMS}:sms": "yes"},
        headers={"hx-request": "true"},
        follow_redirects=False,
    )
    assert saved.status_code == 200
    assert "Salvato: Marketing via SMS – Sì." in saved.text
    assert "<html" not in saved.text
    assert [(r["purpose"], r["state"]) for r in admin.history(pid)] == [(SMS, "granted")]


def test_unsubscribe_from_everything_withdraws_all_marketing(
    admin: Admin, customer: TestClient
) -> None:
    pid = admin.person("u-dan", country="NL")
    for purpose, channel in [(EMAIL, "email"), (SMS, "sms"), ("analytics", "any")]:
        admin.record(pid, purpose, channel, "granted")
    token = admin.issue(profile_id=pid)["token"]
    done = customer.post(
        f"/p/{token}?lang=nl", data={"action": "unsubscribe_all"}, follow_redirects=False
    )
    assert done.status_code == 303
    assert done.headers["location"].endswith("done=unsubscribed")
    assert (
        "Je bent afgemeld voor alle marketingberichten."
        in customer.get(done.headers["location"]).text
    )
    made = admin.history(pid)[:2]
    assert sorted((r["purpose"], r["state"]) for r in made) == [
        (EMAIL, "withdrawn"),
        (SMS, "withdrawn"),
    ]
    assert len(admin.history(pid)) == 5  # analytics untouched


def test_opt_out_subjects_see_yes_and_a_no_is_a_denial(admin: Admin, customer: TestClient) -> None:
    pid = admin.person("u-eve", country="US")
    token = admin.issue(profile_id=pid)["token"]
    page = customer.get(f"/p/{token}", headers={"accept-language": "en-US"})
    assert set(shown(page.text).values()) == {"yes"}
    sale = "marketing.advertising.third_party"
    customer.post(f"/p/{token}", data={f"choice:{sale}:any": "no"}, follow_redirects=False)
    assert [(r["purpose"], r["state"]) for r in admin.history(pid)] == [(sale, "denied")]
    decided = admin.client.get(
        "/v1/consent/decision", params={"profile_id": pid, "purpose": sale}, headers=admin.auth
    ).json()
    assert decided["allowed"] is False


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("choice:marketing.bogus:email", "yes", "this choice does not exist."),
        (f"choice:{EMAIL}:carrier_pigeon", "yes", "this channel does not exist."),
        (f"choice:{EMAIL}:sms", "yes", "this choice is not offered on this page."),
        (f"choice:{EMAIL}:email", "maybe", "the answer must be yes or no."),
    ],
)
def test_a_field_the_page_does_not_offer_is_a_400_naming_it_and_records_nothing(
    admin: Admin, customer: TestClient, field: str, value: str, reason: str
) -> None:
    pid = admin.person("u-fay", country="ES")
    token = admin.issue(profile_id=pid)["token"]
    data = {"choice:analytics:any": "yes", field: value}
    refused = customer.post(f"/p/{token}?lang=en", data=data, follow_redirects=False)
    assert refused.status_code == 400
    assert "Your choices could not be saved" in refused.text
    assert "Nothing was changed." in refused.text
    assert f"The form field {html.escape(field)} is not valid: {reason}" in refused.text
    assert f'href="/p/{token}?lang=en"' in refused.text  # back to the page
    assert admin.history(pid) == []  # analytics was not granted either


def test_branding_is_stored_validated_and_shown(
    admin: Admin, customer: TestClient, db: Database, workspace: str
) -> None:
    default = admin.client.get("/v1/consent/branding", headers=admin.auth).json()
    with db.read() as session:
        name = tenancy.get_workspace(session=session, workspace_id=workspace).name
    assert default["brand_name"] == name and default["primary_color"] == pc.DEFAULT_COLOR
    body = {
        "brand_name": "Gilded Goods",
        "primary_color": "#FFD700",
        "logo_url": "https://cdn.gilded.example/logo.svg",
        "default_language": "es",
        "privacy_policy_url": "https://gilded.example/privacy",
        "support_email": "privacy@gilded.example",
    }
    put = admin.client.put("/v1/consent/branding", json=body, headers=admin.auth)
    assert put.status_code == 200, put.text
    stored = admin.client.get("/v1/consent/branding", headers=admin.auth).json()
    assert stored == {
        **body,
        "primary_color": "#ffd700",
        "theme": {"on_brand": pc.DARK_TEXT, "accent": pc.DARK_TEXT},  # gold is too light
    }
    bad = admin.client.put(
        "/v1/consent/branding", json={**body, "primary_color": "gold"}, headers=admin.auth
    )
    assert bad.status_code == 400
    assert [e["field"] for e in bad.json()["errors"]] == ["primary_color"]

    token = admin.issue(profile_id=admin.person("u-gus"))["token"]
    page = customer.get(f"/p/{token}", headers={"accept-language": ""})
    assert '<html lang="es">' in page.text  # the branding's default language
    assert "Tus opciones de privacidad · Gilded Goods" in page.text
    assert f"--brand:#ffd700;--on-brand:{pc.DARK_TEXT};--accent:{pc.DARK_TEXT}" in page.text
    assert '<img class="logo" src="https://cdn.gilded.example/logo.svg" alt="Gilded Goods">' in (
        page.text
    )
    assert (
        "img-src 'self' data: https://cdn.gilded.example;"
        in (page.headers["content-security-policy"])
    )
    assert 'href="mailto:privacy@gilded.example"' in page.text
    assert 'href="https://gilded.example/privacy" rel="noreferrer"' in page.text


def test_link_requests_are_validated(admin: Admin, db: Database, workspace: str) -> None:
    pid = admin.person("u-hal")
    cases = [
        ({"profile_id": pid, "kind": "unsubscribe"}, "purpose"),
        ({"profile_id": pid, "kind": "unsubscribe", "purpose": "marketing.nope"}, "purpose"),
        ({"profile_id": pid, "purpose": EMAIL}, "purpose"),
        ({"profile_id": pid, "language": "tlh"}, "language"),
        ({"profile_id": pid, "kind": "confirm"}, "kind"),
        ({"profile_id": pid, "ttl_days": 0}, "ttl_days"),
        ({"profile_id": pid, "kind": "unsubscribe", "purpose": EMAIL, "mailto": "x"}, "mailto"),
    ]
    for body, field in cases:
        refused = admin.client.post("/v1/consent/links", json=body, headers=admin.auth)
        assert refused.status_code == 400, (body, refused.text)
        assert [e["field"] for e in refused.json()["errors"]] == [field], body
    unknown = admin.client.post("/v1/consent/links", json={"email": "no@x.io"}, headers=admin.auth)
    assert unknown.status_code == 404
    with db.write() as session:
        analyst = tenancy.issue_key(
            session=session,
            workspace_id=workspace,
            kind="token",
            name="analyst",
            role=tenancy.Role.ANALYST,
        ).secret
    denied = admin.client.post(
        "/v1/consent/links", json={"profile_id": pid}, headers=bearer(analyst)
    )
    assert denied.status_code == 403
    assert admin.client.get("/v1/consent/branding", headers=bearer(analyst)).status_code == 200
    put = admin.client.put(
        "/v1/consent/branding", json={"brand_name": "x"}, headers=bearer(analyst)
    )
    assert put.status_code == 403


# --- links that do not open ---------------------------------------------------------------------


def test_an_expired_link_is_a_translated_410(
    admin: Admin, customer: TestClient, settings: Settings, workspace: str
) -> None:
    pid = admin.person("u-ida")
    old = sign(settings, workspace, pid, links.PREFERENCES, now=utcnow() - timedelta(days=31))
    page = customer.get(f"/p/{old}?lang=fr")
    assert page.status_code == 410
    assert "<h1>Ce lien a expiré</h1>" in page.text and "Erreur 410" in page.text
    posted = customer.post(f"/p/{old}", data={"choice:analytics:any": "yes"})
    assert posted.status_code == 410
    assert admin.history(pid) == []


def test_forged_malformed_and_misdirected_links_are_a_400(
    admin: Admin, customer: TestClient, settings: Settings, workspace: str
) -> None:
    pid = admin.person("u-jo")
    good = sign(settings, workspace, pid, links.PREFERENCES)
    body, mac = good.split(".")
    forged = f"{body}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BA'}"
    other_secret = links.sign(
        links.link_key("another-secret", workspace),
        workspace_id=workspace,
        profile_id=pid,
        kind=links.PREFERENCES,
        now=utcnow(),
    )
    unsubscribe = sign(settings, workspace, pid, links.UNSUBSCRIBE, purpose=EMAIL, channel="email")
    for token in [forged, other_secret, "garbage", "a.b", "x" * 5000, "%00.%00", "e30.e30"]:
        page = customer.get(f"/p/{token}", headers={"accept-language": "it"})
        assert page.status_code == 400, token
        assert "Questo link non è valido" in page.text
        assert customer.post(f"/p/{token}", data={"action": "unsubscribe_all"}).status_code == 400
        assert (
            customer.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 400
        )
    misdirected = customer.get(f"/p/{unsubscribe}")
    assert misdirected.status_code == 400
    assert "This link is meant for another page." in misdirected.text
    assert customer.get(f"/u/{good}").status_code == 400
    assert admin.history(pid) == []


def test_a_link_whose_subject_is_gone_is_a_404_page(
    admin: Admin, customer: TestClient, settings: Settings, workspace: str
) -> None:
    token = sign(settings, workspace, "00000000-0000-0000-0000-000000000000", links.PREFERENCES)
    page = customer.get(f"/p/{token}?lang=pt")
    assert page.status_code == 404
    assert "Já não guardamos escolhas para esta ligação." in page.text
    other = sign(settings, "no-such-workspace", "p-1", links.PREFERENCES)
    assert customer.get(f"/p/{other}").status_code == 404


# --- one-click unsubscribe ----------------------------------------------------------------------


def test_one_click_unsubscribe_records_a_withdrawal(
    admin: Admin, customer: TestClient, db: Database, workspace: str
) -> None:
    pid = admin.person("u-kai", email="kai@example.com", country="DE")
    admin.record(pid, EMAIL, "email", "granted")
    link = admin.issue(email="kai@example.com", kind="unsubscribe", purpose=EMAIL)
    assert (link["purpose"], link["channel"]) == (EMAIL, "email")
    assert link["url"].startswith("http://127.0.0.1:8000/u/")
    assert link["headers"] == {
        "List-Unsubscribe": f"<{link['url']}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    key = links.link_key("change-me", workspace)
    assert links.verify(key, link["token"], kind=links.UNSUBSCRIBE, now=utcnow()).expires_at > (
        utcnow() + timedelta(days=364)
    )

    # What a mail provider sends: form-encoded, no cookies, no redirect followed.
    done = customer.post(
        path_of(link["url"]),
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert done.status_code == 200
    assert "set-cookie" not in done.headers and "location" not in done.headers
    assert "You are unsubscribed" in done.text
    (withdrawal, _grant) = admin.history(pid)
    assert (withdrawal["purpose"], withdrawal["channel"], withdrawal["state"]) == (
        EMAIL,
        "email",
        "withdrawn",
    )
    assert (withdrawal["source"], withdrawal["actor"]) == ("preference_center", "link:unsubscribe")
    with db.read() as session:
        stored = consent.get_record(
            session=session, workspace_id=workspace, record_id=withdrawal["id"]
        )
    assert stored.proof is not None and stored.proof["ip"] == "203.0.113.0"
    assert stored.proof["page_url"].endswith(f"/u/{pc.token_digest(link['token'])}")

    again = customer.post(path_of(link["url"]), data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200
    assert len(admin.history(pid)) == 2  # already withdrawn: nothing more


def test_the_unsubscribe_page_asks_first_and_posts_the_same_body(
    admin: Admin, customer: TestClient
) -> None:
    pid = admin.person("u-lea", country="US")
    link = admin.issue(
        profile_id=pid, kind="unsubscribe", purpose=SMS, language="de", mailto="u@x.io"
    )
    assert link["headers"]["List-Unsubscribe"].endswith(", <mailto:u@x.io?subject=unsubscribe>")
    page = customer.get(path_of(link["url"]))
    assert page.status_code == 200 and admin.history(pid) == []  # opening changes nothing
    assert "Möchten Sie diese Nachrichten von" in page.text and "Marketing per SMS" in page.text
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page.text
    action = action_of(page.text)
    assert action == f"/u/{link['token']}?lang=de"

    missing = customer.post(action, data={}, follow_redirects=False)
    assert missing.status_code == 400
    assert "List-Unsubscribe=One-Click" in missing.text
    assert admin.history(pid) == []

    done = customer.post(action, data={"List-Unsubscribe": "One-Click"}, follow_redirects=False)
    assert done.status_code == 200 and "Sie sind abgemeldet" in done.text
    assert [(r["purpose"], r["state"]) for r in admin.history(pid)] == [(SMS, "withdrawn")]


def test_an_unsubscribe_link_for_a_purpose_no_longer_offered_is_a_404(
    admin: Admin, customer: TestClient, settings: Settings, workspace: str
) -> None:
    pid = admin.person("u-max")
    token = sign(settings, workspace, pid, links.UNSUBSCRIBE, purpose="gone.purpose", channel="any")
    assert customer.get(f"/u/{token}").status_code == 404
    posted = customer.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert posted.status_code == 404
    assert admin.history(pid) == []
