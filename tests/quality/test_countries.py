"""Countries: ISO 3166-1 alpha-2 from codes and English names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from iso3166 import countries

from consentry.quality import Normalised, Problem, validate_country
from consentry.quality.countries import NAME_ALIASES
from tests.quality.strategies import any_text, anything, near

ALL = list(countries)


@pytest.mark.parametrize(
    ("raw", "alpha2"),
    [
        ("de", "DE"),
        (" DEU ", "DE"),
        ("276", "DE"),
        (276, "DE"),
        (40, "AT"),  # numeric codes keep their leading zeros
        ("Germany", "DE"),
        ("GERMANY", "DE"),
        ("United States of America", "US"),
        ("USA", "US"),
        ("U.S.A.", "US"),
        ("United States", "US"),
        ("UK", "GB"),
        ("Great Britain", "GB"),
        ("United Kingdom", "GB"),
        ("EL", "GR"),
        ("Korea, Republic of", "KR"),
        ("Republic of Korea", "KR"),
        ("South Korea", "KR"),
        ("North Korea", "KP"),
        ("Bolivia", "BO"),
        ("Bolivia, Plurinational State of", "BO"),
        ("Côte d'Ivoire", "CI"),
        ("Cote d’Ivoire", "CI"),
        ("Ivory Coast", "CI"),
        ("Bosnia & Herzegovina", "BA"),
        ("Holland", "NL"),
        ("The Netherlands", "NL"),
        ("Russia", "RU"),
        ("Türkiye", "TR"),
        ("Turkey", "TR"),
        ("Viet Nam", "VN"),
        ("Vietnam", "VN"),
        ("Deutschland", "DE"),
        ("Österreich", "AT"),
        ("NA", "NA"),  # Namibia, not "n/a"
        ("Kosovo", "XK"),
        ("XK", "XK"),
    ],
)
def test_known_countries(raw: str | int, alpha2: str) -> None:
    outcome = validate_country(raw)
    assert isinstance(outcome, Normalised), outcome
    assert outcome.value == alpha2


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", "country.empty"),
        ("n/a", "country.placeholder"),
        ("unknown", "country.placeholder"),
        ("XX", "country.unknown_code"),
        ("ZZZ", "country.unknown"),
        ("Atlantis", "country.unknown"),
        ("Virgin Islands", "country.unknown"),  # British or U.S.: not guessed
        ("Congo, Democratic Republic", "country.unknown"),
        (None, "country.not_text"),
        (True, "country.not_text"),
    ],
)
def test_unknown_countries(raw: object, code: str) -> None:
    outcome = validate_country(raw)
    assert isinstance(outcome, Problem)
    assert outcome.code == code


def test_every_iso_country_by_every_name_and_code() -> None:
    assert len(ALL) >= 249
    for c in ALL:
        for form in {c.alpha2, c.alpha3, c.numeric, c.name, c.apolitical_name, c.name.lower()}:
            outcome = validate_country(form)
            assert isinstance(outcome, Normalised), form
            assert outcome.value == c.alpha2


def test_every_alias_is_a_real_code() -> None:
    for code in NAME_ALIASES.values():
        assert code in countries or code == "XK"


@given(anything | any_text | near("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij0123456789 ,.&'", 20))
def test_never_raises(value: object) -> None:
    assert isinstance(validate_country(value), Normalised | Problem)


@given(any_text | st.sampled_from([c.name for c in ALL]) | st.sampled_from(list(NAME_ALIASES)))
def test_idempotent_and_round_trips(value: str) -> None:
    first = validate_country(value)
    if isinstance(first, Normalised):
        assert validate_country(first.value) == first
        if first.value != "XK":  # alpha-2 -> alpha-3 -> alpha-2
            assert validate_country(countries.get(first.value).alpha3) == first
