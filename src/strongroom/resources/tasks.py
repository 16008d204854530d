"""``client.tasks``: define tasks whose steps use secrets, and run them.

The request builders, one per call, then :class:`Tasks` and :class:`AsyncTasks`, which
send them (see ``_resource.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._core import Operation
from .._resource import AsyncAPIResource, SyncAPIResource, async_call, segment, sync_call
from .._types import NOT_GIVEN, NotGiven, Timeout
from ..models import Execution, Task, TaskList


def create_task(
    task: Mapping[str, Any] | None = None,
    *,
    steps: Sequence[Mapping[str, Any]] | None = None,
    name: str | None = None,
    description: str | None = None,
    timeout: Timeout | NotGiven = NOT_GIVEN,
) -> Operation[Task]:
    """Create a task from ``task={...}`` or from ``steps=[...]``."""
    if task is not None and steps is not None:
        raise TypeError("pass either task={...} or steps=[...], not both")
    if task is None and steps is None:
        raise TypeError("tasks.create needs task={...} or steps=[...]")
    body: dict[str, Any] = dict(task) if task is not None else {"steps": list(steps or [])}
    if name is not None:
        body["name"] = name
    if description is not None:
        body["description"] = description
    return Operation("POST", "/v1/tasks", Task.model_validate, json={"task": body}, timeout=timeout)


def get_task(task_id: str, *, timeout: Timeout | NotGiven = NOT_GIVEN) -> Operation[Task]:
    path = f"/v1/tasks/{segment(task_id)}"
    return Operation("GET", path, Task.model_validate, idempotent=True, timeout=timeout)


def list_tasks(
    *,
    limit: int | None = None,
    offset: int | None = None,
    timeout: Timeout | NotGiven = NOT_GIVEN,
) -> Operation[TaskList]:
    params = {"limit": limit, "offset": offset}
    return Operation(
        "GET", "/v1/tasks", TaskList.model_validate, params=params, idempotent=True, timeout=timeout
    )


def delete_task(
    task_id: str, *, timeout: Timeout | NotGiven = NOT_GIVEN
) -> Operation[dict[str, Any]]:
    path = f"/v1/tasks/{segment(task_id)}"
    return Operation("DELETE", path, dict, idempotent=True, timeout=timeout)


def execute_task(
    task_id: str, input: Any = None, *, timeout: Timeout | NotGiven = NOT_GIVEN
) -> Operation[Execution]:
    """Start an execution (status ``queued``); ``executions.wait`` follows it."""
    path = f"/v1/tasks/{segment(task_id)}/executions"
    body = {} if input is None else {"input": input}
    return Operation("POST", path, Execution.model_validate, json=body, timeout=timeout)


class Tasks(SyncAPIResource):
    """``client.tasks``: define tasks whose steps use secrets, and run them."""

    create = sync_call(create_task)
    get = sync_call(get_task)
    list = sync_call(list_tasks)
    delete = sync_call(delete_task)
    execute = sync_call(execute_task)


class AsyncTasks(AsyncAPIResource):
    """``client.tasks``: define tasks whose steps use secrets, and run them."""

    create = async_call(create_task)
    get = async_call(get_task)
    list = async_call(list_tasks)
    delete = async_call(delete_task)
    execute = async_call(execute_task)


__all__ = ["AsyncTasks", "Tasks"]
