"""``consentry privacy erase``, ``erasure``, ``notify`` and ``unsuppress`` against a real store."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from consentry.cli import app
from consentry.config import IdentitySettings
from consentry.ingest import service as ingest
from consentry.platform.db import Database
from consentry.profiles import service as profiles
from tests.privacy.test_erasure import envelopes
from tests.support.segment import identify, track

runner = CliRunner()


def seed(db: Database, workspace: str) -> None:
    with db.write() as session:
        ingest.ingest(
            session=session,
            workspace_id=workspace,
            envelopes=envelopes(
                identify(userId="u-cli", traits={"email": "cli.person@example.com"}),
                track("Product Viewed", userId="u-cli", properties={"product_id": "p1"}),
            ),
            identity=IdentitySettings(),
        )


def test_erase_show_notify_and_unsuppress(database_url: str, db: Database, workspace: str) -> None:
    seed(db, workspace)
    where = ["--workspace", workspace, "--database-url", database_url]
    refused = runner.invoke(
        app,
        ["privacy", "erase", *where, "--email", "cli.person@example.com", "--reason", "r"],
        input="n\n",
    )
    assert refused.exit_code == 1 and "not erased" in refused.output
    done = runner.invoke(
        app,
        [
            "privacy",
            "erase",
            *where,
            "--email",
            "CLI.Person@example.com",
            "--reason",
            "request by letter",
            "--yes",
            "--json",
        ],
    )
    assert done.exit_code == 0, done.output
    erasure = json.loads(done.output)
    assert erasure["certificate"]["erased"]["events"] == 2
    with db.read() as session:
        assert (
            profiles.search_identifiers(
                session=session, workspace_id=workspace, email="cli.person@example.com"
            )
            == []
        )
    shown = runner.invoke(app, ["privacy", "erasure", *where, erasure["id"]])
    assert shown.exit_code == 0, shown.output
    assert "keys destroyed" in shown.output and "kept: suppression_list" in shown.output
    missing = runner.invoke(app, ["privacy", "erasure", *where, "no-such-erasure"])
    assert missing.exit_code == 1 and "no erasure" in missing.output
    again = runner.invoke(
        app, ["privacy", "erase", *where, "--user-id", "u-cli", "--reason", "r", "--yes"]
    )
    assert again.exit_code == 1 and "no profile" in again.output
    notified = runner.invoke(app, ["privacy", "notify", "--database-url", database_url])
    assert notified.exit_code == 0 and "0 delivered" in notified.output
    bad = runner.invoke(app, ["privacy", "unsuppress", *where, "--phone", "12", "--reason", "back"])
    assert bad.exit_code == 1
    lifted = runner.invoke(
        app, ["privacy", "unsuppress", *where, "--user-id", "u-cli", "--reason", "back"]
    )
    assert lifted.exit_code == 0 and "1 identifier(s) lifted" in lifted.output
