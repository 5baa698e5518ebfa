"""The register and the gate against a real store (SQLite and PostgreSQL): versions, the register
at a past date, the gate after the consent purposes change, erasure recipients."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date

import pytest

from consentry.consent import service as consent
from consentry.errors import Conflict, Invalid, NotFound, TransferRefused
from consentry.platform.db import Database, utcnow
from consentry.privacy import processor_service as service
from consentry.privacy.processors import Processor, ProcessorSpec
from tests.conftest import new_workspace

EMAIL = "marketing.communications.email"


def spec(name: str = "Mailchimp", **changes: object) -> ProcessorSpec:
    values: dict[str, object] = {
        "name": name,
        "kind": "processor",
        "transfer_country": "US",
        "transfer_safeguard": "scc",
        "purposes": (EMAIL,),
        "categories": ("user.contact.email", "user.name"),
        "dpa_signed_on": date(2024, 1, 10),
    }
    return ProcessorSpec(**{**values, **changes})  # type: ignore[arg-type]


def register(db: Database, workspace: str, **changes: object) -> Processor:
    with db.write() as session:
        return service.register_processor(
            session=session, workspace_id=workspace, spec=spec(**changes), actor="test"
        )


def update(db: Database, workspace: str, processor_id: str, **changes: object) -> Processor:
    with db.write() as session:
        return service.update_processor(
            session=session,
            workspace_id=workspace,
            processor_id=processor_id,
            changes=changes,
            actor="test",
        )


def check(db: Database, workspace: str, processor_id: str, purpose: str, *cats: str) -> Processor:
    with db.read() as session:
        return service.check_transfer(
            session=session,
            workspace_id=workspace,
            processor_id=processor_id,
            purpose=purpose,
            categories=list(cats),
        )


def test_every_change_is_a_version_and_the_register_can_be_read_at_a_past_date(
    db: Database, workspace: str
) -> None:
    made = register(db, workspace)
    first = utcnow()
    moved = update(db, workspace, made.id, transfer_country="ch", retention="90 days")
    assert (moved.version, moved.spec.transfer_country) == (2, "CH")
    assert moved.spec.transfer_safeguard == "adequacy"  # the old scc went with the old country
    same = update(db, workspace, made.id, retention=" 90 days ")
    assert same.version == 2  # nothing changed: no version
    second = utcnow()
    with db.write() as session:
        gone = service.deactivate_processor(
            session=session, workspace_id=workspace, processor_id=made.id, actor="test"
        )
    assert (gone.version, gone.spec.active) == (3, False)

    with db.read() as session:
        history = service.processor_history(
            session=session, workspace_id=workspace, processor_id=made.id
        )
        then = service.list_processors(session=session, workspace_id=workspace, at=first)
        later = service.list_processors(session=session, workspace_id=workspace, at=second)
        now = service.list_processors(session=session, workspace_id=workspace)
        before = service.list_processors(
            session=session, workspace_id=workspace, at=made.created_at.replace(year=2000)
        )
        ropa_then = service.record_of_processing(session=session, workspace_id=workspace, at=first)
        ropa_now = service.record_of_processing(session=session, workspace_id=workspace)
    assert [(v.version, v.change) for v in history] == [
        (1, "registered"),
        (2, "updated"),
        (3, "deactivated"),
    ]
    assert [p.spec for p in then] == [made.spec]
    assert [p.spec.transfer_country for p in later] == ["CH"]
    assert [p.spec.active for p in now] == [False]
    assert before == []
    assert [p.spec.name for p in ropa_then.activities[0].recipients] == ["Mailchimp"]
    assert ropa_now.activities[0].recipients == ()


def test_the_gate_allows_what_is_registered_and_names_every_reason_otherwise(
    db: Database, workspace: str
) -> None:
    made = register(db, workspace)
    assert check(db, workspace, made.id, EMAIL, "user.contact.email").id == made.id
    with pytest.raises(TransferRefused) as refused:
        check(db, workspace, made.id, "analytics", "user.behavior", "user.name")
    assert [e.field for e in refused.value.errors] == ["purpose", "categories.0"]
    assert made.id in refused.value.message
    with pytest.raises(TransferRefused) as unknown:
        check(db, workspace, "no-such-processor", EMAIL, "user.name")
    assert [e.field for e in unknown.value.errors] == ["processor_id"]
    with pytest.raises(Invalid) as malformed:
        check(db, workspace, made.id, EMAIL, "user.secrets")
    assert [e.field for e in malformed.value.errors] == ["categories.0"]
    update(db, workspace, made.id, active=False)
    with pytest.raises(TransferRefused) as inactive:
        check(db, workspace, made.id, EMAIL, "user.name")
    assert [e.field for e in inactive.value.errors] == ["active"]


def test_a_purpose_removed_from_the_consent_config_closes_the_flow(
    db: Database, workspace: str
) -> None:
    made = register(db, workspace, purposes=(EMAIL, "analytics"))
    check(db, workspace, made.id, "analytics", "user.name")
    with db.write() as session:
        kept = [
            p
            for p in consent.get_config(session=session, workspace_id=workspace).purposes
            if p.key != "analytics"
        ]
        consent.configure(session=session, workspace_id=workspace, purposes=kept)
    with pytest.raises(TransferRefused) as refused:
        check(db, workspace, made.id, "analytics", "user.name")
    assert "not a purpose of this workspace" in refused.value.errors[0].reason
    # other changes to the processor still go through: kept purposes are not checked again
    assert update(db, workspace, made.id, contact="dpo@example.com").version == 2
    with pytest.raises(Invalid) as invalid:
        update(db, workspace, made.id, purposes=[EMAIL, "analytics"])
    assert [e.field for e in invalid.value.errors] == ["purposes.1"]


def test_names_are_unique_per_workspace_whatever_their_case(db: Database, workspace: str) -> None:
    made = register(db, workspace)
    with pytest.raises(Conflict) as taken:
        register(db, workspace, name=" MAILCHIMP ")
    assert [e.field for e in taken.value.errors] == ["name"]
    other = register(db, workspace, name="Klaviyo")
    with pytest.raises(Conflict):
        update(db, workspace, other.id, name="mailchimp")
    assert register(db, new_workspace(db)).spec.name == made.spec.name  # another workspace
    register(db, workspace, name="Straße")
    with pytest.raises(Conflict):
        register(db, workspace, name="STRASSE")
    assert register(db, workspace, name="ß" * 200).spec.name == "ß" * 200  # folds to 400 chars


def test_another_workspace_sees_none_of_it(db: Database, workspace: str) -> None:
    made = register(db, workspace, erasure_webhook_url="https://hooks.example.com/erase")
    stranger = new_workspace(db)
    with db.read() as session:
        assert service.list_processors(session=session, workspace_id=stranger) == []
        assert service.erasure_recipients(session=session, workspace_id=stranger) == []
        with pytest.raises(NotFound):
            service.get_processor(session=session, workspace_id=stranger, processor_id=made.id)
        with pytest.raises(NotFound):
            service.processor_history(session=session, workspace_id=stranger, processor_id=made.id)
        with pytest.raises(TransferRefused):
            service.check_transfer(
                session=session,
                workspace_id=stranger,
                processor_id=made.id,
                purpose=EMAIL,
                categories=["user.name"],
            )
    with pytest.raises(NotFound):
        update(db, stranger, made.id, active=False)


def test_erasure_recipients_are_the_active_processors_with_a_webhook(
    db: Database, workspace: str
) -> None:
    hook = "https://hooks.example.com/erase"
    kept = register(db, workspace, name="Zendesk", erasure_webhook_url=hook)
    register(db, workspace, name="No hook")
    gone = register(db, workspace, name="Gone", erasure_webhook_url="http://127.0.0.1:9/e")
    local = register(db, workspace, name="Local", erasure_webhook_url="http://localhost:8080/e")
    update(db, workspace, gone.id, active=False)
    with db.read() as session:
        found = service.erasure_recipients(session=session, workspace_id=workspace)
        allowed = service.allowed_processors(
            session=session, workspace_id=workspace, purpose=EMAIL, categories=["user.name"]
        )
    assert [p.id for p in found] == [local.id, kept.id]
    assert found[1].spec.erasure_webhook_url == hook
    assert {p.spec.name for p in allowed} == {"Zendesk", "No hook", "Local"}


def test_an_invalid_spec_writes_nothing(db: Database, workspace: str) -> None:
    with pytest.raises(Invalid) as invalid:
        register(db, workspace, dpa_signed_on=None, transfer_country="IN", transfer_safeguard=None)
    assert sorted(e.field for e in invalid.value.errors) == ["dpa_signed_on", "transfer_safeguard"]
    with db.read() as session:
        assert service.list_processors(session=session, workspace_id=workspace) == []
    made = register(db, workspace)
    with pytest.raises(Invalid) as bad:
        update(db, workspace, made.id, name=None, colour="red")
    assert sorted(e.field for e in bad.value.errors) == ["colour", "name"]
    with db.read() as session:
        again = service.get_processor(session=session, workspace_id=workspace, processor_id=made.id)
    assert asdict(again.spec) == asdict(made.spec) and again.version == 1
