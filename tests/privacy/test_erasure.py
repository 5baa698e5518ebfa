"""Erasure on both stores: a person whose every field and event carries a unique marker is
erased; afterwards no table, no column and no raw database file (the SQLite file with its WAL;
a ``pg_dump``) holds the marker, every other person is unchanged, copies taken before no longer
open, both hash chains still verify, and late or replayed events do not bring the person back."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from consentry.audiences import service as audiences
from consentry.config import CryptoSettings, IdentitySettings, Settings
from consentry.consent import service as consent
from consentry.consent.models import ProofIn
from consentry.errors import Invalid, NotFound
from consentry.ingest import service as ingest
from consentry.ingest.tables import EventRow
from consentry.migrations import upgrade
from consentry.platform import audit, tenancy
from consentry.platform.db import Base, Database, utcnow
from consentry.platform.keystore import default_url
from consentry.platform.vault import Vault, is_token, token_subject
from consentry.privacy import erasure_service
from consentry.profiles import service as profiles
from consentry.profiles.tables import IdentifierRow, TraitHistoryRow
from consentry.stores import close_database, open_database
from tests.conftest import BACKENDS
from tests.privacy.test_encryption_at_rest import _raw_bytes
from tests.support.postgres import ThrowawayPostgres
from tests.support.segment import identify, track
from tests.support.segment import parsed as envelopes

WS = "erasure-shop"
M = "qz9mark"  # the marker: every field and event of the person carries it
PHONE = "+1 415 555 0177"
PHONE_MARKS = ("4155550177", "415 555 0177")
HOLD = timedelta(days=3650)
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def ada_messages() -> list[dict[str, Any]]:
    """A visitor on two devices who signs up: three profiles unified into one person."""
    return [
        track(
            "Product Viewed",
            anonymousId=f"anon-{M}",
            messageId=f"msg-{M}-1",
            timestamp=at(0),
            properties={"product_id": "p1", "note": M},
            context={"ip": "203.0.113.9", "userAgent": f"UA-{M}"},
        ),
        identify(
            anonymousId=f"tablet-{M}",
            messageId=f"msg-{M}-2",
            timestamp=at(1),
            traits={"email": f"ada.{M}@example.com", "favourite": f"colour-{M}"},
        ),
        identify(  # signs up: joins the browser's and the tablet's profiles
            userId=f"user-{M}",
            anonymousId=f"anon-{M}",
            messageId=f"msg-{M}-3",
            timestamp=at(2),
            traits={
                "email": f"ada.{M}@example.com",
                "phone": PHONE,
                "first_name": f"Ada{M}",
                "address": {"street": f"1 {M} Road", "city": "Leeds"},
                "plan": f"plan-{M}",
            },
        ),
        track(
            "Product Added",
            userId=f"user-{M}",
            messageId=f"msg-{M}-4",
            timestamp=at(3),
            properties={"cart_id": f"cart-{M}", "product_id": "p1", "price": 10, "quantity": 1},
        ),
        track(
            "Order Completed",
            userId=f"user-{M}",
            messageId=f"msg-{M}-5",
            timestamp=at(4),
            properties={
                "order_id": "o-1001",
                "coupon": f"C-{M}",
                "total": 10,
                "currency": "EUR",
                "products": [{"product_id": "p1", "price": 10, "quantity": 1}],
            },
        ),
        track(f"Wishlist {M}", userId=f"user-{M}", messageId=f"msg-{M}-6", timestamp=at(5)),
        identify(  # an identify that only carries a junk id: its own key
            userId="null",
            messageId=f"msg-{M}-7",
            timestamp=at(6),
            traits={"email": f"ada.{M}@example.com"},
        ),
    ]


def bob_messages() -> list[dict[str, Any]]:
    return [
        identify(
            userId="user-bob",
            timestamp=at(0),
            traits={"email": "bob@example.com", "first_name": "Bob", "plan": "gold"},
        ),
        track(
            "Product Viewed", userId="user-bob", timestamp=at(1), properties={"product_id": "p2"}
        ),
        track(
            "Order Completed",
            userId="user-bob",
            timestamp=at(2),
            properties={"order_id": "o-2002", "total": 5, "currency": "EUR"},
        ),
    ]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Database]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shop.db'}"
    else:
        server: ThrowawayPostgres = request.getfixturevalue("postgres_server")
        url = server.create_database()
    upgrade(url)
    db = open_database(Settings(environment="test", database_url=url))
    yield url, db
    close_database(db)


def feed(db: Database, messages: list[dict[str, Any]]) -> ingest.IngestResult:
    with db.write() as session:
        return ingest.ingest(
            session=session,
            workspace_id=WS,
            envelopes=envelopes(*messages),
            identity=IdentitySettings(),
        )


def seed(db: Database) -> tuple[str, str]:
    with db.write() as session:
        tenancy.create_workspace(session=session, workspace_id=WS)
    feed(db, ada_messages())
    feed(db, bob_messages())
    with db.write() as session:
        ada = consent.resolve_subject(session=session, workspace_id=WS, user_id=f"user-{M}")
        bob = consent.resolve_subject(session=session, workspace_id=WS, user_id="user-bob")
        for pid, agent, page in (
            (ada, f"UA-{M}", f"https://shop.example/{M}/join"),
            (bob, "UA-bob", "https://shop.example/bob/join"),
        ):
            consent.record(
                session=session,
                workspace_id=WS,
                profile_id=pid,
                purpose="marketing.communications.email",
                state="granted",
                source="web_form",
                actor="test:dpo",
                proof=ProofIn(ip="203.0.113.9", user_agent=agent, page_url=page),
            )
        audit.record(
            session=session,
            workspace_id=WS,
            actor="test:dpo",
            action="profile.read",
            target_type="profile",
            target_id=ada,
            reason="support ticket",
        )
    return ada, bob


def person_view(db: Database, profile_id: str) -> dict[str, Any]:
    """Everything the services show of a person (to compare before and after)."""
    with db.read() as session:
        view = profiles.get_profile(session=session, workspace_id=WS, profile_id=profile_id)
        events = ingest.events_of(
            session=session, workspace_id=WS, profile_ids=view.member_ids, limit=1000
        )
        _, records = consent.subject_history(
            session=session, workspace_id=WS, profile_id=view.id, limit=100, offset=0
        )
        from consentry.commerce import service as commerce

        orders = commerce.orders_of(session=session, workspace_id=WS, profile_ids=view.member_ids)
    return {
        "traits": view.traits,
        "identifiers": sorted((i["type"], i["value"]) for i in view.identifiers),
        "events": sorted((e.message_id, e.payload.get("type")) for e in events),
        "consent": [(r.id, r.state, r.proof) for r in records],
        "orders": [asdict(o) for o in orders],
    }


def sealed_of(db: Database, member_ids: list[str]) -> list[tuple[str, str]]:
    """The person's sealed values as a backup taken now would hold them: (field, token)."""
    with db.read() as session:
        out = [
            (f"identifier:{kind}", sealed)
            for kind, sealed in session.execute(
                select(IdentifierRow.type, IdentifierRow.sealed).where(
                    IdentifierRow.profile_id.in_(member_ids)
                )
            )
        ]
        out += [
            (f"trait:{key}", value)
            for key, value in session.execute(
                select(TraitHistoryRow.key, TraitHistoryRow.value).where(
                    TraitHistoryRow.profile_id.in_(member_ids)
                )
            )
            if is_token(value)
        ]
        out += [
            ("event.payload", payload)
            for (payload,) in session.execute(
                select(EventRow.payload).where(
                    EventRow.workspace_id == WS, EventRow.message_id.like(f"msg-{M}-%")
                )
            )
        ]
    assert all(is_token(token) for _, token in out)
    return out


def hits(db: Database, needles: tuple[str, ...]) -> list[str]:
    """``table.column`` of every value, of every column of every table, holding a needle."""
    found: list[str] = []
    with db.read() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                found.extend(
                    f"{table.name}.{column.name}"
                    for column, value in zip(table.columns, row, strict=True)
                    if any(n in str(value) for n in needles)
                )
    return sorted(set(found))


def marks() -> tuple[str, ...]:
    return (M, *PHONE_MARKS)


def test_erasure_leaves_no_trace_and_nobody_else_changes(
    store: tuple[str, Database], tmp_path: Path
) -> None:
    url, db = store
    ada, bob = seed(db)
    with db.read() as session:
        members = profiles.member_ids(
            session=session,
            workspace_id=WS,
            canonical_id=profiles.canonical_of(session=session, workspace_id=WS, profile_id=ada),
        )
    assert len(members) >= 2  # the person really is several merged profiles
    with db.write() as session:  # both are in a segment (membership and its history)
        segment, _ = audiences.create_segment(
            session=session,
            workspace_id=WS,
            name="Everyone",
            rule={
                "event": "Order Completed",
                "count": {"op": "gte", "value": 0},
                "within_days": 3650,
            },
            actor="test:marketer",
        )
        assert set(
            audiences.member_ids(session=session, workspace_id=WS, segment_id=segment.id)
        ) >= {
            profiles.canonical_of(session=session, workspace_id=WS, profile_id=p)
            for p in (ada, bob)
        }
    before = person_view(db, ada)
    assert before["traits"]["first_name"] == f"Ada{M}" and before["orders"]
    assert "identifiers.sealed" not in hits(db, marks())  # sealed at rest...
    assert "trait_history.value" in hits(db, marks())  # ...but the scan finds clear ones
    bob_before = person_view(db, bob)
    backup = sealed_of(db, members)
    copy_url = None
    if make_url(url).get_backend_name() == "sqlite":
        db.purge_deleted()
        shutil.copy(str(make_url(url).database), tmp_path / "copy.db")
        copy_url = f"sqlite:///{tmp_path / 'copy.db'}"

    with db.write() as session:
        done = erasure_service.erase(
            session=session,
            workspace_id=WS,
            profile_id=ada,
            actor="test:dpo",
            reason="erasure request 2026-11",
            order_hold=HOLD,
        )
    db.purge_deleted()

    # nothing of the person in any table or column, nor in the raw files
    assert hits(db, marks()) == []
    raw = _raw_bytes(url)
    assert WS.encode() in raw and b"o-1001" in raw  # the scan sees the kept invoice
    assert [m for m in marks() if m.encode() in raw] == []
    # everybody else is as they were
    assert person_view(db, bob) == bob_before
    # the certificate says what went, what stayed and why
    cert = done.certificate
    assert cert["subject"]["member_ids"] == sorted(members)
    assert cert["erased"]["profiles"] == len(members)
    assert cert["erased"]["events"] == len(ada_messages())
    assert cert["erased"]["carts"] == 1 and cert["erased"]["orders"] == 0
    assert cert["erased"]["segment_memberships"] >= 2  # the membership and its entry
    with db.read() as session:
        left = audiences.member_ids(session=session, workspace_id=WS, segment_id=segment.id)
        changes = audiences.changes_after(session=session, workspace_id=WS, after_id=0)
    assert not set(left) & set(members) and left
    assert not {c.profile_id for c in changes} & set(members)
    assert cert["keys_destroyed"] >= len(members) + 2  # profiles, userId, anonymous ids, junk
    kept = {k["what"]: k for k in cert["kept"]}
    assert kept["orders"]["count"] == 1 and "until" in kept["orders"]
    assert kept["consent_records"]["count"] == 1
    assert set(kept) == {"orders", "consent_records", "suppression_list", "audit_trail"}
    # copies taken before the erasure no longer open
    vault = db.vault
    assert isinstance(vault, Vault)
    assert vault.open_many(WS, backup) == [None] * len(backup)
    if copy_url is not None:
        copy = open_database(
            Settings(
                environment="test",
                database_url=copy_url,
                crypto=CryptoSettings(keystore_url=default_url(url)),
            )
        )
        try:
            old = person_view(copy, ada)
            assert old["identifiers"] and all(v is None for _, v in old["identifiers"])
            assert "first_name" not in old["traits"] or old["traits"]["first_name"] is None
            assert all(event is None for _, event in old["events"])
            assert person_view(copy, bob) == bob_before  # the rest of the copy still reads
        finally:
            close_database(copy)
    with db.read() as session:
        assert consent.verify(session=session, workspace_id=WS).ok
        assert audit.verify(session=session, workspace_id=WS).ok
        with pytest.raises(NotFound):
            profiles.get_profile(session=session, workspace_id=WS, profile_id=ada)
        entries = audit.entries(session=session, workspace_id=WS, action="privacy.erasure")
        assert [e.target_id for e in entries] == [done.id]
    # the invoice stays, unlinked from anybody
    with db.read() as session:
        from consentry.commerce import service as commerce

        order = commerce.get_order(session=session, workspace_id=WS, order_id="o-1001")
        assert order.profile_id is None and order.total == 10
    # erasing again: nobody is left to erase
    with db.write() as session, pytest.raises(NotFound):
        erasure_service.erase(
            session=session, workspace_id=WS, profile_id=ada, actor="test:dpo", reason="again"
        )


def test_without_a_legal_hold_the_orders_go_too(store: tuple[str, Database]) -> None:
    _, db = store
    ada, _ = seed(db)
    with db.write() as session:
        done = erasure_service.erase(
            session=session, workspace_id=WS, profile_id=ada, actor="test:dpo", reason="no hold"
        )
    assert done.certificate["erased"]["orders"] == 1
    assert "orders" not in {k["what"] for k in done.certificate["kept"]}
    with db.read() as session:
        from consentry.commerce import service as commerce

        with pytest.raises(NotFound):
            commerce.get_order(session=session, workspace_id=WS, order_id="o-1001")
        assert commerce.get_order(session=session, workspace_id=WS, order_id="o-2002").total == 5


def test_a_reason_with_personal_data_is_refused_and_nothing_is_erased(
    store: tuple[str, Database],
) -> None:
    _, db = store
    ada, _ = seed(db)
    with db.write() as session, pytest.raises(Invalid) as caught:
        erasure_service.erase(
            session=session,
            workspace_id=WS,
            profile_id=ada,
            actor="test:dpo",
            reason=f"asked by ada.{M}@example.com",
        )
    assert caught.value.errors[0].field == "reason"
    assert person_view(db, ada)["traits"]["first_name"] == f"Ada{M}"


def test_late_and_replayed_events_do_not_bring_the_person_back(
    store: tuple[str, Database],
) -> None:
    _, db = store
    ada, bob = seed(db)
    with db.write() as session:
        erasure_service.erase(
            session=session, workspace_id=WS, profile_id=ada, actor="test:dpo", reason="request"
        )
    with db.read() as session:
        events_before = ingest.count_events(session=session, workspace_id=WS)
        profiles_before = profiles.count_profiles(session=session, workspace_id=WS)

    replay = feed(db, ada_messages()[:6])  # the same messages again (the junk-id one would link)
    assert replay.suppressed == 6 and replay.accepted == 0
    late = feed(  # a device that never synced: a new anonymous id, the person's email
        db,
        [
            identify(
                anonymousId="old-phone", timestamp=at(30), traits={"email": f"ADA.{M}@example.com"}
            )
        ],
    )
    assert late.accepted == 1 and late.suppressed == 1  # stored, then dropped once identified
    signed = feed(  # a consent grant, but made before the erasure: not a new action
        db,
        [
            identify(
                userId=f"user-{M}",
                timestamp=at(40),
                traits={"email": f"ada.{M}@example.com"},
                context={"consent": {"categoryPreferences": {"marketing": True}}},
            )
        ],
    )
    assert signed.suppressed == 1
    with db.read() as session:
        assert ingest.count_events(session=session, workspace_id=WS) == events_before
        assert profiles.count_profiles(session=session, workspace_id=WS) == profiles_before
        assert (
            profiles.search_identifiers(
                session=session, workspace_id=WS, email=f"ada.{M}@example.com"
            )
            == []
        )

    # the person comes back by a new, explicit action: signs up again and grants consent
    now = utcnow()
    back = feed(
        db,
        [
            identify(
                userId=f"user-{M}",
                timestamp=now.isoformat(),
                sentAt=now.isoformat(),
                traits={"email": f"ada.{M}@example.com", "first_name": "Ada"},
                context={"consent": {"categoryPreferences": {"marketing": True}}},
            ),
            track("Product Viewed", userId=f"user-{M}", properties={"product_id": "p3"}),
        ],
    )
    assert back.suppressed == 0 and back.accepted == 2, back
    with db.read() as session:
        (again,) = profiles.search_identifiers(
            session=session, workspace_id=WS, email=f"ada.{M}@example.com"
        )
        assert again != ada
    view = person_view(db, again)
    assert view["traits"]["first_name"] == "Ada"
    assert len(view["events"]) == 2 and all(e is not None for _, e in view["events"])
    # and can be erased again: the events sealed under the identity's fresh key go too
    with db.write() as session:
        second = erasure_service.erase(
            session=session, workspace_id=WS, profile_id=again, actor="test:dpo", reason="again"
        )
    assert second.certificate["erased"]["events"] == 2
    assert person_view(db, bob)["traits"]["first_name"] == "Bob"


def test_a_request_acknowledged_after_an_erasure_is_screened_when_expanded(
    store: tuple[str, Database],
) -> None:
    """Acknowledging does not look for erased people (a request becomes one sealed stage);
    expanding the stage does, as any storing does: the erased person's message is dropped."""
    _, db = store
    ada, _ = seed(db)
    with db.write() as session:
        erasure_service.erase(
            session=session, workspace_id=WS, profile_id=ada, actor="test:dpo", reason="request"
        )
    late = envelopes(
        track("Product Viewed", userId=f"user-{M}", messageId=f"late-{M}", properties={"n": M}),
        track("Product Viewed", userId="user-bob", messageId="late-bob"),
    )
    with db.read() as session:
        staged = ingest.seal_stages(session=session, keys=ingest.StageKeys(), batches=[(WS, late)])
    assert staged[0].result.accepted == 2  # acknowledged: staged, not screened yet
    ingest.stage(spool=db.spool, staged=staged)  # type: ignore[arg-type]
    with db.write() as session:
        expanded = ingest.expand_stages(session=session, workspace_id=WS)
    assert (expanded.stored.accepted, expanded.stored.suppressed) == (1, 1)
    with db.read() as session:
        assert ingest.get_event(session=session, workspace_id=WS, message_id=f"late-{M}") is None
        kept = ingest.get_event(session=session, workspace_id=WS, message_id="late-bob")
        assert ingest.workspaces_with_stages(session=session) == []
    assert kept is not None and kept.payload["userId"] == "user-bob"
    assert not hits(db, (f"late-{M}",))


def test_an_operator_can_lift_a_suppression(store: tuple[str, Database]) -> None:
    _, db = store
    ada, _ = seed(db)
    with db.write() as session:
        erasure_service.erase(
            session=session, workspace_id=WS, profile_id=ada, actor="test:dpo", reason="request"
        )
    with db.write() as session:
        with pytest.raises(Invalid):
            erasure_service.lift_suppression(
                session=session,
                workspace_id=WS,
                identifiers={"email": "not an email"},
                actor="test:dpo",
                reason="new account",
            )
        lifted = erasure_service.lift_suppression(
            session=session,
            workspace_id=WS,
            identifiers={"user_id": f"user-{M}"},
            actor="test:dpo",
            reason="new account, verified in store",
        )
    assert lifted == 1
    result = feed(db, [identify(userId=f"user-{M}", traits={"plan": "new"})])
    assert result.suppressed == 0
    with db.read() as session:
        assert profiles.search_identifiers(session=session, workspace_id=WS, user_id=f"user-{M}")


def test_stored_but_unapplied_events_of_the_person_are_erased_too(
    store: tuple[str, Database],
) -> None:
    _, db = store
    ada, _ = seed(db)
    with db.write() as session:  # acknowledged, not applied yet
        ingest.store(
            session=session,
            workspace_id=WS,
            envelopes=envelopes(track("Late", userId=f"user-{M}", properties={"n": M})),
        )
    with db.write() as session:
        done = erasure_service.erase(
            session=session, workspace_id=WS, profile_id=ada, actor="test:dpo", reason="request"
        )
        assert (
            ingest.process_pending(
                session=session, workspace_id=WS, identity=IdentitySettings()
            ).processed
            == 0
        )
    assert done.certificate["erased"]["events"] == len(ada_messages()) + 1
    assert hits(db, marks()) == []


def test_staged_requests_of_the_person_are_expanded_and_erased_with_their_keys(
    store: tuple[str, Database],
) -> None:
    """A request is acknowledged as one stage, expanded into events later; an erasure meanwhile
    expands the workspace's stages first, so the person's staged events go like any other, and
    the stage's key is discarded once the erasure commits. Bob's staged event stays."""
    _, db = store
    ada, _ = seed(db)
    late = envelopes(
        track("Late", userId=f"user-{M}", messageId=f"staged-{M}", properties={"n": M}),
        track("Late", userId="user-bob", messageId="staged-bob"),
    )
    with db.read() as session:
        staged = ingest.seal_stages(session=session, keys=ingest.StageKeys(), batches=[(WS, late)])
    ingest.stage(spool=db.spool, staged=staged)  # type: ignore[arg-type]
    (row,) = [s.row for s in staged]
    assert row is not None and M not in row["body"]  # sealed as one value
    subject = token_subject(row["body"])
    assert subject.startswith(ingest.STAGE_SUBJECT)
    keystore = db.vault.keystore  # type: ignore[attr-defined]
    assert keystore.data_key(WS, subject) is not None
    with db.write() as session:
        done = erasure_service.erase(
            session=session, workspace_id=WS, profile_id=ada, actor="test:dpo", reason="request"
        )
        assert keystore.data_key(WS, subject) is not None  # not before the commit
    assert keystore.data_key(WS, subject) is None
    assert done.certificate["erased"]["events"] == len(ada_messages()) + 1
    with db.read() as session:
        assert ingest.workspaces_with_stages(session=session) == []
        kept = ingest.get_event(session=session, workspace_id=WS, message_id="staged-bob")
    assert kept is not None and kept.payload["userId"] == "user-bob"
    assert hits(db, marks()) == []


def test_a_replayed_message_keyed_by_itself_of_an_erased_person_is_dropped_when_expanded(
    store: tuple[str, Database],
) -> None:
    """A message with only a junk userId is sealed under a key of its own, shredded with the
    person's. Replayed after the erasure it is acknowledged (stages are not screened); when
    expanded it is dropped as the person's, and the stages after it are expanded as usual."""
    _, db = store
    ada, _ = seed(db)
    junk = identify(
        userId="undefined",  # junk: it never links, so the message is keyed by itself
        messageId=f"junk-{M}",
        traits={"email": f"ada.{M}@example.com", "note": M},
    )
    feed(db, [junk])
    with db.write() as session:
        erasure_service.erase(
            session=session, workspace_id=WS, profile_id=ada, actor="test:dpo", reason="request"
        )
    later = track("Late", userId="user-bob", messageId="after-junk")
    with db.read() as session:
        staged = ingest.seal_stages(
            session=session,
            keys=ingest.StageKeys(),
            batches=[(WS, envelopes(junk)), (WS, envelopes(later))],
        )
    ingest.stage(spool=db.spool, staged=staged)  # type: ignore[arg-type]
    with db.write() as session:
        expanded = ingest.expand_stages(session=session, workspace_id=WS)
    assert expanded.stages == 2
    assert (expanded.stored.accepted, expanded.stored.suppressed) == (1, 1)
    with db.read() as session:
        assert ingest.get_event(session=session, workspace_id=WS, message_id=f"junk-{M}") is None
        assert ingest.get_event(session=session, workspace_id=WS, message_id="after-junk")
        assert ingest.workspaces_with_stages(session=session) == []
    assert hits(db, marks()) == []


def test_a_stage_that_cannot_be_expanded_is_set_aside_and_the_next_go_on(
    store: tuple[str, Database],
) -> None:
    """One bad request must not hold up its workspace: it is kept in the spool, marked
    failed (the error's type only), and the stages after it are expanded."""
    _, db = store
    seed(db)
    with db.read() as session:
        bad, good = ingest.seal_stages(
            session=session,
            keys=ingest.StageKeys(),
            batches=[
                (WS, envelopes(track("A", userId="user-bob", messageId="bad-1"))),
                (WS, envelopes(track("B", userId="user-bob", messageId="good-1"))),
            ],
        )
    assert bad.row is not None
    bad.row["body"] = bad.row["body"][:-8] + "AAAAAAAA"  # corrupted: it no longer opens
    ingest.stage(spool=db.spool, staged=[bad, good])  # type: ignore[arg-type]
    with db.write() as session:
        expanded = ingest.expand_stages(session=session, workspace_id=WS)
    assert (expanded.stages, expanded.stored.accepted) == (2, 1)
    with db.read() as session:
        assert ingest.get_event(session=session, workspace_id=WS, message_id="good-1")
        assert ingest.get_event(session=session, workspace_id=WS, message_id="bad-1") is None
        assert ingest.workspaces_with_stages(session=session) == []
        # good-1 is stored, not applied yet; the stage set aside is not pending
        assert ingest.pending_count(session=session, workspace_id=WS) == 1
    spool = db.spool  # type: ignore[attr-defined]
    assert spool.messages(WS, failed=True) == 1  # kept for an operator, with its key
    (subject,) = spool.subjects()
    assert db.vault.keystore.data_key(WS, subject) is not None  # type: ignore[attr-defined]
