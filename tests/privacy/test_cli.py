"""``consentry privacy processors list`` and ``consentry privacy ropa`` against a real store."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path

from typer.testing import CliRunner

from consentry.cli import app
from consentry.platform.db import Database
from consentry.privacy import processor_service as service
from consentry.privacy.processors import ProcessorSpec

runner = CliRunner()
EMAIL = "marketing.communications.email"


def register(db: Database, workspace: str, name: str, country: str, safeguard: str | None) -> str:
    spec = ProcessorSpec(
        name=name,
        kind="processor",
        transfer_country=country,
        transfer_safeguard=safeguard,
        purposes=(EMAIL,),
        categories=("user.contact.email",),
        dpa_signed_on=date(2024, 1, 10),
    )
    with db.write() as session:
        made = service.register_processor(
            session=session, workspace_id=workspace, spec=spec, actor="cli-test"
        )
    return made.id


def test_list_and_export(database_url: str, db: Database, workspace: str, tmp_path: Path) -> None:
    first = register(db, workspace, "Mailchimp", "US", "scc")
    register(db, workspace, "Brevo", "FR", None)
    where = ["--workspace", workspace, "--database-url", database_url]

    listed = runner.invoke(app, ["privacy", "processors", "list", *where, "--json"])
    assert listed.exit_code == 0, listed.output
    assert [p["name"] for p in json.loads(listed.output)] == ["Brevo", "Mailchimp"]
    table = runner.invoke(app, ["privacy", "processors", "list", *where])
    assert table.exit_code == 0, table.output
    assert f"Mailchimp  [processor, active, v1]  {first}" in table.output
    assert "  transfer    US (scc)" in table.output and "  transfer    FR\n" in table.output
    assert table.output.rstrip().endswith("2 processors")

    printed = runner.invoke(app, ["privacy", "ropa", *where, "--format", "json"])
    assert printed.exit_code == 0, printed.output
    email = json.loads(printed.output)["activities"][0]
    assert [r["name"] for r in email["recipients"]] == ["Brevo", "Mailchimp"]

    out = tmp_path / "ropa.csv"
    written = runner.invoke(app, ["privacy", "ropa", *where, "--format", "csv", "--out", str(out)])
    assert written.exit_code == 0, written.output
    raw = out.read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n")  # RFC 4180 line ends, kept as written
    rows = list(csv.DictReader(io.StringIO(raw.decode(), newline="")))
    assert rows[0]["purpose"] == EMAIL
    assert rows[0]["third_country_transfers"] == "Mailchimp: US (scc)"

    elsewhere = ["--workspace", "no-such-ws", "--database-url", database_url]
    missing = runner.invoke(app, ["privacy", "ropa", *elsewhere])
    assert missing.exit_code == 1
    wrong = runner.invoke(app, ["privacy", "ropa", *where, "--format", "xml"])
    assert wrong.exit_code == 2
