"""SQLite backend: the embedded default (one file, WAL journal)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection

from .sql import SQLStore

_BEGIN_MODE = "strongroom_sqlite_begin"


class SQLiteStore(SQLStore):
    def __init__(self, path: str, *, synchronous: str = "NORMAL", busy_timeout_s: float = 30.0):
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            f"sqlite:///{path}",
            connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
            pool_size=8,
            max_overflow=32,
            hide_parameters=True,  # errors must not carry ciphertext or other bound values
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
            # Take transaction control away from the sqlite3 module, which would start
            # transactions lazily and never for reads (SQLAlchemy's documented recipe).
            dbapi_conn.isolation_level = None
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute(f"PRAGMA synchronous={synchronous}")
            dbapi_conn.execute("PRAGMA foreign_keys=ON")
            # Deleted rows (old ciphertext among them) are zeroed, not left in free pages.
            dbapi_conn.execute("PRAGMA secure_delete=ON")

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get(_BEGIN_MODE, "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        super().__init__(engine)
        self.path = path

    def system_database_url(self) -> str:
        if self.path == ":memory:":
            raise ValueError("the execution engine needs a database file, not :memory:")
        return f"sqlite:///{Path(self.path)}.dbos.sqlite"

    def is_unique_violation(self, exc: sa.exc.IntegrityError) -> bool:
        return "UNIQUE constraint failed" in str(exc.orig)

    def write_options(self) -> dict[str, Any]:
        # BEGIN IMMEDIATE takes the write lock at once: two writers never both read first
        # and then deadlock on the upgrade, and busy_timeout queues them instead.
        return {_BEGIN_MODE: "IMMEDIATE"}
