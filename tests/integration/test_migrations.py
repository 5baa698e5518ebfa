"""The migrations build exactly the tables the code declares, on both stores."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, select

from consentry.config import Settings
from consentry.ingest import service as ingest
from consentry.ingest.tables import EventRow
from consentry.migrations import alembic_config, metadata, upgrade
from consentry.platform.db import Database, create_db_engine
from consentry.platform.tenancy import WorkspaceRow
from consentry.platform.vault import is_token
from consentry.profiles import service as profiles
from consentry.profiles.tables import CurrentTraitRow, IdentifierRow, ProfileRow, TraitHistoryRow
from consentry.stores import close_database, open_database
from tests.conftest import BACKENDS


def test_migrated_schema_matches_the_models(db: Database) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(context, metadata())
    assert diff == []


def _old_workspace_and_profile(conn: sa.Connection, now: datetime) -> None:
    """Workspace ``ws-old`` with profile ``p-old``, written as an earlier release would."""
    conn.execute(insert(WorkspaceRow).values(id="ws-old", name="old", created_at=now))
    conn.execute(
        insert(ProfileRow).values(
            id="p-old",
            workspace_id="ws-old",
            canonical_id="p-old",
            merged_into=None,
            created_at=now,
            first_seen=now,
            last_seen=now,
        )
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_0010_seals_what_an_earlier_release_stored_in_clear(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A store written in clear by release 0009 is sealed by the upgrade and reads the same."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    upgrade(url, "0009")
    engine = create_db_engine(url)
    now = datetime(2026, 1, 5, tzinfo=UTC)
    payload = {
        "type": "identify",
        "messageId": "m-1",
        "userId": "old-user-1",
        "traits": {"email": "old.customer@example.com", "plan": "gold"},
    }
    with engine.begin() as conn:
        _old_workspace_and_profile(conn, now)
        for kind, value in (("user_id", "old-user-1"), ("email", "old.customer@example.com")):
            conn.execute(
                sa.text(
                    "INSERT INTO identifiers (workspace_id, profile_id, type, value, first_seen)"
                    " VALUES ('ws-old', 'p-old', :t, :v, :f)"
                ),
                {"t": kind, "v": value, "f": now},
            )
        conn.execute(
            insert(TraitHistoryRow).values(
                workspace_id="ws-old",
                profile_id="p-old",
                key="email",
                value="old.customer@example.com",
                observed_at=now,
            )
        )
        for key, value in (("email", "old.customer@example.com"), ("plan", "gold")):
            conn.execute(
                insert(CurrentTraitRow).values(
                    canonical_id="p-old",
                    key=key,
                    workspace_id="ws-old",
                    value=value,
                    observed_at=now,
                )
            )
        conn.execute(
            insert(EventRow).values(
                workspace_id="ws-old",
                message_id="m-1",
                type="identify",
                user_id="old-user-1",
                profile_id="p-old",
                received_at=now,
                timestamp=now,
                payload=payload,
            )
        )
    engine.dispose()

    upgrade(url)
    db = open_database(Settings(environment="test", database_url=url))
    try:
        with db.read() as session:
            ident = session.execute(
                select(IdentifierRow.value, IdentifierRow.sealed).where(
                    IdentifierRow.workspace_id == "ws-old", IdentifierRow.type == "email"
                )
            ).one()
            assert ident.value != "old.customer@example.com" and is_token(ident.sealed)
            stored = session.execute(
                select(EventRow.user_id, EventRow.payload).where(EventRow.workspace_id == "ws-old")
            ).one()
            assert stored.user_id != "old-user-1" and is_token(stored.payload)
            assert is_token(
                session.scalar(select(TraitHistoryRow.value).where(TraitHistoryRow.key == "email"))
            )
            view = profiles.get_profile(session=session, workspace_id="ws-old", profile_id="p-old")
            assert view.traits == {"email": "old.customer@example.com", "plan": "gold"}
            assert {i["value"] for i in view.identifiers} == {
                "old-user-1",
                "old.customer@example.com",
            }
            assert profiles.search_identifiers(
                session=session, workspace_id="ws-old", email="OLD.customer@example.com"
            ) == ["p-old"]
            event = ingest.get_event(session=session, workspace_id="ws-old", message_id="m-1")
            assert event is not None and event.payload == payload
    finally:
        close_database(db)

    # ...and the downgrade gives release 0009 its clear values back
    command.downgrade(alembic_config(url), "0009")
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            assert set(
                conn.execute(
                    sa.text("SELECT type, value FROM identifiers WHERE workspace_id = 'ws-old'")
                )
            ) == {("user_id", "old-user-1"), ("email", "old.customer@example.com")}
            event_row = conn.execute(
                select(EventRow.user_id, EventRow.payload).where(EventRow.workspace_id == "ws-old")
            ).one()
            assert event_row.user_id == "old-user-1" and event_row.payload == payload
            assert (
                conn.scalar(select(CurrentTraitRow.value).where(CurrentTraitRow.key == "email"))
                == "old.customer@example.com"
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize("own_keys", [False, True], ids=["process-keys", "given-keys"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_0028_seals_the_new_spellings_of_personal_traits(
    backend: str, own_keys: bool, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Values of trait names an earlier release did not know were personal (``given_name``,
    ``Zip-Code``) are sealed by the upgrade and read the same; other traits stay clear. An
    upgrade given settings seals with their keys, not the process's."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    upgrade(url, "0027")
    traits = {"given_name": "Ottilie", "Zip-Code": "10115", "dob": "1987-03-02", "plan": "gold"}
    now = datetime(2026, 6, 1, tzinfo=UTC)
    engine = create_db_engine(url)
    with engine.begin() as conn:
        _old_workspace_and_profile(conn, now)
        for key, value in traits.items():
            conn.execute(
                insert(TraitHistoryRow).values(
                    workspace_id="ws-old",
                    profile_id="p-old",
                    key=key,
                    value=value,
                    observed_at=now,
                )
            )
            conn.execute(
                insert(CurrentTraitRow).values(
                    canonical_id="p-old",
                    key=key,
                    workspace_id="ws-old",
                    value=value,
                    observed_at=now,
                )
            )
    engine.dispose()

    keys = Settings(environment="test", database_url=url)
    if own_keys:
        keys = keys.model_copy(update={"secret_key": "a-store-of-its-own-" + "k" * 24})
        upgrade(url, settings=keys)
    else:
        upgrade(url)
    db = open_database(keys)
    try:
        with db.read() as session:
            for row_class in (TraitHistoryRow, CurrentTraitRow):
                stored: dict[str, object] = dict(
                    session.execute(select(row_class.key, row_class.value)).all()
                )
                assert stored["plan"] == "gold"
                assert all(is_token(stored[k]) for k in ("given_name", "Zip-Code", "dob"))
                assert "Ottilie" not in str(stored) and "10115" not in str(stored)
            view = profiles.get_profile(session=session, workspace_id="ws-old", profile_id="p-old")
            assert view.traits == traits
    finally:
        close_database(db)
