"""The journeys pages in headless Chromium: a ready-made journey switched on from the list, the
journey page showing its steps in words and the counts and conversions the API answers, a
refused set-up naming its fields, pause and activate; a screenshot is kept for review."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from playwright.sync_api import Page, expect

from consentry.config import JourneySettings, Settings
from consentry.journeys import service
from consentry.platform.db import Database, utcnow
from tests.browser.conftest import ARTIFACTS
from tests.integration.test_journey_engine import CALM, LINKS, shopper
from tests.support.delivery import destination, processor
from tests.support.segment import bearer, track
from tests.support.store import send

pytestmark = pytest.mark.browser
SHOPPERS = 16


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The live server's settings: the test drives the engine's rounds itself."""
    return Settings(
        environment="test",
        database_url=database_url,
        journeys=JourneySettings(scheduled=False, quiet_hours="off"),
    )


def test_a_preset_is_switched_on_and_watched_in_the_browser(
    page: Page,
    live_server: str,
    db: Database,
    workspace: str,
    admin_token: str,
    console_errors: list[str],
) -> None:
    mail = destination(db, workspace, processor(db, workspace), name="Shop mail").destination.id

    def api(path: str) -> dict[str, object]:
        response = httpx.get(live_server + path, headers=bearer(admin_token), timeout=30)
        response.raise_for_status()
        found: dict[str, object] = response.json()
        return found

    page.goto(f"{live_server}/app/login")
    page.fill("#token", admin_token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server}/app")
    page.get_by_role("link", name="Journeys").click()
    page.wait_for_url(f"{live_server}/app/journeys")
    expect(page.locator("#no-journeys")).to_be_visible()

    # a set-up the preset refuses (the browser checks number bounds first): each problem named
    # by the server, what was typed kept
    page.locator("#preset-nps_survey summary").click()
    page.fill("#nps_survey-days_after", "30")
    page.fill("#nps_survey-name", "Our NPS")
    page.get_by_role("button", name="Set up nps survey").click()
    errors = page.locator("#preset-errors")
    expect(errors).to_contain_text("options.survey_url: is required")
    expect(page.locator("#nps_survey-days_after")).to_have_value("30")
    expect(page.locator("#nps_survey-name")).to_have_value("Our NPS")
    console_errors.remove(
        "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    )

    page.locator("#preset-abandoned_cart summary").click()
    page.select_option("#abandoned_cart-email", mail)
    page.fill("#abandoned_cart-holdout_percent", "40")
    page.get_by_label("Switch it on at once").nth(1).check()
    page.get_by_role("button", name="Set up abandoned cart").click()
    page.wait_for_url(f"{live_server}/app/journeys/*?done=created")
    expect(page.locator("#done-note")).to_have_text("Journey saved.")
    expect(page.locator("#journey-status")).to_have_text("active")
    expect(page.locator("#trigger")).to_have_text("When Checkout Started happens")
    journey_id = page.url.split("/")[-1].split("?")[0]

    t0 = utcnow()
    users = [f"b-{i}" for i in range(SHOPPERS)]
    for user in users:
        shopper(db, workspace, user)
    checkouts = [
        track("Checkout Started", userId=u, timestamp=t0.isoformat(), properties={"cart_id": u})
        for u in users
    ]
    send(db, workspace, *checkouts)
    service.run(db, workspace, CALM, links=LINKS, now=t0 + timedelta(seconds=1))
    service.run(db, workspace, CALM, links=LINKS, now=t0 + timedelta(hours=5))
    orders = [
        track(
            "Order Completed",
            userId=u,
            timestamp=(t0 + timedelta(days=1)).isoformat(),
            properties={"order_id": f"o-{u}", "total": 40, "currency": "EUR"},
        )
        for u in users[::3]
    ]
    send(db, workspace, *orders)

    page.reload()
    stats = api(f"/v1/journeys/{journey_id}/stats")
    for key in ("entered", "active", "held_out", "sent", "skipped"):
        expect(page.locator(f"#kpi-{key.replace('_', '-')} .value")).to_have_text(str(stats[key]))
    assert stats["entered"] == SHOPPERS
    rows = page.locator("#steps tbody tr")
    assert [r.get_attribute("data-step") for r in rows.all()] == [
        "holdout",
        "pause",
        "reminder",
        "second-pause",
        "still-open",
        "nudge",
    ]
    expect(page.locator("tr[data-step='pause'] .what")).to_contain_text("Wait 4 hours")
    expect(page.locator("tr[data-step='reminder'] .what")).to_contain_text(
        "Send an email through Shop mail for marketing.communications.email"
    )
    expect(page.locator("tr[data-step='reminder'] .sent")).to_have_text(str(stats["sent"]))

    found = api(f"/v1/journeys/{journey_id}/attribution")
    journey = found["journey"]
    holdout = found["holdout"]
    assert isinstance(journey, dict) and isinstance(holdout, dict)
    expect(page.locator("tr[data-group='journey'] .total")).to_have_text(str(journey["total"]))
    expect(page.locator("tr[data-group='journey'] .converted")).to_have_text(
        str(journey["converted"])
    )
    expect(page.locator("tr[data-group='holdout'] .converted")).to_have_text(
        str(holdout["converted"])
    )
    assert journey["converted"] + holdout["converted"] == len(orders)
    uplift = journey["uplift"]
    assert isinstance(uplift, dict)
    expect(page.locator("tr[data-group='journey'] .p-value")).to_have_text(
        f"{uplift['p_value']:.3f}"
    )

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "journey.png"), full_page=True)

    page.get_by_role("button", name="Pause").click()
    page.wait_for_url(f"{live_server}/app/journeys/*?done=paused")
    expect(page.locator("#journey-status")).to_have_text("paused")
    page.get_by_role("button", name="Activate").click()
    page.wait_for_url(f"{live_server}/app/journeys/*?done=activated")
    expect(page.locator("#journey-status")).to_have_text("active")

    page.get_by_role("link", name="Journeys").first.click()
    page.wait_for_url(f"{live_server}/app/journeys")
    row = page.locator(f"tr[data-journey='{journey_id}']")
    expect(row.locator(".entered")).to_have_text(str(SHOPPERS))
    expect(row.locator(".sent")).to_have_text(str(stats["sent"]))
    page.screenshot(path=str(ARTIFACTS / "journeys.png"), full_page=True)
