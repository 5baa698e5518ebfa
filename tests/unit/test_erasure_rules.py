"""The pure rules of erasure: the processors' notification, its signature, when a failed one
is tried again, the certificate, and the proof that stays in the consent ledger."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from consentry.consent.models import erased_proof, is_erased_proof, proof_digest
from consentry.delivery.webhook import encode, sign, verify_signature
from consentry.ingest.models import Envelope, returns_explicitly
from consentry.privacy.erasure import (
    MAX_ATTEMPTS,
    RETRY_DELAYS,
    Outcome,
    Recipient,
    certificate,
    certificate_hash,
    next_attempt,
    notification_body,
    webhook_secret,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_the_notification_names_ids_and_hashes_but_never_an_address() -> None:
    body = notification_body(
        erasure_id="e1",
        workspace_id="acme",
        erased_at=NOW,
        identifiers=[
            ("email", "ada@example.com"),
            ("phone", "+14155550177"),
            ("user_id", "u-1"),
            ("anonymous_id", "a-1"),
            ("anonymous_id", "a-1"),
        ],
    )
    assert body["subject"] == {
        "anonymous_ids": ["a-1"],
        "email_sha256": [hashlib.sha256(b"ada@example.com").hexdigest()],
        "phone_sha256": [hashlib.sha256(b"+14155550177").hexdigest()],
        "user_ids": ["u-1"],
    }
    assert b"ada@example.com" not in encode(body)


@given(st.binary(max_size=200), st.integers(min_value=0, max_value=2**40))
def test_a_signature_verifies_only_for_its_body_secret_and_time(body: bytes, t: int) -> None:
    secret = webhook_secret("server-secret", "acme", "proc-1")
    header = sign(secret, t, body)
    assert verify_signature(secret, header, body, now=t + 10)
    assert not verify_signature(secret, header, body + b"x", now=t)
    assert not verify_signature(
        webhook_secret("server-secret", "acme", "proc-2"), header, body, now=t
    )
    assert not verify_signature(secret, header, body, now=t + 301)  # too old: a replay
    assert not verify_signature(secret, "t=abc,v1=00", body, now=t)


def test_secrets_differ_per_processor_workspace_and_server() -> None:
    secrets = {
        webhook_secret(server, ws, proc)
        for server in ("s1", "s2")
        for ws in ("a", "b")
        for proc in ("p", "q")
    }
    assert len(secrets) == 8


def test_failed_deliveries_back_off_then_give_up() -> None:
    waits = [next_attempt(n, NOW) for n in range(1, MAX_ATTEMPTS + 1)]
    assert waits[-1] is None
    gaps = [w - NOW for w in waits[:-1] if w is not None]
    assert gaps == list(RETRY_DELAYS)
    assert gaps == sorted(gaps) and gaps[0] == timedelta(minutes=1)


def test_the_certificate_says_what_was_kept_and_why() -> None:
    outcome = Outcome(
        erased={"profiles": 2, "events": 7},
        kept={"orders": 1, "consent_records": 0, "suppression_list": 4},
        keys_destroyed=5,
        orders_kept_until=NOW + timedelta(days=3650),
    )
    doc = certificate(
        erasure_id="e1",
        workspace_id="acme",
        profile_id="p1",
        member_ids=["p2", "p1"],
        request_id=None,
        actor="token:k1",
        reason="request",
        requested_at=NOW,
        completed_at=NOW,
        outcome=outcome,
        processors=[Recipient("proc", "Mailer", "https://m.example/hook")],
    )
    kept = {k["what"]: k for k in doc["kept"]}
    assert set(kept) == {"orders", "suppression_list", "audit_trail"}  # 0 consent records
    assert kept["orders"]["until"].startswith("2036-")
    assert doc["subject"]["member_ids"] == ["p1", "p2"]
    assert doc["processors_notified"] == [{"id": "proc", "name": "Mailer"}]
    assert certificate_hash(doc) == certificate_hash(dict(reversed(list(doc.items()))))


def test_an_erased_proof_keeps_nothing_that_identifies() -> None:
    proof = {
        "ip": "pv1:p:xyz",
        "user_agent": "pv1:p:abc",
        "page_url": "https://shop.example/ada/join",
        "gpc": "1",
        "cmp_string": "CP1234",
    }
    reduced = erased_proof(proof, NOW)
    assert reduced == {
        "erased_at": NOW.isoformat(),
        "gpc": "1",
        "cmp_string": "CP1234",
        "page_origin": "https://shop.example",
    }
    assert is_erased_proof(reduced) and not is_erased_proof(proof)
    assert erased_proof(reduced, NOW + timedelta(days=1)) == reduced  # idempotent
    assert proof_digest(reduced) != proof_digest(proof)
    assert erased_proof(None, NOW) is None


def _identify(ts: datetime, prefs: object, sent: datetime | None = None) -> Envelope:
    return Envelope(
        index=0,
        message_id="m",
        type="identify",
        user_id="u",
        anonymous_id=None,
        event=None,
        original_timestamp=ts,
        sent_at=sent,
        received_at=max(ts, NOW),
        timestamp=ts,
        payload={"context": {"consent": {"categoryPreferences": prefs}}},
    )


def test_only_a_new_sign_up_with_consent_brings_an_erased_person_back() -> None:
    erased = NOW - timedelta(days=1)
    assert returns_explicitly(_identify(NOW, {"marketing": True}), erased)
    assert not returns_explicitly(_identify(NOW, {"marketing": False}), erased)
    assert not returns_explicitly(_identify(NOW, {}), erased)
    assert not returns_explicitly(_identify(erased - timedelta(hours=1), {"m": True}), erased)
    assert not returns_explicitly(  # sent before the erasure, delivered late
        _identify(NOW, {"marketing": True}, sent=erased - timedelta(minutes=1)), erased
    )
