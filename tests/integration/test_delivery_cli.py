"""``consentry delivery`` on both stores: a round run from the command line, the outbox's counts,
the dead letters retried by hand, the suppression list, and clear errors."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from consentry.cli import app
from consentry.platform.db import Database
from tests.conftest import new_workspace
from tests.support.delivery import hook, hook_server, webhook

runner = CliRunner()


def _json(args: list[str]) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_round_dead_letters_and_suppressions_from_the_cli(
    database_url: str, db: Database
) -> None:
    workspace = new_workspace(db)
    at = ["--workspace", workspace, "--database-url", database_url]
    with hook_server() as server:
        made = webhook(db, workspace, server.url("/in"), name="Partner")
        server.answer("/in", 410, 200)
        first = hook(db, workspace, made.destination.id, "cli-1", {"n": 1})
        second = hook(db, workspace, made.destination.id, "cli-2", {"n": 2})
        report = _json(["delivery", "run", *at])
        assert (report["sent"], report["dead"]) == (1, 1)
        listed = _json(["delivery", "destinations", *at])["destinations"]
        assert listed[0]["name"] == "Partner" and listed[0]["messages"]["dead"] == 1
        dead = _json(["delivery", "dead", *at])
        assert [m["id"] for m in dead["messages"]] == [first] and dead["total"] == 1
        assert dead["messages"][0]["last_error"] == "HTTP 410"
        not_dead = runner.invoke(app, ["delivery", "retry", str(second), *at])
        assert not_dead.exit_code == 1 and "not dead" in not_dead.output
        nothing = runner.invoke(app, ["delivery", "retry", *at])
        assert nothing.exit_code == 1 and "--all" in nothing.output
        retried = runner.invoke(app, ["delivery", "retry", "--all", *at])
        assert retried.exit_code == 0 and "1 message(s) queued again" in retried.output
        assert _json(["delivery", "run", *at])["sent"] == 1
        outbox = _json(["delivery", "outbox", *at, "--status", "sent"])
        assert outbox["totals"]["sent"] == 2 and outbox["total"] == 2
        assert {m["id"] for m in outbox["messages"]} == {first, second}

    added = runner.invoke(app, ["delivery", "suppress", "Eve@Example.com", *at])
    assert added.exit_code == 0 and added.output.startswith("suppressed: ")
    again = runner.invoke(app, ["delivery", "suppress", "eve@example.com", *at])
    assert again.exit_code == 0 and again.output.startswith("already suppressed")
    entries = _json(["delivery", "suppressions", *at])
    assert entries["total"] == 1 and "eve" not in json.dumps(entries).lower()
    removed = runner.invoke(app, ["delivery", "unsuppress", entries["suppressions"][0]["id"], *at])
    assert removed.exit_code == 0
    assert _json(["delivery", "suppressions", *at])["total"] == 0
    bad = runner.invoke(app, ["delivery", "suppress", "nope", "--channel", "fax", *at])
    assert bad.exit_code == 1 and "unknown channel" in bad.output
    unknown = runner.invoke(
        app, ["delivery", "run", "--workspace", "ws-none", "--database-url", database_url]
    )
    assert unknown.exit_code == 1
