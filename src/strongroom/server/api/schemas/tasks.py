"""Wire shapes of ``/v1/tasks`` and ``/v1/executions``, and the mappers that fill them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue

from ...storage import ExecutionRecord, StepRecord, TaskRecord
from ...tasks.definitions import DESCRIPTION_MAX, MAX_STEPS, NAME_MAX, STEP_KINDS
from ...tasks.expressions import PREFIX
from .common import NAME_SCHEMA, NO_NUL_SCHEMA, Timestamp, fields_of, json_problem

ExecutionStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


# -- the task a POST /v1/tasks body defines ---------------------------------------------------
# For the OpenAPI document: the route reads the body as a plain object and parse_task checks
# it, so that every problem is reported at once, located in the body. What a schema cannot
# say is checked there too: the expressions' syntax, each tool's operations and arguments,
# and that output names are unique.
def _text(most: int) -> dict[str, JsonValue]:
    return {"type": ["string", "null"], "maxLength": most, **NO_NUL_SCHEMA}


_IDENTIFIER: dict[str, JsonValue] = {"type": ["string", "null"], **NAME_SCHEMA}
_TEMPLATE: dict[str, JsonValue] = {
    "description": f"any JSON; strings starting {PREFIX!r} are expressions"
}
STEP_SCHEMA: dict[str, JsonValue] = {
    "type": "object",
    "required": ["kind"],
    "properties": {
        "kind": {"enum": list(STEP_KINDS)},
        "input": _TEMPLATE,
        "output": _IDENTIFIER,
        "expression": _TEMPLATE,
        "tool": {"type": "string"},
        "operation": {"type": "string"},
        "arguments": {"type": ["object", "null"]},
        "secret_name": _IDENTIFIER,
    },
    "additionalProperties": False,
}
TASK_SCHEMA: dict[str, JsonValue] = {
    "type": "object",
    "required": ["steps"],
    "properties": {
        "name": _text(NAME_MAX),
        "description": _text(DESCRIPTION_MAX),
        "steps": {"type": "array", "minItems": 1, "maxItems": MAX_STEPS, "items": STEP_SCHEMA},
    },
    "additionalProperties": False,
}
TASK_BODY_SCHEMA: dict[str, JsonValue] = {
    "anyOf": [
        TASK_SCHEMA,
        {
            "type": "object",
            "required": ["task"],
            "properties": {"task": TASK_SCHEMA},
            "additionalProperties": False,
        },
    ]
}


def _storable(value: JsonValue) -> JsonValue:
    problem = json_problem(value)
    if problem:
        raise ValueError(f"input {problem}")
    return value


class ExecutionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: Annotated[JsonValue, AfterValidator(_storable)] = Field(
        None, description="the execution's input (`inputs` in expressions)"
    )


class Task(BaseModel):
    id: str
    name: str | None
    description: str | None
    steps: list[dict[str, Any]]
    created_at: Timestamp
    updated_at: Timestamp


class TaskWarning(BaseModel):
    location: str
    message: str


class CreatedTask(Task):
    warnings: list[TaskWarning] = Field(
        description="things to fix that do not stop the task, e.g. a secret not created yet"
    )


class TaskList(BaseModel):
    items: list[Task]
    limit: int
    offset: int
    has_more: bool


class DeletedTask(BaseModel):
    id: str
    deleted_at: Timestamp


class Execution(BaseModel):
    id: str
    task_id: str
    status: ExecutionStatus
    input: JsonValue
    output: JsonValue = Field(description="the last step's result, redacted")
    error: JsonValue = Field(description='{"step": index, "code", "message"} when it failed')
    created_at: Timestamp
    updated_at: Timestamp


class ExecutionList(BaseModel):
    items: list[Execution]
    limit: int
    offset: int
    has_more: bool


class ExecutionStep(BaseModel):
    index: int
    kind: str
    status: Literal["running", "succeeded", "failed"]
    output: JsonValue = Field(description="the step's result, redacted")
    error: JsonValue
    started_at: Timestamp | None
    finished_at: Timestamp | None


class ExecutionStepList(BaseModel):
    items: list[ExecutionStep]


def task_out(task: TaskRecord) -> dict[str, Any]:
    return fields_of(task, Task)


def execution_out(execution: ExecutionRecord) -> dict[str, Any]:
    return fields_of(execution, Execution)


def step_out(step: StepRecord) -> dict[str, Any]:
    return fields_of(step, ExecutionStep)
