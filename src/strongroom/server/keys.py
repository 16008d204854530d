"""Issuing, listing and revoking API keys (the CLI's ``strongroom keys``).

Issuing needs the unsealed keyring: a key is stored as an HMAC under a key that only the
keyring holds (``Keyring.hash_api_key``). Listing and revoking need only the database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from .apikeys import ALL_SCOPES, generate_api_key, key_hint, scope_problem
from .crypto import Keyring
from .ids import new_id
from .storage.base import ApiKeyRecord, Store, Tenant, Transaction


def _tenant(tx: Transaction, name: str) -> Tenant:
    tenant = tx.tenant_by_name(name)
    if tenant is None:
        tenant = Tenant(new_id(), name, dt.datetime.now(dt.UTC))
        tx.insert_tenant(tenant)
    return tenant


def ensure_tenant(store: Store, name: str) -> Tenant:
    """The tenant called ``name``, created if it does not exist yet."""
    with store.write() as tx:
        return _tenant(tx, name)


def _issue(
    tx: Transaction, keyring: Keyring, tenant_name: str, name: str | None, scopes: Sequence[str]
) -> tuple[str, ApiKeyRecord]:
    tenant = _tenant(tx, tenant_name)
    key = generate_api_key()
    record = ApiKeyRecord(
        id=new_id(),
        tenant_id=tenant.id,
        tenant_name=tenant.name,
        name=name,
        key_hash=keyring.hash_api_key(key),
        hint=key_hint(key),
        scopes=tuple(dict.fromkeys(scopes)) or (ALL_SCOPES,),
        created_at=dt.datetime.now(dt.UTC),
        revoked_at=None,
    )
    tx.insert_api_key(record)
    return key, record


def create_api_key(
    store: Store,
    keyring: Keyring,
    tenant_name: str,
    *,
    name: str | None = None,
    scopes: Sequence[str] = (),
) -> tuple[str, ApiKeyRecord]:
    """A new key for ``tenant_name`` (created if new); the key is shown only now.

    No scopes means every scope.
    """
    for scope in scopes:
        problem = scope_problem(scope)
        if problem:
            raise ValueError(problem)
    with store.write() as tx:
        return _issue(tx, keyring, tenant_name, name, scopes)


def list_api_keys(store: Store, tenant_name: str | None = None) -> list[ApiKeyRecord]:
    with store.read() as tx:
        if tenant_name is None:
            return tx.list_api_keys()
        tenant = tx.tenant_by_name(tenant_name)
        return tx.list_api_keys(tenant.id) if tenant else []


def revoke_api_key(store: Store, key_id: str) -> bool:
    with store.write() as tx:
        return tx.revoke_api_key(key_id, dt.datetime.now(dt.UTC))


def bootstrap_key(store: Store, keyring: Keyring, tenant_name: str = "default") -> str | None:
    """On a database with no API key at all, issue one with every scope."""
    with store.write() as tx:
        if tx.count_api_keys():
            return None
        key, _ = _issue(tx, keyring, tenant_name, "bootstrap", ())
        return key
