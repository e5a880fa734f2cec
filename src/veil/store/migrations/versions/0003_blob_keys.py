"""Per-blob keys: `blob_keys` (a blob's key wrapped by its project's DEK) and the triggers that delete a key with
the record owning its blob, so deleting one image, prediction, iteration or export shreds its bytes on every path.

Blobs written before this revision (format 1) have no row here and stay readable with their project's DEK.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWNER_TABLES = ("images", "predictions", "iterations", "exports")

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION veil_shred_blob_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM blob_keys WHERE owner_id = OLD.id;
  RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "blob_keys",
        sa.Column("blob_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("blob_id"),
    )
    op.create_index("ix_blob_keys_project_id", "blob_keys", ["project_id"])
    op.create_index("ix_blob_keys_owner_id", "blob_keys", ["owner_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for table in OWNER_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_shred_blob_keys AFTER DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION veil_shred_blob_keys()"
            )
    else:  # SQLite: foreign-key cascades (a project's rows) fire these too
        for table in OWNER_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_shred_blob_keys AFTER DELETE ON {table} FOR EACH ROW "
                "BEGIN DELETE FROM blob_keys WHERE owner_id = OLD.id; END"
            )


def downgrade() -> None:
    for table in OWNER_TABLES:
        op.execute(
            f"DROP TRIGGER IF EXISTS {table}_shred_blob_keys"
            + (f" ON {table}" if op.get_bind().dialect.name == "postgresql" else "")
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS veil_shred_blob_keys()")
    op.drop_index("ix_blob_keys_owner_id", table_name="blob_keys")
    op.drop_index("ix_blob_keys_project_id", table_name="blob_keys")
    op.drop_table("blob_keys")
