"""The tasks service: defining tasks, starting, following and cancelling their executions.

Routes call these methods; the engine (:mod:`.engine`) runs what they start. Every call
needs the ``tasks:run`` scope: a key that may run tasks may use (not read) every secret of
its tenant in them, so the scope is granted on purpose, not by default with another.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .. import trail
from ..auth import Caller, Scope, require
from ..errors import NotFound
from ..ids import new_id
from ..storage import ExecutionRecord, Page, StepRecord, Store, TaskRecord
from ..trail import Action
from .definitions import TaskDefinition, parse_task
from .limits import DEFAULT_LIMITS, TaskLimits
from .status import CANCELLED, QUEUED, RUNNING

log = logging.getLogger("strongroom.tasks")


class Engine(Protocol):
    """Runs executions. ``submit`` must not raise for a transient failure: an execution
    left queued is picked up when an engine starts (see ``engine.DurableEngine``)."""

    def submit(self, execution_id: str, tenant_id: str) -> None: ...


class DeferredEngine:
    """No engine in this process: executions wait, queued, for one that starts later."""

    def submit(self, execution_id: str, tenant_id: str) -> None:
        log.debug("execution queued for a later engine", extra={"execution_id": execution_id})


@dataclass(frozen=True)
class TaskWarning:
    location: str
    message: str


def _not_found(kind: str, given: str) -> NotFound:
    """Ids are UUIDs: a well-formed one is quoted, anything else (a value pasted into the
    URL by mistake, even a secret) is not repeated back."""
    try:
        uuid.UUID(given)
    except ValueError:
        return NotFound(f"no {kind} has that id ({kind} ids are UUIDs)")
    return NotFound(f"{kind} {given!r} does not exist")


def _task_not_found(task_id: str) -> NotFound:
    return _not_found("task", task_id)


def _execution_not_found(execution_id: str) -> NotFound:
    return _not_found("execution", execution_id)


class TaskService:
    def __init__(
        self, store: Store, engine: Engine | None = None, limits: TaskLimits = DEFAULT_LIMITS
    ) -> None:
        self.store = store
        self.engine: Engine = engine or DeferredEngine()
        self.limits = limits

    # -- tasks ----------------------------------------------------------------------------
    def create_task(
        self, caller: Caller, body: Mapping[str, Any]
    ) -> tuple[TaskRecord, list[TaskWarning]]:
        """Check and store a task; warnings name the secrets it uses that do not exist yet."""
        require(self.store, caller, Scope.TASKS_RUN, Action.TASK_CREATE)
        definition: TaskDefinition = parse_task(body, max_steps=self.limits.max_steps)
        now = dt.datetime.now(dt.UTC)
        task = TaskRecord(
            id=new_id(),
            tenant_id=caller.tenant_id,
            name=definition.name,
            description=definition.description,
            steps=definition.steps,
            created_at=now,
            updated_at=now,
        )
        warnings: list[TaskWarning] = []
        with self.store.write() as tx:
            tx.tasks.insert(task)
            exists: dict[str, bool] = {}
            for step in definition.compiled:
                for location, name in step.secret_uses():
                    if name not in exists:
                        found = tx.secrets.by_name(caller.tenant_id, name)
                        exists[name] = found is not None and caller.reaches(
                            found.name, found.metadata
                        )
                    if not exists[name]:
                        # A scoped key is told the same of a secret outside its rule as
                        # of a missing one: its runs can use neither.
                        beyond = "" if caller.rule is None else " or is outside this key's reach"
                        warnings.append(
                            TaskWarning(location, f"secret {name!r} does not exist yet{beyond}")
                        )
            trail.record(
                tx,
                trail.event(caller.actor, Action.TASK_CREATE, "success", detail=f"task {task.id}"),
            )
        return task, warnings

    def list_tasks(self, caller: Caller, *, limit: int, offset: int) -> Page[TaskRecord]:
        require(self.store, caller, Scope.TASKS_RUN)
        with self.store.read() as tx:
            return tx.tasks.page(caller.tenant_id, limit=limit, offset=offset)

    def get_task(self, caller: Caller, task_id: str) -> TaskRecord:
        require(self.store, caller, Scope.TASKS_RUN)
        with self.store.read() as tx:
            task = tx.tasks.by_id(caller.tenant_id, task_id)
        if task is None:
            raise _task_not_found(task_id)
        return task

    def delete_task(self, caller: Caller, task_id: str) -> TaskRecord:
        """Delete a task. Its executions stay, and those still running finish."""
        require(self.store, caller, Scope.TASKS_RUN, Action.TASK_DELETE)
        with self.store.write() as tx:
            task = tx.tasks.by_id(caller.tenant_id, task_id)
            if task is None:
                raise _task_not_found(task_id)
            tx.tasks.delete(task.id)
            trail.record(
                tx,
                trail.event(caller.actor, Action.TASK_DELETE, "success", detail=f"task {task.id}"),
            )
        return task

    # -- executions -----------------------------------------------------------------------
    def execute(self, caller: Caller, task_id: str, input: Any) -> ExecutionRecord:
        """Record a queued execution of the task and hand it to the engine."""
        require(self.store, caller, Scope.TASKS_RUN, Action.TASK_EXECUTE)
        now = dt.datetime.now(dt.UTC)
        with self.store.write() as tx:
            task = tx.tasks.by_id(caller.tenant_id, task_id)
            if task is None:
                raise _task_not_found(task_id)
            execution = ExecutionRecord(
                id=new_id(),
                tenant_id=caller.tenant_id,
                task_id=task.id,
                status=QUEUED,
                steps=task.steps,
                input=input,
                output=None,
                error=None,
                created_by=caller.key_id,
                created_at=now,
                updated_at=now,
            )
            tx.executions.insert(execution)
            detail = f"task {task.id} execution {execution.id}"
            trail.record(
                tx, trail.event(caller.actor, Action.TASK_EXECUTE, "success", detail=detail)
            )
        try:
            self.engine.submit(execution.id, execution.tenant_id)
        except Exception:
            # Recorded as queued: the next engine start picks it up.
            log.exception("could not hand the execution to the engine")
        return execution

    def get_execution(self, caller: Caller, execution_id: str) -> ExecutionRecord:
        require(self.store, caller, Scope.TASKS_RUN)
        with self.store.read() as tx:
            execution = tx.executions.by_id(execution_id, caller.tenant_id)
        if execution is None:
            raise _execution_not_found(execution_id)
        return execution

    def list_executions(
        self, caller: Caller, *, task_id: str | None, limit: int, offset: int
    ) -> Page[ExecutionRecord]:
        require(self.store, caller, Scope.TASKS_RUN)
        with self.store.read() as tx:
            return tx.executions.page(caller.tenant_id, task_id=task_id, limit=limit, offset=offset)

    def execution_steps(self, caller: Caller, execution_id: str) -> list[StepRecord]:
        require(self.store, caller, Scope.TASKS_RUN)
        with self.store.read() as tx:
            if tx.executions.by_id(execution_id, caller.tenant_id) is None:
                raise _execution_not_found(execution_id)
            return tx.executions.steps(execution_id)

    def cancel(self, caller: Caller, execution_id: str) -> ExecutionRecord:
        """Cancel a queued or running execution; one that has ended is left as it is.

        A running execution stops before its next step (the step under way finishes).
        """
        require(self.store, caller, Scope.TASKS_RUN, Action.EXECUTION_CANCEL)
        now = dt.datetime.now(dt.UTC)
        with self.store.write() as tx:
            execution = tx.executions.by_id(execution_id, caller.tenant_id, for_update=True)
            if execution is None:
                raise _execution_not_found(execution_id)
            if tx.executions.set_status(execution.id, CANCELLED, now, only_from=(QUEUED, RUNNING)):
                trail.record(
                    tx,
                    trail.event(
                        caller.actor,
                        Action.EXECUTION_CANCEL,
                        "success",
                        detail=f"execution {execution.id}",
                    ),
                )
            found = tx.executions.by_id(execution.id)
        assert found is not None
        return found
