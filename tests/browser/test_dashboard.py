"""The dashboard in headless Chromium: sign-in, search, the profile 360 view, load more, unmerge.

What the pages show is compared with what the JSON API answers for the same profile.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from playwright.sync_api import Locator, Page, expect

from consentry.web.routes import EVENTS_PAGE, display
from tests.browser.conftest import ADA_EVENTS, ARTIFACTS, Shop

pytestmark = pytest.mark.browser


def sign_in(page: Page, shop: Shop) -> None:
    page.goto(f"{shop.base_url}/app/login")
    page.fill("#token", shop.token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{shop.base_url}/app")


def cells(rows: Locator) -> list[list[str]]:
    """The text of each cell of each row."""
    return [row.locator("td").all_inner_texts() for row in rows.all()]


def times(locator: Locator) -> list[datetime]:
    """The ``datetime`` attributes of ``<time>`` elements."""
    return [datetime.fromisoformat(t.get_attribute("datetime") or "") for t in locator.all()]


def test_sign_in_refuses_a_wrong_token_then_opens_the_dashboard(
    page: Page, shop: Shop, console_errors: list[str]
) -> None:
    page.goto(f"{shop.base_url}/app")
    assert page.url == f"{shop.base_url}/app/login"  # no cookie: sent to the sign-in form
    page.fill("#token", "cst_not-a-real-token")
    with page.expect_response(f"{shop.base_url}/app/login") as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 401
    expect(page.locator("#login-error")).to_contain_text("not valid")
    assert console_errors == [
        "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    ]
    console_errors.clear()  # that one was expected

    sign_in(page, shop)
    workspace = shop.api("/v1/workspace")
    expect(page.locator(".who .workspace")).to_have_text(workspace["id"])
    expect(page.locator(".who .role")).to_have_text("admin")
    for name in ("events", "profiles", "orders"):
        expect(page.locator(f"#kpi-{name} .value")).to_have_text(str(workspace["counts"][name]))

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{shop.base_url}/app/login")
    page.goto(f"{shop.base_url}/app")
    assert page.url == f"{shop.base_url}/app/login"


def test_search_by_email_in_another_case_finds_the_profile(page: Page, shop: Shop) -> None:
    sign_in(page, shop)
    page.locator("#q").press_sequentially("ADA@Example.COM")
    results = page.locator("#search-results")
    expect(results).to_contain_text("Ada Lovelace")
    expect(results).to_contain_text(shop.ada_id)
    assert page.url == f"{shop.base_url}/app"  # swapped in by htmx, not a page load

    page.locator("#q").fill("")
    page.locator("#q").press_sequentially("nobody@example.com")
    expect(page.locator("#no-results")).to_be_visible()

    page.locator("#q").fill("u-ada")
    page.locator("#q").press("Enter")  # the submit trigger
    expect(results).to_contain_text("Ada Lovelace")
    results.get_by_role("link", name="Ada Lovelace").click()
    page.wait_for_url(f"{shop.base_url}/app/profiles/{shop.ada_id}")
    expect(page.locator("h1")).to_have_text("Ada Lovelace")


def test_profile_360_shows_what_the_api_returns(page: Page, shop: Shop) -> None:
    sign_in(page, shop)
    page.goto(f"{shop.base_url}/app/profiles/{shop.ada_id}")
    api = shop.api(f"/v1/profiles/{shop.ada_id}")

    keys = page.locator("#traits th").all_inner_texts()
    values = page.locator("#traits td").all_inner_texts()
    assert dict(zip(keys, values, strict=True)) == {k: display(v) for k, v in api["traits"].items()}

    rows = page.locator("#identifiers tbody tr")
    shown = [[c[0], c[1], t] for c, t in zip(cells(rows), times(rows.locator("time")), strict=True)]
    expected = [
        [i["type"], i["value"], datetime.fromisoformat(i["first_seen"])] for i in api["identifiers"]
    ]
    assert shown == expected

    orders = [
        (
            row.locator("td").nth(0).inner_text(),
            row.locator("td").nth(2).inner_text(),
            row.locator(".money").inner_text(),
            row.locator("td").nth(4).locator("div").count(),
        )
        for row in page.locator("#orders tbody tr").all()
    ]
    assert orders == [
        (o["order_id"], o["status"], o["total"], len(o["items"])) for o in api["orders"]
    ]
    assert [o[2] for o in orders] == ["20.00", "129.90"]  # newest first, the Decimal's string
    expect(page.locator("#carts")).to_contain_text("c-9")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "profile.png"), full_page=True)


def test_load_more_appends_older_events(page: Page, shop: Shop) -> None:
    sign_in(page, shop)
    page.goto(f"{shop.base_url}/app/profiles/{shop.ada_id}")
    rows = page.locator("#timeline tr.event")
    expect(rows).to_have_count(EVENTS_PAGE)

    page.get_by_role("button", name="Load more").click()
    expect(rows).to_have_count(ADA_EVENTS)
    expect(page.locator("#load-more")).to_have_count(0)  # that was the last page
    shown = times(rows.locator("time"))
    assert shown == sorted(shown, reverse=True)
    api = shop.api(f"/v1/profiles/{shop.ada_id}/events", limit=500)["events"]
    assert shown == [datetime.fromisoformat(e["timestamp"]) for e in api]


def test_undo_merge_separates_the_two_profiles(page: Page, shop: Shop) -> None:
    winner, loser = shop.merge["winner_id"], shop.merge["loser_id"]
    sign_in(page, shop)
    page.goto(f"{shop.base_url}/app/profiles/{loser}")
    expect(page.locator("#merged-note")).to_contain_text(winner)
    expect(page.locator("#identifiers tbody tr")).to_have_count(3)  # anonymousId, email, userId

    page.get_by_role("button", name="Undo merge").click()
    note = page.locator("#undone-note")
    expect(note).to_contain_text(winner)
    expect(note).to_contain_text(loser)
    expect(page.locator("#merged-note")).to_have_count(0)  # the loser is a profile of its own
    expect(page.get_by_role("button", name="Undo merge")).to_have_count(0)

    assert shop.api(f"/v1/profiles/{loser}")["id"] == loser
    assert shop.api(f"/v1/profiles/{winner}")["id"] == winner
    mine = shop.api(f"/v1/profiles/{loser}")["identifiers"]
    rows = page.locator("#identifiers tbody tr")
    assert [c[:2] for c in cells(rows)] == [[i["type"], i["value"]] for i in mine]
    assert [c[0] for c in cells(rows)] == ["user_id"]

    note.get_by_role("link", name=winner).click()
    page.wait_for_url(f"{shop.base_url}/app/profiles/{winner}")
    expect(page.locator("#identifiers")).to_contain_text("grace@example.com")
    expect(page.locator("#identifiers")).not_to_contain_text("u-grace")
    page.goto(f"{shop.base_url}/app")
    expect(page.locator("#recent")).to_contain_text(winner)
    expect(page.locator("#recent")).to_contain_text(loser)
