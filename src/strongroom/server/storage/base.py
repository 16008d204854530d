"""The storage interface: domain verbs on a transaction, and the records they exchange.

Storage never sees a plaintext secret value: it stores and returns ``Sealed`` ciphertext
made by :mod:`strongroom.server.crypto`. Both backends (SQLite and PostgreSQL) implement
this interface; the service layer speaks only to it, never to a dialect.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..policy import DEFAULT_POLICY, SecretPolicy


class StorageError(Exception):
    """Base of the errors storage raises on purpose."""


class NameTaken(StorageError):
    """A unique name (secret or tenant) is already in use."""


class StorageUnavailable(StorageError):
    """The database could not be reached or refused the operation."""


class StorageFull(StorageUnavailable):
    """The database has no room for the write: its disk is full."""

    what = "the database is full"


class StorageReadOnly(StorageUnavailable):
    """The database refuses writes: a read-only file or filesystem, or a standby server."""

    what = "the database is read-only"


class StorageIOError(StorageUnavailable):
    """The database's storage failed to read or write (a disk I/O error)."""

    what = "the database's storage failed (disk I/O error)"


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    tenant_id: str
    tenant_name: str
    name: str | None
    key_hash: str
    hint: str
    scopes: tuple[str, ...]
    created_at: dt.datetime
    revoked_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class KeyringEntry:
    id: int
    wrapped_key: bytes
    state: str  # "active", "draining" (being rewrapped away from) or "retired"
    created_at: dt.datetime
    retired_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Sealed:
    """A value encrypted under a data key, and that data key wrapped under a KEK."""

    kek_id: int
    wrapped_dek: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class SecretRecord:
    id: str
    tenant_id: str
    name: str
    description: str | None
    metadata: dict[str, Any]
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime
    # Last, with a default: records built positionally before policies existed still are.
    policy: SecretPolicy = DEFAULT_POLICY


@dataclass(frozen=True, slots=True)
class VersionRecord:
    secret_id: str
    version: int
    created_at: dt.datetime
    created_by: str | None


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One version's ciphertext with the identifiers its associated data binds to."""

    tenant_id: str
    secret_id: str
    version: int
    sealed: Sealed


@dataclass(frozen=True, slots=True)
class AuditEvent:
    occurred_at: dt.datetime
    tenant_id: str | None
    key_id: str | None
    action: str
    outcome: str
    secret_name: str | None = None
    secret_id: str | None = None
    request_id: str | None = None
    client_addr: str | None = None
    detail: str | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: str
    tenant_id: str
    name: str | None
    description: str | None
    steps: list[dict[str, Any]]
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """One run of a task. ``output`` and ``error`` are stored redacted."""

    id: str
    tenant_id: str
    task_id: str
    status: str  # queued, running, succeeded, failed, cancelled
    steps: list[dict[str, Any]]  # the task's steps when the run was created
    input: Any
    output: Any
    error: Any
    created_by: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One step of a run: its redacted output or error, and its full result sealed
    (``None`` once the run has ended, or while the step has no result)."""

    execution_id: str
    index: int
    kind: str
    status: str  # running, succeeded, failed
    output: Any = None
    error: Any = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    sealed: Sealed | None = None


@dataclass(frozen=True, slots=True)
class StoredStepResult:
    """A sealed step result with the identifiers its associated data binds to."""

    tenant_id: str
    execution_id: str
    index: int
    sealed: Sealed


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool


class Transaction(ABC):
    """One database transaction; every storage verb runs inside one."""

    # -- tenants and API keys -------------------------------------------------------------
    @abstractmethod
    def tenant_by_name(self, name: str) -> Tenant | None: ...

    @abstractmethod
    def tenant_by_id(self, tenant_id: str) -> Tenant | None: ...

    @abstractmethod
    def insert_tenant(self, tenant: Tenant) -> None: ...

    @abstractmethod
    def insert_api_key(self, key: ApiKeyRecord) -> None: ...

    @abstractmethod
    def api_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None: ...

    @abstractmethod
    def list_api_keys(self, tenant_id: str | None = None) -> list[ApiKeyRecord]: ...

    @abstractmethod
    def revoke_api_key(self, key_id: str, at: dt.datetime) -> bool:
        """Mark a key revoked; False when no unrevoked key has that id."""

    @abstractmethod
    def count_api_keys(self) -> int: ...

    # -- barrier and keyring --------------------------------------------------------------
    @abstractmethod
    def barrier_verifier(self) -> bytes | None: ...

    @abstractmethod
    def insert_barrier_verifier(self, verifier: bytes, at: dt.datetime) -> None:
        """Raises :class:`NameTaken` when another process initialised the barrier first."""

    @abstractmethod
    def api_key_hmac_key(self) -> bytes | None:
        """The wrapped API-key HMAC key, or None before the first unseal that made it."""

    @abstractmethod
    def insert_api_key_hmac_key(self, wrapped: bytes, at: dt.datetime) -> None:
        """Raises :class:`NameTaken` when another process made it first."""

    @abstractmethod
    def api_key_hashes(self) -> list[tuple[str, str]]:
        """``(key id, stored hash)`` of every API key, revoked ones included."""

    @abstractmethod
    def replace_api_key_hashes(self, changes: Sequence[tuple[str, str, str]]) -> None:
        """Set each ``(key id, old hash, new hash)``'s hash, where it is still ``old``."""

    @abstractmethod
    def keyring_entries(self, *, for_update: bool = False) -> list[KeyringEntry]:
        """Every KEK; ``for_update`` locks them against a concurrent rotation."""

    @abstractmethod
    def insert_keyring_entry(self, entry: KeyringEntry) -> None: ...

    @abstractmethod
    def set_keyring_state(
        self, kek_id: int, state: str, retired_at: dt.datetime | None = None
    ) -> None: ...

    @abstractmethod
    def active_kek_id(self) -> int:
        """The KEK new data keys are wrapped under, read inside this transaction."""

    @abstractmethod
    def versions_under_keks(self, kek_ids: list[int], limit: int) -> list[StoredVersion]:
        """Up to ``limit`` versions whose data key is wrapped under one of ``kek_ids``."""

    @abstractmethod
    def count_versions_by_kek(self) -> dict[int, int]: ...

    @abstractmethod
    def replace_wrapped_dek(
        self, secret_id: str, version: int, old_kek_id: int, new: Sealed
    ) -> bool:
        """Swap one version's wrapped data key, if it is still under ``old_kek_id``."""

    @abstractmethod
    def replace_wrapped_deks(self, changes: Sequence[tuple[str, int, int, Sealed]]) -> None:
        """:meth:`replace_wrapped_dek` for many ``(secret_id, version, old_kek_id, new)``
        at once: one statement sent for all (a round trip per row dominated rotation on
        PostgreSQL). A row no longer under its ``old_kek_id`` is left alone."""

    # -- secrets --------------------------------------------------------------------------
    @abstractmethod
    def secret_by_name(
        self, tenant_id: str, name: str, *, for_update: bool = False
    ) -> SecretRecord | None: ...

    @abstractmethod
    def secret_by_id(
        self, tenant_id: str, secret_id: str, *, for_update: bool = False
    ) -> SecretRecord | None:
        """The tenant's secret with that id; another tenant's is ``None``, as a missing one."""

    @abstractmethod
    def insert_secret(self, secret: SecretRecord) -> None:
        """Raises :class:`NameTaken` when the tenant already has a secret of that name."""

    @abstractmethod
    def update_secret(self, secret: SecretRecord) -> None:
        """Write every field of ``secret`` (found by id); raises :class:`NameTaken`."""

    @abstractmethod
    def delete_secret(self, secret_id: str) -> None: ...

    @abstractmethod
    def list_secrets(
        self,
        tenant_id: str,
        *,
        limit: int,
        offset: int,
        metadata_filter: Mapping[str, Any] | None = None,
    ) -> Page[SecretRecord]: ...

    @abstractmethod
    def list_secrets_newest_first(
        self, tenant_id: str, *, limit: int, offset: int
    ) -> Page[SecretRecord]:
        """The tenant's secrets, most recently created first."""

    @abstractmethod
    def insert_version(
        self, stored: StoredVersion, at: dt.datetime, created_by: str | None
    ) -> None: ...

    @abstractmethod
    def version(self, secret_id: str, version: int) -> StoredVersion | None: ...

    @abstractmethod
    def list_versions(self, secret_id: str) -> list[VersionRecord]: ...

    # -- tasks ----------------------------------------------------------------------------
    @abstractmethod
    def insert_task(self, task: TaskRecord) -> None: ...

    @abstractmethod
    def task_by_id(self, tenant_id: str, task_id: str) -> TaskRecord | None: ...

    @abstractmethod
    def list_tasks(self, tenant_id: str, *, limit: int, offset: int) -> Page[TaskRecord]:
        """The tenant's tasks, oldest first."""

    @abstractmethod
    def delete_task(self, task_id: str) -> None:
        """Delete the task; its executions stay (they hold their own copy of the steps)."""

    # -- executions -----------------------------------------------------------------------
    @abstractmethod
    def insert_execution(self, execution: ExecutionRecord) -> None: ...

    @abstractmethod
    def execution_by_id(
        self, execution_id: str, tenant_id: str | None = None, *, for_update: bool = False
    ) -> ExecutionRecord | None:
        """The execution, if it exists (and belongs to ``tenant_id`` when given)."""

    @abstractmethod
    def list_executions(
        self, tenant_id: str, *, task_id: str | None, limit: int, offset: int
    ) -> Page[ExecutionRecord]:
        """The tenant's executions (of one task when given), newest first."""

    @abstractmethod
    def unfinished_execution_ids(self, limit: int) -> list[str]:
        """Executions still queued or running, oldest first."""

    @abstractmethod
    def set_execution_status(
        self,
        execution_id: str,
        status: str,
        at: dt.datetime,
        *,
        only_from: tuple[str, ...],
        output: Any = None,
        error: Any = None,
    ) -> bool:
        """Move an execution to ``status`` (writing ``output`` and ``error``) if its status is
        one of ``only_from``; False when it was not."""

    # -- execution steps ------------------------------------------------------------------
    @abstractmethod
    def execution_steps(self, execution_id: str) -> list[StepRecord]:
        """The execution's step records, by index."""

    @abstractmethod
    def save_step(self, step: StepRecord) -> None:
        """Insert the step record, or replace the one with its execution id and index."""

    @abstractmethod
    def wipe_step_results(self, execution_id: str) -> None:
        """Drop every sealed step result of the execution (it has ended)."""

    @abstractmethod
    def step_results_under_keks(self, kek_ids: list[int], limit: int) -> list[StoredStepResult]:
        """Up to ``limit`` sealed step results whose data key is under one of ``kek_ids``."""

    @abstractmethod
    def replace_step_wrapped_dek(
        self, execution_id: str, index: int, old_kek_id: int, new: Sealed
    ) -> bool:
        """Swap one step result's wrapped data key, if it is still under ``old_kek_id``."""

    # -- destinations that may hold a secret (see tasks/held.py) -------------------------
    @abstractmethod
    def hold_secrets(
        self, tenant_id: str, destination: str, names: Sequence[str], now: dt.datetime
    ) -> None:
        """Record that ``destination`` (a fingerprint) was sent the secrets ``names``;
        idempotent, and safe against another transaction recording the same."""

    @abstractmethod
    def secrets_held(self, tenant_id: str, destinations: Sequence[str]) -> frozenset[str]:
        """The names of the secrets any of ``destinations`` was ever sent."""

    # -- audit ----------------------------------------------------------------------------
    @abstractmethod
    def insert_audit_event(self, event: AuditEvent) -> None: ...

    @abstractmethod
    def list_audit_events(
        self,
        tenant_id: str,
        *,
        limit: int,
        offset: int,
        secret_name: str | None = None,
        action: str | None = None,
    ) -> Page[AuditEvent]: ...


class Store(ABC):
    """A database holding strongroom's state."""

    dialect: str

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
