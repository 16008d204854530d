"""SQLite backend: the embedded default (one file, WAL journal)."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection

from .dialect import Dialect, Rows
from .errors import StorageFull, StorageIOError, StorageReadOnly, StorageUnavailable
from .sql import SQLStore
from .store import Transaction

_BEGIN_MODE = "strongroom_sqlite_begin"

# SQLite's primary result codes (the low byte of an extended code) that name the fault.
_FAULTS: dict[int, type[StorageUnavailable]] = {
    sqlite3.SQLITE_FULL: StorageFull,
    sqlite3.SQLITE_READONLY: StorageReadOnly,
    sqlite3.SQLITE_IOERR: StorageIOError,
}


class SQLiteDialect(Dialect):
    name = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path

    def is_unique_violation(self, exc: sa.exc.IntegrityError) -> bool:
        return "UNIQUE constraint failed" in str(exc.orig)

    def storage_fault(self, exc: sa.exc.DBAPIError) -> type[StorageUnavailable] | None:
        code = getattr(exc.orig, "sqlite_errorcode", None)
        if not isinstance(code, int):
            return None
        if code & 0xFF == sqlite3.SQLITE_CANTOPEN and self._refuses_writes():
            # A WAL database cannot even be opened where its -shm file cannot be made.
            return StorageReadOnly
        return _FAULTS.get(code & 0xFF)

    def _refuses_writes(self) -> bool:
        """The file or its directory is not writable for this process: a read-only
        filesystem (os.access sees EROFS even for root) or permissions."""
        path = Path(self.path)
        return path.exists() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))

    def write_options(self) -> dict[str, Any]:
        # BEGIN IMMEDIATE takes the write lock at once: two writers never both read first
        # and then deadlock on the upgrade, and busy_timeout queues them instead.
        return {_BEGIN_MODE: "IMMEDIATE"}

    def name_glob(self, column: sa.ColumnElement[Any], pattern: Any) -> sa.ColumnElement[bool]:
        # SQLite's LIKE ignores ASCII case; GLOB does not, and speaks ``*`` and ``?``.
        return column.op("GLOB", return_type=sa.Boolean)(pattern)

    def glob_pattern(self, glob: str) -> str:
        return glob  # names hold no "[", GLOB's only other special character

    def lock_for_migration(self, conn: Connection) -> None:
        """Nothing more: the write transaction's BEGIN IMMEDIATE serialises migrations."""

    def serialize(self, conn: Connection, key: int) -> None:
        """Nothing more: BEGIN IMMEDIATE already holds the whole database."""

    def bulk_insert(self, conn: Connection, columns: Sequence[sa.Column[Any]], rows: Rows) -> None:
        raw = conn.connection.driver_connection
        assert raw is not None
        # Index pages of a growing table stay in memory between batches; the 2 MB default
        # would reread them for every random name inserted. (The connection keeps this
        # cache: bulk insertion is for seeding a database, not for a serving process.)
        raw.execute("PRAGMA cache_size=-262144")
        # Table and column names come from the schema, never from input.
        names, marks = ", ".join(c.name for c in columns), ", ".join("?" * len(columns))
        sql = f"INSERT INTO {columns[0].table.name} ({names}) VALUES ({marks})"  # noqa: S608
        raw.executemany(sql, rows)


class SQLiteStore(SQLStore):
    def __init__(self, path: str, *, synchronous: str = "NORMAL", busy_timeout_s: float = 30.0):
        if path != ":memory:":
            # A directory made here is private: it holds the database, its -wal and -shm
            # files and the execution engine's state (files made under umask 077 by the
            # commands; see cli/server_commands.py).
            Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
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
            # Straight to the driver: SQLAlchemy's own execution path (events, result
            # set-up) costs more than the BEGIN, and every request opens two transactions.
            dbapi_conn = conn.connection.driver_connection
            assert dbapi_conn is not None
            dbapi_conn.execute(f"BEGIN {mode}")

        super().__init__(engine, SQLiteDialect(path))
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        # SQLite has one writer at a time. Threads of this process queue here, in order,
        # instead of in SQLite's busy handler, which polls with growing sleeps (up to
        # 100 ms) and so turns a queue of short transactions into seconds of tail latency.
        # Other processes (the CLI, a second server) still meet at the busy handler.
        self._write_lock = threading.Lock()

    def system_database_url(self) -> str:
        if self.path == ":memory:":
            raise ValueError("the execution engine needs a database file, not :memory:")
        return f"sqlite:///{Path(self.path)}.dbos.sqlite"

    @contextmanager
    def _serialised_write(self) -> Iterator[Transaction]:
        if not self._write_lock.acquire(timeout=self.busy_timeout_s):
            raise StorageUnavailable("the database is busy: no write slot within the timeout")
        try:
            with super().write() as tx:
                yield tx
        finally:
            self._write_lock.release()

    def write(self) -> AbstractContextManager[Transaction]:
        return self._serialised_write()
