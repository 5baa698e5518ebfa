"""From a profile's traits to the comparison keys of probabilistic matching (pure).

A profile's current traits (Segment's identify traits: ``firstName``/``first_name``,
``lastName``, ``name``, ``email``, ``phone``, ``birthday``, and ``address`` with ``street``,
``city``, ``postalCode``, ``country``; the same keys at the top level are read too; each under
every spelling of :mod:`consentry.quality.spellings`, the list the quality audit reads: also
``given_name``, ``surname``, ``dob``, ``zipcode``, ...) become the normalised keys of
:mod:`consentry.matching` through the ``quality`` validators (each key function remembers its
answers for the values it saw: names, streets and dates repeat):

- names: :func:`~consentry.quality.validate_name`, then folded (no accents, case, hyphens or
  apostrophes): "José-Luis O'Brien" and "jose luis obrien" are the same key; a lone ``name``
  is split into given name and surname;
- email: :func:`~consentry.quality.validate_email`, split into local part (without a ``+tag``)
  and domain;
- phone: :func:`~consentry.quality.validate_phone` in E.164, national numbers read in the
  address's country (else the workspace's default region); a number in international form
  that is one of the profile's stored phone identifiers is taken as it is;
- birth date: :func:`~consentry.quality.validate_birth_date` as ``YYYYMMDD``;
- street: the house number taken apart (``12 High Street`` -> ``12`` and ``high st``), common
  street words abbreviated; postcode: :func:`~consentry.quality.validate_postcode` in its
  country's form, without spaces; city: folded.

A value a validator refuses is a missing key (it says nothing), never an error. Nothing here
logs, prints or raises with a value in it. The module also holds what a stored run needs: the
trained model as a JSON document (parameters only: the term frequencies, which are values,
are rebuilt from the records when the model is read back) and explanations of many pairs at
once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import date
from functools import lru_cache, wraps
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from consentry.errors import Invalid
from consentry.matching import records as rf
from consentry.matching.comparisons import Comparer, FieldComparison, Level
from consentry.matching.model import (
    FieldParameters,
    LinkageModel,
    Scorer,
    TermFrequencies,
    TrainingReport,
    explain_pairs,
)
from consentry.matching.records import RecordBatch
from consentry.profiles.models import normalize_text, trait_slug
from consentry.quality import (
    Normalised,
    Problem,
    clean_text,
    dialling_region,
    fold,
    validate_birth_date,
    validate_country,
    validate_email,
    validate_name,
    validate_phone,
    validate_postcode,
)
from consentry.quality import spellings as sp

# The trait names read (``quality.spellings``, shared with the quality audit): their slugs, and
# every usual way of writing them (stored keys are compared as written: "given_name" and
# "givenName" are two keys with one slug).
TRAIT_SLUGS: frozenset[str] = sp.slugs_of(sp.DEDUPE)
TRAIT_KEYS: tuple[str, ...] = sp.trait_keys(sp.DEDUPE)

# The matching fields a profile gives (national ids are not traits).
FIELDS: tuple[str, ...] = (
    rf.GIVEN_NAME,
    rf.SURNAME,
    rf.EMAIL_LOCAL,
    rf.EMAIL_DOMAIN,
    rf.PHONE,
    rf.BIRTH_DATE,
    rf.STREET_NUMBER,
    rf.STREET,
    rf.POSTCODE,
    rf.CITY,
)

_GIVEN = sp.slugs(sp.GIVEN_NAME)
_SURNAME = sp.slugs(sp.SURNAME)
_BIRTH = sp.slugs(sp.BIRTHDAY)
_POSTCODE = sp.slugs(sp.POSTAL_CODE)
_NUMBER_FIRST = re.compile(r"^(\d+[a-z]?)(?:[\s,/-]+)(.*\D.*)$")
_NUMBER_LAST = re.compile(r"^(.*\D.*?)[\s,]+(?:no\.?\s*)?(\d+[a-z]?)$")
_STREET_WORDS = {
    "street": "st",
    "str": "str",
    "strasse": "str",
    "avenue": "ave",
    "av": "ave",
    "road": "rd",
    "boulevard": "blvd",
    "drive": "dr",
    "lane": "ln",
    "place": "pl",
    "court": "ct",
    "square": "sq",
    "terrace": "ter",
    "highway": "hwy",
    "parkway": "pkwy",
    "north": "n",
    "south": "s",
    "east": "e",
    "west": "w",
}
_STRASSE = re.compile(r"(?<=\w)(strasse|straße|str\.?)$")

Keys = dict[str, str | None]
T = TypeVar("T")
MEMO_SIZE = 1 << 16  # distinct values remembered per key function (names, streets, dates repeat)


def _memo(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` remembering its answers for hashable arguments (the key functions are pure: the
    same value gives the same key, and equal keys come back as one object, which also keeps
    the run's key columns small). An unhashable value (a list, an object) is computed each time."""
    cached = lru_cache(maxsize=MEMO_SIZE, typed=True)(fn)

    @wraps(fn)
    def call(*args: Any) -> T:
        try:
            return cached(*args)
        except TypeError:  # unhashable
            return fn(*args)

    return call


@_memo
def _text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    key = fold(str(value))
    return key or None


def _first(slugs: Mapping[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        value = slugs.get(name)
        if value is not None and not (isinstance(value, str) and not value.strip()):
            return value
    return None


def _slugged(traits: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in traits.items():
        out.setdefault(trait_slug(str(key)), value)
    return out


@_memo
def name_key(value: Any) -> str | None:
    """A given name or surname as a key; None when it is not a usable name."""
    outcome = validate_name(value)
    if not isinstance(outcome, Normalised):
        return None
    return fold(outcome.value) or None


@_memo
def split_name(value: Any) -> tuple[str | None, str | None]:
    """A full name as (given name, surname): the first word and the last."""
    key = name_key(value)
    if key is None:
        return None, None
    words = key.split(" ")
    if len(words) == 1:
        return None, words[0]
    return words[0], words[-1]


def email_keys(value: Any) -> tuple[str | None, str | None]:
    """``(local part without a +tag, domain)`` of a valid address, else ``(None, None)``."""
    outcome = validate_email(value)
    if not isinstance(outcome, Normalised):
        return None, None
    local, domain = outcome.value.rsplit("@", 1)
    local = local.split("+", 1)[0] or local
    return local, domain


_PHONE_MARKS = re.compile(r"[\s().\-/]+")


def international_digits(value: Any) -> str | None:
    """``+`` and the digits of a number written in international form with only spaces,
    dashes, dots, slashes and brackets between them ("+49 (151) 123-45678", "0049 151 ..."),
    else None (a national number, letters, an extension)."""
    if not isinstance(value, str):
        return None
    text = normalize_text(value)
    if text.startswith("00"):
        text = "+" + text[2:]
    if not text.startswith("+"):
        return None
    digits = _PHONE_MARKS.sub("", text[1:])
    return "+" + digits if digits.isascii() and digits.isdigit() else None


def phone_key(value: Any, country: str | None, known: Collection[str] = ()) -> str | None:
    """E.164 of a valid number; a national number is read in ``country``.

    ``known`` are E.164 numbers already validated (the profile's stored phone identifiers,
    normalised by identity resolution with the same numbering plans): a number written in
    international form whose digits are one of them is that number, without parsing it again
    (parsing costs about a hundred microseconds a number)."""
    if known:
        digits = international_digits(value)
        if (
            digits is not None
            and digits in known
            and not isinstance(dialling_region(country), Problem)
        ):
            return digits
    outcome = validate_phone(value, country)
    if not isinstance(outcome, Normalised):
        return None
    return outcome.value.e164


@_memo
def birth_key(value: Any, today: date) -> str | None:
    """``YYYYMMDD`` of a plausible birth date (an ambiguous or impossible one is missing)."""
    outcome = validate_birth_date(value, today=today)
    if not isinstance(outcome, Normalised):
        return None
    return outcome.value.strftime("%Y%m%d")


@_memo
def street_keys(value: Any) -> tuple[str | None, str | None]:
    """``(house number, street)``: the number before ("12 High Street") or after
    ("Hauptstraße 5") the street, street words abbreviated ("high st", "haupt str")."""
    text = _text(value)
    if text is None:
        return None, None
    number: str | None = None
    if m := _NUMBER_FIRST.match(text):
        number, text = m.group(1), m.group(2)
    elif m := _NUMBER_LAST.match(text):
        text, number = m.group(1), m.group(2)
    words = [_STREET_WORDS.get(w, w) for w in text.split(" ")]
    if words:
        last = _STRASSE.sub("", words[-1])
        if last != words[-1]:  # "hauptstrasse": the street word written onto the name
            words[-1:] = [last, "str"]
    street = " ".join(w for w in words if w) or None
    return number, street


@_memo
def postcode_key(value: Any, country: str | None) -> str | None:
    """The postcode in its country's form without spaces, lower case; without a known rule
    or country, the cleaned code if it looks like one (2 to 10 letters and digits)."""
    outcome = validate_postcode(value, country)
    if isinstance(outcome, Normalised):
        return re.sub(r"[\s-]", "", outcome.value).lower() or None
    if outcome.code in ("postcode.country_needed", "postcode.format") and isinstance(
        value, str | int
    ):
        compact = re.sub(r"[^0-9a-z]", "", fold(str(value)))
        return compact if 2 <= len(compact) <= 10 else None
    return None


@_memo
def country_code(value: Any) -> str | None:
    """ISO 3166-1 alpha-2 of a country code or name, else None."""
    outcome = validate_country(value)
    return outcome.value if isinstance(outcome, Normalised) else None


def comparison_keys(
    traits: Mapping[str, Any],
    *,
    today: date,
    default_region: str | None = None,
    phones: Collection[str] = (),
) -> Keys:
    """The matching keys of one profile's (opened) traits; a key is None when missing.
    ``phones``: the profile's stored phone identifiers in E.164 (see :func:`phone_key`)."""
    slugs = _slugged(traits)
    raw_address = slugs.get("address")
    address = _slugged(raw_address) if isinstance(raw_address, Mapping) else {}
    street_value = address.get("street") or address.get("line1") or slugs.get("street")
    if isinstance(raw_address, str) and street_value is None:
        street_value = raw_address
    country = country_code(_first(address, ("country",)) or _first(slugs, ("country",)))
    given = name_key(_first(slugs, _GIVEN))
    surname = name_key(_first(slugs, _SURNAME))
    if given is None and surname is None:
        given, surname = split_name(slugs.get("name"))
    local, domain = email_keys(slugs.get("email"))
    number, street = street_keys(street_value)
    postcode_raw = _first(address, _POSTCODE) or _first(slugs, _POSTCODE)
    city_raw = _first(address, ("city", "town")) or _first(slugs, ("city",))
    return {
        rf.GIVEN_NAME: given,
        rf.SURNAME: surname,
        rf.EMAIL_LOCAL: local,
        rf.EMAIL_DOMAIN: domain,
        rf.PHONE: phone_key(slugs.get("phone"), country or default_region, phones),
        rf.BIRTH_DATE: birth_key(_first(slugs, _BIRTH), today),
        rf.STREET_NUMBER: number,
        rf.STREET: street,
        rf.POSTCODE: None if postcode_raw is None else postcode_key(postcode_raw, country),
        rf.CITY: _text(city_raw),
    }


class KeyColumns:
    """Profiles' keys gathered column by column (memory: the keys, no dicts per record)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.columns: dict[str, list[str | None]] = {f: [] for f in FIELDS}

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, profile_id: str, keys: Mapping[str, str | None]) -> None:
        self.ids.append(profile_id)
        for name, column in self.columns.items():
            column.append(keys.get(name))

    def batch(self, only: Iterable[int] | None = None) -> RecordBatch:
        """The records (or those at positions ``only``) as a :class:`RecordBatch`."""
        if only is None:
            return RecordBatch.from_columns(self.ids, self.columns)
        picked = list(only)
        return RecordBatch.from_columns(
            [self.ids[i] for i in picked],
            {name: [col[i] for i in picked] for name, col in self.columns.items()},
        )


def display_summary(traits: Mapping[str, Any]) -> dict[str, str | None]:
    """What a reviewer sees of a profile: name, email, phone, birthday and address, as text
    (cleaned, not folded)."""
    slugs = _slugged(traits)
    raw_address = slugs.get("address")
    address = _slugged(raw_address) if isinstance(raw_address, Mapping) else {}

    def shown(value: Any) -> str | None:
        if value is None or isinstance(value, Mapping | list):
            return None
        text = clean_text(str(value))
        return text or None

    given, surname = shown(_first(slugs, _GIVEN)), shown(_first(slugs, _SURNAME))
    name = " ".join(p for p in (given, surname) if p) or shown(slugs.get("name"))
    street = address.get("street") or slugs.get("street")
    if isinstance(raw_address, str) and street is None:
        street = raw_address
    return {
        "name": name,
        "email": shown(slugs.get("email")),
        "phone": shown(slugs.get("phone")),
        "birthday": shown(_first(slugs, _BIRTH)),
        "street": shown(street),
        "postcode": shown(_first(address, _POSTCODE) or _first(slugs, _POSTCODE)),
        "city": shown(_first(address, ("city", "town")) or _first(slugs, ("city",))),
        "country": shown(_first(address, ("country",)) or _first(slugs, ("country",))),
    }


# --- the stored model -------------------------------------------------------------------------


def _level_document(level: Level) -> dict[str, Any]:
    return {
        "label": level.label,
        "jaro_winkler": level.jaro_winkler,
        "damerau_levenshtein": level.damerau_levenshtein,
        "phonetic": level.phonetic,
    }


def model_document(model: LinkageModel) -> dict[str, Any]:
    """The trained parameters as JSON: comparisons, m, u, the prior and how training went.
    No term frequencies: they are the records' values."""
    training = model.training
    return {
        "version": 1,
        "prior_weight": model.prior_weight,
        "swapped_names": list(model.swapped_names) if model.swapped_names else None,
        "fields": [
            {
                "field": p.comparison.field,
                "levels": [_level_document(level) for level in p.comparison.levels],
                "term_frequency": p.comparison.term_frequency,
                "phonetic": p.comparison.phonetic,
                "parts": list(p.comparison.parts),
                "separator": p.comparison.separator,
                "implied_by": p.comparison.implied_by,
                "m": list(p.m),
                "u": list(p.u),
            }
            for p in model.fields
        ],
        "training": None
        if training is None
        else {
            "em_iterations": training.em_iterations,
            "converged": training.converged,
            "em_pairs": training.em_pairs,
            "patterns": training.patterns,
            "candidate_pairs": training.candidate_pairs,
            "total_pairs": training.total_pairs,
            "u_sample_pairs": training.u_sample_pairs,
            "expected_matches": training.expected_matches,
        },
    }


def model_from_document(document: Mapping[str, Any], records: RecordBatch) -> LinkageModel:
    """The model of :func:`model_document`, its term frequencies counted on ``records``."""
    try:
        fields = []
        for f in document["fields"]:
            comparison = FieldComparison(
                field=str(f["field"]),
                levels=tuple(
                    Level(
                        label=str(lv["label"]),
                        jaro_winkler=lv["jaro_winkler"],
                        damerau_levenshtein=lv["damerau_levenshtein"],
                        phonetic=bool(lv["phonetic"]),
                    )
                    for lv in f["levels"]
                ),
                term_frequency=bool(f["term_frequency"]),
                phonetic=f["phonetic"],
                parts=tuple(f["parts"]),
                separator=str(f["separator"]),
                implied_by=f["implied_by"],
            )
            m, u = tuple(float(x) for x in f["m"]), tuple(float(x) for x in f["u"])
            if len(m) != comparison.n_levels or len(u) != comparison.n_levels:
                raise ValueError("levels")
            fields.append(FieldParameters(comparison, m, u))
        swapped = document.get("swapped_names")
        swapped_names = (str(swapped[0]), str(swapped[1])) if swapped else None
        prior = float(document["prior_weight"])
        raw = document.get("training")
        training = TrainingReport(**raw) if isinstance(raw, Mapping) else None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise Invalid("the stored model cannot be read; run a batch dedupe again") from exc
    comparisons = tuple(p.comparison for p in fields)
    comparer = Comparer(
        records, comparisons, swapped_names=swapped_names, workers=1, keep_absent=True
    )
    frequencies = {
        spec.field: TermFrequencies.of(column)
        for spec, column in zip(comparer.comparisons, comparer.columns, strict=True)
        if spec.term_frequency
    }
    return LinkageModel(tuple(fields), prior, swapped_names, frequencies, training)


# --- explanations -----------------------------------------------------------------------------


NO_AGREEMENT = frozenset({"else", "null"})
PERSONAL = frozenset({rf.GIVEN_NAME, rf.SURNAME, rf.EMAIL_LOCAL, rf.PHONE, rf.BIRTH_DATE})


def _agreeing(explanation: Mapping[str, Any]) -> set[str]:
    return {f["field"] for f in explanation.get("fields", ()) if f.get("level") not in NO_AGREEMENT}


def mentions_the_person(explanation: Mapping[str, Any]) -> bool:
    """Whether a pair agrees on at least one personal field (a name, the email's local part,
    the phone, the birth date): without one, it is two people at one place, not a candidate."""
    return bool(_agreeing(explanation) & PERSONAL)


def names_the_person(explanation: Mapping[str, Any]) -> bool:
    """Whether a pair agrees on enough to merge it without a person looking: the phone, the
    email's local part, both names (either order), or the birth date with one of the names.
    A shared address with a surname (family, flatmates) is never enough, whatever weight the
    trained model gives it: on data with few duplicates EM can learn "same household" as its
    match class. Such pairs go to review."""
    agree = _agreeing(explanation)
    names = {rf.GIVEN_NAME, rf.SURNAME}
    return bool(
        agree & {rf.PHONE, rf.EMAIL_LOCAL}
        or names <= agree
        or (rf.BIRTH_DATE in agree and agree & names)
    )


def explanations(
    scorer: Scorer, left: npt.NDArray[np.int32], right: npt.NDArray[np.int32]
) -> list[dict[str, Any]]:
    """Why each pair ``(left[k], right[k])`` of the scorer's batch scored what it did, as JSON
    (:func:`consentry.matching.model.explain_pairs`): the prior, and per field its level and
    weight (log2 Bayes factor, term frequency included). Field names, level labels and numbers
    only, never a value."""
    return [
        {
            "prior_weight": round(e.prior_weight, 4),
            "match_weight": round(e.match_weight, 4),
            "swapped_names": e.swapped_names,
            "fields": [
                {"field": f.field, "level": f.level, "weight": round(f.weight, 4)} for f in e.fields
            ],
        }
        for e in explain_pairs(scorer, left, right)
    ]
