"""The audit trail: who did what to which secret, when, and how it ended. Never a value.

Task runs read secrets too: each such read is a ``secret.read`` whose detail names the
execution and step, recorded in the transaction that decrypts the value.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from enum import StrEnum

from .apikeys import grants
from .errors import Forbidden
from .storage.base import AuditEvent, Page, Store, Transaction

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
    DELETE = "secret.delete"
    AUDIT_READ = "audit.read"
    TASK_CREATE = "task.create"
    TASK_DELETE = "task.delete"
    TASK_EXECUTE = "task.execute"
    EXECUTION_CANCEL = "execution.cancel"


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated key a request acts as, and where the request came from."""

    tenant_id: str
    tenant_name: str
    key_id: str
    scopes: tuple[str, ...]
    request_id: str | None = None
    client_addr: str | None = None


def event(
    caller: Caller | None,
    action: Action,
    outcome: str,
    *,
    secret_name: str | None = None,
    secret_id: str | None = None,
    detail: str | None = None,
    request_id: str | None = None,
    client_addr: str | None = None,
    tenant_id: str | None = None,
    key_id: str | None = None,
) -> AuditEvent:
    return AuditEvent(
        occurred_at=dt.datetime.now(dt.UTC),
        tenant_id=caller.tenant_id if caller else tenant_id,
        key_id=caller.key_id if caller else key_id,
        action=action.value,
        outcome=outcome,
        secret_name=secret_name,
        secret_id=secret_id,
        request_id=caller.request_id if caller else request_id,
        client_addr=caller.client_addr if caller else client_addr,
        detail=detail,
    )


def record(tx: Transaction, audit_event: AuditEvent) -> None:
    """Record inside the caller's transaction: the event commits with the change."""
    tx.insert_audit_event(audit_event)
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


def list_events(
    store: Store,
    caller: Caller,
    *,
    limit: int,
    offset: int,
    secret_name: str | None = None,
    action: Action | None = None,
) -> Page[AuditEvent]:
    """The caller's tenant's audit trail, newest first (needs the ``audit:read`` scope)."""
    if not grants(caller.scopes, "audit:read"):
        record_alone(store, event(caller, Action.AUDIT_READ, "forbidden"))
        raise Forbidden("this API key lacks the 'audit:read' scope")
    with store.read() as tx:
        return tx.list_audit_events(
            caller.tenant_id,
            limit=limit,
            offset=offset,
            secret_name=secret_name,
            action=action.value if action else None,
        )
