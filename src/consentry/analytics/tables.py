"""Tables of the analytics capability. Only the analytics services touch them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from consentry.platform.db import Base, JSONType, UTCDateTime


class CustomerScoreRow(Base):
    """The computed traits of one unified profile from the latest analytics run.

    Money is in cents of the workspace's reporting currency; model outputs are null where the
    models could not be fitted (too little history: RFM only)."""

    __tablename__ = "customer_scores"
    __table_args__ = (Index("ix_customer_scores_segment", "workspace_id", "rfm_segment"),)

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    profile_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    orders: Mapped[int] = mapped_column(Integer)
    total_cents: Mapped[int] = mapped_column(BigInteger)
    first_order_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_order_at: Mapped[datetime] = mapped_column(UTCDateTime())
    recency_days: Mapped[int] = mapped_column(Integer)
    r: Mapped[int] = mapped_column(SmallInteger)
    f: Mapped[int] = mapped_column(SmallInteger)
    m: Mapped[int] = mapped_column(SmallInteger)
    rfm_segment: Mapped[str] = mapped_column(String(32))
    p_alive: Mapped[float | None] = mapped_column(Float)
    expected_orders_90d: Mapped[float | None] = mapped_column(Float)
    clv_cents: Mapped[int | None] = mapped_column(BigInteger)
    churn_risk: Mapped[float | None] = mapped_column(Float)
    churn_reason: Mapped[str | None] = mapped_column(String(300))
    run_id: Mapped[str] = mapped_column(String(36))
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AnalyticsRunRow(Base):
    """One analytics run: when, on which engine, as of when, and what the models found."""

    __tablename__ = "analytics_runs"
    __table_args__ = (Index("ix_analytics_runs_ws_started", "workspace_id", "started_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    as_of: Mapped[datetime] = mapped_column(UTCDateTime())
    engine: Mapped[str] = mapped_column(String(16))
    customers: Mapped[int] = mapped_column(Integer)
    orders: Mapped[int] = mapped_column(Integer)
    report: Mapped[dict[str, Any]] = mapped_column(JSONType)


class MarketingSpendRow(Base):
    """Marketing spend of one channel in one calendar month (``YYYY-MM``), for acquisition cost."""

    __tablename__ = "marketing_spend"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    channel: Mapped[str] = mapped_column(String(50), primary_key=True)
    cents: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
