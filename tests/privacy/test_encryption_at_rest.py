"""Personal data at rest: after seeding a shop, neither the SQLite file (with its WAL) nor a
``pg_dump`` holds any seeded email address or phone number in clear, and every read through the
services still gives the clear values back."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from consentry.config import IdentitySettings, Settings
from consentry.consent import service as consent
from consentry.consent.models import ProofIn
from consentry.consent.tables import ConsentRecordRow
from consentry.demo.generator import ShopSpec, generate_shop
from consentry.demo.seeding import chunks
from consentry.ingest import service as ingest
from consentry.ingest.tables import EventRow
from consentry.migrations import upgrade
from consentry.platform import tenancy
from consentry.platform.db import Database, utcnow
from consentry.platform.vault import Vault, is_token
from consentry.profiles import service as profiles
from consentry.profiles.models import normalize_email, normalize_phone
from consentry.profiles.tables import IdentifierRow
from consentry.stores import close_database, open_database
from tests.conftest import BACKENDS
from tests.support.postgres import ThrowawayPostgres

SPEC = ShopSpec(customers=30, months=2, seed=7)
WS = "sealed-shop"


def _markers() -> tuple[set[str], set[str]]:
    """Every email and phone the generated shop sends, as sent and as normalised."""
    emails: set[str] = set()
    phones: set[str] = set()
    for message in generate_shop(SPEC):
        for traits in (message.get("traits"), (message.get("context") or {}).get("traits")):
            if not isinstance(traits, dict):
                continue
            if isinstance(traits.get("email"), str):
                emails |= {traits["email"], normalize_email(traits["email"]) or traits["email"]}
            if isinstance(traits.get("phone"), str):
                phones.add(traits["phone"])
                normal = normalize_phone(traits["phone"], "US")
                if normal:
                    phones.add(normal)
    return emails, phones


@pytest.fixture(params=BACKENDS)
def fresh_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Database]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shop.db'}"
    else:
        server: ThrowawayPostgres = request.getfixturevalue("postgres_server")
        url = server.create_database()
    upgrade(url)
    db = open_database(Settings(environment="test", database_url=url))
    yield url, db
    close_database(db)


def _seed(db: Database) -> str:
    with db.write() as session:
        tenancy.create_workspace(session=session, workspace_id=WS)
    for chunk in chunks(SPEC, received_at=utcnow()):
        with db.write() as session:
            ingest.ingest(
                session=session,
                workspace_id=WS,
                envelopes=chunk.envelopes,
                identity=IdentitySettings(),
            )
    with db.write() as session:
        (profile_id, _), *_ = profiles.list_profiles(session=session, workspace_id=WS, limit=1)
        consent.record(
            session=session,
            workspace_id=WS,
            profile_id=profile_id,
            purpose="analytics",
            state="granted",
            source="api",
            actor="test",
            proof=ProofIn(ip="198.51.100.77", user_agent="Marker-Agent/9.1"),
        )
    return profile_id


def _raw_bytes(url: str) -> bytes:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(str(parsed.database))
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    bindir = os.environ.get("CONSENTRY_PG_BINDIR")
    from tests.support.postgres import find_bindir

    pg_dump = Path(bindir) / "pg_dump" if bindir else (find_bindir() or Path()) / "pg_dump"
    dump = subprocess.run(
        [
            str(pg_dump),
            "-h",
            str(parsed.host),
            "-p",
            str(parsed.port),
            "-U",
            str(parsed.username),
            str(parsed.database),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return dump.stdout


def test_no_seeded_email_or_phone_is_stored_in_clear(fresh_store: tuple[str, Database]) -> None:
    url, db = fresh_store
    emails, phones = _markers()
    assert len(emails) >= 10 and len(phones) >= 5  # the shop really sends them
    _seed(db)
    raw = _raw_bytes(url)
    assert len(raw) > 10_000
    leaked = sorted(m for m in emails | phones if m.encode() in raw)
    assert leaked == []
    # the same check on a value known to be in the store proves the scan can find things
    assert WS.encode() in raw


def test_sealed_values_read_back_in_clear_through_the_services(
    fresh_store: tuple[str, Database],
) -> None:
    _, db = fresh_store
    emails, _ = _markers()
    profile_id = _seed(db)
    with db.read() as session:
        stored = session.execute(
            select(IdentifierRow.type, IdentifierRow.value, IdentifierRow.sealed).where(
                IdentifierRow.workspace_id == WS, IdentifierRow.type == "email"
            )
        ).all()
        assert stored and all(len(v) == 64 and is_token(s) for _, v, s in stored)
        payloads = session.scalars(select(EventRow.payload).where(EventRow.workspace_id == WS))
        assert all(is_token(p) for p in payloads)
        proof: Any = session.scalar(
            select(ConsentRecordRow.proof).where(ConsentRecordRow.workspace_id == WS)
        )
        assert is_token(proof["ip"]) and is_token(proof["user_agent"])
        # ...and the services give the clear values back
        seen: set[str] = set()
        for pid, _ in profiles.list_profiles(session=session, workspace_id=WS, limit=500):
            view = profiles.get_profile(session=session, workspace_id=WS, profile_id=pid)
            seen |= {i["value"] for i in view.identifiers if i["type"] == "email"}
            if "email" in view.traits:
                assert view.traits["email"] in emails
        assert seen and seen <= emails
        found = profiles.search_identifiers(session=session, workspace_id=WS, email=sorted(seen)[0])
        assert len(found) == 1
        _, records = consent.subject_history(
            session=session, workspace_id=WS, profile_id=profile_id, limit=10, offset=0
        )
        assert records[0].proof is not None
        assert records[0].proof["user_agent"] == "Marker-Agent/9.1"
        assert records[0].proof["ip"] == "198.51.100.0"
        events = ingest.events_of(session=session, workspace_id=WS, profile_ids=[profile_id])
        assert events and all(e.payload.get("messageId") == e.message_id for e in events)
        assert consent.verify(session=session, workspace_id=WS).ok


def test_the_consent_chain_still_verifies_once_a_subjects_key_is_shredded(
    fresh_store: tuple[str, Database],
) -> None:
    _, db = fresh_store
    profile_id = _seed(db)
    assert isinstance(db.vault, Vault)
    assert db.vault.keystore.shred(WS, [profile_id]) == 1
    with db.read() as session:
        _, records = consent.subject_history(
            session=session, workspace_id=WS, profile_id=profile_id, limit=10, offset=0
        )
        assert records[0].proof is not None
        assert records[0].proof["ip"] is None and records[0].proof["user_agent"] is None
        view = profiles.get_profile(session=session, workspace_id=WS, profile_id=profile_id)
        assert all(i["value"] is None for i in view.identifiers if i["profile_id"] == profile_id)
        assert consent.verify(session=session, workspace_id=WS).ok
