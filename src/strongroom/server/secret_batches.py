"""Many secrets in one call: read a batch of values, or write a batch all-or-nothing.

An import, an export or a run over a thousand secrets is one request instead of a
thousand (and a thousand rate-limit tokens). Each keeps every rule of the one-by-one
calls: a batch read reveals each value through :func:`.secret_values.reveal_many`, with
one audit record per secret in the one transaction that reads them; a batch write checks
each item as a create or an update would, records each, and commits all of them or none.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final

from . import trail
from .auth import Caller, Scope, outside_rule, require
from .errors import Conflict, Forbidden, PayloadTooLarge, ValidationFailed
from .ids import new_id
from .policy import DEFAULT_POLICY
from .secret_values import Refusal, reveal_many, value_context
from .secrets import (
    UNSET,
    PolicyInput,
    RevealedSecret,
    SecretService,
    check_expiry,
    check_loosening,
    check_value,
    resolve_policy,
    use_only,
)
from .storage import NameTaken, SecretRecord, Transaction
from .trail import Action

MAX_BATCH: Final = 1000
# The values one batch read may return, in UTF-8 bytes: a thousand values at the largest
# size would be 64 MiB of JSON held in memory at once.
MAX_BATCH_VALUE_BYTES: Final = 16 * 1024 * 1024


@dataclass(frozen=True)
class BatchMiss:
    """A name a batch read returned no value for, and why (a wire error code)."""

    name: str
    code: str
    message: str


@dataclass(frozen=True)
class BatchRead:
    secrets: list[RevealedSecret]
    errors: list[BatchMiss]


@dataclass(frozen=True)
class BatchItem:
    """One secret of a batch write; fields left ``UNSET`` keep theirs on an existing one."""

    name: str
    value: str
    description: str | None = UNSET
    metadata: Mapping[str, Any] = UNSET
    policy: PolicyInput = UNSET
    expires_at: dt.datetime | None = UNSET

    def __repr__(self) -> str:  # a repr in a traceback shows no value
        return f"BatchItem(name={self.name!r})"


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class BatchWritten:
    name: str
    outcome: Outcome
    secret: SecretRecord  # as it is after the write
    new_version: bool = True  # an update that keeps the value makes no version


def _check_names(names: Sequence[str], where: str) -> None:
    if not names:
        raise ValidationFailed.at(where, "give at least one secret")
    if len(names) > MAX_BATCH:
        raise ValidationFailed.at(
            where, f"{len(names)} secrets in one batch; at most {MAX_BATCH} (send several)"
        )
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise ValidationFailed.at(f"{where}[{index}]", f"secret {name!r} is named twice")
        seen.add(name)


class SecretBatches:
    """Batch reads and writes over a :class:`SecretService` (its store, keyring, rules)."""

    def __init__(self, secrets: SecretService) -> None:
        self.secrets = secrets
        self.store = secrets.store

    # -- read ------------------------------------------------------------------------------
    def get_many(self, caller: Caller, names: Sequence[str]) -> BatchRead:
        """The current values of ``names``; a name without one is in ``errors`` with the
        code its own get would answer (``not_found`` hides what is out of reach by
        metadata, ``forbidden`` is decided by the name or a use-only policy)."""
        _check_names(names, "body.names")
        require(self.store, caller, Scope.SECRETS_READ, Action.READ)
        errors: list[BatchMiss] = []
        reachable = [name for name in names if caller.reaches_name(name)]
        for name in names:
            if not caller.reaches_name(name):
                errors.append(BatchMiss(name, "forbidden", str(outside_rule(caller, name))))
        with self.store.write() as tx:
            for name in set(names) - set(reachable):
                trail.record(
                    tx,
                    trail.event(
                        caller.actor,
                        Action.READ,
                        "forbidden",
                        secret_name=name,
                        detail="outside the key's rule",
                    ),
                )
            found = reveal_many(
                tx,
                self.secrets.keyring,
                caller.actor,
                reachable,
                rule=caller.rule,
                allow_expired=caller.may(Scope.SECRETS_ADMIN),
            )
            revealed: list[RevealedSecret] = []
            size = 0
            for one in found:
                if one.refusal is None and one.secret is not None and one.value is not None:
                    size += len(one.value.encode())
                    revealed.append(RevealedSecret(one.secret, one.version, one.value))
                    continue
                errors.append(_miss(one.name, one.refusal, one.secret))
            if size > MAX_BATCH_VALUE_BYTES:
                # Raised inside the transaction: no read is recorded, as none is returned.
                raise PayloadTooLarge(
                    f"these values come to {size} bytes; a batch returns at most "
                    f"{MAX_BATCH_VALUE_BYTES}: ask for fewer names at a time"
                )
        order = {name: index for index, name in enumerate(names)}
        errors.sort(key=lambda miss: order[miss.name])
        return BatchRead(revealed, errors)

    # -- write -----------------------------------------------------------------------------
    def put_many(
        self, caller: Caller, items: Sequence[BatchItem], *, dry_run: bool = False
    ) -> list[BatchWritten]:
        """Create or update every item in one transaction, or change nothing at all.

        An item whose fields and value are what the secret holds is ``unchanged`` and
        makes no version: told only to a caller who may read the value (any other gets
        ``updated`` and a new version, so the answer is no way to test a guess). With
        ``dry_run`` the outcomes are computed and nothing is written or recorded."""
        _check_names([item.name for item in items], "body.secrets")
        now = dt.datetime.now(dt.UTC)
        for index, item in enumerate(items):
            where = f"body.secrets[{index}]"
            try:
                check_value(item.value, self.secrets.max_value_bytes)
            except ValidationFailed as error:
                raise ValidationFailed.at(f"{where}.value", error.message) from None
            if item.expires_at is not UNSET:
                check_expiry(item.expires_at, now, f"{where}.expires_at")
            if item.policy is not UNSET:
                resolve_policy(DEFAULT_POLICY, item.policy, where=f"{where}.policy")
        require(self.store, caller, Scope.SECRETS_WRITE, Action.UPDATE)
        for item in items:
            self.secrets.reach_name(caller, Action.UPDATE, item.name)

        def work() -> list[BatchWritten]:
            if dry_run:
                with self.store.read() as tx:
                    return self._plan(tx, caller, items, now)
            with self.store.write() as tx:
                written = self._plan(tx, caller, items, now)
                self._write(tx, caller, items, written, now)
            return written

        return self.secrets.audited(caller, Action.UPDATE, None, work)

    def _plan(
        self, tx: Transaction, caller: Caller, items: Sequence[BatchItem], now: dt.datetime
    ) -> list[BatchWritten]:
        names = [item.name for item in items]
        live = tx.secrets.by_names(caller.tenant_id, names)
        missing = [name for name in names if name not in live]
        deleted = tx.secrets.by_names(caller.tenant_id, missing, deleted=True)
        planned: list[BatchWritten] = []
        for item in items:
            if item.name in deleted:
                raise Conflict(
                    f"secret {item.name!r} was deleted and can be restored until "
                    f"{deleted[item.name].purge_after}: restore or purge it first"
                )
            current = live.get(item.name)
            if current is None:
                created = self._new(caller, item, now)
                planned.append(BatchWritten(item.name, Outcome.CREATED, created))
                continue
            if not caller.reaches(current.name, current.metadata):
                raise Conflict(f"secret {item.name!r} already exists, outside this API key's reach")
            planned.append(self._changed(tx, caller, current, item, now))
        return planned

    def _new(self, caller: Caller, item: BatchItem, now: dt.datetime) -> SecretRecord:
        metadata = {} if item.metadata is UNSET else dict(item.metadata)
        if caller.rule is not None and not caller.rule.admits_metadata(metadata):
            raise Forbidden(
                f"secret {item.name!r} would be created outside this API key's reach "
                f"({caller.rule.describe()}): give it that metadata"
            )
        return SecretRecord(
            id=new_id(),
            tenant_id=caller.tenant_id,
            name=item.name,
            description=None if item.description is UNSET else item.description,
            metadata=metadata,
            version=1,
            created_at=now,
            updated_at=now,
            policy=DEFAULT_POLICY
            if item.policy is UNSET
            else resolve_policy(DEFAULT_POLICY, item.policy),
            expires_at=None if item.expires_at is UNSET else item.expires_at,
        )

    def _changed(
        self,
        tx: Transaction,
        caller: Caller,
        current: SecretRecord,
        item: BatchItem,
        now: dt.datetime,
    ) -> BatchWritten:
        changed = current
        if item.description is not UNSET:
            changed = replace(changed, description=item.description)
        if item.metadata is not UNSET:
            changed = replace(changed, metadata=dict(item.metadata))
        if item.expires_at is not UNSET:
            changed = replace(changed, expires_at=item.expires_at)
        if item.policy is not UNSET:
            policy = resolve_policy(current.policy, item.policy)
            check_loosening(caller, current.name, current.policy, policy)
            changed = replace(changed, policy=policy)
        self.secrets.stays_in_reach(caller, current.name, changed)
        same = self.secrets.same_value(tx, caller, current, item.value, now)
        if same and changed == current:
            return BatchWritten(current.name, Outcome.UNCHANGED, current)
        if not same:
            changed = replace(changed, version=current.version + 1)
        changed = replace(changed, updated_at=now)
        return BatchWritten(current.name, Outcome.UPDATED, changed, new_version=not same)

    def _write(
        self,
        tx: Transaction,
        caller: Caller,
        items: Sequence[BatchItem],
        written: Sequence[BatchWritten],
        now: dt.datetime,
    ) -> None:
        keyring = self.secrets.keyring
        kek = tx.keyring.active_kek_id()
        created: list[tuple[SecretRecord, Any]] = []
        for item, one in zip(items, written, strict=True):
            secret = one.secret
            if one.outcome is Outcome.CREATED:
                context = value_context(secret.tenant_id, secret.id, secret.version)
                created.append((secret, keyring.encrypt(context, item.value.encode(), kek)))
        if created:
            try:
                tx.secrets.insert_many(created, caller.key_id)
            except NameTaken:
                raise Conflict(
                    "a secret of one of these names was created while the batch ran; "
                    "nothing was written: send the batch again"
                ) from None
        for item, one in zip(items, written, strict=True):
            secret = one.secret
            if one.outcome is Outcome.UPDATED:
                tx.secrets.update(secret)
                if one.new_version:
                    self.secrets.seal_version(tx, caller, secret, item.value, now)
            action = Action.CREATE if one.outcome is Outcome.CREATED else Action.UPDATE
            detail = f"batch: {one.outcome.value}; version {secret.version}"
            self.secrets.succeeded(tx, caller, action, secret, detail)


def _miss(name: str, refusal: Refusal | None, secret: SecretRecord | None) -> BatchMiss:
    if refusal in (Refusal.MISSING, Refusal.OUT_OF_REACH, Refusal.NO_VERSION):
        return BatchMiss(name, "not_found", f"secret {name!r} does not exist")
    if refusal is Refusal.USE_ONLY:
        return BatchMiss(name, "forbidden", str(use_only(name)))
    if refusal is Refusal.EXPIRED and secret is not None and secret.expires_at is not None:
        return BatchMiss(
            name, "expired", f"secret {name!r} expired at {secret.expires_at.isoformat()}"
        )
    return BatchMiss(
        name,
        "internal_error",
        f"the stored ciphertext of secret {name!r} failed authentication; it is not returned",
    )
