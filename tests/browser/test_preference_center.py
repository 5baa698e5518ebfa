"""The preference center and the unsubscribe page in headless Chromium: a customer changes a
choice with the mouse and with the keyboard only, and the new record is found in the ledger; an
expired link shows the error page. The page fixture fails any test whose page logs a console
error, so a Content-Security-Policy violation (a style or script the page may not load) fails.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from consentry.config import Settings
from consentry.consent import links
from consentry.platform.db import utcnow
from tests.browser.conftest import ARTIFACTS, Shop
from tests.support.segment import bearer

pytestmark = pytest.mark.browser

EMAIL = "marketing.communications.email"
EMAIL_FIELD = f"choice:{EMAIL}:email"
SMS = "marketing.communications.sms"
FR_PENDING = (
    "Consultez votre boîte de réception : nous vous avons envoyé un e-mail de confirmation."
)
MAX_TABS = 40


def issue(shop: Shop, **body: Any) -> dict[str, Any]:
    made = httpx.post(
        f"{shop.base_url}/v1/consent/links", json=body, headers=bearer(shop.token), timeout=10
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


def local(shop: Shop, url: str) -> str:
    """A link's URL on the test server (links are made for the configured public URL)."""
    return shop.base_url + url.removeprefix("http://127.0.0.1:8000")


def records(shop: Shop) -> list[dict[str, Any]]:
    return list(shop.api(f"/v1/consent/{shop.ada_id}/history")["records"])


def focused(page: Page) -> dict[str, str]:
    """The name, value and tag of the focused element."""
    found: dict[str, str] = page.evaluate(
        "() => { const e = document.activeElement;"
        " return {name: e.name || '', value: e.value || '', tag: e.tagName}; }"
    )
    return found


def tab_to(page: Page, **wanted: str) -> None:
    """Press Tab until the focused element has these attributes."""
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        now = focused(page)
        if all(now.get(k) == v for k, v in wanted.items()):
            return
    raise AssertionError(f"Tab never reached {wanted}")


def test_change_a_choice_and_find_it_in_the_ledger(page: Page, shop: Shop) -> None:
    link = issue(shop, profile_id=shop.ada_id)
    page.goto(local(shop, link["url"]))
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", level=1)).to_have_text("Your privacy choices")
    messages = page.get_by_role("group", name="Messages we may send you")
    email = messages.get_by_role("group", name="Marketing emails")
    expect(email.get_by_role("radio", name="No")).to_be_checked()  # London: opt-in, no record
    assert records(shop) == []

    opened = page.url
    sms = messages.get_by_role("group", name="Marketing text messages (SMS)")
    sms.locator("label", has_text="Yes").click()
    # htmx saves the one toggle at once: the status says so, the page did not reload.
    expect(page.get_by_role("status")).to_have_text("Saved: Marketing text messages (SMS) – Yes.")
    assert page.url == opened
    # Email under opt-in: a "yes" asks for confirmation by mail (double opt-in).
    email.locator("label", has_text="Yes").click()
    expect(page.get_by_role("status")).to_have_text(
        "Check your inbox: we have sent you an email to confirm."
    )

    page.get_by_role("button", name="Save my choices").click()
    page.wait_for_url("**done=saved")
    expect(page.get_by_role("status")).to_have_text("Your choices have been saved.")
    expect(email.get_by_role("radio", name="Yes")).to_be_checked()
    expect(email).to_contain_text("Waiting for you to confirm by email.")

    made = records(shop)  # two records: the unchanged form saved nothing more
    assert [(r["purpose"], r["channel"], r["state"], r["source"]) for r in made] == [
        (EMAIL, "email", "pending", "double_opt_in"),
        (SMS, "sms", "granted", "preference_center"),
    ]
    assert {r["actor"] for r in made} == {"link:preferences"}
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "preference-center.png"), full_page=True)


def test_keyboard_alone_changes_and_saves_a_choice(page: Page, shop: Shop) -> None:
    link = issue(shop, profile_id=shop.ada_id, language="fr")
    page.goto(local(shop, link["url"]))
    expect(page.locator("html")).to_have_attribute("lang", "fr")

    tab_to(page, name=EMAIL_FIELD)
    assert focused(page)["value"] == "no"  # Tab lands on the checked radio of the group
    label = page.locator("label[for='c-marketing-communications-email-email-no']")
    assert label.evaluate("e => getComputedStyle(e).outlineStyle") == "solid"  # visible focus
    page.keyboard.press("ArrowLeft")  # the previous radio of the group: "Oui"
    assert focused(page) == {"name": EMAIL_FIELD, "value": "yes", "tag": "INPUT"}
    expect(page.get_by_role("status")).to_have_text(FR_PENDING)  # double opt-in: London

    tab_to(page, tag="BUTTON", value="save")
    page.keyboard.press("Enter")
    page.wait_for_url("**done=saved")
    expect(page.get_by_role("status")).to_have_text("Vos choix ont été enregistrés.")
    (made,) = records(shop)
    assert (made["purpose"], made["state"], made["source"]) == (EMAIL, "pending", "double_opt_in")


def test_an_expired_link_shows_the_error_page(
    page: Page, shop: Shop, settings: Settings, console_errors: list[str]
) -> None:
    workspace = shop.api("/v1/workspace")["id"]
    token = links.sign(
        links.link_key(settings.secret_key, workspace),
        workspace_id=workspace,
        profile_id=shop.ada_id,
        kind=links.PREFERENCES,
        now=utcnow() - timedelta(days=31),
    )
    answer = page.goto(f"{shop.base_url}/p/{token}?lang=de")
    assert answer is not None and answer.status == 410
    expect(page.get_by_role("heading", level=1)).to_have_text("Dieser Link ist abgelaufen")
    expect(page.locator("main")).to_contain_text("Fehler 410")
    expect(page.locator("form")).to_have_count(0)
    assert console_errors == [
        "Failed to load resource: the server responded with a status of 410 (Gone)"
    ]
    console_errors.clear()  # that one was expected
    page.get_by_role("link", name="Español").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Este enlace ha caducado")
    console_errors.clear()
    assert records(shop) == []


def test_the_unsubscribe_button_withdraws_the_purpose(page: Page, shop: Shop) -> None:
    link = issue(shop, profile_id=shop.ada_id, kind="unsubscribe", purpose=EMAIL)
    page.goto(local(shop, link["url"]))
    expect(page.locator("main")).to_contain_text("Marketing emails")
    assert records(shop) == []  # opening the page changes nothing
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
    (made,) = records(shop)
    assert (made["purpose"], made["state"], made["actor"]) == (
        EMAIL,
        "withdrawn",
        "link:unsubscribe",
    )
