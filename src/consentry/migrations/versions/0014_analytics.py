"""analytics: computed customer traits, runs, marketing spend

``customer_scores``: RFM scores and segment, P(alive), expected orders, CLV and churn risk per
unified profile from the latest run; ``analytics_runs``: each run and its model report;
``marketing_spend``: spend per channel and month, for customer acquisition cost.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
WHEN = sa.DateTime(timezone=True)


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id"], ["workspaces.id"], name=f"fk_{table}_workspace_id_workspaces"
    )


def upgrade() -> None:
    op.create_table(
        "customer_scores",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("profile_id", sa.String(length=36), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.Column("first_order_at", WHEN, nullable=False),
        sa.Column("last_order_at", WHEN, nullable=False),
        sa.Column("recency_days", sa.Integer(), nullable=False),
        sa.Column("r", sa.SmallInteger(), nullable=False),
        sa.Column("f", sa.SmallInteger(), nullable=False),
        sa.Column("m", sa.SmallInteger(), nullable=False),
        sa.Column("rfm_segment", sa.String(length=32), nullable=False),
        sa.Column("p_alive", sa.Float(), nullable=True),
        sa.Column("expected_orders_90d", sa.Float(), nullable=True),
        sa.Column("clv_cents", sa.BigInteger(), nullable=True),
        sa.Column("churn_risk", sa.Float(), nullable=True),
        sa.Column("churn_reason", sa.String(length=300), nullable=True),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("computed_at", WHEN, nullable=False),
        _workspace_fk("customer_scores"),
        sa.PrimaryKeyConstraint("workspace_id", "profile_id", name="pk_customer_scores"),
    )
    op.create_index(
        "ix_customer_scores_segment", "customer_scores", ["workspace_id", "rfm_segment"]
    )
    op.create_table(
        "analytics_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("started_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN, nullable=False),
        sa.Column("as_of", WHEN, nullable=False),
        sa.Column("engine", sa.String(length=16), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("report", JSON, nullable=False),
        _workspace_fk("analytics_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_analytics_runs"),
    )
    op.create_index(
        "ix_analytics_runs_ws_started", "analytics_runs", ["workspace_id", "started_at"]
    )
    op.create_table(
        "marketing_spend",
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("channel", sa.String(length=50), nullable=False),
        sa.Column("cents", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        _workspace_fk("marketing_spend"),
        sa.PrimaryKeyConstraint("workspace_id", "month", "channel", name="pk_marketing_spend"),
    )


def downgrade() -> None:
    op.drop_table("marketing_spend")
    op.drop_index("ix_analytics_runs_ws_started", table_name="analytics_runs")
    op.drop_table("analytics_runs")
    op.drop_index("ix_customer_scores_segment", table_name="customer_scores")
    op.drop_table("customer_scores")
