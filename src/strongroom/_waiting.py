"""How often ``executions.wait`` asks: quickly at first, then every two seconds."""

from __future__ import annotations

from collections.abc import Iterator


def poll_delays(first: float = 0.1, factor: float = 1.5, cap: float = 2.0) -> Iterator[float]:
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * factor)
