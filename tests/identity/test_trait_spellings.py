"""One list of trait spellings for the quality audit and de-duplication (``quality.spellings``):
the audit reads what it read before, de-duplication reads every spelling the audit reads (and a
few more), in the store too (stored names are found as the workspace spells them); and the
phone fast path of ``dedupe_records.phone_key`` gives the key parsing gives."""

from __future__ import annotations

from datetime import date

import phonenumbers
import pytest

from consentry.config import IdentitySettings
from consentry.matching import records as rf
from consentry.platform.db import Database, utcnow
from consentry.profiles import dedupe_records as dr
from consentry.profiles import dedupe_service as dedupe
from consentry.profiles import service as profiles
from consentry.profiles.bulk import canonical_map_many
from consentry.profiles.models import is_personal_trait, normalize_phone, trait_slug
from consentry.quality import default_fields, spellings
from consentry.quality import service as audit_service
from tests.identity.test_dedupe_service import profile_of_user
from tests.support.segment import identify
from tests.support.store import send

TODAY = date(2026, 1, 15)
CAP = IdentitySettings().cap


def test_the_audit_reads_the_fields_it_read_before() -> None:
    keys = {f.name: f.keys for f in default_fields()}
    assert keys == {
        "email": ("email",),
        "phone": ("phone",),
        "first_name": ("firstname",),
        "last_name": ("lastname",),
        "name": ("name",),
        "birthday": ("birthday", "dateofbirth", "birthdate", "dob"),
        "country": ("country",),
        "postal_code": ("postalcode", "zip", "zipcode", "postcode"),
        "city": ("city",),
    }


def test_the_audit_fetches_the_same_stored_names_as_before() -> None:
    words = (
        *(("email",), ("e", "mail"), ("phone",), ("first", "name"), ("last", "name")),
        *(("name",), ("birthday",), ("birth", "day"), ("date", "of", "birth")),
        *(("birth", "date"), ("dob",), ("country",), ("postal", "code"), ("zip",)),
        *(("zip", "code"), ("postcode",), ("post", "code"), ("city",), ("address",)),
    )
    assert audit_service.TRAIT_WORDS == words
    assert len(audit_service.TRAIT_KEYS) == len(set(audit_service.TRAIT_KEYS))
    assert {"zipcode", "ZipCode", "zip_code", "DOB", "date_of_birth", "e-mail"} <= set(
        audit_service.TRAIT_KEYS
    )
    assert "given_name" not in audit_service.TRAIT_KEYS  # the audit has no such field


def test_dedupe_reads_every_spelling_the_audit_reads() -> None:
    audit_slugs = {k for f in default_fields() for k in f.keys} | {"address"}
    assert audit_slugs <= dr.TRAIT_SLUGS
    assert {trait_slug(k) for k in audit_service.TRAIT_KEYS} <= dr.TRAIT_SLUGS
    assert set(audit_service.TRAIT_KEYS) <= set(dr.TRAIT_KEYS)
    assert {"givenname", "surname", "familyname", "street"} <= dr.TRAIT_SLUGS


def test_slugs_keep_the_order_of_preference() -> None:
    assert spellings.slugs(spellings.BIRTHDAY) == ("birthday", "dateofbirth", "birthdate", "dob")
    assert spellings.slugs(spellings.GIVEN_NAME) == ("firstname", "givenname")
    assert {trait_slug(k) for k in spellings.written(("zip", "code"))} == {"zipcode"}


CRM = {
    "given_name": "Zoë",
    "family_name": "Müller-Lüdenscheidt",
    "dob": "1984-03-09",
    "ZipCode": "10115",
    "City": "Berlin",
    "Street": "Invalidenstraße 12",
    "E-Mail": "zoe+news@posteo.de",
}
SEGMENT = {
    "firstName": "Zoe",
    "lastName": "Muller Ludenscheidt",
    "birthday": "1984-03-09",
    "address": {"postalCode": "10115", "city": "berlin", "street": "Invalidenstrasse 12"},
    "email": "zoe@posteo.de",
}


def test_keys_from_the_other_spellings_equal_the_segment_ones() -> None:
    crm = dr.comparison_keys(CRM, today=TODAY)
    segment = dr.comparison_keys(SEGMENT, today=TODAY)
    for field in (rf.GIVEN_NAME, rf.SURNAME, rf.BIRTH_DATE, rf.POSTCODE, rf.CITY, rf.STREET):
        assert crm[field] is not None
        assert crm[field] == segment[field], field
    assert crm[rf.EMAIL_LOCAL] == segment[rf.EMAIL_LOCAL] == "zoe"
    assert crm[rf.STREET_NUMBER] == segment[rf.STREET_NUMBER] == "12"


def test_the_store_run_reads_traits_as_the_workspace_spells_them(
    db: Database, workspace: str
) -> None:
    send(
        db,
        workspace,
        identify(userId="crm-1", traits=CRM),
        identify(userId="web-1", traits=SEGMENT),
    )
    with db.read() as session:
        names = dedupe.stored_trait_keys(session=session, workspace_id=workspace)
        keys = dedupe.read_keys(
            session=session, workspace_id=workspace, batch_size=100, default_region="US"
        )
    assert {"given_name", "family_name", "dob", "ZipCode", "City", "firstName"} <= set(names)
    assert len(keys) == 2
    for field in (rf.GIVEN_NAME, rf.SURNAME, rf.BIRTH_DATE, rf.POSTCODE, rf.CITY):
        first, second = keys.columns[field]
        assert first is not None and first == second, field


# --- the phone fast path ----------------------------------------------------------------------

REGIONS = ("US", "GB", "DE", "FR", "IT", "ES", "NL", "PL", "BR", "AU", "JP", "IN", "CH", "AT")


def _writings(region: str) -> list[str]:
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    fixed = phonenumbers.example_number(region)
    out = []
    for number in (example, fixed):
        if number is None:
            continue
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        international = phonenumbers.format_number(
            number, phonenumbers.PhoneNumberFormat.INTERNATIONAL
        )
        national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        out += [e164, international, "00" + e164[1:], f" {international} ", national]
        out += [e164[:-1], e164 + "99", international.replace(" ", "-")]
    return out


@pytest.mark.parametrize("region", REGIONS)
def test_a_known_phone_gives_the_key_parsing_gives(region: str) -> None:
    for written in _writings(region):
        for country in (region, "US", None, "AQ", "XX"):
            known = {p for p in (normalize_phone(written, region),) if p}
            assert dr.phone_key(written, country, known) == dr.phone_key(written, country), (
                written,
                country,
            )


def test_international_digits() -> None:
    assert dr.international_digits("+49 (151) 123-456.78") == "+4915112345678"
    assert dr.international_digits("0049 151 12345678") == "+4915112345678"
    assert dr.international_digits("+1 800 FLOWERS") is None
    assert dr.international_digits("+1 415 555 0100 ext 12") is None
    assert dr.international_digits("0151 12345678") is None
    assert dr.international_digits("+٤٩١٥١") is None  # digits, but not ASCII ones
    assert dr.international_digits(4915112345678) is None


def test_a_known_number_is_used_only_when_the_digits_are_it() -> None:
    known = {"+4915112345678"}
    assert dr.phone_key("+49 151 12345678", "DE", known) == "+4915112345678"
    # not the profile's identifier: parsed as before
    assert dr.phone_key("+49 151 12345679", "DE", known) == dr.phone_key("+49 151 12345679", "DE")
    # a region the validator refuses refuses the number, known or not
    assert dr.phone_key("+49 151 12345678", "XX", known) is None


# --- the run's merges keep what the store says in step ----------------------------------------


def _report(run_id: str, workspace: str) -> dedupe.RunReport:
    return dedupe.RunReport(
        id=run_id,
        workspace_id=workspace,
        mode="batch",
        dry_run=False,
        started_at=utcnow(),
        auto_merge_threshold=0.95,
        review_threshold=0.5,
    )


def test_a_block_an_unmerge_left_holds_after_the_runs_own_merges(
    db: Database, workspace: str
) -> None:
    for user in ("u-a", "u-b", "u-c"):  # anonymous: no cap stands in the way
        send(db, workspace, identify(anonymousId=user, traits={"plan": "free"}))
    a, b, c = (profile_of_user(db, workspace, u) for u in ("u-a", "u-b", "u-c"))
    with db.write() as session:  # b and c were joined by hand, then separated: blocked
        record = profiles.merge_profiles(
            session=session, workspace_id=workspace, first=b, second=c, actor="test", cap=CAP
        )
        profiles.unmerge(session=session, workspace_id=workspace, merge_id=record.id, actor="t")
    report = _report("run-1", workspace)
    pairs = [
        # a (the oldest) wins, b's block from c is now a's: neither pair with c merges
        dedupe.ScoredPair(a, b, 12.0, 0.9998, True, {"fields": []}),
        dedupe.ScoredPair(c, a, 11.0, 0.9995, True, {"fields": []}),
        dedupe.ScoredPair(b, c, 10.0, 0.9990, True, {"fields": []}),
    ]
    with db.write() as session:
        dedupe._decide(session, workspace, pairs, report, cap=CAP, apply=True, progress=None)
    assert report.auto_merged == 1
    assert report.skipped == {"unmerged": 2}
    with db.read() as session:
        canonical = canonical_map_many(
            session=session, workspace_id=workspace, profile_ids=[a, b, c]
        )
    assert canonical[a] == canonical[b] != canonical[c]


def test_the_caps_count_the_identifiers_the_runs_merges_joined(
    db: Database, workspace: str
) -> None:
    # two userIds in one profile break the default cap of one: a+b merge (b has none), then
    # c (a userId of its own) is refused, as merge_pair refuses it
    send(db, workspace, identify(userId="u-a", traits={"plan": "free"}))
    send(db, workspace, identify(anonymousId="anon-b", traits={"plan": "free"}))
    send(db, workspace, identify(userId="u-c", traits={"plan": "free"}))
    a, c = profile_of_user(db, workspace, "u-a"), profile_of_user(db, workspace, "u-c")
    b = profile_of_user(db, workspace, "anon-b")
    report = _report("run-2", workspace)
    pairs = [
        dedupe.ScoredPair(a, b, 12.0, 0.9998, True, {"fields": []}),
        dedupe.ScoredPair(b, c, 11.0, 0.9995, True, {"fields": []}),
    ]
    with db.write() as session:
        dedupe._decide(session, workspace, pairs, report, cap=CAP, apply=True, progress=None)
    assert (report.auto_merged, report.refused, report.queued) == (1, 1, 1)


def test_every_spelling_of_a_direct_identifier_is_stored_sealed() -> None:
    """A name, email, phone, birth date, postcode or street under any spelling the audit or
    de-duplication reads is a personal trait (sealed at rest, erased with the key); country
    and city stay clear for segments and analysis."""
    direct = (
        spellings.EMAIL,
        spellings.PHONE,
        spellings.GIVEN_NAME,
        spellings.SURNAME,
        spellings.NAME,
        spellings.BIRTHDAY,
        spellings.POSTAL_CODE,
        spellings.STREET,
        spellings.ADDRESS,
    )
    for field in direct:
        for words in field:
            for name in spellings.written(words):
                assert is_personal_trait(name), name
    assert not is_personal_trait("country") and not is_personal_trait("city")
