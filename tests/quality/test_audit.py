"""The audit over a generated population with known, injected problems.

Every expectation is computed from what the generator injected, never written down by hand.
"""

from __future__ import annotations

import json
import random
import weakref
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import phonenumbers
import pytest
from faker import Faker

from consentry.quality import (
    POSTCODE_RULES,
    Auditor,
    AuditReport,
    FieldCheck,
    Normalised,
    audit,
    default_fields,
    is_disposable_domain,
    suggest_domain,
)

AS_OF = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
STALE_DAYS = 180
MAX_EXAMPLES = 3
PROVIDERS = ["gmail.com", "outlook.com", "web.de", "orange.fr", "yahoo.co.uk"]
COUNTRIES = ["US", "GB", "DE", "FR", "NL"]


def _example_mobile(country: str) -> phonenumbers.PhoneNumber:
    number = phonenumbers.example_number_for_type(country, phonenumbers.PhoneNumberType.MOBILE)
    assert number is not None
    return number


PHONES = {c: _example_mobile(c) for c in COUNTRIES}
TYPO_DOMAIN = "outlok.com"
Traits = dict[str, Any]
Country = str | None


@dataclass
class Expected:
    records: int = 0
    present: Counter[str] = field(default_factory=Counter)
    errors: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    warnings: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    stale: set[str] = field(default_factory=set)
    unknown_seen: int = 0
    duplicate_records: set[str] = field(default_factory=set)
    duplicate_candidates: int = 0
    secrets: set[str] = field(default_factory=set)  # values that must never reach the report

    def error(self, field_name: str, code: str, record_id: str) -> None:
        self.errors[field_name, code].add(record_id)

    def warn(self, field_name: str, code: str, record_id: str) -> None:
        self.warnings[field_name, code].add(record_id)

    @property
    def error_ids(self) -> set[str]:
        return set().union(*self.errors.values()) if self.errors else set()

    @property
    def warning_ids(self) -> set[str]:
        return set().union(*self.warnings.values()) if self.warnings else set()


def _phone(country: str, national: bool) -> str:
    fmt = (
        phonenumbers.PhoneNumberFormat.NATIONAL if national else phonenumbers.PhoneNumberFormat.E164
    )
    return phonenumbers.format_number(PHONES[country], fmt)


def generate(n: int, seed: int) -> tuple[list[dict[str, Any]], Expected]:
    """``n`` profiles, most clean, some with one injected problem; and what the audit must find."""
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    expected = Expected()
    records: list[dict[str, Any]] = []
    for i in range(n):
        rid = f"p{i}"
        home = rng.choice(COUNTRIES)
        country: Country = home
        traits: dict[str, Any] = {}
        address: dict[str, Any] = {}
        email = f"{fake.user_name()}{i}@{rng.choice(PROVIDERS)}"
        traits["email"] = email
        expected.secrets.add(email)
        traits["firstName" if i % 2 else "first_name"] = fake.first_name()
        last_name = fake.last_name()
        traits["lastName"] = last_name
        if rng.random() < 0.3:
            traits["name"] = f"{traits.get('firstName') or traits.get('first_name')} {last_name}"
        traits["birthday"] = fake.date_between(date(1940, 1, 1), date(2000, 12, 31)).isoformat()
        address["city"] = fake.city()
        address["postalCode"] = POSTCODE_RULES[home].example.lower()
        address["country"] = country

        # Missing values: some fields are simply absent, or empty.
        for key in ("birthday", "lastName", "name"):
            if rng.random() < 0.15:
                traits.pop(key, None)
        if rng.random() < 0.1:
            address["city"] = ""
        if rng.random() < 0.1:
            del address["country"]
            country = None

        # One injected problem for a fifth of the records.
        injected = rng.choice(INJECTIONS) if rng.random() < 0.2 else None
        if injected is not None:
            country = injected(rng, rid, traits, address, country, expected)

        # The phone is written nationally only when the record has a valid country.
        if "phone" not in traits:
            traits["phone"] = _phone(home, national=country is not None and rng.random() < 0.5)
        if rng.random() < 0.3:  # some sources put the address's fields at the top level
            traits["zip" if rng.random() < 0.5 else "postalCode"] = address.pop("postalCode")
        traits["address"] = address

        record: dict[str, Any] = {"id": rid, "traits": traits}
        if rng.random() < 0.05:
            expected.unknown_seen += 1
            if rng.random() < 0.5:
                record["last_seen"] = "not a time"
        else:
            days = rng.randint(0, 720)
            seen = AS_OF - timedelta(days=days, seconds=rng.randint(0, 3600))
            record["last_seen"] = seen if rng.random() < 0.5 else seen.isoformat()
            if seen < AS_OF - timedelta(days=STALE_DAYS):
                expected.stale.add(rid)
        if rng.random() < 0.3:
            candidates = rng.randint(0, 3)
            record["duplicate_candidates"] = candidates
            if candidates:
                expected.duplicate_records.add(rid)
                expected.duplicate_candidates += candidates

        _count_present(record, country, expected)
        records.append(record)
    expected.records = n
    return records, expected


def _count_present(record: dict[str, Any], country: str | None, expected: Expected) -> None:
    traits = record["traits"]
    address = traits["address"]
    rid = record["id"]
    for name, keys in {
        "email": ("email",),
        "phone": ("phone",),
        "first_name": ("firstName", "first_name"),
        "last_name": ("lastName",),
        "name": ("name",),
        "birthday": ("birthday",),
    }.items():
        if any(traits.get(k) for k in keys):
            expected.present[name] += 1
    if address.get("country"):
        expected.present["country"] += 1
    if address.get("city"):
        expected.present["city"] += 1
    if address.get("postalCode") or traits.get("zip") or traits.get("postalCode"):
        expected.present["postal_code"] += 1
        if country is None:  # no country to judge the postcode by
            expected.error("postal_code", "postcode.country_needed", rid)


# Each injection changes one record and records what the audit must report; it returns the
# record's country as the audit will see it.
def _bad_email(
    rng: random.Random, rid: str, t: Traits, a: Traits, c: Country, e: Expected
) -> Country:
    t["email"] = f"{rid}-at-gmail.com"
    e.error("email", "email.at_sign", rid)
    return c


def _disposable(
    rng: random.Random, rid: str, t: Traits, a: Traits, c: Country, e: Expected
) -> Country:
    t["email"] = f"{rid}@mailinator.com"
    e.warn("email", "email.disposable", rid)
    return c


def _typo(rng: random.Random, rid: str, t: Traits, a: Traits, c: Country, e: Expected) -> Country:
    t["email"] = f"{rid}@{TYPO_DOMAIN}"
    e.warn("email", "email.domain_typo", rid)
    return c


def _short_phone(
    rng: random.Random, rid: str, t: Traits, a: Traits, c: Country, e: Expected
) -> Country:
    t["phone"] = "+1 201 555"
    e.error("phone", "phone.too_short", rid)
    return c


def _feb_30(rng: random.Random, rid: str, t: Traits, a: Traits, c: Country, e: Expected) -> Country:
    t["birthday"] = f"{rng.randint(1950, 2000)}-02-30"
    e.error("birthday", "date.impossible", rid)
    return c


def _future(rng: random.Random, rid: str, t: Traits, a: Traits, c: Country, e: Expected) -> Country:
    t["birthday"] = (AS_OF.date() + timedelta(days=rng.randint(1, 3000))).isoformat()
    e.error("birthday", "date.in_future", rid)
    return c


def _child(rng: random.Random, rid: str, t: Traits, a: Traits, c: Country, e: Expected) -> Country:
    t["birthday"] = (AS_OF.date() - timedelta(days=365 * rng.randint(3, 14))).isoformat()
    e.warn("birthday", "date.under_min_age", rid)
    return c


def _bad_postcode(
    rng: random.Random, rid: str, t: Traits, a: Traits, c: Country, e: Expected
) -> Country:
    a["postalCode"] = "ABC"
    if c is not None:  # without a country, country_needed is what the audit reports
        e.error("postal_code", "postcode.format", rid)
    return c


def _atlantis(
    rng: random.Random, rid: str, t: Traits, a: Traits, c: Country, e: Expected
) -> Country:
    a["country"] = "Atlantis"
    e.error("country", "country.unknown", rid)
    e.secrets.add("Atlantis")
    return None


def _sealed(rng: random.Random, rid: str, t: Traits, a: Traits, c: Country, e: Expected) -> Country:
    t["lastName"] = f"pv1:{rid}:c2VhbGVkLXZhbHVl"
    e.error("last_name", "value.sealed", rid)
    e.secrets.add("c2VhbGVkLXZhbHVl")
    return c


def _placeholder_name(
    rng: random.Random, rid: str, t: Traits, a: Traits, c: Country, e: Expected
) -> Country:
    t["firstName" if rid[-1] in "13579" else "first_name"] = "N/A"
    e.error("first_name", "name.placeholder", rid)
    return c


INJECTIONS = [
    _bad_email,
    _disposable,
    _typo,
    _short_phone,
    _feb_30,
    _future,
    _child,
    _bad_postcode,
    _atlantis,
    _sealed,
    _placeholder_name,
]


def _run(records: list[dict[str, Any]]) -> AuditReport:
    return audit(records, as_of=AS_OF, stale_after_days=STALE_DAYS, max_examples=MAX_EXAMPLES)


@pytest.fixture(scope="module")
def population() -> tuple[list[dict[str, Any]], Expected]:
    return generate(600, seed=20260615)


def test_generator_preconditions(population: tuple[list[dict[str, Any]], Expected]) -> None:
    """The injected values mean what the expectations say (checked on their own terms)."""
    assert is_disposable_domain("mailinator.com")
    assert not is_disposable_domain(TYPO_DOMAIN) and suggest_domain(TYPO_DOMAIN) == "outlook.com"
    for provider in PROVIDERS:
        assert not is_disposable_domain(provider) and suggest_domain(provider) is None
    for number in PHONES.values():
        assert phonenumbers.is_valid_number(number)
    _, expected = population
    assert len(expected.errors) >= 9 and len(expected.warnings) == 3  # every kind was drawn


def test_totals(population: tuple[list[dict[str, Any]], Expected]) -> None:
    records, expected = population
    report = _run(records)
    assert report.records == expected.records == len(records)
    assert report.records_with_errors == len(expected.error_ids)
    assert report.records_with_warnings == len(expected.warning_ids - expected.error_ids)
    assert report.records_clean == len(records) - len(expected.error_ids | expected.warning_ids)


def test_completeness(population: tuple[list[dict[str, Any]], Expected]) -> None:
    records, expected = population
    report = _run(records)
    assert set(report.fields) == {f.name for f in default_fields()}
    for name, field_report in report.fields.items():
        assert field_report.present == expected.present[name], name
        assert field_report.share == pytest.approx(expected.present[name] / len(records))
    assert report.fields["email"].share == 1.0
    assert 0 < report.fields["birthday"].share < 1


def test_invalid_values_by_code_with_example_ids(
    population: tuple[list[dict[str, Any]], Expected],
) -> None:
    records, expected = population
    report = _run(records)
    found_errors = {
        (name, code): c for name, f in report.fields.items() for code, c in f.invalid.items()
    }
    found_warnings = {
        (name, code): c for name, f in report.fields.items() for code, c in f.warnings.items()
    }
    assert set(found_errors) == set(expected.errors)
    assert set(found_warnings) == set(expected.warnings)
    for key, ids in [*expected.errors.items(), *expected.warnings.items()]:
        counted = found_errors.get(key) or found_warnings[key]
        assert counted.count == len(ids), key
        assert len(counted.examples) == min(len(ids), MAX_EXAMPLES)
        assert set(counted.examples) <= ids
    for name, f in report.fields.items():
        assert f.valid == f.present - f.invalid_total, name


def test_stale_and_duplicates(population: tuple[list[dict[str, Any]], Expected]) -> None:
    records, expected = population
    report = _run(records)
    assert report.stale.stale == len(expected.stale)
    assert report.stale.unknown == expected.unknown_seen
    assert set(report.stale.examples) <= expected.stale
    assert report.duplicates.likely_duplicates == len(expected.duplicate_records)
    assert report.duplicates.candidates == expected.duplicate_candidates
    assert set(report.duplicates.examples) <= expected.duplicate_records


def test_stale_threshold_is_configurable(population: tuple[list[dict[str, Any]], Expected]) -> None:
    records, _ = population
    counts = [
        audit(records, as_of=AS_OF, stale_after_days=d).stale.stale for d in (0, 30, 365, 10_000)
    ]
    assert counts == sorted(counts, reverse=True)
    assert counts[-1] == 0


def test_to_dict_is_json_and_holds_no_value(
    population: tuple[list[dict[str, Any]], Expected],
) -> None:
    records, expected = population
    report = _run(records)
    text = json.dumps(report.to_dict())
    data = json.loads(text)
    assert data["totals"]["records"] == len(records)
    assert data["as_of"] == AS_OF.isoformat()
    assert data["fields"]["email"]["warnings"]["email.disposable"]["count"] == len(
        expected.warnings["email", "email.disposable"]
    )
    for secret in expected.secrets:
        assert secret not in text
    for record in records:
        for value in (record["traits"].get("lastName"), record["traits"]["email"]):
            if isinstance(value, str) and len(value) > 6:
                assert value not in text


def test_chunks_add_up_to_the_whole(population: tuple[list[dict[str, Any]], Expected]) -> None:
    records, _ = population
    auditor = Auditor(as_of=AS_OF, stale_after_days=STALE_DAYS, max_examples=MAX_EXAMPLES)
    for start in range(0, len(records), 97):  # pages, as a service would read them
        auditor.add_many(records[start : start + 97])
    assert auditor.report() == _run(records)


def test_no_duplicate_figures_without_counts() -> None:
    report = audit([{"id": 1, "traits": {"email": "a@shop.de"}}], as_of=AS_OF)
    assert report.duplicates.likely_duplicates is None
    assert report.to_dict()["duplicates"]["candidates"] is None


def test_empty_population() -> None:
    report = audit([], as_of=AS_OF)
    assert report.records == 0
    assert all(f.share == 0.0 for f in report.fields.values())
    json.dumps(report.to_dict())


def test_custom_fields_and_default_country() -> None:
    loyalty = FieldCheck(
        "loyalty_tier",
        ("loyaltytier",),
        lambda v, _: Normalised(v) if v in {"gold", "silver"} else _unknown_tier(),
    )
    records = [
        {"id": "a", "traits": {"loyalty_tier": "gold", "phone": "030 12345678"}},
        {"id": "b", "traits": {"LoyaltyTier": "tin", "phone": "030 12345678"}},
    ]
    fields = [loyalty, *[f for f in default_fields(default_country="DE") if f.name == "phone"]]
    report = audit(records, as_of=AS_OF, fields=fields)
    assert report.fields["loyalty_tier"].invalid["tier.unknown"].examples == ("b",)
    assert report.fields["phone"].valid == 2  # judged as German numbers
    with pytest.raises(ValueError):
        Auditor(as_of=AS_OF, fields=[loyalty, loyalty])


def test_day_first_for_birth_dates() -> None:
    records = [{"id": "a", "traits": {"birthday": "05/06/1990"}}]
    ambiguous = audit(records, as_of=AS_OF).fields["birthday"]
    assert ambiguous.invalid["date.ambiguous"].count == 1
    settled = audit(records, as_of=AS_OF, fields=default_fields(day_first=True))
    assert settled.fields["birthday"].valid == 1


def _unknown_tier() -> Any:
    from consentry.quality import Problem

    return Problem("tier.unknown", "Not a loyalty tier.")


def _stream(n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {
            "id": i,
            "traits": {
                "email": f"user{i % 500}@gmail.com" if i % 7 else "broken",
                "address": {"country": "DE", "postalCode": "10115" if i % 3 else "1"},
                "birthday": "1980-01-01",
            },
            "last_seen": AS_OF - timedelta(days=i % 400),
            "duplicate_candidates": i % 2,
        }


class _Record(dict[str, Any]):
    """A record that can be weakly referenced, to see when the audit lets go of it."""

    __slots__ = ("__weakref__",)
    __hash__ = object.__hash__  # type: ignore[assignment]


def test_records_are_not_kept_and_examples_are_capped() -> None:
    """Bounded memory: the audit holds at most the record it is reading (the caller's loop
    variable holds the one before), and per problem code at most ``max_examples`` ids."""
    alive = 0
    most_alive = 0

    def gone() -> None:
        nonlocal alive
        alive -= 1

    def records(n: int) -> Iterator[_Record]:
        nonlocal alive, most_alive
        for raw in _stream(n):
            record = _Record(raw)
            weakref.finalize(record, gone)
            alive += 1
            most_alive = max(most_alive, alive)
            yield record

    report = audit(records(10_000), as_of=AS_OF, max_examples=MAX_EXAMPLES)
    assert report.records == 10_000
    assert most_alive <= 2
    at_sign = report.fields["email"].invalid["email.at_sign"]
    assert at_sign.count == len(range(0, 10_000, 7))
    assert len(at_sign.examples) == MAX_EXAMPLES
    assert report.fields["postal_code"].invalid["postcode.format"].count == len(range(0, 10_000, 3))
    sizes = [len(c.examples) for f in report.fields.values() for c in f.invalid.values()]
    assert max(sizes) <= MAX_EXAMPLES
    assert len(report.stale.examples) <= MAX_EXAMPLES
    assert len(report.duplicates.examples) <= MAX_EXAMPLES
