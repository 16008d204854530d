"""Scheduled rotation across processes: two servers and a worker on one PostgreSQL.

Every process runs the scheduler (a DBOS schedule, one tick a second here); each due
rotation must run exactly once, whichever process takes the tick, and a process killed
in the middle of a rotation must leave it to be finished, not started again, when it
comes back with the same executor id.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from strongroom.server.auth import Caller
from strongroom.server.housekeeping import rotation_execution_id
from strongroom.server.services import Services
from strongroom.server.storage import AuditFilter

from .conftest import MASTER_KEY
from .key_issuer import KeyIssuer, key_issuer, rotation_steps
from .support import ServerProcess, start_server, wait_until
from .test_tasks_e2e import start_worker

pytestmark = pytest.mark.e2e


@pytest.fixture
def issuer() -> Iterator[KeyIssuer]:
    with key_issuer() as issuer:
        yield issuer


def env_for(database_url: str, executor: str) -> dict[str, str]:
    return {
        "STRONGROOM_DATABASE_URL": database_url,
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
        "STRONGROOM_EGRESS_ALLOW": "127.0.0.1",
        "STRONGROOM_SCHEDULER_SECONDS": "1",
        "STRONGROOM_EXECUTOR_ID": executor,
    }


def executor_of(database_url: str, workflow_id: str) -> str | None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT executor_id FROM dbos.workflow_status WHERE workflow_uuid = %s",
            (workflow_id,),
        ).fetchone()
    return None if row is None else str(row[0])


def rotations_of(services: Services, caller: Caller, secret_id: str) -> int:
    with services.store.read() as tx:
        page = tx.executions.page(caller.tenant_id, task_id=None, limit=1000, offset=0)
    return sum(1 for execution in page.items if execution.rotation_of == secret_id)


@pytest.mark.parametrize("backend", ["postgres"])
def test_each_due_rotation_runs_once_across_servers_and_a_kill(
    database_url: str,
    tmp_path: Path,
    services: Services,
    caller: Caller,
    issuer: KeyIssuer,
) -> None:
    secrets_service = services.secrets
    secrets_service.create(caller, "provider_admin", issuer.admin_token)
    names = [f"api_key_{i}" for i in range(4)]
    task_ids = {}
    for name in names:
        secrets_service.create(caller, name, f"sk_live_old_{name}")
        task, _ = services.tasks.create_task(
            caller, {"steps": rotation_steps(issuer, name, "provider_admin")}
        )
        task_ids[name] = task.id
        secrets_service.update(caller, name, rotation={"every": "1h", "task_id": task.id})

    processes: dict[str, Any] = {
        "api-1": start_server(tmp_path, env_for(database_url, "api-1")),
        "api-2": start_server(tmp_path, env_for(database_url, "api-2")),
        "worker-1": start_worker(tmp_path, env_for(database_url, "worker-1")),
    }
    try:
        # 1. One rotation, its provider call held, and the process running it killed.
        issuer.hold = True
        first = secrets_service.rotate_now(caller, names[0])
        assert first.next_rotation_at is not None
        workflow = rotation_execution_id(first.id, first.next_rotation_at)
        assert issuer.arrived.wait(60), "the held rotation never reached the provider"
        victim = executor_of(database_url, workflow)
        assert victim in processes, victim
        process = processes[victim]
        popen = process.process if isinstance(process, ServerProcess) else process
        popen.send_signal(signal.SIGKILL)
        popen.wait(10)
        issuer.hold = False
        issuer.release.set()
        env = env_for(database_url, victim)
        processes[victim] = (
            start_server(tmp_path, env) if victim.startswith("api") else start_worker(tmp_path, env)
        )
        wait_until(
            lambda: secrets_service.get(caller, names[0]).version == 2,
            "the killed rotation finished",
            timeout=60,
        )
        # 2. Three due at once, with every process's scheduler looking.
        for name in names[1:]:
            secrets_service.rotate_now(caller, name)
        wait_until(
            lambda: all(secrets_service.get(caller, n).version == 2 for n in names[1:]),
            "every due rotation finished",
            timeout=60,
        )
    finally:
        for process in processes.values():
            if isinstance(process, ServerProcess):
                process.stop()
            elif process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()

    now = dt.datetime.now(dt.UTC)
    values = set()
    for name in names:
        secret = secrets_service.get(caller, name)
        # exactly one new version, the newest key the provider issued for it, and the
        # next rotation an hour away: nothing will run it again
        assert secret.version == 2, name
        assert secret.value in issuer.issued
        values.add(secret.value)
        assert secret.secret.next_rotation_at is not None
        assert secret.secret.next_rotation_at > now + dt.timedelta(minutes=55)
        assert rotations_of(services, caller, secret.secret.id) == 1, name
    assert len(values) == len(names)
    where = AuditFilter(action="secret.rotate")
    events = services.audit.list_events(caller, limit=200, offset=0, where=where).items
    succeeded = sorted(e.secret_name or "" for e in events if e.outcome == "success")
    assert succeeded == names
    # the held call ran again after the kill (the step that was interrupted reruns), and
    # every other rotation called the provider once
    assert len(issuer.issued) in (len(names), len(names) + 1)
