"""What differs between SQLite and PostgreSQL, for SQL that is otherwise shared.

Every area's SQL (:mod:`.secrets`, :mod:`.executions`, ...) is portable SQLAlchemy Core
run on an :class:`SQLArea`: a transaction's connection and its :class:`Dialect`. The few
things that are not portable (how a driver reports a unique violation or a full disk, how
a write transaction takes its lock, bulk loading) are the dialect's, implemented in
:mod:`.sqlite` and :mod:`.postgres`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from .errors import NameTaken, StorageUnavailable

Rows = Sequence[tuple[Any, ...]]


class Dialect(ABC):
    """The particulars of one database, for the SQL every area shares."""

    name: str
    # Whether the listing of secrets may fetch each row in a LATERAL subquery (see
    # secrets.py's ``_list_statement``).
    lateral: bool = False

    @abstractmethod
    def is_unique_violation(self, exc: sa.exc.IntegrityError) -> bool: ...

    @abstractmethod
    def storage_fault(self, exc: sa.exc.DBAPIError) -> type[StorageUnavailable] | None:
        """The precise fault a driver error reports (full, read-only, failing storage), by
        the dialect's own error codes; None when it reports none of them."""

    def write_options(self) -> dict[str, Any]:
        """Execution options that make a transaction take the write lock up front."""
        return {}

    @abstractmethod
    def lock_for_migration(self, conn: Connection) -> None:
        """Serialise concurrent migrations beyond what the write transaction does."""

    @abstractmethod
    def serialize(self, conn: Connection, key: int) -> None:
        """Make the write transactions that call this with ``key`` run one at a time, for a
        check-then-insert with no row to lock yet (the first API key of a database)."""

    @abstractmethod
    def bulk_insert(self, conn: Connection, columns: Sequence[sa.Column[Any]], rows: Rows) -> None:
        """Insert ``rows`` (values of ``columns``, of one table, in their stored form) the
        fastest way the driver has, bypassing SQLAlchemy's per-row work."""

    def name_glob(self, column: sa.ColumnElement[Any], pattern: Any) -> sa.ColumnElement[bool]:
        """``column`` matches ``pattern`` (a bound :meth:`glob_pattern`), case-sensitively.
        LIKE, which PostgreSQL's "C" collation makes case-sensitive; SQLite overrides it."""
        return column.like(pattern, escape="\\")

    def glob_pattern(self, glob: str) -> str:
        """A rule's name glob (``*``, ``?``, and name characters) as :meth:`name_glob`
        binds it: LIKE's ``%`` and ``_``, with the names' own ``_`` escaped."""
        return "".join(
            "%" if c == "*" else "_" if c == "?" else "\\_" if c == "_" else c for c in glob
        )

    @contextmanager
    def unique_violation_as_name_taken(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.IntegrityError as exc:
            if self.is_unique_violation(exc):
                raise NameTaken() from None
            raise


class SQLArea:
    """Base of an area's SQL implementation: the connection of the transaction it runs
    in, and the dialect of that connection's database."""

    def __init__(self, conn: Connection, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect

    def _one(self, stmt: sa.Executable, params: Mapping[str, Any] | None = None) -> Row[Any] | None:
        return self.conn.execute(stmt, params).first()

    def _stored_form(self, column: sa.Column[Any], value: Any) -> Any:
        """``value`` as the database receives it for ``column`` (SQLite keeps a UTC
        datetime as text): what :meth:`Dialect.bulk_insert` takes."""
        process = column.type.bind_processor(self.conn.dialect)
        return value if process is None else process(value)
