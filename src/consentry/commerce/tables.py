"""Tables of the commerce capability. Only ``commerce.service`` touches them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from consentry.platform.db import Base, JSONType, UTCDateTime
from consentry.profiles.tables import BigId

Money = Numeric(14, 2, asdecimal=True)


class ProductRow(Base):
    __tablename__ = "products"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    sku: Mapped[str | None] = mapped_column(String(200))
    name: Mapped[str | None] = mapped_column(String(500))
    category: Mapped[str | None] = mapped_column(String(200))
    brand: Mapped[str | None] = mapped_column(String(200))
    price: Mapped[Decimal | None] = mapped_column(Money)
    url: Mapped[str | None] = mapped_column(String(2000))
    image_url: Mapped[str | None] = mapped_column(String(2000))
    # available or not, where product events or imports say so (in_stock / available)
    in_stock: Mapped[bool | None] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CartRow(Base):
    __tablename__ = "carts"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    cart_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    profile_id: Mapped[str | None] = mapped_column(String(36), index=True)
    status: Mapped[str] = mapped_column(String(20))  # open | checkout | converted
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    value: Mapped[Decimal | None] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    order_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CartCheckoutRow(Base):
    """Which cart a checkout was started from: the link an ``Order Completed`` that names only
    its ``checkout_id`` is converted through. A cart may have several checkouts (one abandoned,
    a later one completed); a checkout belongs to one cart. Goes with its cart (cascade)."""

    __tablename__ = "cart_checkouts"
    __table_args__ = (
        ForeignKeyConstraint(
            ["workspace_id", "cart_id"],
            ["carts.workspace_id", "carts.cart_id"],
            ondelete="CASCADE",
        ),
        Index("ix_cart_checkouts_cart", "workspace_id", "cart_id"),
    )

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    checkout_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    cart_id: Mapped[str] = mapped_column(String(200))


class OrderRow(Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("workspace_id", "order_id"),
        Index("ix_orders_ws_placed", "workspace_id", "placed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    order_id: Mapped[str] = mapped_column(String(200))
    profile_id: Mapped[str | None] = mapped_column(String(36), index=True)
    status: Mapped[str] = mapped_column(String(24))
    total: Mapped[Decimal] = mapped_column(Money)
    revenue: Mapped[Decimal | None] = mapped_column(Money)
    shipping: Mapped[Decimal | None] = mapped_column(Money)
    tax: Mapped[Decimal | None] = mapped_column(Money)
    discount: Mapped[Decimal | None] = mapped_column(Money)
    refunded: Mapped[Decimal] = mapped_column(Money, default=Decimal("0"))
    coupon: Mapped[str | None] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    channel: Mapped[str | None] = mapped_column(String(50))
    source: Mapped[str] = mapped_column(String(20))  # event | import
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OrderItemRow(Base):
    __tablename__ = "order_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_pk: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    product_id: Mapped[str] = mapped_column(String(200))
    sku: Mapped[str | None] = mapped_column(String(200))
    name: Mapped[str | None] = mapped_column(String(500))
    category: Mapped[str | None] = mapped_column(String(200))
    price: Mapped[Decimal | None] = mapped_column(Money)
    quantity: Mapped[int] = mapped_column(Integer)
