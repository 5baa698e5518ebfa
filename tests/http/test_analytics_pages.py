"""The analytics dashboard page and the profile 360 scores over HTTP, on SQLite and PostgreSQL.

Each number the page prints is compared with what the ``/v1/analytics`` API answers for the
same range, so the page cannot drift from the API.
"""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient

from consentry.platform import tenancy
from consentry.platform.db import Database
from consentry.web.analytics_page import CHURN_ROWS, MIN_RISK, TILES, show
from tests.analytics.shop import AS_OF, START, generate
from tests.http.test_web_pages import csrf, issue_token, sign_in
from tests.support.segment import bearer, identify
from tests.support.store import profile_of, send

RANGE = {"since": START.date().isoformat(), "until": AS_OF.date().isoformat()}


def _text(page: str, element_id: str) -> str:
    """The text of the first ``<span class="value">`` or ``<dd>`` inside the element."""
    found = re.search(rf'id="{element_id}"[^>]*>(?:\s*<span class="value">)?([^<]*)<', page)
    assert found is not None, element_id
    return found.group(1).strip()


def _scored_shop(client: TestClient, db: Database, workspace: str, token: str) -> None:
    send(db, workspace, *generate(customers=120, seed=5).messages)
    run = client.post(
        "/v1/analytics/runs", json={"as_of": AS_OF.isoformat()}, headers=bearer(token)
    )
    assert run.status_code == 200, run.text


def test_the_page_shows_what_the_api_answers(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    _scored_shop(client, db, workspace, admin_token)
    auth = bearer(admin_token)
    sign_in(client, admin_token)
    response = client.get("/app/analytics", params=RANGE)
    assert response.status_code == 200, response.text
    page = response.text

    kpis = client.get("/v1/analytics/kpis", params=RANGE, headers=auth).json()
    for key, _, kind, _ in TILES:
        expected = show(kind, kpis["totals"][key], kpis["currency"])
        assert _text(page, f"kpi-{key.replace('_', '-')}") == expected, key
    assert kpis["totals"]["orders"] > 0

    cohorts = client.get("/v1/analytics/cohorts", params=RANGE, headers=auth).json()["cohorts"]
    shown = re.findall(
        r'data-cohort="([^"]+)"><th scope="row">[^<]+</th><td class="num size">(\d+)', page
    )
    assert shown == [(c["cohort"], str(c["customers"])) for c in cohorts] and shown

    grid = client.get("/v1/analytics/rfm", headers=auth).json()
    cells = {
        (int(r), int(fm)): int(n)
        for r, fm, n in re.findall(r'data-r="(\d)" data-fm="(\d)">(\d+)<', page)
    }
    assert len(cells) == 25
    for i, row in enumerate(grid["grid"]):
        for j, n in enumerate(row):
            assert cells[(5 - i, j + 1)] == n
    segments = dict(
        re.findall(r'data-segment="([^"]+)"><td[^>]*>[^<]+</td><td class="num">(\d+)', page)
    )
    assert {html.unescape(k): v for k, v in segments.items()} == {
        s["name"]: str(s["customers"]) for s in grid["segments"]
    }

    clv = client.get("/v1/analytics/clv", params={"bins": 20}, headers=auth).json()
    assert _text(page, "clv-customers") == str(clv["customers"])
    assert _text(page, "clv-median") == f"{clv['median']:,.2f} {kpis['currency']}"
    bars = [int(n) for n in re.findall(r'class="bar"[^>]*data-customers="(\d+)"', page)]
    assert bars == [b["customers"] for b in clv["bins"]] and sum(bars) == clv["customers"]

    churn = client.get(
        "/v1/analytics/churn", params={"min_risk": MIN_RISK, "limit": CHURN_ROWS}, headers=auth
    ).json()["customers"]
    assert re.findall(r'<tr data-profile="([^"]+)">', page) == [c["profile_id"] for c in churn]
    assert churn, "the generated shop has customers at risk"

    # showing the churn list (names) is recorded in the audit trail
    trail = client.get("/v1/audit", params={"action": "analytics.churn"}, headers=auth).json()
    assert {e["target_id"] for e in trail["entries"]} == {c["profile_id"] for c in churn}


def test_profile_360_shows_the_customers_scores(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    _scored_shop(client, db, workspace, admin_token)
    auth = bearer(admin_token)
    at_risk = client.get("/v1/analytics/churn", params={"limit": 1}, headers=auth).json()
    pid = at_risk["customers"][0]["profile_id"]
    scores = client.get(f"/v1/analytics/customers/{pid}", headers=auth).json()
    assert client.get(f"/v1/profiles/{pid}", headers=auth).json()["scores"] == scores

    sign_in(client, admin_token)
    page = client.get(f"/app/profiles/{pid}").text
    assert _text(page, "score-segment") == scores["rfm"]["segment"]
    assert _text(page, "score-clv") == f"{scores['clv']:,.2f}"
    assert _text(page, "score-p-alive") == f"{scores['p_alive'] * 100:.0f}%"
    assert _text(page, "score-churn") == f"{scores['churn_risk'] * 100:.0f}%"
    assert scores["churn_reason"] and scores["churn_reason"] in page

    assert 'id="no-scores"' not in page
    send(db, workspace, identify(userId="no-orders-yet", traits={"plan": "trial"}))
    newcomer = profile_of(db, workspace, user_id="no-orders-yet").id
    assert client.get(f"/v1/profiles/{newcomer}", headers=auth).json()["scores"] is None
    assert 'id="no-scores"' in client.get(f"/app/profiles/{newcomer}").text


def test_bad_input_and_roles(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    sign_in(client, admin_token)
    empty = client.get("/app/analytics")
    assert empty.status_code == 200  # no data, no run: the page says so
    assert 'id="no-cohorts"' in empty.text and 'id="no-churn"' in empty.text
    for params, field in (
        ({"interval": "year"}, "interval"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-02-01", "until": "2026-01-01"}, "since"),
    ):
        response = client.get("/app/analytics", params=params)
        assert response.status_code == 400, params
        assert field in response.text

    support = TestClient(client.app)
    sign_in(support, issue_token(db, workspace, tenancy.Role.SUPPORT))
    assert support.get("/app/analytics").status_code == 403

    analyst = TestClient(client.app)
    sign_in(analyst, issue_token(db, workspace, tenancy.Role.ANALYST))
    assert analyst.get("/app/analytics").status_code == 200


def test_run_now_needs_the_csrf_token_and_stores_a_run(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    send(db, workspace, *generate(customers=60, seed=3).messages)
    sign_in(client, admin_token)
    refused = client.post("/app/analytics/run", data={}, follow_redirects=False)
    assert refused.status_code == 403
    token = csrf(client, "/app/analytics")
    done = client.post("/app/analytics/run", data={"csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/app/analytics"
    latest = client.get("/v1/analytics/runs/latest", headers=bearer(admin_token)).json()
    assert latest["customers"] > 0
    assert f"{latest['customers']} customers" in client.get("/app/analytics").text
