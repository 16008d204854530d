"""Writing the audit trail: who did what to which secret, when, and how it ended. Never a value.

An event is recorded in the transaction of the change it describes, so the two commit
together (:func:`record`); a refusal, whose transaction rolls back or never began, is
recorded in one of its own (:func:`record_alone`). Reading the trail is
:class:`~.audit.AuditService`'s.

Once the transaction commits, and before the service returns, each recorded event is also
handed to the store's audit sinks (the JSON-lines file of :mod:`.audit_file`): an event
that rolls back is never copied. Removing old events is :mod:`.audit_retention`'s.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import partial

from .storage import AuditEvent, Store, Transaction

log = logging.getLogger("strongroom.audit")


class Action(StrEnum):
    AUTHENTICATE = "auth.authenticate"
    CREATE = "secret.create"
    READ = "secret.read"
    USE = "secret.use"  # a task step's use of a secret that its usage policy refused
    LIST = "secret.list"
    VERSIONS = "secret.versions"
    UPDATE = "secret.update"
    RENAME = "secret.rename"
    DELETE = "secret.delete"  # into the recovery window
    RESTORE = "secret.restore"  # back out of it
    PURGE = "secret.purge"  # every version destroyed, by force or at the window's end
    ROTATE = "secret.rotate"  # a scheduled rotation started, or ended without a new value
    AUDIT_READ = "audit.read"
    AUDIT_PRUNE = "audit.prune"  # old events removed (audit_retention.py): never silently
    KEY_CREATE = "key.create"
    KEY_UPDATE = "key.update"
    KEY_ROTATE = "key.rotate"
    KEY_REVOKE = "key.revoke"
    KEY_LIST = "key.list"
    TASK_CREATE = "task.create"
    TASK_DELETE = "task.delete"
    TASK_EXECUTE = "task.execute"
    EXECUTION_CANCEL = "execution.cancel"
    SESSION_CREATE = "session.create"  # a browser session started with an API key
    SESSION_END = "session.end"  # its logout


@dataclass(frozen=True, slots=True)
class Actor:
    """Whom an event is by: an API key's request, or a task execution acting on behalf of
    the key that started it (then no request or address, and the execution's tenant)."""

    tenant_id: str | None
    key_id: str | None
    request_id: str | None = None
    client_addr: str | None = None
    key_name: str | None = None  # as the key is named now: the record keeps it

    @classmethod
    def on_behalf(cls, tenant_id: str, key_id: str | None, key_name: str | None = None) -> Actor:
        """A task execution of ``tenant_id``, acting for the key that started it."""
        return cls(tenant_id, key_id, key_name=key_name)


def event(
    actor: Actor,
    action: Action,
    outcome: str,
    *,
    secret_name: str | None = None,
    secret_id: str | None = None,
    detail: str | None = None,
) -> AuditEvent:
    return AuditEvent(
        occurred_at=dt.datetime.now(dt.UTC),
        tenant_id=actor.tenant_id,
        key_id=actor.key_id,
        key_name=actor.key_name,
        action=action.value,
        outcome=outcome,
        secret_name=secret_name,
        secret_id=secret_id,
        request_id=actor.request_id,
        client_addr=actor.client_addr,
        detail=detail,
    )


def record(tx: Transaction, audit_event: AuditEvent) -> None:
    """Record inside the caller's transaction: the event commits with the change, and is
    copied to the audit sinks once it has (with the id the database gave it)."""
    event_id = tx.audit.insert(audit_event)
    if tx.audit_sinks:
        stored = replace(audit_event, id=event_id)
        for sink in tx.audit_sinks:
            tx.after_commit(partial(sink, stored))
    # The database holds the trail; the log copy is for debugging only. At INFO every
    # request would write two log lines instead of one.
    log.debug(
        "audit",
        extra={
            "action": audit_event.action,
            "outcome": audit_event.outcome,
            "tenant_id": audit_event.tenant_id,
            "key_id": audit_event.key_id,
            "secret_name": audit_event.secret_name,
        },
    )


def record_alone(store: Store, audit_event: AuditEvent) -> None:
    """Record a failed access in a transaction of its own (the failed one rolled back).

    The request fails either way, so a database that cannot take the event is logged
    and does not replace the error the caller is owed.
    """
    try:
        with store.write() as tx:
            record(tx, audit_event)
    except Exception:
        log.exception("could not record audit event", extra={"action": audit_event.action})
