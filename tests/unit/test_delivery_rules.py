"""Delivery's pure rules: what an HTTP answer means, the back-off, masking what a server said,
signatures, the fields of a destination, and the message built without an HTML part."""

from __future__ import annotations

from datetime import timedelta

import pytest

from consentry.config import DeliverySettings
from consentry.delivery import outbox
from consentry.delivery.destinations import DestinationSpec, sent_categories, spec_problems
from consentry.delivery.models import OutgoingEmail, build_message
from consentry.delivery.suppressions import normalize_address
from consentry.delivery.webhook import _message_id, classify, encode, sign, verify_signature


@pytest.mark.parametrize(
    ("status", "meaning"),
    [
        (200, "delivered"),
        (204, "delivered"),
        (301, "retry"),
        (400, "permanent"),
        (401, "permanent"),
        (404, "permanent"),
        (408, "retry"),
        (410, "permanent"),
        (422, "permanent"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
    ],
)
def test_what_an_answer_means(status: int, meaning: str) -> None:
    assert classify(status) == meaning


def test_the_backoff_doubles_is_capped_and_jittered_in_its_upper_half() -> None:
    settings = DeliverySettings(backoff_base_seconds=30, backoff_max_seconds=600)
    low = [outbox.backoff(n, settings, 0.0) for n in range(1, 8)]
    high = [outbox.backoff(n, settings, 0.999999) for n in range(1, 8)]
    assert [round(d.total_seconds()) for d in low] == [15, 30, 60, 120, 240, 300, 300]
    assert [round(d.total_seconds()) for d in high] == [30, 60, 120, 240, 480, 600, 600]
    assert outbox.backoff(1000, settings, 0.5) == timedelta(seconds=450)


def test_addresses_and_numbers_in_a_servers_answer_are_masked() -> None:
    said = "550 5.1.1 <ada.lovelace@example.com>: no such user; call +44 20 7946 0958"
    masked = outbox._scrub(said)
    assert "ada" not in masked and "7946" not in masked
    assert masked == "550 5.1.1 <<address>>: no such user; call <number>"
    assert outbox._scrub("HTTP 503") == "HTTP 503"
    assert len(outbox._scrub("x" * 2000)) == outbox.MAX_ERROR


def test_a_signature_verifies_only_for_its_secret_body_and_time() -> None:
    body = encode({"b": 2, "a": 1})
    assert body == b'{"a":1,"b":2}'
    header = sign("whsec_1", 1_700_000_000, body)
    assert verify_signature("whsec_1", header, body, now=1_700_000_100)
    assert not verify_signature("whsec_2", header, body, now=1_700_000_100)
    assert not verify_signature("whsec_1", header, body + b" ", now=1_700_000_100)
    assert not verify_signature("whsec_1", header, body, now=1_700_001_000)  # too old
    assert not verify_signature("whsec_1", "t=x,v1=y", body, now=1_700_000_000)


def test_a_providers_message_id_is_read_from_its_json_answer() -> None:
    assert _message_id(b'{"sid": "SM123", "status": "queued"}') == "SM123"
    assert _message_id(b'{"id": 42}') == "42"
    assert _message_id(b'{"id": true}') is None
    assert _message_id(b"[1, 2]") is None
    assert _message_id(b"<html>") is None


def test_addresses_normalise_like_identity_does() -> None:
    assert normalize_address("email", "  Ada@Example.COM ") == "ada@example.com"
    assert normalize_address("sms", "(415) 555-0100") == "+14155550100"
    assert normalize_address("sms", "020 7946 0958", default_region="GB") == "+442079460958"
    assert normalize_address("email", "nope") is None
    assert normalize_address("push", "x") is None


def _spec(**changes: object) -> DestinationSpec:
    values: dict[str, object] = {
        "name": "Hook",
        "kind": "webhook",
        "processor_id": "p-1",
        "purpose": "marketing.communications.email",
        "channel": "any",
        "url": "https://hooks.example/in",
        "categories": ("user.unique_id",),
    }
    return DestinationSpec(**{**values, **changes})  # type: ignore[arg-type]


def test_a_destinations_fields_are_checked_by_themselves() -> None:
    assert spec_problems(_spec()) == []
    fields = {e.field for e in spec_problems(_spec(url="http://hooks.example/in"))}
    assert fields == {"url"}
    assert {e.field for e in spec_problems(_spec(categories=()))} == {"categories"}
    assert {e.field for e in spec_problems(_spec(categories=("user.soul",)))} == {"categories.0"}
    assert {e.field for e in spec_problems(_spec(kind="email", url=None, channel="sms"))} == {
        "channel"
    }
    assert {e.field for e in spec_problems(_spec(kind="sms", url=None, channel="sms"))} == {"url"}
    assert {e.field for e in spec_problems(_spec(from_address="a@b.example"))} == {"from_address"}
    assert {e.field for e in spec_problems(_spec(name="two\nlines", channel="fax"))} == {
        "name",
        "channel",
    }
    assert sent_categories("email", ("user.name", "user.contact.email")) == [
        "user.contact.email",
        "user.name",
    ]


def test_an_email_without_html_is_plain_text() -> None:
    message = build_message(
        OutgoingEmail(to="ada@example.com", subject="Hi", text="Hello", html=None),
        from_address="shop@example.com",
        from_name=None,
    )
    assert message.get_content_type() == "text/plain"
    assert message.get_content().strip() == "Hello"
