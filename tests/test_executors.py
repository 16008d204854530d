"""Executor ids: unique by default, one live process per id, and the executions of an
executor gone for good failed rather than left running forever.

Before, every process defaulted to the id ``local``: two servers on one PostgreSQL
shared an identity, and a restart of one could resume the other's in-flight executions.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import stat
import subprocess
import threading
from pathlib import Path

import psycopg
import pytest
from dbos import DBOSClient, DBOSPortableJSONSerializer

from strongroom.server.auth import Caller
from strongroom.server.services import Services
from strongroom.server.storage import ExecutorRecord, Store
from strongroom.server.tasks.engine import ENGINE_VERSION, EXECUTION_WORKFLOW, LEGACY_QUEUE
from strongroom.server.tasks.executors import (
    ExecutorClaim,
    ExecutorIdInUse,
    Pending,
    default_id,
    stranded,
)

from .conftest import MASTER_KEY
from .support import STRONGROOM, ServerProcess, start_server, wait_until
from .test_tasks_e2e import start_worker
from .upstream import Upstream, blocking_chat_step

HEARTBEAT = 5.0


def claim(
    store: Store, executor_id: str = "server-1", host: str = "h1", pid: int = 0
) -> ExecutorClaim:
    return ExecutorClaim(store, executor_id, HEARTBEAT, hostname=host, pid=pid or os.getpid())


def age(store: Store, executor_id: str, seconds: float) -> None:
    """Make the claim look last seen ``seconds`` ago."""
    with store.write() as tx:
        held = tx.executors.by_id(executor_id)
        assert held is not None
        now = tx.keyring.clock()
        tx.executors.replace(
            ExecutorRecord(
                held.executor_id,
                held.hostname,
                held.pid,
                held.started_at,
                now - dt.timedelta(seconds=seconds),
            )
        )


# -- the default id -------------------------------------------------------------------------
def test_the_default_id_is_the_host_and_a_suffix_kept_private_in_the_data_directory(
    tmp_path: Path,
) -> None:
    id_file = tmp_path / "data" / "executor-id"
    first = default_id(id_file)
    assert first == default_id(id_file), "a restart must come back under the same id"
    assert first.startswith(os.uname().nodename)
    assert stat.S_IMODE(id_file.stat().st_mode) == 0o600
    elsewhere = default_id(tmp_path / "other" / "executor-id")
    assert elsewhere != first, "two data directories on one host are two executors"


def test_an_unwritable_data_directory_gives_an_id_for_this_run_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with caplog.at_level(logging.WARNING, "strongroom.engine"):
        one = default_id(blocked / "executor-id")
        two = default_id(blocked / "executor-id")
    assert one != two
    assert "will not be resumed by its restart" in caplog.text


# -- claims ---------------------------------------------------------------------------------
def test_a_live_claim_on_another_host_refuses_the_id(services: Services) -> None:
    store = services.store
    claim(store, host="h1").take()
    with pytest.raises(ExecutorIdInUse, match=r"held by process \d+ on 'h1'"):
        claim(store, host="h2").take()
    claim(store, "server-2", host="h2").take()  # another id is free


def test_a_claim_may_be_taken_over_once_released_stale_or_its_process_dead(
    services: Services,
) -> None:
    store = services.store
    first = claim(store, host="h1")
    first.take()
    first.release()
    claim(store, host="h2").take()  # released: free at once

    age(store, "server-1", 3 * HEARTBEAT + 1)
    survivor = claim(store, host="h3")
    survivor.take()  # silent for longer than three beats: gone

    # On the same host, a pid that no longer runs is a crashed predecessor.
    with store.write() as tx:
        now = tx.keyring.clock()
        tx.executors.insert(ExecutorRecord("server-3", HOST, _no_such_pid(), now, now))
    claim(store, "server-3", host=HOST).take()
    # ...but a live one on the same host is another process.
    with store.write() as tx:
        now = tx.keyring.clock()
        tx.executors.insert(ExecutorRecord("server-4", HOST, os.getppid(), now, now))
    with pytest.raises(ExecutorIdInUse):
        claim(store, "server-4", host=HOST).take()


HOST = os.uname().nodename


def _no_such_pid() -> int:
    """A pid no process can have: the kernel hands out pids below pid_max."""
    return int(Path("/proc/sys/kernel/pid_max").read_text())


def test_a_process_whose_claim_was_taken_over_says_so_at_its_next_beat(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    store = services.store
    mine = claim(store, host="h1")
    mine.take()
    age(store, "server-1", 3 * HEARTBEAT + 1)
    claim(store, host="h2").take()
    with caplog.at_level(logging.ERROR, "strongroom.engine"):
        mine.beat()
    assert "another process has claimed this process's executor id" in caplog.text


def test_of_processes_claiming_one_id_at_once_exactly_one_wins(services: Services) -> None:
    store = services.store
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def attempt(n: int) -> None:
        start.wait()
        try:
            claim(store, host=f"h{n}").take()
        except ExecutorIdInUse:
            outcomes.append("refused")
        else:
            outcomes.append("claimed")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["claimed", "refused", "refused", "refused"]


# -- the sweep ------------------------------------------------------------------------------
def test_the_sweep_picks_only_executions_whose_executor_is_gone_long_enough(
    services: Services,
) -> None:
    store = services.store
    claim(store, "alive", host="h1").take()
    claim(store, "gone", host="h2").take()
    age(store, "gone", 700)
    with store.read() as tx:
        now = tx.keyring.clock()
    pending = [
        Pending("run-1", "alive", now - dt.timedelta(hours=1)),
        Pending("run-2", "gone", now),
        Pending("run-3", "never-claimed", now - dt.timedelta(hours=1)),
        Pending("run-4", "never-claimed-but-recent", now),
    ]
    found = stranded(store, pending, 600)
    assert [(workflow.workflow_id, workflow.executor_id) for workflow, _ in found] == [
        ("run-2", "gone"),
        ("run-3", "never-claimed"),
    ]
    reason = found[0][1]
    assert reason == (
        "the process running this execution (executor gone) stopped and has not come back for 600 s"
    )


# -- across processes -----------------------------------------------------------------------
def env_for(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "STRONGROOM_DATABASE_URL": database_url,
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
        "STRONGROOM_EGRESS_ALLOW": "127.0.0.1",
        **extra,
    }


def holders(database_url: str) -> set[int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return {row[0] for row in conn.execute("SELECT pid FROM barrier_holders").fetchall()}


def claims(database_url: str) -> dict[str, tuple[str, int | None]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT executor_id, hostname, pid FROM engine_executors").fetchall()
    return {row[0]: (row[1], row[2]) for row in rows}


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["postgres"])
def test_servers_take_unique_ids_by_default_and_refuse_a_live_ones(
    database_url: str, tmp_path: Path
) -> None:
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    one_dir.mkdir()
    two_dir.mkdir()
    servers = [
        start_server(one_dir, env_for(database_url)),
        start_server(two_dir, env_for(database_url)),
    ]
    try:
        held = claims(database_url)
        assert len(held) == 2, held
        pids = {server.process.pid for server in servers}
        assert {pid for _, pid in held.values()} == pids
        # A worker told to use a live server's id is refused before it runs anything.
        taken = next(iter(held))
        worker = subprocess.run(
            [STRONGROOM, "worker"],
            env={"PATH": os.environ["PATH"], **env_for(database_url, STRONGROOM_EXECUTOR_ID=taken)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert worker.returncode == 2, worker.stderr
        assert f"executor id {taken!r} is held by process" in worker.stderr
        # A clean stop releases the claim and leaves the barrier's holders; a restart
        # comes back under its own id, from its data directory.
        first_id = next(i for i, (_, pid) in held.items() if pid == servers[0].process.pid)
        assert servers[0].stop() == 0, servers[0].log()
        assert claims(database_url)[first_id][1] is None
        assert servers[0].process.pid not in holders(database_url)
        servers[0] = start_server(one_dir, env_for(database_url))
        again = claims(database_url)
        assert set(again) == set(held)
        assert {pid for _, pid in again.values()} == {s.process.pid for s in servers}
    finally:
        for server in servers:
            server.stop()


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["postgres"])
def test_an_execution_left_by_an_executor_gone_for_good_is_failed_not_resumed(
    database_url: str, tmp_path: Path, upstream: Upstream, services: Services, caller: Caller
) -> None:
    task, _ = services.tasks.create_task(caller, {"steps": [blocking_chat_step(upstream)]})
    run = services.tasks.execute(caller, task.id, None).id
    doomed_env = env_for(
        database_url,
        STRONGROOM_EXECUTOR_ID="doomed",
        STRONGROOM_OPENAI_BASE_URL=upstream.base_url,
    )
    doomed = start_worker(tmp_path, doomed_env)
    assert upstream.arrived.wait(30)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)
    # A server whose scheduler ticks every second and counts an executor gone after 2 s.
    sweeper: ServerProcess = start_server(
        tmp_path,
        env_for(
            database_url,
            STRONGROOM_EXECUTOR_ID="sweeper",
            STRONGROOM_SCHEDULER_SECONDS="1",
            STRONGROOM_BARRIER_HEARTBEAT_SECONDS="0.5",
            STRONGROOM_EXECUTOR_GONE_SECONDS="2",
        ),
    )
    try:
        wait_until(
            lambda: services.tasks.get_execution(caller, run).status == "failed",
            "the stranded execution failed",
            timeout=60,
        )
        failed = services.tasks.get_execution(caller, run)
        assert failed.error is not None
        assert "executor doomed" in failed.error["message"]
        # The executor comes back: the cancelled workflow is not resumed, and the upstream
        # sees no second call.
        upstream.release.set()
        returned = start_worker(tmp_path, doomed_env)
        try:
            wait_until(
                lambda: _workflow_status(database_url, run) == "CANCELLED",
                "the workflow cancelled",
            )
        finally:
            returned.send_signal(signal.SIGTERM)
            returned.wait(15)
    finally:
        sweeper.stop()
        upstream.release.set()
    assert services.tasks.get_execution(caller, run).status == "failed"
    assert upstream.paths().count("/blocking/v1/chat/completions") == 1


def _workflow_status(database_url: str, workflow_id: str) -> str | None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = %s", (workflow_id,)
        ).fetchone()
    return None if row is None else str(row[0])


# -- the queue of an older version ----------------------------------------------------------
def _legacy_queue_rows(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM dbos.queues WHERE name = %s", (LEGACY_QUEUE,)
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["postgres"])
def test_the_old_unpartitioned_queue_is_polled_only_while_executions_wait_on_it(
    database_url: str, tmp_path: Path, services: Services, caller: Caller
) -> None:
    """An execution an older version enqueued on the unpartitioned queue still runs; once
    that queue is empty it is removed, so idle processes stop polling it."""
    env = env_for(database_url, STRONGROOM_EXECUTOR_ID="api-1")
    start_server(tmp_path, env).stop()  # creates the engine's schema; no legacy queue
    assert _legacy_queue_rows(database_url) == 0
    task, _ = services.tasks.create_task(
        caller, {"steps": [{"kind": "transform", "expression": "$ input * 3"}]}
    )
    run = services.tasks.execute(caller, task.id, 14).id
    client = DBOSClient(
        system_database_url=services.store.system_database_url(),
        serializer=DBOSPortableJSONSerializer(),
    )
    try:
        client.enqueue(
            {
                "workflow_name": EXECUTION_WORKFLOW,
                "queue_name": LEGACY_QUEUE,
                "workflow_id": run,
                "app_version": ENGINE_VERSION,
            },
            run,
        )
    finally:
        client.destroy()
    server = start_server(tmp_path, env)
    try:
        assert _legacy_queue_rows(database_url) == 1
        wait_until(
            lambda: services.tasks.get_execution(caller, run).status == "succeeded",
            "the execution on the old queue ran",
        )
        assert services.tasks.get_execution(caller, run).output == 42
    finally:
        server.stop()
    start_server(tmp_path, env).stop()
    assert _legacy_queue_rows(database_url) == 0
