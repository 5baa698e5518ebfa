"""The deliveries page in headless Chromium: each destination's counts as the API answers them,
a destination whose circuit opened shown as paused, and a dead letter retried with its button
(a CSRF form) and then delivered."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from consentry.platform.db import Database
from tests.browser.conftest import ARTIFACTS
from tests.support.delivery import EMAIL_PURPOSE, hook, hook_server, processor
from tests.support.segment import bearer

pytestmark = pytest.mark.browser


def test_a_dead_letter_is_retried_from_the_deliveries_page(
    page: Page, live_server: str, db: Database, workspace: str, admin_token: str
) -> None:
    auth = bearer(admin_token)
    processor_id = processor(db, workspace)
    with hook_server() as server:

        def register(name: str, path: str) -> str:
            body = {
                "name": name,
                "kind": "webhook",
                "processor_id": processor_id,
                "purpose": EMAIL_PURPOSE,
                "url": server.url(path),
                "categories": ["user.unique_id"],
            }
            made = httpx.post(f"{live_server}/v1/destinations", json=body, headers=auth)
            assert made.status_code == 201, made.text
            return str(made.json()["id"])

        partner, broken = register("Partner", "/partner"), register("Broken", "/broken")
        server.answer("/partner", 200, 422, 200)
        server.answer("/broken", 503)
        hook(db, workspace, partner, "ok-1", {"n": 1})
        refused = hook(db, workspace, partner, "refused-1", {"n": 2})
        for i in range(6):
            hook(db, workspace, broken, f"broken-{i}", {"n": i})
        ran = httpx.post(f"{live_server}/v1/outbox/run", headers=auth, timeout=30).json()
        assert (ran["sent"], ran["dead"]) == (1, 1) and ran["paused"] == [broken]

        page.goto(f"{live_server}/app/login")
        page.fill("#token", admin_token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{live_server}/app")
        page.get_by_role("link", name="Deliveries").click()
        page.wait_for_url(f"{live_server}/app/deliveries")

        listed = httpx.get(f"{live_server}/v1/destinations", headers=auth).json()
        for d in listed["destinations"]:
            row = page.locator(f'#destinations tr[data-id="{d["id"]}"]')
            for status in ("queued", "retrying", "sent", "dead"):
                expect(row.locator(f"td.{status}")).to_have_text(str(d["messages"][status]))
        expect(page.locator(f'#destinations tr[data-id="{broken}"] td.state')).to_contain_text(
            "paused until"
        )
        letter = page.locator(f'#dead tr[data-id="{refused}"]')
        expect(letter.locator("td.error")).to_have_text("HTTP 422")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "deliveries.png"), full_page=True)

        letter.get_by_role("button", name="Retry").click()
        page.wait_for_url(f"{live_server}/app/deliveries?done=1")
        expect(page.locator("#done")).to_contain_text("1 message(s) queued again")
        expect(page.locator("#no-dead")).to_be_visible()
        ran = httpx.post(f"{live_server}/v1/outbox/run", headers=auth, timeout=30).json()
        assert ran["sent"] == 1
        page.reload()
        row = page.locator(f'#destinations tr[data-id="{partner}"]')
        expect(row.locator("td.sent")).to_have_text("2")
        assert [c.json() for c in server.to("/partner")] == [{"n": 1}, {"n": 2}, {"n": 2}]
