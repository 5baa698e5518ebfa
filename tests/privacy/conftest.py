"""Fixtures of the data-subject request tests: a real local SMTP server and the app wired to
it (``requests_support.client_for``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from consentry.platform.db import Database
from tests.privacy.requests_support import SmtpServer, client_for, free_port


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def shop(database_url: str, db: Database, smtp: SmtpServer) -> Iterator[TestClient]:
    yield from client_for(database_url, db, smtp.port)
