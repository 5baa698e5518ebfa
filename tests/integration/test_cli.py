"""The consentry command line on both stores: workspaces, keys, the demo seed, clear errors."""

from __future__ import annotations

from typer.testing import CliRunner

from consentry.analytics import service as analytics
from consentry.cli import app
from consentry.platform import tenancy
from consentry.platform.db import Database
from consentry.profiles import dedupe_service
from consentry.profiles import service as profiles
from consentry.quality import service as quality_service
from consentry.recommend import service as recommend_service

runner = CliRunner()


def test_workspace_and_keys_from_the_cli(database_url: str, db: Database) -> None:
    created = runner.invoke(
        app,
        ["workspace", "create", "cli-shop", "--name", "CLI shop", "--database-url", database_url],
    )
    assert created.exit_code == 0, created.output
    again = runner.invoke(app, ["workspace", "create", "cli-shop", "--database-url", database_url])
    assert again.exit_code == 1 and "already exists" in again.output
    bad = runner.invoke(app, ["workspace", "create", "Bad Slug!", "--database-url", database_url])
    assert bad.exit_code == 1 and "workspace id" in bad.output
    listed = runner.invoke(app, ["workspace", "list", "--database-url", database_url])
    assert "cli-shop" in listed.output
    key = runner.invoke(app, ["key", "create", "cli-shop", "--database-url", database_url])
    token = runner.invoke(
        app,
        [
            "key",
            "create",
            "cli-shop",
            "--kind",
            "token",
            "--role",
            "privacy_officer",
            "--database-url",
            database_url,
        ],
    )
    assert key.exit_code == 0 and token.exit_code == 0
    write_secret = key.stdout.strip().splitlines()[-1]
    token_secret = token.stdout.strip().splitlines()[-1]
    with db.read() as session:
        write = tenancy.authenticate(session=session, secret=write_secret, kind="write")
        admin = tenancy.authenticate(session=session, secret=token_secret, kind="token")
    assert write.workspace_id == admin.workspace_id == "cli-shop"
    assert admin.role == tenancy.Role.PRIVACY_OFFICER
    missing_role = runner.invoke(
        app, ["key", "create", "cli-shop", "--kind", "token", "--database-url", database_url]
    )
    assert missing_role.exit_code == 1 and "role" in missing_role.output
    nowhere = runner.invoke(app, ["key", "create", "no-such-ws", "--database-url", database_url])
    assert nowhere.exit_code == 1 and "no workspace" in nowhere.output


def test_demo_seeds_a_small_shop_once(database_url: str, db: Database) -> None:
    args = [
        "demo",
        "--database-url",
        database_url,
        "--no-serve",
        "--customers",
        "60",
        "--months",
        "3",
        "--seed",
        "7",
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "admin token" in first.output and "cst_" in first.output
    with db.read() as session:
        count = profiles.count_profiles(session=session, workspace_id="demo-shop")
    assert count >= 60
    # every page has something to show at once: the schedules' work was done by the seed
    with db.read() as session:
        run = analytics.latest_run(session=session, workspace_id="demo-shop")
        deduped = dedupe_service.latest_run(session=session, workspace_id="demo-shop")
        audit = quality_service.latest(session=session, workspace_id="demo-shop")
        models = recommend_service.models(session=session, workspace_id="demo-shop")
    assert run is not None and run["customers"] > 0 and run["cohorts"]
    assert deduped is not None and deduped["profiles"] == count
    assert audit is not None and audit.profiles == count and audit.actor == "demo"
    assert [m["active"] for m in models] == [True]
    assert all(f"computed {step}" in first.output for step in ("analytics", "recommendations"))
    second = runner.invoke(app, args)  # reuses the seeded shop, issues fresh keys
    assert second.exit_code == 0 and "already seeded" in second.output
    with db.read() as session:
        assert profiles.count_profiles(session=session, workspace_id="demo-shop") == count
