"""The audit service: reading a tenant's trail (writing it is :mod:`.trail`'s)."""

from __future__ import annotations

from .auth import Caller, Scope, require
from .storage import AuditEvent, Page, Store
from .trail import Action


class AuditService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def list_events(
        self,
        caller: Caller,
        *,
        limit: int,
        offset: int,
        secret_name: str | None = None,
        action: Action | None = None,
    ) -> Page[AuditEvent]:
        """The caller's tenant's audit trail, newest first (needs ``audit:read``)."""
        require(self.store, caller, Scope.AUDIT_READ, Action.AUDIT_READ)
        with self.store.read() as tx:
            return tx.audit.page(
                caller.tenant_id,
                limit=limit,
                offset=offset,
                secret_name=secret_name,
                action=action.value if action else None,
            )
