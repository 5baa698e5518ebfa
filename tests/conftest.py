"""Fixtures: every store-backed test runs on SQLite and on a real, throwaway PostgreSQL.

``CONSENTRY_TEST_BACKENDS=sqlite`` narrows a local run; CI runs both. A test gets a workspace of
its own, so tests share a store without seeing each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consentry.api import create_app
from consentry.config import Settings
from consentry.migrations import upgrade
from consentry.platform import tenancy
from consentry.platform.db import Database
from consentry.stores import close_database, open_database
from tests.support.postgres import ThrowawayPostgres, find_bindir
from tests.support.server import TEST_APP

# pytest-xdist's workers start with COLUMNS=80 and LINES=24 in their environment; a rich
# Console made at import (the CLI's) would keep that width, whatever a test's CliRunner sets.
for _size in ("COLUMNS", "LINES"):
    os.environ.pop(_size, None)

BACKENDS = [
    b for b in os.environ.get("CONSENTRY_TEST_BACKENDS", "sqlite,postgresql").split(",") if b
]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ThrowawayPostgres]:
    bindir = find_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL binaries not found: run `make test` (it installs them)")
    server = ThrowawayPostgres(bindir)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        path = Path(tmp_path_factory.mktemp("sqlite")) / "consentry.db"
        url = f"sqlite:///{path}"
    else:
        server: ThrowawayPostgres = request.getfixturevalue("postgres_server")
        url = server.create_database()
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def db(database_url: str) -> Iterator[Database]:
    database = open_database(Settings(environment="test", database_url=database_url))
    yield database
    close_database(database)


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The app's settings in tests. Every schedule that sweeps all workspaces is off: the store
    is shared by the whole session, so a round would work on other tests' data while a test
    runs (segment catch-ups, journeys and delivery come every few seconds; analytics comes a
    minute after start, in a child process, and a test app as long-lived as the schemathesis
    run's would start it on a slow machine). Tests run those rounds themselves. Acknowledged
    events are applied in the app's writer thread, not an ingest worker process, so a test
    can settle them."""
    return Settings(
        environment="test",
        database_url=database_url,
        **TEST_APP,
    )


def new_workspace(db: Database) -> str:
    workspace_id = f"ws-{uuid.uuid4().hex[:10]}"
    with db.write() as session:
        tenancy.create_workspace(session=session, workspace_id=workspace_id)
    return workspace_id


@pytest.fixture
def workspace(db: Database) -> str:
    return new_workspace(db)


@pytest.fixture
def write_key(db: Database, workspace: str) -> str:
    with db.write() as session:
        return tenancy.issue_key(
            session=session, workspace_id=workspace, kind="write", name="test"
        ).secret


@pytest.fixture
def admin_token(db: Database, workspace: str) -> str:
    with db.write() as session:
        return tenancy.issue_key(
            session=session,
            workspace_id=workspace,
            kind="token",
            name="test",
            role=tenancy.Role.ADMIN,
        ).secret


class SettlingTestClient(TestClient):
    """A TestClient that, after an accepted ingestion call, waits until the writer has applied
    the events, so a test reads what a client sees once processing caught up (milliseconds)."""

    def request(self, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().request(method, url, *args, **kwargs)
        if method.upper() == "POST" and str(url).startswith("/v1/") and response.status_code == 200:
            self.app.state.ingest_writer.settle()  # type: ignore[attr-defined]
        return response


@pytest.fixture
def client(settings: Settings, db: Database) -> Iterator[TestClient]:
    with SettlingTestClient(create_app(settings, db)) as test_client:
        yield test_client
