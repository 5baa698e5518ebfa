"""A population of profiles with known data-quality problems, and what an audit must find.

Sent through ingestion like any shop's identify calls, so the traits are stored sealed and the
audit has to read them back through the profiles capability. ``EXPECTED`` is worked out by hand
from the list below (and the default stale cut-off of 365 days); the tests compare the stored
report with it field by field.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from consentry.platform.db import utcnow
from tests.support.segment import identify, track

STALE_DAYS = 365

# userId -> traits
PEOPLE: dict[str, dict[str, Any]] = {
    "clean": {
        "email": "jane.doe@gmail.com",
        "firstName": "Jane",
        "lastName": "Doe",
        "birthday": "1985-04-12",
        "phone": "030 12345678",
        "address": {"country": "DE", "postalCode": "10115", "city": "Berlin"},
    },
    "only-email": {"email": "max@web.de"},
    "bad-email": {"email": "not-an-email", "first_name": "Ann", "last_name": "Lee"},
    "bad-phone": {"email": "p4@web.de", "phone": "12", "country": "DE"},
    "bad-postcode": {"email": "p5@web.de", "address": {"country": "DE", "postal_code": "ABC"}},
    "disposable": {"email": "someone@mailinator.com"},
    "impossible-birthday": {"email": "p7@web.de", "birthday": "1990-02-30"},
    "future-birthday": {"email": "p8@web.de", "birthday": "2999-01-01"},
    # the same person twice: names swapped and cased differently, same birth date
    "dup-a": {
        "email": "olga@yandex.ru",
        "first_name": "Olga",
        "last_name": "Petrova",
        "birthday": "1979-11-03",
    },
    "dup-b": {
        "email": "o.petrova@mail.ru",
        "first_name": "petrova",
        "last_name": "OLGA",
        "birthday": "1979-11-03",
    },
    # one address, typed with a capital and a trailing dot: two identifiers, one mailbox
    "dup-mail-a": {"email": "dup.mail@web.de", "first_name": "Sam"},
    "dup-mail-b": {"email": "Dup.Mail@web.de."},
    # same name (once split, once whole) at the same postcode
    "dup-postcode-a": {
        "email": "lena1@web.de",
        "first_name": "Lena",
        "last_name": "Schmidt",
        "address": {"country": "DE", "postal_code": "80331"},
    },
    "dup-postcode-b": {
        "email": "lena2@web.de",
        "name": "Lena Schmidt",
        "address": {"country": "DE", "postal_code": "80331"},
    },
    "stale": {"email": "old@web.de"},
    # non-Latin values and "UK" as the country: all valid (the identity fixes of issue 6)
    "Иван": {
        "email": "иван@почта.рф",
        "first_name": "Иван",
        "last_name": "Петров",
        "phone": "07911 123456",
        "country": "UK",
    },
}
VISITOR = "visitor-1"  # an anonymous visitor: a profile without traits
DUPLICATES = {"dup-a", "dup-b", "dup-mail-a", "dup-mail-b", "dup-postcode-a", "dup-postcode-b"}
WITH_ERRORS = {"bad-email", "bad-phone", "bad-postcode", "impossible-birthday", "future-birthday"}
WITH_WARNINGS = {"disposable"}

# field -> (present, valid, {error code: count}, {warning code: count})
FIELDS: dict[str, tuple[int, int, dict[str, int], dict[str, int]]] = {
    "email": (16, 15, {"email.at_sign": 1}, {"email.disposable": 1}),
    "phone": (3, 2, {"phone.invalid": 1}, {}),
    "first_name": (7, 7, {}, {}),
    "last_name": (6, 6, {}, {}),
    "name": (1, 1, {}, {}),
    "birthday": (5, 3, {"date.impossible": 1, "date.in_future": 1}, {}),
    "country": (6, 6, {}, {}),
    "postal_code": (4, 3, {"postcode.format": 1}, {}),
    "city": (1, 1, {}, {}),
}
RECORDS = len(PEOPLE) + 1
EXPECTED_TOTALS = {
    "records": RECORDS,
    "records_clean": RECORDS - len(WITH_ERRORS) - len(WITH_WARNINGS),
    "records_with_errors": len(WITH_ERRORS),
    "records_with_warnings": len(WITH_WARNINGS),
    "stale": 1,
    "likely_duplicates": len(DUPLICATES),
    "profiles_with_traits": len(PEOPLE),
}


def messages() -> list[dict[str, Any]]:
    """The identify calls (and the visitor's page view) that plant the population."""
    now = utcnow()
    recent = (now - timedelta(days=1)).isoformat()
    long_ago = (now - timedelta(days=STALE_DAYS + 400)).isoformat()
    found = [
        identify(userId=user, traits=traits, timestamp=long_ago if user == "stale" else recent)
        for user, traits in PEOPLE.items()
    ]
    found.append(track("Page Viewed", anonymousId=VISITOR, timestamp=recent))
    return found


def check_report(document: dict[str, Any]) -> None:
    """Assert that an audit's document holds exactly what was planted."""
    assert document["profiles"] == RECORDS
    assert document["totals"] == EXPECTED_TOTALS
    for name, (present, valid, errors, warnings) in FIELDS.items():
        field = document["fields"][name]
        assert (field["present"], field["valid"]) == (present, valid), name
        assert {code: c["count"] for code, c in field["invalid"].items()} == errors, name
        assert {code: c["count"] for code, c in field["warnings"].items()} == warnings, name
        assert field["invalid_total"] == sum(errors.values())
        assert field["share"] == round(present / RECORDS, 6)
    duplicates = document["duplicates"]
    assert duplicates["likely_duplicates"] == len(DUPLICATES)
    assert duplicates["candidates"] == len(DUPLICATES)  # three pairs: one candidate each
    assert duplicates["pairs"] == 3 and duplicates["crowded_keys"] == 0
    assert document["stale"]["stale"] == 1 and document["stale"]["after_days"] == STALE_DAYS
