"""The register's pure rules: the transfer gate, the validators (with properties), normalising."""

from __future__ import annotations

import string
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentry.errors import FieldError
from consentry.privacy.processors import (
    ADEQUATE,
    DATA_CATEGORIES,
    EEA,
    ISO_COUNTRIES,
    KINDS,
    SAFEGUARDS,
    Processor,
    ProcessorSpec,
    changed,
    covers,
    normal_country,
    normalise,
    processor_from_document,
    refusals,
    request_problems,
    spec_problems,
    webhook_problem,
    with_defaults,
)

TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
EMAIL = "marketing.communications.email"
PURPOSES = frozenset({EMAIL, "analytics", "personalize"})


def spec(**changes: object) -> ProcessorSpec:
    base = ProcessorSpec(
        name="Mailchimp",
        kind="processor",
        transfer_country="US",
        purposes=(EMAIL,),
        categories=("user.contact.email", "user.name"),
        dpa_signed_on=date(2024, 1, 10),
        transfer_safeguard="scc",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def processor(**changes: object) -> Processor:
    return Processor("p-1", "ws", 1, spec(**changes), NOW, NOW)


def gate(found: Processor | None, purpose: str = EMAIL, *categories: str) -> list[FieldError]:
    return refusals(
        found,
        purpose=purpose,
        categories=categories or ("user.contact.email",),
        workspace_purposes=PURPOSES,
        today=TODAY,
    )


def fields_of(errors: list[FieldError]) -> list[str]:
    return [e.field for e in errors]


# --- the gate -----------------------------------------------------------------------------------


def test_a_registered_active_processor_with_a_dpa_may_receive_what_it_allows() -> None:
    assert gate(processor(), EMAIL, "user.contact.email", "user.name") == []


def test_an_unregistered_processor_is_refused() -> None:
    assert fields_of(gate(None)) == ["processor_id"]


def test_a_deactivated_processor_is_refused() -> None:
    errors = gate(processor(active=False))
    assert fields_of(errors) == ["active"]
    assert "deactivated" in errors[0].reason


@pytest.mark.parametrize("kind", ["processor", "sub_processor"])
def test_a_processor_without_a_dpa_is_refused(kind: str) -> None:
    errors = gate(processor(kind=kind, dpa_signed_on=None))
    assert fields_of(errors) == ["dpa_signed_on"]
    assert "Art. 28" in errors[0].reason


def test_a_dpa_not_yet_in_force_is_refused() -> None:
    errors = gate(processor(dpa_signed_on=date(2026, 11, 24)))
    assert fields_of(errors) == ["dpa_signed_on"]
    assert gate(processor(dpa_signed_on=TODAY)) == []


@pytest.mark.parametrize("kind", ["joint_controller", "destination"])
def test_a_destination_or_joint_controller_needs_no_dpa(kind: str) -> None:
    assert gate(processor(kind=kind, dpa_signed_on=None)) == []


def test_a_transfer_outside_the_eea_without_adequacy_needs_a_safeguard() -> None:
    assert fields_of(gate(processor(transfer_safeguard=None))) == ["transfer_safeguard"]
    assert fields_of(gate(processor(transfer_country="IN", transfer_safeguard=None))) == [
        "transfer_safeguard"
    ]
    assert gate(processor(transfer_country="DE", transfer_safeguard=None)) == []
    assert gate(processor(transfer_country="JP", transfer_safeguard=None)) == []


def test_a_purpose_no_longer_configured_is_refused_even_if_the_processor_lists_it() -> None:
    found = processor(purposes=(EMAIL, "retired.purpose"))
    errors = gate(found, "retired.purpose")
    assert fields_of(errors) == ["purpose"]
    assert "not a purpose of this workspace" in errors[0].reason


def test_a_purpose_the_processor_may_not_receive_data_for_is_refused() -> None:
    errors = gate(processor(), "analytics")
    assert fields_of(errors) == ["purpose"]
    assert EMAIL in errors[0].reason  # names what is allowed


def test_each_category_it_may_not_receive_is_named_by_its_index() -> None:
    errors = gate(processor(), EMAIL, "user.name", "user.behavior", "user.contact.email", "user")
    assert fields_of(errors) == ["categories.1", "categories.3"]


def test_a_parent_category_covers_its_children_not_the_reverse_nor_siblings() -> None:
    parent = processor(categories=("user.contact",))
    assert gate(parent, EMAIL, "user.contact.email", "user.contact.address") == []
    assert fields_of(gate(parent, EMAIL, "user.name")) == ["categories.0"]
    child = processor(categories=("user.contact.email",))
    assert fields_of(gate(child, EMAIL, "user.contact")) == ["categories.0"]
    assert fields_of(gate(child, EMAIL, "user.contact.phone_number")) == ["categories.0"]
    prefix = processor(categories=("user.device",))
    assert not covers(("user.device",), "user.devices")  # a prefix, not a parent
    assert gate(prefix, EMAIL, "user.device.ip_address") == []


def test_every_reason_is_named_at_once() -> None:
    found = processor(active=False, dpa_signed_on=None, transfer_safeguard=None)
    errors = gate(found, "analytics", "user.behavior")
    assert fields_of(errors) == [
        "active",
        "dpa_signed_on",
        "transfer_safeguard",
        "purpose",
        "categories.0",
    ]


def test_a_malformed_request_is_told_apart_from_a_refusal() -> None:
    assert request_problems(EMAIL, ["user.name"]) == []
    assert fields_of(request_problems("", [])) == ["purpose", "categories"]
    assert fields_of(request_problems(EMAIL, ["user.name", "user.nope"])) == ["categories.1"]


# --- validation of a spec -----------------------------------------------------------------------


def problems(**changes: object) -> list[FieldError]:
    return spec_problems(with_defaults(normalise(spec(**changes))), PURPOSES, TODAY)


def test_a_complete_spec_has_no_problems() -> None:
    assert problems() == []
    destination = {"kind": "destination", "dpa_signed_on": None, "transfer_country": "DE"}
    assert problems(**destination, transfer_safeguard=None) == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "  "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "tab\there"}, "name"),
        ({"kind": "vendor"}, "kind"),
        ({"contact": "x" * 321}, "contact"),
        ({"retention": "x" * 1001}, "retention"),
        ({"purposes": ()}, "purposes"),
        ({"purposes": (EMAIL, "nope")}, "purposes.1"),
        ({"categories": ()}, "categories"),
        ({"categories": ("user.name", "user.ssn")}, "categories.1"),
        ({"dpa_signed_on": None}, "dpa_signed_on"),
        ({"kind": "sub_processor", "dpa_signed_on": None}, "dpa_signed_on"),
        ({"dpa_signed_on": date(2026, 11, 24)}, "dpa_signed_on"),
        ({"transfer_country": "XX"}, "transfer_country"),
        ({"transfer_country": "USA"}, "transfer_country"),
        ({"transfer_safeguard": "trust_us"}, "transfer_safeguard"),
        ({"transfer_safeguard": None}, "transfer_safeguard"),
        ({"transfer_country": "FR"}, "transfer_safeguard"),  # no transfer: no safeguard
        ({"transfer_country": "IN", "transfer_safeguard": "adequacy"}, "transfer_safeguard"),
        ({"erasure_webhook_url": "http://hooks.example.com/x"}, "erasure_webhook_url"),
    ],
)
def test_each_bad_field_is_named(changes: dict[str, object], field: str) -> None:
    assert fields_of(problems(**changes)) == [field]


def test_a_us_recipient_may_rely_on_the_data_privacy_framework() -> None:
    assert problems(transfer_safeguard="adequacy") == []


def test_normalising_trims_upper_cases_resolves_aliases_and_drops_repeats() -> None:
    found = normalise(
        spec(
            name=" Mailchimp ",
            transfer_country=" uk ",
            purposes=(EMAIL, EMAIL),
            categories=("user.name", " user.name", "user.behavior"),
            contact="   ",
            retention=" 30 days ",
        )
    )
    assert found.name == "Mailchimp"
    assert found.transfer_country == "GB"
    assert found.purposes == (EMAIL,)
    assert found.categories == ("user.name", "user.behavior")
    assert (found.contact, found.retention) == (None, "30 days")


def test_an_adequate_country_defaults_to_the_adequacy_safeguard_only() -> None:
    japan = with_defaults(spec(transfer_country="JP", transfer_safeguard=None))
    assert japan.transfer_safeguard == "adequacy"
    usa = with_defaults(spec(transfer_country="US", transfer_safeguard=None))
    assert usa.transfer_safeguard is None
    kept = spec(transfer_country="JP", transfer_safeguard="scc")
    assert with_defaults(kept) == kept


def test_a_patch_replaces_only_the_fields_it_names() -> None:
    after = changed(spec(), {"categories": ["user.behavior"], "contact": "dpo@mc.example"})
    assert after.categories == ("user.behavior",)
    assert after.contact == "dpo@mc.example"
    assert after.name == "Mailchimp" and after.purposes == (EMAIL,)


def test_the_history_document_round_trips() -> None:
    found = processor(retention="30 days", erasure_webhook_url="https://h.example/e")
    document = found.document()
    assert document["third_country_transfer"] is True and document["adequacy"] is False
    assert processor_from_document("ws", document) == found


def test_the_vocabularies_are_consistent() -> None:
    assert len(ISO_COUNTRIES) == 249
    assert EEA < ISO_COUNTRIES and ADEQUATE < ISO_COUNTRIES
    assert not EEA & ADEQUATE and "US" not in ADEQUATE
    assert len(EEA) == 30
    for key in DATA_CATEGORIES:
        parent = key.rsplit(".", 1)[0]
        assert key.startswith("user.")
        assert parent == "user" or parent in DATA_CATEGORIES, key
    assert set(KINDS) == {"processor", "sub_processor", "joint_controller", "destination"}
    assert {"scc", "bcr", "adequacy", "consent"} <= set(SAFEGUARDS)


# --- properties of the validators ---------------------------------------------------------------


def country_problems(code: str) -> list[str]:
    found = spec_problems(
        normalise(spec(transfer_country=code, transfer_safeguard="scc")), PURPOSES, TODAY
    )
    return [e.field for e in found if e.field == "transfer_country"]


@given(st.sampled_from(sorted(ISO_COUNTRIES)), st.sampled_from([str.lower, str.upper, str.title]))
def test_every_assigned_country_code_is_accepted_in_any_case(code: str, case: object) -> None:
    assert callable(case)
    assert country_problems(f" {case(code)} ") == []
    assert normal_country(case(code)) == code


@given(st.text(alphabet=string.ascii_uppercase, min_size=2, max_size=2))
def test_an_unassigned_two_letter_code_is_refused(code: str) -> None:
    expected = [] if code in ISO_COUNTRIES or code in ("UK", "EL") else ["transfer_country"]
    assert country_problems(code) == expected


@given(st.text(max_size=6).filter(lambda t: len(t.strip()) != 2))
def test_anything_but_two_letters_is_refused(code: str) -> None:
    assert country_problems(code) == ["transfer_country"]


@given(st.sampled_from(sorted(ISO_COUNTRIES - EEA - ADEQUATE)))
def test_every_third_country_without_adequacy_needs_a_safeguard(code: str) -> None:
    errors = problems(transfer_country=code, transfer_safeguard=None)
    assert fields_of(errors) == ["transfer_safeguard"]
    assert fields_of(problems(transfer_country=code, transfer_safeguard="bcr")) == []


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
HOST = st.lists(LABEL, min_size=1, max_size=4).map(".".join)
PATH = st.from_regex(r"(/[A-Za-z0-9._~-]{0,12}){0,4}(\?[a-z]=[0-9]{1,4})?", fullmatch=True)


@given(HOST, PATH, st.one_of(st.none(), st.integers(1, 65535)))
def test_an_https_url_with_a_host_is_accepted(host: str, path: str, port: int | None) -> None:
    netloc = host if port is None else f"{host}:{port}"
    assert webhook_problem(f"https://{netloc}{path}") is None


@given(HOST.filter(lambda h: h != "localhost"), PATH)
def test_http_is_refused_except_to_this_machine(host: str, path: str) -> None:
    assert webhook_problem(f"http://{host}{path}") is not None
    for local in ("localhost", "127.0.0.1", "[::1]"):
        assert webhook_problem(f"http://{local}:8080{path}") is None


@given(st.sampled_from(["ftp", "file", "javascript", "data", "ws", "gopher"]), HOST, PATH)
def test_other_schemes_are_refused(scheme: str, host: str, path: str) -> None:
    assert webhook_problem(f"{scheme}://{host}{path}") is not None


@given(HOST, st.text(alphabet=string.ascii_letters, min_size=1, max_size=8))
def test_credentials_fragments_and_spaces_are_refused(host: str, word: str) -> None:
    assert webhook_problem(f"https://{word}:secret@{host}/") is not None
    assert webhook_problem(f"https://{word}@{host}/") is not None
    assert webhook_problem(f"https://{host}/#{word}") is not None
    assert webhook_problem(f"https://{host}/ {word}") is not None
    assert webhook_problem(f"https://{host}/\n{word}") is not None


@given(st.text(max_size=60))
def test_no_text_crashes_the_url_validator(text: str) -> None:
    reason = webhook_problem(text)
    assert reason is None or isinstance(reason, str)
    if reason is None:
        assert text.startswith(("https://", "http://"))


def test_urls_at_the_edges() -> None:
    assert webhook_problem("https://") is not None
    assert webhook_problem("https://-bad-.example") is not None
    assert webhook_problem("https://h.example:99999/") is not None
    assert webhook_problem("https://" + "a" * 2000 + ".example") is not None
    assert webhook_problem("https://203.0.113.9/hook") is None


@given(st.text(max_size=40))
def test_only_vocabulary_keys_are_categories(key: str) -> None:
    errors = request_problems(EMAIL, [key])
    assert (errors == []) == (key in DATA_CATEGORIES)


@given(st.sampled_from(sorted(DATA_CATEGORIES)), st.sampled_from(sorted(DATA_CATEGORIES)))
def test_covering_is_the_parent_relation_of_the_dotted_keys(allowed: str, asked: str) -> None:
    expected = asked == allowed or asked.split(".")[: allowed.count(".") + 1] == allowed.split(".")
    assert covers((allowed,), asked) == expected
    found = processor(categories=(allowed,))
    assert (gate(found, EMAIL, asked) == []) == expected
