"""Postcodes: each main country's format, canonical spacing and case."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentry.quality import POSTCODE_RULES, Normalised, Problem, validate_postcode
from tests.quality.strategies import any_text, anything, near

REQUIRED = ["US", "CA", "GB", "DE", "FR", "NL", "BE", "ES", "IT", "AT", "CH", "SE", "DK", "NO"]
REQUIRED += ["PL", "AU", "JP", "BR", "IE"]

# (country, as typed, canonical)
VALID = [
    ("US", "94105", "94105"),
    ("US", "941051804", "94105-1804"),
    ("US", " 94105 - 1804 ", "94105-1804"),
    ("CA", "k1a0b1", "K1A 0B1"),
    ("CA", "M5V 3L9", "M5V 3L9"),
    ("GB", "sw1a1aa", "SW1A 1AA"),
    ("GB", "ec1a 1bb", "EC1A 1BB"),
    ("GB", "W1A0AX", "W1A 0AX"),
    ("GB", "m11ae", "M1 1AE"),
    ("GB", "B33 8TH", "B33 8TH"),
    ("GB", "cr26xh", "CR2 6XH"),
    ("GB", "DN55  1PT", "DN55 1PT"),
    ("GB", "gir 0aa", "GIR 0AA"),
    ("IE", "d02x285", "D02 X285"),
    ("IE", "A65 F4E2", "A65 F4E2"),
    ("IE", "d6w xy12", "D6W XY12"),
    ("DE", "10115", "10115"),
    ("DE", "D-10115", "10115"),
    ("DE", "01067", "01067"),
    ("FR", "75008", "75008"),
    ("FR", "F-75008", "75008"),
    ("NL", "1234ab", "1234 AB"),
    ("NL", "1012 jS", "1012 JS"),
    ("NL", "NL-1012AB", "1012 AB"),
    ("BE", "1000", "1000"),
    ("BE", "B-1000", "1000"),
    ("ES", "28013", "28013"),
    ("ES", "08001", "08001"),
    ("IT", "00184", "00184"),
    ("AT", "1010", "1010"),
    ("AT", "A-1010", "1010"),
    ("CH", "8001", "8001"),
    ("CH", "CH-8001", "8001"),
    ("SE", "11455", "114 55"),
    ("SE", "114 55", "114 55"),
    ("SE", "S-114 55", "114 55"),
    ("DK", "1050", "1050"),
    ("NO", "0150", "0150"),
    ("PL", "00950", "00-950"),
    ("PL", "00-950", "00-950"),
    ("AU", "2000", "2000"),
    ("AU", "0800", "0800"),
    ("JP", "1000001", "100-0001"),
    ("JP", "〒100-0001", "100-0001"),
    ("JP", "１００－０００１", "100-0001"),  # full-width digits and hyphen
    ("BR", "01310100", "01310-100"),
    ("BR", "01310-100", "01310-100"),
]

INVALID = [
    ("US", "9410"),
    ("US", "94105-18"),
    ("US", "ABCDE"),
    ("CA", "D1A 0B1"),  # D is never used
    ("CA", "W1A 0B1"),  # nor W first
    ("CA", "K1A0B"),
    ("GB", "SW1A 1CA"),  # C is never in the inward code
    ("GB", "QW1 1AA"),  # nor Q first
    ("GB", "GIR 1AA"),
    ("GB", "12345"),
    ("IE", "B02 X285"),  # B is no routing key letter
    ("IE", "D02 X2B5"),
    ("DE", "00123"),
    ("DE", "1011"),
    ("DE", "101155"),
    ("FR", "7500"),
    ("NL", "0123 AB"),  # no leading zero
    ("NL", "1234 SS"),  # SA, SD, SS are never issued
    ("NL", "1234 SA"),
    ("NL", "1234"),
    ("BE", "0999"),
    ("ES", "53001"),  # provinces stop at 52
    ("ES", "00001"),
    ("IT", "0018"),
    ("AT", "0100"),
    ("CH", "800"),
    ("SE", "01455"),
    ("DK", "10500"),
    ("NO", "150"),
    ("PL", "00-95"),
    ("AU", "200"),
    ("JP", "100-001"),
    ("BR", "0131010"),
    ("DE", "AB#12"),
]


def test_every_required_country_has_a_rule() -> None:
    assert set(REQUIRED) <= set(POSTCODE_RULES)
    assert {c for c, _, _ in VALID} >= set(REQUIRED)
    assert {c for c, _ in INVALID} >= set(REQUIRED)


@pytest.mark.parametrize(("country", "raw", "canonical"), VALID)
def test_valid_postcodes(country: str, raw: str, canonical: str) -> None:
    outcome = validate_postcode(raw, country)
    assert isinstance(outcome, Normalised), outcome
    assert outcome.value == canonical
    assert outcome.warnings == ()
    assert validate_postcode(raw, country.lower()) == outcome


@pytest.mark.parametrize(("country", "raw"), INVALID)
def test_invalid_postcodes(country: str, raw: str) -> None:
    outcome = validate_postcode(raw, country)
    assert isinstance(outcome, Problem)
    assert outcome.code == "postcode.format"
    assert raw not in outcome.message


@pytest.mark.parametrize("country", sorted(POSTCODE_RULES))
def test_each_rules_example_is_canonical(country: str) -> None:
    example = POSTCODE_RULES[country].example
    outcome = validate_postcode(example, country)
    assert isinstance(outcome, Normalised)
    assert outcome.value == example


def test_other_problems() -> None:
    cases = {
        ("", "DE"): "postcode.empty",
        ("10115", None): "postcode.country_needed",
        ("10115", ""): "postcode.country_needed",
        ("00000", "HK"): "postcode.not_used",
        ("1" * 40, "DE"): "postcode.too_long",
        (None, "DE"): "postcode.not_text",
        ("ab#1", "KR"): "postcode.format",
    }
    for (raw, country), code in cases.items():
        outcome = validate_postcode(raw, country)
        assert isinstance(outcome, Problem) and outcome.code == code, (raw, country)


def test_countries_without_a_rule_are_tidied_and_flagged() -> None:
    outcome = validate_postcode(" 04524 ", "KR")
    assert isinstance(outcome, Normalised)
    assert outcome.value == "04524"
    assert outcome.codes == ("postcode.unchecked",)


COUNTRIES = st.sampled_from(sorted(POSTCODE_RULES) + ["KR", "ZA", "HK", "", "xx"])


@given(anything | any_text | near("0123456789ABCDEFGHJKLMNPRSTVWXY -〒", 12), COUNTRIES)
def test_never_raises(value: object, country: str) -> None:
    assert isinstance(validate_postcode(value, country), Normalised | Problem)


@given(any_text | near("0123456789ABCDEFGHJKLMNPRSTVWXYabc -", 12), COUNTRIES)
def test_idempotent(value: str, country: str) -> None:
    first = validate_postcode(value, country)
    if isinstance(first, Normalised):
        assert validate_postcode(first.value, country) == first


@st.composite
def written_postcodes(draw: st.DrawFn) -> tuple[str, str, str]:
    """(country, a format-valid postcode as someone might type it, its compact form)."""
    country = draw(st.sampled_from(sorted(POSTCODE_RULES)))
    compact = draw(st.from_regex(POSTCODE_RULES[country].pattern, fullmatch=True)).strip()
    typed = "".join(
        draw(st.sampled_from([ch.lower(), ch.upper()])) + draw(st.sampled_from(["", "", " ", "-"]))
        for ch in compact
    )
    return country, typed, compact


@given(written_postcodes())
def test_any_spacing_and_case_of_a_valid_code_gives_one_canonical_form(
    case: tuple[str, str, str],
) -> None:
    country, typed, compact = case
    outcome = validate_postcode(typed, country)
    assert isinstance(outcome, Normalised), (country, typed)
    assert outcome.value.replace(" ", "").replace("-", "") == compact
    assert validate_postcode(compact, country) == outcome  # round trip
