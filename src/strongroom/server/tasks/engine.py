"""The durable engine: executions run as DBOS workflows that survive a crash.

Each execution is one workflow, with the execution id as its workflow id, enqueued on one
DBOS queue that every engine process (``strongroom serve`` and ``strongroom worker``)
listens to. The workflow is three kinds of DBOS step around :class:`.runner.Runner`::

    count = begin(execution_id)            # -> int
    for index in range(count):
        if run_step(execution_id, index) != "succeeded": break
    finish(execution_id)                    # -> status

so DBOS checkpoints hold only an execution id, step indexes, a count and statuses, never a
value: inputs, outputs and step results live in strongroom's tables (sealed where they
may hold secrets). DBOS is configured with its portable JSON serializer (no pickle is ever
read back from the database) and without an admin server.

Where DBOS keeps its state: on SQLite, in its own file next to strongroom's
(``<database>.dbos.sqlite``), and executions run in the server process; on PostgreSQL, in
the same database under the ``dbos`` schema, and any number of server and worker
processes share the queue. A process that dies mid-execution leaves its workflow pending
under its executor id; DBOS recovers it when a process with the *same* executor id
(``STRONGROOM_EXECUTOR_ID``) starts again, so each worker needs its own stable id. The
resumed workflow replays the checkpointed steps, and the runner skips any step its own
table records as succeeded, so a finished step is never run twice; the step that was
interrupted runs again.

How many run at once is bounded on the queue (``TaskLimits``): ``concurrency`` executions in
all (across every process sharing the queue) and ``concurrency_per_tenant`` of any one
tenant (the queue is partitioned by tenant id), so a tenant whose runs hang on a silent
upstream holds at most its own share of the workers and the others' runs go on. Executions
enqueued by a version before the queue was partitioned are on ``LEGACY_QUEUE``, which is
still listened to so they finish.

The scheduler is a DBOS schedule (``HOUSEKEEPING_SCHEDULE``) that every engine process
applies when it starts: each tick is one workflow whose id is the schedule's name and the
tick's time, so it runs once whichever process takes it. It claims the due rotations and
enqueues their executions, then purges the deleted secrets whose recovery window ended
(:mod:`..housekeeping`).

DBOS is a process-wide singleton, so :class:`DurableEngine` is started once per process
(by the ``serve`` and ``worker`` commands) and the workflow functions reach the runner
through a module global.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any, Final

from dbos import DBOS, DBOSConfig, DBOSPortableJSONSerializer, SetEnqueueOptions, SetWorkflowID

from ..housekeeping import purge_ended, start_due_rotations
from ..logs import route_to_root
from .executors import Pending, stranded
from .runner import GONE, Runner
from .status import SUCCEEDED

log = logging.getLogger("strongroom.engine")

APP_NAME: Final = "strongroom"
QUEUE: Final = "strongroom_runs"  # partitioned by tenant id
LEGACY_QUEUE: Final = "strongroom_executions"  # unpartitioned, before per-tenant limits
# Bump when the workflow's sequence of steps changes: DBOS recovers a pending workflow only
# in a process of the same application version. The workflow replays strongroom's own
# tables, so a change of the code around it does not need a new version.
ENGINE_VERSION: Final = "strongroom-engine-1"
DBOS_SCHEMA: Final = "dbos"

_ENDED: Final = frozenset({"SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"})

_runner: Runner | None = None
_gone_seconds: float = 600.0  # STRONGROOM_EXECUTOR_GONE_SECONDS of this process's engine
_lock = threading.Lock()


def _the_runner() -> Runner:
    if _runner is None:
        raise RuntimeError("the execution engine has not been started in this process")
    return _runner


# -- the workflow ---------------------------------------------------------------------------
@DBOS.step(name="strongroom.begin", retries_allowed=True, max_attempts=5)
def begin(execution_id: str) -> int:
    return _the_runner().begin(execution_id)


@DBOS.step(name="strongroom.run_step", retries_allowed=True, max_attempts=5)
def run_step(execution_id: str, index: int) -> str:
    return _the_runner().run_step(execution_id, index)


@DBOS.step(name="strongroom.finish", retries_allowed=True, max_attempts=5)
def finish(execution_id: str) -> str:
    return _the_runner().finish(execution_id)


EXECUTION_WORKFLOW: Final = "strongroom.execution"


@DBOS.workflow(name=EXECUTION_WORKFLOW)
def execution_workflow(execution_id: str) -> str:
    """Run an execution's steps in order; stop at the first that does not succeed."""
    for index in range(begin(execution_id)):
        status = run_step(execution_id, index)
        if status == GONE:
            return GONE
        if status != SUCCEEDED:
            break
    return finish(execution_id)


# -- the scheduler: one tick at a time across every process -----------------------------------
HOUSEKEEPING_SCHEDULE: Final = "strongroom-housekeeping"


@DBOS.step(name="strongroom.start_rotations", retries_allowed=True, max_attempts=5)
def start_rotations() -> list[list[str]]:
    """Claim the due rotations; ``[execution id, tenant id]`` of each to enqueue."""
    started = start_due_rotations(_the_runner().store, dt.datetime.now(dt.UTC))
    return [[execution.id, execution.tenant_id] for execution in started]


@DBOS.step(name="strongroom.purge_ended", retries_allowed=True, max_attempts=5)
def purge_ended_windows() -> int:
    return purge_ended(_the_runner().store, dt.datetime.now(dt.UTC))


@DBOS.step(name="strongroom.fail_stranded", retries_allowed=True, max_attempts=5)
def fail_stranded() -> int:
    """Fail the executions pending under an executor gone for good (see
    :mod:`.executors`): their workflows are cancelled, so the executor's return, if it
    comes, does not resume them."""
    pending = [
        Pending(status.workflow_id, status.executor_id or "", _from_epoch_ms(status.updated_at))
        for status in DBOS.list_workflows(
            status="PENDING",
            name=EXECUTION_WORKFLOW,
            load_input=False,
            load_output=False,
        )
    ]
    runner = _the_runner()
    found = stranded(runner.store, pending, _gone_seconds)
    for workflow, reason in found:
        DBOS.cancel_workflow(workflow.workflow_id)
        runner.abandon(workflow.workflow_id, reason)
        log.warning(
            "failed an execution whose executor is gone",
            extra={"execution_id": workflow.workflow_id, "executor_id": workflow.executor_id},
        )
    return len(found)


def _from_epoch_ms(value: int | None) -> dt.datetime:
    return dt.datetime.fromtimestamp((value or 0) / 1000, dt.UTC)


@DBOS.workflow(name="strongroom.housekeeping")
def housekeeping_workflow(scheduled_at: Any, context: Any) -> None:
    """One tick of the scheduler: DBOS runs it once per tick (its workflow id is the
    schedule's name and the tick's time) in one of the processes, whichever takes it."""
    for execution_id, tenant_id in start_rotations():
        with SetWorkflowID(execution_id), SetEnqueueOptions(queue_partition_key=tenant_id):
            DBOS.enqueue_workflow(QUEUE, execution_workflow, execution_id)
    purge_ended_windows()
    fail_stranded()


def housekeeping_cron(seconds: float) -> str:
    """A six-field cron (seconds first) firing every ``seconds``, rounded up to a divisor
    of a minute (1 to 30 s) or of an hour (1 to 60 min)."""
    whole = max(1, int(-(-seconds // 1)))
    if whole < 60:
        every = next(d for d in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) if d >= whole)
        return f"*/{every} * * * * *"
    minutes = -(-whole // 60)
    if minutes >= 60:
        return "0 0 * * * *"
    every = next(d for d in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60) if d >= minutes)
    return f"0 */{every} * * * *"


# -- configuration --------------------------------------------------------------------------
def dbos_config(system_database_url: str, executor_id: str, pool_size: int = 10) -> DBOSConfig:
    return {
        "name": APP_NAME,
        "system_database_url": system_database_url,
        "dbos_system_schema": DBOS_SCHEMA,
        "executor_id": executor_id,
        "application_version": ENGINE_VERSION,
        # JSON only: a checkpoint is data, never code to unpickle.
        "serializer": DBOSPortableJSONSerializer(),
        "enable_otlp": False,
        "sys_db_pool_size": pool_size,
        # How often DBOS flushes the notifications it coalesces (PostgreSQL), 10 ms by
        # default: a hundred wake-ups a second in an idle process. The workflows here wait
        # on no DBOS event, message or stream, so nothing reads them sooner.
        "notification_coalesce_sec": 1.0,
    }


def _route_dbos_logs() -> None:
    """DBOS's logger prints through its own handler; send it to ours (JSON, redacted).
    ``configure_logging`` did so before DBOS was constructed (whose first line would
    otherwise be plain text); this also covers a process that did not call it."""
    dbos_logger = logging.getLogger("dbos")
    route_to_root(dbos_logger)
    if dbos_logger.level == logging.NOTSET or dbos_logger.level < logging.WARNING:
        dbos_logger.setLevel(logging.WARNING)


class DurableEngine:
    """The DBOS engine of this process: started once, stopped at shutdown."""

    def __init__(
        self,
        runner: Runner,
        executor_id: str,
        scheduler_seconds: float = 60.0,
        gone_seconds: float = 600.0,
        pool_size: int = 10,
        poll_seconds: float = 1.0,
    ) -> None:
        self.runner = runner
        self.pool_size = pool_size
        self.poll_seconds = poll_seconds
        self.executor_id = executor_id
        self.scheduler_seconds = scheduler_seconds
        self.gone_seconds = gone_seconds
        self._created = False

    def start(self) -> None:
        """Launch DBOS (recovering this executor's pending workflows), listen to the queue,
        and enqueue every execution still queued or running that DBOS does not know."""
        global _runner, _gone_seconds
        with _lock:
            if _runner is not None:
                raise RuntimeError("an execution engine is already running in this process")
            _runner = self.runner
            _gone_seconds = self.gone_seconds
        try:
            system_database = self.runner.store.system_database_url()
            DBOS(config=dbos_config(system_database, self.executor_id, self.pool_size))
            self._created = True
            _route_dbos_logs()
            DBOS.launch()
            self._register(QUEUE, partition_concurrency=self.runner.limits.concurrency_per_tenant)
            self._listen_to_legacy_queue()
            # Every process applies the same schedule (a replace, atomic in DBOS); each
            # tick runs once, in whichever process takes it.
            DBOS.apply_schedules(
                [
                    {
                        "schedule_name": HOUSEKEEPING_SCHEDULE,
                        "workflow_fn": housekeeping_workflow,
                        "schedule": housekeeping_cron(self.scheduler_seconds),
                    }
                ]
            )
            self.reconcile()
        except BaseException:
            self.stop()
            raise
        log.info("execution engine started", extra={"executor_id": self.executor_id})

    def _listen_to_legacy_queue(self) -> None:
        """Listen to ``LEGACY_QUEUE`` while executions wait on it; remove it once none do.
        Nothing is enqueued there any more, and every queue registered in the database is
        polled by every process: an empty one would cost each idle process a poll per
        interval for ever."""
        waiting = DBOS.list_workflows(
            queue_name=LEGACY_QUEUE,
            status=["ENQUEUED", "PENDING"],
            limit=1,
            load_input=False,
            load_output=False,
        )
        if not waiting:
            DBOS.delete_queue(LEGACY_QUEUE)
            return
        self._register(LEGACY_QUEUE, partition_concurrency=None)

    def _register(self, queue: str, *, partition_concurrency: int | None) -> None:
        """Create or update ``queue`` in the database with this process's limits (every
        process registers the same ones)."""
        limits = self.runner.limits
        DBOS.register_queue(
            queue,
            global_concurrency=limits.concurrency,
            worker_concurrency=limits.concurrency,
            partition_concurrency=partition_concurrency,
            polling_interval_sec=self.poll_seconds,
            on_conflict="always_update",
        )

    def submit(self, execution_id: str, tenant_id: str) -> None:
        """Enqueue the execution's workflow in its tenant's partition; a second submit of
        the same id is a no-op."""
        with SetWorkflowID(execution_id), SetEnqueueOptions(queue_partition_key=tenant_id):
            DBOS.enqueue_workflow(QUEUE, execution_workflow, execution_id)

    def reconcile(self, batch: int = 1000) -> int:
        """Submit the unfinished executions (one recorded but never enqueued, say, because
        the process died in between). Enqueueing is idempotent per workflow id."""
        with self.runner.store.read() as tx:
            unfinished = [tx.executions.by_id(i) for i in tx.executions.unfinished_ids(batch)]
        for execution in unfinished:
            if execution is None:
                continue
            execution_id = execution.id
            self.submit(execution_id, execution.tenant_id)
            status = DBOS.get_workflow_status(execution_id)
            if status is not None and status.status in _ENDED:
                # DBOS ended the workflow (it gave up, or was cancelled from outside)
                # but the execution was never finished: record that it will not be.
                self.runner.abandon(execution_id, "the execution engine gave up on this execution")
        return len(unfinished)

    def stop(self) -> None:
        global _runner
        if self._created:
            DBOS.destroy(workflow_completion_timeout_sec=0)
            self._created = False
        with _lock:
            if _runner is self.runner:
                _runner = None
