"""Assembly: the services one server (or worker, or CLI command) runs on, built in one place.

``open_services`` opens and migrates the database, unseals the barrier and builds every
service on it; the HTTP layer (``app.py``) and the commands only use what it returns.
This process's execution engine is part of it but does not run until it is started: by
the app's lifespan (``strongroom serve``) or by ``strongroom worker``. Until then an
execution waits queued, for whichever engine picks it up. The barrier's heartbeat
(:mod:`.crypto.heartbeat`) and the audit retention's pruner (:mod:`.audit_retention`) are
started the same way, by the long-running processes only. The audit file
(:mod:`.audit_file`), when configured, is opened here and gets every process's events.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .apikeys import KeyService
from .audit import AuditService
from .audit_file import AuditFile
from .audit_retention import Pruner
from .crypto import Barrier
from .crypto.heartbeat import Heartbeat
from .crypto.masterkey import key_file_is_private, load_master_keys, read_key_file
from .metrics import Metrics
from .secret_batches import SecretBatches
from .secrets import SecretService
from .sessions import SessionService
from .settings import Settings
from .storage import Store, open_store
from .tasks.executors import ExecutorClaim
from .tasks.executors import default_id as default_executor_id
from .tasks.limits import TaskLimits
from .tasks.runner import Runner
from .tasks.service import DeferredEngine, TaskService
from .tasks.tools import REGISTRY, ToolConfig

if TYPE_CHECKING:
    from .tasks.engine import DurableEngine

log = logging.getLogger("strongroom.server")


_DEFERRED = DeferredEngine()


class EngineHost:
    """This process's execution engine: built on demand, started and stopped with the
    process's lifetime. ``submit`` before it runs leaves the execution queued (an engine
    started later, here or in a worker, picks it up), as :class:`~.tasks.service.Engine`
    allows.

    The runner and the engine module are made only on start: the engine loads DBOS, and the
    runner's tool settings resolve the database host, which commands that never run
    executions (``keys``, ``master-key``) should not pay for.
    """

    def __init__(
        self,
        make_runner: Callable[[], Runner],
        store: Store,
        settings: Settings,
    ) -> None:
        self._make_runner = make_runner
        self._store = store
        self._settings = settings
        # Resolved when the engine starts (see tasks/executors.py): a command that never
        # runs executions makes no id file.
        self.executor_id: str | None = settings.executor_id
        self._claim: ExecutorClaim | None = None
        self._engine: DurableEngine | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Claim this process's executor id (``ExecutorIdInUse`` if a live process holds
        it), then start the engine; the claim is released if the engine cannot start."""
        from .tasks.engine import DurableEngine

        with self._lock:
            if self._engine is not None:
                raise RuntimeError("this process's execution engine is already running")
            settings = self._settings
            self.executor_id = settings.executor_id or default_executor_id()
            claim = ExecutorClaim(self._store, self.executor_id, settings.barrier_heartbeat_seconds)
            claim.take()
            engine = DurableEngine(
                self._make_runner(),
                self.executor_id,
                scheduler_seconds=settings.scheduler_seconds,
                gone_seconds=settings.executor_gone_seconds,
                pool_size=settings.database_pool_size,
                poll_seconds=settings.engine_poll_seconds,
            )
            try:
                engine.start()
            except BaseException:
                claim.release()
                raise
            self._engine, self._claim = engine, claim

    def beat(self) -> None:
        """Keep this process's executor claim fresh (the heartbeat's call); nothing while
        the engine does not run."""
        claim = self._claim
        if claim is not None:
            claim.beat()

    @property
    def running(self) -> bool:
        return self._engine is not None

    def stop(self) -> None:
        with self._lock:
            engine, self._engine = self._engine, None
            claim, self._claim = self._claim, None
        if engine is not None:
            engine.stop()
        if claim is not None:
            try:
                claim.release()
            except Exception:
                # Its claim goes stale and counts as gone after a few heartbeat intervals.
                log.warning("could not release this process's executor id", exc_info=True)

    def submit(self, execution_id: str, tenant_id: str) -> None:
        engine = self._engine
        (engine or _DEFERRED).submit(execution_id, tenant_id)


@dataclass(frozen=True, slots=True)
class Services:
    """Everything a request, a worker or an admin command needs, built once per process."""

    settings: Settings
    store: Store
    barrier: Barrier
    secrets: SecretService
    batches: SecretBatches  # batch reads and writes, by the rules of ``secrets``
    tasks: TaskService
    audit: AuditService
    sessions: SessionService
    keys: KeyService
    engine: EngineHost
    heartbeat: Heartbeat
    pruner: Pruner
    metrics: Metrics  # served by the process when STRONGROOM_METRICS_LISTEN is set
    audit_file: AuditFile | None = None

    def close(self) -> None:
        """Stop the pruner, the heartbeat and the engine if they run, leave the barrier's
        holders, and close the database and the audit file."""
        self.pruner.stop()
        self.heartbeat.stop()
        self.engine.stop()
        try:
            self.barrier.release()
        except Exception:
            # Its row goes stale and counts as gone after a few heartbeat intervals.
            log.warning("could not remove this process from the barrier holders", exc_info=True)
        self.store.close()
        if self.audit_file is not None:
            self.audit_file.close()


def open_services(settings: Settings, *, master_key: bytes | None = None) -> Services:
    """Open the database, apply migrations, unseal the barrier, and build the services.

    Raises :class:`~strongroom.server.crypto.MasterKeyError` or
    :class:`~strongroom.server.crypto.WrongMasterKey` before anything is served, and
    :class:`~.audit_file.AuditFileError` for an audit file it cannot open.
    """
    master_keys = _master_keys(settings) if master_key is None else [master_key]
    store: Store = open_store(
        settings.database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        pool_size=settings.database_pool_size,
    )
    try:
        audit_file = attach_audit_file(store, settings)
    except BaseException:
        store.close()
        raise
    try:
        store.migrate()
        barrier = Barrier(master_keys, store, key_source=_key_source(settings, master_key))
        keyring = barrier.unseal()
    except BaseException:
        store.close()
        if audit_file is not None:
            audit_file.close()
        raise
    limits = task_limits(settings)
    metrics = Metrics(store)
    store.audit_sinks = (*store.audit_sinks, metrics.count_event)
    engine = EngineHost(
        lambda: Runner(
            store,
            barrier,
            tool_config(settings),
            limits=limits,
            max_value_bytes=settings.max_value_bytes,
            observe_step=metrics.observe_step,
        ),
        store,
        settings,
    )
    secrets = SecretService(
        store,
        keyring,
        max_value_bytes=settings.max_value_bytes,
        recovery_window=dt.timedelta(days=settings.secret_recovery_days),
    )
    return Services(
        settings=settings,
        store=store,
        barrier=barrier,
        secrets=secrets,
        batches=SecretBatches(secrets),
        tasks=TaskService(store, engine, limits=limits),
        audit=AuditService(store),
        sessions=SessionService(
            store, barrier, lifetime=dt.timedelta(seconds=settings.session_seconds)
        ),
        keys=KeyService(store, barrier),
        engine=engine,
        heartbeat=Heartbeat(barrier, settings.barrier_heartbeat_seconds, also=(engine.beat,)),
        pruner=Pruner(store, settings.audit_retention_days, settings.audit_prune_interval_seconds),
        metrics=metrics,
        audit_file=audit_file,
    )


def attach_audit_file(store: Store, settings: Settings) -> AuditFile | None:
    """Open ``STRONGROOM_AUDIT_FILE`` (if set) and make it the store's audit sink, so that
    every event the store commits is appended to it; raises
    :class:`~.audit_file.AuditFileError` when it cannot be opened."""
    if settings.audit_file is None:
        return None
    audit_file = AuditFile.open(settings.audit_file)
    store.audit_sinks = (audit_file.append,)
    return audit_file


def _master_keys(settings: Settings) -> list[bytes]:
    key_file = settings.master_key_file
    shared_key_file = (
        settings.master_key is None
        and key_file is not None
        and key_file.exists()
        and not key_file_is_private(key_file)
    )
    if shared_key_file:
        log.warning(
            "the master key file is readable by other users; chmod 600 it",
            extra={"path": str(key_file)},
        )
    return load_master_keys(
        settings.master_key.get_secret_value() if settings.master_key else None,
        settings.master_key_file,
    )


def _key_source(settings: Settings, given: bytes | None) -> Callable[[], list[bytes]] | None:
    """Where the heartbeat rereads the master keys: the key file, when they come from one
    (a variable cannot change under a running process)."""
    file = settings.master_key_file
    if given is not None or settings.master_key is not None or file is None:
        return None
    return lambda: read_key_file(file)


def task_limits(settings: Settings) -> TaskLimits:
    """The bounds on task work, from the server settings (``STRONGROOM_TASK_*``)."""
    return TaskLimits(
        max_steps=settings.task_max_steps,
        max_result_bytes=settings.task_max_result_bytes,
        max_execution_bytes=settings.task_max_execution_bytes,
        concurrency=settings.task_concurrency,
        concurrency_per_tenant=settings.task_concurrency_per_tenant,
    )


def tool_config(settings: Settings) -> ToolConfig:
    """What task tools may reach and where (``ValueError``: refuse to start); see
    :meth:`~.tasks.tools.registry.Registry.config`."""
    return REGISTRY.config(settings)
