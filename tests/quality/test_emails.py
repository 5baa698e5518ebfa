"""Email addresses: syntax, IDN, disposable domains, typo suggestions."""

from __future__ import annotations

import idna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.profiles.models import normalize_email
from consentry.quality import (
    Normalised,
    Problem,
    is_disposable_domain,
    suggest_domain,
    validate_email,
)
from consentry.quality.emails import POPULAR_DOMAINS
from tests.quality.strategies import any_text, anything, email_ish


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Jane.Doe@Example.ORG.uk ", "jane.doe@example.org.uk"),
        ("jane+news@gmail.com", "jane+news@gmail.com"),
        ("ｊａｎｅ@gmail.com", "jane@gmail.com"),
        ("o'hara@shop.ie", "o'hara@shop.ie"),
        ("jane@shop.de.", "jane@shop.de"),  # the root's trailing dot
        ("jane@München.de", "jane@xn--mnchen-3ya.de"),
        ("jane@xn--mnchen-3ya.de", "jane@xn--mnchen-3ya.de"),
        ("jane@straße.de", "jane@xn--strae-oqa.de"),  # IDNA 2008: ß is kept, not "ss"
        ("用户@例子.中国", "用户@xn--fsqu00a.xn--fiqs8s"),
    ],
)
def test_valid_addresses(raw: str, expected: str) -> None:
    outcome = validate_email(raw)
    assert isinstance(outcome, Normalised), outcome
    assert outcome.value == expected
    assert outcome.warnings == ()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", "email.empty"),
        ("plainaddress", "email.at_sign"),
        ("two@@gmail.com", "email.at_sign"),
        ("a@b@gmail.com", "email.at_sign"),
        ("jane doe@gmail.com", "email.whitespace"),
        ("@gmail.com", "email.local_missing"),
        ("jane@", "email.domain_missing"),
        ("jane@localhost", "email.domain_no_dot"),
        (".jane@gmail.com", "email.local_dots"),
        ("jane.@gmail.com", "email.local_dots"),
        ("ja..ne@gmail.com", "email.local_dots"),
        ('"jane"@gmail.com', "email.local_quoted"),
        ("ja(ne@gmail.com", "email.local_characters"),
        ("x" * 65 + "@gmail.com", "email.local_too_long"),
        ("jane@[192.168.0.1]", "email.domain_literal"),
        ("jane@-shop.de", "email.domain_label"),
        ("jane@shop-.de", "email.domain_label"),
        ("jane@sh_op.de", "email.domain_label"),
        ("jane@shop..de", "email.domain_label"),
        ("jane@" + "a" * 64 + ".de", "email.domain_label"),
        ("jane@" + ".".join(["a" * 60] * 5) + ".de", "email.domain_too_long"),
        ("jane@shop.123", "email.domain_tld"),
        ("jane@shop.d", "email.domain_tld"),
        ("jane@xn--zz-.de", "email.domain_idna"),
        ("jane@example.com", "email.reserved_domain"),
        ("jane@shop.test", "email.reserved_domain"),
        ("test@gmail.com", "email.placeholder"),
        ("null@shop.de", "email.placeholder"),
        ("000@shop.de", "email.placeholder"),
        (None, "email.not_text"),
        (123, "email.not_text"),
    ],
)
def test_invalid_addresses(raw: object, code: str) -> None:
    outcome = validate_email(raw)
    assert isinstance(outcome, Problem)
    assert outcome.code == code
    assert outcome.is_error


@pytest.mark.parametrize(
    "domain", ["mailinator.com", "guerrillamail.com", "yopmail.com", "10minutemail.com"]
)
def test_disposable_domains_are_flagged(domain: str) -> None:
    outcome = validate_email(f"jane@{domain}")
    assert isinstance(outcome, Normalised)
    assert "email.disposable" in outcome.codes
    assert is_disposable_domain(domain)
    assert is_disposable_domain(f"inbox.{domain}")  # a subdomain of one is one too


@pytest.mark.parametrize("domain", ["gmail.com", "outlook.com", "web.de", "shop.example.co.uk"])
def test_ordinary_domains_are_not_disposable(domain: str) -> None:
    assert not is_disposable_domain(domain)


@pytest.mark.parametrize(
    ("domain", "suggestion"),
    [
        ("gmial.com", "gmail.com"),
        ("gamil.com", "gmail.com"),
        ("gmail.con", "gmail.com"),
        ("hotmial.com", "hotmail.com"),
        ("yaho.com", "yahoo.com"),
        ("outlok.com", "outlook.com"),
        ("googlemial.com", "googlemail.com"),
        ("t-onlin.de", "t-online.de"),
    ],
)
def test_typo_domains_get_a_suggestion_not_a_rewrite(domain: str, suggestion: str) -> None:
    outcome = validate_email(f"jane@{domain}")
    assert isinstance(outcome, Normalised)
    assert outcome.value == f"jane@{domain}"  # never silently rewritten
    typos = [w for w in outcome.warnings if w.code == "email.domain_typo"]
    assert len(typos) == 1
    assert typos[0].suggestion == suggestion
    assert domain not in typos[0].message


@pytest.mark.parametrize("domain", [*sorted(POPULAR_DOMAINS), "gmx.fr", "shop.de", "acme.com"])
def test_no_suggestion_for_real_or_unrelated_domains(domain: str) -> None:
    assert suggest_domain(domain) is None


def test_the_problem_never_holds_the_address() -> None:
    outcome = validate_email("jane.secret@@gmail.com")
    assert isinstance(outcome, Problem)
    assert "secret" not in repr(outcome)
    assert "secret" not in repr(validate_email("jane.secret@gmial.com"))


@given(anything | any_text | email_ish)
def test_never_raises(value: object) -> None:
    assert isinstance(validate_email(value), Normalised | Problem)


@settings(max_examples=60)
@given(any_text | email_ish | st.emails())
def test_idempotent(value: str) -> None:
    first = validate_email(value)
    if isinstance(first, Normalised):
        assert validate_email(first.value) == first


@settings(max_examples=60)
@given(st.emails())
def test_generated_addresses_are_accepted(value: str) -> None:
    outcome = validate_email(value)
    if isinstance(outcome, Problem):
        assert outcome.code in {"email.placeholder", "email.reserved_domain"}


@settings(max_examples=60)
@given(any_text | email_ish | st.emails())
def test_domain_round_trips_through_punycode(value: str) -> None:
    outcome = validate_email(value)
    if isinstance(outcome, Normalised):
        domain = outcome.value.rsplit("@", 1)[1]
        assert domain.isascii()
        assert idna.encode(idna.decode(domain)).decode() == domain


@settings(max_examples=60)
@given(any_text | email_ish | st.emails())
def test_agrees_with_identity_resolution(value: str) -> None:
    """What quality calls a valid address, identity resolution stores as the same identifier."""
    outcome = validate_email(value)
    if isinstance(outcome, Normalised) and outcome.value.split("@")[0].isascii():
        assert normalize_email(outcome.value) == outcome.value
