"""The record of processing activities: which recipients each purpose has, and safe CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentry.consent.models import OPT_OUT, ConsentConfig, Purpose
from consentry.privacy.processors import Processor, ProcessorSpec
from consentry.privacy.ropa import (
    CSV_COLUMNS,
    Record,
    build_record,
    csv_rows,
    record_csv,
    record_json,
    safe_cell,
)

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
EMAIL = Purpose("marketing.communications.email", "Email marketing", "marketing")
ADS = Purpose("marketing.advertising.third_party", "Ads", "sale_and_targeted_advertising", True)
CONFIG = ConsentConfig(purposes=(EMAIL, ADS), default_regime=OPT_OUT)


def make(pid: str, name: str, **changes: object) -> Processor:
    spec = ProcessorSpec(
        name=name,
        kind="processor",
        transfer_country="DE",
        purposes=(EMAIL.key,),
        categories=("user.contact.email",),
        dpa_signed_on=date(2024, 1, 10),
    )
    return Processor(pid, "ws", 1, replace(spec, **changes), NOW, NOW)  # type: ignore[arg-type]


PROCESSORS = [
    make("p1", "Mailchimp", transfer_country="US", transfer_safeguard="scc", retention="30 days"),
    make(
        "p2",
        "Meta",
        kind="destination",
        dpa_signed_on=None,
        transfer_country="IE",
        purposes=(EMAIL.key, ADS.key),
        categories=("user.device.ip_address", "user.contact.email", "user.behavior"),
    ),
    make("p3", "Retired ESP", active=False),
]


def build(processors: list[Processor]) -> Record:
    return build_record(
        controller_id="ws", controller_name="Shop", config=CONFIG, processors=processors, as_of=NOW
    )


def test_each_purpose_lists_its_active_recipients_and_their_categories() -> None:
    found = build(PROCESSORS)
    email, ads = found.activities
    assert [p.spec.name for p in email.recipients] == ["Mailchimp", "Meta"]  # not the retired one
    assert [p.spec.name for p in ads.recipients] == ["Meta"]
    assert email.data_categories == (
        "user.contact.email",
        "user.device.ip_address",
        "user.behavior",
    )
    assert email.default_regime == OPT_OUT


def test_the_json_record_names_transfers_and_contracts() -> None:
    document = record_json(build(PROCESSORS))
    assert document["controller"] == {"id": "ws", "name": "Shop"}
    email = document["activities"][0]
    assert email["third_country_transfers"] == [
        {"recipient": "Mailchimp", "country": "US", "safeguard": "scc"}
    ]
    assert [(r["name"], r["dpa_signed_on"]) for r in email["recipients"]] == [
        ("Mailchimp", "2024-01-10"),
        ("Meta", None),
    ]
    assert "third parties" in document["activities"][1]["legal_basis"]


def test_the_csv_has_a_header_and_a_row_per_purpose() -> None:
    text = record_csv(build(PROCESSORS))
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [r["purpose"] for r in rows] == [EMAIL.key, ADS.key]
    email = rows[0]
    assert email["recipients"] == "Mailchimp (processor); Meta (destination)"
    assert email["third_country_transfers"] == "Mailchimp: US (scc)"
    assert email["retention"] == "Mailchimp: 30 days"
    assert email["dpa_dates"] == "Mailchimp: 2024-01-10; Meta: none"
    assert email["regime_when_country_unknown"] == "opt_out"


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_cell_a_spreadsheet_would_run_is_defused(start: str) -> None:
    assert safe_cell(f'{start}HYPERLINK("http://x")') == f'\'{start}HYPERLINK("http://x")'


@given(st.text())
def test_a_safe_cell_never_starts_a_formula_and_keeps_the_text(value: str) -> None:
    cell = safe_cell(value)
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert cell in (value, "'" + value)
    assert (cell == value) == (not value.startswith(("=", "+", "-", "@", "\t", "\r")))


def test_names_with_formulas_quotes_commas_and_newlines_survive_a_csv_reader() -> None:
    evil = make("p9", '=cmd|" /C calc"!A0, "quoted"\nline two', retention="@SUM(1)")
    text = record_csv(build([evil]))
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert len(rows) == 3  # the header and two purposes, whatever the names hold
    email = dict(zip(rows[0], rows[1], strict=True))
    assert email["recipients"] == "'" + evil.spec.name + " (processor)"
    assert email["retention"] == "'" + evil.spec.name + ": @SUM(1)"
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)


def test_csv_rows_are_the_header_and_one_per_activity() -> None:
    rows = csv_rows(build([]))
    assert rows[0] == list(CSV_COLUMNS)
    assert [r[0] for r in rows[1:]] == [EMAIL.key, ADS.key]
    assert rows[1][CSV_COLUMNS.index("recipients")] == ""
