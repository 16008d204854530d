"""Routes under ``/v1/tasks`` and ``/v1/executions`` (scope ``tasks:run``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from pydantic import AfterValidator, JsonValue

from ..errors import ValidationFailed
from ..tasks.definitions import task_body
from .deps import Auth, Limit, Offset, Svc
from .schemas import tasks as schemas
from .schemas.common import (
    COMMON_ERRORS,
    NO_NUL_SCHEMA,
    check_text,
    error_responses,
    json_problem,
    page_body,
)
from .schemas.tasks import execution_out, step_out, task_out

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])
executions_router = APIRouter(prefix="/v1/executions", tags=["executions"])

# Ids are UUIDs, and any other text finds nothing (404); but they are looked up as text,
# and PostgreSQL fails on text holding NUL rather than find nothing, so that is refused.
_ID_SCHEMA: dict[str, JsonValue] = {"format": "uuid", **NO_NUL_SCHEMA}
TaskId = Annotated[
    str, Path(description="the task's id", json_schema_extra=_ID_SCHEMA), AfterValidator(check_text)
]
ExecutionId = Annotated[
    str,
    Path(description="the execution's id", json_schema_extra=_ID_SCHEMA),
    AfterValidator(check_text),
]

_COMMON = COMMON_ERRORS


def _refuse_unstorable(body: Mapping[str, Any]) -> None:
    """Refuse what the store could not keep as sent, before parse_task checks the shape:
    text that is not valid Unicode or numbers out of range anywhere, and NUL characters in
    the name and description, which are columns of their own."""
    problem = json_problem(body)
    if problem:
        raise ValidationFailed.at("body", f"the task {problem}")
    task, prefix = task_body(body)
    if isinstance(task, Mapping):
        for key in ("name", "description"):
            text = task.get(key)
            if isinstance(text, str) and "\x00" in text:
                raise ValidationFailed.at(prefix + key, "must not contain NUL characters")


# -- tasks ------------------------------------------------------------------------------------
@router.post(
    "",
    status_code=201,
    response_model=schemas.CreatedTask,
    responses=error_responses(*_COMMON, 413),
    summary="Create a task: {task: {...}} or {name?, description?, steps: [...]}",
)
def create_task(
    body: Annotated[
        dict[str, Any],
        Body(description="the task, or {task: {...}}", json_schema_extra=schemas.TASK_BODY_SCHEMA),
    ],
    caller: Auth,
    svc: Svc,
) -> dict[str, Any]:
    _refuse_unstorable(body)
    task, warnings = svc.tasks.create_task(caller, body)
    return {
        **task_out(task),
        "warnings": [{"location": w.location, "message": w.message} for w in warnings],
    }


@router.get(
    "",
    response_model=schemas.TaskList,
    responses=error_responses(*_COMMON),
    summary="List tasks, oldest first",
)
def list_tasks(caller: Auth, svc: Svc, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    page = svc.tasks.list_tasks(caller, limit=limit, offset=offset)
    return page_body(page, limit, offset, task_out)


@router.get(
    "/{task_id}",
    response_model=schemas.Task,
    responses=error_responses(*_COMMON, 404),
    summary="Get a task",
)
def get_task(task_id: TaskId, caller: Auth, svc: Svc) -> dict[str, Any]:
    return task_out(svc.tasks.get_task(caller, task_id))


@router.delete(
    "/{task_id}",
    response_model=schemas.DeletedTask,
    responses=error_responses(*_COMMON, 404),
    summary="Delete a task (its executions are kept)",
)
def delete_task(task_id: TaskId, caller: Auth, svc: Svc) -> dict[str, Any]:
    task = svc.tasks.delete_task(caller, task_id)
    return {"id": task.id, "deleted_at": dt.datetime.now(dt.UTC)}


@router.post(
    "/{task_id}/executions",
    status_code=201,
    response_model=schemas.Execution,
    responses=error_responses(*_COMMON, 404, 413),
    summary="Run a task: the execution starts queued",
)
def execute_task(
    task_id: TaskId,
    caller: Auth,
    svc: Svc,
    body: Annotated[schemas.ExecutionCreate | None, Body()] = None,
) -> dict[str, Any]:
    given = body.input if body is not None else None
    return execution_out(svc.tasks.execute(caller, task_id, given))


# -- executions -------------------------------------------------------------------------------
@executions_router.get(
    "",
    response_model=schemas.ExecutionList,
    responses=error_responses(*_COMMON),
    summary="List executions, newest first",
)
def list_executions(
    caller: Auth,
    svc: Svc,
    task_id: Annotated[
        str | None,
        Query(description="only this task's executions", json_schema_extra=NO_NUL_SCHEMA),
        AfterValidator(check_text),
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    page = svc.tasks.list_executions(caller, task_id=task_id, limit=limit, offset=offset)
    return page_body(page, limit, offset, execution_out)


@executions_router.get(
    "/{execution_id}",
    response_model=schemas.Execution,
    responses=error_responses(*_COMMON, 404),
    summary="Get an execution",
)
def get_execution(execution_id: ExecutionId, caller: Auth, svc: Svc) -> dict[str, Any]:
    return execution_out(svc.tasks.get_execution(caller, execution_id))


@executions_router.get(
    "/{execution_id}/steps",
    response_model=schemas.ExecutionStepList,
    responses=error_responses(*_COMMON, 404),
    summary="The execution's steps so far, with their redacted outputs and errors",
)
def execution_steps(execution_id: ExecutionId, caller: Auth, svc: Svc) -> dict[str, Any]:
    return {"items": [step_out(s) for s in svc.tasks.execution_steps(caller, execution_id)]}


@executions_router.post(
    "/{execution_id}/cancel",
    response_model=schemas.Execution,
    responses=error_responses(*_COMMON, 404),
    summary="Cancel a queued or running execution (it stops before its next step)",
)
def cancel_execution(execution_id: ExecutionId, caller: Auth, svc: Svc) -> dict[str, Any]:
    return execution_out(svc.tasks.cancel(caller, execution_id))
