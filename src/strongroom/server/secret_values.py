"""A secret version's value: what it is bound to, how it is opened, and the one way out.

:func:`reveal` is the only path by which a value leaves the barrier: it looks the secret
up in the actor's tenant, opens the version, and records the read in the *same*
transaction, so no value is ever handed out without its audit record (no record, no
value). The API's get (an API key reading a value back) and a task step (an execution
using secrets on behalf of the key that started it) both go through it.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from . import trail
from .crypto import IntegrityFailure, Keyring, SealContext
from .rules import ResourceRule
from .storage import SecretRecord, StoredVersion, Transaction
from .trail import Action, Actor

log = logging.getLogger("strongroom.secrets")


def value_context(tenant_id: str, secret_id: str, version: int) -> SealContext:
    """What a version's value is bound to: ``strongroom|value|v1|<tenant>|<secret>|<version>``
    (its data key: ``strongroom|dek|v1|...``), so a value moved to another row fails."""
    return SealContext("value", (tenant_id, secret_id, str(version)))


def decrypt_value(
    keyring: Keyring, stored: StoredVersion, *, secret_tenant_id: str, caller_tenant_id: str
) -> str:
    """The plaintext of one version, for a caller of ``caller_tenant_id``.

    The version row, the secret row it belongs to and the caller must name the same
    tenant, and the associated data is built from the caller's: a tenant column
    rewritten in the database (moving a secret to another tenant) is an
    ``IntegrityFailure``, and so is rewriting all of them consistently, since the
    ciphertext stays bound to the tenant that sealed it. The associated data is the
    same bytes as when sealed, so every stored row stays valid.
    """
    if not stored.tenant_id == secret_tenant_id == caller_tenant_id:
        raise IntegrityFailure("the version, its secret and the caller belong to different tenants")
    context = value_context(caller_tenant_id, stored.secret_id, stored.version)
    return keyring.decrypt(context, stored.sealed).decode()


class Purpose(StrEnum):
    """Why a value is revealed, which decides whether a use-only secret may be."""

    READ = "read"  # an API key reads it back: refused for a use-only secret
    USE = "use"  # a task step uses it (tasks may use a use-only secret)


class Refusal(StrEnum):
    """Why no value was revealed; its ``outcome`` is what the audit record says."""

    MISSING = "missing"  # no such secret
    OUT_OF_REACH = "out_of_reach"  # outside the rule of the key it is revealed for
    EXPIRED = "expired"  # past its expires_at (an admin's read is still allowed)
    NO_VERSION = "no_version"  # the secret exists, the version asked for does not
    USE_ONLY = "use_only"  # its policy says readable: false, and this is a READ
    DAMAGED = "damaged"  # the stored ciphertext failed authentication

    @property
    def outcome(self) -> str:
        return _OUTCOMES[self]


_OUTCOMES = {
    Refusal.MISSING: "not_found",
    Refusal.OUT_OF_REACH: "forbidden",
    Refusal.EXPIRED: "expired",
    Refusal.NO_VERSION: "not_found",
    Refusal.USE_ONLY: "forbidden",
    Refusal.DAMAGED: "internal_error",
}


@dataclass(frozen=True)
class Revealed:
    """One named secret's value, or why there is none (``refusal``)."""

    name: str
    secret: SecretRecord | None
    version: int
    value: str | None
    refusal: Refusal | None

    def __repr__(self) -> str:  # a repr in a traceback or debugger shows no value
        return f"Revealed(name={self.name!r}, version={self.version}, refusal={self.refusal})"


def reveal(
    tx: Transaction,
    keyring: Keyring,
    actor: Actor,
    name: str,
    *,
    purpose: Purpose,
    version: int | None = None,
    detail: str | None = None,
    rule: ResourceRule | None = None,
    allow_expired: bool = False,
) -> Revealed:
    """Open secret ``name`` of the actor's tenant (its latest version unless ``version``)
    and record the read, whatever its outcome, in ``tx``: the caller commits both or
    neither. ``detail`` is the record's detail (by default the version read). A secret
    outside ``rule`` (the actor's key's) is refused before anything else is looked at;
    an expired one next, unless ``allow_expired`` (an admin's read)."""
    if actor.tenant_id is None:
        raise ValueError("a value is revealed only to an actor of a tenant")
    secret = tx.secrets.by_name(actor.tenant_id, name)
    wanted = version if version is not None else (secret.version if secret else 0)
    stored = tx.secrets.version(secret.id, wanted) if secret else None
    return _reveal_found(
        tx,
        keyring,
        actor,
        name,
        secret,
        wanted,
        stored,
        purpose=purpose,
        detail=detail,
        rule=rule,
        allow_expired=allow_expired,
    )


def reveal_many(
    tx: Transaction,
    keyring: Keyring,
    actor: Actor,
    names: Sequence[str],
    *,
    rule: ResourceRule | None,
    allow_expired: bool,
) -> list[Revealed]:
    """:func:`reveal` of each of ``names`` (current versions, read by an API key), with
    the secrets and their versions looked up a few hundred at a time; one record each."""
    if actor.tenant_id is None:
        raise ValueError("a value is revealed only to an actor of a tenant")
    found = tx.secrets.by_names(actor.tenant_id, names)
    stored = tx.secrets.current_versions([(s.id, s.version) for s in found.values()])
    revealed = []
    for name in names:
        secret = found.get(name)
        revealed.append(
            _reveal_found(
                tx,
                keyring,
                actor,
                name,
                secret,
                secret.version if secret else 0,
                stored.get(secret.id) if secret else None,
                purpose=Purpose.READ,
                detail=None,
                rule=rule,
                allow_expired=allow_expired,
            )
        )
    return revealed


def _reveal_found(
    tx: Transaction,
    keyring: Keyring,
    actor: Actor,
    name: str,
    secret: SecretRecord | None,
    wanted: int,
    stored: StoredVersion | None,
    *,
    purpose: Purpose,
    detail: str | None,
    rule: ResourceRule | None,
    allow_expired: bool,
) -> Revealed:
    """Decide, open and record one secret already looked up (see :func:`reveal`)."""
    assert actor.tenant_id is not None
    value: str | None = None
    refusal: Refusal | None = None
    if secret is None:
        refusal = Refusal.MISSING
    elif rule is not None and not rule.admits(secret.name, secret.metadata):
        refusal = Refusal.OUT_OF_REACH
    elif not allow_expired and secret.expired(dt.datetime.now(dt.UTC)):
        refusal = Refusal.EXPIRED
    elif purpose is Purpose.READ and not secret.policy.readable:
        refusal = Refusal.USE_ONLY  # before any version is looked at, or opened
    elif stored is None:
        refusal = Refusal.NO_VERSION
    else:
        try:
            value = decrypt_value(
                keyring, stored, secret_tenant_id=secret.tenant_id, caller_tenant_id=actor.tenant_id
            )
        except IntegrityFailure:
            log.error(
                "stored ciphertext failed authentication",
                extra={"secret_id": secret.id, "version": wanted},
            )
            refusal = Refusal.DAMAGED
    if refusal is Refusal.OUT_OF_REACH:
        detail = "outside the key's rule"
    elif refusal is Refusal.EXPIRED and secret is not None and secret.expires_at is not None:
        detail = f"expired at {secret.expires_at.isoformat()}"
    elif detail is None and secret is not None:
        detail = f"version {wanted}"
    trail.record(
        tx,
        trail.event(
            actor,
            Action.READ,
            refusal.outcome if refusal else "success",
            secret_name=name,
            secret_id=secret.id if secret else None,
            detail=detail,
        ),
    )
    return Revealed(name, secret, wanted, value, refusal)


# -- inside the server: values compared and copied, never handed out ------------------------
def _open(keyring: Keyring, tx: Transaction, secret: SecretRecord, version: int) -> str | None:
    stored = tx.secrets.version(secret.id, version)
    if stored is None:
        return None
    return decrypt_value(
        keyring, stored, secret_tenant_id=secret.tenant_id, caller_tenant_id=secret.tenant_id
    )


def holds_value(
    keyring: Keyring, tx: Transaction, secret: SecretRecord, version: int, candidate: str
) -> bool:
    """Whether ``version`` of ``secret`` holds ``candidate`` (compared in constant time).

    Nothing leaves: the answer is one bit, which the secrets service tells only to a
    caller who could read the value anyway (see ``SecretService._same_value``)."""
    current = _open(keyring, tx, secret, version)
    return current is not None and hmac.compare_digest(current.encode(), candidate.encode())


def versions_match(keyring: Keyring, tx: Transaction, secret: SecretRecord, a: int, b: int) -> bool:
    """Whether two versions of ``secret`` hold the same value."""
    first, second = _open(keyring, tx, secret, a), _open(keyring, tx, secret, b)
    return (
        first is not None
        and second is not None
        and hmac.compare_digest(first.encode(), second.encode())
    )


def reseal_version(
    keyring: Keyring, tx: Transaction, secret: SecretRecord, source: int, kek_id: int
) -> StoredVersion | None:
    """Version ``source``'s value sealed again as ``secret.version`` (a rollback's new
    version), decrypted and encrypted here so the value never leaves; None when the
    source version does not exist. A damaged source is an ``IntegrityFailure``."""
    value = _open(keyring, tx, secret, source)
    if value is None:
        return None
    context = value_context(secret.tenant_id, secret.id, secret.version)
    sealed = keyring.encrypt(context, value.encode(), kek_id)
    return StoredVersion(secret.tenant_id, secret.id, secret.version, sealed)
