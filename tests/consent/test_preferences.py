"""The preference center's pure rules: what the page shows, what a form changes, contrast,
branding validation, proof, links and the one-click unsubscribe headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from consentry.consent import preferences as pc
from consentry.consent.i18n import Translator
from consentry.consent.models import (
    DENIED,
    GRANTED,
    OPT_IN,
    OPT_OUT,
    PENDING,
    WITHDRAWN,
    ConsentConfig,
    CurrentState,
    Purpose,
)
from consentry.errors import Invalid

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
EMAIL = "marketing.communications.email"
SMS = "marketing.communications.sms"
CONFIG = ConsentConfig()


def state(purpose: str, channel: str, value: str, minutes: int = 0, **kw: object) -> CurrentState:
    values: dict[str, object] = {
        "profile_id": "p-1",
        "purpose": purpose,
        "channel": channel,
        "state": value,
        "legal_basis": "consent",
        "record_id": f"r-{purpose}-{channel}-{minutes}",
        "occurred_at": NOW - timedelta(days=1) + timedelta(minutes=minutes),
        "expires_at": None,
    }
    values.update(kw)
    return CurrentState(**values)  # type: ignore[arg-type]


def by_key(choices: list[pc.Choice]) -> dict[str, pc.Choice]:
    return {c.purpose.key: c for c in choices}


# --- what the page shows ------------------------------------------------------------------------


def test_marketing_purposes_are_chosen_per_channel_and_the_rest_for_any() -> None:
    assert pc.channel_of(EMAIL) == "email"
    assert pc.channel_of("marketing.communications.postal") == "postal"
    assert pc.channel_of("marketing.communications.pigeon") == "any"
    assert pc.channel_of("analytics") == "any"
    offered = pc.choices(CONFIG, [], OPT_IN, NOW)
    assert [c.purpose.key for c in offered] == [p.key for p in CONFIG.purposes]
    assert [c.group for c in offered[:5]] == [pc.MARKETING] * 5
    assert {c.group for c in offered[5:]} == {pc.USES}
    assert [c.field for c in offered[:2]] == [f"choice:{EMAIL}:email", f"choice:{SMS}:sms"]
    assert offered[0].dom_id == "c-marketing-communications-email-email"


def test_without_records_the_regime_decides_what_the_page_shows() -> None:
    assert not any(c.chosen for c in pc.choices(CONFIG, [], OPT_IN, NOW))
    assert all(c.chosen for c in pc.choices(CONFIG, [], OPT_OUT, NOW))


def test_the_page_shows_what_the_policy_decides() -> None:
    states = [
        state(EMAIL, "email", GRANTED),
        state(EMAIL, "any", WITHDRAWN, minutes=5),  # a later blanket withdrawal wins
        state(SMS, "sms", GRANTED, expires_at=NOW - timedelta(hours=1)),  # expired
        state("analytics", "any", GRANTED),
        state("personalize", "any", PENDING),
    ]
    shown = by_key(pc.choices(CONFIG, states, OPT_IN, NOW))
    assert (shown[EMAIL].chosen, shown[EMAIL].state) == (False, WITHDRAWN)
    assert (shown[SMS].chosen, shown[SMS].state) == (False, GRANTED)
    assert shown["analytics"].chosen and not shown["analytics"].pending
    assert shown["personalize"].chosen and shown["personalize"].pending  # "yes", awaiting


def test_custom_purposes_keep_their_names_and_marketing_ones_join_the_messages() -> None:
    config = ConsentConfig(
        purposes=(
            Purpose("analytics", "Site statistics", "analytics"),
            Purpose("marketing.newsletter", "The Friday letter", "marketing"),
        )
    )
    offered = pc.choices(config, [], OPT_IN, NOW)
    assert [(c.purpose.key, c.group, c.channel) for c in offered] == [
        ("marketing.newsletter", pc.MARKETING, "any"),
        ("analytics", pc.USES, "any"),
    ]
    french = Translator("fr")
    assert pc.purpose_name(french, offered[1].purpose) == "Site statistics"  # renamed: kept
    assert pc.purpose_description(french, offered[1].purpose) is None
    default = CONFIG.purpose("analytics")
    assert default is not None
    assert pc.purpose_name(french, default) == "Mesure d’audience"
    assert pc.purpose_description(Translator("de"), default) is not None


# --- what a form changes ------------------------------------------------------------------------


def test_only_changed_answers_become_records() -> None:
    offered = pc.choices(CONFIG, [state("analytics", "any", GRANTED)], OPT_IN, NOW)
    form = [(c.field, pc.YES if c.chosen else pc.NO) for c in offered]  # as shown
    assert pc.changes(offered, pc.parse_form(form, offered, CONFIG.purpose_keys)) == []

    form = [(f, pc.YES if f == f"choice:{EMAIL}:email" else v) for f, v in form]
    form = [(f, pc.NO if f == "choice:analytics:any" else v) for f, v in form]
    found = pc.changes(offered, pc.parse_form(form, offered, CONFIG.purpose_keys))
    assert [(c.choice.purpose.key, c.state) for c in found] == [
        (EMAIL, GRANTED),
        ("analytics", WITHDRAWN),
    ]


def test_a_no_withdraws_a_grant_or_a_pending_one_and_denies_an_opt_out_default() -> None:
    states = [state(EMAIL, "email", GRANTED), state(SMS, "sms", PENDING)]
    offered = by_key(pc.choices(CONFIG, states, OPT_OUT, NOW))
    assert pc.refusal_state(offered[EMAIL]) == WITHDRAWN
    assert pc.refusal_state(offered[SMS]) == WITHDRAWN
    assert pc.refusal_state(offered["analytics"]) == DENIED  # allowed by the regime only


def test_a_pending_grant_shown_as_yes_is_not_granted_again() -> None:
    offered = pc.choices(CONFIG, [state(EMAIL, "email", PENDING)], OPT_IN, NOW)
    submission = pc.parse_form([(f"choice:{EMAIL}:email", pc.YES)], offered, CONFIG.purpose_keys)
    assert pc.changes(offered, submission) == []  # double opt-in is not bypassed


def test_unsubscribe_from_everything_withdraws_marketing_only() -> None:
    states = [
        state(EMAIL, "email", GRANTED),
        state(SMS, "sms", GRANTED),
        state("marketing.communications.push", "push", DENIED),
        state("analytics", "any", GRANTED),
    ]
    offered = pc.choices(CONFIG, states, OPT_IN, NOW)
    submission = pc.parse_form([("action", pc.UNSUBSCRIBE_ALL)], offered, CONFIG.purpose_keys)
    found = pc.changes(offered, submission)
    assert [(c.choice.purpose.key, c.state) for c in found] == [
        (EMAIL, WITHDRAWN),
        (SMS, WITHDRAWN),
    ]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("choice:marketing.bogus:email", "yes", "purpose"),
        (f"choice:{EMAIL}:carrier_pigeon", "yes", "channel"),
        (f"choice:{EMAIL}:sms", "yes", "pair"),  # known both, but not offered together
        (f"choice:{EMAIL}:email", "maybe", "value"),
        ("choice:nochannel", "yes", "shape"),
        ("action", "delete_everything", "action"),
    ],
)
def test_a_field_the_page_does_not_offer_is_named(field: str, value: str, reason: str) -> None:
    offered = pc.choices(CONFIG, [], OPT_IN, NOW)
    with pytest.raises(pc.FormRejected) as rejected:
        pc.parse_form(
            [("choice:analytics:any", "yes"), (field, value)], offered, CONFIG.purpose_keys
        )
    assert rejected.value.problems == [(field, reason)]


def test_contradicting_or_too_many_fields_are_refused_and_others_ignored() -> None:
    offered = pc.choices(CONFIG, [], OPT_IN, NOW)
    field = f"choice:{EMAIL}:email"
    with pytest.raises(pc.FormRejected) as repeated:
        pc.parse_form([(field, "yes"), (field, "no")], offered, CONFIG.purpose_keys)
    assert repeated.value.problems == [(field, "repeated")]
    with pytest.raises(pc.FormRejected) as many:
        pc.parse_form([("x", "y")] * (pc.MAX_FIELDS + 1), offered, CONFIG.purpose_keys)
    assert many.value.problems == [("form", "too_many")]
    same = pc.parse_form([(field, "yes"), (field, "yes"), ("lang", "fr")], offered, [EMAIL])
    assert same == pc.Submission(pc.SAVE, {field: True})


def test_entries_carry_the_source_actor_and_proof() -> None:
    offered = pc.choices(CONFIG, [], OPT_IN, NOW)
    found = [pc.Change(offered[0], GRANTED)]
    (entry,) = pc.entries(found, profile_id="p-1", occurred_at=NOW, proof={"ip": "203.0.113.0"})
    assert (entry.purpose, entry.channel, entry.state) == (EMAIL, "email", GRANTED)
    assert (entry.source, entry.actor, entry.legal_basis) == (
        "preference_center",
        "link:preferences",
        "consent",
    )
    assert entry.proof == {"ip": "203.0.113.0"}


def test_one_click_withdraws_unless_already_refused() -> None:
    offered = pc.choices(CONFIG, [state(SMS, "sms", WITHDRAWN)], OPT_IN, NOW)
    email = pc.one_click_choice(offered, EMAIL, "email")
    assert email is not None
    assert pc.one_click_change(email) == pc.Change(email, WITHDRAWN)
    sms = pc.one_click_choice(offered, SMS, "sms")
    assert sms is not None and pc.one_click_change(sms) is None
    assert pc.one_click_choice(offered, EMAIL, "sms") is None


# --- proof, links and headers -------------------------------------------------------------------


def test_proof_truncates_the_ip_and_never_holds_the_token() -> None:
    token = "eyJhIjoxfQ.c2lnbmF0dXJl"
    proof = pc.page_proof(
        ip="203.0.113.77",
        user_agent="Mozilla/5.0 " + "x" * 600,
        public_url="https://prefs.example.com/",
        path="/p/",
        token=token,
    )
    assert proof is not None
    assert proof["ip"] == "203.0.113.0"
    assert len(proof["user_agent"]) == 512
    assert proof["page_url"] == f"https://prefs.example.com/p/{pc.token_digest(token)}"
    assert token not in str(proof)
    no_ip = pc.page_proof(
        ip="testclient", user_agent=None, public_url="http://h", path="/u/", token=token
    )
    assert no_ip == {"page_url": f"http://h/u/{pc.token_digest(token)}"}
    v6 = pc.page_proof(
        ip="2001:db8:1:2::5", user_agent=None, public_url="http://h", path="/p/", token="t"
    )
    assert v6 is not None and v6["ip"] == "2001:db8:1::"


def test_links_and_one_click_headers() -> None:
    url = pc.link_url("https://prefs.example.com/", pc.UNSUBSCRIBE_PATH, "TOKEN")
    assert url == "https://prefs.example.com/u/TOKEN"
    assert pc.link_url("https://x.io", pc.PREFERENCES_PATH, "T", "fr") == "https://x.io/p/T?lang=fr"
    assert pc.unsubscribe_headers(url) == {
        "List-Unsubscribe": "<https://prefs.example.com/u/TOKEN>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    headers = pc.unsubscribe_headers(url, "list+off@example.com")
    assert headers["List-Unsubscribe"] == (
        "<https://prefs.example.com/u/TOKEN>, <mailto:list%2Boff@example.com?subject=unsubscribe>"
    )


# --- contrast and branding ----------------------------------------------------------------------


def test_contrast_ratios_follow_wcag() -> None:
    assert pc.contrast("#ffffff", "#000000") == pytest.approx(21.0)
    assert pc.contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert pc.contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)
    assert pc.contrast("#2f5bd3", "#2f5bd3") == pytest.approx(1.0)
    with pytest.raises(ValueError):
        pc.luminance("blue")


@pytest.mark.parametrize(
    ("color", "on_brand", "accent"),
    [
        ("#2f5bd3", "#ffffff", "#2f5bd3"),  # dark enough: white text, brand-coloured links
        ("#ffd700", pc.DARK_TEXT, pc.DARK_TEXT),  # gold: dark text everywhere
        ("#ffffff", pc.DARK_TEXT, pc.DARK_TEXT),
        ("#808080", pc.BLACK, pc.DARK_TEXT),  # mid grey: only black reaches 4.5:1
        ("not a colour", "#ffffff", pc.DEFAULT_COLOR),
    ],
)
def test_the_theme_keeps_text_legible(color: str, on_brand: str, accent: str) -> None:
    theme = pc.theme_for(color)
    assert (theme.on_brand, theme.accent) == (on_brand, accent)
    assert pc.contrast(theme.brand, theme.on_brand) >= pc.AA_TEXT
    assert pc.contrast(theme.accent, pc.WHITE) >= pc.AA_TEXT


def test_branding_is_validated_field_by_field() -> None:
    good = pc.BrandingIn(
        brand_name="  Acme Shop ",
        primary_color="#FFD700",
        logo_url="https://cdn.acme.example/logo.png",
        default_language="nl",
        privacy_policy_url="http://acme.example/privacy",
        support_email="privacy@acme.example",
    ).branding()
    assert (good.brand_name, good.primary_color, good.default_language) == (
        "Acme Shop",
        "#ffd700",
        "nl",
    )
    bad = {
        "primary_color": "blue",
        "logo_url": "http://acme.example/logo.png",  # mixed content
        "privacy_policy_url": "javascript:alert(1)",
        "default_language": "klingon",
        "support_email": "not an email",
        "brand_name": "Acme\x00",
    }
    for field, value in bad.items():
        with pytest.raises(ValidationError) as refused:
            pc.BrandingIn.model_validate({"brand_name": "Acme", field: value})
        assert refused.value.errors()[0]["loc"] == (field,)
    with pytest.raises(ValidationError):
        pc.BrandingIn.model_validate({"brand_name": "Acme", "colour": "#000000"})  # extra field


def test_link_claims_fit_the_kind() -> None:
    unsubscribe = pc.LinkIn(profile_id="p-1", kind="unsubscribe", purpose=SMS)
    assert pc.link_claims(unsubscribe, CONFIG) == {"purpose": SMS, "channel": "sms"}
    assert pc.link_claims(pc.LinkIn(profile_id="p-1"), CONFIG) == {}
    refused = [
        (pc.LinkIn(profile_id="p-1", kind="unsubscribe"), ["purpose"]),
        (pc.LinkIn(profile_id="p-1", kind="unsubscribe", purpose="nope"), ["purpose"]),
        (pc.LinkIn(profile_id="p-1", purpose=SMS, mailto="a@b.io"), ["purpose", "mailto"]),
    ]
    for body, fields in refused:
        with pytest.raises(Invalid) as invalid:
            pc.link_claims(body, CONFIG)
        assert [e.field for e in invalid.value.errors] == fields
    with pytest.raises(ValidationError):
        pc.LinkIn(profile_id="p-1", language="tlh")
