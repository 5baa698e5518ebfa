"""The segments pages in headless Chromium: the builder previews a rule as it is typed (count,
text form, field errors from htmx), saves it, the segment page shows its members' entries and
the list shows its size; a refresh after new events records the entry; a bad rule is shown
back with its field (a 400)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from consentry.platform.db import Database
from tests.browser.conftest import ARTIFACTS
from tests.support.segment import identify, track
from tests.support.store import profile_of, send

pytestmark = pytest.mark.browser


def _recent(hours: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours)).isoformat()


def test_build_preview_save_and_follow_a_segment(
    page: Page,
    live_server: str,
    db: Database,
    workspace: str,
    admin_token: str,
    console_errors: list[str],
) -> None:
    send(
        db,
        workspace,
        identify(userId="ann", traits={"plan": "gold"}),
        identify(userId="bob", traits={"plan": "gold"}),
        identify(userId="cy", traits={"plan": "silver"}),
        *[track("Product Viewed", userId="ann", timestamp=_recent(h)) for h in (1, 2)],
    )
    ann = profile_of(db, workspace, user_id="ann").id

    page.goto(f"{live_server}/app/login")
    page.fill("#token", admin_token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server}/app")
    page.get_by_role("link", name="Segments").click()
    page.wait_for_url(f"{live_server}/app/segments")
    expect(page.locator("#no-segments")).to_be_visible()
    page.locator("#new-segment").click()
    page.wait_for_url(f"{live_server}/app/segments/new")

    # the example rule is previewed on load: ann viewed twice and bought nothing
    expect(page.locator("#preview-count")).to_have_text("1")
    page.fill("#rule", '{"trait": "plan", "op": "eq", "value": "gold"')  # not JSON yet
    page.locator("#rule").press("End")
    expect(page.locator("#preview-errors")).to_contain_text("rule")
    gold = {"trait": "plan", "op": "eq", "value": "gold"}
    page.fill("#rule", json.dumps({"all": [gold, {"trait": "email", "op": "exists"}]}))
    page.locator("#rule").press("End")
    expect(page.locator("#preview-errors")).to_contain_text("rule.all[1].trait")
    page.fill("#rule", json.dumps(gold))
    page.locator("#preview-now").click()
    expect(page.locator("#preview-count")).to_have_text("2")
    expect(page.locator("#preview-text")).to_have_text('plan = "gold"')

    rule = {"all": [gold, {"event": "Product Viewed", "within_days": 7}]}
    page.fill("#rule", json.dumps(rule))
    page.fill("#name", "Gold browsers")
    page.locator("#save").click()
    page.wait_for_url(f"{live_server}/app/segments/*")
    expect(page.locator("#segment-name")).to_have_text("Gold browsers")
    expect(page.locator("#segment-text")).to_have_text(
        'plan = "gold" AND Product Viewed in the last 7 days'
    )
    expect(page.locator("#members .value")).to_have_text("1")
    expect(page.locator("#history tbody tr")).to_have_count(1)
    expect(page.locator("#history .change")).to_have_text("entered")
    expect(page.locator("#history")).to_contain_text(ann)

    send(db, workspace, track("Product Viewed", userId="bob", timestamp=_recent(0.5)))
    page.locator("#refresh-now").click()
    expect(page.locator("#refreshed")).to_contain_text("1 entered")
    expect(page.locator("#members .value")).to_have_text("2")
    expect(page.locator("#entered-day .value")).to_have_text("2")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "segment.png"), full_page=True)

    page.get_by_role("link", name="Segments").first.click()
    row = page.locator("#segments tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator(".members")).to_have_text("2")

    # a bad save shows the builder again with the field's problem
    page.goto(f"{live_server}/app/segments/new")
    page.fill("#name", "Broken")
    page.fill("#rule", json.dumps({"event": "X", "within_days": 0}))
    page.locator("#save").click()
    expect(page.locator("#save-errors")).to_contain_text("rule.within_days")
    # the refused save is answered 400, which the browser logs; nothing else was logged
    assert [e for e in console_errors if "400" not in e] == []
    console_errors.clear()
