"""Audit retention: removing old events from the trail, by hand (``strongroom audit prune``)
or past the retention setting (``STRONGROOM_AUDIT_RETENTION_DAYS``), and never silently.

:func:`prune` deletes the events before a cutoff in batches, each in a write transaction of
its own, so that pruning millions of events never holds one long transaction (nor SQLite's
write lock for long). Then it records an ``audit.prune`` event in the trail of each tenant
that lost events, saying how many and before when: whoever reads a trail sees why its oldest
events are gone. A prune that removed nothing changed nothing and records nothing.

Pruning is safe from several processes at once: a batch counts only the rows its own
statement deleted, so two prunes record the true number between them.

:func:`prune_expired` is the retention setting's prune: a plain function of the store, the
retention and the time, for whatever runs it on a schedule. For now that is
:class:`Pruner`, a daemon thread that the long-running processes start where they start the
barrier's heartbeat (the app's lifespan, ``strongroom worker``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from . import trail
from .storage import Store
from .trail import Action, Actor

log = logging.getLogger("strongroom.audit")

BATCH = 1000  # events deleted per transaction: a few milliseconds of a write lock
MAX_BATCH = 10_000  # the ids of a batch are bound parameters of one statement


class FutureCutoff(ValueError):
    """A prune asked to remove events before a time that has not come yet."""


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What a prune removed: events by tenant (None: events of no tenant), all before
    ``before``; ``complete`` unless it stopped before the end (asked to, or failed)."""

    before: dt.datetime
    removed: dict[str | None, int]
    complete: bool

    @property
    def count(self) -> int:
        return sum(self.removed.values())


def stamp(when: dt.datetime) -> str:
    """A cutoff as the trail says it: RFC 3339 in UTC, to the microsecond when it has one."""
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def prune(
    store: Store,
    before: dt.datetime,
    *,
    now: dt.datetime,
    by: str,
    batch_size: int = BATCH,
    on_batch: Callable[[int], None] | None = None,
    keep_going: Callable[[], bool] | None = None,
) -> PruneReport:
    """Delete every audit event, of every tenant, that occurred before ``before``, and
    record the prune in the trail of each tenant that lost events (``by`` says who pruned).

    ``on_batch`` is told the running count after each batch; ``keep_going``, asked after
    each, can stop the prune early (what was removed is recorded all the same). A cutoff
    after ``now`` is refused (:class:`FutureCutoff`): it would remove events still being
    written, and is never what was meant.
    """
    if before > now:
        raise FutureCutoff(
            f"{stamp(before)} is in the future (it is {stamp(now)}): a prune removes the "
            "events before a time that has passed"
        )
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"a prune's batch size is 1 to {MAX_BATCH}, not {batch_size}")
    removed: Counter[str | None] = Counter()
    complete = False
    try:
        while True:
            with store.write() as tx:
                batch = tx.audit.delete_before(before, limit=batch_size)
            removed.update(batch.removed)
            if on_batch is not None:
                on_batch(removed.total())
            if not batch.more:
                complete = True
                break
            if keep_going is not None and not keep_going():
                break
    except BaseException:
        # What earlier batches removed is gone for good: say so, then the error.
        try:
            _record(store, removed, before, by, complete=False)
        except Exception:
            log.exception("could not record an interrupted audit prune")
        raise
    _record(store, removed, before, by, complete=complete)
    return PruneReport(before, dict(removed), complete)


def _record(
    store: Store, removed: Counter[str | None], before: dt.datetime, by: str, *, complete: bool
) -> None:
    """One ``audit.prune`` event in each trail that lost events, in one transaction."""
    if not removed:
        return
    end = "" if complete else "; stopped before the end"
    with store.write() as tx:
        for tenant_id, count in sorted(removed.items(), key=lambda item: item[0] or ""):
            events = "event" if count == 1 else "events"
            detail = f"removed {count} {events} before {stamp(before)}, by {by}{end}"
            trail.record(
                tx,
                trail.event(Actor(tenant_id, None), Action.AUDIT_PRUNE, "success", detail=detail),
            )


def prune_expired(
    store: Store,
    retention_days: int,
    now: dt.datetime,
    *,
    keep_going: Callable[[], bool] | None = None,
) -> int:
    """Remove the events older than ``retention_days`` days at ``now`` (none when it is 0:
    keep forever); how many were removed. Safe to run from several processes at once."""
    if retention_days <= 0:
        return 0
    cutoff = now - dt.timedelta(days=retention_days)
    by = f"STRONGROOM_AUDIT_RETENTION_DAYS={retention_days}"
    return prune(store, cutoff, now=now, by=by, keep_going=keep_going).count


class Pruner:
    """:func:`prune_expired` when started and then every ``interval`` seconds, on a daemon
    thread, from :meth:`start` to :meth:`stop`; a failed prune is logged and the next one
    tried. With a retention of 0 (keep forever), starting it does nothing."""

    def __init__(self, store: Store, retention_days: int, interval: float) -> None:
        self.store = store
        self.retention_days = retention_days
        self.interval = interval
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        with self._lock:
            if self._thread is not None or self.retention_days <= 0:
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="audit-pruner", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop, within one batch of a prune under way."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None:
            thread.join(timeout=60)

    def _run(self, stop: threading.Event) -> None:
        # At once, then every interval: a process restarted more often than the interval
        # still prunes.
        while not stop.is_set():
            try:
                removed = prune_expired(
                    self.store,
                    self.retention_days,
                    dt.datetime.now(dt.UTC),
                    keep_going=lambda: not stop.is_set(),
                )
            except Exception as exc:
                log.warning("audit prune failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            else:
                if removed:
                    log.info(
                        "pruned audit events past retention",
                        extra={"removed": removed, "retention_days": self.retention_days},
                    )
            stop.wait(self.interval)
