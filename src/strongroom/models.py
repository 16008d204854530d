"""Typed answers of the API. Unknown fields are kept, so a newer server does not break."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ExecutionStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Secret(Model):
    """A secret. ``value`` is the plaintext only when read with ``secrets.get``;
    everywhere else it is ``"ENCRYPTED"``. It never shows in ``repr``."""

    id: str
    name: str
    description: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    value: str = Field(repr=False)
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime


class SecretList(Model):
    items: list[Secret]
    limit: int
    offset: int
    has_more: bool


class DeletedSecret(Model):
    id: str
    name: str
    deleted_at: dt.datetime


class SecretVersion(Model):
    version: int
    created_at: dt.datetime
    created_by: str | None = None


class SecretVersionList(Model):
    items: list[SecretVersion]


class AuditRecord(Model):
    id: int
    time: dt.datetime
    key_id: str | None = None
    action: str
    outcome: str
    secret_name: str | None = None
    secret_id: str | None = None
    request_id: str | None = None
    client_addr: str | None = None
    detail: str | None = None


class AuditList(Model):
    items: list[AuditRecord]
    limit: int
    offset: int
    has_more: bool


class Task(Model):
    id: str
    name: str | None = None
    description: str | None = None
    steps: list[dict[str, Any]]
    created_at: dt.datetime
    updated_at: dt.datetime


class TaskList(Model):
    items: list[Task]
    limit: int = 100
    offset: int = 0
    has_more: bool = False


class Execution(Model):
    id: str
    task_id: str
    status: ExecutionStatus
    input: Any = None
    output: Any = None
    error: Any = None
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


class ExecutionList(Model):
    items: list[Execution]
    limit: int = 100
    offset: int = 0
    has_more: bool = False


class ExecutionStep(Model):
    index: int
    kind: str
    status: str
    output: Any = None
    error: Any = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None


class ExecutionStepList(Model):
    items: list[ExecutionStep]


__all__ = [
    "AuditList",
    "AuditRecord",
    "DeletedSecret",
    "Execution",
    "ExecutionList",
    "ExecutionStatus",
    "ExecutionStep",
    "ExecutionStepList",
    "Secret",
    "SecretList",
    "SecretVersion",
    "SecretVersionList",
    "Task",
    "TaskList",
]
