"""CSV rows -> Segment messages, without a store: values, layouts, grouping, errors, message ids."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consentry.commerce.importers import (
    FileRefused,
    Format,
    Kind,
    Outcome,
    RowError,
    UnreadableFile,
    open_import,
    parse_date,
    parse_money,
    sniff_delimiter,
)
from consentry.commerce.importers_layouts import LAYOUTS
from consentry.commerce.importers_values import parse_count, parse_flag, slug, split_tags
from consentry.ingest.models import Envelope, parse_message

DOCS = Path(__file__).resolve().parents[2] / "docs" / "imports.md"

SHOPIFY_CUSTOMER_HEADER = (
    "Customer ID,First Name,Last Name,Email,Accepts Email Marketing,Default Address Company,"
    "Default Address Address1,Default Address Address2,Default Address City,"
    "Default Address Province Code,Default Address Country Code,Default Address Zip,"
    "Default Address Phone,Phone,Accepts SMS Marketing,Total Spent,Total Orders,Note,"
    "Tax Exempt,Tags"
)
SHOPIFY_ORDER_HEADER = (
    "Name,Email,Financial Status,Paid at,Fulfillment Status,Fulfilled at,Accepts Marketing,"
    "Currency,Subtotal,Shipping,Taxes,Total,Discount Code,Discount Amount,Shipping Method,"
    "Created at,Lineitem quantity,Lineitem name,Lineitem price,Lineitem compare at price,"
    "Lineitem sku,Billing Name,Billing Phone,Phone,Refunded Amount,Cancelled at,Id,Source"
)
ALICE = (
    "'7012345,Alice,Smith,Alice@Example.com,yes,ACME,1 Main St,Apt 2,San Francisco,CA,US,"
    '\'94105,,\'+14155550132,no,"1,234.50",3,likes hats,no,"vip, newsletter"'
)


def read(text: str, kind: Kind, fmt: Format = Format.AUTO) -> list[Outcome]:
    reader = open_import(io.StringIO(text, newline=""), kind=kind, fmt=fmt)
    return list(reader.outcomes())


def messages(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    return [m for o in outcomes for m in o.messages]


def errors(outcomes: list[Outcome]) -> list[RowError]:
    return [e for o in outcomes for e in o.errors]


def shopify_order_row(**values: str) -> str:
    columns = SHOPIFY_ORDER_HEADER.split(",")
    unknown = set(values) - set(columns)
    assert not unknown, unknown
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([values.get(c, "") for c in columns])
    return buffer.getvalue()


def shopify_order(number: str, *items: tuple[str, str, str, str], **order: str) -> str:
    """Rows of one Shopify order: order-level values on the first row only."""
    rows = []
    for i, (qty, name, price, sku) in enumerate(items):
        line = {
            "Name": number,
            "Email": order.get("Email", "") if i == 0 else "",
            "Lineitem quantity": qty,
            "Lineitem name": name,
            "Lineitem price": price,
            "Lineitem sku": sku,
        }
        rows.append(shopify_order_row(**{**(order if i == 0 else {}), **line}))
    return "".join(rows)


# --- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12.50", "12.50"),
        ("12,50", "12.50"),
        ("1,234.56", "1234.56"),
        ("1.234,56", "1234.56"),
        ("1 234,56", "1234.56"),
        ("1\u00a0234,56", "1234.56"),
        ("1,234", "1234"),
        ("1,234,567.8", "1234567.8"),
        ("1.234.567", "1234567"),
        ("1.234", "1.234"),
        ("€12.50", "12.50"),
        ("12.50 EUR", "12.50"),
        ("EUR 12.50", "12.50"),
        ("$1,000", "1000"),
        ("-3.20", "-3.20"),
        ("(3.00)", "-3.00"),
        (".5", "0.5"),
        ("0", "0"),
    ],
)
def test_money_is_read_in_the_usual_notations(text: str, expected: str) -> None:
    assert parse_money(text) == Decimal(expected)


@pytest.mark.parametrize(
    "text", ["abc", "1e5", "NaN", "Infinity", "1,2,3", "12.5.6,7", "1..2", "5,", "--3", "1.2345"]
)
def test_money_refuses_what_is_not_an_amount(text: str) -> None:
    with pytest.raises(ValueError, match="amount"):
        parse_money(text)


def test_empty_cells_are_absent_not_zero() -> None:
    assert parse_money("  ") is None
    assert parse_date("") is None
    assert parse_count("") is None
    assert parse_flag("") is None


amounts = st.decimals(
    min_value=Decimal("-999999999999.99"),
    max_value=Decimal("999999999999.99"),
    places=2,
    allow_nan=False,
    allow_infinity=False,
)


@given(amounts)
def test_money_round_trips_in_every_notation(amount: Decimal) -> None:
    sign = "-" if amount < 0 else ""
    magnitude = abs(amount)
    us = f"{magnitude:,.2f}"
    european = us.replace(",", " ").replace(".", ",").replace(" ", ".")
    for text in (f"{amount}", f"{sign}{us}", f"{sign}{european}", f"{sign}€ {us}"):
        assert parse_money(text) == amount, text


@given(amounts)
def test_amounts_read_back_exactly_from_json_numbers(amount: Decimal) -> None:
    from consentry.commerce.importers_messages import number

    assert Decimal(str(number(amount))) == amount


@given(st.text(max_size=30))
def test_money_gives_an_amount_or_a_value_error_for_any_text(text: str) -> None:
    try:
        value = parse_money(text)
    except ValueError:
        return
    assert value is None or (value.is_finite() and abs(value) < Decimal(10) ** 12)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01 10:15:22 +0100", datetime(2024, 3, 1, 9, 15, 22, tzinfo=UTC)),
        ("2024-03-01 10:15 -0500", datetime(2024, 3, 1, 15, 15, tzinfo=UTC)),
        ("2024-03-01T10:15:22Z", datetime(2024, 3, 1, 10, 15, 22, tzinfo=UTC)),
        ("2024-03-01T10:15:22.250+02:00", datetime(2024, 3, 1, 8, 15, 22, 250000, tzinfo=UTC)),
        ("2024-03-01 10:15:22", datetime(2024, 3, 1, 10, 15, 22, tzinfo=UTC)),
        ("2024-03-01", datetime(2024, 3, 1, tzinfo=UTC)),
        ("2024-03-01 10:15:22 UTC", datetime(2024, 3, 1, 10, 15, 22, tzinfo=UTC)),
    ],
)
def test_dates_are_read_as_utc(text: str, expected: datetime) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "01/03/2024", "2024-13-01", "2024-02-30", "0"])
def test_unreadable_dates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="date"):
        parse_date(text)


aware = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.builds(
        timezone, st.integers(-14 * 60, 14 * 60).map(lambda m: timedelta(minutes=m))
    ),
)


@given(aware)
def test_dates_round_trip_in_shopify_and_iso_form(moment: datetime) -> None:
    seconds = moment.replace(microsecond=0)
    assert parse_date(seconds.strftime("%Y-%m-%d %H:%M:%S %z")) == seconds
    assert parse_date(moment.isoformat()) == moment
    assert parse_date(moment.isoformat()).tzinfo is UTC  # type: ignore[union-attr]


@given(st.text(max_size=40))
def test_dates_give_a_datetime_or_a_value_error_for_any_text(text: str) -> None:
    try:
        value = parse_date(text)
    except ValueError:
        return
    assert value is None or value.tzinfo is UTC


def test_counts_flags_tags_and_slugs() -> None:
    assert parse_count("2") == 2 and parse_count("2.0") == 2 and parse_count("1,000") == 1000
    for bad in ("1.5", "-1", "two"):
        with pytest.raises(ValueError):
            parse_count(bad)
    assert [parse_flag(w) for w in ("yes", "No", "TRUE", "0", "maybe")] == [
        True,
        False,
        True,
        False,
        None,
    ]
    assert split_tags(" vip, newsletter,,vip ") == ["vip", "newsletter"]
    assert slug("Blue Shirt (L)") == "blue-shirt-l"
    assert slug("!!!") == slug("!!!") and slug("!!!").startswith("item-")


def test_delimiter_is_sniffed_from_the_header() -> None:
    assert sniff_delimiter("a,b,c\r\n") == ","
    assert sniff_delimiter("a;b;c\n") == ";"
    assert sniff_delimiter("a\tb\tc\n") == "\t"
    assert sniff_delimiter('"a;x",b,c\n') == ","
    assert sniff_delimiter("email\n") == ","


# --- customers ------------------------------------------------------------------------------


def test_shopify_customer_row_becomes_an_identify_call() -> None:
    outcomes = read(f"{SHOPIFY_CUSTOMER_HEADER}\n{ALICE}\n", Kind.CUSTOMERS)
    assert errors(outcomes) == []
    [message] = messages(outcomes)
    assert message["type"] == "identify" and message["userId"] == "7012345"
    assert "anonymousId" not in message
    assert message["traits"] == {
        "email": "Alice@Example.com",
        "phone": "+14155550132",
        "first_name": "Alice",
        "last_name": "Smith",
        "address": {
            "street": "1 Main St, Apt 2",
            "city": "San Francisco",
            "postal_code": "94105",
            "state": "CA",
            "country": "US",
        },
        "accepts_email_marketing": True,
        "accepts_sms_marketing": False,
        "tags": ["vip", "newsletter"],
        "total_spent": 1234.5,
        "orders_count": 3,
    }
    assert isinstance(parse_message(message, index=0, received_at=datetime.now(UTC)), Envelope)


def test_a_national_phone_is_read_in_the_rows_country_uk_as_gb() -> None:
    """Shops write the United Kingdom as UK as often as GB; libphonenumber knows only GB."""
    row = ALICE.replace(",US,", ",UK,").replace("+14155550132", "020 7946 0958")
    [message] = messages(read(f"{SHOPIFY_CUSTOMER_HEADER}\n{row}\n", Kind.CUSTOMERS))
    assert message["traits"]["phone"] == "+442079460958"


def test_format_is_detected_from_the_header() -> None:
    shopify = open_import(io.StringIO(f"{SHOPIFY_CUSTOMER_HEADER}\n"), kind=Kind.CUSTOMERS)
    generic = open_import(io.StringIO("customer_id,email\n"), kind=Kind.CUSTOMERS)
    orders = open_import(io.StringIO(f"{SHOPIFY_ORDER_HEADER}\n"), kind=Kind.ORDERS)
    generic_orders = open_import(
        io.StringIO("order_id,email,placed_at,currency,total\n"), kind=Kind.ORDERS
    )
    assert (shopify.format, generic.format) == (Format.SHOPIFY, Format.GENERIC)
    assert (orders.format, generic_orders.format) == (Format.SHOPIFY, Format.GENERIC)


@pytest.mark.parametrize(
    ("kind", "header", "fmt", "named"),
    [
        (Kind.CUSTOMERS, "first_name,last_name", Format.AUTO, "'customer_id', 'email', 'phone'"),
        (Kind.CUSTOMERS, "Customer ID,First Name,Total Orders", Format.AUTO, "'Email'"),
        (Kind.ORDERS, "order_id,email,currency,total", Format.AUTO, "'placed_at'"),
        (
            Kind.ORDERS,
            SHOPIFY_ORDER_HEADER.replace("Created at", "Created"),
            Format.AUTO,
            "'Created at'",
        ),
        (Kind.ORDERS, "order_id,email,placed_at,currency,total", Format.SHOPIFY, "'Name'"),
        (Kind.CUSTOMERS, SHOPIFY_ORDER_HEADER, Format.AUTO, "import orders"),
        (Kind.ORDERS, SHOPIFY_CUSTOMER_HEADER, Format.AUTO, "import customers"),
        (Kind.CUSTOMERS, "", Format.AUTO, "empty"),
        (Kind.CUSTOMERS, ",,,", Format.AUTO, "no header"),
    ],
)
def test_a_file_without_a_required_column_is_refused_naming_it(
    kind: Kind, header: str, fmt: Format, named: str
) -> None:
    with pytest.raises(FileRefused) as refused:
        open_import(io.StringIO(f"{header}\n1,2,3\n"), kind=kind, fmt=fmt)
    assert named in refused.value.message


def test_bad_email_is_no_error_but_no_identifier_is() -> None:
    text = (
        "customer_id,email,phone,created_at\n"
        "c-1,not-an-email,,2024-01-01\n"  # line 2: the customer id identifies
        ",not-an-email,12,2024-01-01\n"  # line 3: nothing usable
        ",,+1 415 555 0132,2024-01-01\n"  # line 4: the phone identifies
        "c-5,a@example.com,,last tuesday\n"  # line 5: bad date
        ",GUEST@example.com,,\n"  # line 6: junk email names nobody
    )
    outcomes = read(text, Kind.CUSTOMERS)
    assert [(e.line, e.field) for e in errors(outcomes)] == [
        (3, "customer_id, email, phone"),
        (5, "created_at"),
        (6, "customer_id, email, phone"),
    ]
    assert "no identifier" in errors(outcomes)[0].reason
    first, second = messages(outcomes)
    assert first["userId"] == "c-1" and first["traits"]["email"] == "not-an-email"
    assert second["anonymousId"].startswith("import-")
    assert second["traits"]["phone"] == "+14155550132"


def test_bom_semicolons_and_windows_line_endings_read_like_plain_csv() -> None:
    plain = (
        "customer_id,email,total_spent,orders_count,tags\n"
        'c-1,a@example.com,1234.50,2,"vip, x"\n'
        "c-2,b@example.com,7,1,\n"
    )
    excel = (
        "\ufeffcustomer_id;email;total_spent;orders_count;tags\r\n"
        "c-1;a@example.com;1.234,50;2;vip, x\r\n"
        "\r\n"
        "c-2;b@example.com;7;1;\r\n"
    )
    assert messages(read(excel, Kind.CUSTOMERS)) == messages(read(plain, Kind.CUSTOMERS))
    assert messages(read(plain, Kind.CUSTOMERS))[0]["traits"]["total_spent"] == 1234.5


def test_line_numbers_count_physical_lines_of_the_file() -> None:
    text = (
        "customer_id,email,first_name,created_at\n"  # 1
        'c-1,a@example.com,"two\nline name",2024-01-01\n'  # 2-3
        "\n"  # 4
        "c-2,b@example.com,Bo,not a date\n"  # 5
        "c-3,c@example.com,Cy,2024-01-01,surplus\n"  # 6
    )
    outcomes = read(text, Kind.CUSTOMERS)
    assert [(o.line, o.rows) for o in outcomes] == [(2, 1), (5, 1), (6, 1)]
    assert [(e.line, e.field) for e in errors(outcomes)] == [(5, "created_at"), (6, "(row)")]


def test_message_ids_depend_on_content_only() -> None:
    row = "c-1,a@example.com,'+14155550132"
    once = messages(read(f"customer_id,email,phone\n{row}\n{row}\n", Kind.CUSTOMERS))
    reformatted = messages(
        read("EMAIL;Customer_ID;Phone\na@example.com;c-1;+14155550132\n", Kind.CUSTOMERS)
    )
    changed = messages(read("customer_id,email,phone\nc-1,b@example.com,\n", Kind.CUSTOMERS))
    assert once[0]["messageId"] == once[1]["messageId"] == reformatted[0]["messageId"]
    assert changed[0]["messageId"] != once[0]["messageId"]


# --- orders ---------------------------------------------------------------------------------


def test_shopify_order_rows_group_into_one_order_completed() -> None:
    text = SHOPIFY_ORDER_HEADER + "\n"
    text += shopify_order(
        "#1001",
        ("2", "Blue Shirt", "30.00", "SH-1"),
        ("1", "Red Hat (L)", "40.00", ""),
        **{
            "Email": "Alice@Example.com",
            "Financial Status": "paid",
            "Currency": "EUR",
            "Subtotal": "100.00",
            "Shipping": "5.00",
            "Taxes": "19.00",
            "Total": "95.00",
            "Discount Code": "SPRING",
            "Discount Amount": "10.00",
            "Created at": "2024-03-01 10:15:22 +0100",
            "Phone": "'+14155550132",
        },
    )
    outcomes = read(text, Kind.ORDERS)
    assert errors(outcomes) == [] and [(o.line, o.rows) for o in outcomes] == [(2, 2)]
    [message] = messages(outcomes)
    assert message["event"] == "Order Completed" and "userId" not in message
    assert message["timestamp"] == "2024-03-01T09:15:22+00:00"
    assert message["context"]["traits"] == {"email": "Alice@Example.com", "phone": "+14155550132"}
    props = message["properties"]
    assert props == {
        "order_id": "#1001",
        "total": 95,
        "revenue": 100,
        "shipping": 5,
        "tax": 19,
        "discount": 10,
        "coupon": "SPRING",
        "currency": "EUR",
        "channel": "import",
        "products": [
            {"product_id": "SH-1", "sku": "SH-1", "name": "Blue Shirt", "price": 30, "quantity": 2},
            {"product_id": "red-hat-l", "name": "Red Hat (L)", "price": 40, "quantity": 1},
        ],
    }
    envelope = parse_message(message, index=0, received_at=datetime.now(UTC))
    assert isinstance(envelope, Envelope) and envelope.anonymous_id == message["anonymousId"]


def test_refunded_and_cancelled_orders_add_their_events() -> None:
    base = {"Currency": "USD", "Total": "50.00", "Created at": "2024-03-01 10:00:00 +0000"}
    text = SHOPIFY_ORDER_HEADER + "\n"
    text += shopify_order(
        "#1",
        ("1", "A", "50", "A"),
        Email="a@example.com",
        **base,
        **{"Financial Status": "refunded"},
    )
    text += shopify_order(
        "#2",
        ("1", "A", "50", "A"),
        Email="a@example.com",
        **base,
        **{"Financial Status": "partially_refunded", "Refunded Amount": "12.50"},
    )
    text += shopify_order(
        "#3",
        ("1", "A", "50", "A"),
        Email="a@example.com",
        **base,
        **{"Financial Status": "voided", "Cancelled at": "2024-03-02 08:00:00 +0000"},
    )
    found = [
        (m["event"], m["properties"]["order_id"], _amount(m["properties"]), m["timestamp"][:10])
        for m in messages(read(text, Kind.ORDERS))
    ]
    assert found == [
        ("Order Completed", "#1", 50, "2024-03-01"),
        ("Order Refunded", "#1", 50, "2024-03-01"),
        ("Order Completed", "#2", 50, "2024-03-01"),
        ("Order Refunded", "#2", 12.5, "2024-03-01"),
        ("Order Completed", "#3", 50, "2024-03-01"),
        ("Order Cancelled", "#3", None, "2024-03-02"),
    ]


def _amount(props: dict[str, Any]) -> Any:
    """An order's total, or for a refund the amount refunded so far."""
    return props.get("total", props.get("refunded_to_date"))


def test_a_bad_row_refuses_its_whole_order_and_names_each_line() -> None:
    base = {"Currency": "EUR", "Total": "10", "Created at": "2024-03-01 10:00:00 +0000"}
    text = SHOPIFY_ORDER_HEADER + "\n"
    text += shopify_order("#1", ("1", "A", "5", "A"), ("x", "B", "5", "B"), Email="a@x.com", **base)
    text += shopify_order("#2", ("1", "A", "ten", "A"), Email="a@x.com", **base)
    text += shopify_order(
        "#3", ("1", "A", "10", "A"), Email="a@x.com", **{**base, "Created at": "soon"}
    )
    text += shopify_order("#4", ("1", "A", "10", "A"), Email="nobody", **base)
    text += shopify_order("#5", ("1", "A", "10", "A"), Email="a@x.com", **base)
    outcomes = read(text, Kind.ORDERS)
    assert [(e.line, e.field) for e in errors(outcomes)] == [
        (2, "Name"),
        (3, "Lineitem quantity"),
        (4, "Lineitem price"),
        (5, "Created at"),
        (6, "Email, Phone"),
    ]
    assert "fix line 3" in errors(outcomes)[0].reason
    assert [m["properties"]["order_id"] for m in messages(outcomes)] == ["#5"]


def test_generic_orders_take_user_ids_and_order_fields_from_the_first_row_with_them() -> None:
    text = (
        "order_id,customer_id,email,placed_at,currency,total,sku,name,category,price,quantity\n"
        "A-1,c-1,,2024-03-01,eur,60,MUG-1,Mug,kitchen,25.00,2\n"
        "A-1,,,,,,,Green tea,food,10,\n"
        "A-2,,b@example.com,2024-03-02T10:00:00Z,USD,,,,,,\n"
    )
    first, second = messages(read(text, Kind.ORDERS))
    assert first["userId"] == "c-1" and first["properties"]["currency"] == "EUR"
    assert first["properties"]["products"] == [
        {
            "product_id": "MUG-1",
            "sku": "MUG-1",
            "name": "Mug",
            "category": "kitchen",
            "price": 25,
            "quantity": 2,
        },
        {
            "product_id": "green-tea",
            "name": "Green tea",
            "category": "food",
            "price": 10,
            "quantity": 1,
        },
    ]
    assert "total" not in second["properties"] and second["properties"]["products"] == []
    assert second["anonymousId"].startswith("import-")


def test_the_same_contact_gets_the_same_anonymous_id() -> None:
    text = (
        "order_id,email,placed_at,currency,total\n"
        "A-1,Ann@Example.com,2024-03-01,EUR,1\n"
        "A-2, ann@example.com ,2024-03-02,EUR,2\n"
    )
    first, second = messages(read(text, Kind.ORDERS))
    assert first["anonymousId"] == second["anonymousId"]
    assert first["messageId"] != second["messageId"]


def test_a_file_that_is_not_utf8_is_refused_or_stops_with_the_line() -> None:
    bad = b"c-x,\xff\xfe@example.com\n"

    def stream(raw: bytes) -> io.TextIOWrapper:
        return io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig", newline="")

    with pytest.raises(FileRefused, match="UTF-8"):  # found before anything is read
        open_import(stream(b"customer_id,email\n" + bad), kind=Kind.CUSTOMERS)
    good = b"".join(b"c-%d,a%d@example.com\n" % (i, i) for i in range(2000))
    reader = open_import(stream(b"customer_id,email\n" + good + bad), kind=Kind.CUSTOMERS)
    read_rows = 0
    with pytest.raises(UnreadableFile) as broken:
        for outcome in reader.outcomes():
            read_rows += outcome.rows
    assert "UTF-8" in broken.value.reason
    assert read_rows < 2000 and broken.value.line == read_rows + 2


def test_the_documented_examples_import_without_errors() -> None:
    blocks = re.findall(r"```csv\n(.*?)```", DOCS.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 2
    customers = read(blocks[0], Kind.CUSTOMERS)
    orders = read(blocks[1], Kind.ORDERS)
    assert errors(customers) == [] and len(messages(customers)) == 2
    assert errors(orders) == [] and len(messages(orders)) == 2


# --- never an exception ---------------------------------------------------------------------

junk = st.one_of(
    st.text(max_size=12),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["-", "1e5", "(", "0000", "guest", "'", "\x00", "2024-02-30"]),
)
money_text = st.decimals(min_value=-(10**9), max_value=10**9, places=2).map(str)
plausible: dict[str, st.SearchStrategy[str]] = {
    "email": st.emails().map(str),
    "phone": st.sampled_from(["'+14155550132", "+44 20 7946 0018", "0171 1234567", "12"]),
    "customer_id": st.text(min_size=1, max_size=20),
    "order_id": st.sampled_from(["#1001", "#1002", "A-1"]),
    "currency": st.sampled_from(["EUR", "usd", "EURO"]),
    "country": st.sampled_from(["US", "DE", "Germany", "ZZ"]),
    "placed_at": aware.map(str),
    "created_at": aware.map(lambda d: d.isoformat()),
    "cancelled_at": aware.map(str),
    "quantity": st.integers(-1, 5).map(str),
    "orders_count": st.integers(0, 50).map(str),
    "accepts_email_marketing": st.sampled_from(["yes", "no", "maybe"]),
    "status": st.sampled_from(["paid", "refunded", "partially_refunded", "voided"]),
    "tags": st.sampled_from(["vip, x", ",,", ""]),
}
MONEY_FIELDS = {
    "total",
    "subtotal",
    "shipping",
    "tax",
    "discount",
    "price",
    "total_spent",
    "refunded_amount",
}


def cell_for(name: str) -> st.SearchStrategy[str]:
    good = money_text if name in MONEY_FIELDS else plausible.get(name, st.text(max_size=15))
    # mostly good values, some empty, a few junk
    return st.integers(0, 19).flatmap(lambda i: junk if i == 0 else st.just("") if i < 4 else good)


@st.composite
def layout_and_rows(draw: st.DrawFn) -> tuple[tuple[Kind, Format], list[str], list[list[str]]]:
    key = draw(st.sampled_from(sorted(LAYOUTS, key=str)))
    fields = [(n, c) for n, choices in LAYOUTS[key].columns.items() for c in choices]
    row = st.tuples(*(cell_for(name) for name, _ in fields)).map(list)
    extra = st.integers(0, 9).flatmap(
        lambda i: st.lists(junk, max_size=1) if i == 0 else st.just([])
    )
    rows = draw(st.lists(st.tuples(row, extra).map(lambda r: r[0] + r[1]), max_size=4))
    return key, [c for _, c in fields], rows


@settings(max_examples=400, deadline=None)
@given(case=layout_and_rows(), delimiter=st.sampled_from([",", ";", "\t"]))
def test_any_row_yields_valid_messages_or_clear_errors_never_an_exception(
    case: tuple[tuple[Kind, Format], list[str], list[list[str]]], delimiter: str
) -> None:
    (kind, fmt), columns, rows = case
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(columns)
    writer.writerows(rows)
    buffer.seek(0)
    outcomes = list(open_import(buffer, kind=kind, fmt=fmt).outcomes())
    assert sum(o.rows for o in outcomes) <= len(rows)
    for outcome in outcomes:
        assert bool(outcome.messages) != bool(outcome.errors)
        for error in outcome.errors:
            assert error.line >= 2 and error.field and error.reason
        for message in outcome.messages:
            parsed = parse_message(message, index=0, received_at=datetime.now(UTC))
            assert isinstance(parsed, Envelope), parsed
