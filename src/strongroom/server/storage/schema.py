"""Table definitions shared by both storage backends.

Migrations under ``migrations/versions`` are the source of truth for what the database
holds; ``tests/test_migrations.py`` checks that these definitions and the migrated schema
agree, so the two cannot drift.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData()

# Names sort by code point on both backends: PostgreSQL's default collation would order
# "Zeta" and "alpha" differently from SQLite.
Name = sa.String(128).with_variant(sa.String(128, collation="C"), "postgresql")
Id = sa.String(36)
AuditId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(sa.TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite keeps no offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def _where(condition: str) -> dict[str, Any]:
    """A partial index's condition, for both backends."""
    return {"sqlite_where": sa.text(condition), "postgresql_where": sa.text(condition)}


tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("name", Name, nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("tenant_id", Id, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("hint", sa.String(16), nullable=False),
    sa.Column("scopes", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    # JSON of the key's ResourceRule (auth.py); NULL reaches every secret of the tenant.
    sa.Column("rule", sa.Text(), nullable=True),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    # Written at most once a minute per key (see api/deps.py), not on every request.
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.Column("created_by", Id, nullable=True),
)

# The barrier: ciphertexts only the right master key opens, one per row (the rows are
# keyring.py's BarrierRow).
barrier = sa.Table(
    "barrier",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("verifier", sa.LargeBinary(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # During a rekey: the same plaintext sealed under the incoming master key.
    sa.Column("next_sealed", sa.LargeBinary(), nullable=True),
)

# Key-encryption keys, each stored wrapped by the master key.
keyring = sa.Table(
    "keyring",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("retired_at", UTCDateTime(), nullable=True),
    # During a rekey: the KEK wrapped under the incoming master key.
    sa.Column("wrapped_next", sa.LargeBinary(), nullable=True),
)

# The processes that have the barrier open, and which master keys (by id, never the key)
# each holds; a rekey finishes only when every live one holds the new key.
barrier_holders = sa.Table(
    "barrier_holders",
    metadata,
    sa.Column("process_id", sa.String(64), primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("master_key_ids", sa.Text(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("seen_at", UTCDateTime(), nullable=False),
)

# Which process runs executions under which executor id (storage/executors.py): one live
# claim per id, so two processes never resume each other's executions.
engine_executors = sa.Table(
    "engine_executors",
    metadata,
    sa.Column("executor_id", sa.String(128), primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("seen_at", UTCDateTime(), nullable=False),
)

secrets = sa.Table(
    "secrets",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("tenant_id", Id, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("name", Name, nullable=False),
    sa.Column("description", sa.Text(), nullable=True),
    sa.Column("metadata_json", sa.Text(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # The usage policy as JSON (SecretPolicy.to_json); NULL is the default, which
    # restricts nothing (migration 0004).
    sa.Column("policy_json", sa.Text(), nullable=True),
    # The lifecycle (migration 0007): a deleted secret waits for its restore or purge
    # with its name reserved; expiry; the rotation policy as JSON and its times.
    sa.Column("deleted_at", UTCDateTime(), nullable=True),
    sa.Column("purge_after", UTCDateTime(), nullable=True),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Column("rotation_json", sa.Text(), nullable=True),
    sa.Column("last_rotated_at", UTCDateTime(), nullable=True),
    sa.Column("next_rotation_at", UTCDateTime(), nullable=True),
    # Partial: only the rows each serves. Names are unique among the live secrets (a list
    # walks them in order); a deleted secret's name is held back by the service.
    sa.Index(
        "uq_secrets_live_name", "tenant_id", "name", unique=True, **_where("deleted_at IS NULL")
    ),
    sa.Index("ix_secrets_purge", "purge_after", **_where("purge_after IS NOT NULL")),
    sa.Index("ix_secrets_expiring", "tenant_id", "expires_at", **_where("expires_at IS NOT NULL")),
    sa.Index(
        "ix_secrets_rotation_due", "next_rotation_at", **_where("next_rotation_at IS NOT NULL")
    ),
)

secret_versions = sa.Table(
    "secret_versions",
    metadata,
    sa.Column("secret_id", Id, sa.ForeignKey("secrets.id"), primary_key=True),
    sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("tenant_id", Id, nullable=False),
    sa.Column("kek_id", sa.Integer(), nullable=False),
    sa.Column("wrapped_dek", sa.LargeBinary(), nullable=False),
    sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", Id, nullable=True),
    # In key order within a KEK: rotation takes the next batch still under an old KEK.
    sa.Index("ix_secret_versions_kek", "kek_id", "secret_id", "version"),
)

# One row per top-level metadata entry, keyed by a hash of (key, canonical JSON value), so
# a containment filter walks an index in name order instead of scanning every secret.
secret_metadata_entries = sa.Table(
    "secret_metadata_entries",
    metadata,
    sa.Column("secret_id", Id, sa.ForeignKey("secrets.id"), primary_key=True),
    sa.Column("entry_hash", sa.LargeBinary(32), primary_key=True),
    sa.Column("tenant_id", Id, nullable=False),
    sa.Column("name", Name, nullable=False),
    sa.Index("ix_secret_metadata_lookup", "tenant_id", "entry_hash", "name"),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", AuditId, primary_key=True, autoincrement=True),
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
    # The key's name when the event happened (a later rename does not rewrite history).
    sa.Column("key_name", sa.String(200), nullable=True),
    sa.Index("ix_audit_tenant", "tenant_id", "id"),
    sa.Index("ix_audit_tenant_secret", "tenant_id", "secret_name", "id"),
    sa.Index("ix_audit_tenant_action", "tenant_id", "action", "id"),
    sa.Index("ix_audit_tenant_key", "tenant_id", "key_id", "id"),
)

# -- tasks and executions ---------------------------------------------------------------------
# Step definitions, inputs and outputs are JSON text. Outputs and errors are stored redacted;
# a step's full result (which may hold secret-derived values) only as ciphertext, sealed by
# the keyring like a secret value, and wiped when the execution ends.
tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("tenant_id", Id, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("description", sa.Text(), nullable=True),
    sa.Column("steps_json", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_tasks_tenant", "tenant_id", "id"),
)

executions = sa.Table(
    "executions",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("tenant_id", Id, sa.ForeignKey("tenants.id"), nullable=False),
    # No foreign key: deleting a task keeps the record of its runs.
    sa.Column("task_id", Id, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    # The task's steps when the execution was created: a run never sees a later change.
    sa.Column("steps_json", sa.Text(), nullable=False),
    sa.Column("input_json", sa.Text(), nullable=True),
    sa.Column("output_json", sa.Text(), nullable=True),
    sa.Column("error_json", sa.Text(), nullable=True),
    sa.Column("created_by", Id, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # The secret a scheduled rotation started this run for (migration 0007).
    sa.Column("rotation_of", Id, nullable=True),
    sa.Index("ix_executions_tenant", "tenant_id", "id"),
    sa.Index("ix_executions_tenant_task", "tenant_id", "task_id", "id"),
    sa.Index("ix_executions_status", "status"),
)

execution_steps = sa.Table(
    "execution_steps",
    metadata,
    sa.Column("execution_id", Id, sa.ForeignKey("executions.id"), primary_key=True),
    sa.Column("idx", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("output_json", sa.Text(), nullable=True),
    sa.Column("error_json", sa.Text(), nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("kek_id", sa.Integer(), nullable=True),
    sa.Column("wrapped_dek", sa.LargeBinary(), nullable=True),
    sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
    sa.Index("ix_execution_steps_kek", "kek_id"),
)

# Destinations a task sent a secret to as data (a database it wrote the value into, an API
# that may store it): what they answer later, to any run of the tenant, is marked with the
# secret. The destination is an HMAC under a key of the barrier, never its name: a host can
# itself be a secret (a database URL's host, a webhook's).
held_secrets = sa.Table(
    "held_secrets",
    metadata,
    sa.Column("tenant_id", Id, sa.ForeignKey("tenants.id"), primary_key=True),
    sa.Column("destination", sa.String(64), primary_key=True),
    sa.Column("secret_name", Name, primary_key=True),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
)

# A browser's short-lived stand-in for an API key (``POST /v1/sessions``): it acts as its
# key, and ends at ``expires_at``, at logout, or when the key is revoked. Stored by the
# hash of its token, never the token.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", Id, sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("key_id", Id, sa.ForeignKey("api_keys.id"), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Index("ix_sessions_key", "key_id"),
)
