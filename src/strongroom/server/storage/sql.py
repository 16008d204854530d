"""The SQL store: transactions over a SQLAlchemy engine, and driver errors as storage errors.

Each transaction hands its connection to every area's SQL implementation; what differs
between SQLite and PostgreSQL is their :class:`~.dialect.Dialect`'s, and how each opens
its engine is :mod:`.sqlite`'s and :mod:`.postgres`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .apikeys import SQLApiKeyStorage
from .audit import SQLAuditStorage
from .dialect import Dialect
from .errors import StorageUnavailable
from .executions import SQLExecutionStorage
from .executors import SQLExecutorStorage
from .keyring import SQLKeyringStorage
from .secrets import SQLSecretStorage
from .sessions import SQLSessionStorage
from .store import Store, Transaction
from .tasks import SQLTaskStorage


class SQLStore(Store):
    """A store over a SQLAlchemy engine; subclasses open the engine of their database."""

    def __init__(self, engine: Engine, dialect: Dialect) -> None:
        self.engine = engine
        self.dialect = dialect
        self._driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error

    # -- faults ---------------------------------------------------------------------------
    def _fault(self, exc: sa.exc.DBAPIError) -> StorageUnavailable | None:
        """What a driver error means for the caller; None for an error that is no fault
        of the database (a constraint, a bug), which must surface as it is."""
        fault = self.dialect.storage_fault(exc)
        if fault is not None:
            return fault(f"{getattr(fault, 'what', 'database fault')}: {_describe(exc)}")
        if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
            return StorageUnavailable(_describe(exc))
        return None

    @contextmanager
    def _faults(self) -> Iterator[None]:
        """Driver errors that report a fault of the database, raised as the storage error
        that names it; any other error unchanged."""
        try:
            yield
        except sa.exc.DBAPIError as exc:
            fault = self._fault(exc)
            if fault is None:
                raise
            raise fault from None
        except self._driver_error as exc:
            # Raised outside SQLAlchemy's wrapping, by a statement a connection event runs
            # on the driver itself (SQLite's BEGIN): the same faults, the same answers.
            wrapped = sa.exc.DBAPIError.instance(None, None, exc, self._driver_error)
            assert isinstance(wrapped, sa.exc.DBAPIError)
            fault = self._fault(wrapped)
            if fault is None:
                raise
            raise fault from None

    # -- transactions ---------------------------------------------------------------------
    @contextmanager
    def _transaction(self, options: dict[str, Any]) -> Iterator[Transaction]:
        with self._faults():
            conn = self.engine.connect()
            with conn:
                if options:
                    conn = conn.execution_options(**options)
                with conn.begin():
                    d = self.dialect
                    tx = Transaction(
                        secrets=SQLSecretStorage(conn, d),
                        keyring=SQLKeyringStorage(conn, d),
                        apikeys=SQLApiKeyStorage(conn, d),
                        tasks=SQLTaskStorage(conn, d),
                        executions=SQLExecutionStorage(conn, d),
                        audit=SQLAuditStorage(conn, d),
                        sessions=SQLSessionStorage(conn, d),
                        executors=SQLExecutorStorage(conn, d),
                        audit_sinks=self.audit_sinks,
                    )
                    yield tx
        # Reached only when the block ended without an error and the commit went through;
        # the connection is back in the pool, and the callbacks' errors are their own.
        tx.run_after_commit()

    def read(self) -> AbstractContextManager[Transaction]:
        return self._transaction({})

    def write(self) -> AbstractContextManager[Transaction]:
        return self._transaction(self.dialect.write_options())

    def migrate(self) -> None:
        from .migrate import upgrade

        # Start-up meets a full, read-only or unreachable database here first.
        with self._faults(), self.engine.connect() as conn:
            conn = conn.execution_options(**self.dialect.write_options())
            with conn.begin():
                self.dialect.lock_for_migration(conn)
                upgrade(conn)

    def connections(self) -> tuple[int, int]:
        pool = self.engine.pool
        if isinstance(pool, sa.pool.QueuePool):
            return pool.checkedout(), pool.checkedin()
        return 0, 0

    def ping(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.DBAPIError as exc:
            raise self._fault(exc) or StorageUnavailable(_describe(exc)) from None

    def close(self) -> None:
        self.engine.dispose()


def _describe(exc: sa.exc.DBAPIError) -> str:
    """The driver's message without the SQL statement or its parameters.

    Parameters may hold ciphertext or other bytes that have no place in an error.
    """
    return f"{type(exc.orig).__name__}: {str(exc.orig).splitlines()[0] if str(exc.orig) else ''}"
