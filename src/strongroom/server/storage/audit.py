"""The audit trail as stored: the event record, the interface, and its SQL."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields

import sqlalchemy as sa

from ..rules import ResourceRule
from . import schema as t
from .dialect import SQLArea
from .page import Page
from .secret_listing import within_rule


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
    key_name: str | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which events a listing wants: every field given must hold. ``rule`` keeps only
    events about secrets a scoped key reaches (and so drops events about no secret)."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    action: str | None = None
    outcome: str | None = None
    secret_name: str | None = None
    key_id: str | None = None
    rule: ResourceRule | None = None


class AuditStorage(ABC):
    @abstractmethod
    def insert(self, event: AuditEvent) -> None: ...

    @abstractmethod
    def page(
        self, tenant_id: str, *, limit: int, offset: int, where: AuditFilter | None = None
    ) -> Page[AuditEvent]:
        """The tenant's events, newest first, those ``where`` wants."""


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
        self, tenant_id: str, *, limit: int, offset: int, where: AuditFilter | None = None
    ) -> Page[AuditEvent]:
        where = where or AuditFilter()
        a = t.audit_events.c
        stmt = sa.select(t.audit_events).where(a.tenant_id == tenant_id)
        for column, wanted in (
            (a.secret_name, where.secret_name),
            (a.action, where.action),
            (a.outcome, where.outcome),
            (a.key_id, where.key_id),
        ):
            if wanted is not None:
                stmt = stmt.where(column == wanted)
        if where.since is not None:
            stmt = stmt.where(a.occurred_at >= where.since)
        if where.until is not None:
            stmt = stmt.where(a.occurred_at < where.until)
        if where.rule is not None:
            stmt = stmt.where(
                a.secret_name.is_not(None),
                *within_rule(self.dialect, where.rule, a.secret_name, a.secret_id),
            )
        stmt = stmt.order_by(a.id.desc()).limit(limit + 1).offset(offset)
        rows = self.conn.execute(stmt).all()
        return Page.cut(rows, limit, lambda row: AuditEvent(**row._asdict()))
