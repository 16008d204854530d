"""The audit trail as stored: the event record, the interface, and its SQL."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
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


# Where a copy of each committed event goes besides the table (the JSON-lines file of
# STRONGROOM_AUDIT_FILE): see Transaction.audit_sinks.
AuditSink = Callable[[AuditEvent], None]


@dataclass(frozen=True, slots=True)
class PrunedBatch:
    """What one batch of a prune removed: events by tenant (None: events of no tenant,
    such as a refused unknown key's), and whether events before the cutoff remain."""

    removed: dict[str | None, int]
    more: bool

    @property
    def count(self) -> int:
        return sum(self.removed.values())


class AuditStorage(ABC):
    @abstractmethod
    def insert(self, event: AuditEvent) -> int:
        """Store ``event`` (its ``id`` is ignored); the id the database gave it."""

    @abstractmethod
    def page(
        self, tenant_id: str, *, limit: int, offset: int, where: AuditFilter | None = None
    ) -> Page[AuditEvent]:
        """The tenant's events, newest first, those ``where`` wants."""

    @abstractmethod
    def count_before(self, cutoff: dt.datetime) -> int:
        """How many events, of every tenant, occurred before ``cutoff``."""

    @abstractmethod
    def delete_before(self, cutoff: dt.datetime, *, limit: int) -> PrunedBatch:
        """Delete the oldest (by id) ``limit`` events, of every tenant, that occurred
        before ``cutoff``. One batch: a caller pruning many runs one transaction per batch,
        so that no transaction holds the table for long. Safe beside another prune: an
        event already deleted is not counted again."""


# -- SQL --------------------------------------------------------------------------------------
# Every request inserts one: built once (see secrets.py on prebuilt statements).
_INSERT = t.audit_events.insert()
_COLUMNS = tuple(f.name for f in fields(AuditEvent) if f.name != "id")


class SQLAuditStorage(SQLArea, AuditStorage):
    def insert(self, event: AuditEvent) -> int:
        # A shallow copy: dataclasses.asdict deep-copies every field, on every request.
        # ``id`` is left out; the database numbers events. The number costs nothing more:
        # SQLite's last row id, PostgreSQL's RETURNING (which the insert has anyway).
        done = self.conn.execute(_INSERT, {name: getattr(event, name) for name in _COLUMNS})
        key = done.inserted_primary_key
        assert key is not None  # a single-row insert always has one
        return int(key[0])

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

    def count_before(self, cutoff: dt.datetime) -> int:
        a = t.audit_events.c
        stmt = sa.select(sa.func.count()).where(a.occurred_at < cutoff)
        return int(self.conn.execute(stmt).scalar_one())

    def delete_before(self, cutoff: dt.datetime, *, limit: int) -> PrunedBatch:
        a = t.audit_events.c
        # In id order, which is nearly time order: the primary key's index finds the
        # oldest events first (there is no index on the time). One more than the batch
        # says whether events remain, as this transaction saw them. PostgreSQL: rows a
        # concurrent prune holds are skipped, not waited for (nor deadlocked on); SQLite's
        # write transaction has the whole database already (FOR UPDATE compiles to nothing).
        found = self.conn.execute(
            sa.select(a.id)
            .where(a.occurred_at < cutoff)
            .order_by(a.id)
            .limit(limit + 1)
            .with_for_update(skip_locked=True)
        ).scalars()
        ids = list(found)
        if not ids:
            return PrunedBatch({}, more=False)
        # RETURNING counts only the rows this statement deleted: never one that another
        # prune deleted first.
        gone = self.conn.execute(
            sa.delete(t.audit_events).where(a.id.in_(ids[:limit])).returning(a.tenant_id)
        ).scalars()
        return PrunedBatch(dict(Counter(gone)), more=len(ids) > limit)
