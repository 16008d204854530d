"""PostgreSQL backend: the scale-out store (psycopg 3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .dialect import Dialect, Rows
from .errors import NameTaken, StorageFull, StorageIOError, StorageReadOnly, StorageUnavailable
from .sql import SQLStore

_UNIQUE_VIOLATION = "23505"
# SQLSTATEs that name the fault: disk_full, read_only_sql_transaction (a standby, or
# default_transaction_read_only), io_error.
_FAULTS: dict[str, type[StorageUnavailable]] = {
    "53100": StorageFull,
    "25006": StorageReadOnly,
    "58030": StorageIOError,
}
_MIGRATION_LOCK = 0x5354524F4E47  # "STRONG"


class PostgresDialect(Dialect):
    name = "postgresql"
    lateral = True

    def is_unique_violation(self, exc: sa.exc.IntegrityError) -> bool:
        return getattr(exc.orig, "sqlstate", None) == _UNIQUE_VIOLATION

    def storage_fault(self, exc: sa.exc.DBAPIError) -> type[StorageUnavailable] | None:
        return _FAULTS.get(str(getattr(exc.orig, "sqlstate", None)))

    def lock_for_migration(self, conn: Connection) -> None:
        # Servers starting together on one database migrate one at a time.
        self.serialize(conn, _MIGRATION_LOCK)

    def serialize(self, conn: Connection, key: int) -> None:
        # A transaction-level advisory lock: released at commit or rollback, never leaked.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    def bulk_insert(self, conn: Connection, columns: Sequence[sa.Column[Any]], rows: Rows) -> None:
        raw = conn.connection.driver_connection
        assert raw is not None
        # Table and column names come from the schema, never from input.
        names = ", ".join(c.name for c in columns)
        try:
            with (
                raw.cursor() as cur,
                cur.copy(f"COPY {columns[0].table.name} ({names}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        except psycopg.errors.UniqueViolation:
            # COPY goes around SQLAlchemy, whose IntegrityError the other paths see.
            raise NameTaken() from None


class PostgresStore(SQLStore):
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        engine = sa.create_engine(
            _driver_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            hide_parameters=True,  # errors must not carry ciphertext or other bound values
        )
        super().__init__(engine, PostgresDialect())
        self.url = url

    def system_database_url(self) -> str:
        return "postgresql://" + _driver_url(self.url).removeprefix("postgresql+psycopg://")


def _driver_url(url: str) -> str:
    """Accept the libpq spelling (``postgresql://``) and pin the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError("not a PostgreSQL URL")
