"""Each secret's usage policy: where tasks may send it, which tools may use it, who reads it.

One nullable text column of JSON (``SecretPolicy.to_json``). NULL is the default policy,
which restricts nothing: every secret that exists before this migration keeps behaving
exactly as it did, and the column costs nothing for the secrets that never get a policy.
JSON text rather than three columns: the policy is read and written whole, with its
secret's row, and never filtered on.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("secrets", sa.Column("policy_json", sa.Text(), nullable=True))
