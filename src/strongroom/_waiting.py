"""How ``executions.wait`` polls, for both clients: quickly at first (most runs are
short), then every two seconds, until the execution ends or the wait runs out."""

from __future__ import annotations

import time
from collections.abc import Iterator

from .exceptions import WaitTimeoutError
from .models import Execution


def poll_delays(first: float = 0.1, factor: float = 1.5, cap: float = 2.0) -> Iterator[float]:
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * factor)


class Polling:
    """The wait's clock: after each look at the execution, how long to sleep."""

    def __init__(self, execution_id: str, timeout: float) -> None:
        self._execution_id = execution_id
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout
        self._delays = poll_delays()

    def pause_after(self, execution: Execution) -> float | None:
        """None once ``execution`` has ended, else the seconds to sleep before the next
        look; :class:`WaitTimeoutError` when the wait has run out."""
        if execution.done:
            return None
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeoutError(
                f"execution {self._execution_id} is still {execution.status} "
                f"after {self._timeout} s"
            )
        return min(next(self._delays), remaining)
