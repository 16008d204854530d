"""Every API call as an :class:`Operation`: the request and the answer's type.

The sync and async resources call these builders and only differ in how they run the
result, so a call's wire shape is written once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from ._core import NOT_GIVEN, NotGiven, Operation
from .exceptions import SecretAlreadyExistsError, SecretNotFoundError
from .models import (
    AuditList,
    DeletedSecret,
    Execution,
    ExecutionList,
    ExecutionStepList,
    Secret,
    SecretList,
    SecretPolicy,
    SecretVersionList,
    Task,
    TaskList,
)

# A policy as the calls take it: the model, or a mapping of the wire's fields.
PolicyArg = SecretPolicy | Mapping[str, Any]


def _secret_path(name: str) -> str:
    return f"/v1/secrets/{quote(name, safe='')}"


def _given(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if not isinstance(v, NotGiven)}


def _if_match(version: int | None) -> dict[str, str]:
    return {"If-Match": f'"{version}"'} if version is not None else {}


def policy_body(policy: PolicyArg) -> dict[str, Any]:
    """The wire form of a policy argument: a model sends the fields set when it was made
    (so ``SecretPolicy(readable=False)`` changes only ``readable``), a mapping is sent as
    it is. A list is sent as a list whatever iterable it was given as."""
    if isinstance(policy, SecretPolicy):
        given = policy.model_dump(exclude_unset=True)
    elif isinstance(policy, Mapping):
        given = dict(policy)
    else:
        raise TypeError(f"policy must be a SecretPolicy or a mapping, not {type(policy).__name__}")
    for field in ("allowed_destinations", "allowed_tools"):
        value = given.get(field)
        if value is not None and not isinstance(value, str | Mapping):
            given[field] = list(value)
    return given


# -- secrets ------------------------------------------------------------------------------------
def create_secret(
    name: str,
    value: str,
    description: str | None,
    metadata: Mapping[str, Any] | None,
    policy: PolicyArg | None = None,
) -> Operation[Secret]:
    body = {
        "name": name,
        "value": value,
        "description": description,
        "metadata": metadata,
        "policy": None if policy is None else policy_body(policy),
    }
    return Operation(
        "POST",
        "/v1/secrets",
        Secret.model_validate,
        json={k: v for k, v in body.items() if v is not None},
        conflict=SecretAlreadyExistsError,
    )


def list_secrets(
    limit: int | None, offset: int | None, metadata: Mapping[str, Any] | None
) -> Operation[SecretList]:
    params = {
        "limit": limit,
        "offset": offset,
        "metadata": json.dumps(dict(metadata), separators=(",", ":")) if metadata else None,
    }
    return Operation(
        "GET", "/v1/secrets", SecretList.model_validate, params=params, idempotent=True
    )


def get_secret(name: str, version: int | None) -> Operation[Secret]:
    return Operation(
        "GET",
        _secret_path(name),
        Secret.model_validate,
        params={"version": version},
        idempotent=True,
        not_found=SecretNotFoundError,
    )


def update_secret(
    name: str,
    *,
    value: str | NotGiven = NOT_GIVEN,
    description: str | NotGiven | None = NOT_GIVEN,
    metadata: Mapping[str, Any] | NotGiven = NOT_GIVEN,
    new_name: str | NotGiven = NOT_GIVEN,
    expected_version: int | None = None,
    policy: PolicyArg | NotGiven = NOT_GIVEN,
) -> Operation[Secret]:
    body = _given(value=value, description=description, metadata=metadata, new_name=new_name)
    if expected_version is not None:
        body["expected_version"] = expected_version
    if not isinstance(policy, NotGiven):
        body["policy"] = policy_body(policy)
    return Operation(
        "PATCH",
        _secret_path(name),
        Secret.model_validate,
        json=body,
        # A conditional update cannot apply twice: the second try meets a newer version.
        idempotent=expected_version is not None,
        not_found=SecretNotFoundError,
        conflict=SecretAlreadyExistsError,
    )


def put_secret(
    name: str,
    value: str,
    description: str | NotGiven | None,
    metadata: Mapping[str, Any] | NotGiven,
    expected_version: int | None,
    policy: PolicyArg | NotGiven = NOT_GIVEN,
) -> Operation[Secret]:
    body = _given(value=value, description=description, metadata=metadata)
    if not isinstance(policy, NotGiven):
        body["policy"] = policy_body(policy)
    return Operation(
        "PUT",
        _secret_path(name),
        Secret.model_validate,
        json=body,
        headers=_if_match(expected_version),
        idempotent=True,
        not_found=SecretNotFoundError,
    )


def delete_secret(name: str, expected_version: int | None) -> Operation[DeletedSecret]:
    return Operation(
        "DELETE",
        _secret_path(name),
        DeletedSecret.model_validate,
        headers=_if_match(expected_version),
        idempotent=True,
        not_found=SecretNotFoundError,
    )


def secret_versions(name: str) -> Operation[SecretVersionList]:
    return Operation(
        "GET",
        _secret_path(name) + "/versions",
        SecretVersionList.model_validate,
        idempotent=True,
        not_found=SecretNotFoundError,
    )


# -- tasks and executions -----------------------------------------------------------------------
def create_task(
    task: Mapping[str, Any] | None,
    steps: Sequence[Mapping[str, Any]] | None,
    name: str | None,
    description: str | None,
) -> Operation[Task]:
    if task is not None and steps is not None:
        raise TypeError("pass either task={...} or steps=[...], not both")
    if task is None and steps is None:
        raise TypeError("tasks.create needs task={...} or steps=[...]")
    body: dict[str, Any] = dict(task) if task is not None else {"steps": list(steps or [])}
    if name is not None:
        body["name"] = name
    if description is not None:
        body["description"] = description
    return Operation("POST", "/v1/tasks", Task.model_validate, json={"task": body})


def list_tasks(limit: int | None, offset: int | None) -> Operation[TaskList]:
    params = {"limit": limit, "offset": offset}
    return Operation("GET", "/v1/tasks", TaskList.model_validate, params=params, idempotent=True)


def get_task(task_id: str) -> Operation[Task]:
    path = f"/v1/tasks/{quote(task_id, safe='')}"
    return Operation("GET", path, Task.model_validate, idempotent=True)


def delete_task(task_id: str) -> Operation[dict[str, Any]]:
    path = f"/v1/tasks/{quote(task_id, safe='')}"
    return Operation("DELETE", path, dict, idempotent=True)


def execute_task(task_id: str, input: Any) -> Operation[Execution]:
    path = f"/v1/tasks/{quote(task_id, safe='')}/executions"
    body = {} if input is None else {"input": input}
    return Operation("POST", path, Execution.model_validate, json=body)


def get_execution(execution_id: str) -> Operation[Execution]:
    path = f"/v1/executions/{quote(execution_id, safe='')}"
    return Operation("GET", path, Execution.model_validate, idempotent=True)


def list_executions(
    task_id: str | None, limit: int | None, offset: int | None
) -> Operation[ExecutionList]:
    params = {"task_id": task_id, "limit": limit, "offset": offset}
    return Operation(
        "GET", "/v1/executions", ExecutionList.model_validate, params=params, idempotent=True
    )


def execution_steps(execution_id: str) -> Operation[ExecutionStepList]:
    path = f"/v1/executions/{quote(execution_id, safe='')}/steps"
    return Operation("GET", path, ExecutionStepList.model_validate, idempotent=True)


def cancel_execution(execution_id: str) -> Operation[Execution]:
    path = f"/v1/executions/{quote(execution_id, safe='')}/cancel"
    # Cancelling twice is the same as once.
    return Operation("POST", path, Execution.model_validate, idempotent=True)


# -- audit --------------------------------------------------------------------------------------
def list_audit(
    limit: int | None, offset: int | None, secret: str | None, action: str | None
) -> Operation[AuditList]:
    params = {"limit": limit, "offset": offset, "secret": secret, "action": action}
    return Operation("GET", "/v1/audit", AuditList.model_validate, params=params, idempotent=True)
