"""The secret lifecycle: a recovery window after delete, expiry, scheduled rotation.

- ``secrets.deleted_at`` and ``purge_after``: a deleted secret stays, invisible, until it
  is restored or purged (at ``purge_after``, or at once with ``force``). Its metadata
  entries are removed while it is deleted (so no metadata walk meets it) and written
  again by a restore.
- Names are unique among a tenant's *live* secrets: ``uq_secrets_tenant_name`` becomes
  the partial unique index ``uq_secrets_live_name``. A create or put of a deleted
  secret's name is refused by the service (409, saying it can be restored); a rename may
  take the name (the documented rotation recipe deletes, then renames into place), and
  the deleted one's restore then waits until the name is free again.
- ``secrets.expires_at``: after it, reads of the value answer 410 ``expired``.
- ``secrets.rotation_json`` (JSON: the period, the rotation task, the key it runs for),
  ``last_rotated_at`` and ``next_rotation_at`` (what the scheduler looks for);
  ``executions.rotation_of``: the secret a scheduled rotation started the run for.
- Partial indexes: the live names of a tenant in order (what a list walks), and the
  times the scheduler and the expiry listing look up. Rows without the time are not in
  them, so they cost nothing for the secrets that never use the feature. On SQLite the
  constraint change rebuilds the table (Alembic's batch mode copies it).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from strongroom.server.storage.schema import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _partial_index(name: str, columns: list[str], condition: str, unique: bool = False) -> None:
    op.create_index(
        name,
        "secrets",
        columns,
        unique=unique,
        sqlite_where=sa.text(condition),
        postgresql_where=sa.text(condition),
    )


def upgrade() -> None:
    with op.batch_alter_table("secrets") as batch:
        batch.add_column(sa.Column("deleted_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("purge_after", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("expires_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("rotation_json", sa.Text(), nullable=True))
        batch.add_column(sa.Column("last_rotated_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("next_rotation_at", UTCDateTime(), nullable=True))
        batch.drop_constraint("uq_secrets_tenant_name", type_="unique")
    op.add_column("executions", sa.Column("rotation_of", sa.String(36), nullable=True))
    _partial_index("uq_secrets_live_name", ["tenant_id", "name"], "deleted_at IS NULL", True)
    _partial_index("ix_secrets_purge", ["purge_after"], "purge_after IS NOT NULL")
    _partial_index("ix_secrets_expiring", ["tenant_id", "expires_at"], "expires_at IS NOT NULL")
    _partial_index("ix_secrets_rotation_due", ["next_rotation_at"], "next_rotation_at IS NOT NULL")


def downgrade() -> None:
    for index in (
        "ix_secrets_rotation_due",
        "ix_secrets_expiring",
        "ix_secrets_purge",
        "uq_secrets_live_name",
    ):
        op.drop_index(index, table_name="secrets")
    op.execute(
        "DELETE FROM secret_metadata_entries WHERE secret_id IN "
        "(SELECT id FROM secrets WHERE deleted_at IS NOT NULL)"
    )
    op.execute(
        "DELETE FROM secret_versions WHERE secret_id IN "
        "(SELECT id FROM secrets WHERE deleted_at IS NOT NULL)"
    )
    op.execute("DELETE FROM secrets WHERE deleted_at IS NOT NULL")
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("rotation_of")
    with op.batch_alter_table("secrets") as batch:
        batch.create_unique_constraint("uq_secrets_tenant_name", ["tenant_id", "name"])
        for column in (
            "next_rotation_at",
            "last_rotated_at",
            "rotation_json",
            "expires_at",
            "purge_after",
            "deleted_at",
        ):
            batch.drop_column(column)
