"""Every line a running server or worker writes is a JSON object, the execution engine's
(DBOS's) included: a log collector parses them all, and none slips through as plain text
that the redaction and the request ids never saw.

A real ``serve`` on SQLite and a real ``worker`` on PostgreSQL each run one execution and
are stopped; then every non-empty line of their stdout and stderr is parsed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from strongroom.server.apikeys import create_api_key
from strongroom.server.auth import Caller
from strongroom.server.services import Services, open_services
from strongroom.server.settings import Settings

from .conftest import MASTER_KEY, truncate_postgres
from .support import STRONGROOM, start_server, wait_until

DOUBLE = {"steps": [{"kind": "transform", "expression": "$ inputs * 2"}]}


def non_json_lines(*outputs: str) -> list[str]:
    """The non-empty lines of ``outputs`` that are not a JSON object."""
    found = []
    for output in outputs:
        for line in output.splitlines():
            if not line.strip():
                continue
            try:
                parsed = json.loads(line)
            except ValueError:
                found.append(line)
                continue
            if not isinstance(parsed, dict):
                found.append(line)
    return found


def loggers(output: str) -> set[str]:
    return {json.loads(line)["logger"] for line in output.splitlines() if line.strip()}


@pytest.mark.e2e
def test_serve_writes_only_json_while_it_runs_an_execution(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    services = open_services(Settings(database_url=database_url, master_key=SecretStr(MASTER_KEY)))
    try:
        key, _ = create_api_key(services.store, services.barrier, "default")
    finally:
        services.store.close()
    server = start_server(
        tmp_path, {"STRONGROOM_DATABASE_URL": database_url, "STRONGROOM_MASTER_KEY": MASTER_KEY}
    )
    try:
        with httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        ) as client:
            task = client.post("/v1/tasks", json=DOUBLE).json()
            execution = client.post(f"/v1/tasks/{task['id']}/executions", json={"input": 21})
            assert execution.status_code == 201, execution.text
            url = f"/v1/executions/{execution.json()['id']}"
            wait_until(lambda: client.get(url).json()["status"] == "succeeded", "the execution")
            assert client.get(url).json()["output"] == 42
            client.get("/v1/secrets/missing")  # an error answer, logged too
    finally:
        assert server.stop() in (0, -signal.SIGTERM), server.log()
    assert non_json_lines(server.log(), server.stdout()) == []
    # DBOS's own line is among them, as JSON.
    assert {"dbos", "strongroom.request", "strongroom.serve"} <= loggers(server.log())


@pytest.fixture
def postgres_services(postgres_database: str) -> Iterator[Services]:
    truncate_postgres(postgres_database)
    services = open_services(
        Settings(database_url=postgres_database, master_key=SecretStr(MASTER_KEY))
    )
    try:
        yield services
    finally:
        services.store.close()


@pytest.mark.e2e
def test_a_worker_writes_only_json_while_it_runs_an_execution(
    postgres_services: Services, tmp_path: Path
) -> None:
    services = postgres_services
    _, record = create_api_key(services.store, services.barrier, "default")
    caller = Caller(record.tenant_id, record.tenant_name, record.id, record.scopes)
    task, _ = services.tasks.create_task(caller, DOUBLE)
    execution_id = services.tasks.execute(caller, task.id, 4).id
    stdout, stderr = tmp_path / "worker.out", tmp_path / "worker.err"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "STRONGROOM_DATABASE_URL": services.settings.database_url,
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
    }
    with stdout.open("wb") as out, stderr.open("wb") as err:
        worker = subprocess.Popen(
            [STRONGROOM, "worker"], env=env, cwd=tmp_path, stdout=out, stderr=err
        )
    try:

        def ended() -> Any:
            assert worker.poll() is None, stderr.read_text()
            return services.tasks.get_execution(caller, execution_id).status == "succeeded"

        wait_until(ended, "the worker runs the execution")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(15)
    assert worker.returncode == 0, stderr.read_text()
    assert services.tasks.get_execution(caller, execution_id).output == 8
    log = stderr.read_text()
    assert non_json_lines(log, stdout.read_text()) == []
    assert {"dbos", "strongroom.engine", "strongroom.worker"} <= loggers(log)
