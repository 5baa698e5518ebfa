"""``consentry journeys`` on both stores: create from a file (and refused with every field
named), activate, run a round, stats, pause, archive."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from consentry.cli import app
from consentry.platform.db import Database, utcnow
from tests.conftest import new_workspace
from tests.support.delivery import EMAIL_PURPOSE, destination, grant, person, processor
from tests.support.segment import track
from tests.support.store import send

runner = CliRunner()


def _json(args: list[str]) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_journeys_from_the_command_line(database_url: str, db: Database, tmp_path: Path) -> None:
    workspace = new_workspace(db)
    at = ["--workspace", workspace, "--database-url", database_url]
    dest = destination(db, workspace, processor(db, workspace)).destination.id
    doc = {
        "name": "Checkout reminder",
        "trigger": {"type": "event", "event": "Checkout Started"},
        "steps": [
            {
                "id": "mail",
                "type": "email",
                "destination_id": dest,
                "purpose": EMAIL_PURPOSE,
                "template": {"subject": "Hi", "text": "Bye: {{ unsubscribe_url }}"},
            }
        ],
    }
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**doc, "steps": [{"id": "w", "type": "wait", "hours": 0}]}))
    refused = runner.invoke(app, ["journeys", "create", str(bad), *at])
    assert refused.exit_code == 1 and "steps[0].hours" in refused.output
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert runner.invoke(app, ["journeys", "create", str(broken), *at]).exit_code == 1

    good = tmp_path / "journey.json"
    good.write_text(json.dumps(doc))
    made = _json(["journeys", "create", str(good), "--activate", *at])
    assert made["status"] == "active" and made["version"] == 1
    assert [j["id"] for j in _json(["journeys", "list", *at])] == [made["id"]]
    shown = runner.invoke(app, ["journeys", "show", made["id"], *at])
    assert shown.exit_code == 0 and json.loads(shown.output)["name"] == "Checkout reminder"

    pid = person(db, workspace, "u1", email="u1@example.com")
    grant(db, workspace, pid)
    now = utcnow()
    send(db, workspace, track("Checkout Started", userId="u1", timestamp=now.isoformat()))
    # the next midday: after the events and outside the default quiet hours
    midday = (now.replace(hour=12, minute=0) + timedelta(days=int(now.hour >= 12))).isoformat()
    report = _json(["journeys", "run", "--as-of", midday, *at])
    assert report["triggers"]["enrolled"] == 1 and report["sent"] == 1
    stats = _json(["journeys", "stats", made["id"], *at])
    assert stats["sent"] == 1 and stats["completed"] == 1
    table = runner.invoke(app, ["journeys", "stats", made["id"], *at])
    assert table.exit_code == 0 and "Checkout reminder" in table.output

    assert runner.invoke(app, ["journeys", "pause", made["id"], *at]).exit_code == 0
    assert runner.invoke(app, ["journeys", "archive", made["id"], *at]).exit_code == 0
    again = runner.invoke(app, ["journeys", "activate", made["id"], *at])
    assert again.exit_code == 1 and "archived" in again.output
    missing = runner.invoke(app, ["journeys", "show", "nope", *at])
    assert missing.exit_code == 1
