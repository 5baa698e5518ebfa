"""The data-quality audit: one pass over profile records, in bounded memory.

The caller streams records (from a database cursor, a page at a time, or a generator); the audit
keeps only counters and, per problem code, at most ``max_examples`` record ids. It never keeps a
value: the report names what is wrong and where, not what the data says. With
``find_duplicates`` it also keeps a 64-bit digest of each record's comparison keys and its id
(``quality.duplicates``), to find the records that share one. Personal traits are
stored sealed (``platform.vault``): the caller opens them before they reach the audit; a value
still sealed is counted as ``value.sealed`` rather than misjudged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, NotRequired, TypedDict

from consentry.profiles.models import trait_slug
from consentry.quality import spellings as sp
from consentry.quality.countries import validate_country
from consentry.quality.dates import MIN_AGE, validate_birth_date
from consentry.quality.duplicates import DEFAULT_MAX_GROUP, DuplicateFinder
from consentry.quality.emails import validate_email
from consentry.quality.phones import validate_phone
from consentry.quality.postcodes import validate_postcode
from consentry.quality.problems import Normalised, Outcome, Problem
from consentry.quality.spellings import slugs
from consentry.quality.text import validate_name, validate_text

SEALED_PREFIX = "pv1:"  # platform.vault.TOKEN_PREFIX, not imported: the audit stays pure
SEALED = Problem("value.sealed", "The value is still sealed: it was not opened before the audit.")
DEFAULT_STALE_AFTER_DAYS = 365
DEFAULT_MAX_EXAMPLES = 5


class AuditRecord(TypedDict):
    """One profile as the audit reads it."""

    id: str | int
    traits: Mapping[str, Any]  # opened (not sealed) and as stored
    last_seen: NotRequired[datetime | str | None]
    # whether the record is stale, when the caller judged it (its store knows the last activity
    # of a unified profile better than one timestamp); else judged from last_seen
    stale: NotRequired[bool | None]
    duplicate_candidates: NotRequired[int | None]  # from the matching engine, when it ran


@dataclass(frozen=True, slots=True)
class RecordView:
    """What a field check may know of its record besides its own value."""

    traits: Mapping[str, Any]
    country: str | None  # the record's country as ISO alpha-2, when it has a valid one
    today: date


Check = Callable[[Any, RecordView], Outcome[Any]]


@dataclass(frozen=True, slots=True)
class FieldCheck:
    """A field of the report: where its value is found, and how it is judged.

    ``keys`` are trait slugs (:func:`consentry.profiles.models.trait_slug`: "postal_code",
    "postalCode" and "PostalCode" are one key); the first found wins, top-level traits before
    ``traits["address"]`` when ``in_address``.
    """

    name: str
    keys: tuple[str, ...]
    check: Check
    in_address: bool = False


def default_fields(
    *, min_age: int = MIN_AGE, default_country: str | None = None, day_first: bool | None = None
) -> tuple[FieldCheck, ...]:
    """The Segment spec's identify traits that carry data quality, under the spellings of
    :mod:`consentry.quality.spellings` (shared with de-duplication). ``day_first`` reads birth
    dates such as 05/06/1990 (None counts them as ``date.ambiguous``)."""

    def country_of(view: RecordView) -> str | None:
        return view.country or default_country

    return (
        FieldCheck("email", slugs(sp.EMAIL), lambda v, _: validate_email(v)),
        FieldCheck("phone", slugs(sp.PHONE), lambda v, r: validate_phone(v, country_of(r))),
        FieldCheck("first_name", slugs(sp.FIRST_NAME), lambda v, _: validate_name(v)),
        FieldCheck("last_name", slugs(sp.LAST_NAME), lambda v, _: validate_name(v)),
        FieldCheck("name", slugs(sp.NAME), lambda v, _: validate_name(v)),
        FieldCheck(
            "birthday",
            slugs(sp.BIRTHDAY),
            lambda v, r: validate_birth_date(
                v, today=r.today, min_age=min_age, day_first=day_first
            ),
        ),
        FieldCheck("country", slugs(sp.COUNTRY), lambda v, _: validate_country(v), in_address=True),
        FieldCheck(
            "postal_code",
            slugs(sp.POSTAL_CODE),
            lambda v, r: validate_postcode(v, country_of(r)),
            in_address=True,
        ),
        FieldCheck(
            "city", slugs(sp.CITY), lambda v, _: validate_text(v, max_length=200), in_address=True
        ),
    )


@dataclass(frozen=True, slots=True)
class CodeCount:
    """How many records have one problem in one field, and a few of their ids."""

    count: int
    examples: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "examples": list(self.examples)}


@dataclass(frozen=True, slots=True)
class FieldReport:
    present: int
    share: float  # present / records
    valid: int  # present and without an error (warnings allowed)
    invalid: dict[str, CodeCount]  # errors, by problem code
    warnings: dict[str, CodeCount]

    @property
    def invalid_total(self) -> int:
        return sum(c.count for c in self.invalid.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "present": self.present,
            "share": round(self.share, 6),
            "valid": self.valid,
            "invalid_total": self.invalid_total,
            "invalid": {code: c.to_dict() for code, c in sorted(self.invalid.items())},
            "warnings": {code: c.to_dict() for code, c in sorted(self.warnings.items())},
        }


@dataclass(frozen=True, slots=True)
class StaleReport:
    after_days: int
    stale: int  # last seen more than after_days before as_of
    unknown: int  # no (readable) last_seen
    examples: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "after_days": self.after_days,
            "stale": self.stale,
            "unknown_last_seen": self.unknown,
            "examples": list(self.examples),
        }


@dataclass(frozen=True, slots=True)
class DuplicateReport:
    """From the counts the caller passes per record (None when no record carried one), or
    found by the audit itself (``find_duplicates``: then ``pairs`` and ``crowded_keys`` too)."""

    likely_duplicates: int | None  # records with at least one duplicate candidate
    candidates: int | None  # candidates summed over records
    examples: tuple[str, ...]
    pairs: int | None = None  # distinct candidate pairs, when the audit found them
    crowded_keys: int | None = None  # keys shared by too many records to mean a duplicate

    def to_dict(self) -> dict[str, Any]:
        found = {
            "likely_duplicates": self.likely_duplicates,
            "candidates": self.candidates,
            "examples": list(self.examples),
        }
        if self.pairs is not None:
            found.update(pairs=self.pairs, crowded_keys=self.crowded_keys)
        return found


@dataclass(frozen=True, slots=True)
class AuditReport:
    as_of: datetime
    records: int
    records_with_errors: int  # at least one field in error
    records_with_warnings: int  # at least one warning and no error
    fields: dict[str, FieldReport]
    stale: StaleReport
    duplicates: DuplicateReport

    @property
    def records_clean(self) -> int:
        return self.records - self.records_with_errors - self.records_with_warnings

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (ISO 8601 time, plain dicts and lists)."""
        return {
            "as_of": self.as_of.isoformat(),
            "totals": {
                "records": self.records,
                "records_clean": self.records_clean,
                "records_with_errors": self.records_with_errors,
                "records_with_warnings": self.records_with_warnings,
                "stale": self.stale.stale,
                "likely_duplicates": self.duplicates.likely_duplicates,
            },
            "fields": {name: f.to_dict() for name, f in self.fields.items()},
            "stale": self.stale.to_dict(),
            "duplicates": self.duplicates.to_dict(),
        }


@dataclass(slots=True)
class _Tally:
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, record_id: str, limit: int) -> None:
        self.count += 1
        if len(self.examples) < limit:
            self.examples.append(record_id)

    def freeze(self) -> CodeCount:
        return CodeCount(self.count, tuple(self.examples))


@dataclass(slots=True)
class _FieldTally:
    present: int = 0
    valid: int = 0
    invalid: dict[str, _Tally] = field(default_factory=dict)
    warnings: dict[str, _Tally] = field(default_factory=dict)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _last_seen(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, str):
        try:
            return _aware(datetime.fromisoformat(value.strip()))
        except ValueError:
            return None
    return None


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


_slug = lru_cache(maxsize=4096)(trait_slug)  # trait names repeat in every record


class Auditor:
    """The audit's accumulators: feed records with :meth:`add` (in any number of chunks), then
    read :meth:`report`. Memory is bounded by fields x problem codes x ``max_examples``; with
    ``find_duplicates``, by about 100 bytes per record more (its id and its keys' digests)."""

    def __init__(
        self,
        *,
        as_of: datetime,
        stale_after_days: int = DEFAULT_STALE_AFTER_DAYS,
        max_examples: int = DEFAULT_MAX_EXAMPLES,
        min_age: int = MIN_AGE,
        default_country: str | None = None,
        fields: Iterable[FieldCheck] | None = None,
        find_duplicates: bool = False,
        max_duplicate_group: int = DEFAULT_MAX_GROUP,
    ) -> None:
        if stale_after_days < 0 or max_examples < 0:
            raise ValueError("stale_after_days and max_examples must not be negative")
        self.as_of = _aware(as_of)
        self.today = self.as_of.date()
        self.stale_after_days = stale_after_days
        self._stale_before = self.as_of - timedelta(days=stale_after_days)
        self.max_examples = max_examples
        self.default_country = default_country
        self.fields = tuple(
            fields
            if fields is not None
            else default_fields(min_age=min_age, default_country=default_country)
        )
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError("field names must be unique")
        self._tallies = {f.name: _FieldTally() for f in self.fields}
        self.records = 0
        self._with_errors = 0
        self._with_warnings = 0
        self._stale = _Tally()
        self._unknown_seen = 0
        self._dupes = _Tally()
        self._candidates = 0
        self._dupes_reported = False
        # with find_duplicates, the records' own duplicate_candidates are not read
        self._finder = DuplicateFinder(max_group=max_duplicate_group) if find_duplicates else None
        self._ids: list[str] = []

    def _country(self, slugs: Mapping[str, Any], address: Mapping[str, Any]) -> str | None:
        raw = slugs.get("country")
        if not _present(raw):
            raw = address.get("country")
        if not _present(raw):
            return None
        outcome = validate_country(raw)
        return outcome.value if isinstance(outcome, Normalised) else None

    def add(self, record: Mapping[str, Any]) -> None:
        """Count one record."""
        record_id = str(record.get("id"))
        limit = self.max_examples
        raw_traits = record.get("traits")
        traits: Mapping[str, Any] = raw_traits if isinstance(raw_traits, Mapping) else {}
        slugs = {_slug(str(k)): v for k, v in traits.items()}
        raw_address = slugs.get("address")
        address: Mapping[str, Any] = (
            {_slug(str(k)): v for k, v in raw_address.items()}
            if isinstance(raw_address, Mapping)
            else {}
        )
        view = RecordView(traits, self._country(slugs, address), self.today)
        has_error = has_warning = False
        normalised: dict[str, Any] = {}
        for check in self.fields:
            value = self._find(check, slugs, address)
            if value is None:
                continue
            tally = self._tallies[check.name]
            tally.present += 1
            if isinstance(value, str) and value.startswith(SEALED_PREFIX):
                outcome: Outcome[Any] = SEALED
            else:
                outcome = check.check(value, view)
            if isinstance(outcome, Problem):
                has_error = True
                tally.invalid.setdefault(outcome.code, _Tally()).add(record_id, limit)
                continue
            tally.valid += 1
            normalised[check.name] = outcome.value
            for w in outcome.warnings:
                has_warning = True
                tally.warnings.setdefault(w.code, _Tally()).add(record_id, limit)
        self.records += 1
        if has_error:
            self._with_errors += 1
        elif has_warning:
            self._with_warnings += 1
        self._count_seen(record, record_id)
        if self._finder is not None:
            self._finder.add(normalised)
            self._ids.append(record_id)
        else:
            self._count_duplicates(record, record_id)

    @staticmethod
    def _find(check: FieldCheck, slugs: Mapping[str, Any], address: Mapping[str, Any]) -> Any:
        for key in check.keys:
            if _present(value := slugs.get(key)):
                return value
        if check.in_address:
            for key in check.keys:
                if _present(value := address.get(key)):
                    return value
        return None

    def _count_seen(self, record: Mapping[str, Any], record_id: str) -> None:
        stale = record.get("stale")
        if isinstance(stale, bool):
            if stale:
                self._stale.add(record_id, self.max_examples)
            return
        seen = _last_seen(record.get("last_seen"))
        if seen is None:
            self._unknown_seen += 1
        elif seen < self._stale_before:
            self._stale.add(record_id, self.max_examples)

    def _count_duplicates(self, record: Mapping[str, Any], record_id: str) -> None:
        candidates = record.get("duplicate_candidates")
        if isinstance(candidates, bool) or not isinstance(candidates, int):
            return
        self._dupes_reported = True
        if candidates > 0:
            self._candidates += candidates
            self._dupes.add(record_id, self.max_examples)

    def add_many(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            self.add(record)

    def report(self) -> AuditReport:
        """The report of every record counted so far (the auditor can go on counting)."""
        total = self.records
        fields = {
            name: FieldReport(
                present=t.present,
                share=t.present / total if total else 0.0,
                valid=t.valid,
                invalid={code: c.freeze() for code, c in t.invalid.items()},
                warnings={code: c.freeze() for code, c in t.warnings.items()},
            )
            for name, t in self._tallies.items()
        }
        reported = self._dupes_reported
        duplicates = DuplicateReport(
            self._dupes.count if reported else None,
            self._candidates if reported else None,
            tuple(self._dupes.examples),
        )
        if self._finder is not None:
            found = self._finder.candidates()
            examples: list[str] = []
            for index, _ in found.nonzero():
                if len(examples) >= self.max_examples:
                    break
                examples.append(self._ids[index])
            duplicates = DuplicateReport(
                int((found.counts > 0).sum()),
                int(found.counts.sum()),
                tuple(examples),
                found.pairs,
                found.crowded_keys,
            )
        return AuditReport(
            as_of=self.as_of,
            records=total,
            records_with_errors=self._with_errors,
            records_with_warnings=self._with_warnings,
            fields=fields,
            stale=StaleReport(
                self.stale_after_days,
                self._stale.count,
                self._unknown_seen,
                tuple(self._stale.examples),
            ),
            duplicates=duplicates,
        )


def audit(
    records: Iterable[Mapping[str, Any]],
    *,
    as_of: datetime,
    stale_after_days: int = DEFAULT_STALE_AFTER_DAYS,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    min_age: int = MIN_AGE,
    default_country: str | None = None,
    fields: Iterable[FieldCheck] | None = None,
    find_duplicates: bool = False,
) -> AuditReport:
    """Audit every record of an iterable (consumed once, never held) as of ``as_of``."""
    auditor = Auditor(
        as_of=as_of,
        stale_after_days=stale_after_days,
        max_examples=max_examples,
        min_age=min_age,
        default_country=default_country,
        fields=fields,
        find_duplicates=find_duplicates,
    )
    auditor.add_many(records)
    return auditor.report()
