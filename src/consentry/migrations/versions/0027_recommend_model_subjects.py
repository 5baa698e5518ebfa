"""recommend: where each customer is in the stored models; artefacts stored as rows of blocks

``recommend_model_subjects (artefact_id, row_index, workspace_id, profile_id)``: each customer
a stored artefact holds and their row in it (``artefact_id`` is the manifest's, drawn at
training), indexed by ``(workspace_id, profile_id)``, so that an access request or an erasure
finds the versions holding a person without unpacking any artefact.

``recommend_model_blocks (model_id, member, block, workspace_id, data)``: the artefact of each
stored version as members of ``recommend.container`` (the per-customer arrays in blocks of
2,048 rows, every other array whole), each compressed on its own, one row each; every
member's length and SHA-256 is in the manifest's layout. An erasure reads and rewrites only
the rows of the blocks holding the person, whatever the model's size.
``recommend_models.artefact`` becomes nullable: NULL for a version stored as rows.

Every stored artefact (one ``numpy.savez_compressed`` file until now) is converted into its
member rows, given an ``artefact_id`` and its entries. One version at a time: seconds per
version at 100,000 customers. An artefact that cannot be read is left as it is (serving
refuses it as before; an erasure searches it by unpacking). The downgrade writes the
artefacts back as npz files.

Revision ID: 0027
Revises: 0026
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
MODELS = sa.table(
    "recommend_models",
    sa.column("id", sa.String()),
    sa.column("workspace_id", sa.String()),
    sa.column("manifest", JSON),
    sa.column("artefact", sa.LargeBinary()),
)
SUBJECTS = sa.table(
    "recommend_model_subjects",
    sa.column("artefact_id", sa.String()),
    sa.column("row_index", sa.Integer()),
    sa.column("workspace_id", sa.String()),
    sa.column("profile_id", sa.String()),
)
BLOCKS = sa.table(
    "recommend_model_blocks",
    sa.column("model_id", sa.String()),
    sa.column("member", sa.String()),
    sa.column("block", sa.Integer()),
    sa.column("workspace_id", sa.String()),
    sa.column("data", sa.LargeBinary()),
)
CHUNK = 50_000
Change = Callable[[sa.Connection, str, str, dict[str, Any], bytes | None], None]
log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    op.create_table(
        "recommend_model_subjects",
        sa.Column("artefact_id", sa.String(length=36), nullable=False),
        sa.Column("row_index", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("profile_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_recommend_model_subjects_workspace_id_workspaces",
        ),
        sa.PrimaryKeyConstraint("artefact_id", "row_index", name="pk_recommend_model_subjects"),
    )
    op.create_index(
        "ix_recommend_model_subjects_profile",
        "recommend_model_subjects",
        ["workspace_id", "profile_id"],
    )
    with op.batch_alter_table("recommend_models") as batch:
        batch.alter_column("artefact", existing_type=sa.LargeBinary(), nullable=True)
    op.create_table(
        "recommend_model_blocks",
        sa.Column("model_id", sa.String(length=36), nullable=False),
        sa.Column("member", sa.String(length=64), nullable=False),
        sa.Column("block", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["recommend_models.id"],
            name="fk_recommend_model_blocks_model_id_recommend_models",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_recommend_model_blocks_workspace_id_workspaces",
        ),
        sa.PrimaryKeyConstraint("model_id", "member", "block", name="pk_recommend_model_blocks"),
    )
    _each_model(_to_rows)


def downgrade() -> None:
    _each_model(_to_npz)
    op.drop_table("recommend_model_blocks")
    with op.batch_alter_table("recommend_models") as batch:
        batch.alter_column("artefact", existing_type=sa.LargeBinary(), nullable=False)
    op.drop_index("ix_recommend_model_subjects_profile", table_name="recommend_model_subjects")
    op.drop_table("recommend_model_subjects")


def _each_model(change: Change) -> None:
    """``change(bind, id, workspace_id, manifest, artefact)`` on every stored version, one at
    a time (an artefact can be large)."""
    bind = op.get_bind()
    ids = [row[0] for row in bind.execute(sa.select(MODELS.c.id).order_by(MODELS.c.id))]
    for model_id in ids:
        found = bind.execute(
            sa.select(MODELS.c.workspace_id, MODELS.c.manifest, MODELS.c.artefact).where(
                MODELS.c.id == model_id
            )
        ).one()
        blob = None if found[2] is None else bytes(found[2])
        change(bind, model_id, found[0], dict(found[1]), blob)


def _to_rows(
    bind: sa.Connection,
    model_id: str,
    workspace_id: str,
    manifest: dict[str, Any],
    blob: bytes | None,
) -> None:
    from consentry.recommend import container
    from consentry.recommend.artefact import ArtefactError

    try:
        if blob is None:
            raise ArtefactError("no artefact")
        manifest, members = container.convert(manifest, blob)
        ids = container.unpack_members(manifest, members, ("profile_ids",))["profile_ids"]
    except (ArtefactError, KeyError, TypeError) as exc:
        # left as it is: serving refuses it as before, an erasure searches it by unpacking
        log.warning("recommend model %s: artefact not converted (%s)", model_id, exc)
        return
    artefact_id = str(manifest.get("artefact_id") or uuid.uuid4())
    manifest["artefact_id"] = artefact_id
    bind.execute(
        sa.insert(BLOCKS),
        [
            {
                "model_id": model_id,
                "member": name,
                "block": block,
                "workspace_id": workspace_id,
                "data": data,
            }
            for (name, block), data in members.items()
        ],
    )
    bind.execute(
        sa.update(MODELS).where(MODELS.c.id == model_id).values(manifest=manifest, artefact=None)
    )
    rows = np.nonzero(ids != "")[0].tolist()
    names = ids.tolist()
    for start in range(0, len(rows), CHUNK):
        bind.execute(
            sa.insert(SUBJECTS),
            [
                {
                    "artefact_id": artefact_id,
                    "row_index": i,
                    "workspace_id": workspace_id,
                    "profile_id": names[i],
                }
                for i in rows[start : start + CHUNK]
            ],
        )


def _to_npz(
    bind: sa.Connection,
    model_id: str,
    _workspace_id: str,
    manifest: dict[str, Any],
    blob: bytes | None,
) -> None:
    from consentry.recommend import container

    if container.is_rows(manifest):
        members = {
            (str(name), int(block)): bytes(data)
            for name, block, data in bind.execute(
                sa.select(BLOCKS.c.member, BLOCKS.c.block, BLOCKS.c.data).where(
                    BLOCKS.c.model_id == model_id
                )
            )
        }
        manifest, blob = container.to_npz(manifest, members)
        bind.execute(sa.delete(BLOCKS).where(BLOCKS.c.model_id == model_id))
    elif blob is not None and container.is_blocks(blob):  # the one-blob layout
        manifest, members = container.convert(manifest, blob)
        manifest, blob = container.to_npz(manifest, members)
    manifest.pop("artefact_id", None)
    bind.execute(
        sa.update(MODELS).where(MODELS.c.id == model_id).values(manifest=manifest, artefact=blob)
    )
