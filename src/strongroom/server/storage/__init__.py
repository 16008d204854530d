"""Storage: one interface per area, each beside its SQL, for SQLite and PostgreSQL.

A :class:`Store` opens transactions; a :class:`Transaction` offers each area's verbs:
``tx.secrets`` (:mod:`.secrets`), ``tx.keyring`` (:mod:`.keyring`), ``tx.apikeys``
(:mod:`.apikeys`), ``tx.tasks`` (:mod:`.tasks`), ``tx.executions`` (:mod:`.executions`),
``tx.audit`` (:mod:`.audit`), ``tx.sessions`` (:mod:`.sessions`) and ``tx.executors``
(:mod:`.executors`). An area module
holds its records, its interface and its SQL implementation; what differs between the
databases is :mod:`.dialect`'s.
"""

from __future__ import annotations

from .apikeys import ApiKeyRecord, Tenant
from .audit import AuditEvent, AuditFilter, AuditSink, PrunedBatch
from .errors import (
    NameTaken,
    StorageError,
    StorageFull,
    StorageIOError,
    StorageReadOnly,
    StorageUnavailable,
)
from .executions import ExecutionRecord, StepRecord
from .executors import ExecutorRecord
from .keyring import BarrierRow, KeyringEntry
from .page import Page
from .sealed import Sealed, SealedRow
from .secrets import SecretRecord, StoredVersion, VersionRecord
from .sessions import SessionRecord
from .store import Store, Transaction
from .tasks import TaskRecord


def open_store(url: str, *, sqlite_synchronous: str = "NORMAL", pool_size: int = 10) -> Store:
    """Open the store a ``STRONGROOM_DATABASE_URL`` names, without migrating it;
    ``pool_size``: PostgreSQL connections kept open (as many more may open in a burst)."""
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///"), synchronous=sqlite_synchronous)
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        from .postgres import PostgresStore

        return PostgresStore(url, pool_size=pool_size)
    raise ValueError(
        "STRONGROOM_DATABASE_URL must start with sqlite:/// or postgresql:// "
        f"(got a URL starting {url.split(':', 1)[0]!r})"
    )


__all__ = [
    "ApiKeyRecord",
    "AuditEvent",
    "AuditFilter",
    "AuditSink",
    "BarrierRow",
    "ExecutionRecord",
    "ExecutorRecord",
    "KeyringEntry",
    "NameTaken",
    "Page",
    "PrunedBatch",
    "Sealed",
    "SealedRow",
    "SecretRecord",
    "SessionRecord",
    "StepRecord",
    "StorageError",
    "StorageFull",
    "StorageIOError",
    "StorageReadOnly",
    "StorageUnavailable",
    "Store",
    "StoredVersion",
    "TaskRecord",
    "Tenant",
    "Transaction",
    "VersionRecord",
    "open_store",
]
