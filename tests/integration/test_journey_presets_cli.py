"""``consentry journeys presets|preset|attribution`` against a real store (both stores)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from consentry.cli import app
from consentry.journeys import presets, service
from consentry.platform.db import Database
from tests.support.delivery import destination, processor

runner = CliRunner()


def test_presets_are_listed_set_up_and_measured(
    database_url: str, db: Database, workspace: str
) -> None:
    args = ["--workspace", workspace, "--database-url", database_url]
    listed = runner.invoke(app, ["journeys", "presets"])
    assert listed.exit_code == 0, listed.output
    for name in presets.PRESETS:
        assert name in listed.output
    as_json = runner.invoke(app, ["journeys", "presets", "--json"])
    assert [p["name"] for p in json.loads(as_json.output)["presets"]] == list(presets.PRESETS)

    mail = destination(db, workspace, processor(db, workspace)).destination.id
    made = runner.invoke(
        app,
        ["journeys", "preset", "win_back", "--email", mail, "-o", "days=120", "--json", *args],
    )
    assert made.exit_code == 0, made.output
    journey = json.loads(made.output)
    assert journey["status"] == "draft"
    assert journey["definition"]["trigger"] == {"type": "inactivity", "days": 120}
    with db.read() as session:
        stored = service.get_journey(
            session=session, workspace_id=workspace, journey_id=journey["id"]
        )
    assert stored.name == "Win-back"

    active = runner.invoke(
        app,
        ["journeys", "preset", "abandoned_cart", "--email", mail, "--activate", *args],
    )
    assert active.exit_code == 0, active.output
    assert "Abandoned cart" in active.output and "active" in active.output

    measured = runner.invoke(app, ["journeys", "attribution", journey["id"], *args])
    assert measured.exit_code == 0, measured.output
    assert "Conversions: an order within 14 days" in measured.output
    assert "holdout" in measured.output and "step miss-you (email)" in measured.output
    numbers = runner.invoke(app, ["journeys", "attribution", journey["id"], "--json", *args])
    assert json.loads(numbers.output)["journey"]["total"] == 0


def test_bad_set_up_prints_each_field_and_exits_1(
    database_url: str, db: Database, workspace: str
) -> None:
    args = ["--workspace", workspace, "--database-url", database_url]
    missing = runner.invoke(app, ["journeys", "preset", "nps_survey", "-o", "days_after=0", *args])
    assert missing.exit_code == 1
    for field in ("destinations.email", "options.days_after", "options.survey_url"):
        assert field in missing.output
    malformed = runner.invoke(
        app, ["journeys", "preset", "win_back", "--email", "x", "-o", "days", *args]
    )
    assert malformed.exit_code == 1 and "--option" in malformed.output
    unknown = runner.invoke(
        app,
        [
            "journeys",
            "preset",
            "win_back",
            "--email",
            "x",
            "--workspace",
            "nope",
            "--database-url",
            database_url,
        ],
    )
    assert unknown.exit_code == 1
    gone = runner.invoke(app, ["journeys", "attribution", "no-such-journey", *args])
    assert gone.exit_code == 1 and "no journey" in gone.output
