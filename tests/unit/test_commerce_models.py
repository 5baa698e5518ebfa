"""E-commerce spec rules: money, line items, order facts, refunds."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentry.commerce.models import (
    line_item,
    money,
    order_facts,
    order_total,
    refund_status,
    refunded_after,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (19.99, "19.99"),
        ("1,299.5", "1299.50"),
        (3, "3.00"),
        (None, None),
        ("abc", None),
        (True, None),
        ("NaN", None),
        ("inf", None),
    ],
)
def test_money(raw: object, expected: str | None) -> None:
    assert money(raw) == (Decimal(expected) if expected else None)


def test_order_total_falls_back_to_revenue_then_lines() -> None:
    lines = {
        "order_id": "o",
        "products": [{"product_id": "a", "price": 2.5, "quantity": 2}, {"sku": "b", "price": 1}],
    }
    facts = order_facts("Order Completed", lines)
    assert facts is not None and order_total(facts) == Decimal("6.00")
    assert order_facts("Order Completed", {"total": 1}) is None  # no order id
    assert line_item({"name": "no id"}) is None


def _refund(**props: object) -> Decimal:
    facts = order_facts("Order Refunded", {"order_id": "o", **props})
    assert facts is not None
    return refunded_after(facts, Decimal("100.00"), Decimal("20.00"))


def test_refunds_add_up_but_statements_to_date_do_not() -> None:
    assert _refund(total=30) == Decimal("50.00")
    assert _refund(products=[{"product_id": "a", "price": 5, "quantity": 2}]) == Decimal("30.00")
    assert _refund() == Decimal("100.00")  # no amount: everything came back
    assert _refund(refunded_to_date=30) == Decimal("30.00")
    assert _refund(refunded_to_date=10) == Decimal("20.00")  # never goes back down
    assert _refund(total=500) == Decimal("100.00")  # never more than the order


@given(
    st.decimals(min_value=0, max_value=10_000, places=2),
    st.decimals(min_value=0, max_value=10_000, places=2),
)
def test_a_statement_to_date_is_idempotent(to_date: Decimal, total: Decimal) -> None:
    facts = order_facts("Order Refunded", {"order_id": "o", "refunded_to_date": str(to_date)})
    assert facts is not None
    once = refunded_after(facts, total, Decimal(0))
    assert refunded_after(facts, total, once) == once <= total
    assert refund_status(total, once) in ("refunded", "partially_refunded")
