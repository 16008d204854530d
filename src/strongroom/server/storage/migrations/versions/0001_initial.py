"""Initial schema: tenants, API keys, barrier, keyring, secrets, versions, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from strongroom.server.storage.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Name = sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql")
Id = sa.String(36)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", Id, primary_key=True),
        sa.Column("name", Name, nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", Id, primary_key=True),
        sa.Column("tenant_id", Id, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("hint", sa.String(16), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "barrier",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("verifier", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "keyring",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("retired_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "secrets",
        sa.Column("id", Id, primary_key=True),
        sa.Column("tenant_id", Id, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("name", Name, nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("metadata_json", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_secrets_tenant_name"),
    )
    op.create_table(
        "secret_versions",
        sa.Column("secret_id", Id, sa.ForeignKey("secrets.id"), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("tenant_id", Id, nullable=False),
        sa.Column("kek_id", sa.Integer(), nullable=False),
        sa.Column("wrapped_dek", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", Id, nullable=True),
    )
    op.create_index("ix_secret_versions_kek", "secret_versions", ["kek_id"])
    op.create_table(
        "secret_metadata_entries",
        sa.Column("secret_id", Id, sa.ForeignKey("secrets.id"), primary_key=True),
        sa.Column("entry_hash", sa.LargeBinary(32), primary_key=True),
        sa.Column("tenant_id", Id, nullable=False),
        sa.Column("name", Name, nullable=False),
    )
    op.create_index(
        "ix_secret_metadata_lookup",
        "secret_metadata_entries",
        ["tenant_id", "entry_hash", "name"],
    )
    op.create_table(
        "audit_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("tenant_id", Id, nullable=True),
        sa.Column("key_id", Id, nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("secret_name", Name, nullable=True),
        sa.Column("secret_id", Id, nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("client_addr", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index("ix_audit_tenant", "audit_events", ["tenant_id", "id"])
    op.create_index("ix_audit_tenant_secret", "audit_events", ["tenant_id", "secret_name", "id"])
    op.create_index("ix_audit_tenant_action", "audit_events", ["tenant_id", "action", "id"])
