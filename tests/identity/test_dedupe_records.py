"""Comparison keys from profile traits, the stored model and explanations (pure; hypothesis)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.errors import Invalid
from consentry.matching import MatchSettings, RecordBatch, dedupe
from consentry.profiles import dedupe_records as dr
from tests.matching.synthetic import people

TODAY = date(2026, 6, 1)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
trait_names = st.sampled_from(dr.TRAIT_KEYS) | st.text(max_size=12)
letters = st.text(alphabet=st.characters(categories=("Lu", "Ll")), min_size=1, max_size=20)


def keys(**traits: Any) -> dict[str, str | None]:
    return dr.comparison_keys(traits, today=TODAY, default_region="US")


def test_segment_identify_traits_become_keys() -> None:
    found = keys(
        firstName="José-Luis",
        lastName="O'Brien",
        email="Jose.Luis+shop@Mail.COM",
        phone="(415) 555-2671",
        birthday="1984-03-07",
        address={
            "street": "12 High Street",
            "city": "San Francisco",
            "postalCode": "94103",
            "country": "US",
        },
    )
    assert found == {
        "given_name": "jose luis",
        "surname": "obrien",
        "email_local": "jose.luis",
        "email_domain": "mail.com",
        "phone": "+14155552671",
        "birth_date": "19840307",
        "street_number": "12",
        "street": "high st",
        "postcode": "94103",
        "city": "san francisco",
    }


def test_snake_case_flat_traits_and_a_full_name_are_read_too() -> None:
    found = keys(name="Ada King Lovelace", postal_code="sw1a1aa", country="GB", city="LONDON")
    assert (found["given_name"], found["surname"]) == ("ada", "lovelace")
    assert found["postcode"] == "sw1a1aa" and found["city"] == "london"
    assert keys(first_name="Ada")["given_name"] == "ada"


def test_the_address_country_reads_national_phone_numbers() -> None:
    german = keys(phone="030 12345678", address={"country": "Germany"})
    assert german["phone"] == "+493012345678"
    assert keys(phone="+49 30 12345678")["phone"] == german["phone"]


@pytest.mark.parametrize(
    ("street", "number", "name"),
    [
        ("12 High Street", "12", "high st"),
        ("Hauptstraße 5", "5", "haupt str"),
        ("Rue de Rivoli, 99", "99", "rue de rivoli"),
        ("Main Avenue", None, "main ave"),
        ("221b Baker Street", "221b", "baker st"),
    ],
)
def test_the_house_number_is_taken_apart(street: str, number: str | None, name: str) -> None:
    assert dr.street_keys(street) == (number, name)


@pytest.mark.parametrize(
    "traits",
    [
        {"email": "not an address", "phone": "12", "birthday": "31/02/1990"},
        {"first_name": "null", "last_name": "12345", "birthday": "2090-01-01"},
        {"address": "nowhere", "postcode": "!!"},
        {"birthday": "05/06/1990"},  # day/month or month/day: unknown, so missing
    ],
)
def test_values_a_validator_refuses_are_missing_keys(traits: dict[str, Any]) -> None:
    found = keys(**traits)
    for field in ("email_local", "phone", "birth_date", "given_name", "surname", "postcode"):
        assert found[field] is None


@given(st.dictionaries(trait_names, json_values, max_size=8))
@settings(max_examples=300, deadline=None)
def test_any_traits_give_string_keys_or_none(traits: dict[str, Any]) -> None:
    found = dr.comparison_keys(traits, today=TODAY, default_region="US")
    assert set(found) == set(dr.FIELDS)
    for value in found.values():
        assert value is None or (isinstance(value, str) and value and value == value.strip())


@given(st.text(max_size=60))
def test_fold_is_idempotent_and_lower_case(text: str) -> None:
    once = dr.fold(text)
    assert dr.fold(once) == once
    assert once == once.casefold()
    assert "  " not in once and once == once.strip()


@given(letters, letters, st.sampled_from([str.upper, str.lower, str.title]), st.text(" \t"))
@settings(max_examples=1000)
def test_names_do_not_depend_on_case_or_surrounding_space(
    first: str, last: str, case: Any, pad: str
) -> None:
    plain = keys(first_name=first, last_name=last)
    typed = keys(first_name=pad + case(first) + pad, last_name=case(last) + pad)
    assert (plain["given_name"], plain["surname"]) == (typed["given_name"], typed["surname"])


@given(
    st.from_regex(r"[a-z][a-z0-9]{0,10}(\.[a-z0-9]{1,6})?", fullmatch=True),
    st.sampled_from(["gmail.com", "Mail.Shop.de", "shop.co.uk"]),
    st.text(alphabet="abc123", max_size=5),
)
def test_an_email_key_ignores_case_and_a_plus_tag(local: str, domain: str, tag: str) -> None:
    plain = dr.email_keys(f"{local}@{domain}")
    tagged = dr.email_keys(
        f" {local.upper()}+{tag}@{domain.upper()} " if tag else local + "@" + domain
    )
    assert plain == tagged == (local, domain.lower())


@given(st.dates(min_value=date(1910, 1, 1), max_value=date(2005, 12, 31)))
def test_a_birth_date_in_any_written_form_is_one_key(born: date) -> None:
    iso = dr.birth_key(born.isoformat(), TODAY)
    assert iso == born.strftime("%Y%m%d")
    assert dr.birth_key(born, TODAY) == iso
    assert dr.birth_key(born.strftime("%d.%m.%Y"), TODAY) == iso


@given(st.integers(min_value=2_000_000, max_value=9_999_999))
def test_a_phone_written_nationally_or_internationally_is_one_key(number: int) -> None:
    national = f"(415) {str(number)[:3]}-{str(number)[3:]}"
    e164 = dr.phone_key(national, "US")
    if e164 is not None:  # not every number is allocated
        assert dr.phone_key(f"+1 415 {number}", None) == e164
        assert dr.phone_key(f"001415{number}", "DE") == e164


def test_display_summary_shows_cleaned_values() -> None:
    shown = dr.display_summary(
        {"firstName": " Ada ", "lastName": "Lovelace", "address": {"city": "London"}}
    )
    assert shown["name"] == "Ada Lovelace" and shown["city"] == "London"
    assert shown["email"] is None
    assert dr.display_summary({"name": "Grace Hopper"})["name"] == "Grace Hopper"


# --- the stored model and explanations ------------------------------------------------------


@pytest.fixture(scope="module")
def trained() -> tuple[RecordBatch, Any]:
    crowd = people(600, duplicate_share=0.1, seed=11)
    batch = RecordBatch.from_records(crowd.records)
    return batch, dedupe(batch, MatchSettings(workers=1))


def test_the_model_document_holds_parameters_only_and_reads_back(
    trained: tuple[RecordBatch, Any],
) -> None:
    batch, result = trained
    document = dr.model_document(result.model)
    text = json.dumps(document)
    values = {v for c in batch.columns.values() for v in c.values.tolist() if len(v) > 3}
    assert not [v for v in values if f'"{v}"' in text]  # no record's value is stored
    back = dr.model_from_document(json.loads(text), batch)
    comparer = back.comparer(batch, workers=1)
    levels, swapped = comparer.levels(result.left, result.right)
    weights = back.scorer(comparer).weights(result.left, levels, swapped)
    assert np.allclose(weights, result.weight)


def test_a_damaged_model_document_is_invalid(trained: tuple[RecordBatch, Any]) -> None:
    batch, result = trained
    document = dr.model_document(result.model)
    document["fields"][0]["m"] = document["fields"][0]["m"][:1]
    with pytest.raises(Invalid):
        dr.model_from_document(document, batch)
    with pytest.raises(Invalid):
        dr.model_from_document({}, batch)


def test_explanations_add_up_to_the_match_weight(trained: tuple[RecordBatch, Any]) -> None:
    batch, result = trained
    scorer = result.model.scorer(result.model.comparer(batch, workers=1))
    explained = dr.explanations(scorer, result.left[:50], result.right[:50])
    for k, doc in enumerate(explained):
        total = doc["prior_weight"] + sum(f["weight"] for f in doc["fields"])
        assert total == pytest.approx(result.weight[k], abs=1e-2)
        assert doc["match_weight"] == pytest.approx(result.weight[k], abs=1e-3)
        assert {f["field"] for f in doc["fields"]} <= {*dr.FIELDS, "email", "national_id"}
    assert dr.explanations(scorer, result.left[:0], result.right[:0]) == []


def test_key_columns_build_a_batch_of_all_or_some() -> None:
    columns = dr.KeyColumns()
    columns.add("a", keys(first_name="Ada"))
    columns.add("b", keys(first_name="Grace"))
    assert len(columns) == 2 and len(columns.batch()) == 2
    some = columns.batch([1])
    assert some.ids.tolist() == ["b"] and some.columns["given_name"].values.tolist() == ["grace"]


def _explained(**levels: str) -> dict[str, object]:
    fields = [
        "given_name", "surname", "email_local", "email_domain", "phone", "birth_date",
        "street_number", "street", "postcode", "city",
    ]  # fmt: skip
    return {"fields": [{"field": f, "level": levels.get(f, "else"), "weight": 0.0} for f in fields]}


def test_an_address_alone_never_names_the_person() -> None:
    assert not dr.mentions_the_person(_explained(street="exact", postcode="exact", city="exact"))
    assert dr.mentions_the_person(_explained(street="exact", surname="exact"))
    household = _explained(street_number="exact", street="exact", postcode="exact", surname="exact")
    assert not dr.names_the_person(household)
    assert not dr.names_the_person(_explained(birth_date="exact", city="exact"))
    assert not dr.names_the_person(_explained(email_domain="exact", given_name="exact"))
    assert not dr.names_the_person(_explained(phone="null", email_local="null"))
    assert dr.names_the_person(_explained(phone="exact"))
    assert dr.names_the_person(_explained(email_local="damerau-levenshtein <= 1"))
    assert dr.names_the_person(_explained(given_name="jaro-winkler >= 0.92", surname="exact"))
    assert dr.names_the_person(_explained(birth_date="exact", surname="exact"))
