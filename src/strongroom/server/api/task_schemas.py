"""Wire shapes of the task and execution routes, as the contract pins them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from .schemas import Timestamp

ExecutionStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class ExecutionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: JsonValue = Field(None, description="the execution's input (`inputs` in expressions)")


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
