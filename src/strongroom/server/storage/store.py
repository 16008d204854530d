"""The storage interface: a :class:`Store` opens transactions, and a :class:`Transaction`
offers the domain verbs of each area (``tx.secrets``, ``tx.keyring``, ...).

Storage never sees a plaintext secret value: it stores and returns ``Sealed`` ciphertext
made by :mod:`strongroom.server.crypto`. Both backends (SQLite and PostgreSQL) implement
this interface; the service layer speaks only to it, never to a dialect.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from .apikeys import ApiKeyStorage
from .audit import AuditSink, AuditStorage
from .executions import ExecutionStorage
from .executors import ExecutorStorage
from .keyring import KeyringStorage
from .secrets import SecretStorage
from .sessions import SessionStorage
from .tasks import TaskStorage


@dataclass(frozen=True, slots=True)
class Transaction:
    """One database transaction; every storage verb runs inside one, by area."""

    secrets: SecretStorage
    keyring: KeyringStorage
    apikeys: ApiKeyStorage
    tasks: TaskStorage
    executions: ExecutionStorage
    audit: AuditStorage
    sessions: SessionStorage
    executors: ExecutorStorage
    # Where the audit events recorded in this transaction are copied once it commits (the
    # store's audit_sinks): trail.record hands each to after_commit.
    audit_sinks: tuple[AuditSink, ...] = ()
    _after_commit: list[Callable[[], None]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once this transaction has committed, before the store's
        ``read()``/``write()`` block returns to its caller; never if it rolls back.

        For what must follow the change and only a change that happened (a copy of an
        audit event elsewhere). Callbacks run in the order given, on the thread that
        committed, with the connection already released; one that raises ends the block
        with its error, after the commit, and the callbacks after it do not run.
        """
        self._after_commit.append(callback)

    def run_after_commit(self) -> None:
        """The store's half of :meth:`after_commit`: run the callbacks, once."""
        callbacks, self._after_commit[:] = list(self._after_commit), []
        for callback in callbacks:
            callback()


class Store(ABC):
    """A database holding strongroom's state."""

    # Where each committed audit event is copied besides the table, set once when the
    # process opens its services (STRONGROOM_AUDIT_FILE); every transaction carries them.
    audit_sinks: tuple[AuditSink, ...] = ()

    @abstractmethod
    def read(self) -> AbstractContextManager[Transaction]:
        """A transaction that only reads."""

    @abstractmethod
    def write(self) -> AbstractContextManager[Transaction]:
        """A transaction that writes; it takes the write lock at its start."""

    @abstractmethod
    def migrate(self) -> None:
        """Bring the schema to the newest migration (safe to run concurrently)."""

    @abstractmethod
    def system_database_url(self) -> str:
        """Where the durable execution engine (DBOS) keeps its own state beside this store:
        a file next to SQLite's, or this PostgreSQL database (under its own schema)."""

    @abstractmethod
    def connections(self) -> tuple[int, int]:
        """This store's pooled connections: ``(in use, idle)``, for the metrics."""

    @abstractmethod
    def ping(self) -> None:
        """Raise :class:`StorageUnavailable` unless the database answers."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
