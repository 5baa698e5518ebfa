"""The capability commands end to end on both stores: analytics, recommendations and
de-duplication on one seeded shop, with their JSON output, and clear errors for bad input."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from consentry.cli import app
from consentry.platform.db import Database
from tests.analytics.shop import AS_OF, expected_customers, generate
from tests.conftest import new_workspace
from tests.identity.people import shop as people_with_duplicates
from tests.recommend.test_service import shop_messages
from tests.support.store import profile_of, send

runner = CliRunner()


def _json(args: list[str]) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_analytics_recommendations_and_dedupe_from_the_cli(database_url: str, db: Database) -> None:
    sales = new_workspace(db)
    shop = generate(customers=120, seed=2)
    send(db, sales, *shop.messages)
    at = ["--workspace", sales, "--database-url", database_url]
    run = _json(["analytics", "run", *at, "--as-of", AS_OF.isoformat()])
    assert run["customers"] == len(expected_customers(shop.orders, AS_OF)) and run["cohorts"]
    assert run["models"]["fitted"] is True, run["models"]
    churn = _json(["analytics", "churn", *at, "--min-risk", "0", "--limit", "500"])
    assert len(churn) == run["customers"] and all(c["churn_reason"] for c in churn)

    workspace = new_workspace(db)
    send(db, workspace, *shop_messages(customers=80, seed=9))
    people = people_with_duplicates(60, duplicates=12, seed=4, prefix="cli-")
    send(db, workspace, *people.messages)
    where = ["--workspace", workspace, "--database-url", database_url]
    trained = _json(["recommend", "train", *where])
    assert trained["version"] == 1
    models = _json(["recommend", "models", *where])
    assert [(m["version"], m["active"]) for m in models] == [(1, True)]
    customer = profile_of(db, workspace, user_id="c3").id
    shown = _json(["recommend", "show", customer, *where])
    assert shown["kind"] in {"personalized", "non_personalized"} and shown["items"]

    dry = _json(["identity", "dedupe", *where, "--dry-run"])
    assert dry["dry_run"] is True and dry["auto_merged"] > 0
    done = _json(["identity", "dedupe", *where])
    assert 0 < done["auto_merged"] <= dry["auto_merged"]  # a dry run cannot see merges chain
    table = runner.invoke(app, ["identity", "review", *where])
    assert table.exit_code == 0, table.output


def test_the_commands_refuse_an_unknown_workspace_and_bad_options(database_url: str) -> None:
    for command in (["analytics", "run"], ["recommend", "train"], ["identity", "dedupe"]):
        result = runner.invoke(
            app, [*command, "--workspace", "no-such-shop", "--database-url", database_url]
        )
        assert result.exit_code == 1 and "no-such-shop" in result.output, result.output
    bad = runner.invoke(
        app,
        [
            "identity",
            "dedupe",
            "--workspace",
            "x",
            "--threshold",
            "2",
            "--database-url",
            database_url,
        ],
    )
    assert bad.exit_code != 0
