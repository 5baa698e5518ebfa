"""How the traits that describe a person are spelt, shared by the quality audit and
de-duplication (``profiles.dedupe_records``), so that a trait one of them reads the other reads
too (pure).

A spelling is a name as words: ``("first", "name")`` stands for "first_name", "firstName",
"FirstName", "first-name", "First Name", "FIRST_NAME", ... Trait names are compared by their
slug (:func:`consentry.profiles.models.trait_slug`: lower case, without "_", "-" or spaces), so
every way of writing the words is one slug: "firstname". Each field lists its spellings in order
of preference: when a profile has several, the first one present wins.

The audit reads the fields of :data:`AUDIT`; de-duplication reads the same fields and, where a
comparison key can use more, a few more names (:data:`GIVEN_NAME`, :data:`SURNAME`,
:data:`STREET`), which the audit's report has no field for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import product

from consentry.profiles.models import trait_slug

Words = tuple[str, ...]
Spellings = tuple[Words, ...]

EMAIL: Spellings = (("email",), ("e", "mail"))
PHONE: Spellings = (("phone",),)
FIRST_NAME: Spellings = (("first", "name"),)
LAST_NAME: Spellings = (("last", "name"),)
NAME: Spellings = (("name",),)
BIRTHDAY: Spellings = (
    ("birthday",),
    ("birth", "day"),
    ("date", "of", "birth"),
    ("birth", "date"),
    ("dob",),
)
COUNTRY: Spellings = (("country",),)
POSTAL_CODE: Spellings = (
    ("postal", "code"),
    ("zip",),
    ("zip", "code"),
    ("postcode",),
    ("post", "code"),
)
CITY: Spellings = (("city",),)
ADDRESS: Spellings = (("address",),)  # an object holding street, city, postcode, country

# The audit's fields, in the order of its report.
AUDIT: tuple[Spellings, ...] = (
    EMAIL,
    PHONE,
    FIRST_NAME,
    LAST_NAME,
    NAME,
    BIRTHDAY,
    COUNTRY,
    POSTAL_CODE,
    CITY,
    ADDRESS,
)

# De-duplication's names for the same person: the audit's, and a few it has no field for.
GIVEN_NAME: Spellings = (*FIRST_NAME, ("given", "name"))
SURNAME: Spellings = (*LAST_NAME, ("surname",), ("family", "name"))
STREET: Spellings = (("street",),)
DEDUPE: tuple[Spellings, ...] = (
    EMAIL,
    PHONE,
    GIVEN_NAME,
    SURNAME,
    NAME,
    BIRTHDAY,
    COUNTRY,
    POSTAL_CODE,
    CITY,
    STREET,
    ADDRESS,
)


def slugs(spellings: Spellings) -> tuple[str, ...]:
    """The slugs of a field's spellings, in order, each once ("birthday", "dateofbirth", ...)."""
    return tuple(dict.fromkeys(trait_slug("".join(words)) for words in spellings))


def slugs_of(fields: Iterable[Spellings]) -> frozenset[str]:
    """Every slug of the given fields."""
    return frozenset(s for spellings in fields for s in slugs(spellings))


def written(words: Sequence[str]) -> set[str]:
    """The usual ways of writing ``words`` as a trait name: joined by nothing, "_", "-" or a
    space, in lower, camel, Pascal or upper case."""
    found = set()
    for separator, case in product(("", "_", "-", " "), ("lower", "camel", "pascal", "upper")):
        if case == "lower":
            parts = list(words)
        elif case == "upper":
            parts = [w.upper() for w in words]
        elif case == "camel":
            parts = [words[0], *(w.capitalize() for w in words[1:])]
        else:
            parts = [w.capitalize() for w in words]
        found.add(separator.join(parts))
    return found


def trait_keys(fields: Iterable[Spellings]) -> tuple[str, ...]:
    """Every usual way of writing every spelling of the given fields, sorted: the stored trait
    names to fetch when the store is asked by name."""
    return tuple(sorted(set().union(*(written(w) for spellings in fields for w in spellings))))
