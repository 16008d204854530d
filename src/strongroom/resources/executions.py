"""``client.executions``: follow, inspect and cancel task runs.

The request builders, one per call, then :class:`Executions` and
:class:`AsyncExecutions`, which send them (see ``_resource.py``).
"""

from __future__ import annotations

import asyncio
import time

from .._core import Operation
from .._resource import AsyncAPIResource, SyncAPIResource, async_call, segment, sync_call
from .._types import NOT_GIVEN, NotGiven, Timeout
from .._waiting import Polling
from ..models import Execution, ExecutionList, ExecutionStepList


def _path(execution_id: str) -> str:
    return f"/v1/executions/{segment(execution_id)}"


def get_execution(
    execution_id: str, *, timeout: Timeout | NotGiven = NOT_GIVEN
) -> Operation[Execution]:
    path = _path(execution_id)
    return Operation("GET", path, Execution.model_validate, idempotent=True, timeout=timeout)


def list_executions(
    *,
    task_id: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
    timeout: Timeout | NotGiven = NOT_GIVEN,
) -> Operation[ExecutionList]:
    params = {"task_id": task_id, "limit": limit, "offset": offset}
    return Operation(
        "GET",
        "/v1/executions",
        ExecutionList.model_validate,
        params=params,
        idempotent=True,
        timeout=timeout,
    )


def execution_steps(
    execution_id: str, *, timeout: Timeout | NotGiven = NOT_GIVEN
) -> Operation[ExecutionStepList]:
    path = _path(execution_id) + "/steps"
    return Operation(
        "GET", path, ExecutionStepList.model_validate, idempotent=True, timeout=timeout
    )


def cancel_execution(
    execution_id: str, *, timeout: Timeout | NotGiven = NOT_GIVEN
) -> Operation[Execution]:
    path = _path(execution_id) + "/cancel"
    # Cancelling twice is the same as once.
    return Operation("POST", path, Execution.model_validate, idempotent=True, timeout=timeout)


class Executions(SyncAPIResource):
    """``client.executions``: follow, inspect and cancel task runs."""

    get = sync_call(get_execution)
    list = sync_call(list_executions)
    steps = sync_call(execution_steps)
    cancel = sync_call(cancel_execution)

    def wait(self, execution_id: str, *, timeout: float = 300.0) -> Execution:
        """Poll until the execution succeeds, fails or is cancelled (at most ``timeout`` s)."""
        polling = Polling(execution_id, timeout)
        while True:
            execution = self.get(execution_id)
            pause = polling.pause_after(execution)
            if pause is None:
                return execution
            time.sleep(pause)


class AsyncExecutions(AsyncAPIResource):
    """``client.executions``: follow, inspect and cancel task runs."""

    get = async_call(get_execution)
    list = async_call(list_executions)
    steps = async_call(execution_steps)
    cancel = async_call(cancel_execution)

    async def wait(self, execution_id: str, *, timeout: float = 300.0) -> Execution:
        """Poll until the execution succeeds, fails or is cancelled (at most ``timeout`` s)."""
        polling = Polling(execution_id, timeout)
        while True:
            execution = await self.get(execution_id)
            pause = polling.pause_after(execution)
            if pause is None:
                return execution
            await asyncio.sleep(pause)


__all__ = ["AsyncExecutions", "Executions"]
