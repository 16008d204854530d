"""The statuses of executions and of their steps."""

from __future__ import annotations

from typing import Final

QUEUED: Final = "queued"
RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"

EXECUTION_STATUSES: Final = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINISHED: Final = frozenset({SUCCEEDED, FAILED, CANCELLED})
STEP_STATUSES: Final = (RUNNING, SUCCEEDED, FAILED)
