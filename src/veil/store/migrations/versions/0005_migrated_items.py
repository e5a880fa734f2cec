"""What `veil migrate` brought over from a Custom Vision endpoint (so a re-run skips it).

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "migrated_items",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("source", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("target_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "kind", "source_id", name="uq_migrated_items_source"),
    )
    with op.batch_alter_table("migrated_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_migrated_items_project_id"), ["project_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("migrated_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_migrated_items_project_id"))
    op.drop_table("migrated_items")
