"""Task definitions: the record, the interface, and its SQL."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from . import schema as t
from .dialect import SQLArea
from .page import Page
from .rows import record_of, values_of


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: str
    tenant_id: str
    name: str | None
    description: str | None
    steps: list[dict[str, Any]]
    created_at: dt.datetime
    updated_at: dt.datetime


class TaskStorage(ABC):
    @abstractmethod
    def insert(self, task: TaskRecord) -> None: ...

    @abstractmethod
    def by_id(self, tenant_id: str, task_id: str) -> TaskRecord | None: ...

    @abstractmethod
    def page(self, tenant_id: str, *, limit: int, offset: int) -> Page[TaskRecord]:
        """The tenant's tasks, oldest first."""

    @abstractmethod
    def delete(self, task_id: str) -> None:
        """Delete the task; its executions stay (they hold their own copy of the steps)."""


# -- SQL --------------------------------------------------------------------------------------
_JSON_COLUMNS = {"steps": "steps_json"}


def _task(row: Row[Any]) -> TaskRecord:
    return record_of(TaskRecord, row, _JSON_COLUMNS)


class SQLTaskStorage(SQLArea, TaskStorage):
    def insert(self, task: TaskRecord) -> None:
        self.conn.execute(t.tasks.insert().values(**values_of(task, _JSON_COLUMNS)))

    def by_id(self, tenant_id: str, task_id: str) -> TaskRecord | None:
        row = self._one(
            sa.select(t.tasks).where(t.tasks.c.tenant_id == tenant_id, t.tasks.c.id == task_id)
        )
        return _task(row) if row else None

    def page(self, tenant_id: str, *, limit: int, offset: int) -> Page[TaskRecord]:
        stmt = (
            sa.select(t.tasks)
            .where(t.tasks.c.tenant_id == tenant_id)
            .order_by(t.tasks.c.id)
            .limit(limit + 1)
            .offset(offset)
        )
        return Page.cut(self.conn.execute(stmt).all(), limit, _task)

    def delete(self, task_id: str) -> None:
        self.conn.execute(t.tasks.delete().where(t.tasks.c.id == task_id))
