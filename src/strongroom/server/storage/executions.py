"""Task executions: runs, their steps (with each step's full result sealed while the run
lasts), and the destinations known to hold secrets. Records, interface and SQL.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from . import schema as t
from .dialect import SQLArea
from .page import Page
from .rows import dump, load, record_of, values_of
from .sealed import Sealed, SealedTable


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """One run of a task. ``output`` and ``error`` are stored redacted."""

    id: str
    tenant_id: str
    task_id: str
    status: str  # queued, running, succeeded, failed, cancelled
    steps: list[dict[str, Any]]  # the task's steps when the run was created
    input: Any
    output: Any
    error: Any
    created_by: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    rotation_of: str | None = None  # the secret a scheduled rotation runs it for


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One step of a run: its redacted output or error, and its full result sealed
    (``None`` once the run has ended, or while the step has no result)."""

    execution_id: str
    index: int
    kind: str
    status: str  # running, succeeded, failed
    output: Any = None
    error: Any = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    sealed: Sealed | None = None


class ExecutionStorage(ABC):
    # -- runs -----------------------------------------------------------------------------
    @abstractmethod
    def insert(self, execution: ExecutionRecord) -> None: ...

    @abstractmethod
    def by_id(
        self, execution_id: str, tenant_id: str | None = None, *, for_update: bool = False
    ) -> ExecutionRecord | None:
        """The execution, if it exists (and belongs to ``tenant_id`` when given)."""

    @abstractmethod
    def page(
        self, tenant_id: str, *, task_id: str | None, limit: int, offset: int
    ) -> Page[ExecutionRecord]:
        """The tenant's executions (of one task when given), newest first."""

    @abstractmethod
    def unfinished_ids(self, limit: int) -> list[str]:
        """Executions still queued or running, oldest first."""

    @abstractmethod
    def count_unfinished(self) -> dict[str, int]:
        """How many executions of all tenants are queued and running (the metrics' queue
        depth), by status; an index walk of ``ix_executions_status``."""

    @abstractmethod
    def set_status(
        self,
        execution_id: str,
        status: str,
        at: dt.datetime,
        *,
        only_from: tuple[str, ...],
        output: Any = None,
        error: Any = None,
    ) -> bool:
        """Move an execution to ``status`` (writing ``output`` and ``error``) if its status is
        one of ``only_from``; False when it was not."""

    # -- steps ----------------------------------------------------------------------------
    @abstractmethod
    def steps(self, execution_id: str) -> list[StepRecord]:
        """The execution's step records, by index."""

    @abstractmethod
    def save_step(self, step: StepRecord) -> None:
        """Insert the step record, or replace the one with its execution id and index."""

    @abstractmethod
    def wipe_step_results(self, execution_id: str) -> None:
        """Drop every sealed step result of the execution (it has ended)."""

    # -- destinations that may hold a secret (see tasks/held.py) -------------------------
    @abstractmethod
    def hold_secrets(
        self, tenant_id: str, destination: str, names: Sequence[str], now: dt.datetime
    ) -> None:
        """Record that ``destination`` (a fingerprint) was sent the secrets ``names``;
        idempotent, and safe against another transaction recording the same."""

    @abstractmethod
    def secrets_held(self, tenant_id: str, destinations: Sequence[str]) -> frozenset[str]:
        """The names of the secrets any of ``destinations`` was ever sent."""


# -- SQL --------------------------------------------------------------------------------------
_UNFINISHED = ("queued", "running")

# Each step's full result, sealed under the kind "step" (tasks/sealing.py's STEP_RESULT)
# and bound to its execution's tenant: rotation rewraps its data key.
SEALED_STEP_RESULTS = SealedTable(
    "step",
    t.execution_steps,
    key=(t.execution_steps.c.execution_id, t.execution_steps.c.idx),
    tenant=t.executions.c.tenant_id,
    source=t.execution_steps.join(
        t.executions, t.executions.c.id == t.execution_steps.c.execution_id
    ),
)


_JSON_COLUMNS = {field: f"{field}_json" for field in ("steps", "input", "output", "error")}


def _execution(row: Row[Any]) -> ExecutionRecord:
    return record_of(ExecutionRecord, row, _JSON_COLUMNS)


def _step(row: Row[Any]) -> StepRecord:
    sealed = None
    if row.ciphertext is not None:
        sealed = Sealed(row.kek_id, bytes(row.wrapped_dek), bytes(row.ciphertext))
    return StepRecord(
        execution_id=row.execution_id,
        index=row.idx,
        kind=row.kind,
        status=row.status,
        output=load(row.output_json),
        error=load(row.error_json),
        started_at=row.started_at,
        finished_at=row.finished_at,
        sealed=sealed,
    )


class SQLExecutionStorage(SQLArea, ExecutionStorage):
    def insert(self, execution: ExecutionRecord) -> None:
        self.conn.execute(t.executions.insert().values(**values_of(execution, _JSON_COLUMNS)))

    def by_id(
        self, execution_id: str, tenant_id: str | None = None, *, for_update: bool = False
    ) -> ExecutionRecord | None:
        stmt = sa.select(t.executions).where(t.executions.c.id == execution_id)
        if tenant_id is not None:
            stmt = stmt.where(t.executions.c.tenant_id == tenant_id)
        if for_update:
            stmt = stmt.with_for_update()
        row = self._one(stmt)
        return _execution(row) if row else None

    def page(
        self, tenant_id: str, *, task_id: str | None, limit: int, offset: int
    ) -> Page[ExecutionRecord]:
        e = t.executions.c
        stmt = sa.select(t.executions).where(e.tenant_id == tenant_id)
        if task_id is not None:
            stmt = stmt.where(e.task_id == task_id)
        stmt = stmt.order_by(e.id.desc()).limit(limit + 1).offset(offset)
        return Page.cut(self.conn.execute(stmt).all(), limit, _execution)

    def unfinished_ids(self, limit: int) -> list[str]:
        e = t.executions.c
        stmt = sa.select(e.id).where(e.status.in_(_UNFINISHED)).order_by(e.id).limit(limit)
        return [row.id for row in self.conn.execute(stmt)]

    def count_unfinished(self) -> dict[str, int]:
        e = t.executions.c
        stmt = (
            sa.select(e.status, sa.func.count()).where(e.status.in_(_UNFINISHED)).group_by(e.status)
        )
        found = dict.fromkeys(_UNFINISHED, 0)
        found.update((status, int(n)) for status, n in self.conn.execute(stmt))
        return found

    def set_status(
        self,
        execution_id: str,
        status: str,
        at: dt.datetime,
        *,
        only_from: tuple[str, ...],
        output: Any = None,
        error: Any = None,
    ) -> bool:
        e = t.executions.c
        result = self.conn.execute(
            t.executions.update()
            .where(e.id == execution_id, e.status.in_(only_from))
            .values(
                status=status,
                updated_at=at,
                output_json=dump(output),
                error_json=dump(error),
            )
        )
        return result.rowcount == 1

    def steps(self, execution_id: str) -> list[StepRecord]:
        s = t.execution_steps.c
        stmt = sa.select(t.execution_steps).where(s.execution_id == execution_id).order_by(s.idx)
        return [_step(row) for row in self.conn.execute(stmt)]

    def save_step(self, step: StepRecord) -> None:
        s = t.execution_steps.c
        values = {
            "kind": step.kind,
            "status": step.status,
            "output_json": dump(step.output),
            "error_json": dump(step.error),
            "started_at": step.started_at,
            "finished_at": step.finished_at,
            "kek_id": step.sealed.kek_id if step.sealed else None,
            "wrapped_dek": step.sealed.wrapped_dek if step.sealed else None,
            "ciphertext": step.sealed.ciphertext if step.sealed else None,
        }
        result = self.conn.execute(
            t.execution_steps.update()
            .where(s.execution_id == step.execution_id, s.idx == step.index)
            .values(**values)
        )
        if result.rowcount == 0:
            self.conn.execute(
                t.execution_steps.insert().values(
                    execution_id=step.execution_id, idx=step.index, **values
                )
            )

    def wipe_step_results(self, execution_id: str) -> None:
        s = t.execution_steps.c
        self.conn.execute(
            t.execution_steps.update()
            .where(s.execution_id == execution_id, s.ciphertext.is_not(None))
            .values(kek_id=None, wrapped_dek=None, ciphertext=None)
        )

    def hold_secrets(
        self, tenant_id: str, destination: str, names: Sequence[str], now: dt.datetime
    ) -> None:
        h = t.held_secrets.c
        known = set(
            self.conn.execute(
                sa.select(h.secret_name).where(
                    h.tenant_id == tenant_id,
                    h.destination == destination,
                    h.secret_name.in_(list(names)),
                )
            ).scalars()
        )
        for name in sorted(set(names) - known):
            row = {
                "tenant_id": tenant_id,
                "destination": destination,
                "secret_name": name,
                "recorded_at": now,
            }
            try:
                with self.conn.begin_nested():  # another run may record the same meanwhile
                    self.conn.execute(t.held_secrets.insert().values(**row))
            except sa.exc.IntegrityError as exc:
                if not self.dialect.is_unique_violation(exc):
                    raise

    def secrets_held(self, tenant_id: str, destinations: Sequence[str]) -> frozenset[str]:
        if not destinations:
            return frozenset()
        h = t.held_secrets.c
        stmt = (
            sa.select(h.secret_name)
            .distinct()
            .where(h.tenant_id == tenant_id, h.destination.in_(list(destinations)))
        )
        return frozenset(self.conn.execute(stmt).scalars())
