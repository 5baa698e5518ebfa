"""The journeys pages over HTTP (SQLite and PostgreSQL): a preset switched on from the list,
its page in words with the counts and conversions the API answers, activate and pause as CSRF
forms, problems named on the page, scopes enforced."""

from __future__ import annotations

import html
import re
from datetime import timedelta

from fastapi.testclient import TestClient

from consentry.journeys import service
from consentry.platform import tenancy
from consentry.platform.db import Database, utcnow
from tests.http.test_web_pages import csrf, issue_token, sign_in
from tests.integration.test_journey_engine import CALM, LINKS, shopper
from tests.support.delivery import destination, processor
from tests.support.segment import bearer, track
from tests.support.store import send


def _cell(page: str, row: str, cell: str) -> str:
    found = re.search(rf'{row}.*?class="[^"]*\b{cell}\b[^"]*">([^<]*)<', page, re.S)
    assert found is not None, (row, cell)
    return html.unescape(found.group(1)).strip()


def test_a_preset_is_switched_on_watched_and_paused_from_the_pages(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    mail = destination(db, workspace, processor(db, workspace), name="Shop mail").destination.id
    sign_in(client, admin_token)
    empty = client.get("/app/journeys")
    assert empty.status_code == 200 and 'id="no-journeys"' in empty.text
    assert 'action="/app/journeys/presets/abandoned_cart"' in empty.text
    assert "Shop mail (marketing.communications.email)" in empty.text

    token = csrf(client, "/app/journeys")
    made = client.post(
        "/app/journeys/presets/abandoned_cart",
        data={
            "csrf_token": token,
            "destination:email": mail,
            "option:holdout_percent": "50",
            "option:first_wait_hours": "",
            "activate": "yes",
        },
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    location = made.headers["location"]
    journey_id = location.split("/")[-1].split("?")[0]
    assert location.endswith("?done=created")

    t0 = utcnow()
    users = [f"c-{i}" for i in range(12)]
    for user in users:
        shopper(db, workspace, user)
    send(
        db,
        workspace,
        *[
            track("Checkout Started", userId=u, timestamp=t0.isoformat(), properties={"cart_id": u})
            for u in users
        ],
    )
    service.run(db, workspace, CALM, links=LINKS, now=t0 + timedelta(seconds=1))
    service.run(db, workspace, CALM, links=LINKS, now=t0 + timedelta(hours=5))

    page = client.get(location)
    assert page.status_code == 200, page.text
    text = page.text
    assert "Journey saved." in text and 'id="journey-status">active<' in text
    assert "When Checkout Started happens" in text
    assert "Wait 4 hours" in text and "Split: 50 % held out (sent nothing)" in text
    assert "Send an email through Shop mail for marketing.communications.email" in text
    stats = client.get(f"/v1/journeys/{journey_id}/stats", headers=bearer(admin_token)).json()
    for key in ("entered", "sent", "held_out"):
        value = re.search(rf'id="kpi-{key.replace("_", "-")}"><span class="value">(\d+)<', text)
        assert value is not None and int(value.group(1)) == stats[key], key
    assert stats["entered"] == 12 and stats["sent"] + stats["held_out"] == 12
    assert stats["sent"] > 0 and stats["held_out"] > 0
    assert _cell(text, 'data-step="reminder"', "sent") == str(stats["sent"])
    found = client.get(f"/v1/journeys/{journey_id}/attribution", headers=bearer(admin_token))
    assert found.status_code == 200
    groups = found.json()
    assert _cell(text, 'data-group="journey"', "total") == str(groups["journey"]["total"])
    assert _cell(text, 'data-group="holdout"', "total") == str(groups["holdout"]["total"])
    listing = client.get("/app/journeys").text
    assert _cell(listing, f'data-journey="{journey_id}"', "sent") == str(stats["sent"])

    paused = client.post(
        f"/app/journeys/{journey_id}/pause",
        data={"csrf_token": csrf(client, location)},
        follow_redirects=False,
    )
    assert paused.status_code == 303
    assert 'id="journey-status">paused<' in client.get(paused.headers["location"]).text
    forged = client.post(f"/app/journeys/{journey_id}/activate", data={"csrf_token": "x" * 43})
    assert forged.status_code == 403
    with db.read() as session:
        assert (
            service.get_journey(
                session=session, workspace_id=workspace, journey_id=journey_id
            ).status
            == "paused"
        )


def test_problems_are_named_on_the_list_page(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    mail = destination(db, workspace, processor(db, workspace)).destination.id
    sign_in(client, admin_token)
    refused = client.post(
        "/app/journeys/presets/nps_survey",
        data={
            "csrf_token": csrf(client, "/app/journeys"),
            "destination:email": mail,
            "option:days_after": "500",
            "option:name": "My NPS",
        },
    )
    assert refused.status_code == 400
    assert "<code>options.survey_url</code>: is required" in refused.text
    assert "<code>options.days_after</code>: between 1 and 90" in refused.text
    assert 'id="preset-nps_survey" open' in refused.text
    assert 'value="My NPS"' in refused.text  # what was typed stays
    not_a_number = client.post(
        "/app/journeys/presets/win_back",
        data={
            "csrf_token": csrf(client, "/app/journeys"),
            "destination:email": mail,
            "option:days": "soon",
        },
    )
    assert not_a_number.status_code == 400
    assert "<code>options.days</code>: must be a whole number" in not_a_number.text
    assert client.get("/app/journeys/no-such-journey").status_code == 404


def test_an_analyst_reads_but_cannot_switch_on(
    client: TestClient, db: Database, workspace: str
) -> None:
    analyst = issue_token(db, workspace, tenancy.Role.ANALYST)
    sign_in(client, analyst)
    page = client.get("/app/journeys")
    assert page.status_code == 200 and "needs the journeys:write scope" in page.text
    assert 'action="/app/journeys/presets/' not in page.text
    refused = client.post(
        "/app/journeys/presets/win_back",
        data={"csrf_token": csrf(client, "/app/journeys"), "destination:email": "x"},
    )
    assert refused.status_code == 403
    support = issue_token(db, workspace, tenancy.Role.SUPPORT)
    client.cookies.clear()
    sign_in(client, support)
    assert client.get("/app/journeys").status_code == 403  # support has no journeys:read
