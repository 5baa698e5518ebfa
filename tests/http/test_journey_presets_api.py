"""The ready-made journeys over HTTP (both stores): listed, switched on with real destinations
(checked like any journey: its rules by the segment language, its templates, privacy's gate),
and bad set-up input answered with a 4xx naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from consentry.journeys import presets
from consentry.platform.db import Database
from tests.support.delivery import SMS_PURPOSE, destination, processor
from tests.support.segment import bearer

SMS_URL = "https://sms.example/send"


@pytest.fixture
def shop(db: Database, workspace: str) -> dict[str, str]:
    """An email and an SMS destination (an SMS provider's URL) of a registered processor."""
    vendor = processor(db, workspace)
    return {
        "email": destination(db, workspace, vendor).destination.id,
        "sms": destination(
            db, workspace, vendor, name="Texts", kind="sms", purpose=SMS_PURPOSE, url=SMS_URL
        ).destination.id,
    }


def post(client: TestClient, token: str, name: str, body: dict[str, Any]) -> Any:
    return client.post(f"/v1/journeys/presets/{name}", json=body, headers=bearer(token))


def test_presets_are_listed(client: TestClient, admin_token: str) -> None:
    response = client.get("/v1/journeys/presets", headers=bearer(admin_token))
    assert response.status_code == 200
    assert [p["name"] for p in response.json()["presets"]] == list(presets.PRESETS)
    assert client.get("/v1/journeys/presets").status_code == 401


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_every_preset_can_be_switched_on(
    client: TestClient, admin_token: str, shop: dict[str, str], name: str
) -> None:
    options = {"survey_url": "https://survey.example/nps"} if name == "nps_survey" else {}
    destinations = shop if name == "abandoned_cart" else {"email": shop["email"]}
    made = post(
        client,
        admin_token,
        name,
        {"destinations": destinations, "options": options, "activate": True},
    )
    assert made.status_code == 201, made.text
    journey = made.json()
    assert journey["status"] == "active" and journey["version"] == 1
    assert journey["name"] == presets.PRESETS[name].title
    assert journey["definition"]["steps"][0]["id"] == "holdout"
    again = post(client, admin_token, name, {"destinations": destinations, "options": options})
    assert again.status_code == 409
    renamed = post(
        client,
        admin_token,
        name,
        {"destinations": destinations, "options": options | {"name": f"{name} 2"}},
    )
    assert renamed.status_code == 201 and renamed.json()["status"] == "draft"


def test_bad_set_up_is_a_400_naming_the_field(
    client: TestClient, admin_token: str, shop: dict[str, str]
) -> None:
    def fields(name: str, body: dict[str, Any]) -> set[str]:
        response = post(client, admin_token, name, body)
        assert response.status_code == 400, response.text
        return {e["field"] for e in response.json()["errors"]}

    assert fields("no_such_preset", {"destinations": shop}) == {"preset"}
    assert fields("win_back", {"destinations": {}}) == {"destinations.email"}
    assert fields(
        "win_back", {"destinations": {"email": shop["email"]}, "options": {"days": 2}}
    ) == {"options.days"}
    assert fields("win_back", {"destinations": {"email": "unknown"}}) == {
        "steps[1].destination_id",
        "steps[5].destination_id",
    }
    wrong_kind = fields("welcome_series", {"destinations": {"email": shop["sms"]}})
    assert wrong_kind == {
        "steps[1].destination_id",
        "steps[1].purpose",
        "steps[4].destination_id",
        "steps[4].purpose",
    }
    assert fields("welcome_series", {"destinations": {"email": shop["email"]}, "extra": 1}) == {
        "extra"
    }


def test_writing_needs_the_journeys_write_scope(
    client: TestClient, db: Database, workspace: str, shop: dict[str, str]
) -> None:
    from consentry.platform import tenancy

    with db.write() as session:
        analyst = tenancy.issue_key(
            session=session,
            workspace_id=workspace,
            kind="token",
            name="analyst",
            role=tenancy.Role.ANALYST,
        ).secret
    assert client.get("/v1/journeys/presets", headers=bearer(analyst)).status_code == 200
    response = post(client, analyst, "win_back", {"destinations": {"email": shop["email"]}})
    assert response.status_code == 403
