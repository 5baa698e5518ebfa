"""`consentry import customers|orders` against the real store, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import pytest
import typer
from click.testing import Result
from typer.testing import CliRunner

from consentry.commerce import service as commerce
from consentry.commerce.import_cli import import_app
from consentry.errors import NotFound
from consentry.ingest import service as ingest
from consentry.platform.db import Database
from consentry.profiles import service as profiles

runner = CliRunner()
app = typer.Typer()
app.add_typer(import_app, name="import")

CUSTOMER_HEADER = (
    "Customer ID,First Name,Last Name,Email,Accepts Email Marketing,Default Address Company,"
    "Default Address Address1,Default Address Address2,Default Address City,"
    "Default Address Province Code,Default Address Country Code,Default Address Zip,"
    "Default Address Phone,Phone,Accepts SMS Marketing,Total Spent,Total Orders,Note,"
    "Tax Exempt,Tags"
)
CUSTOMERS = [
    CUSTOMER_HEADER,
    "'7012345,Alice,Smith,Alice@Example.com,yes,,1 Main St,,San Francisco,CA,US,'94105,,"
    '\'+14155550132,no,1234.50,3,,no,"vip, newsletter"',
    "'7012346,Bob,Jones,,no,,,,Berlin,,DE,,,'+49 30 901820,yes,0.00,0,,no,",
    "'7012347,Carol,King,carol-at-example,no,,,,,,,,,,no,10.00,1,,no,",
]
ORDER_HEADER = (
    "Name,Email,Financial Status,Paid at,Fulfillment Status,Accepts Marketing,Currency,Subtotal,"
    "Shipping,Taxes,Total,Discount Code,Discount Amount,Created at,Lineitem quantity,"
    "Lineitem name,Lineitem price,Lineitem sku,Billing Name,Billing Phone,Phone,Refunded Amount,"
    "Cancelled at,Id,Source"
)
ORDERS = [
    ORDER_HEADER,
    "#1001,alice@example.com,partially_refunded,,,yes,EUR,100.00,5.00,19.00,95.00,SPRING,10.00,"
    "2024-03-01 10:15:22 +0100,2,Blue Shirt,30.00,SH-1,Alice Smith,,,20.00,,5001,web",
    "#1001,alice@example.com,,,,,,,,,,,,,1,Red Hat (L),40.00,,,,,,,,",
    "#1002,,paid,,,,EUR,12.00,0,0,12.00,,,2024-03-02 09:00:00 +0100,1,Sock,12.00,SO-1,Bob,"
    "'+49 30 901820,,,,5002,pos",
    "#1003,ALICE@example.com,voided,,,,EUR,8.00,0,0,8.00,,,2024-03-03 09:00:00 +0100,1,Sock,"
    "8.00,SO-1,,,,,2024-03-03 12:00:00 +0100,5003,web",
]


def write(path: Path, lines: list[str], *, newline: str = "\n", bom: bool = False) -> Path:
    text = newline.join(lines) + newline
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


def run(kind: str, path: Path, database_url: str, workspace: str, *extra: str) -> Result:
    args = ["import", kind, str(path), "--workspace", workspace, "--database-url", database_url]
    return runner.invoke(app, [*args, *extra])


def counts(db: Database, workspace: str) -> tuple[int, int, dict[str, int]]:
    with db.read() as session:
        return (
            ingest.count_events(session=session, workspace_id=workspace),
            profiles.count_profiles(session=session, workspace_id=workspace),
            commerce.counts(session=session, workspace_id=workspace),
        )


def order(db: Database, workspace: str, order_id: str) -> commerce.OrderView:
    with db.read() as session:
        return commerce.get_order(session=session, workspace_id=workspace, order_id=order_id)


def profile_of(db: Database, workspace: str, **identifier: str) -> profiles.ProfileView:
    with db.read() as session:
        [found] = profiles.search_identifiers(session=session, workspace_id=workspace, **identifier)
        return profiles.get_profile(session=session, workspace_id=workspace, profile_id=found)


def canonical(db: Database, workspace: str, profile_id: str | None) -> str:
    assert profile_id is not None
    with db.read() as session:
        return profiles.canonical_of(session=session, workspace_id=workspace, profile_id=profile_id)


def said(result: Result) -> str:
    """What the command printed, with rich's line wrapping undone."""
    return " ".join(result.output.split())


def summary(result: Result) -> dict[str, int]:
    rows = {}
    for label in ("rows read", "messages stored", "duplicates skipped", "rows with errors"):
        line = next(x for x in result.stdout.splitlines() if label in x)
        rows[label] = int(line.split("│")[2].strip())
    return rows


def test_shopify_customers_then_orders_end_to_end(
    tmp_path: Path, database_url: str, db: Database, workspace: str
) -> None:
    customers = run("customers", write(tmp_path / "c.csv", CUSTOMERS), database_url, workspace)
    assert customers.exit_code == 0, customers.output
    assert summary(customers) == {
        "rows read": 3,
        "messages stored": 3,
        "duplicates skipped": 0,
        "rows with errors": 0,
    }
    orders = run("orders", write(tmp_path / "o.csv", ORDERS), database_url, workspace)
    assert orders.exit_code == 0, orders.output
    assert summary(orders)["messages stored"] == 5  # 3 completed, 1 refunded, 1 cancelled

    alice = profile_of(db, workspace, email="  ALICE@example.COM")
    assert alice.traits["first_name"] == "Alice" and alice.traits["total_spent"] == 1234.5
    assert alice.traits["address"]["postal_code"] == "94105"
    assert alice.traits["tags"] == ["vip", "newsletter"]
    assert alice.traits["accepts_email_marketing"] is True
    found = {(i["type"], i["value"]) for i in alice.identifiers}
    assert {("user_id", "7012345"), ("phone", "+14155550132")} <= found

    first = order(db, workspace, "#1001")
    assert first.total == Decimal("95.00") and first.currency == "EUR"
    assert first.refunded == Decimal("20.00") and first.status == "partially_refunded"
    assert sorted((i["product_id"], i["quantity"], i["price"]) for i in first.items) == [
        ("SH-1", 2, Decimal("30.00")),
        ("red-hat-l", 1, Decimal("40.00")),
    ]
    assert first.channel == "import"
    assert canonical(db, workspace, first.profile_id) == alice.id
    assert canonical(db, workspace, order(db, workspace, "#1003").profile_id) == alice.id
    assert order(db, workspace, "#1003").status == "cancelled"

    bob = profile_of(db, workspace, phone="+49 30 901820")
    assert {("user_id", "7012346")} <= {(i["type"], i["value"]) for i in bob.identifiers}
    assert canonical(db, workspace, order(db, workspace, "#1002").profile_id) == bob.id

    carol = profile_of(db, workspace, user_id="7012347")  # a bad email is no error
    assert carol.traits["email"] == "carol-at-example"
    assert not [i for i in carol.identifiers if i["type"] == "email"]


def test_running_the_same_files_again_changes_nothing(
    tmp_path: Path, database_url: str, db: Database, workspace: str
) -> None:
    customers, orders = write(tmp_path / "c.csv", CUSTOMERS), write(tmp_path / "o.csv", ORDERS)
    assert run("customers", customers, database_url, workspace).exit_code == 0
    assert run("orders", orders, database_url, workspace).exit_code == 0
    before = counts(db, workspace)
    assert before[0] == 8 and before[2]["orders"] == 3
    refunded = order(db, workspace, "#1001").refunded
    again = run("customers", customers, database_url, workspace)
    assert again.exit_code == 0
    assert summary(again)["messages stored"] == 0 and summary(again)["duplicates skipped"] == 3
    again = run("orders", orders, database_url, workspace, "--chunk-size", "1")
    assert summary(again)["messages stored"] == 0 and summary(again)["duplicates skipped"] == 5
    assert counts(db, workspace) == before
    assert order(db, workspace, "#1001").refunded == refunded == Decimal("20.00")


def test_a_changed_row_is_applied_and_the_latest_import_wins(
    tmp_path: Path, database_url: str, db: Database, workspace: str
) -> None:
    assert run("orders", write(tmp_path / "o.csv", ORDERS), database_url, workspace).exit_code == 0
    events_before = counts(db, workspace)[0]
    changed = list(ORDERS)
    changed[1] = changed[1].replace(",95.00,", ",99.00,").replace(",20.00,,", ",30.00,,")
    changed[2] = changed[2].replace(",1,Red Hat (L),", ",3,Red Hat (L),")
    result = run("orders", write(tmp_path / "o2.csv", changed), database_url, workspace)
    assert result.exit_code == 0, result.output
    assert summary(result)["messages stored"] == 2  # the new Order Completed and Order Refunded
    updated = order(db, workspace, "#1001")
    assert updated.total == Decimal("99.00")
    assert updated.refunded == Decimal("30.00")  # refunded to date, not 20 + 30
    assert {i["product_id"]: i["quantity"] for i in updated.items} == {"SH-1": 2, "red-hat-l": 3}
    assert counts(db, workspace)[0] == events_before + 2
    assert counts(db, workspace)[2]["orders"] == 3


def test_rows_with_errors_are_reported_by_line_and_the_others_imported(
    tmp_path: Path, database_url: str, db: Database, workspace: str
) -> None:
    lines = [
        "order_id,customer_id,email,phone,placed_at,currency,total,sku,name,price,quantity",
        "A-1,c-1,a@example.com,,2024-03-01,EUR,10.00,S1,Soap,10.00,1",  # 2
        "A-2,,not-an-email,,2024-03-01,EUR,10.00,S1,Soap,10.00,1",  # 3: no identifier
        "A-3,c-3,,,sometime,EUR,10.00,S1,Soap,10.00,1",  # 4: bad date
        "A-4,c-4,,,2024-03-01,EUR,ten,S1,Soap,10.00,1",  # 5: bad amount
        "A-5,c-5,,,2024-03-01,EUR,25.00,S1,Soap,10.00,2",  # 6
        "A-5,,,,,,,S2,Brush,5.00,x",  # 7: bad quantity refuses A-5
        "A-6,,b@example.com,,2024-03-02,USD,5.00,,Comb,5.00,",  # 8
    ]
    report = tmp_path / "errors.csv"
    result = run(
        "orders", write(tmp_path / "o.csv", lines), database_url, workspace, "--errors", str(report)
    )
    assert result.exit_code == 2, result.output
    assert summary(result) == {
        "rows read": 7,
        "messages stored": 2,
        "duplicates skipped": 0,
        "rows with errors": 5,
    }
    with report.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["line"], r["field"]) for r in rows] == [
        ("3", "customer_id, email, phone"),
        ("4", "placed_at"),
        ("5", "total"),
        ("6", "order_id"),
        ("7", "quantity"),
    ]
    assert "no identifier" in rows[0]["reason"] and "fix line 7" in rows[3]["reason"]
    assert "line 4: placed_at: not a date" in said(result)
    assert order(db, workspace, "A-1").total == Decimal("10.00")
    assert [i["product_id"] for i in order(db, workspace, "A-6").items] == ["comb"]
    for missing in ("A-2", "A-3", "A-4", "A-5"):
        with pytest.raises(NotFound):
            order(db, workspace, missing)


def test_a_missing_required_column_refuses_the_file_before_writing(
    tmp_path: Path, database_url: str, db: Database, workspace: str
) -> None:
    header = ORDER_HEADER.replace("Created at,", "")
    body = [line.replace("2024-03-01 10:15:22 +0100,", "") for line in ORDERS[1:2]]
    report = tmp_path / "errors.csv"
    path = write(tmp_path / "o.csv", [header, *body])
    result = run("orders", path, database_url, workspace, "--errors", str(report))
    assert result.exit_code == 1
    assert "'Created at'" in said(result) and "nothing imported" in said(result)
    assert counts(db, workspace)[0] == 0
    assert report.read_text(encoding="utf-8").splitlines()[1].startswith("1,")
    wrong_kind = run("customers", write(tmp_path / "o2.csv", ORDERS), database_url, workspace)
    assert wrong_kind.exit_code == 1 and "import orders" in said(wrong_kind)
    assert counts(db, workspace)[0] == 0


def test_excel_style_generic_file_in_small_chunks(
    tmp_path: Path, database_url: str, db: Database, workspace: str
) -> None:
    lines = [
        "order_id;customer_id;placed_at;currency;total;sku;name;price;quantity",
        "B-1;c-1;2024-03-01 10:00;EUR;1.234,50;S1;Soap;1.000,00;1",
        "B-1;;;;;S2;Brush;117,25;2",
        "B-1;;;;;S3;Comb;0,00;1",
        "B-2;c-2;2024-03-02;EUR;3,00;S1;Soap;3,00;1",
    ]
    path = write(tmp_path / "o.csv", lines, newline="\r\n", bom=True)
    result = run("orders", path, database_url, workspace, "--chunk-size", "2")
    assert result.exit_code == 0, result.output
    first = order(db, workspace, "B-1")
    assert first.total == Decimal("1234.50") and len(first.items) == 3
    assert {i["sku"]: i["price"] for i in first.items}["S2"] == Decimal("117.25")
    assert order(db, workspace, "B-2").total == Decimal("3.00")
    assert profile_of(db, workspace, user_id="c-1").id == canonical(db, workspace, first.profile_id)


def test_unknown_workspace_or_file_is_an_error(
    tmp_path: Path, database_url: str, workspace: str
) -> None:
    path = write(tmp_path / "c.csv", CUSTOMERS)
    nowhere = run("customers", path, database_url, "no-such-workspace")
    assert nowhere.exit_code == 1 and "no workspace" in said(nowhere)
    missing = run("customers", tmp_path / "absent.csv", database_url, workspace)
    assert missing.exit_code == 1 and "no such file" in said(missing)
