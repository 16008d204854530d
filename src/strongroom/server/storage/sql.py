"""The SQLAlchemy Core implementation of the storage interface, shared by both backends.

Everything here is portable SQL; what differs between SQLite and PostgreSQL (engine
set-up, how a write transaction takes its lock, how a unique violation is recognised)
lives in :mod:`.sqlite` and :mod:`.postgres`.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from ..policy import DEFAULT_POLICY, SecretPolicy
from . import schema as t
from .base import (
    ApiKeyRecord,
    AuditEvent,
    ExecutionRecord,
    KeyringEntry,
    NameTaken,
    Page,
    Sealed,
    SecretRecord,
    StepRecord,
    StorageUnavailable,
    Store,
    StoredStepResult,
    StoredVersion,
    TaskRecord,
    Tenant,
    Transaction,
    VersionRecord,
)


def canonical_json(value: Any) -> str:
    """One spelling per JSON value, so equal values hash alike."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _one_number_type(value: Any) -> Any:
    """JSON has one number type: ``1`` and ``1.0`` are the same value (a JavaScript client
    cannot even tell them apart), so a filter on one must find the other."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _one_number_type(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_one_number_type(v) for v in value]
    return value


def metadata_entry_hash(key: str, value: Any) -> bytes:
    spelled = canonical_json(_one_number_type(value))
    return hashlib.sha256(key.encode() + b"\x00" + spelled.encode()).digest()


def _secret(row: Row[Any]) -> SecretRecord:
    return SecretRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        description=row.description,
        metadata=json.loads(row.metadata_json),
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        policy=_policy(row.policy_json),
    )


@functools.lru_cache(maxsize=1024)
def _policy(text: str | None) -> SecretPolicy:
    """A stored policy (NULL: the default). Policies are immutable and few distinct ones
    exist, so each text is parsed once rather than on every read of its secret."""
    return DEFAULT_POLICY if text is None else SecretPolicy.from_json(json.loads(text))


def _policy_json(policy: SecretPolicy) -> str | None:
    return None if policy.is_default else json.dumps(policy.to_json())


def _api_key(row: Row[Any]) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        tenant_name=row.tenant_name,
        name=row.name,
        key_hash=row.key_hash,
        hint=row.hint,
        scopes=tuple(json.loads(row.scopes)),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def _stored_version(row: Row[Any]) -> StoredVersion:
    return StoredVersion(
        tenant_id=row.tenant_id,
        secret_id=row.secret_id,
        version=row.version,
        sealed=Sealed(
            kek_id=row.kek_id, wrapped_dek=bytes(row.wrapped_dek), ciphertext=bytes(row.ciphertext)
        ),
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _task(row: Row[Any]) -> TaskRecord:
    return TaskRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        description=row.description,
        steps=json.loads(row.steps_json),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _execution(row: Row[Any]) -> ExecutionRecord:
    return ExecutionRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        task_id=row.task_id,
        status=row.status,
        steps=json.loads(row.steps_json),
        input=json.loads(row.input_json) if row.input_json is not None else None,
        output=json.loads(row.output_json) if row.output_json is not None else None,
        error=json.loads(row.error_json) if row.error_json is not None else None,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _sealed_or_none(row: Row[Any]) -> Sealed | None:
    if row.ciphertext is None:
        return None
    return Sealed(row.kek_id, bytes(row.wrapped_dek), bytes(row.ciphertext))


def _step(row: Row[Any]) -> StepRecord:
    return StepRecord(
        execution_id=row.execution_id,
        index=row.idx,
        kind=row.kind,
        status=row.status,
        output=json.loads(row.output_json) if row.output_json is not None else None,
        error=json.loads(row.error_json) if row.error_json is not None else None,
        started_at=row.started_at,
        finished_at=row.finished_at,
        sealed=_sealed_or_none(row),
    )


_UNFINISHED = ("queued", "running")

# How many index steps a multi-entry filter may spend per entry choosing which one drives
# the walk (see ``_sparsest_entry``): enough to tell a 5% entry from a 60% one.
_PROBE_DEPTH = 1000


@functools.lru_cache(maxsize=32)
def _list_statement(entries: int, lateral: bool) -> sa.Select[Any]:
    """A page of a tenant's secrets in name order, filtered by ``entries`` metadata entries.

    Two steps in one statement: first the page's names, from an index that holds them, so
    each row skipped by the offset costs one index step and no look-up into ``secrets``;
    then the page's rows, by (tenant, name). Unfiltered, the names come from
    ``uq_secrets_tenant_name``. Filtered, entry ``e0`` drives a walk of
    ``ix_secret_metadata_lookup`` (tenant, entry, name) and every other entry is checked
    per candidate by a probe of the same index on the name (unique in a tenant), so
    neither step reads a table row it does not return.

    ``lateral`` (PostgreSQL) fetches each row in a ``LATERAL (... LIMIT 1)``, which the
    planner cannot turn into a hash join: costing a random page at four sequential ones,
    it would rather scan a mid-sized tenant's whole table than make the page's hundred
    index look-ups (3 ms against 0.6 at 10,000 secrets). SQLite has no LATERAL, and looks
    the rows up by index anyway.

    Bound: ``tenant_id``, ``e0``..``e{entries-1}``, ``limit`` and ``offset``. Built once per
    entry count: building and keying this statement costs more than running it.
    """
    s, m = t.secrets, t.secret_metadata_entries
    tenant: sa.BindParameter[Any] = sa.bindparam("tenant_id")
    if entries == 0:
        names = sa.select(s.c.name).where(s.c.tenant_id == tenant).order_by(s.c.name)
    else:
        walk = m.alias("m0")
        names = (
            sa.select(walk.c.name)
            .where(walk.c.tenant_id == tenant, walk.c.entry_hash == sa.bindparam("e0"))
            .order_by(walk.c.name)
        )
        for i in range(1, entries):
            other = m.alias(f"m{i}")
            # EXISTS (SELECT name ...), not SELECT *: SQLite then answers from the index
            # alone instead of also reading each entry's row.
            names = names.where(
                sa.select(other.c.name)
                .where(
                    other.c.tenant_id == tenant,
                    other.c.entry_hash == sa.bindparam(f"e{i}"),
                    other.c.name == walk.c.name,
                )
                .exists()
            )
    page = names.limit(sa.bindparam("limit")).offset(sa.bindparam("offset")).subquery("page")
    if lateral:
        # Names are unique in a tenant: LIMIT 1 changes no answer, only the plan.
        row = (
            sa.select(s)
            .where(s.c.tenant_id == tenant, s.c.name == page.c.name)
            .limit(1)
            .lateral("row")
        )
        return sa.select(row).select_from(page).join(row, sa.true()).order_by(page.c.name)
    return (
        sa.select(s)
        .join(page, sa.and_(s.c.tenant_id == tenant, s.c.name == page.c.name))
        .order_by(page.c.name)
    )


@functools.lru_cache(maxsize=32)
def _probe_statement(entries: int) -> sa.Select[Any]:
    """For each entry ``e{i}``: how many of the first ``k`` holders it has, and the k-th
    holder's name (``k_1`` = k - 1), each at most k steps of the lookup index."""
    m = t.secret_metadata_entries
    probes: list[Any] = []
    for i in range(entries):
        holders = sa.select(m.c.name).where(
            m.c.tenant_id == sa.bindparam("tenant_id"), m.c.entry_hash == sa.bindparam(f"e{i}")
        )
        first_k = holders.limit(sa.bindparam("k")).subquery(f"first{i}")
        count = sa.select(sa.func.count()).select_from(first_k).scalar_subquery()
        kth = holders.order_by(m.c.name).limit(1).offset(sa.bindparam("k_1")).scalar_subquery()
        probes += [count.label(f"n{i}"), kth.label(f"k{i}")]
    return sa.select(*probes)


_API_KEY_COLUMNS = (*t.api_keys.c, t.tenants.c.name.label("tenant_name"))
_API_KEY_FROM = t.api_keys.join(t.tenants, t.tenants.c.id == t.api_keys.c.tenant_id)

# The statements every request runs, built once with bound parameters. Building a Core
# statement and its cache key costs more than executing it on SQLite; a prebuilt one
# memoises both.
_KEY_BY_HASH = (
    sa.select(*_API_KEY_COLUMNS)
    .select_from(_API_KEY_FROM)
    .where(t.api_keys.c.key_hash == sa.bindparam("key_hash"))
)
_SECRET_BY_NAME = sa.select(t.secrets).where(
    t.secrets.c.tenant_id == sa.bindparam("tenant_id"), t.secrets.c.name == sa.bindparam("name")
)
_SECRET_BY_NAME_FOR_UPDATE = _SECRET_BY_NAME.with_for_update()
_VERSION = sa.select(t.secret_versions).where(
    t.secret_versions.c.secret_id == sa.bindparam("secret_id"),
    t.secret_versions.c.version == sa.bindparam("version"),
)
_INSERT_AUDIT_EVENT = t.audit_events.insert()
# Rotation runs this once per data key; built once, it takes a quarter of the CPU (0.07 ms
# against 0.37 on SQLite) that building the statement for every key did.
_REPLACE_WRAPPED_DEK = (
    t.secret_versions.update()
    .where(
        t.secret_versions.c.secret_id == sa.bindparam("b_secret_id"),
        t.secret_versions.c.version == sa.bindparam("b_version"),
        t.secret_versions.c.kek_id == sa.bindparam("b_old_kek_id"),
    )
    .values(kek_id=sa.bindparam("b_kek_id"), wrapped_dek=sa.bindparam("b_wrapped_dek"))
)
_AUDIT_COLUMNS = tuple(f.name for f in fields(AuditEvent) if f.name != "id")


class SQLTransaction(Transaction):
    def __init__(self, conn: Connection, store: SQLStore) -> None:
        self.conn = conn
        self.store = store

    def _one(self, stmt: sa.Executable) -> Row[Any] | None:
        return self.conn.execute(stmt).first()

    # -- tenants and API keys -------------------------------------------------------------
    def tenant_by_name(self, name: str) -> Tenant | None:
        row = self._one(sa.select(t.tenants).where(t.tenants.c.name == name))
        return Tenant(row.id, row.name, row.created_at) if row else None

    def tenant_by_id(self, tenant_id: str) -> Tenant | None:
        row = self._one(sa.select(t.tenants).where(t.tenants.c.id == tenant_id))
        return Tenant(row.id, row.name, row.created_at) if row else None

    def insert_tenant(self, tenant: Tenant) -> None:
        with self.store.unique_violation_as_name_taken():
            self.conn.execute(
                t.tenants.insert().values(
                    id=tenant.id, name=tenant.name, created_at=tenant.created_at
                )
            )

    def insert_api_key(self, key: ApiKeyRecord) -> None:
        self.conn.execute(
            t.api_keys.insert().values(
                id=key.id,
                tenant_id=key.tenant_id,
                name=key.name,
                key_hash=key.key_hash,
                hint=key.hint,
                scopes=json.dumps(list(key.scopes)),
                created_at=key.created_at,
                revoked_at=key.revoked_at,
            )
        )

    def api_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        row = self.conn.execute(_KEY_BY_HASH, {"key_hash": key_hash}).first()
        return _api_key(row) if row else None

    def list_api_keys(self, tenant_id: str | None = None) -> list[ApiKeyRecord]:
        stmt = sa.select(*_API_KEY_COLUMNS).select_from(_API_KEY_FROM)
        if tenant_id is not None:
            stmt = stmt.where(t.api_keys.c.tenant_id == tenant_id)
        stmt = stmt.order_by(t.tenants.c.name, t.api_keys.c.created_at, t.api_keys.c.id)
        return [_api_key(row) for row in self.conn.execute(stmt)]

    def revoke_api_key(self, key_id: str, at: dt.datetime) -> bool:
        result = self.conn.execute(
            t.api_keys.update()
            .where(t.api_keys.c.id == key_id, t.api_keys.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return result.rowcount == 1

    def count_api_keys(self) -> int:
        return int(
            self.conn.execute(sa.select(sa.func.count()).select_from(t.api_keys)).scalar_one()
        )

    # -- barrier and keyring --------------------------------------------------------------
    def barrier_verifier(self) -> bytes | None:
        row = self._one(sa.select(t.barrier.c.verifier).where(t.barrier.c.id == t.BARRIER_VERIFIER))
        return bytes(row.verifier) if row else None

    def insert_barrier_verifier(self, verifier: bytes, at: dt.datetime) -> None:
        with self.store.unique_violation_as_name_taken():
            self.conn.execute(
                t.barrier.insert().values(id=t.BARRIER_VERIFIER, verifier=verifier, created_at=at)
            )

    def api_key_hmac_key(self) -> bytes | None:
        stmt = sa.select(t.barrier.c.verifier).where(t.barrier.c.id == t.BARRIER_API_KEY_HMAC)
        row = self._one(stmt)
        return bytes(row.verifier) if row else None

    def insert_api_key_hmac_key(self, wrapped: bytes, at: dt.datetime) -> None:
        with self.store.unique_violation_as_name_taken():
            self.conn.execute(
                t.barrier.insert().values(
                    id=t.BARRIER_API_KEY_HMAC, verifier=wrapped, created_at=at
                )
            )

    def api_key_hashes(self) -> list[tuple[str, str]]:
        stmt = sa.select(t.api_keys.c.id, t.api_keys.c.key_hash).order_by(t.api_keys.c.id)
        return [(row.id, row.key_hash) for row in self.conn.execute(stmt)]

    def replace_api_key_hashes(self, changes: Sequence[tuple[str, str, str]]) -> None:
        if not changes:
            return
        stmt = (
            t.api_keys.update()
            .where(
                t.api_keys.c.id == sa.bindparam("b_id"),
                t.api_keys.c.key_hash == sa.bindparam("b_old"),
            )
            .values(key_hash=sa.bindparam("b_new"))
        )
        params = [{"b_id": key_id, "b_old": old, "b_new": new} for key_id, old, new in changes]
        self.conn.execute(stmt, params)

    def keyring_entries(self, *, for_update: bool = False) -> list[KeyringEntry]:
        stmt = sa.select(t.keyring).order_by(t.keyring.c.id)
        rows = self.conn.execute(stmt.with_for_update() if for_update else stmt)
        return [
            KeyringEntry(r.id, bytes(r.wrapped_key), r.state, r.created_at, r.retired_at)
            for r in rows
        ]

    def insert_keyring_entry(self, entry: KeyringEntry) -> None:
        self.conn.execute(t.keyring.insert().values(**asdict(entry)))

    def set_keyring_state(
        self, kek_id: int, state: str, retired_at: dt.datetime | None = None
    ) -> None:
        self.conn.execute(
            t.keyring.update()
            .where(t.keyring.c.id == kek_id)
            .values(state=state, retired_at=retired_at)
        )

    def active_kek_id(self) -> int:
        # FOR SHARE (PostgreSQL; SQLite's write lock already covers it): a rotation that
        # retires this KEK waits until this transaction's new version has committed.
        stmt = sa.select(t.keyring.c.id).where(t.keyring.c.state == "active")
        return int(self.conn.execute(stmt.with_for_update(read=True)).scalar_one())

    def versions_under_keks(self, kek_ids: list[int], limit: int) -> list[StoredVersion]:
        stmt = (
            sa.select(t.secret_versions)
            .where(t.secret_versions.c.kek_id.in_(kek_ids))
            .order_by(t.secret_versions.c.secret_id, t.secret_versions.c.version)
            .limit(limit)
        )
        return [_stored_version(row) for row in self.conn.execute(stmt)]

    def count_versions_by_kek(self) -> dict[int, int]:
        stmt = sa.select(t.secret_versions.c.kek_id, sa.func.count()).group_by(
            t.secret_versions.c.kek_id
        )
        return {int(kek): int(n) for kek, n in self.conn.execute(stmt)}

    def replace_wrapped_dek(
        self, secret_id: str, version: int, old_kek_id: int, new: Sealed
    ) -> bool:
        params = {
            "b_secret_id": secret_id,
            "b_version": version,
            "b_old_kek_id": old_kek_id,
            "b_kek_id": new.kek_id,
            "b_wrapped_dek": new.wrapped_dek,
        }
        return self.conn.execute(_REPLACE_WRAPPED_DEK, params).rowcount == 1

    def replace_wrapped_deks(self, changes: Sequence[tuple[str, int, int, Sealed]]) -> None:
        if not changes:
            return
        params = [
            {
                "b_secret_id": secret_id,
                "b_version": version,
                "b_old_kek_id": old_kek_id,
                "b_kek_id": new.kek_id,
                "b_wrapped_dek": new.wrapped_dek,
            }
            for secret_id, version, old_kek_id, new in changes
        ]
        # A list of parameter sets is an executemany: psycopg pipelines it, sqlite3
        # loops in C.
        self.conn.execute(_REPLACE_WRAPPED_DEK, params)

    # -- secrets --------------------------------------------------------------------------
    def secret_by_name(
        self, tenant_id: str, name: str, *, for_update: bool = False
    ) -> SecretRecord | None:
        stmt = _SECRET_BY_NAME_FOR_UPDATE if for_update else _SECRET_BY_NAME
        row = self.conn.execute(stmt, {"tenant_id": tenant_id, "name": name}).first()
        return _secret(row) if row else None

    def secret_by_id(
        self, tenant_id: str, secret_id: str, *, for_update: bool = False
    ) -> SecretRecord | None:
        stmt = sa.select(t.secrets).where(
            t.secrets.c.tenant_id == tenant_id, t.secrets.c.id == secret_id
        )
        if for_update:
            stmt = stmt.with_for_update()
        row = self._one(stmt)
        return _secret(row) if row else None

    def _write_metadata_entries(self, secret: SecretRecord) -> None:
        self.conn.execute(
            t.secret_metadata_entries.delete().where(
                t.secret_metadata_entries.c.secret_id == secret.id
            )
        )
        if secret.metadata:
            self.conn.execute(
                t.secret_metadata_entries.insert(),
                [
                    {
                        "secret_id": secret.id,
                        "entry_hash": metadata_entry_hash(key, value),
                        "tenant_id": secret.tenant_id,
                        "name": secret.name,
                    }
                    for key, value in secret.metadata.items()
                ],
            )

    def _secret_values(self, secret: SecretRecord) -> dict[str, Any]:
        return {
            "tenant_id": secret.tenant_id,
            "name": secret.name,
            "description": secret.description,
            "metadata_json": canonical_json(secret.metadata),
            "version": secret.version,
            "created_at": secret.created_at,
            "updated_at": secret.updated_at,
            "policy_json": _policy_json(secret.policy),
        }

    def insert_secret(self, secret: SecretRecord) -> None:
        with self.store.unique_violation_as_name_taken():
            self.conn.execute(
                t.secrets.insert().values(id=secret.id, **self._secret_values(secret))
            )
        self._write_metadata_entries(secret)

    def update_secret(self, secret: SecretRecord) -> None:
        with self.store.unique_violation_as_name_taken():
            self.conn.execute(
                t.secrets.update()
                .where(t.secrets.c.id == secret.id)
                .values(**self._secret_values(secret))
            )
        self._write_metadata_entries(secret)

    def delete_secret(self, secret_id: str) -> None:
        for table in (t.secret_metadata_entries, t.secret_versions):
            self.conn.execute(table.delete().where(table.c.secret_id == secret_id))
        self.conn.execute(t.secrets.delete().where(t.secrets.c.id == secret_id))

    def list_secrets(
        self,
        tenant_id: str,
        *,
        limit: int,
        offset: int,
        metadata_filter: Mapping[str, Any] | None = None,
    ) -> Page[SecretRecord]:
        entries = sorted(metadata_entry_hash(k, v) for k, v in (metadata_filter or {}).items())
        if len(entries) > 1:
            # The sparsest entry drives the walk (bound as e0); the others are checked.
            driver = self._sparsest_entry(tenant_id, entries, offset + limit + 1)
            entries.insert(0, entries.pop(driver))
        params: dict[str, Any] = {"tenant_id": tenant_id, "limit": limit + 1, "offset": offset}
        params.update((f"e{i}", entry) for i, entry in enumerate(entries))
        lateral = self.store.dialect == "postgresql"
        rows = self.conn.execute(_list_statement(len(entries), lateral), params).all()
        return Page([_secret(r) for r in rows[:limit]], has_more=len(rows) > limit)

    def _sparsest_entry(self, tenant_id: str, entries: list[bytes], depth: int) -> int:
        """Which entry to drive by: the one with the fewest secrets among the first names.

        Driving by an entry costs one step per secret that holds it, up to the page's last
        name. Counting every entry's secrets could cost as much as the walk; instead each
        entry is probed K index steps deep (K = ``depth``, at most ``_PROBE_DEPTH``): an
        entry with fewer than K secrets is counted exactly, and the fewest wins; when every
        entry has K or more, the one whose K-th name sorts last is the sparsest over the
        names a page will cover. Ties go to the lower hash, so the choice is deterministic.
        """
        k = min(depth, _PROBE_DEPTH)
        params: dict[str, Any] = {"tenant_id": tenant_id, "k": k, "k_1": k - 1}
        params.update((f"e{i}", entry) for i, entry in enumerate(entries))
        found = self.conn.execute(_probe_statement(len(entries)), params).one()
        counts, kth_names = found[0::2], found[1::2]
        if min(counts) < k:
            return counts.index(min(counts))
        return max(range(len(entries)), key=lambda i: (kth_names[i], -i))

    def list_secrets_newest_first(
        self, tenant_id: str, *, limit: int, offset: int
    ) -> Page[SecretRecord]:
        s = t.secrets
        stmt = (
            sa.select(s)
            .where(s.c.tenant_id == tenant_id)
            # ids are UUIDv7: among equal times, the later id is the newer secret
            .order_by(s.c.created_at.desc(), s.c.id.desc())
            .limit(limit + 1)
            .offset(offset)
        )
        rows = self.conn.execute(stmt).all()
        return Page([_secret(r) for r in rows[:limit]], has_more=len(rows) > limit)

    def insert_version(
        self, stored: StoredVersion, at: dt.datetime, created_by: str | None
    ) -> None:
        self.conn.execute(
            t.secret_versions.insert().values(
                secret_id=stored.secret_id,
                version=stored.version,
                tenant_id=stored.tenant_id,
                kek_id=stored.sealed.kek_id,
                wrapped_dek=stored.sealed.wrapped_dek,
                ciphertext=stored.sealed.ciphertext,
                created_at=at,
                created_by=created_by,
            )
        )

    def version(self, secret_id: str, version: int) -> StoredVersion | None:
        row = self.conn.execute(_VERSION, {"secret_id": secret_id, "version": version}).first()
        return _stored_version(row) if row else None

    def list_versions(self, secret_id: str) -> list[VersionRecord]:
        v = t.secret_versions.c
        stmt = (
            sa.select(v.secret_id, v.version, v.created_at, v.created_by)
            .where(v.secret_id == secret_id)
            .order_by(v.version.desc())
        )
        return [
            VersionRecord(r.secret_id, r.version, r.created_at, r.created_by)
            for r in self.conn.execute(stmt)
        ]

    # -- tasks ----------------------------------------------------------------------------
    def insert_task(self, task: TaskRecord) -> None:
        self.conn.execute(
            t.tasks.insert().values(
                id=task.id,
                tenant_id=task.tenant_id,
                name=task.name,
                description=task.description,
                steps_json=_dumps(task.steps),
                created_at=task.created_at,
                updated_at=task.updated_at,
            )
        )

    def task_by_id(self, tenant_id: str, task_id: str) -> TaskRecord | None:
        row = self._one(
            sa.select(t.tasks).where(t.tasks.c.tenant_id == tenant_id, t.tasks.c.id == task_id)
        )
        return _task(row) if row else None

    def list_tasks(self, tenant_id: str, *, limit: int, offset: int) -> Page[TaskRecord]:
        stmt = (
            sa.select(t.tasks)
            .where(t.tasks.c.tenant_id == tenant_id)
            .order_by(t.tasks.c.id)
            .limit(limit + 1)
            .offset(offset)
        )
        rows = self.conn.execute(stmt).all()
        return Page([_task(r) for r in rows[:limit]], has_more=len(rows) > limit)

    def delete_task(self, task_id: str) -> None:
        self.conn.execute(t.tasks.delete().where(t.tasks.c.id == task_id))

    # -- executions -----------------------------------------------------------------------
    def insert_execution(self, execution: ExecutionRecord) -> None:
        self.conn.execute(
            t.executions.insert().values(
                id=execution.id,
                tenant_id=execution.tenant_id,
                task_id=execution.task_id,
                status=execution.status,
                steps_json=_dumps(execution.steps),
                input_json=_dumps(execution.input),
                output_json=_dumps(execution.output),
                error_json=_dumps(execution.error),
                created_by=execution.created_by,
                created_at=execution.created_at,
                updated_at=execution.updated_at,
            )
        )

    def execution_by_id(
        self, execution_id: str, tenant_id: str | None = None, *, for_update: bool = False
    ) -> ExecutionRecord | None:
        stmt = sa.select(t.executions).where(t.executions.c.id == execution_id)
        if tenant_id is not None:
            stmt = stmt.where(t.executions.c.tenant_id == tenant_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = self._one(stmt)
        return _execution(row) if row else None

    def list_executions(
        self, tenant_id: str, *, task_id: str | None, limit: int, offset: int
    ) -> Page[ExecutionRecord]:
        e = t.executions.c
        stmt = sa.select(t.executions).where(e.tenant_id == tenant_id)
        if task_id is not None:
            stmt = stmt.where(e.task_id == task_id)
        stmt = stmt.order_by(e.id.desc()).limit(limit + 1).offset(offset)
        rows = self.conn.execute(stmt).all()
        return Page([_execution(r) for r in rows[:limit]], has_more=len(rows) > limit)

    def unfinished_execution_ids(self, limit: int) -> list[str]:
        e = t.executions.c
        stmt = sa.select(e.id).where(e.status.in_(_UNFINISHED)).order_by(e.id).limit(limit)
        return [row.id for row in self.conn.execute(stmt)]

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
        e = t.executions.c
        result = self.conn.execute(
            t.executions.update()
            .where(e.id == execution_id, e.status.in_(only_from))
            .values(
                status=status, updated_at=at, output_json=_dumps(output), error_json=_dumps(error)
            )
        )
        return result.rowcount == 1

    # -- execution steps ------------------------------------------------------------------
    def execution_steps(self, execution_id: str) -> list[StepRecord]:
        s = t.execution_steps.c
        stmt = sa.select(t.execution_steps).where(s.execution_id == execution_id).order_by(s.idx)
        return [_step(row) for row in self.conn.execute(stmt)]

    def save_step(self, step: StepRecord) -> None:
        s = t.execution_steps.c
        values = {
            "kind": step.kind,
            "status": step.status,
            "output_json": _dumps(step.output),
            "error_json": _dumps(step.error),
            "started_at": step.started_at,
            "finished_at": step.finished_at,
            "kek_id": step.sealed.kek_id if step.sealed else None,
            "wrapped_dek": step.sealed.wrapped_dek if step.sealed else None,
            "ciphertext": step.sealed.ciphertext if step.sealed else None,
        }
        result = self.conn.execute(
            t.execution_steps.update()
            .where(s.execution_id == step.execution_id, s.idx == step.index)
            .values(**values)
        )
        if result.rowcount == 0:
            self.conn.execute(
                t.execution_steps.insert().values(
                    execution_id=step.execution_id, idx=step.index, **values
                )
            )

    def wipe_step_results(self, execution_id: str) -> None:
        s = t.execution_steps.c
        self.conn.execute(
            t.execution_steps.update()
            .where(s.execution_id == execution_id, s.ciphertext.is_not(None))
            .values(kek_id=None, wrapped_dek=None, ciphertext=None)
        )

    def hold_secrets(
        self, tenant_id: str, destination: str, names: Sequence[str], now: dt.datetime
    ) -> None:
        h = t.held_secrets.c
        known = set(
            self.conn.execute(
                sa.select(h.secret_name).where(
                    h.tenant_id == tenant_id,
                    h.destination == destination,
                    h.secret_name.in_(list(names)),
                )
            ).scalars()
        )
        for name in sorted(set(names) - known):
            row = {
                "tenant_id": tenant_id,
                "destination": destination,
                "secret_name": name,
                "recorded_at": now,
            }
            try:
                with self.conn.begin_nested():  # another run may record the same meanwhile
                    self.conn.execute(t.held_secrets.insert().values(**row))
            except sa.exc.IntegrityError as exc:
                if not self.store.is_unique_violation(exc):
                    raise

    def secrets_held(self, tenant_id: str, destinations: Sequence[str]) -> frozenset[str]:
        if not destinations:
            return frozenset()
        h = t.held_secrets.c
        stmt = (
            sa.select(h.secret_name)
            .distinct()
            .where(h.tenant_id == tenant_id, h.destination.in_(list(destinations)))
        )
        return frozenset(self.conn.execute(stmt).scalars())

    def step_results_under_keks(self, kek_ids: list[int], limit: int) -> list[StoredStepResult]:
        s = t.execution_steps.c
        stmt = (
            sa.select(t.execution_steps, t.executions.c.tenant_id)
            .select_from(t.execution_steps.join(t.executions, t.executions.c.id == s.execution_id))
            .where(s.kek_id.in_(kek_ids), s.ciphertext.is_not(None))
            .order_by(s.execution_id, s.idx)
            .limit(limit)
        )
        found = []
        for row in self.conn.execute(stmt):
            sealed = _sealed_or_none(row)
            assert sealed is not None
            found.append(StoredStepResult(row.tenant_id, row.execution_id, row.idx, sealed))
        return found

    def replace_step_wrapped_dek(
        self, execution_id: str, index: int, old_kek_id: int, new: Sealed
    ) -> bool:
        s = t.execution_steps.c
        result = self.conn.execute(
            t.execution_steps.update()
            .where(s.execution_id == execution_id, s.idx == index, s.kek_id == old_kek_id)
            .values(kek_id=new.kek_id, wrapped_dek=new.wrapped_dek)
        )
        return result.rowcount == 1

    # -- audit ----------------------------------------------------------------------------
    def insert_audit_event(self, event: AuditEvent) -> None:
        # A shallow copy: dataclasses.asdict deep-copies every field, on every request.
        # ``id`` is left out; the database numbers events.
        values = {name: getattr(event, name) for name in _AUDIT_COLUMNS}
        self.conn.execute(_INSERT_AUDIT_EVENT, values)

    def list_audit_events(
        self,
        tenant_id: str,
        *,
        limit: int,
        offset: int,
        secret_name: str | None = None,
        action: str | None = None,
    ) -> Page[AuditEvent]:
        a = t.audit_events.c
        stmt = sa.select(t.audit_events).where(a.tenant_id == tenant_id)
        if secret_name is not None:
            stmt = stmt.where(a.secret_name == secret_name)
        if action is not None:
            stmt = stmt.where(a.action == action)
        stmt = stmt.order_by(a.id.desc()).limit(limit + 1).offset(offset)
        rows = self.conn.execute(stmt).all()
        events = [AuditEvent(**r._asdict()) for r in rows[:limit]]
        return Page(events, has_more=len(rows) > limit)


class SQLStore(Store):
    """A store over a SQLAlchemy engine; subclasses supply the dialect's particulars."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error

    # -- dialect hooks --------------------------------------------------------------------
    def is_unique_violation(self, exc: sa.exc.IntegrityError) -> bool:
        raise NotImplementedError

    def write_options(self) -> dict[str, Any]:
        """Execution options that make a transaction take the write lock up front."""
        return {}

    def storage_fault(self, exc: sa.exc.DBAPIError) -> type[StorageUnavailable] | None:
        """The precise fault a driver error reports (full, read-only, failing storage), by
        the dialect's own error codes; None when it reports none of them."""
        return None

    def _fault(self, exc: sa.exc.DBAPIError) -> StorageUnavailable | None:
        """What a driver error means for the caller; None for an error that is no fault
        of the database (a constraint, a bug), which must surface as it is."""
        fault = self.storage_fault(exc)
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

    @contextmanager
    def unique_violation_as_name_taken(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.IntegrityError as exc:
            if self.is_unique_violation(exc):
                raise NameTaken() from None
            raise

    # -- transactions ---------------------------------------------------------------------
    @contextmanager
    def _transaction(self, options: dict[str, Any]) -> Iterator[Transaction]:
        with self._faults():
            conn = self.engine.connect()
            with conn:
                if options:
                    conn = conn.execution_options(**options)
                with conn.begin():
                    yield SQLTransaction(conn, self)

    def read(self) -> Any:
        return self._transaction({})

    def write(self) -> Any:
        return self._transaction(self.write_options())

    def lock_for_migration(self, conn: Connection) -> None:
        """Serialise concurrent migrations beyond what the write transaction does."""

    def migrate(self) -> None:
        from .migrate import upgrade

        # Start-up meets a full, read-only or unreachable database here first.
        with self._faults(), self.engine.connect() as conn:
            conn = conn.execution_options(**self.write_options())
            with conn.begin():
                self.lock_for_migration(conn)
                upgrade(conn)

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
