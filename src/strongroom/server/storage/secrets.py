"""Secrets and their versions: the records, the interface, and its SQL.

A secret's row holds its name, description, metadata and policy, and its metadata has a
row per top-level entry in ``secret_metadata_entries`` (how listings use them is
:mod:`.secret_listing`'s); each version's row holds its value, sealed.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from ..metadata_entries import canonical_json, metadata_entry_hash
from ..policy import DEFAULT_POLICY, SecretPolicy
from ..rotation_policy import RotationPolicy
from ..rules import ResourceRule
from . import schema as t
from .dialect import SQLArea
from .page import Page
from .sealed import Sealed, SealedTable
from .secret_listing import page_rows, within_rule


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
    # Last, with defaults: records built positionally before these existed still are.
    policy: SecretPolicy = DEFAULT_POLICY
    # The lifecycle: deleted and waiting for a restore or its purge; expiry; rotation.
    deleted_at: dt.datetime | None = None
    purge_after: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    rotation: RotationPolicy | None = None
    last_rotated_at: dt.datetime | None = None
    next_rotation_at: dt.datetime | None = None

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


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


class SecretStorage(ABC):
    """A tenant's secrets. Every look-up and listing sees only live secrets unless it is
    asked for the deleted ones (``deleted=True``): a deleted secret waiting for its purge
    is invisible to everything but a restore, a purge and the listing of deleted ones."""

    @abstractmethod
    def by_name(
        self, tenant_id: str, name: str, *, for_update: bool = False, deleted: bool = False
    ) -> SecretRecord | None: ...

    @abstractmethod
    def by_id(
        self, tenant_id: str, secret_id: str, *, for_update: bool = False, deleted: bool = False
    ) -> SecretRecord | None:
        """The tenant's secret with that id; another tenant's is ``None``, as a missing one."""

    @abstractmethod
    def by_names(
        self, tenant_id: str, names: Sequence[str], *, deleted: bool = False
    ) -> dict[str, SecretRecord]:
        """The tenant's live secrets of those names (a missing one is left out), in one
        statement per few hundred names; with ``deleted``, the deleted ones holding them."""

    @abstractmethod
    def insert(self, secret: SecretRecord) -> None:
        """Raises :class:`NameTaken` when the tenant already has a secret of that name."""

    @abstractmethod
    def insert_many(
        self, secrets: Sequence[tuple[SecretRecord, Sealed]], created_by: str | None
    ) -> None:
        """New secrets, each with its current version sealed, written as fast as the
        database takes rows (``COPY`` on PostgreSQL): what :meth:`insert` and
        :meth:`insert_version` would write, for batch writes and seeding large databases
        (no rotation policy; a deleted name is the caller's to check). Raises
        :class:`NameTaken` when a live secret already has one of the names."""

    @abstractmethod
    def update(self, secret: SecretRecord) -> None:
        """Write every field of ``secret`` (found by id); raises :class:`NameTaken`. A
        secret written with ``deleted_at`` holds no metadata entries until written live."""

    @abstractmethod
    def delete(self, secret_id: str) -> None:
        """Remove the secret and every version's ciphertext (a purge: nothing is left)."""

    @abstractmethod
    def page_deleted(
        self, tenant_id: str, *, limit: int, offset: int, rule: ResourceRule | None = None
    ) -> Page[SecretRecord]:
        """The tenant's deleted secrets in name order (within ``rule``)."""

    @abstractmethod
    def page_expiring(
        self,
        tenant_id: str,
        before: dt.datetime,
        *,
        limit: int,
        offset: int,
        metadata_filter: Mapping[str, Any] | None = None,
        rule: ResourceRule | None = None,
    ) -> Page[SecretRecord]:
        """The tenant's live secrets that expire before ``before`` (or have), by name,
        those holding every entry of ``metadata_filter`` when given."""

    @abstractmethod
    def count_expiring(self, now: dt.datetime, soon: dt.datetime) -> tuple[int, int]:
        """How many live secrets of all tenants have expired, and how many expire by
        ``soon``: what the metrics report."""

    @abstractmethod
    def count_rotations_due(self, now: dt.datetime) -> int:
        """How many live secrets of all tenants have a rotation due (or overdue) at ``now``."""

    @abstractmethod
    def due_for_purge(self, now: dt.datetime, limit: int) -> list[SecretRecord]:
        """Deleted secrets of any tenant whose recovery window has ended."""

    @abstractmethod
    def due_for_rotation(self, now: dt.datetime, limit: int) -> list[SecretRecord]:
        """Live secrets of any tenant whose next rotation is due, the longest due first."""

    @abstractmethod
    def claim_rotation(self, secret_id: str, due: dt.datetime, next_at: dt.datetime) -> bool:
        """Move the secret's next rotation from ``due`` to ``next_at`` if it is still at
        ``due``: True for the one caller that moved it, so a due rotation starts once."""

    @abstractmethod
    def page(
        self,
        tenant_id: str,
        *,
        limit: int,
        offset: int,
        metadata_filter: Mapping[str, Any] | None = None,
        rule: ResourceRule | None = None,
    ) -> Page[SecretRecord]:
        """The tenant's secrets in name order, those holding every entry of
        ``metadata_filter`` when given, and only those ``rule`` reaches."""

    @abstractmethod
    def page_newest_first(
        self, tenant_id: str, *, limit: int, offset: int, rule: ResourceRule | None = None
    ) -> Page[SecretRecord]:
        """The tenant's secrets, most recently created first (within ``rule``)."""

    @abstractmethod
    def current_versions(self, keys: Sequence[tuple[str, int]]) -> dict[str, StoredVersion]:
        """The stored versions of (secret id, version) pairs, by secret id: a batch's
        values in one statement per few hundred."""

    @abstractmethod
    def insert_version(
        self, stored: StoredVersion, at: dt.datetime, created_by: str | None
    ) -> None: ...

    @abstractmethod
    def version(self, secret_id: str, version: int) -> StoredVersion | None: ...

    @abstractmethod
    def list_versions(self, secret_id: str) -> list[VersionRecord]: ...

    @abstractmethod
    def count_versions_by_kek(self) -> dict[int, int]: ...


# -- SQL --------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1024)
def _policy(text: str | None) -> SecretPolicy:
    """A stored policy (NULL: the default). Policies are immutable and few distinct ones
    exist, so each text is parsed once rather than on every read of its secret."""
    return DEFAULT_POLICY if text is None else SecretPolicy.from_json(json.loads(text))


def _policy_json(policy: SecretPolicy) -> str | None:
    return None if policy.is_default else json.dumps(policy.to_json())


@functools.lru_cache(maxsize=256)
def _rotation(text: str | None) -> RotationPolicy | None:
    return None if text is None else RotationPolicy.from_json(json.loads(text))


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
        deleted_at=row.deleted_at,
        purge_after=row.purge_after,
        expires_at=row.expires_at,
        rotation=_rotation(row.rotation_json),
        last_rotated_at=row.last_rotated_at,
        next_rotation_at=row.next_rotation_at,
    )


def _secret_values(secret: SecretRecord) -> dict[str, Any]:
    return {
        "tenant_id": secret.tenant_id,
        "name": secret.name,
        "description": secret.description,
        "metadata_json": canonical_json(secret.metadata),
        "version": secret.version,
        "created_at": secret.created_at,
        "updated_at": secret.updated_at,
        "policy_json": _policy_json(secret.policy),
        "deleted_at": secret.deleted_at,
        "purge_after": secret.purge_after,
        "expires_at": secret.expires_at,
        "rotation_json": (
            None if secret.rotation is None else json.dumps(secret.rotation.to_json())
        ),
        "last_rotated_at": secret.last_rotated_at,
        "next_rotation_at": secret.next_rotation_at,
    }


def _stored_version(row: Row[Any]) -> StoredVersion:
    return StoredVersion(
        tenant_id=row.tenant_id,
        secret_id=row.secret_id,
        version=row.version,
        sealed=Sealed(
            kek_id=row.kek_id, wrapped_dek=bytes(row.wrapped_dek), ciphertext=bytes(row.ciphertext)
        ),
    )


# Each version's value, sealed under the kind "value" (see crypto/context.py): rotation
# rewraps its data key.
SEALED_VALUES = SealedTable(
    "value",
    t.secret_versions,
    key=(t.secret_versions.c.secret_id, t.secret_versions.c.version),
    tenant=t.secret_versions.c.tenant_id,
)

# The statements every request runs, built once with bound parameters. Building a Core
# statement and its cache key costs more than executing it on SQLite; a prebuilt one
# memoises both.
_BY_NAME = sa.select(t.secrets).where(
    t.secrets.c.tenant_id == sa.bindparam("tenant_id"),
    t.secrets.c.name == sa.bindparam("name"),
    t.secrets.c.deleted_at.is_(None),
)
_BY_NAME_FOR_UPDATE = _BY_NAME.with_for_update()
# A name may be held by several deleted secrets (a rename may take a deleted one's name,
# and be deleted in turn): the one deleted last answers.
_DELETED_BY_NAME = (
    sa.select(t.secrets)
    .where(
        t.secrets.c.tenant_id == sa.bindparam("tenant_id"),
        t.secrets.c.name == sa.bindparam("name"),
        t.secrets.c.deleted_at.is_not(None),
    )
    .order_by(t.secrets.c.deleted_at.desc(), t.secrets.c.id.desc())
    .limit(1)
)
# Names and version keys looked up per statement in a batch: under SQLite's 999 bound
# parameters, and few enough statements for a thousand names.
_CHUNK = 400
_VERSION = sa.select(t.secret_versions).where(
    t.secret_versions.c.secret_id == sa.bindparam("secret_id"),
    t.secret_versions.c.version == sa.bindparam("version"),
)


def _columns(table: sa.Table, *names: str) -> tuple[sa.Column[Any], ...]:
    return tuple(table.c[name] for name in names)


# Spelled out for bulk insertion rather than read from the schema: a new NOT NULL column
# makes it fail loudly instead of shifting values into the wrong columns.
_SECRET_COLUMNS = _columns(
    t.secrets,
    *("id", "tenant_id", "name", "description", "metadata_json", "version"),
    *("created_at", "updated_at", "policy_json", "expires_at"),
)
_VERSION_COLUMNS = _columns(
    t.secret_versions,
    *("secret_id", "version", "tenant_id", "kek_id", "wrapped_dek", "ciphertext"),
    *("created_at", "created_by"),
)
_ENTRY_COLUMNS = _columns(t.secret_metadata_entries, "secret_id", "entry_hash", "tenant_id", "name")


class SQLSecretStorage(SQLArea, SecretStorage):
    def by_name(
        self, tenant_id: str, name: str, *, for_update: bool = False, deleted: bool = False
    ) -> SecretRecord | None:
        if deleted:
            stmt = _DELETED_BY_NAME.with_for_update() if for_update else _DELETED_BY_NAME
        else:
            stmt = _BY_NAME_FOR_UPDATE if for_update else _BY_NAME
        row = self._one(stmt, {"tenant_id": tenant_id, "name": name})
        return _secret(row) if row else None

    def by_id(
        self, tenant_id: str, secret_id: str, *, for_update: bool = False, deleted: bool = False
    ) -> SecretRecord | None:
        s = t.secrets.c
        stmt = sa.select(t.secrets).where(
            s.tenant_id == tenant_id,
            s.id == secret_id,
            s.deleted_at.is_not(None) if deleted else s.deleted_at.is_(None),
        )
        if for_update:
            stmt = stmt.with_for_update()
        row = self._one(stmt)
        return _secret(row) if row else None

    def by_names(
        self, tenant_id: str, names: Sequence[str], *, deleted: bool = False
    ) -> dict[str, SecretRecord]:
        s = t.secrets.c
        found: dict[str, SecretRecord] = {}
        unique = sorted(set(names))
        for start in range(0, len(unique), _CHUNK):
            stmt = sa.select(t.secrets).where(
                s.tenant_id == tenant_id,
                s.name.in_(unique[start : start + _CHUNK]),
                s.deleted_at.is_not(None) if deleted else s.deleted_at.is_(None),
            )
            found.update((row.name, _secret(row)) for row in self.conn.execute(stmt))
        return found

    def current_versions(self, keys: Sequence[tuple[str, int]]) -> dict[str, StoredVersion]:
        v = t.secret_versions.c
        found: dict[str, StoredVersion] = {}
        for start in range(0, len(keys), _CHUNK):
            pairs = keys[start : start + _CHUNK]
            stmt = sa.select(t.secret_versions).where(
                sa.or_(*(sa.and_(v.secret_id == i, v.version == n) for i, n in pairs))
            )
            found.update((row.secret_id, _stored_version(row)) for row in self.conn.execute(stmt))
        return found

    def _write_metadata_entries(self, secret: SecretRecord) -> None:
        self.conn.execute(
            t.secret_metadata_entries.delete().where(
                t.secret_metadata_entries.c.secret_id == secret.id
            )
        )
        # A deleted secret holds none: no metadata walk meets it, and no rule's selector
        # reaches it through them (a restore writes them again).
        if secret.metadata and secret.deleted_at is None:
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

    def insert(self, secret: SecretRecord) -> None:
        with self.dialect.unique_violation_as_name_taken():
            self.conn.execute(t.secrets.insert().values(id=secret.id, **_secret_values(secret)))
        self._write_metadata_entries(secret)

    def insert_many(
        self, secrets: Sequence[tuple[SecretRecord, Sealed]], created_by: str | None
    ) -> None:
        created_at = t.secrets.c.created_at
        stamps: dict[dt.datetime, Any] = {}  # a seed's rows share a few timestamps

        def stamp(at: dt.datetime) -> Any:
            if at not in stamps:
                stamps[at] = self._stored_form(created_at, at)
            return stamps[at]

        # A seed's metadata has few distinct entries; hashing each once saves most of the
        # time spent building the rows. The type is part of the key: True == 1 in a dict,
        # but they are different entries.
        hashes: dict[tuple[str, str, Any], bytes] = {}

        def entry_hash(key: str, value: Any) -> bytes:
            if isinstance(value, dict | list):
                return metadata_entry_hash(key, value)
            memo = (key, type(value).__name__, value)
            if memo not in hashes:
                hashes[memo] = metadata_entry_hash(key, value)
            return hashes[memo]

        secret_rows: list[tuple[Any, ...]] = []
        version_rows: list[tuple[Any, ...]] = []
        entry_rows: list[tuple[Any, ...]] = []
        for s, sealed in secrets:
            secret_rows.append(
                (
                    *(s.id, s.tenant_id, s.name, s.description, canonical_json(s.metadata)),
                    *(s.version, stamp(s.created_at), stamp(s.updated_at), _policy_json(s.policy)),
                    None
                    if s.expires_at is None
                    else self._stored_form(t.secrets.c.expires_at, s.expires_at),
                )
            )
            version_rows.append(
                (
                    *(s.id, s.version, s.tenant_id),
                    *(sealed.kek_id, sealed.wrapped_dek, sealed.ciphertext),
                    *(stamp(s.updated_at), created_by),
                )
            )
            entry_rows.extend(
                (s.id, entry_hash(k, v), s.tenant_id, s.name) for k, v in s.metadata.items()
            )
        with self.dialect.unique_violation_as_name_taken():
            self.dialect.bulk_insert(self.conn, _SECRET_COLUMNS, secret_rows)
        self.dialect.bulk_insert(self.conn, _VERSION_COLUMNS, version_rows)
        self.dialect.bulk_insert(self.conn, _ENTRY_COLUMNS, entry_rows)

    def update(self, secret: SecretRecord) -> None:
        with self.dialect.unique_violation_as_name_taken():
            self.conn.execute(
                t.secrets.update()
                .where(t.secrets.c.id == secret.id)
                .values(**_secret_values(secret))
            )
        self._write_metadata_entries(secret)

    def delete(self, secret_id: str) -> None:
        for table in (t.secret_metadata_entries, t.secret_versions):
            self.conn.execute(table.delete().where(table.c.secret_id == secret_id))
        self.conn.execute(t.secrets.delete().where(t.secrets.c.id == secret_id))

    def page_deleted(
        self, tenant_id: str, *, limit: int, offset: int, rule: ResourceRule | None = None
    ) -> Page[SecretRecord]:
        s = t.secrets.c
        stmt = sa.select(t.secrets).where(
            s.tenant_id == tenant_id,
            s.deleted_at.is_not(None),
            *within_rule(self.dialect, rule, s.name, None, entries=False),
        )
        if rule is None or not rule.metadata:
            stmt = stmt.order_by(s.name).limit(limit + 1).offset(offset)
            return Page.cut(self.conn.execute(stmt).all(), limit, _secret)
        # A deleted secret holds no metadata entries, so a selector is checked on each
        # row's metadata; the walk is bounded by the tenant's deleted secrets, which only
        # a recovery window keeps.
        kept: list[SecretRecord] = []
        for row in self.conn.execute(stmt.order_by(s.name)):
            secret = _secret(row)
            if rule.admits(secret.name, secret.metadata):
                kept.append(secret)
                if len(kept) > offset + limit:
                    break
        return Page.cut(kept[offset:], limit, lambda r: r)

    def page_expiring(
        self,
        tenant_id: str,
        before: dt.datetime,
        *,
        limit: int,
        offset: int,
        metadata_filter: Mapping[str, Any] | None = None,
        rule: ResourceRule | None = None,
    ) -> Page[SecretRecord]:
        s = t.secrets.c
        m = t.secret_metadata_entries.c
        holds = [
            sa.exists().where(m.secret_id == s.id, m.entry_hash == metadata_entry_hash(k, v))
            for k, v in (metadata_filter or {}).items()
        ]
        stmt = (
            sa.select(t.secrets)
            .where(
                s.tenant_id == tenant_id,
                s.expires_at.is_not(None),
                s.expires_at < before,
                s.deleted_at.is_(None),
                *holds,
                *within_rule(self.dialect, rule, s.name, s.id),
            )
            .order_by(s.name)
            .limit(limit + 1)
            .offset(offset)
        )
        return Page.cut(self.conn.execute(stmt).all(), limit, _secret)

    def count_expiring(self, now: dt.datetime, soon: dt.datetime) -> tuple[int, int]:
        s = t.secrets.c
        live = sa.and_(s.expires_at.is_not(None), s.deleted_at.is_(None))
        stmt = sa.select(
            sa.func.count().filter(s.expires_at <= now),
            sa.func.count().filter(s.expires_at > now, s.expires_at <= soon),
        ).where(live, s.expires_at <= soon)
        expired, expiring = self.conn.execute(stmt).one()
        return int(expired or 0), int(expiring or 0)

    def count_rotations_due(self, now: dt.datetime) -> int:
        s = t.secrets.c
        stmt = sa.select(sa.func.count()).where(
            s.next_rotation_at.is_not(None), s.next_rotation_at <= now, s.deleted_at.is_(None)
        )
        return int(self.conn.execute(stmt).scalar() or 0)

    def due_for_purge(self, now: dt.datetime, limit: int) -> list[SecretRecord]:
        s = t.secrets.c
        stmt = (
            sa.select(t.secrets)
            .where(s.purge_after.is_not(None), s.purge_after <= now)
            .order_by(s.purge_after)
            .limit(limit)
        )
        return [_secret(row) for row in self.conn.execute(stmt)]

    def due_for_rotation(self, now: dt.datetime, limit: int) -> list[SecretRecord]:
        s = t.secrets.c
        stmt = (
            sa.select(t.secrets)
            .where(
                s.next_rotation_at.is_not(None),
                s.next_rotation_at <= now,
                s.deleted_at.is_(None),
            )
            .order_by(s.next_rotation_at)
            .limit(limit)
        )
        return [_secret(row) for row in self.conn.execute(stmt)]

    def claim_rotation(self, secret_id: str, due: dt.datetime, next_at: dt.datetime) -> bool:
        s = t.secrets.c
        stmt = (
            t.secrets.update()
            .where(s.id == secret_id, s.next_rotation_at == due, s.deleted_at.is_(None))
            .values(next_rotation_at=next_at)
        )
        return self.conn.execute(stmt).rowcount == 1

    def page(
        self,
        tenant_id: str,
        *,
        limit: int,
        offset: int,
        metadata_filter: Mapping[str, Any] | None = None,
        rule: ResourceRule | None = None,
    ) -> Page[SecretRecord]:
        rows = page_rows(
            self.conn, self.dialect, tenant_id, limit, offset, metadata_filter or {}, rule
        )
        return Page.cut(rows, limit, _secret)

    def page_newest_first(
        self, tenant_id: str, *, limit: int, offset: int, rule: ResourceRule | None = None
    ) -> Page[SecretRecord]:
        s = t.secrets
        stmt = (
            sa.select(s)
            .where(
                s.c.tenant_id == tenant_id,
                s.c.deleted_at.is_(None),
                *within_rule(self.dialect, rule, s.c.name, s.c.id),
            )
            # ids are UUIDv7: among equal times, the later id is the newer secret
            .order_by(s.c.created_at.desc(), s.c.id.desc())
            .limit(limit + 1)
            .offset(offset)
        )
        return Page.cut(self.conn.execute(stmt).all(), limit, _secret)

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
        row = self._one(_VERSION, {"secret_id": secret_id, "version": version})
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

    def count_versions_by_kek(self) -> dict[int, int]:
        v = t.secret_versions.c
        stmt = sa.select(v.kek_id, sa.func.count()).group_by(v.kek_id)
        return {int(kek): int(n) for kek, n in self.conn.execute(stmt)}
