"""The bounds on task work: each one a setting, each refusal a clear step or request error.

A task author chooses what a run does, so nothing it can ask for is unbounded: the steps of
a task, the bytes of a step's result (a tool's answer or an expression's value), the bytes
an execution stores in all, and how many executions run at once (per tenant, so that one
tenant's stalled runs cannot hold every worker, and in all). Expression evaluation has its
own finer bounds (``expressions.Limits``: time, text length, items, integer size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MIB: Final = 1024 * 1024


@dataclass(frozen=True)
class TaskLimits:
    """The bounds one process applies; built from the settings (``STRONGROOM_TASK_*``)."""

    max_steps: int = 100  # steps in one task
    max_result_bytes: int = MIB  # one step's result as stored (JSON); tools' answers too
    max_execution_bytes: int = 16 * MIB  # all of one execution's stored step results
    concurrency: int = 8  # executions running at once, all tenants, across every process
    concurrency_per_tenant: int = 4  # executions of one tenant running at once
    # Secret values longer than this are not compiled into the redactor (its build time
    # grows faster than the text): an answer to a call that used one as a credential is
    # then treated as derived from it, since it cannot be scanned for it.
    redact_max_value_chars: int = 16 * 1024

    def __post_init__(self) -> None:
        if self.concurrency_per_tenant > self.concurrency:
            raise ValueError(
                "the per-tenant task concurrency cannot exceed the task concurrency in all"
            )


DEFAULT_LIMITS: Final = TaskLimits()
