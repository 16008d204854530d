"""The audit trail as stored: the event record, the interface, and its SQL."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields

import sqlalchemy as sa

from . import schema as t
from .dialect import SQLArea
from .page import Page


@dataclass(frozen=True, slots=True)
class AuditEvent:
    occurred_at: dt.datetime
    tenant_id: str | None
    key_id: str | None
    action: str
    outcome: str
    secret_name: str | None = None
    secret_id: str | None = None
    request_id: str | None = None
    client_addr: str | None = None
    detail: str | None = None
    id: int | None = None


class AuditStorage(ABC):
    @abstractmethod
    def insert(self, event: AuditEvent) -> None: ...

    @abstractmethod
    def page(
        self,
        tenant_id: str,
        *,
        limit: int,
        offset: int,
        secret_name: str | None = None,
        action: str | None = None,
    ) -> Page[AuditEvent]:
        """The tenant's events, newest first, of one secret or action when given."""


# -- SQL --------------------------------------------------------------------------------------
# Every request inserts one: built once (see secrets.py on prebuilt statements).
_INSERT = t.audit_events.insert()
_COLUMNS = tuple(f.name for f in fields(AuditEvent) if f.name != "id")


class SQLAuditStorage(SQLArea, AuditStorage):
    def insert(self, event: AuditEvent) -> None:
        # A shallow copy: dataclasses.asdict deep-copies every field, on every request.
        # ``id`` is left out; the database numbers events.
        self.conn.execute(_INSERT, {name: getattr(event, name) for name in _COLUMNS})

    def page(
        self,
        tenant_id: str,
        *,
        limit: int,
        offset: int,
        secret_name: str | None = None,
        action: str | None = None,
    ) -> Page[AuditEvent]:
        a = t.audit_events.c
        stmt = sa.select(t.audit_events).where(a.tenant_id == tenant_id)
        if secret_name is not None:
            stmt = stmt.where(a.secret_name == secret_name)
        if action is not None:
            stmt = stmt.where(a.action == action)
        stmt = stmt.order_by(a.id.desc()).limit(limit + 1).offset(offset)
        rows = self.conn.execute(stmt).all()
        return Page.cut(rows, limit, lambda row: AuditEvent(**row._asdict()))
