"""profiles: probabilistic de-duplication runs and the review queue

``dedupe_runs``: each batch or incremental run, the trained Fellegi-Sunter parameters it used
(so an incremental run scores new profiles with the same model) and what it did.
``match_candidates``: each candidate pair of unified profiles (``profile_a`` < ``profile_b``)
with its match probability and per-field explanation, and its fate: merged automatically
above the threshold, or queued for review in the grey zone and then approved (merged) or
rejected. The decision, who took it and when are kept so a rejected pair is not proposed again.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0017"
down_revision = "0016"
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
        "dedupe_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("started_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN, nullable=False),
        sa.Column("profiles", sa.Integer(), nullable=False),
        sa.Column("pairs", sa.BigInteger(), nullable=False),
        sa.Column("auto_merged", sa.Integer(), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("model", JSON, nullable=False),
        sa.Column("report", JSON, nullable=False),
        _workspace_fk("dedupe_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_dedupe_runs"),
    )
    op.create_index("ix_dedupe_runs_ws_started", "dedupe_runs", ["workspace_id", "started_at"])
    op.create_table(
        "match_candidates",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("profile_a", sa.String(length=36), nullable=False),
        sa.Column("profile_b", sa.String(length=36), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("match_weight", sa.Float(), nullable=False),
        sa.Column("explanation", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("found_at", WHEN, nullable=False),
        sa.Column("decided_at", WHEN, nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        _workspace_fk("match_candidates"),
        sa.PrimaryKeyConstraint("id", name="pk_match_candidates"),
        sa.UniqueConstraint(
            "workspace_id", "profile_a", "profile_b", name="uq_match_candidates_pair"
        ),
    )
    op.create_index(
        "ix_match_candidates_queue",
        "match_candidates",
        ["workspace_id", "status", "probability"],
    )
    op.create_index("ix_match_candidates_b", "match_candidates", ["workspace_id", "profile_b"])


def downgrade() -> None:
    op.drop_index("ix_match_candidates_b", table_name="match_candidates")
    op.drop_index("ix_match_candidates_queue", table_name="match_candidates")
    op.drop_table("match_candidates")
    op.drop_index("ix_dedupe_runs_ws_started", table_name="dedupe_runs")
    op.drop_table("dedupe_runs")
