"""The audit service: reading a tenant's trail (writing it is :mod:`.trail`'s)."""

from __future__ import annotations

from dataclasses import replace

from .auth import Caller, Scope, require
from .storage import AuditEvent, AuditFilter, Page, Store
from .trail import Action


class AuditService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def list_events(
        self, caller: Caller, *, limit: int, offset: int, where: AuditFilter | None = None
    ) -> Page[AuditEvent]:
        """The caller's tenant's audit trail, newest first (needs ``audit:read``); a key
        with a rule sees only the events about secrets it reaches."""
        require(self.store, caller, Scope.AUDIT_READ, Action.AUDIT_READ)
        where = where or AuditFilter()
        if caller.rule is not None:
            where = replace(where, rule=caller.rule)
        with self.store.read() as tx:
            return tx.audit.page(caller.tenant_id, limit=limit, offset=offset, where=where)
