"""A seeded demo shop on both stores: its carts convert or are abandoned, and it has consent
(the banner and GPC through ingestion, the newsletter and SMS through the consent API) for
several purposes, granted and refused, over months, with rates that differ by country."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from consentry.audiences import service as audiences
from consentry.cli import DEMO_WORKSPACE, app
from consentry.commerce.tables import CartRow
from consentry.config import IdentitySettings, Settings
from consentry.consent import policy as consent_policy
from consentry.consent import service as consent
from consentry.consent.models import OPT_IN_COUNTRIES, country_of
from consentry.consent.tables import ConsentRecordRow
from consentry.demo.generator import ShopSpec, planted_duplicates
from consentry.demo.seeding import chunks
from consentry.ingest import service as ingest
from consentry.journeys import service as journeys
from consentry.migrations import upgrade
from consentry.platform.db import Database, utcnow
from consentry.profiles import service as profiles
from consentry.profiles.dedupe_records import fold
from consentry.stores import close_database, open_database
from tests.conftest import BACKENDS, new_workspace
from tests.support.postgres import ThrowawayPostgres

SPEC = ShopSpec(customers=150, months=5, seed=11)
EMAIL = "marketing.communications.email"
SMS = "marketing.communications.sms"
BANNER = ("analytics", "personalize", "marketing.advertising.third_party")


@pytest.fixture(params=BACKENDS)
def fresh_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Database]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'demo.db'}"
    else:
        server: ThrowawayPostgres = request.getfixturevalue("postgres_server")
        url = server.create_database()
    upgrade(url)
    db = open_database(Settings(environment="test", database_url=url))
    yield url, db
    close_database(db)


@pytest.fixture(scope="module")
def seeded(db: Database) -> tuple[Database, str]:
    """One demo shop of ``SPEC`` in a workspace of the shared store, seeded once for the tests
    that only read it."""
    workspace = new_workspace(db)
    _seed(db, workspace)
    return db, workspace


def _seed(db: Database, workspace: str) -> None:
    """As ``consentry demo`` does, and the shop's backend: each chunk's events, then the
    consent API calls made meanwhile."""
    for chunk in chunks(SPEC, received_at=utcnow(), size=700):
        with db.write() as session:
            ingest.ingest(
                session=session,
                workspace_id=workspace,
                envelopes=chunk.envelopes,
                identity=IdentitySettings(),
            )
            if chunk.consents:
                consent.record_requests(
                    session=session, workspace_id=workspace, items=chunk.consents, actor="shop"
                )


def _cart_statuses(db: Database, workspace: str) -> dict[str, int]:
    with db.read() as session:
        rows = session.execute(
            select(CartRow.status, func.count())
            .where(CartRow.workspace_id == workspace)
            .group_by(CartRow.status)
        )
        return {status: int(count) for status, count in rows}


def test_a_seeded_demo_shop_has_converted_carts_and_consent(
    seeded: tuple[Database, str],
) -> None:
    db, demo = seeded
    carts = _cart_statuses(db, demo)
    assert carts["converted"] > 50 and carts.get("open", 0) + carts.get("checkout", 0) > 10

    with db.read() as session:
        records = session.execute(
            select(
                ConsentRecordRow.profile_id,
                ConsentRecordRow.purpose,
                ConsentRecordRow.channel,
                ConsentRecordRow.state,
                ConsentRecordRow.source,
                ConsentRecordRow.occurred_at,
            ).where(ConsentRecordRow.workspace_id == demo)
        ).all()
        assert consent.verify(session=session, workspace_id=demo).ok
    purposes = {r.purpose for r in records}
    assert purposes >= {*BANNER, EMAIL, SMS}
    assert {(r.purpose, r.channel) for r in records if r.purpose in (EMAIL, SMS)} == {
        (EMAIL, "email"),
        (SMS, "sms"),
    }
    for purpose in (*BANNER, EMAIL):
        states = {r.state for r in records if r.purpose == purpose}
        assert {"granted", "denied"} <= states, purpose
    assert "withdrawn" in {r.state for r in records if r.purpose == EMAIL}
    assert {"cmp", "checkout", "web_form", "api"} <= {r.source for r in records}
    stamps = sorted(r.occurred_at for r in records)
    assert stamps[-1] - stamps[0] > timedelta(days=100)
    assert len({(s.year, s.month) for s in stamps}) >= 5

    # opt-in rates by the unified profile's country: the EU and UK say yes less often
    with db.read() as session:
        country: dict[str, str | None] = {}
        for profile_id in {r.profile_id for r in records}:
            view = profiles.get_profile(session=session, workspace_id=demo, profile_id=profile_id)
            country[profile_id] = country_of(view.traits)
    votes: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for r in records:
        where = country[r.profile_id]
        if where is not None and r.state in ("granted", "denied") and r.source != "gpc":
            region = "EU" if where in OPT_IN_COUNTRIES else where
            votes[(r.purpose, region)].append(r.state == "granted")
    rate = {key: sum(v) / len(v) for key, v in votes.items()}
    for purpose in ("analytics", EMAIL):
        assert rate[(purpose, "US")] > rate[(purpose, "EU")], rate


def test_customers_seen_twice_stay_two_profiles_until_dedupe(
    seeded: tuple[Database, str],
) -> None:
    """The planted second appearances share no identifier with their customer: ingestion
    keeps them apart, each a profile of its own with the traits that give the person away."""
    db, demo = seeded
    pairs = planted_duplicates(SPEC)
    assert len(pairs) == 5
    with db.read() as session:
        for original, twin in pairs:
            assert original.user_id is not None
            first = profiles.search_identifiers(
                session=session, workspace_id=demo, user_id=original.user_id
            )
            second = profiles.search_identifiers(
                session=session, workspace_id=demo, email=twin.email
            )
            assert len(first) == len(second) == 1 and first != second, twin
            view = profiles.get_profile(session=session, workspace_id=demo, profile_id=second[0])
            assert not view.merges
            traits = view.traits
            assert fold(traits["first_name"]) == fold(twin.first_name)
            assert fold(traits["last_name"]) == fold(twin.last_name)
            assert traits["address"]["postal_code"] == original.address["postal_code"]
            assert traits.get("birthday", original.birthday) == original.birthday
            if twin.user_id is not None:
                assert (
                    profiles.search_identifiers(
                        session=session, workspace_id=demo, user_id=twin.user_id
                    )
                    == second
                )


def test_the_demo_command_seeds_consent_from_events_and_converts_carts(
    fresh_store: tuple[str, Database],
) -> None:
    url, db = fresh_store
    args = ["demo", "--database-url", url, "--no-serve", "--customers", "60", "--months", "3"]
    result = CliRunner().invoke(app, [*args, "--seed", "7"])
    assert result.exit_code == 0, result.output
    carts = _cart_statuses(db, DEMO_WORKSPACE)
    assert carts["converted"] > 0 and carts.get("open", 0) + carts.get("checkout", 0) > 0
    with db.read() as session:
        rows = session.execute(
            select(ConsentRecordRow.purpose, ConsentRecordRow.state)
            .where(ConsentRecordRow.workspace_id == DEMO_WORKSPACE)
            .distinct()
        ).all()
    assert {(p, s) for p, s in rows} >= {(p, s) for p in BANNER for s in ("granted", "denied")}
    # the marketing set-up: segments evaluated, journeys switched on and enrolling
    assert "computed segments and journeys" in result.output
    with db.read() as session:
        segments = audiences.list_segments(session=session, workspace_id=DEMO_WORKSPACE)
        active = journeys.list_journeys(
            session=session, workspace_id=DEMO_WORKSPACE, status="active"
        )
        newsletter = next(s for s in segments if s.name == "Newsletter audience")
        members = audiences.member_ids(
            session=session, workspace_id=DEMO_WORKSPACE, segment_id=newsletter.id
        )
        allowed = consent_policy.can_use_many(
            session=session,
            workspace_id=DEMO_WORKSPACE,
            profile_ids=members,
            purpose="marketing.communications.email",
            channel="email",
        )
    assert len(segments) == 4 and len(active) == 3
    assert members and all(d.allowed for d in allowed.values())
