"""Data keys under a KEK, in key order: rotation's batches no longer rescan finished rows.

Rotation asks for the next versions still under a retiring KEK, ordered by (secret id,
version). With an index on ``kek_id`` alone, every batch sorted all the rows left
(SQLite), or walked the primary key past every row already rewrapped (PostgreSQL): a
pass over N versions cost on the order of N squared. With the order in the index, each
batch reads only its own rows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_secret_versions_kek", "secret_versions")
    op.create_index("ix_secret_versions_kek", "secret_versions", ["kek_id", "secret_id", "version"])
