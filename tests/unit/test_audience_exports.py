"""The pure rules of audience exports: customer-match normalisation and hashing per platform,
k-anonymous summaries, fields, files."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import string
import unicodedata

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentry.audiences import exports
from consentry.audiences.exports import (
    Contact,
    Summary,
    contact_from_traits,
    normalize_country,
    normalize_email,
    normalize_name,
    normalize_phone_for,
    normalize_postcode,
    partner_columns,
    partner_row,
    sha256_hex,
)


def digest(text: str) -> str:
    """An independent SHA-256 of known text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- values the platforms publish -----------------------------------------------------------------


def test_email_hashes_match_the_published_examples() -> None:
    # Snap Conversions API parameters: Person@Example.com -> person@example.com -> 542d24...
    assert normalize_email("  Person@Example.com ") == "person@example.com"
    assert sha256_hex(normalize_email("Person@Example.com") or "") == (
        "542d240129883c019e106e3b1b2d3f3cb3537c43c425364de8e951d5a3083345"
    )
    # TikTok customer file: janedoe@gmail.com -> d6117306... (dots of gmail kept)
    assert sha256_hex(normalize_email("JaneDoe@Gmail.com") or "") == (
        "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69"
    )


def test_meta_phone_is_digits_with_country_code_as_published() -> None:
    # Snap's (and Meta's) phone form: +44 844 412 4653 -> 448444124653 -> dc008fda46e2...
    value = normalize_phone_for("+44 844 412 4653", "meta", country=None, default_region="US")
    assert value == "448444124653"
    assert sha256_hex(value).startswith("dc008fda46e2e64002cf2f82a4906236282d4")


def test_google_phone_is_e164_with_plus() -> None:
    # Google's template row: 1-800-888-8888 in the US
    assert (
        normalize_phone_for("1-800-888-8888", "google", country="US", default_region="DE")
        == "+18008888888"
    )
    assert (
        normalize_phone_for("030 1234567", "generic", country="DE", default_region="US")
        == "+49301234567"
    )
    assert normalize_phone_for("not a phone", "google", country="US", default_region="US") is None


# --- each platform's row --------------------------------------------------------------------------

PERSON = Contact(
    email=" Jane.Doe+shop@GMAIL.com ",
    phone="(415) 555-0123",
    first_name="  Mary-Ann  ",
    last_name="O'Neil Smith",
    country="US",
    postcode="94016-1234",
)


def test_google_layout_hashes_contact_and_keeps_country_and_zip_clear() -> None:
    fields = list(exports.IDENTITY_FIELDS)
    row = partner_row(PERSON, fields, "google", "US")
    assert partner_columns(fields, "google") == [
        "Email",
        "Phone",
        "First Name",
        "Last Name",
        "Country",
        "Zip",
    ]
    assert row == [
        digest("jane.doe+shop@gmail.com"),  # Customer Match keeps gmail dots and plus tags
        digest("+14155550123"),
        digest("mary-ann"),
        digest("o'neil smith"),
        "US",
        "94016",
    ]


def test_meta_layout_hashes_everything_in_meta_form() -> None:
    fields = list(exports.IDENTITY_FIELDS)
    row = partner_row(PERSON, fields, "meta", "US")
    assert partner_columns(fields, "meta") == ["EMAIL", "PHONE", "FN", "LN", "COUNTRY", "ZIP"]
    assert row == [
        digest("jane.doe+shop@gmail.com"),
        digest("14155550123"),
        digest("maryann"),
        digest("oneilsmith"),
        digest("us"),
        digest("94016"),
    ]


def test_generic_layout_keeps_only_the_country_clear() -> None:
    uk = Contact(email="a@b.co.uk", phone="07911 123456", country="GB", postcode="sw1a1aa")
    fields = ["email", "phone", "country", "postcode"]
    row = partner_row(uk, fields, "generic", "US")
    assert row == [digest("a@b.co.uk"), digest("+447911123456"), "GB", digest("SW1A 1AA")]


def test_postcodes_per_platform() -> None:
    assert normalize_postcode("sw1a1aa", "google", country="GB") == "SW1A 1AA"
    assert normalize_postcode("SW1A 1AA", "meta", country="GB") == "sw1a1"
    assert normalize_postcode("94016-1234", "meta", country="US") == "94016"
    assert normalize_postcode("1011 ab", "meta", country="NL") == "1011ab"
    assert normalize_postcode(True, "meta", country="US") is None
    assert normalize_postcode("<script>", "google", country=None) is None


def test_a_row_without_a_contact_identifier_is_not_matchable() -> None:
    only_place = Contact(country="DE", postcode="10115")
    assert partner_row(only_place, ["email", "country", "postcode"], "google", "US") is None
    bad_email = Contact(email="not-an-email", country="DE")
    assert partner_row(bad_email, ["email", "country"], "meta", "US") is None


def test_contact_is_read_from_usual_trait_spellings() -> None:
    contact = contact_from_traits(
        {
            "email": "x@y.de",
            "firstName": "Ana",
            "LAST_NAME": "Ruiz",
            "address": {"country": "Germany", "postalCode": "10115"},
            "mobile": "+4915112345678",
        }
    )
    assert (contact.first_name, contact.last_name, contact.country) == ("Ana", "Ruiz", "DE")
    assert (contact.postcode, contact.phone, contact.email) == (
        "10115",
        "+4915112345678",
        "x@y.de",
    )
    named = contact_from_traits({"name": "Jean Paul Sartre", "country": "fr"})
    assert (named.first_name, named.last_name, named.country) == ("Jean", "Sartre", "FR")


def test_contact_repr_shows_no_identifier() -> None:
    assert "gmail" not in repr(PERSON) and "415" not in repr(PERSON)


# --- properties of the normalisers ----------------------------------------------------------------

LOCAL = st.text(alphabet=string.ascii_letters + string.digits + "._+-", min_size=1, max_size=20)
DOMAIN = st.builds(
    lambda a, b: f"{a}.{b}",
    st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=12),
    st.sampled_from(["com", "de", "co.uk", "io"]),
)
EMAILS = st.builds(lambda local, domain: f"{local}@{domain}", LOCAL, DOMAIN)
SPACES = st.text(alphabet=" \t\n", max_size=3)


@given(EMAILS, SPACES, SPACES)
def test_email_ignores_case_and_surrounding_space(email: str, before: str, after: str) -> None:
    plain = normalize_email(email)
    assert plain is not None and plain == plain.strip().lower()
    assert normalize_email(before + email.upper() + after) == plain
    assert normalize_email(before + email.swapcase() + after) == plain
    assert normalize_email(plain) == plain  # idempotent


@given(st.text(max_size=40))
def test_email_is_none_or_normalised(text: str) -> None:
    found = normalize_email(text)
    assert found is None or (found == found.strip() and "@" in found and " " not in found)
    if found is not None:
        assert normalize_email(found) == found


REGIONS = ["US", "GB", "DE", "FR", "NL", "ES", "IT", "SE", "PL", "BR", "JP", "AU", "IN", "CA"]
FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.NATIONAL,
]


@given(
    st.sampled_from(REGIONS),
    st.sampled_from(["mobile", "fixed"]),
    st.sampled_from(FORMATS),
    st.sampled_from(["google", "meta", "generic"]),
)
def test_phone_spellings_of_one_number_normalise_alike(
    region: str, kind: str, fmt: int, platform: str
) -> None:
    kinds = {
        "mobile": phonenumbers.PhoneNumberType.MOBILE,
        "fixed": phonenumbers.PhoneNumberType.FIXED_LINE,
    }
    number = phonenumbers.example_number_for_type(region, kinds[kind])
    assert number is not None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    typed = phonenumbers.format_number(number, fmt)
    found = normalize_phone_for(typed, platform, country=region, default_region="US")
    if platform == "meta":
        assert found == e164[1:] and found.isdigit() and not found.startswith("0")
    else:
        assert found == e164 and found.startswith("+")
    # the same number typed in another region's customer file still reads the same with "+"
    assert normalize_phone_for(e164, platform, country=None, default_region="JP") == found


NAMES = st.text(
    alphabet=st.characters(codec="utf-8", categories=["L", "Zs", "Pd", "Po", "Nd"]), max_size=30
)


@given(NAMES, st.sampled_from(["google", "meta", "generic"]))
def test_names_are_lower_trimmed_and_stable(name: str, platform: str) -> None:
    found = normalize_name(name, platform)
    if found is None:
        return
    assert found == found.lower() or not found.isascii()
    assert normalize_name(found, platform) == found  # idempotent
    if platform == "meta":
        assert all(unicodedata.category(ch)[0] in "LM" for ch in found)  # letters and marks
        assert not any(ch.isspace() or ch in "-'.," for ch in found)
    else:
        assert found == found.strip() and "  " not in found
    assert (
        normalize_name("  " + name.upper() + " ", platform) in (found, None) or not name.isascii()
    )


@given(st.sampled_from(REGIONS), st.sampled_from(["google", "meta", "generic"]))
def test_country_codes_and_names_read_the_same(region: str, platform: str) -> None:
    expected = region.lower() if platform == "meta" else region
    assert normalize_country(region.lower(), platform) == expected
    assert normalize_country(f" {region} ", platform) == expected


@given(EMAILS, st.sampled_from(["google", "meta", "generic"]))
def test_a_partner_row_never_holds_the_raw_email(email: str, platform: str) -> None:
    row = partner_row(Contact(email=email, country="US"), ["email", "country"], platform, "US")
    assert row is not None
    assert email not in row and (normalize_email(email) or "") not in row
    assert len(row[0] or "") == 64 and set(row[0] or "") <= set("0123456789abcdef")


@given(st.text(max_size=30))
def test_sha256_hex_is_lower_hex(text: str) -> None:
    found = sha256_hex(text)
    assert found == digest(text) and len(found) == 64 and found == found.lower()


# --- k-anonymous summary --------------------------------------------------------------------------


def test_summary_suppresses_small_cells_and_their_complement() -> None:
    summary = Summary(["country"], k=10)
    for country, count in {"DE": 40, "FR": 12, "LU": 3}.items():
        for _ in range(count):
            summary.add({"country": country})
    doc = summary.document()
    assert doc["subjects"] == 55
    cells = {c["value"]: c for c in doc["by"]["country"]}
    assert cells["DE"] == {"value": "DE", "count": 40}
    # LU alone would be 55 - 40 - 12: FR is suppressed too, and neither shows a count
    assert cells["LU"] == {"value": "LU", "suppressed": True}
    assert cells["FR"] == {"value": "FR", "suppressed": True}


def test_summary_of_fewer_than_k_subjects_says_nothing() -> None:
    summary = Summary(["country"], k=10)
    for _ in range(9):
        summary.add({"country": "DE"})
    assert summary.document() == {"k": 10, "subjects": {"suppressed": True}, "by": {}}
    with pytest.raises(ValueError):
        Summary(["country"], k=1)


@given(
    st.dictionaries(st.sampled_from(["DE", "FR", "US", "GB", "LU", None]), st.integers(1, 40)),
    st.integers(2, 15),
)
def test_summary_never_shows_a_count_below_k(counts: dict[str | None, int], k: int) -> None:
    summary = Summary(["country"], k=k)
    for value, count in counts.items():
        for _ in range(count):
            summary.add({"country": value})
    doc = summary.document()
    if summary.total < k:
        assert doc["by"] == {} and doc["subjects"] == {"suppressed": True}
        return
    cells = doc["by"]["country"]
    assert all(c["count"] >= k for c in cells if "count" in c)
    assert sum(1 for c in cells if c.get("suppressed")) != 1  # never derivable from the total
    assert all("count" not in c for c in cells if c.get("suppressed"))


# --- fields and files -----------------------------------------------------------------------------


def test_field_problems_name_the_field() -> None:
    assert exports.field_problems("partner", ["email", "traits.plan"])[0].field == "fields[1]"
    assert exports.field_problems("partner", ["country"])[0].field == "fields"
    assert exports.field_problems("download", ["email", "shoe_size"])[0].field == "fields[1]"
    assert exports.field_problems("download", ["profile_id", "traits.plan"]) == []
    assert exports.field_problems("download", [])[0].field == "fields"
    assert exports.summary_problems(["email"])[0].field == "summary_by[0]"


def test_categories_of_fields() -> None:
    assert exports.categories_of(["email", "phone", "first_name", "country"]) == [
        "user.contact.address",
        "user.contact.email",
        "user.contact.phone_number",
        "user.name",
    ]


def test_csv_cells_never_start_a_formula_but_keep_phone_numbers() -> None:
    data = exports.csv_lines([["=HYPERLINK(1)", "+4930123456", "-2+3+cmd|x", "@SUM(A1)", None]])
    (row,) = list(csv.reader(io.StringIO(data.decode())))
    assert row == ["'=HYPERLINK(1)", "+4930123456", "'-2+3+cmd|x", "'@SUM(A1)", ""]


def test_json_file_pieces_make_one_document() -> None:
    columns = ["email_sha256", "country"]
    body = (
        exports.json_head({"export_id": "e1", "columns": columns})
        + exports.json_rows(columns, [["a" * 64, "DE"]], first=True)
        + exports.json_rows(columns, [["b" * 64, None]], first=False)
        + exports.json_rows(columns, [], first=False)
        + exports.json_tail({"subjects": 2})
    )
    doc = json.loads(body)
    assert doc["export_id"] == "e1" and doc["manifest"] == {"subjects": 2}
    assert doc["rows"] == [
        {"email_sha256": "a" * 64, "country": "DE"},
        {"email_sha256": "b" * 64, "country": None},
    ]


def test_names_match_only_together() -> None:
    both = Contact(first_name="Ana", last_name="Berg", country="DE", postcode="10115")
    fields = ["first_name", "last_name", "country", "postcode"]
    assert partner_row(both, fields, "google", "US") == [
        digest("ana"),
        digest("berg"),
        "DE",
        "10115",
    ]
    assert partner_row(Contact(first_name="Ana", country="DE"), fields, "google", "US") is None
    assert exports.field_problems("partner", ["first_name", "last_name"]) == []
    assert exports.field_problems("partner", ["first_name"])[0].field == "fields"
