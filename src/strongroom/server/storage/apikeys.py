"""Tenants and their API keys: records, interface and SQL.

A key is stored only as its hash (see :mod:`strongroom.server.apikeys`), found by it.
"""

from __future__ import annotations

import datetime as dt
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from ..rules import ResourceRule
from . import schema as t
from .dialect import SQLArea
from .page import Page

# The advisory lock of the bootstrap key's issue ("BOOT" in ASCII).
_BOOTSTRAP_LOCK = 0x424F4F54


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
    rule: ResourceRule | None = None
    expires_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None
    created_by: str | None = None

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def ended(self, now: dt.datetime) -> bool:
        """Revoked, or past its expiry: a key that may do nothing any more."""
        return self.revoked_at is not None or self.expired(now)


class ApiKeyStorage(ABC):
    # -- tenants --------------------------------------------------------------------------
    @abstractmethod
    def tenant_by_name(self, name: str) -> Tenant | None: ...

    @abstractmethod
    def tenant_by_id(self, tenant_id: str) -> Tenant | None: ...

    @abstractmethod
    def insert_tenant(self, tenant: Tenant) -> None:
        """Raises :class:`NameTaken` when a tenant of that name exists."""

    # -- keys -----------------------------------------------------------------------------
    @abstractmethod
    def insert(self, key: ApiKeyRecord) -> None: ...

    @abstractmethod
    def by_hash(self, key_hash: str) -> ApiKeyRecord | None: ...

    @abstractmethod
    def by_id(self, key_id: str, tenant_id: str | None = None) -> ApiKeyRecord | None:
        """The key with that id (of that tenant, when given), revoked ones included."""

    @abstractmethod
    def update(self, key: ApiKeyRecord) -> None:
        """Store the key's name, scopes, rule and expiry."""

    @abstractmethod
    def page(
        self, tenant_id: str, *, limit: int, offset: int, include_revoked: bool = False
    ) -> Page[ApiKeyRecord]:
        """The tenant's keys, oldest first."""

    @abstractmethod
    def count_active(self, tenant_id: str) -> int:
        """How many unrevoked keys the tenant holds."""

    @abstractmethod
    def touch(self, key_id: str, at: dt.datetime) -> None:
        """Record a use of the key at ``at`` (see ``api/deps.py`` on how rarely)."""

    @abstractmethod
    def list_keys(self, tenant_id: str | None = None) -> list[ApiKeyRecord]:
        """The keys of one tenant, or of every tenant, by tenant name and age."""

    @abstractmethod
    def revoke(self, key_id: str, at: dt.datetime) -> bool:
        """Mark a key revoked; False when no unrevoked key has that id."""

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def lock_for_bootstrap(self) -> None:
        """Hold, until the transaction ends, the lock under which the first key of a
        database is issued: servers starting together on one database issue one."""

    @abstractmethod
    def hashes(self) -> list[tuple[str, str]]:
        """``(key id, stored hash)`` of every API key, revoked ones included."""

    @abstractmethod
    def replace_hashes(self, changes: Sequence[tuple[str, str, str]]) -> None:
        """Set each ``(key id, old hash, new hash)``'s hash, where it is still ``old``."""


# -- SQL --------------------------------------------------------------------------------------
def _tenant(row: Row[Any]) -> Tenant:
    return Tenant(row.id, row.name, row.created_at)


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
        rule=ResourceRule.from_json(row.rule),
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        created_by=row.created_by,
    )


_KEYS: sa.Select[Any] = sa.select(*t.api_keys.c, t.tenants.c.name.label("tenant_name")).select_from(
    t.api_keys.join(t.tenants, t.tenants.c.id == t.api_keys.c.tenant_id)
)
# Every request looks its key up: built once (see secrets.py on prebuilt statements).
_KEY_BY_HASH = _KEYS.where(t.api_keys.c.key_hash == sa.bindparam("key_hash"))


class SQLApiKeyStorage(SQLArea, ApiKeyStorage):
    def tenant_by_name(self, name: str) -> Tenant | None:
        row = self._one(sa.select(t.tenants).where(t.tenants.c.name == name))
        return _tenant(row) if row else None

    def tenant_by_id(self, tenant_id: str) -> Tenant | None:
        row = self._one(sa.select(t.tenants).where(t.tenants.c.id == tenant_id))
        return _tenant(row) if row else None

    def insert_tenant(self, tenant: Tenant) -> None:
        with self.dialect.unique_violation_as_name_taken():
            self.conn.execute(
                t.tenants.insert().values(
                    id=tenant.id, name=tenant.name, created_at=tenant.created_at
                )
            )

    def insert(self, key: ApiKeyRecord) -> None:
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
                rule=key.rule.to_json() if key.rule else None,
                expires_at=key.expires_at,
                created_by=key.created_by,
            )
        )

    def by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        row = self._one(_KEY_BY_HASH, {"key_hash": key_hash})
        return _api_key(row) if row else None

    def by_id(self, key_id: str, tenant_id: str | None = None) -> ApiKeyRecord | None:
        stmt = _KEYS.where(t.api_keys.c.id == key_id)
        if tenant_id is not None:
            stmt = stmt.where(t.api_keys.c.tenant_id == tenant_id)
        row = self._one(stmt)
        return _api_key(row) if row else None

    def update(self, key: ApiKeyRecord) -> None:
        self.conn.execute(
            t.api_keys.update()
            .where(t.api_keys.c.id == key.id)
            .values(
                name=key.name,
                scopes=json.dumps(list(key.scopes)),
                rule=key.rule.to_json() if key.rule else None,
                expires_at=key.expires_at,
            )
        )

    def page(
        self, tenant_id: str, *, limit: int, offset: int, include_revoked: bool = False
    ) -> Page[ApiKeyRecord]:
        k = t.api_keys.c
        stmt = _KEYS.where(k.tenant_id == tenant_id)
        if not include_revoked:
            stmt = stmt.where(k.revoked_at.is_(None))
        stmt = stmt.order_by(k.created_at, k.id).limit(limit + 1).offset(offset)
        return Page.cut(self.conn.execute(stmt).all(), limit, _api_key)

    def count_active(self, tenant_id: str) -> int:
        k = t.api_keys.c
        stmt = (
            sa.select(sa.func.count())
            .select_from(t.api_keys)
            .where(k.tenant_id == tenant_id, k.revoked_at.is_(None))
        )
        return int(self.conn.execute(stmt).scalar_one())

    def touch(self, key_id: str, at: dt.datetime) -> None:
        self.conn.execute(
            t.api_keys.update().where(t.api_keys.c.id == key_id).values(last_used_at=at)
        )

    def list_keys(self, tenant_id: str | None = None) -> list[ApiKeyRecord]:
        stmt = _KEYS
        if tenant_id is not None:
            stmt = stmt.where(t.api_keys.c.tenant_id == tenant_id)
        stmt = stmt.order_by(t.tenants.c.name, t.api_keys.c.created_at, t.api_keys.c.id)
        return [_api_key(row) for row in self.conn.execute(stmt)]

    def revoke(self, key_id: str, at: dt.datetime) -> bool:
        result = self.conn.execute(
            t.api_keys.update()
            .where(t.api_keys.c.id == key_id, t.api_keys.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return result.rowcount == 1

    def count(self) -> int:
        stmt = sa.select(sa.func.count()).select_from(t.api_keys)
        return int(self.conn.execute(stmt).scalar_one())

    def lock_for_bootstrap(self) -> None:
        self.dialect.serialize(self.conn, _BOOTSTRAP_LOCK)

    def hashes(self) -> list[tuple[str, str]]:
        stmt = sa.select(t.api_keys.c.id, t.api_keys.c.key_hash).order_by(t.api_keys.c.id)
        return [(row.id, row.key_hash) for row in self.conn.execute(stmt)]

    def replace_hashes(self, changes: Sequence[tuple[str, str, str]]) -> None:
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
