"""The secrets service: the rules of the secret lifecycle, with encryption and audit.

Routes call these methods with already-validated input. Each method runs in one write
transaction that also records its audit event, so a change and its record commit together,
and a value is never returned unless its read was recorded.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from . import audit
from .apikeys import grants
from .audit import Action, Caller
from .crypto import IntegrityFailure, Keyring
from .errors import (
    Conflict,
    Forbidden,
    InternalError,
    NotFound,
    PreconditionFailed,
    ServiceError,
)
from .ids import new_id
from .storage.base import NameTaken, Page, SecretRecord, Store, Transaction, VersionRecord

log = logging.getLogger("strongroom.secrets")

T = TypeVar("T")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class RevealedSecret:
    secret: SecretRecord
    version: int
    value: str

    def __repr__(self) -> str:  # a repr in a traceback or debugger shows no value
        return f"RevealedSecret(name={self.secret.name!r}, version={self.version})"


@dataclass(frozen=True)
class DeletedSecret:
    id: str
    name: str
    deleted_at: dt.datetime


def _not_found(name: str) -> NotFound:
    return NotFound(f"secret {name!r} does not exist")


@dataclass(frozen=True)
class _Target:
    """The secret a call names: by name (``/v1``) or by id (``/julep``), in the caller's
    tenant. Another tenant's id is not found, exactly as a missing one."""

    name: str | None = None
    id: str | None = None

    def find(self, tx: Transaction, tenant_id: str) -> SecretRecord | None:
        if self.id is not None:
            return tx.secret_by_id(tenant_id, self.id, for_update=True)
        assert self.name is not None
        return tx.secret_by_name(tenant_id, self.name, for_update=True)

    def not_found(self) -> NotFound:
        if self.id is not None:
            return NotFound(f"no secret has id {self.id!r}")
        assert self.name is not None
        return _not_found(self.name)


@dataclass
class _Attempt:
    """What a call does, as the record of its failure names it. A call by id learns the
    secret's name, and whether it renames, once it has found the secret."""

    action: Action
    secret_name: str | None
    secret_id: str | None = None


def _check_version(current: SecretRecord, expected: int | None) -> None:
    if expected is not None and expected != current.version:
        raise PreconditionFailed(
            f"secret {current.name!r} is at version {current.version}, not {expected}"
        )


class SecretService:
    def __init__(self, store: Store, keyring: Keyring) -> None:
        self.store = store
        self.keyring = keyring

    # -- plumbing -------------------------------------------------------------------------
    def _authorize(
        self,
        caller: Caller,
        scope: str,
        action: Action,
        name: str | None,
        secret_id: str | None = None,
    ) -> None:
        if not grants(caller.scopes, scope):
            audit.record_alone(
                self.store,
                audit.event(caller, action, "forbidden", secret_name=name, secret_id=secret_id),
            )
            raise Forbidden(f"this API key lacks the {scope!r} scope")

    def _audited(
        self, caller: Caller, action: Action, name: str | None, work: Callable[[], T]
    ) -> T:
        """Run ``work``; if it fails on purpose, record the failure on its own."""
        return self._attempt(caller, _Attempt(action, name), work)

    def _attempt(self, caller: Caller, attempt: _Attempt, work: Callable[[], T]) -> T:
        try:
            return work()
        except ServiceError as error:
            event = audit.event(
                caller,
                attempt.action,
                error.code,
                secret_name=attempt.secret_name,
                secret_id=attempt.secret_id,
            )
            audit.record_alone(self.store, event)
            raise

    @staticmethod
    def _succeeded(
        tx: Transaction,
        caller: Caller,
        action: Action,
        secret: SecretRecord,
        detail: str | None = None,
    ) -> None:
        event = audit.event(
            caller, action, "success", secret_name=secret.name, secret_id=secret.id, detail=detail
        )
        audit.record(tx, event)

    def _seal_version(
        self, tx: Transaction, caller: Caller, secret: SecretRecord, value: str, at: dt.datetime
    ) -> None:
        stored = self.keyring.seal(tx, secret.tenant_id, secret.id, secret.version, value)
        tx.insert_version(stored, at, caller.key_id)

    # -- calls ----------------------------------------------------------------------------
    def create(
        self,
        caller: Caller,
        name: str,
        value: str,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SecretRecord:
        self._authorize(caller, "secrets:write", Action.CREATE, name)

        def work() -> SecretRecord:
            now = dt.datetime.now(dt.UTC)
            secret = SecretRecord(
                id=new_id(),
                tenant_id=caller.tenant_id,
                name=name,
                description=description,
                metadata=dict(metadata or {}),
                version=1,
                created_at=now,
                updated_at=now,
            )
            try:
                with self.store.write() as tx:
                    tx.insert_secret(secret)
                    self._seal_version(tx, caller, secret, value, now)
                    self._succeeded(tx, caller, Action.CREATE, secret)
            except NameTaken:
                raise Conflict(f"secret {name!r} already exists") from None
            return secret

        return self._audited(caller, Action.CREATE, name, work)

    def get(self, caller: Caller, name: str, version: int | None = None) -> RevealedSecret:
        self._authorize(caller, "secrets:read", Action.READ, name)
        failure: ServiceError | None = None
        revealed: RevealedSecret | None = None
        with self.store.write() as tx:
            secret = tx.secret_by_name(caller.tenant_id, name)
            wanted = version if version is not None else (secret.version if secret else 0)
            stored = tx.version(secret.id, wanted) if secret else None
            if secret is None:
                failure = _not_found(name)
            elif stored is None:
                failure = NotFound(f"secret {name!r} has no version {wanted}")
            else:
                try:
                    revealed = RevealedSecret(secret, wanted, self.keyring.open(stored))
                except IntegrityFailure:
                    log.error(
                        "stored ciphertext failed authentication",
                        extra={"secret_id": secret.id, "version": wanted},
                    )
                    failure = InternalError(
                        f"the stored ciphertext of secret {name!r} version {wanted} failed "
                        "authentication: the database row was altered or copied from "
                        "elsewhere, so the value cannot be trusted and is not returned"
                    )
            # The read is recorded in the transaction that read it: no record, no value.
            audit.record(
                tx,
                audit.event(
                    caller,
                    Action.READ,
                    failure.code if failure else "success",
                    secret_name=name,
                    secret_id=secret.id if secret else None,
                    detail=f"version {wanted}" if secret else None,
                ),
            )
        if failure is not None:
            raise failure
        assert revealed is not None
        return revealed

    def list_secrets(
        self,
        caller: Caller,
        *,
        limit: int,
        offset: int,
        metadata_filter: Mapping[str, Any] | None = None,
    ) -> Page[SecretRecord]:
        self._authorize(caller, "secrets:read", Action.LIST, None)
        with self.store.read() as tx:
            return tx.list_secrets(
                caller.tenant_id, limit=limit, offset=offset, metadata_filter=metadata_filter
            )

    def list_newest_first(self, caller: Caller, *, limit: int, offset: int) -> Page[SecretRecord]:
        """The tenant's secrets, most recently created first (the Julep surface's order)."""
        self._authorize(caller, "secrets:read", Action.LIST, None)
        with self.store.read() as tx:
            return tx.list_secrets_newest_first(caller.tenant_id, limit=limit, offset=offset)

    def versions(self, caller: Caller, name: str) -> list[VersionRecord]:
        self._authorize(caller, "secrets:read", Action.VERSIONS, name)

        def work() -> list[VersionRecord]:
            with self.store.read() as tx:
                secret = tx.secret_by_name(caller.tenant_id, name)
                if secret is None:
                    raise _not_found(name)
                return tx.list_versions(secret.id)

        return self._audited(caller, Action.VERSIONS, name, work)

    def update(
        self,
        caller: Caller,
        name: str,
        *,
        value: str | None = None,
        description: str | None = UNSET,
        metadata: Mapping[str, Any] = UNSET,
        new_name: str | None = None,
        expected_version: int | None = None,
    ) -> SecretRecord:
        """Change the given fields; a value makes a new version, ``new_name`` renames."""
        return self._update(
            caller,
            _Target(name=name),
            value=value,
            description=description,
            metadata=metadata,
            new_name=new_name,
            expected_version=expected_version,
        )

    def update_by_id(
        self,
        caller: Caller,
        secret_id: str,
        *,
        value: str | None = None,
        description: str | None = UNSET,
        metadata: Mapping[str, Any] = UNSET,
        new_name: str | None = None,
    ) -> SecretRecord:
        """:meth:`update` of the caller's tenant's secret with that id."""
        return self._update(
            caller,
            _Target(id=secret_id),
            value=value,
            description=description,
            metadata=metadata,
            new_name=new_name,
            expected_version=None,
        )

    def _update(
        self,
        caller: Caller,
        target: _Target,
        *,
        value: str | None,
        description: str | None,
        metadata: Mapping[str, Any],
        new_name: str | None,
        expected_version: int | None,
    ) -> SecretRecord:
        renames = target.name is not None and new_name is not None and new_name != target.name
        attempt = _Attempt(Action.RENAME if renames else Action.UPDATE, target.name, target.id)
        self._authorize(caller, "secrets:write", attempt.action, target.name, target.id)

        def work() -> SecretRecord:
            now = dt.datetime.now(dt.UTC)
            try:
                with self.store.write() as tx:
                    current = target.find(tx, caller.tenant_id)
                    if current is None:
                        raise target.not_found()
                    name = current.name
                    if target.id is not None:
                        attempt.secret_name = name
                        if new_name is not None and new_name != name:
                            attempt.action = Action.RENAME
                    _check_version(current, expected_version)
                    changed = replace(current, updated_at=now)
                    fields = []
                    if description is not UNSET:
                        changed = replace(changed, description=description)
                        fields.append("description")
                    if metadata is not UNSET:
                        changed = replace(changed, metadata=dict(metadata))
                        fields.append("metadata")
                    if value is not None:
                        changed = replace(changed, version=current.version + 1)
                        fields.append("value")
                    if new_name is not None and new_name != name:
                        changed = replace(changed, name=new_name)
                    elif not fields:
                        return current  # renamed to its own name: nothing changes
                    tx.update_secret(changed)
                    if value is not None:
                        self._seal_version(tx, caller, changed, value, now)
                    if changed.name != name:
                        self._succeeded(
                            tx, caller, Action.RENAME, changed, f"renamed from {name!r}"
                        )
                    if fields:
                        detail = f"changed {', '.join(fields)}; version {changed.version}"
                        self._succeeded(tx, caller, Action.UPDATE, changed, detail)
            except NameTaken:
                raise Conflict(f"secret {new_name!r} already exists") from None
            return changed

        return self._attempt(caller, attempt, work)

    def upsert(
        self,
        caller: Caller,
        name: str,
        value: str,
        *,
        description: str | None = UNSET,
        metadata: Mapping[str, Any] = UNSET,
        expected_version: int | None = None,
    ) -> tuple[SecretRecord, bool]:
        """Create the secret, or give it a new value; True when it was created.

        Fields left out keep their values on an existing secret. With
        ``expected_version`` the secret must exist at that version.
        """
        self._authorize(caller, "secrets:write", Action.UPDATE, name)
        with self.store.read() as tx:
            exists = tx.secret_by_name(caller.tenant_id, name) is not None
        if not exists and expected_version is None:
            try:
                created = self.create(
                    caller,
                    name,
                    value,
                    None if description is UNSET else description,
                    None if metadata is UNSET else metadata,
                )
            except Conflict:
                pass  # created concurrently since we looked: replace it instead
            else:
                return created, True
        updated = self.update(
            caller,
            name,
            value=value,
            description=description,
            metadata=metadata,
            expected_version=expected_version,
        )
        return updated, False

    def delete(
        self, caller: Caller, name: str, *, expected_version: int | None = None
    ) -> DeletedSecret:
        """Delete the secret and every version; the name is free at once."""
        return self._delete(caller, _Target(name=name), expected_version)

    def delete_by_id(self, caller: Caller, secret_id: str) -> DeletedSecret:
        """:meth:`delete` of the caller's tenant's secret with that id."""
        return self._delete(caller, _Target(id=secret_id), None)

    def _delete(
        self, caller: Caller, target: _Target, expected_version: int | None
    ) -> DeletedSecret:
        attempt = _Attempt(Action.DELETE, target.name, target.id)
        self._authorize(caller, "secrets:write", Action.DELETE, target.name, target.id)

        def work() -> DeletedSecret:
            now = dt.datetime.now(dt.UTC)
            with self.store.write() as tx:
                secret = target.find(tx, caller.tenant_id)
                if secret is None:
                    raise target.not_found()
                if target.id is not None:
                    attempt.secret_name = secret.name
                _check_version(secret, expected_version)
                tx.delete_secret(secret.id)
                self._succeeded(tx, caller, Action.DELETE, secret)
            return DeletedSecret(secret.id, secret.name, now)

        return self._attempt(caller, attempt, work)
