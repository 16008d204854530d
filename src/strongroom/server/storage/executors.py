"""Executor claims: which process runs executions under which executor id.

DBOS resumes a pending workflow only in a process with the executor id it ran under, so
two live processes under one id would resume each other's work. Each engine process
claims its id here when it starts (refused while another live process holds it), keeps
the claim fresh on the heartbeat, and releases it when it stops. The row stays after a
release: its ``seen_at`` is how the sweep knows an executor has been gone long enough
that its pending executions will not be resumed (:mod:`..tasks.executors`).
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from . import schema as t
from .dialect import SQLArea
from .rows import record_of, values_of


@dataclass(frozen=True, slots=True)
class ExecutorRecord:
    executor_id: str
    hostname: str
    pid: int | None  # None: released by a clean stop
    started_at: dt.datetime
    seen_at: dt.datetime


class ExecutorStorage(ABC):
    @abstractmethod
    def by_id(self, executor_id: str, *, for_update: bool = False) -> ExecutorRecord | None:
        """The claim on ``executor_id``; ``for_update`` locks it until the transaction ends
        (PostgreSQL; SQLite's write transaction already holds the whole database)."""

    @abstractmethod
    def insert(self, record: ExecutorRecord) -> None:
        """Record the first claim on ``record.executor_id``; ``NameTaken`` when another
        transaction recorded one first."""

    @abstractmethod
    def replace(self, record: ExecutorRecord) -> None:
        """Replace the claim on ``record.executor_id`` (found locked by :meth:`by_id`)."""

    @abstractmethod
    def beat(self, executor_id: str, hostname: str, pid: int, at: dt.datetime) -> bool:
        """Mark the claim of (``hostname``, ``pid``) seen at ``at``; False when the id is
        no longer this process's."""

    @abstractmethod
    def release(self, executor_id: str, hostname: str, pid: int, at: dt.datetime) -> None:
        """End the claim of (``hostname``, ``pid``) at ``at``, keeping the row."""

    @abstractmethod
    def all(self) -> list[ExecutorRecord]:
        """Every claim, live, released or stale, by executor id."""


# -- SQL --------------------------------------------------------------------------------------
_NO_JSON: dict[str, str] = {}


def _executor(row: Row[Any]) -> ExecutorRecord:
    return record_of(ExecutorRecord, row, _NO_JSON)


class SQLExecutorStorage(SQLArea, ExecutorStorage):
    def by_id(self, executor_id: str, *, for_update: bool = False) -> ExecutorRecord | None:
        stmt = sa.select(t.engine_executors).where(t.engine_executors.c.executor_id == executor_id)
        if for_update and self.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        row = self._one(stmt)
        return _executor(row) if row else None

    def insert(self, record: ExecutorRecord) -> None:
        with self.dialect.unique_violation_as_name_taken():
            self.conn.execute(t.engine_executors.insert().values(values_of(record, _NO_JSON)))

    def replace(self, record: ExecutorRecord) -> None:
        c = t.engine_executors.c
        self.conn.execute(
            t.engine_executors.update()
            .where(c.executor_id == record.executor_id)
            .values(values_of(record, _NO_JSON))
        )

    def beat(self, executor_id: str, hostname: str, pid: int, at: dt.datetime) -> bool:
        c = t.engine_executors.c
        updated = self.conn.execute(
            t.engine_executors.update()
            .where(c.executor_id == executor_id, c.hostname == hostname, c.pid == pid)
            .values(seen_at=at)
        )
        return updated.rowcount == 1

    def release(self, executor_id: str, hostname: str, pid: int, at: dt.datetime) -> None:
        c = t.engine_executors.c
        self.conn.execute(
            t.engine_executors.update()
            .where(c.executor_id == executor_id, c.hostname == hostname, c.pid == pid)
            .values(pid=None, seen_at=at)
        )

    def all(self) -> list[ExecutorRecord]:
        stmt = sa.select(t.engine_executors).order_by(t.engine_executors.c.executor_id)
        return [_executor(row) for row in self.conn.execute(stmt)]
