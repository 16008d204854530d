"""The barrier's heartbeat: a long-running process (a server, a worker) refreshes its row
in ``barrier_holders`` every interval, and on each beat rereads its master key file.

That is how a rekey learns which processes are alive and which keys they hold, and how a
running process picks up the incoming key without a restart (:meth:`.Barrier.refresh`).
A process not seen for :data:`BEATS_BEFORE_GONE` intervals counts as gone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from .barrier import Barrier

log = logging.getLogger("strongroom.server.barrier")

# Beats a process may miss (a pause, a slow database) before it counts as gone.
BEATS_BEFORE_GONE = 3


def gone_after(interval: float) -> float:
    """Seconds without a beat after which a process counts as gone."""
    return BEATS_BEFORE_GONE * interval


class Heartbeat:
    """:meth:`.Barrier.refresh`, then each of ``also`` (the execution engine's executor
    claim), every ``interval`` seconds on a daemon thread, from :meth:`start` to
    :meth:`stop`; a failed beat is logged and the next one tried. One thread for every
    liveness mark: an idle process wakes once an interval, not once per mark."""

    def __init__(
        self, barrier: Barrier, interval: float, also: Sequence[Callable[[], None]] = ()
    ) -> None:
        self.barrier = barrier
        self.interval = interval
        self.also = tuple(also)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="barrier-heartbeat", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None:
            thread.join(timeout=self.interval + 30)

    def _run(self, stop: threading.Event) -> None:
        failing: str | None = None
        while not stop.wait(self.interval):
            try:
                self.barrier.refresh()
                for beat in self.also:
                    beat()
            except Exception as exc:
                # The database may be down a while: the row goes stale, and fresh again at
                # the first beat that gets through. Said once, not at every beat.
                problem = f"{type(exc).__name__}: {exc}"
                if problem != failing:
                    log.warning("barrier heartbeat failed", extra={"error": problem})
                failing = problem
            else:
                if failing is not None:
                    log.info("barrier heartbeat back")
                failing = None
