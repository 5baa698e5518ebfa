"""The pure rules of double opt-in (consent/doi.py) and the email builder (delivery/models.py)."""

from __future__ import annotations

import email
import email.policy
import string
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest

from consentry.consent import doi, links
from consentry.consent.models import (
    ANY_CHANNEL,
    DENIED,
    GRANTED,
    PENDING,
    SOURCES,
    WITHDRAWN,
    ConsentRecord,
    CurrentState,
)
from consentry.delivery.models import OutgoingEmail, ascii_address, build_message

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EMAIL = "marketing.communications.email"


def record(seq: int, state: str, minutes: int = 0, **fields: object) -> ConsentRecord:
    values: dict[str, object] = {
        "id": f"r-{seq}",
        "workspace_id": "ws",
        "seq": seq,
        "profile_id": "p-1",
        "purpose": EMAIL,
        "channel": "email",
        "state": state,
        "legal_basis": "consent",
        "source": doi.SOURCE,
        "notice_version": None,
        "occurred_at": T0 + timedelta(minutes=minutes),
        "recorded_at": T0 + timedelta(minutes=minutes),
        "actor": "token:k",
        "expires_at": None,
        "proof": None,
        "proof_digest": "0" * 64,
        "prev_hash": "0" * 64,
        "hash": "0" * 64,
    }
    values.update(fields)
    return ConsentRecord(**values)  # type: ignore[arg-type]


PENDING_RECORD = record(1, PENDING)


def grant_of(pending: ConsentRecord, seq: int, minutes: int = 1) -> ConsentRecord:
    return record(seq, GRANTED, minutes, actor=doi.ACTOR_PREFIX + pending.id)


# --- language ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("fr", "fr"),
        ("pt-BR", "pt"),
        ("de_CH", "de"),
        ("NL", "nl"),
        ("es-419", "es"),
        ("ja", "en"),
        ("", "en"),
        (None, "en"),
        ("fr;q=0.9", "en"),
        ("<script>", "en"),
    ],
)
def test_language_is_the_primary_subtag_we_have_else_english(
    tag: str | None, expected: str
) -> None:
    assert doi.language_of(tag) == expected


def test_the_catalog_has_seven_languages_with_the_same_words() -> None:
    assert doi.LANGUAGES == ("en", "fr", "de", "es", "it", "nl", "pt")
    keys = set(doi.CATALOG["en"])
    for language, words in doi.CATALOG.items():
        assert set(words) == keys, language
        for key, text in words.items():
            assert text.strip(), (language, key)
            names = {f[1] for f in string.Formatter().parse(text) if f[1]}
            assert names <= {"brand", "expires"}, (language, key, names)
            assert "{brand}" in text or key != "subject", language


def test_claimed_language_reads_an_unverified_token_and_falls_back_to_english() -> None:
    token = links.sign(
        b"k" * 32,
        workspace_id="ws",
        profile_id="p",
        kind=links.CONFIRM,
        now=T0,
        **doi.link_extra("r-1", EMAIL, "it"),
    )
    assert doi.claimed_language(token) == "it"
    assert doi.claimed_language("garbage") == "en"
    assert doi.claimed_language("e30.x") == "en"  # {} has no language
    assert doi.claimed_language("") == "en"


# --- the link ----------------------------------------------------------------------------------


def test_link_claims_round_trip_and_need_record_and_purpose() -> None:
    claims = doi.claims_of(doi.link_extra("r-9", EMAIL, "de"))
    assert claims == doi.LinkClaims("r-9", EMAIL, "de")
    assert doi.claims_of({"r": "r-9", "p": EMAIL}).language == "en"
    with pytest.raises(ValueError):
        doi.claims_of({"p": EMAIL})
    with pytest.raises(ValueError):
        doi.claims_of({"r": 5, "p": EMAIL})


def test_confirm_url_joins_the_public_url_and_the_token() -> None:
    assert doi.confirm_url("https://shop.example/", "a.b") == "https://shop.example/c/a.b"
    assert doi.confirm_url("http://127.0.0.1:8000", "a.b") == "http://127.0.0.1:8000/c/a.b"


# --- addresses ---------------------------------------------------------------------------------


def test_profile_addresses_put_the_current_trait_first_then_newest_identifiers() -> None:
    identifiers = [
        {"type": "email", "value": "old@example.com", "first_seen": T0},
        {"type": "user_id", "value": "u-1", "first_seen": T0},
        {"type": "email", "value": "new@example.com", "first_seen": T0 + timedelta(days=1)},
        {"type": "email", "value": "ada@example.com", "first_seen": T0},
    ]
    found = doi.profile_addresses({"email": " Ada@Example.COM "}, identifiers)
    assert found == ["ada@example.com", "new@example.com", "old@example.com"]
    assert doi.profile_addresses({"email": "not an address"}, []) == []


def test_the_address_named_must_be_one_of_the_profiles() -> None:
    addresses = ["ada@example.com", "ada@work.example"]
    assert doi.choose_address(addresses, None) == "ada@example.com"
    assert doi.choose_address(addresses, "ADA@work.example ") == "ada@work.example"
    assert doi.choose_address(addresses, "eve@example.com") is None
    assert doi.choose_address(addresses, "not an address") is None
    assert doi.choose_address([], None) is None


# --- what a request and a link may do ---------------------------------------------------------


def state(value: str, expires_at: datetime | None = None) -> CurrentState:
    return CurrentState("p-1", EMAIL, "email", value, "consent", "r-1", T0, expires_at)


def test_a_grant_in_force_is_not_asked_again() -> None:
    assert doi.already_granted(None, T0) is False
    assert doi.already_granted(state(PENDING), T0) is False
    assert doi.already_granted(state(WITHDRAWN), T0) is False
    assert doi.already_granted(state(GRANTED), T0) is True
    assert doi.already_granted(state(GRANTED, T0 + timedelta(days=1)), T0) is True
    assert doi.already_granted(state(GRANTED, T0), T0) is False  # expired: ask again


def test_a_link_is_open_until_confirmed() -> None:
    assert doi.outcome(PENDING_RECORD, []) == doi.OPEN
    grant = grant_of(PENDING_RECORD, 2)
    assert doi.outcome(PENDING_RECORD, [grant]) == doi.ALREADY_CONFIRMED
    by_proof = record(2, GRANTED, 1, actor="x", proof={"pending_record_id": PENDING_RECORD.id})
    assert doi.outcome(PENDING_RECORD, [by_proof]) == doi.ALREADY_CONFIRMED
    other = grant_of(record(9, PENDING), 3)  # the grant of another request
    assert doi.outcome(PENDING_RECORD, [other]) == doi.OPEN
    web_form = record(2, GRANTED, 1, source="web_form")
    assert doi.outcome(PENDING_RECORD, [web_form]) == doi.OPEN


@pytest.mark.parametrize("refusal", [WITHDRAWN, DENIED])
@pytest.mark.parametrize("channel", ["email", ANY_CHANNEL])
def test_a_later_refusal_supersedes_the_request(refusal: str, channel: str) -> None:
    later = record(2, refusal, 5, channel=channel, source="preference_center")
    assert doi.outcome(PENDING_RECORD, [later]) == doi.SUPERSEDED
    # confirmed, then withdrawn: the old link must not resurrect the consent
    grant = grant_of(PENDING_RECORD, 2)
    withdrawn = record(3, refusal, 9, channel=channel)
    assert doi.outcome(PENDING_RECORD, [grant, withdrawn]) == doi.SUPERSEDED


def test_refusals_that_do_not_supersede() -> None:
    earlier = record(0, WITHDRAWN, -5)  # recorded before the request
    other_purpose = record(2, WITHDRAWN, 5, purpose="analytics")
    other_channel = record(3, WITHDRAWN, 5, channel="sms")
    backdated = record(4, WITHDRAWN, -60)  # an import of an old choice, recorded later
    later = [earlier, other_purpose, other_channel, backdated]
    assert doi.outcome(PENDING_RECORD, later) == doi.OPEN


def test_is_request_names_double_opt_in_pending_records_only() -> None:
    assert doi.is_request(PENDING_RECORD)
    assert not doi.is_request(record(1, GRANTED))
    assert not doi.is_request(record(1, PENDING, source="api"))
    assert not doi.is_request(record(1, PENDING, channel=ANY_CHANNEL))
    assert doi.SOURCE in SOURCES


# --- proof -------------------------------------------------------------------------------------


def test_confirmation_proof_truncates_the_ip_and_cuts_the_user_agent() -> None:
    proof = doi.confirmation_proof(pending_id="r-1", ip="203.0.113.77", user_agent="U" * 600)
    assert proof == {"pending_record_id": "r-1", "ip": "203.0.113.0", "user_agent": "U" * 512}
    v6 = doi.confirmation_proof(pending_id="r-1", ip="2001:db8:1:2:3::9", user_agent=None)
    assert v6 == {"pending_record_id": "r-1", "ip": "2001:db8:1::"}
    assert doi.confirmation_proof(pending_id="r-1", ip="testclient", user_agent="") == {
        "pending_record_id": "r-1"
    }


def test_request_proof_keeps_the_callers_proof_and_adds_address_and_language() -> None:
    proof = doi.request_proof({"ip": "198.51.100.0"}, address="a@example.com", language="nl")
    assert proof == {"ip": "198.51.100.0", "email": "a@example.com", "language": "nl"}
    assert doi.request_proof(None, address="a@example.com", language="en")["email"]


# --- the mail ----------------------------------------------------------------------------------


@pytest.mark.parametrize("language", doi.LANGUAGES)
def test_the_mail_says_who_and_carries_the_link_in_both_parts(language: str) -> None:
    url = "https://shop.example/c/abc.def"
    mail = doi.compose(
        language=language, brand="Shop & <Co>", url=url, expires_at=T0 + timedelta(days=2)
    )
    assert "Shop & <Co>" in mail.subject
    assert url in mail.text and "2026-03-03 12:00 UTC" in mail.text
    assert "Shop &amp; &lt;Co&gt;" in mail.html and "<Co>" not in mail.html
    assert f'href="{url}"' in mail.html and f'lang="{language}"' in mail.html
    assert doi.words(language)["button"] in mail.html


def test_unknown_languages_read_english() -> None:
    assert doi.words("ja") is doi.CATALOG["en"]


# --- delivery.models ---------------------------------------------------------------------------


def test_build_message_has_the_headers_and_both_parts() -> None:
    outgoing = OutgoingEmail(
        to="ada@exämple.de",
        subject="Bitte bestätigen",
        text="Hallo\n",
        html="<p>Hallo</p>\n",
        language="de",
        headers={"Auto-Submitted": "auto-generated"},
    )
    message = build_message(outgoing, from_address="news@shop.example", from_name="Shöp, Inc.")
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["To"] == "ada@xn--exmple-cua.de"
    assert parsed["From"].addresses[0].display_name == "Shöp, Inc."
    assert parsed["From"].addresses[0].addr_spec == "news@shop.example"
    assert parsed["Subject"] == "Bitte bestätigen"
    assert parsed["Message-ID"].endswith("@shop.example>")
    assert parsed["Date"].datetime.tzinfo is not None
    assert parsed["Content-Language"] == "de"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed.get_content_type() == "multipart/alternative"
    text, html = (parsed.get_body(("plain",)), parsed.get_body(("html",)))
    assert text is not None and text.get_content() == "Hallo\n"
    assert html is not None and html.get_content() == "<p>Hallo</p>\n"


@pytest.mark.parametrize(
    "address",
    ["ada", "a b@example.com", "a@b@c", "<a@b.c>", "a@b.c, d@e.f", "é@example.com", "@x.y"],
)
def test_addresses_smtp_cannot_carry_are_refused(address: str) -> None:
    with pytest.raises(ValueError):
        ascii_address(address)


def test_header_injection_is_refused() -> None:
    base = OutgoingEmail(to="a@example.com", subject="Hi", text="t", html="h")
    for bad in (
        replace(base, subject="Hi\r\nBcc: eve@example.com"),
        replace(base, to="a@example.com\nBcc: eve@example.com"),
        replace(base, headers={"X-A": "1\r\nBcc: eve@example.com"}),
    ):
        with pytest.raises(ValueError):
            build_message(bad, from_address="news@shop.example", from_name=None)
