"""Access a team can adopt: keys with rules, expiry and use times; the key named in the
trail; an online master-key rekey; browser sessions.

- ``api_keys``: ``rule`` (JSON text: the secret-name globs and metadata selector that
  bound the key's reach; NULL reaches every secret of the tenant), ``expires_at``,
  ``last_used_at`` (written at most once a minute per key, not per request) and
  ``created_by`` (the key that issued it; NULL for one made from a shell).
- ``audit_events.key_name``: the key's name when the event happened, so renaming or
  revoking a key later does not rewrite history. ``ix_audit_tenant_key`` serves the
  trail's ``key_id`` filter.
- ``barrier.next_sealed`` and ``keyring.wrapped_next``: during a rekey, each row wrapped
  under the incoming master key too, so that processes holding either key keep working
  until every one of them holds the new one.
- ``barrier_holders``: the processes that have the barrier open, which master keys each
  holds, and when each was last seen; a rekey finishes only when every live one holds
  the new key.
- ``sessions``: a browser's short-lived stand-in for an API key, stored as the hash of
  its token.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

from strongroom.server.storage.schema import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Id = sa.String(36)


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("rule", sa.Text(), nullable=True))
        batch.add_column(sa.Column("expires_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("last_used_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("created_by", Id, nullable=True))
    op.add_column("audit_events", sa.Column("key_name", sa.String(200), nullable=True))
    op.create_index("ix_audit_tenant_key", "audit_events", ["tenant_id", "key_id", "id"])
    op.add_column("barrier", sa.Column("next_sealed", sa.LargeBinary(), nullable=True))
    op.add_column("keyring", sa.Column("wrapped_next", sa.LargeBinary(), nullable=True))
    op.create_table(
        "barrier_holders",
        sa.Column("process_id", sa.String(64), primary_key=True),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("master_key_ids", sa.Text(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("seen_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", Id, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("key_id", Id, sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Index("ix_sessions_key", "key_id"),
    )
