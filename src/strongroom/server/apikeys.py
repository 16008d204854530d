"""API keys: their format, issuing them from a shell (``strongroom keys``), and managing
them over the API (:class:`KeyService`, ``/v1/keys``).

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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from . import trail
from .auth import Caller, Scope, require, scope_problem, scopes_within
from .crypto import Barrier
from .errors import Conflict, Forbidden, NotFound, ValidationFailed
from .ids import new_id
from .rules import ResourceRule, rule_within
from .storage import ApiKeyRecord, Page, Store, Tenant, Transaction
from .trail import Action

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


def _insert_key(
    tx: Transaction,
    barrier: Barrier,
    tenant: tuple[str, str],
    name: str | None,
    scopes: tuple[str, ...],
    *,
    rule: ResourceRule | None = None,
    expires_at: dt.datetime | None = None,
    created_by: str | None = None,
) -> tuple[str, ApiKeyRecord]:
    """A new key of ``tenant`` (its id and name), stored as its hash; the key itself is
    returned, once."""
    key = generate_api_key()
    record = ApiKeyRecord(
        id=new_id(),
        tenant_id=tenant[0],
        tenant_name=tenant[1],
        name=name,
        key_hash=barrier.hash_api_key(key),
        hint=key_hint(key),
        scopes=scopes,
        created_at=dt.datetime.now(dt.UTC),
        revoked_at=None,
        rule=rule,
        expires_at=expires_at,
        created_by=created_by,
    )
    tx.apikeys.insert(record)
    return key, record


def _issue(
    tx: Transaction,
    barrier: Barrier,
    tenant_name: str,
    name: str | None,
    scopes: Sequence[str],
    rule: ResourceRule | None = None,
    expires_at: dt.datetime | None = None,
) -> tuple[str, ApiKeyRecord]:
    """A key issued from a shell: its tenant made if new, every scope when none given."""
    tenant = _tenant(tx, tenant_name)
    scopes = tuple(dict.fromkeys(scopes)) or (Scope.ALL.value,)
    return _insert_key(
        tx, barrier, (tenant.id, tenant.name), name, scopes, rule=rule, expires_at=expires_at
    )


def create_api_key(
    store: Store,
    barrier: Barrier,
    tenant_name: str,
    *,
    name: str | None = None,
    scopes: Sequence[str] = (),
    rule: ResourceRule | None = None,
    expires_at: dt.datetime | None = None,
) -> tuple[str, ApiKeyRecord]:
    """A new key for ``tenant_name`` (created if new); the key is shown only now.

    No scopes means every scope; no rule, every secret of the tenant; no expiry, never.
    """
    for scope in scopes:
        problem = scope_problem(scope)
        if problem:
            raise ValueError(problem)
    if expires_at is not None and expires_at <= dt.datetime.now(dt.UTC):
        raise ValueError("the expiry must be in the future")
    with store.write() as tx:
        return _issue(tx, barrier, tenant_name, name, scopes, rule, expires_at)


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
    """On a database with no API key at all, issue one with every scope; of servers
    starting together on one database, exactly one issues it."""
    with store.write() as tx:
        tx.apikeys.lock_for_bootstrap()
        if tx.apikeys.count():
            return None
        key, _ = _issue(tx, barrier, tenant_name, "bootstrap", ())
        return key


# -- keys over the API --------------------------------------------------------------------------
# Unrevoked keys one tenant may hold: listing walks them, and a leaked keys:admin key must
# not be able to mint without end.
MAX_ACTIVE_KEYS = 1000
MAX_GRACE = dt.timedelta(days=30)
_LIST_CHUNK = 200


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class IssuedKey:
    """A new key and its record: the key is shown once, now, and never stored."""

    key: str
    record: ApiKeyRecord

    def __repr__(self) -> str:  # a traceback or debugger shows no key
        return f"IssuedKey(id={self.record.id!r})"


def power_problem(
    caller: Caller,
    scopes: tuple[str, ...],
    rule: ResourceRule | None,
    expires_at: dt.datetime | None,
) -> str | None:
    """Why a key of this power would exceed ``caller``'s, or None when it would not.

    A key never makes, changes into or takes over a key that may do more (scopes), reach
    more (rule: another tenant is never reachable at all) or live longer (expiry) than
    itself: whatever a key can do, so can any key it issues, and no more.
    """
    if not scopes_within(scopes, caller.scopes):
        extra = sorted(set(scopes) - set(caller.scopes)) or ["*"]
        return f"scopes {', '.join(extra)} exceed this key's ({', '.join(caller.scopes)})"
    if not rule_within(rule, caller.rule):
        assert caller.rule is not None
        wanted = rule.describe() if rule else "every secret"
        return f"a key reaching {wanted} reaches more than this key ({caller.rule.describe()})"
    if caller.expires_at is not None and (expires_at is None or expires_at > caller.expires_at):
        return f"a key must expire no later than this key ({caller.expires_at.isoformat()})"
    return None


class KeyRefused(Forbidden):
    """A key management call beyond the caller's power; recorded in the trail."""

    def __init__(self, message: str, *, action: Action, key_id: str | None) -> None:
        super().__init__(message)
        self.action = action
        self.key_id = key_id


class KeyService:
    """Keys managed over the API by a key with ``keys:admin``, each within its own power."""

    def __init__(self, store: Store, barrier: Barrier) -> None:
        self.store = store
        self.barrier = barrier

    # -- plumbing -------------------------------------------------------------------------
    @contextmanager
    def _refusals_recorded(self, caller: Caller) -> Iterator[None]:
        """Record a :class:`KeyRefused` raised inside, once its transaction has rolled
        back (recording it inside would wait on that very transaction's lock)."""
        try:
            yield
        except KeyRefused as refused:
            event = trail.event(
                caller.actor,
                refused.action,
                "forbidden",
                detail=_detail(refused.key_id, refused.message),
            )
            trail.record_alone(self.store, event)
            raise

    def _check_power(
        self,
        caller: Caller,
        action: Action,
        key_id: str | None,
        scopes: tuple[str, ...],
        rule: ResourceRule | None,
        expires_at: dt.datetime | None,
    ) -> None:
        problem = power_problem(caller, scopes, rule, expires_at)
        if problem is not None:
            raise KeyRefused(f"refused: {problem}", action=action, key_id=key_id)

    def _managed(
        self, tx: Transaction, caller: Caller, action: Action, key_id: str
    ) -> ApiKeyRecord:
        """The caller's tenant's key ``key_id``, if the caller may manage it: a key may
        manage only keys no more powerful than itself (rotating a broader one would hand
        it the broader key). Another tenant's key is not found, as a missing one."""
        record = tx.apikeys.by_id(key_id, caller.tenant_id)
        if record is None:
            raise NotFound(f"no API key has id {key_id!r}")
        problem = power_problem(caller, record.scopes, record.rule, record.expires_at)
        if problem is not None:
            raise KeyRefused(
                f"API key {key_id!r} is more powerful than this key: {problem}",
                action=action,
                key_id=key_id,
            )
        return record

    @staticmethod
    def _future(expires_at: dt.datetime | None, now: dt.datetime) -> None:
        if expires_at is not None and expires_at <= now:
            raise ValidationFailed.at("body.expires_at", "expires_at must be in the future")

    # -- calls ----------------------------------------------------------------------------
    def create(
        self,
        caller: Caller,
        *,
        name: str | None = None,
        scopes: Sequence[str] | None = None,
        rule: ResourceRule | None = UNSET,
        expires_at: dt.datetime | None = UNSET,
    ) -> IssuedKey:
        """Issue a key of the caller's tenant. What is left out is the caller's own: its
        scopes, its rule, its expiry; what is given may only narrow them."""
        require(self.store, caller, Scope.KEYS_ADMIN, Action.KEY_CREATE)
        now = dt.datetime.now(dt.UTC)
        wanted_scopes = caller.scopes if scopes is None else tuple(dict.fromkeys(scopes))
        wanted_rule = caller.rule if rule is UNSET else rule
        wanted_expiry = caller.expires_at if expires_at is UNSET else expires_at
        self._future(wanted_expiry, now)
        with self._refusals_recorded(caller):
            self._check_power(
                caller, Action.KEY_CREATE, None, wanted_scopes, wanted_rule, wanted_expiry
            )
        with self.store.write() as tx:
            if tx.apikeys.count_active(caller.tenant_id) >= MAX_ACTIVE_KEYS:
                raise Conflict(
                    f"this tenant has {MAX_ACTIVE_KEYS} unrevoked API keys, the most it may "
                    "hold: revoke some first"
                )
            issued = self._issue(tx, caller, name, wanted_scopes, wanted_rule, wanted_expiry)
            trail.record(
                tx,
                trail.event(
                    caller.actor,
                    Action.KEY_CREATE,
                    "success",
                    detail=_detail(issued.record.id, name),
                ),
            )
        return issued

    def _issue(
        self,
        tx: Transaction,
        caller: Caller,
        name: str | None,
        scopes: tuple[str, ...],
        rule: ResourceRule | None,
        expires_at: dt.datetime | None,
    ) -> IssuedKey:
        key, record = _insert_key(
            tx,
            self.barrier,
            (caller.tenant_id, caller.tenant_name),
            name,
            scopes,
            rule=rule,
            expires_at=expires_at,
            created_by=caller.key_id,
        )
        return IssuedKey(key, record)

    def list_keys(
        self, caller: Caller, *, limit: int, offset: int, include_revoked: bool = False
    ) -> Page[ApiKeyRecord]:
        """The tenant's keys this key may manage (no more powerful than itself), oldest
        first; revoked ones only when asked."""
        require(self.store, caller, Scope.KEYS_ADMIN, Action.KEY_LIST)
        manageable: list[ApiKeyRecord] = []
        with self.store.read() as tx:
            if caller.rule is None and caller.expires_at is None and caller.may(Scope.ALL):
                # It may manage every key of the tenant: the database pages them.
                return tx.apikeys.page(
                    caller.tenant_id, limit=limit, offset=offset, include_revoked=include_revoked
                )
            walked = 0
            while len(manageable) < offset + limit + 1:
                chunk = tx.apikeys.page(
                    caller.tenant_id,
                    limit=_LIST_CHUNK,
                    offset=walked,
                    include_revoked=include_revoked,
                )
                manageable.extend(
                    record
                    for record in chunk.items
                    if power_problem(caller, record.scopes, record.rule, record.expires_at) is None
                )
                walked += len(chunk.items)
                if not chunk.has_more:
                    break
        window = manageable[offset : offset + limit + 1]
        return Page(window[:limit], len(window) > limit)

    def get(self, caller: Caller, key_id: str) -> ApiKeyRecord:
        require(self.store, caller, Scope.KEYS_ADMIN, Action.KEY_LIST)
        with self._refusals_recorded(caller), self.store.read() as tx:
            return self._managed(tx, caller, Action.KEY_LIST, key_id)

    def update(
        self,
        caller: Caller,
        key_id: str,
        *,
        name: str | None = UNSET,
        scopes: Sequence[str] = UNSET,
        rule: ResourceRule | None = UNSET,
        expires_at: dt.datetime | None = UNSET,
    ) -> ApiKeyRecord:
        """Change a key's name, scopes, rule or expiry; the key as changed must still be
        within the caller's power (a key can narrow itself, never widen)."""
        require(self.store, caller, Scope.KEYS_ADMIN, Action.KEY_UPDATE)
        now = dt.datetime.now(dt.UTC)
        with self._refusals_recorded(caller), self.store.write() as tx:
            current = self._managed(tx, caller, Action.KEY_UPDATE, key_id)
            if current.revoked_at is not None:
                raise Conflict(f"API key {key_id!r} is revoked; a revoked key cannot change")
            changed = current
            if name is not UNSET:
                changed = replace(changed, name=name)
            if scopes is not UNSET:
                changed = replace(changed, scopes=tuple(dict.fromkeys(scopes)))
            if rule is not UNSET:
                changed = replace(changed, rule=rule)
            if expires_at is not UNSET:
                self._future(expires_at, now)
                changed = replace(changed, expires_at=expires_at)
            self._check_power(
                caller, Action.KEY_UPDATE, key_id, changed.scopes, changed.rule, changed.expires_at
            )
            tx.apikeys.update(changed)
            trail.record(
                tx,
                trail.event(
                    caller.actor, Action.KEY_UPDATE, "success", detail=_detail(key_id, changed.name)
                ),
            )
        return changed

    def revoke(self, caller: Caller, key_id: str) -> ApiKeyRecord:
        """Revoke a key (its sessions end with it); revoking a revoked key changes nothing."""
        require(self.store, caller, Scope.KEYS_ADMIN, Action.KEY_REVOKE)
        now = dt.datetime.now(dt.UTC)
        with self._refusals_recorded(caller), self.store.write() as tx:
            current = self._managed(tx, caller, Action.KEY_REVOKE, key_id)
            if current.revoked_at is not None:
                return current
            tx.apikeys.revoke(key_id, now)
            trail.record(
                tx,
                trail.event(
                    caller.actor, Action.KEY_REVOKE, "success", detail=_detail(key_id, current.name)
                ),
            )
        return replace(current, revoked_at=now)

    def rotate(
        self, caller: Caller, key_id: str, *, grace: dt.timedelta = dt.timedelta(0)
    ) -> tuple[IssuedKey, ApiKeyRecord]:
        """A new key with the old one's name, scopes, rule and expiry; the old one stays
        valid for ``grace`` (revoked at once without one). Returns the new key and the
        old one's record as changed."""
        require(self.store, caller, Scope.KEYS_ADMIN, Action.KEY_ROTATE)
        if not dt.timedelta(0) <= grace <= MAX_GRACE:
            raise ValidationFailed.at(
                "body.grace_seconds",
                f"a grace period is 0 to {int(MAX_GRACE.total_seconds())} seconds",
            )
        now = dt.datetime.now(dt.UTC)
        with self._refusals_recorded(caller), self.store.write() as tx:
            old = self._managed(tx, caller, Action.KEY_ROTATE, key_id)
            if old.ended(now):
                raise Conflict(f"API key {key_id!r} is revoked or expired; issue a new key instead")
            issued = self._issue(tx, caller, old.name, old.scopes, old.rule, old.expires_at)
            if grace:
                ends = now + grace
                if old.expires_at is None or ends < old.expires_at:
                    old = replace(old, expires_at=ends)
                    tx.apikeys.update(old)
            else:
                tx.apikeys.revoke(key_id, now)
                old = replace(old, revoked_at=now)
            detail = f"{_detail(key_id, old.name)}; replaced by {issued.record.id}"
            trail.record(tx, trail.event(caller.actor, Action.KEY_ROTATE, "success", detail=detail))
        return issued, old


def _detail(key_id: str | None, text: str | None) -> str:
    """An audit detail about a key: its id, and the name or reason given."""
    if key_id is None:
        return text or ""
    return f"key {key_id}" + (f": {text}" if text else "")
