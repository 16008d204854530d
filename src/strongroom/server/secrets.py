"""The secrets service: the rules of the secret lifecycle, with encryption and audit.

Routes call these methods with already-validated input. Each method runs in one write
transaction that also records its audit event, so a change and its record commit together,
and a value is never returned unless its read was recorded.

A secret's usage policy (:mod:`.policy`) is enforced here for the API's side of it: a
use-only secret (``readable: false``) is never decrypted for an API key, whatever its
scopes, and a change that loosens a policy needs ``secrets:admin`` besides
``secrets:write``: a key that may only write must not be able to undo a restriction
somebody with more authority put on a secret (and then read or exfiltrate it).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from . import trail
from .auth import Caller, Scope, outside_rule, require
from .crypto import IntegrityFailure, Keyring
from .errors import (
    Conflict,
    Detail,
    Expired,
    Forbidden,
    InternalError,
    NotFound,
    PreconditionFailed,
    ServiceError,
    Unreachable,
    ValidationFailed,
)
from .ids import new_id
from .policy import DEFAULT_POLICY, PolicyError, SecretPolicy
from .rotation_policy import RotationPolicy, parse_period
from .secret_values import (
    Purpose,
    Refusal,
    holds_value,
    reseal_version,
    reveal,
    value_context,
    versions_match,
)
from .storage import (
    NameTaken,
    Page,
    SecretRecord,
    Store,
    StoredVersion,
    Transaction,
    VersionRecord,
)
from .trail import Action

log = logging.getLogger("strongroom.secrets")

T = TypeVar("T")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()

# A policy as callers give it: a whole SecretPolicy, or the wire's fields that change
# (``{"readable": False}``), which are laid over the current policy (the default one for
# a new secret).
PolicyInput = SecretPolicy | Mapping[str, Any]
# A rotation policy as callers give it: ``{"every": "30d", "task_id": "..."}``, or None to
# end rotation.
RotationInput = Mapping[str, Any] | None


def known_tools() -> dict[str, tuple[str, ...]]:
    """The tools (and their operations) a policy's ``allowed_tools`` may name: the task
    tool registry's. Imported here, not at the top: the registry pulls in the tools'
    client libraries, which nothing else of the secrets service needs."""
    from .tasks.tools import REGISTRY

    found: dict[str, tuple[str, ...]] = {}
    for name in REGISTRY.names:
        tool = REGISTRY.get(name)
        if tool is not None:
            found[name] = tuple(tool.operations)
    return found


def resolve_policy(
    current: SecretPolicy, given: PolicyInput, where: str = "policy"
) -> SecretPolicy:
    """The policy ``given`` makes of ``current``; a bad entry is a 422 located at
    ``where`` plus the entry (``body.policy.allowed_destinations[1]`` from the API)."""
    if isinstance(given, SecretPolicy):
        return given
    try:
        return current.changed(given, known_tools=known_tools())
    except PolicyError as exc:
        location = f"{where}.{exc.location}" if exc.location else where
        raise ValidationFailed.at(location, exc.message) from None


def use_only(name: str) -> Forbidden:
    return Forbidden(
        f"secret {name!r} is use-only (its policy has readable: false): tasks may use it, "
        "no API key can read it"
    )


def write_answer(
    caller: Caller, secret: SecretRecord, *, sent_description: bool, sent_metadata: bool
) -> SecretRecord:
    """The secret as a write call answers it. A key without ``secrets:read`` learns only
    what it sent (and the identifiers, version and policy a write needs): its description
    is ``None`` and its metadata empty unless this very call set them, so that a
    write-only key cannot read them back through a no-op rename or a new value."""
    if caller.may(Scope.SECRETS_READ):
        return secret
    return replace(
        secret,
        description=secret.description if sent_description else None,
        metadata=secret.metadata if sent_metadata else {},
    )


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
    # Until when it can be restored; None: purged, nothing of it is left.
    purge_after: dt.datetime | None = None


def _not_found(name: str) -> NotFound:
    return NotFound(f"secret {name!r} does not exist")


def _expired(secret: SecretRecord) -> Expired:
    assert secret.expires_at is not None
    return Expired(
        f"secret {secret.name!r} expired at {secret.expires_at.isoformat()}: give it a new "
        "value and expiry, or read it with a key that has 'secrets:admin'"
    )


def _held_by_deleted(name: str, deleted: SecretRecord) -> Conflict:
    until = deleted.purge_after.isoformat() if deleted.purge_after else "its purge"
    return Conflict(
        f"secret {name!r} was deleted and can be restored until {until} "
        f"(POST /v1/secrets/{name}/restore); its name stays taken until it is purged "
        "(DELETE with force=true, which needs 'secrets:admin')"
    )


def _unreachable(name: str) -> Unreachable:
    """A secret outside the key's rule: worded as a missing one, so existence stays hidden."""
    return Unreachable(f"secret {name!r} does not exist")


@dataclass(frozen=True)
class _Target:
    """The secret a call names: by name (``/v1``) or by id (``/julep``), in the caller's
    tenant. Another tenant's id is not found, exactly as a missing one."""

    name: str | None = None
    id: str | None = None

    def find(self, tx: Transaction, tenant_id: str) -> SecretRecord | None:
        if self.id is not None:
            return tx.secrets.by_id(tenant_id, self.id, for_update=True)
        assert self.name is not None
        return tx.secrets.by_name(tenant_id, self.name, for_update=True)

    def not_found(self) -> NotFound:
        if self.id is not None:
            return NotFound(f"no secret has id {self.id!r}")
        assert self.name is not None
        return _not_found(self.name)

    def unreachable(self) -> Unreachable:
        return Unreachable(str(self.not_found()))


@dataclass
class _Attempt:
    """What a call does, as the record of its failure names it. A call by id learns the
    secret's name, and whether it renames, once it has found the secret."""

    action: Action
    secret_name: str | None
    secret_id: str | None = None


def _reachable(tx: Transaction, caller: Caller, name: str) -> SecretRecord:
    """The caller's live secret ``name``, locked for a change; 404 when it is missing or
    out of the key's reach (worded alike)."""
    current = tx.secrets.by_name(caller.tenant_id, name, for_update=True)
    if current is None:
        raise _not_found(name)
    if not caller.reaches(current.name, current.metadata):
        raise _unreachable(name)
    return current


def check_loosening(
    caller: Caller, name: str, before: SecretPolicy, after: SecretPolicy
) -> list[str]:
    """How ``after`` loosens ``before`` (for the record); a 403 when it does and the caller
    lacks ``secrets:admin``. Raised inside the write, so nothing of the call is kept."""
    loosened = before.loosenings(after)
    if loosened and not caller.may(Scope.SECRETS_ADMIN):
        raise Forbidden(
            f"this change to the policy of secret {name!r} "
            f"{' and '.join(loosened)}: loosening a policy needs the "
            "'secrets:admin' scope (tightening needs only 'secrets:write')"
        )
    return loosened


def _check_version(current: SecretRecord, expected: int | None) -> None:
    if expected is not None and expected != current.version:
        raise PreconditionFailed(
            f"secret {current.name!r} is at version {current.version}, not {expected}"
        )


def check_value(value: str | None, max_bytes: int) -> None:
    """Values are limited in UTF-8 bytes, by a setting (``STRONGROOM_MAX_VALUE_BYTES``), and
    must be valid Unicode; said before anything else about the call, authorization too."""
    if value is None:
        return
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise ValidationFailed(
            "body.value: value must be valid Unicode text",
            [Detail("body.value", "value holds an unpaired surrogate; it must be valid Unicode")],
        ) from None
    if size > max_bytes:
        raise ValidationFailed.at("body.value", f"value is {size} bytes; the limit is {max_bytes}")


def check_expiry(expires_at: dt.datetime | None, now: dt.datetime, where: str) -> None:
    if expires_at is not None and expires_at <= now:
        raise ValidationFailed.at(where, "expires_at must be in the future")


class SecretService:
    def __init__(
        self,
        store: Store,
        keyring: Keyring,
        *,
        max_value_bytes: int,
        recovery_window: dt.timedelta = dt.timedelta(days=7),
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.max_value_bytes = max_value_bytes
        # How long a deleted secret can be restored; zero: a delete purges at once.
        self.recovery_window = recovery_window

    # -- plumbing -------------------------------------------------------------------------
    def audited(self, caller: Caller, action: Action, name: str | None, work: Callable[[], T]) -> T:
        """Run ``work``; if it fails on purpose, record the failure on its own."""
        return self._attempt(caller, _Attempt(action, name), work)

    def _attempt(self, caller: Caller, attempt: _Attempt, work: Callable[[], T]) -> T:
        try:
            return work()
        except ServiceError as error:
            event = trail.event(
                caller.actor,
                attempt.action,
                error.outcome,
                secret_name=attempt.secret_name,
                secret_id=attempt.secret_id,
            )
            trail.record_alone(self.store, event)
            raise

    def reach_name(self, caller: Caller, action: Action, name: str | None) -> None:
        """403 when the caller's rule cannot reach a secret of this name, audited. Decided
        by the name alone, before any look-up: the answer says nothing of what exists."""
        if name is None or caller.reaches_name(name):
            return
        trail.record_alone(
            self.store,
            trail.event(
                caller.actor, action, "forbidden", secret_name=name, detail="outside the key's rule"
            ),
        )
        raise outside_rule(caller, name)

    @staticmethod
    def stays_in_reach(caller: Caller, before: str, secret: SecretRecord) -> None:
        """A change may not take a secret out of the key's reach (a rename out of its
        globs, metadata that leaves its selector): raised inside the write, so nothing of
        the call is kept."""
        if caller.reaches(secret.name, secret.metadata):
            return
        assert caller.rule is not None
        raise Forbidden(
            f"this change would take secret {before!r} out of this API key's reach "
            f"({caller.rule.describe()})"
        )

    @staticmethod
    def succeeded(
        tx: Transaction,
        caller: Caller,
        action: Action,
        secret: SecretRecord,
        detail: str | None = None,
    ) -> None:
        event = trail.event(
            caller.actor,
            action,
            "success",
            secret_name=secret.name,
            secret_id=secret.id,
            detail=detail,
        )
        trail.record(tx, event)

    def _rotation(
        self,
        tx: Transaction,
        caller: Caller,
        given: RotationInput,
        current: SecretRecord | None,
        now: dt.datetime,
        where: str = "body.rotation",
    ) -> tuple[RotationPolicy | None, dt.datetime | None]:
        """The rotation policy ``given`` makes (None ends rotation) and its next time. The
        task runs for this caller's key, which must be allowed to run tasks: a policy
        never does more than the key that set it."""
        if given is None:
            return None, None
        if not caller.may(Scope.TASKS_RUN):
            raise Forbidden(
                "a rotation policy runs a task for the key that sets it: that key needs "
                "the 'tasks:run' scope"
            )
        try:
            every = parse_period(str(given.get("every", "")))
        except ValueError as exc:
            raise ValidationFailed.at(f"{where}.every", str(exc)) from None
        task_id = str(given.get("task_id", ""))
        if tx.tasks.by_id(caller.tenant_id, task_id) is None:
            raise ValidationFailed.at(f"{where}.task_id", f"no task has id {task_id!r}")
        policy = RotationPolicy(every=every, task_id=task_id, key_id=caller.key_id)
        before = current.rotation if current is not None else None
        scheduled = current.next_rotation_at if current is not None else None
        if before is not None and before.every == every and scheduled is not None:
            return policy, scheduled  # the schedule goes on as it was
        return policy, now + every

    @staticmethod
    def may_compare(caller: Caller, secret: SecretRecord, now: dt.datetime) -> bool:
        """Whether the caller could read the secret's value now (and so may learn whether
        a value equals it)."""
        if not (caller.may(Scope.SECRETS_READ) and secret.policy.readable):
            return False
        if not caller.reaches(secret.name, secret.metadata):
            return False
        return not secret.expired(now) or caller.may(Scope.SECRETS_ADMIN)

    def same_value(
        self, tx: Transaction, caller: Caller, secret: SecretRecord, value: str, now: dt.datetime
    ) -> bool:
        """Whether ``value`` is the current one, told only to a caller who could read it:
        to any other, the answer would be a way to test guesses of a value it may not
        read, so a write from it always makes a version."""
        if not self.may_compare(caller, secret, now):
            return False
        return holds_value(self.keyring, tx, secret, secret.version, value)

    def seal_version(
        self, tx: Transaction, caller: Caller, secret: SecretRecord, value: str, at: dt.datetime
    ) -> None:
        context = value_context(secret.tenant_id, secret.id, secret.version)
        sealed = self.keyring.encrypt(context, value.encode(), tx.keyring.active_kek_id())
        stored = StoredVersion(secret.tenant_id, secret.id, secret.version, sealed)
        tx.secrets.insert_version(stored, at, caller.key_id)

    # -- calls ----------------------------------------------------------------------------
    def create(
        self,
        caller: Caller,
        name: str,
        value: str,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        policy: PolicyInput | None = None,
        *,
        expires_at: dt.datetime | None = None,
        rotation: RotationInput = None,
    ) -> SecretRecord:
        """Create a secret. Any policy may be set here with ``secrets:write`` alone: a new
        secret has no earlier policy to loosen."""
        check_value(value, self.max_value_bytes)
        check_expiry(expires_at, dt.datetime.now(dt.UTC), "body.expires_at")
        require(self.store, caller, Scope.SECRETS_WRITE, Action.CREATE, secret_name=name)
        self.reach_name(caller, Action.CREATE, name)
        if caller.rule is not None and not caller.rule.admits_metadata(metadata or {}):
            trail.record_alone(
                self.store,
                trail.event(caller.actor, Action.CREATE, "forbidden", secret_name=name),
            )
            raise Forbidden(
                f"a secret this API key creates must be within its reach "
                f"({caller.rule.describe()}): give it that metadata"
            )

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
                policy=DEFAULT_POLICY if policy is None else resolve_policy(DEFAULT_POLICY, policy),
                expires_at=expires_at,
            )
            try:
                with self.store.write() as tx:
                    # A deleted secret holds its name against a new one until its purge:
                    # creating one by mistake would leave the old one unrestorable.
                    deleted = tx.secrets.by_name(caller.tenant_id, name, deleted=True)
                    if deleted is not None:
                        raise _held_by_deleted(name, deleted)
                    if rotation is not None:
                        chosen, next_at = self._rotation(tx, caller, rotation, None, now)
                        secret = replace(secret, rotation=chosen, next_rotation_at=next_at)
                    tx.secrets.insert(secret)
                    self.seal_version(tx, caller, secret, value, now)
                    self.succeeded(tx, caller, Action.CREATE, secret)
            except NameTaken:
                raise Conflict(f"secret {name!r} already exists") from None
            return secret

        return self.audited(caller, Action.CREATE, name, work)

    def get(self, caller: Caller, name: str, version: int | None = None) -> RevealedSecret:
        require(self.store, caller, Scope.SECRETS_READ, Action.READ, secret_name=name)
        self.reach_name(caller, Action.READ, name)
        with self.store.write() as tx:
            found = reveal(
                tx,
                self.keyring,
                caller.actor,
                name,
                purpose=Purpose.READ,
                version=version,
                rule=caller.rule,
                allow_expired=caller.may(Scope.SECRETS_ADMIN),
            )
        if found.refusal in (Refusal.MISSING, Refusal.OUT_OF_REACH):
            raise _not_found(name)
        if found.refusal is Refusal.EXPIRED:
            assert found.secret is not None
            raise _expired(found.secret)
        if found.refusal is Refusal.USE_ONLY:
            raise use_only(name)
        if found.refusal is Refusal.NO_VERSION:
            raise NotFound(f"secret {name!r} has no version {found.version}")
        if found.refusal is Refusal.DAMAGED or found.secret is None or found.value is None:
            raise InternalError(
                f"the stored ciphertext of secret {name!r} version {found.version} failed "
                "authentication: the database row was altered or copied from "
                "elsewhere, so the value cannot be trusted and is not returned"
            )
        return RevealedSecret(found.secret, found.version, found.value)

    def list_secrets(
        self,
        caller: Caller,
        *,
        limit: int,
        offset: int,
        metadata_filter: Mapping[str, Any] | None = None,
        deleted: bool = False,
        expiring_before: dt.datetime | None = None,
    ) -> Page[SecretRecord]:
        """A page of the tenant's secrets within the caller's reach: the live ones (those
        expiring before ``expiring_before`` when given, expired ones included), or the
        deleted ones waiting for their purge."""
        require(self.store, caller, Scope.SECRETS_READ, Action.LIST)
        if deleted and (metadata_filter or expiring_before is not None):
            raise ValidationFailed.at(
                "query.deleted", "deleted=true lists every deleted secret: it takes no filter"
            )
        with self.store.read() as tx:
            if deleted:
                return tx.secrets.page_deleted(
                    caller.tenant_id, limit=limit, offset=offset, rule=caller.rule
                )
            if expiring_before is not None:
                return tx.secrets.page_expiring(
                    caller.tenant_id,
                    expiring_before,
                    limit=limit,
                    offset=offset,
                    metadata_filter=metadata_filter,
                    rule=caller.rule,
                )
            return tx.secrets.page(
                caller.tenant_id,
                limit=limit,
                offset=offset,
                metadata_filter=metadata_filter,
                rule=caller.rule,
            )

    def list_newest_first(self, caller: Caller, *, limit: int, offset: int) -> Page[SecretRecord]:
        """The tenant's secrets, most recently created first (the Julep surface's order)."""
        require(self.store, caller, Scope.SECRETS_READ, Action.LIST)
        with self.store.read() as tx:
            return tx.secrets.page_newest_first(
                caller.tenant_id, limit=limit, offset=offset, rule=caller.rule
            )

    def versions(self, caller: Caller, name: str) -> list[VersionRecord]:
        require(self.store, caller, Scope.SECRETS_READ, Action.VERSIONS, secret_name=name)
        self.reach_name(caller, Action.VERSIONS, name)

        def work() -> list[VersionRecord]:
            with self.store.read() as tx:
                secret = tx.secrets.by_name(caller.tenant_id, name)
                if secret is None:
                    raise _not_found(name)
                if not caller.reaches(secret.name, secret.metadata):
                    raise _unreachable(name)
                if not secret.policy.readable:
                    raise use_only(name)
                return tx.secrets.list_versions(secret.id)

        return self.audited(caller, Action.VERSIONS, name, work)

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
        policy: PolicyInput = UNSET,
        expires_at: dt.datetime | None = UNSET,
        rotation: RotationInput = UNSET,
    ) -> SecretRecord:
        """Change the given fields; a value makes a new version (unless it is the current
        one, as a caller who may read it is told), ``new_name`` renames, ``policy``
        changes the fields of the policy it gives (loosening needs ``secrets:admin``),
        ``expires_at`` and ``rotation`` replace theirs (None: none)."""
        return self._update(
            caller,
            _Target(name=name),
            value=value,
            description=description,
            metadata=metadata,
            new_name=new_name,
            expected_version=expected_version,
            policy=policy,
            expires_at=expires_at,
            rotation=rotation,
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
        policy: PolicyInput = UNSET,
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
            policy=policy,
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
        policy: PolicyInput = UNSET,
        expires_at: dt.datetime | None = UNSET,
        rotation: RotationInput = UNSET,
    ) -> SecretRecord:
        check_value(value, self.max_value_bytes)
        if expires_at is not UNSET:
            check_expiry(expires_at, dt.datetime.now(dt.UTC), "body.expires_at")
        renames = target.name is not None and new_name is not None and new_name != target.name
        attempt = _Attempt(Action.RENAME if renames else Action.UPDATE, target.name, target.id)
        require(
            self.store,
            caller,
            Scope.SECRETS_WRITE,
            attempt.action,
            secret_name=target.name,
            secret_id=target.id,
        )
        self.reach_name(caller, attempt.action, target.name)

        def work() -> SecretRecord:
            now = dt.datetime.now(dt.UTC)
            try:
                with self.store.write() as tx:
                    current = target.find(tx, caller.tenant_id)
                    if current is None:
                        raise target.not_found()
                    if not caller.reaches(current.name, current.metadata):
                        raise target.unreachable()
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
                    if expires_at is not UNSET and expires_at != current.expires_at:
                        changed = replace(changed, expires_at=expires_at)
                        fields.append("expires_at")
                    if rotation is not UNSET:
                        chosen, next_at = self._rotation(tx, caller, rotation, current, now)
                        if (chosen, next_at) != (current.rotation, current.next_rotation_at):
                            changed = replace(changed, rotation=chosen, next_rotation_at=next_at)
                            fields.append("rotation")
                    unchanged_value = value is not None and self.same_value(
                        tx, caller, current, value, now
                    )
                    if value is not None and not unchanged_value:
                        changed = replace(changed, version=current.version + 1)
                        fields.append("value")
                    loosened: list[str] = []
                    if policy is not UNSET:
                        new_policy = resolve_policy(current.policy, policy)
                        loosened = check_loosening(caller, name, current.policy, new_policy)
                        if new_policy != current.policy:
                            changed = replace(changed, policy=new_policy)
                            fields.append("policy")
                    if new_name is not None and new_name != name:
                        changed = replace(changed, name=new_name)
                    elif not fields:
                        # Nothing changes (renamed to its own name, a policy as it was,
                        # the current value); still recorded, as every write call is.
                        why = "no change"
                        if unchanged_value:
                            why += ": the value is the current one"
                        self.succeeded(tx, caller, Action.UPDATE, current, why)
                        return current
                    self.stays_in_reach(caller, name, changed)
                    tx.secrets.update(changed)
                    if "value" in fields:
                        assert value is not None
                        self.seal_version(tx, caller, changed, value, now)
                    if changed.name != name:
                        self.succeeded(tx, caller, Action.RENAME, changed, f"renamed from {name!r}")
                    if fields:
                        detail = f"changed {', '.join(fields)}; version {changed.version}"
                        if "policy" in fields and loosened:
                            detail += f"; the policy change {' and '.join(loosened)}"
                        self.succeeded(tx, caller, Action.UPDATE, changed, detail)
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
        policy: PolicyInput = UNSET,
        expires_at: dt.datetime | None = UNSET,
        rotation: RotationInput = UNSET,
    ) -> tuple[SecretRecord, bool]:
        """Create the secret, or give it a new value; True when it was created.

        Fields left out keep their values on an existing secret (a policy's fields too:
        ``policy`` is laid over the current policy, or the default one when creating).
        With ``expected_version`` the secret must exist at that version.
        """
        check_value(value, self.max_value_bytes)
        require(self.store, caller, Scope.SECRETS_WRITE, Action.UPDATE, secret_name=name)
        self.reach_name(caller, Action.UPDATE, name)
        with self.store.read() as tx:
            found = tx.secrets.by_name(caller.tenant_id, name)
        exists = found is not None
        if found is not None and not caller.reaches(found.name, found.metadata):
            # A put creates when nothing has the name: the name being taken cannot be
            # hidden (a create would say so too), its holder's content is.
            trail.record_alone(
                self.store,
                trail.event(caller.actor, Action.UPDATE, "forbidden", secret_name=name),
            )
            raise Conflict(f"secret {name!r} already exists, outside this API key's reach")
        if not exists and expected_version is None:
            try:
                created = self.create(
                    caller,
                    name,
                    value,
                    None if description is UNSET else description,
                    None if metadata is UNSET else metadata,
                    None if policy is UNSET else policy,
                    expires_at=None if expires_at is UNSET else expires_at,
                    rotation=None if rotation is UNSET else rotation,
                )
            except Conflict:
                with self.store.read() as tx:
                    deleted = tx.secrets.by_name(caller.tenant_id, name, deleted=True)
                if deleted is not None:
                    raise  # the name is a deleted secret's: a put does not take it over
                # created concurrently since we looked: replace it instead
            else:
                return created, True
        updated = self.update(
            caller,
            name,
            value=value,
            description=description,
            metadata=metadata,
            expected_version=expected_version,
            policy=policy,
            expires_at=expires_at,
            rotation=rotation,
        )
        return updated, False

    def delete(
        self,
        caller: Caller,
        name: str,
        *,
        expected_version: int | None = None,
        force: bool = False,
    ) -> DeletedSecret:
        """Delete the secret: it waits out the recovery window, invisible and with its
        name reserved, unless ``force`` (``secrets:admin``) purges it now. A force on a
        secret already deleted purges it too."""
        return self._delete(caller, _Target(name=name), expected_version, force)

    def delete_by_id(self, caller: Caller, secret_id: str) -> DeletedSecret:
        """:meth:`delete` of the caller's tenant's secret with that id."""
        return self._delete(caller, _Target(id=secret_id), None, False)

    def _delete(
        self, caller: Caller, target: _Target, expected_version: int | None, force: bool
    ) -> DeletedSecret:
        action = Action.PURGE if force else Action.DELETE
        attempt = _Attempt(action, target.name, target.id)
        needed = Scope.SECRETS_ADMIN if force else Scope.SECRETS_WRITE
        require(self.store, caller, needed, action, secret_name=target.name, secret_id=target.id)
        self.reach_name(caller, action, target.name)

        def work() -> DeletedSecret:
            now = dt.datetime.now(dt.UTC)
            with self.store.write() as tx:
                secret = target.find(tx, caller.tenant_id)
                if secret is None and force and target.name is not None:
                    secret = tx.secrets.by_name(caller.tenant_id, target.name, deleted=True)
                if secret is None:
                    raise target.not_found()
                if not caller.reaches(secret.name, secret.metadata):
                    raise target.unreachable()
                if target.id is not None:
                    attempt.secret_name = secret.name
                if secret.deleted_at is None:
                    _check_version(secret, expected_version)
                if force or not self.recovery_window:
                    tx.secrets.delete(secret.id)
                    self.succeeded(
                        tx, caller, Action.PURGE, secret, "purged: every version destroyed"
                    )
                    if secret.deleted_at is not None:
                        # A name may be held by several deleted secrets (a rename took it
                        # after a delete, and was deleted in turn): purging the name frees
                        # it, so every one of them within reach goes.
                        self._purge_deleted_holders(tx, caller, secret.name)
                    return DeletedSecret(secret.id, secret.name, secret.deleted_at or now)
                until = now + self.recovery_window
                tx.secrets.update(replace(secret, deleted_at=now, purge_after=until))
                self.succeeded(
                    tx, caller, Action.DELETE, secret, f"recoverable until {until.isoformat()}"
                )
                return DeletedSecret(secret.id, secret.name, now, until)

        return self._attempt(caller, attempt, work)

    def _purge_deleted_holders(self, tx: Transaction, caller: Caller, name: str) -> None:
        while (held := tx.secrets.by_name(caller.tenant_id, name, deleted=True)) is not None:
            if not caller.reaches(held.name, held.metadata):
                return
            tx.secrets.delete(held.id)
            self.succeeded(tx, caller, Action.PURGE, held, "purged: every version destroyed")

    def restore(self, caller: Caller, name: str) -> SecretRecord:
        """Bring a deleted secret back as it was, every version with it, before its
        recovery window ends."""
        require(self.store, caller, Scope.SECRETS_WRITE, Action.RESTORE, secret_name=name)
        self.reach_name(caller, Action.RESTORE, name)

        def work() -> SecretRecord:
            now = dt.datetime.now(dt.UTC)
            with self.store.write() as tx:
                secret = tx.secrets.by_name(caller.tenant_id, name, for_update=True, deleted=True)
                live = tx.secrets.by_name(caller.tenant_id, name)
                if secret is None and live is not None and caller.reaches(name, live.metadata):
                    raise Conflict(f"secret {name!r} is not deleted: there is nothing to restore")
                if secret is None or not caller.reaches(secret.name, secret.metadata):
                    message = f"no deleted secret is named {name!r}"
                    raise NotFound(message) if secret is None else Unreachable(message)
                if live is not None:
                    # A rename took the name after the delete (the rotation recipe does).
                    raise Conflict(
                        f"a secret named {name!r} exists again: rename or delete it, then "
                        "restore the deleted one"
                    )
                if secret.purge_after is not None and secret.purge_after <= now:
                    raise NotFound(
                        f"secret {name!r} can no longer be restored: its recovery window "
                        f"ended at {secret.purge_after.isoformat()}"
                    )
                restored = replace(secret, deleted_at=None, purge_after=None, updated_at=now)
                try:
                    tx.secrets.update(restored)
                except NameTaken:
                    raise Conflict(f"secret {name!r} was created meanwhile") from None
                self.succeeded(tx, caller, Action.RESTORE, restored)
            return restored

        return self.audited(caller, Action.RESTORE, name, work)

    def rollback(
        self, caller: Caller, name: str, to: int, *, expected_version: int | None = None
    ) -> SecretRecord:
        """Make version ``to``'s value current again, as a new version (the value never
        leaves the server, so a key that may not read it may still roll it back)."""
        require(self.store, caller, Scope.SECRETS_WRITE, Action.UPDATE, secret_name=name)
        self.reach_name(caller, Action.UPDATE, name)

        def work() -> SecretRecord:
            now = dt.datetime.now(dt.UTC)
            with self.store.write() as tx:
                current = _reachable(tx, caller, name)
                _check_version(current, expected_version)
                changed = replace(current, version=current.version + 1, updated_at=now)
                try:
                    stored = reseal_version(
                        self.keyring, tx, changed, to, tx.keyring.active_kek_id()
                    )
                    same = (
                        stored is not None
                        and self.may_compare(caller, current, now)
                        and (
                            to == current.version
                            or versions_match(self.keyring, tx, current, to, current.version)
                        )
                    )
                except IntegrityFailure:
                    raise InternalError(
                        f"the stored ciphertext of secret {name!r} version {to} (or the "
                        "current one) failed authentication: it is not rolled back"
                    ) from None
                if stored is None:
                    raise NotFound(f"secret {name!r} has no version {to}")
                if same:
                    self.succeeded(
                        tx,
                        caller,
                        Action.UPDATE,
                        current,
                        f"no change: version {to}'s value is the current one",
                    )
                    return current
                tx.secrets.update(changed)
                tx.secrets.insert_version(stored, now, caller.key_id)
                self.succeeded(
                    tx,
                    caller,
                    Action.UPDATE,
                    changed,
                    f"rolled back to version {to}; version {changed.version}",
                )
            return changed

        return self.audited(caller, Action.UPDATE, name, work)

    def rotate_now(self, caller: Caller, name: str) -> SecretRecord:
        """Make the secret's rotation due now: the scheduler starts it at its next look."""
        require(self.store, caller, Scope.SECRETS_WRITE, Action.UPDATE, secret_name=name)
        self.reach_name(caller, Action.UPDATE, name)

        def work() -> SecretRecord:
            now = dt.datetime.now(dt.UTC)
            with self.store.write() as tx:
                current = _reachable(tx, caller, name)
                if current.rotation is None:
                    raise Conflict(
                        f"secret {name!r} has no rotation policy: set one with "
                        '"rotation": {"every": "30d", "task_id": "..."}'
                    )
                changed = replace(current, next_rotation_at=now)
                tx.secrets.update(changed)
                self.succeeded(tx, caller, Action.UPDATE, changed, "rotation requested now")
            return changed

        return self.audited(caller, Action.UPDATE, name, work)
