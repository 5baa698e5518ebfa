"""Audience exports against a real store (SQLite and PostgreSQL): a partner push through the
outbox to a real local webhook (hashed rows only, each message once), a segment's members,
k-anonymous summaries, an audience walked in many batches, the batch form of the consent
policy, and the ``consentry audiences export`` commands."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from consentry.audiences import export_cli, export_service
from consentry.audiences import service as segments
from consentry.audiences.export_service import ExportRequest, Tally
from consentry.config import AudienceExportSettings
from consentry.consent import policy
from consentry.consent import service as consent
from consentry.delivery import destinations, outbox
from consentry.delivery.webhook import send as post
from consentry.errors import Invalid, TransferRefused
from consentry.platform.db import Database, utcnow
from tests.consent.test_policy_audience import shop as consent_shop
from tests.support.delivery import FAST, destination, grant, hook_server, person, processor
from tests.support.segment import identify
from tests.support.store import send

ADS = "marketing.advertising.third_party"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def run_export(
    db: Database, workspace: str, request: ExportRequest, **settings: Any
) -> tuple[export_service.ExportRecord, bytes]:
    sink = io.BytesIO()
    record = export_service.export_audience(
        db,
        workspace_id=workspace,
        request=request,
        actor="test:exports",
        settings=AudienceExportSettings(**settings),
        default_region="US",
        sink=sink,
    )
    return record, sink.getvalue()


def test_a_partner_push_reaches_the_webhook_in_batches_each_once(
    db: Database, workspace: str
) -> None:
    people = [
        person(db, workspace, f"u{i}", email=f"Buyer{i}@Shop.example", country="DE")
        for i in range(6)
    ]
    for pid in people[:5]:
        grant(db, workspace, pid, purpose=ADS, channel="any")
    meta = processor(db, workspace, "Meta Ads", purposes=(ADS,), categories=("user.contact",))
    with hook_server() as hooks:
        hook = destination(
            db,
            workspace,
            meta,
            name="Meta audience",
            kind="webhook",
            purpose=ADS,
            url=hooks.url("/meta"),
            categories=("user.contact.email",),
        ).destination
        request = ExportRequest(
            purpose=ADS,
            channel="any",
            mode="partner",
            platform="meta",
            destination_id=hook.id,
            profile_ids=people,
            fields=["email", "country"],
        )
        record, written = run_export(db, workspace, request, batch=3, push_batch=2)
        assert written == b""  # a push writes no file
        assert (record.subjects, record.batches, record.delivery) == (5, 3, "push")
        assert record.left_out == {"no_consent": 1}
        with db.read() as session:
            _, queued = outbox.list_messages(
                session=session, workspace_id=workspace, destination_id=hook.id
            )
        assert sorted(m.key for m in queued) == [f"export:{record.id}:{n}" for n in (1, 2, 3)]
        assert {m.origin for m in queued} == {f"export:{record.id}"}

        # a replay of a batch (a crash and a retry) queues nothing twice
        plan = export_service.Plan(
            id=record.id,
            workspace_id=workspace,
            request=request,
            fields=("email", "country"),
            delivery="push",
            ids=people,
            resolved=False,
            k=10,
            default_region="US",
            processor_id=meta,
            destination_channel=hook.channel,
            trait_keys=(),
        )
        again = export_service.Batch(rows=[["x" * 64, "y" * 64]], manifest=[], summary_values=[])
        with db.write() as session:
            assert (
                export_service.push_batch(
                    session=session, plan=plan, batch=again, tally=Tally(), size=2
                )
                == 0
            )

        report = outbox.deliver_due(
            db,
            mailer=None,
            post=post,
            now=utcnow(),
            settings=FAST,  # type: ignore[arg-type]
            workspace_id=workspace,
            jitter=lambda: 0.0,
        )
        assert report.sent == 3
        bodies = hooks.to("/meta")
    raw = b"".join(b.body for b in bodies)
    assert b"@" not in raw and b"shop.example" not in raw.lower()
    docs = [b.json() for b in bodies]
    assert {d["schema"] == ["EMAIL", "COUNTRY"] for d in docs} == {True}
    assert sorted(len(d["data"]) for d in docs) == [1, 2, 2]
    hashed = {row[0] for d in docs for row in d["data"]}
    assert hashed == {digest(f"buyer{i}@shop.example") for i in range(5)}
    assert {row[1] for d in docs for row in d["data"]} == {digest("de")}
    with db.read() as session:
        entries = export_service.manifest_page(
            session=session, workspace_id=workspace, export_id=record.id
        )
    assert sorted(e.profile_id for e in entries) == sorted(people[:5])
    assert {e.reason for e in entries} == {"granted"} and all(e.record_id for e in entries)


def test_a_destination_must_fit_the_export_and_pass_the_gate(db: Database, workspace: str) -> None:
    pid = person(db, workspace, "u1", email="a@b.example", country="US")
    meta = processor(db, workspace, "Meta Ads", purposes=(ADS,), categories=("user.contact",))
    hook = destination(
        db,
        workspace,
        meta,
        name="Meta",
        kind="webhook",
        purpose=ADS,
        url="http://127.0.0.1:9/hook",
        categories=("user.contact.email",),
    ).destination
    request = ExportRequest(
        purpose="analytics",
        channel="any",
        mode="partner",
        destination_id=hook.id,
        profile_ids=[pid],
        fields=["email"],
    )
    with pytest.raises(Invalid) as wrong:
        run_export(db, workspace, request)
    assert [e.field for e in wrong.value.errors] == ["purpose"]
    with db.write() as session:
        destinations.deactivate_destination(
            session=session, workspace_id=workspace, destination_id=hook.id, actor="test:x"
        )
    with pytest.raises(TransferRefused) as refused:
        run_export(
            db,
            workspace,
            ExportRequest(
                purpose=ADS,
                channel="any",
                mode="partner",
                destination_id=hook.id,
                profile_ids=[pid],
                fields=["email"],
            ),
        )
    assert "destination_id" in [e.field for e in refused.value.errors]


def test_a_segment_is_exported_with_its_current_members(db: Database, workspace: str) -> None:
    gold = [person(db, workspace, f"g{i}", plan="gold", country="US") for i in range(3)]
    person(db, workspace, "s1", plan="silver", country="US")
    with db.write() as session:
        segment, _ = segments.create_segment(
            session=session,
            workspace_id=workspace,
            name="Gold",
            rule={"trait": "plan", "op": "eq", "value": "gold"},
            actor="test",
        )
    record, written = run_export(
        db,
        workspace,
        ExportRequest(
            purpose=ADS, channel="any", segment_id=segment.id, fields=["profile_id", "traits.plan"]
        ),
    )
    rows = list(csv.DictReader(io.StringIO(written.decode())))
    assert sorted(r["profile_id"] for r in rows) == sorted(gold)
    assert {r["traits.plan"] for r in rows} == {"gold"}
    assert record.source == f"segment:{segment.id}" and record.subjects == 3


def test_the_summary_is_k_anonymous(db: Database, workspace: str) -> None:
    ids = []
    for i, country in enumerate(["DE", "DE", "DE", "US", "US", "FR"]):
        pid = person(db, workspace, f"k{i}", email=f"k{i}@x.example", country=country)
        if country != "US":  # the US is opt-out: no grant needed
            grant(db, workspace, pid, purpose=ADS, channel="any")
        ids.append(pid)
    record, written = run_export(
        db,
        workspace,
        ExportRequest(purpose=ADS, channel="any", profile_ids=ids, file_format="json"),
        k_anonymity=2,
    )
    cells = {c["value"]: c for c in record.summary["by"]["country"]}  # type: ignore[index]
    assert cells["DE"] == {"value": "DE", "count": 3}
    assert cells["FR"] == {"value": "FR", "suppressed": True}  # 1 < k
    assert cells["US"] == {"value": "US", "suppressed": True}  # else 6 - 3 - 2 tells FR's
    assert json.loads(written)["manifest"]["summary"] == record.summary


def test_a_large_audience_is_walked_in_batches(db: Database, workspace: str) -> None:
    count = 240
    send(
        db,
        workspace,
        *[
            identify(userId=f"bulk{i}", traits={"email": f"bulk{i}@x.example", "country": "US"})
            for i in range(count)
        ],
    )
    with db.read() as session:
        from consentry.profiles import service as profiles

        ids = profiles.inactive_people(
            session=session, workspace_id=workspace, before=utcnow().replace(year=9999)
        )
    assert len(ids) == count
    with db.write() as session:
        plan = export_service.start_export(
            session=session,
            workspace_id=workspace,
            request=ExportRequest(
                purpose=ADS, channel="any", profile_ids=ids, fields=["email"], file_format="csv"
            ),
            actor="test:exports",
            reason="test",
            default_region="US",
            settings=AudienceExportSettings(),
        )
    seen: list[tuple[int, int]] = []
    chunks = list(
        export_service.stream_file(
            db, plan, AudienceExportSettings(batch=50), progress=lambda d, t: seen.append((d, t))
        )
    )
    assert len(chunks) == 1 + 5  # the header, then one chunk per batch of 50
    assert seen[0] == (0, count) and seen[-1] == (count, count)
    lines = b"".join(chunks).decode().splitlines()
    assert lines[0] == "email" and sorted(lines[1:]) == sorted(
        f"bulk{i}@x.example" for i in range(count)
    )
    with db.read() as session:
        found = export_service.get_export(
            session=session, workspace_id=workspace, export_id=plan.id
        )
        last = export_service.manifest_page(
            session=session, workspace_id=workspace, export_id=plan.id, after=count - 1
        )
    assert (found.status, found.subjects) == ("completed", count)
    assert [e.seq for e in last] == [count]


def test_a_stream_stopped_early_is_marked_failed(db: Database, workspace: str) -> None:
    ids = [person(db, workspace, f"f{i}", country="US") for i in range(3)]
    with db.write() as session:
        plan = export_service.start_export(
            session=session,
            workspace_id=workspace,
            request=ExportRequest(purpose=ADS, channel="any", profile_ids=ids),
            actor="test:exports",
            reason="test",
            default_region="US",
            settings=AudienceExportSettings(),
        )
    stream = export_service.stream_file(db, plan, AudienceExportSettings(batch=1))
    next(stream), next(stream)
    stream.close()  # the client went away
    with db.read() as session:
        found = export_service.get_export(
            session=session, workspace_id=workspace, export_id=plan.id
        )
    assert (found.status, found.subjects) == ("failed", 1)


def test_the_batch_form_of_the_policy_agrees_with_can_use(db: Database, workspace: str) -> None:
    ids, members = consent_shop(db, workspace)
    with db.read() as session:
        unified = policy.can_use_unified(
            session=session,
            workspace_id=workspace,
            canonical_ids=[*ids, *members, "nope"],
            purpose="marketing.communications.email",
            channel="email",
        )
        one = {
            pid: consent.can_use(
                session=session,
                workspace_id=workspace,
                profile_id=pid,
                purpose="marketing.communications.email",
                channel="email",
            )
            for pid in ids
        }
    assert {pid: unified[pid] for pid in ids} == one
    # a merged member is no unified profile: the caller resolves ids first
    assert {unified[m].reason for m in [*members, "nope"]} == {"unknown_profile"}


def test_the_cli_writes_the_file_and_prints_the_manifest(
    db: Database, workspace: str, database_url: str, tmp_path: Path
) -> None:
    ids = [person(db, workspace, f"c{i}", email=f"c{i}@x.example", country="US") for i in range(2)]
    listed = tmp_path / "ids.txt"
    listed.write_text("\n".join([*ids, "", "unknown-id"]) + "\n")
    app = typer.Typer()
    export_cli.register(app)
    runner = CliRunner()
    base = ["--workspace", workspace, "--database-url", database_url]
    out = tmp_path / "audience.csv"
    done = runner.invoke(
        app,
        [
            "export",
            *base,
            "--purpose",
            ADS,
            "--profiles-file",
            str(listed),
            "--out",
            str(out),
            "--fields",
            "profile_id,email",
            "--reason",
            "quarterly CRM sync",
        ],
    )
    assert done.exit_code == 0, done.output
    assert "2 subjects" in done.output and "left out (unknown_profile): 1" in done.output
    with out.open(encoding="utf-8") as written:
        rows = list(csv.DictReader(written))
    assert sorted(r["profile_id"] for r in rows) == sorted(ids)
    export_id = done.output.split("export ")[1].split(":")[0].strip()
    shown = runner.invoke(app, ["export-manifest", *base, export_id])
    assert shown.exit_code == 0, shown.output
    lines = [json.loads(line) for line in shown.output.splitlines()]
    assert lines[0]["id"] == export_id and len(lines) == 3
    assert {line["reason"] for line in lines[1:]} == {"opt_out_regime_default"}
    listing = runner.invoke(app, ["exports", *base, "--json"])
    assert json.loads(listing.output)[0]["id"] == export_id
    refused = runner.invoke(
        app,
        [
            "export",
            *base,
            "--purpose",
            ADS,
            "--profiles-file",
            str(listed),
            "--out",
            str(out),
            "--mode",
            "partner",
        ],
    )
    assert refused.exit_code == 1 and "processor_id" in refused.output
    assert not out.exists()  # no half-written file is left behind
