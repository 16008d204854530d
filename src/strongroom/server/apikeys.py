"""API keys: their format, and issuing, listing and revoking them (``strongroom keys``).

A key is ``sr_`` + 32 random base62 characters + a 6-character checksum.

The checksum (CRC32 of the random part) lets the server tell a mistyped key from an
unknown or revoked one without a database look-up. Keys are 190 bits of randomness, so a
fast hash is enough (as GitHub does); but a plain hash is one anybody can compute, so
anybody able to insert a row could mint a key. What is stored is therefore
``HMAC-SHA-256(k, SHA-256(key))``, with ``k`` a random key only the unsealed barrier
holds (``Barrier.hash_api_key``): a row whose hash was computed without ``k`` authorises
nothing. Issuing therefore needs the unsealed barrier; listing and revoking need only
the database.
"""

from __future__ import annotations

import datetime as dt
import secrets
import string
import zlib
from collections.abc import Sequence

from .auth import Scope, scope_problem
from .crypto import Barrier
from .ids import new_id
from .storage import ApiKeyRecord, Store, Tenant, Transaction

PREFIX = "sr_"
RANDOM_CHARS = 32
CHECKSUM_CHARS = 6
KEY_LENGTH = len(PREFIX) + RANDOM_CHARS + CHECKSUM_CHARS
_ALPHABET = string.digits + string.ascii_letters


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(_ALPHABET[digit])
    return "".join(reversed(digits))


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode()), CHECKSUM_CHARS)


def generate_api_key() -> str:
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(RANDOM_CHARS))
    return PREFIX + random_part + _checksum(random_part)


def format_problem(key: str) -> str | None:
    """Why ``key`` cannot be a strongroom key, or None when it is well formed."""
    if not key.startswith(PREFIX):
        return "API key must start with 'sr_'"
    if len(key) != KEY_LENGTH or any(c not in _ALPHABET for c in key[len(PREFIX) :]):
        return "API key is malformed"
    random_part = key[len(PREFIX) : len(PREFIX) + RANDOM_CHARS]
    if not secrets.compare_digest(_checksum(random_part), key[-CHECKSUM_CHARS:]):
        return "API key checksum does not match (a mistyped or truncated key?)"
    return None


def key_hint(key: str) -> str:
    """What a listing may show of a key: its prefix and last four characters."""
    return f"{PREFIX}…{key[-4:]}"


def _tenant(tx: Transaction, name: str) -> Tenant:
    tenant = tx.apikeys.tenant_by_name(name)
    if tenant is None:
        tenant = Tenant(new_id(), name, dt.datetime.now(dt.UTC))
        tx.apikeys.insert_tenant(tenant)
    return tenant


def ensure_tenant(store: Store, name: str) -> Tenant:
    """The tenant called ``name``, created if it does not exist yet."""
    with store.write() as tx:
        return _tenant(tx, name)


def _issue(
    tx: Transaction, barrier: Barrier, tenant_name: str, name: str | None, scopes: Sequence[str]
) -> tuple[str, ApiKeyRecord]:
    tenant = _tenant(tx, tenant_name)
    key = generate_api_key()
    record = ApiKeyRecord(
        id=new_id(),
        tenant_id=tenant.id,
        tenant_name=tenant.name,
        name=name,
        key_hash=barrier.hash_api_key(key),
        hint=key_hint(key),
        scopes=tuple(dict.fromkeys(scopes)) or (Scope.ALL.value,),
        created_at=dt.datetime.now(dt.UTC),
        revoked_at=None,
    )
    tx.apikeys.insert(record)
    return key, record


def create_api_key(
    store: Store,
    barrier: Barrier,
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
        return _issue(tx, barrier, tenant_name, name, scopes)


def list_api_keys(store: Store, tenant_name: str | None = None) -> list[ApiKeyRecord]:
    with store.read() as tx:
        if tenant_name is None:
            return tx.apikeys.list_keys()
        tenant = tx.apikeys.tenant_by_name(tenant_name)
        return tx.apikeys.list_keys(tenant.id) if tenant else []


def revoke_api_key(store: Store, key_id: str) -> bool:
    with store.write() as tx:
        return tx.apikeys.revoke(key_id, dt.datetime.now(dt.UTC))


def bootstrap_key(store: Store, barrier: Barrier, tenant_name: str = "default") -> str | None:
    """On a database with no API key at all, issue one with every scope."""
    with store.write() as tx:
        if tx.apikeys.count():
            return None
        key, _ = _issue(tx, barrier, tenant_name, "bootstrap", ())
        return key
