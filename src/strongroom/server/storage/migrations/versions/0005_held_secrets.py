"""Destinations that may hold a secret: a task sent it there as data.

A database a task wrote a secret's value into answers with it in a later run that never
read the secret; this table is how that later answer is still marked. One row per tenant,
destination and secret, written before the value is sent; the destination is stored as an
HMAC (``Keyring.fingerprint``), since a host may itself be a secret.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

from strongroom.server.storage.schema import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.String(36)
Name = sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "held_secrets",
        sa.Column("tenant_id", Id, sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("destination", sa.String(64), primary_key=True),
        sa.Column("secret_name", Name, primary_key=True),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
    )
