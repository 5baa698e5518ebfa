"""The analytics dashboard in headless Chromium: every KPI tile, the cohort heat map, the RFM
grid, the CLV histogram and the churn list show what the JSON API answers; the charts are
drawn (visible, non-empty SVG) within the pages' CSP; a screenshot is kept for review."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from consentry.platform.db import Database
from consentry.web.analytics_page import CHURN_ROWS, MIN_RISK, TILES, show
from tests.analytics.shop import AS_OF, START, generate
from tests.browser.conftest import ARTIFACTS
from tests.support.segment import bearer
from tests.support.store import send

pytestmark = pytest.mark.browser
RANGE = {"since": START.date().isoformat(), "until": AS_OF.date().isoformat()}


def test_the_analytics_page_shows_the_apis_numbers(
    page: Page, live_server: str, db: Database, workspace: str, admin_token: str
) -> None:
    send(db, workspace, *generate(customers=150, seed=21).messages)
    auth = bearer(admin_token)

    def api(path: str, **params: object) -> dict[str, object] | object:
        response = httpx.get(live_server + path, params=params, headers=auth, timeout=30)  # type: ignore[arg-type]
        response.raise_for_status()
        return response.json()

    ran = httpx.post(
        f"{live_server}/v1/analytics/runs",
        json={"as_of": AS_OF.isoformat()},
        headers=auth,
        timeout=60,
    )
    assert ran.status_code == 200, ran.text

    page.goto(f"{live_server}/app/login")
    page.fill("#token", admin_token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server}/app")
    page.get_by_role("link", name="Analytics").click()
    page.wait_for_url(f"{live_server}/app/analytics")
    page.fill("#since", RANGE["since"])
    page.fill("#until", RANGE["until"])
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(f"{live_server}/app/analytics?*")

    kpis = api("/v1/analytics/kpis", **RANGE)
    assert isinstance(kpis, dict)
    totals = kpis["totals"]
    assert isinstance(totals, dict)
    for key, _, kind, _ in TILES:
        tile = page.locator(f"#kpi-{key.replace('_', '-')} .value")
        expect(tile).to_have_text(show(kind, totals[key], str(kpis["currency"])))

    cohorts = api("/v1/analytics/cohorts", **RANGE)
    assert isinstance(cohorts, dict)
    sizes = page.locator("#cohorts td.size").all_inner_texts()
    assert sizes == [str(c["customers"]) for c in cohorts["cohorts"]] and sizes

    grid = api("/v1/analytics/rfm")
    assert isinstance(grid, dict)
    for i, row in enumerate(grid["grid"]):
        shown = page.locator(f"#rfm-grid td[data-r='{5 - i}']").all_inner_texts()
        assert shown == [str(n) for n in row]

    clv = api("/v1/analytics/clv", bins=20)
    assert isinstance(clv, dict)
    expect(page.locator("#clv-customers")).to_have_text(str(clv["customers"]))
    bars = page.locator("#clv-chart rect.bar")
    assert [int(b.get_attribute("data-customers") or -1) for b in bars.all()] == [
        b["customers"] for b in clv["bins"]
    ]
    box = page.locator("#clv-chart").bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100

    churn = api("/v1/analytics/churn", min_risk=MIN_RISK, limit=CHURN_ROWS)
    assert isinstance(churn, dict)
    rows = page.locator("#churn tbody tr")
    assert [r.get_attribute("data-profile") for r in rows.all()] == [
        c["profile_id"] for c in churn["customers"]
    ]
    assert churn["customers"]

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "analytics.png"), full_page=True)

    first = churn["customers"][0]
    rows.first.get_by_role("link").click()
    page.wait_for_url(f"{live_server}/app/profiles/*")
    expect(page.locator("#score-segment")).to_have_text(first["rfm"]["segment"])
    expect(page.locator("#score-churn")).to_have_text(f"{first['churn_risk'] * 100:.0f}%")
