"""A cart converts when its order completes, on both stores: the order names the cart, or only
the checkout that was started from it (Segment e-commerce spec v2), in one batch or in two."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, func, select

from consentry.commerce import service as commerce
from consentry.commerce.tables import CartCheckoutRow, CartRow
from consentry.platform.db import Database
from tests.support.segment import track
from tests.support.store import send

T0 = datetime(2026, 3, 2, 10, tzinfo=UTC)
LINE = {"product_id": "p1", "price": 20, "quantity": 1}


def _event(name: str, minutes: int, **props: Any) -> commerce.CommerceEvent:
    return commerce.CommerceEvent("prof-1", name, props, T0 + timedelta(minutes=minutes))


def _apply(db: Database, workspace: str, *events: commerce.CommerceEvent) -> None:
    """One batch of events, in its own transaction (as one chunk of the processor)."""
    with db.write() as session:
        commerce.apply_events(session=session, workspace_id=workspace, events=events)


def _added(cart: str, minutes: int = 0) -> commerce.CommerceEvent:
    return _event("Product Added", minutes, cart_id=cart, **LINE)


def _checkout(cart: str, checkout: str, minutes: int) -> commerce.CommerceEvent:
    return _event("Checkout Started", minutes, cart_id=cart, checkout_id=checkout, value=20)


def _order(order: str, minutes: int, **ids: str) -> commerce.CommerceEvent:
    return _event("Order Completed", minutes, order_id=order, total=21.6, products=[LINE], **ids)


def _carts(db: Database, workspace: str) -> dict[str, tuple[str, str | None]]:
    with db.read() as session:
        rows = session.execute(
            select(CartRow.cart_id, CartRow.status, CartRow.order_id).where(
                CartRow.workspace_id == workspace
            )
        )
        return {cart: (status, order) for cart, status, order in rows}


def _links(db: Database, workspace: str) -> dict[str, str]:
    with db.read() as session:
        rows = session.execute(
            select(CartCheckoutRow.checkout_id, CartCheckoutRow.cart_id).where(
                CartCheckoutRow.workspace_id == workspace
            )
        )
        return dict(rows.all())


def test_an_order_naming_only_its_checkout_converts_the_cart_in_a_later_batch(
    db: Database, workspace: str
) -> None:
    _apply(db, workspace, _added("cart-a"), _checkout("cart-a", "chk-a", 5))
    assert _carts(db, workspace) == {"cart-a": ("checkout", None)}
    assert _links(db, workspace) == {"chk-a": "cart-a"}
    _apply(db, workspace, _order("o-a", 9, checkout_id="chk-a"))
    assert _carts(db, workspace) == {"cart-a": ("converted", "o-a")}


def test_an_order_naming_only_its_checkout_converts_the_cart_in_the_same_batch(
    db: Database, workspace: str
) -> None:
    _apply(
        db,
        workspace,
        _added("cart-a"),
        _checkout("cart-a", "chk-a", 5),
        _order("o-a", 9, checkout_id="chk-a"),
        _added("cart-b", 1),  # another shopper's cart stays abandoned
    )
    assert _carts(db, workspace) == {
        "cart-a": ("converted", "o-a"),
        "cart-b": ("open", None),
    }
    with db.read() as session:
        assert (
            commerce.abandoned_carts(
                session=session, workspace_id=workspace, before=T0 + timedelta(days=1)
            )
            == 1
        )


def test_an_order_naming_its_cart_converts_it(db: Database, workspace: str) -> None:
    _apply(db, workspace, _added("cart-c"))
    # the order names the cart and a checkout never seen: the cart decides
    _apply(db, workspace, _order("o-c", 3, cart_id="cart-c", checkout_id="chk-unknown"))
    assert _carts(db, workspace) == {"cart-c": ("converted", "o-c")}
    # a cart id that names no cart falls back to the checkout's cart
    _apply(db, workspace, _added("cart-d", 4), _checkout("cart-d", "chk-d", 5))
    _apply(db, workspace, _order("o-d", 8, cart_id="cart-gone", checkout_id="chk-d"))
    assert _carts(db, workspace)["cart-d"] == ("converted", "o-d")


def test_an_order_before_any_cart_is_stored_and_converts_nothing(
    db: Database, workspace: str
) -> None:
    _apply(db, workspace, _order("o-early", 0, checkout_id="chk-late"))
    _apply(db, workspace, _order("o-early-2", 0, cart_id="cart-none"))
    with db.read() as session:
        assert commerce.get_order(session=session, workspace_id=workspace, order_id="o-early")
        assert commerce.counts(session=session, workspace_id=workspace)["carts"] == 0
    # its checkout, arriving later, opens a cart that stays in checkout
    _apply(db, workspace, _added("cart-late", 1), _checkout("cart-late", "chk-late", 2))
    assert _carts(db, workspace) == {"cart-late": ("checkout", None)}


def test_a_cart_with_two_checkouts_converts_by_either(db: Database, workspace: str) -> None:
    # cart-e: a checkout abandoned, a second one started days later; the first one completes
    _apply(db, workspace, _added("cart-e"), _checkout("cart-e", "chk-e1", 2))
    _apply(db, workspace, _checkout("cart-e", "chk-e2", 3 * 24 * 60))
    assert _links(db, workspace) == {"chk-e1": "cart-e", "chk-e2": "cart-e"}
    _apply(db, workspace, _order("o-e", 3 * 24 * 60 + 5, checkout_id="chk-e1"))
    # cart-f: the same, and the second checkout completes, in the batch that started it
    _apply(db, workspace, _added("cart-f"), _checkout("cart-f", "chk-f1", 2))
    _apply(
        db,
        workspace,
        _checkout("cart-f", "chk-f2", 60),
        _order("o-f", 65, checkout_id="chk-f2"),
        _order("o-f2", 66, checkout_id="chk-f1"),  # a cart converts once
    )
    assert _carts(db, workspace) == {
        "cart-e": ("converted", "o-e"),
        "cart-f": ("converted", "o-f"),
    }


def test_checkout_steps_link_the_checkout_through_ingestion(db: Database, workspace: str) -> None:
    """A Checkout Started without a cart id keys a cart by its checkout; a later step that
    names the real cart links the checkout to it. Each message its own batch."""
    ids = {"anonymousId": "anon-1"}
    stamp = T0.isoformat()
    for message in (
        track("Product Added", properties={"cart_id": "cart-g", **LINE}, timestamp=stamp, **ids),
        track(
            "Checkout Step Viewed",
            properties={"checkout_id": "chk-g", "cart_id": "cart-g", "step": 1},
            timestamp=stamp,
            **ids,
        ),
        track("Payment Info Entered", properties={"checkout_id": "chk-g", "step": 2}, **ids),
        track("Order Completed", properties={"order_id": "o-g", "checkout_id": "chk-g"}, **ids),
        # the older way: a checkout tracked without its cart is a cart keyed by the checkout
        track("Checkout Started", properties={"checkout_id": "chk-h", **LINE}, **ids),
        track("Order Completed", properties={"order_id": "o-h", "checkout_id": "chk-h"}, **ids),
    ):
        send(db, workspace, message)
    assert _carts(db, workspace) == {
        "cart-g": ("converted", "o-g"),
        "chk-h": ("converted", "o-h"),
    }


@contextmanager
def _statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def test_a_batch_loads_its_carts_and_checkouts_in_one_query_each(
    db: Database, workspace: str
) -> None:
    started: list[commerce.CommerceEvent] = []
    for i in range(40):
        started += [_added(f"cart-{i}", i), _checkout(f"cart-{i}", f"chk-{i}", i + 1)]
    _apply(db, workspace, *started)
    orders = [_order(f"o-{i}", 100 + i, checkout_id=f"chk-{i}") for i in range(0, 40, 2)]
    with _statements(db) as seen:
        _apply(db, workspace, *orders)
    selects: Mapping[str, int] = {
        table: sum(
            1 for s in seen if s.lstrip().upper().startswith("SELECT") and f"FROM {table}" in s
        )
        for table in ("cart_checkouts", "carts")
    }
    assert selects == {"cart_checkouts": 1, "carts": 1}
    statuses = [status for status, _ in _carts(db, workspace).values()]
    assert statuses.count("converted") == 20 and statuses.count("checkout") == 20


def test_erasing_a_cart_takes_its_checkouts_with_it(db: Database, workspace: str) -> None:
    _apply(db, workspace, _added("cart-x"), _checkout("cart-x", "chk-x", 1))
    with db.write() as session:
        erased = commerce.erase_customer(
            session=session, workspace_id=workspace, profile_ids=["prof-1"], hold=None, now=T0
        )
    assert erased.carts == 1
    with db.read() as session:
        left = session.scalar(
            select(func.count())
            .select_from(CartCheckoutRow)
            .where(CartCheckoutRow.workspace_id == workspace)
        )
    assert left == 0
    _apply(db, workspace, _order("o-x", 5, checkout_id="chk-x"))  # no cart, no crash
    assert _carts(db, workspace) == {}
