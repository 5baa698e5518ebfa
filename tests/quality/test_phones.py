"""Phone numbers: validity per country, E.164, line type."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from consentry.profiles.models import normalize_phone, phone_region
from consentry.quality import Normalised, Phone, Problem, validate_phone
from tests.quality.strategies import any_text, anything, digits_ish

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
MAIN = ["US", "CA", "GB", "DE", "FR", "NL", "BE", "ES", "IT", "AT", "CH", "SE", "DK", "NO", "PL"]


def _examples() -> list[tuple[str, phonenumbers.PhoneNumber]]:
    found = []
    for region in REGIONS:
        for kind in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None and phonenumbers.is_valid_number(number):
                found.append((region, number))
    return found


EXAMPLES = _examples()
FORMATS = [
    PhoneNumberFormat.E164,
    PhoneNumberFormat.INTERNATIONAL,
    PhoneNumberFormat.NATIONAL,
    PhoneNumberFormat.RFC3966,
]


@pytest.mark.parametrize(
    ("raw", "country", "e164", "kind"),
    [
        ("(201) 555-0123", "US", "+12015550123", "fixed_line_or_mobile"),
        ("+1 201 555 0123", "DE", "+12015550123", "fixed_line_or_mobile"),
        ("0044 20 7946 0958", "us", "+442079460958", "fixed_line"),
        ("020 7946 0958", "GB", "+442079460958", "fixed_line"),
        ("07400 123456", "GB", "+447400123456", "mobile"),
        ("030 12345678", "DE", "+493012345678", "fixed_line"),
        ("0151 23456789", "DE", "+4915123456789", "mobile"),
        ("06 12 34 56 78", "FR", "+33612345678", "mobile"),
        ("06-12345678", "NL", "+31612345678", "mobile"),
        ("+48 512 345 678", None, "+48512345678", "mobile"),
        (15123456789, "DE", "+4915123456789", "mobile"),  # an int: its leading 0 is lost
    ],
)
def test_valid_numbers(raw: str | int, country: str | None, e164: str, kind: str) -> None:
    outcome = validate_phone(raw, country)
    assert isinstance(outcome, Normalised), outcome
    assert outcome.value.e164 == e164
    assert outcome.value.type == kind


@pytest.mark.parametrize(
    ("raw", "country", "code"),
    [
        ("", "US", "phone.empty"),
        ("12", "US", "phone.too_short"),
        ("call me maybe", "US", "phone.not_a_number"),
        ("030 12345678", None, "phone.region_needed"),
        ("+999 1234567", None, "phone.country_code"),
        ("+1 200 555 0123", None, "phone.invalid"),  # area code 200 is not in service
        ("0301234567891234567", "DE", "phone.too_long"),
        ("12345", "XX", "phone.bad_country"),
        ("12345", "USA", "phone.bad_country"),
        (True, "US", "phone.not_text"),
        (None, "US", "phone.not_text"),
        ("9" * 80, "US", "phone.too_long"),
    ],
)
def test_invalid_numbers(raw: object, country: str | None, code: str) -> None:
    outcome = validate_phone(raw, country)
    assert isinstance(outcome, Problem)
    assert outcome.code == code


def test_mobile_and_fixed_are_told_apart() -> None:
    mobile = validate_phone("+447400123456")
    fixed = validate_phone("+442079460958")
    assert isinstance(mobile, Normalised) and isinstance(fixed, Normalised)
    assert mobile.value.is_mobile is True
    assert fixed.value.is_mobile is False
    assert Phone("+12015550123", "US", "fixed_line_or_mobile").is_mobile is None


def test_premium_numbers_are_flagged() -> None:
    outcome = validate_phone("0900 1234567", "DE")
    assert isinstance(outcome, Normalised)
    assert outcome.codes == ("phone.unusual_type",)


def test_every_regions_examples_in_every_format() -> None:
    """libphonenumber's own example numbers (mobile and fixed) of every region it knows."""
    assert len(EXAMPLES) > 400
    for region, number in EXAMPLES:
        expected = phonenumbers.format_number(number, PhoneNumberFormat.E164)
        for fmt in FORMATS:
            outcome = validate_phone(phonenumbers.format_number(number, fmt), region)
            assert isinstance(outcome, Normalised), (region, fmt)
            assert outcome.value.e164 == expected
            assert outcome.value.region == phonenumbers.region_code_for_number(number)


@given(anything | any_text | digits_ish, st.sampled_from([None, *MAIN, "xx", "", "GBR"]))
def test_never_raises(value: object, country: str | None) -> None:
    assert isinstance(validate_phone(value, country), Normalised | Problem)


@given(digits_ish, st.sampled_from(MAIN))
def test_e164_is_idempotent_and_reparses(value: str, country: str) -> None:
    outcome = validate_phone(value, country)
    if isinstance(outcome, Normalised):
        e164 = outcome.value.e164
        assert validate_phone(e164) == outcome  # no country needed for E.164
        assert validate_phone(e164, "JP") == outcome  # nor does another country change it
        reparsed = phonenumbers.parse(e164, None)
        assert phonenumbers.format_number(reparsed, PhoneNumberFormat.E164) == e164
        assert phonenumbers.is_valid_number(reparsed)


@given(st.sampled_from(EXAMPLES), st.sampled_from(FORMATS), st.sampled_from(["", " ", "-", "."]))
def test_round_trip_from_any_written_form(
    example: tuple[str, phonenumbers.PhoneNumber], fmt: int, sep: str
) -> None:
    region, number = example
    written = phonenumbers.format_number(number, fmt).replace(" ", sep)
    outcome = validate_phone(written, region)
    if fmt == PhoneNumberFormat.RFC3966 and sep:
        return  # "tel:+1-201-555-0123" with spaces replaced is no longer RFC 3966
    assert isinstance(outcome, Normalised)
    assert outcome.value.e164 == phonenumbers.format_number(number, PhoneNumberFormat.E164)


@given(digits_ish, st.sampled_from(MAIN))
def test_agrees_with_identity_resolution(value: str, country: str) -> None:
    """A number quality accepts is the identifier identity resolution stores, and back."""
    outcome = validate_phone(value, country)
    stored = normalize_phone(value, country)
    if isinstance(outcome, Normalised):
        assert stored == outcome.value.e164
    elif outcome.code not in {"phone.too_long"}:  # quality caps input length, models does not
        assert stored is None


def test_uk_is_read_as_gb_as_identity_resolution_reads_it() -> None:
    """Shops write UK as often as GB; the audit and de-duplication must read such a profile's
    national number as identity resolution does (profiles.models.phone_region)."""
    found = validate_phone("020 7946 0958", "uk")
    assert isinstance(found, Normalised) and found.value.e164 == "+442079460958"
    assert normalize_phone("020 7946 0958", phone_region("UK", "US")) == found.value.e164
