"""The storage interface: a :class:`Store` opens transactions, and a :class:`Transaction`
offers the domain verbs of each area (``tx.secrets``, ``tx.keyring``, ...).

Storage never sees a plaintext secret value: it stores and returns ``Sealed`` ciphertext
made by :mod:`strongroom.server.crypto`. Both backends (SQLite and PostgreSQL) implement
this interface; the service layer speaks only to it, never to a dialect.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass

from .apikeys import ApiKeyStorage
from .audit import AuditStorage
from .executions import ExecutionStorage
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


class Store(ABC):
    """A database holding strongroom's state."""

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
    def ping(self) -> None:
        """Raise :class:`StorageUnavailable` unless the database answers."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
