"""Tasks run by real server and worker processes, on SQLite and PostgreSQL.

The product guide's four task definitions run end to end: an OpenAI-compatible upstream
on 127.0.0.1 records what it is sent, the database steps query a real PostgreSQL
database of this module's own. Then every answer, the server's log and every byte the
databases hold (strongroom's tables and DBOS's) are searched for the secrets. A server
killed with SIGKILL mid-execution resumes it after a restart without running its
finished step again.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from strongroom import Strongroom
from strongroom.models import Execution
from strongroom.server.apikeys import create_api_key
from strongroom.server.auth import Caller
from strongroom.server.services import Services

from .conftest import MASTER_KEY, POSTGRES_URL
from .support import (
    STRONGROOM,
    ServerProcess,
    TcpRelay,
    canary,
    find_leaks,
    process_env,
    run_cli,
    start_server,
)
from .test_tasks_api import GUIDE_ASYNC, GUIDE_DATABASE, GUIDE_OPENAI, GUIDE_TRANSFORM
from .upstream import Upstream, at

pytestmark = pytest.mark.e2e

PEOPLE = [[1, "Ada Lovelace"], [2, "Grace Hopper"]]


@pytest.fixture(scope="module")
def people_database() -> Iterator[str]:
    """A PostgreSQL database with the guide's ``users`` table (dropped after)."""
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable: {exc}")
    name = f"strongroom_guide_{os.getpid()}_{secrets.token_hex(3)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        url = f"{POSTGRES_URL.rpartition('/')[0]}/{name}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE users (id int PRIMARY KEY, name text)")
            for row in PEOPLE:
                conn.execute("INSERT INTO users VALUES (%s, %s)", row)
        try:
            yield url
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def task_env(database_url: str, upstream: Upstream, **more: str) -> dict[str, str]:
    return {
        "STRONGROOM_DATABASE_URL": database_url,
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
        "STRONGROOM_EGRESS_ALLOW": "127.0.0.1,localhost",
        "STRONGROOM_OPENAI_BASE_URL": upstream.base_url,
        **more,
    }


@pytest.fixture
def task_server(database_url: str, tmp_path: Path, upstream: Upstream) -> Iterator[ServerProcess]:
    # Tools refuse the endpoint of the server's own database, and the guide's database
    # steps query a database on the same shared PostgreSQL (at its default port, which
    # the guide's step cannot change): on PostgreSQL the server reaches its own database
    # through a relay on another port, as if the two were different servers.
    relay = None
    server_url = database_url
    if database_url.startswith("postgresql://"):
        parts = urlsplit(database_url)
        relay = TcpRelay((parts.hostname or "127.0.0.1", parts.port or 5432))
        server_url = relay.url_for(database_url)
    proc = start_server(tmp_path, task_env(server_url, upstream))
    try:
        yield proc
    finally:
        proc.stop()
        if relay is not None:
            relay.close()


def client_of(server: ServerProcess, services: Services) -> Strongroom:
    key, _ = create_api_key(services.store, services.barrier, "default")
    return Strongroom(api_key=key, base_url=server.base_url)


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    """Poll ``check()`` until it returns something truthy (a condition, not a delay)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout} s")


def ended(services: Services, caller: Caller, execution_id: str) -> Any:
    """The execution once it has ended, read from the database."""

    def check() -> Any:
        found = services.tasks.get_execution(caller, execution_id)
        return found if found.status in ("succeeded", "failed", "cancelled") else None

    return wait_for(check)


# -- what the databases hold --------------------------------------------------------------------
def everything_stored(database_url: str) -> bytes:
    """Every byte the databases hold: SQLite's files (strongroom's and DBOS's, with their
    journals), or every row of every table of the ``public`` and ``dbos`` schemas."""
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        files = sorted(path.parent.glob(path.name + "*"))
        assert Path(f"{path}.dbos.sqlite") in files
        return b"".join(f.read_bytes() for f in files)
    chunks: list[bytes] = []
    with psycopg.connect(database_url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema IN ('public', 'dbos') AND table_type = 'BASE TABLE'"
        ).fetchall()
        assert {"dbos"} <= {schema for schema, _ in tables}
        for schema, table in tables:
            for (text,) in conn.execute(f'SELECT t::text FROM "{schema}"."{table}" t'):
                chunks.append(text.encode())
            for row in conn.execute(f'SELECT * FROM "{schema}"."{table}"'):
                for value in row:
                    chunks.append(value if isinstance(value, bytes) else str(value).encode())
    return b"\n".join(chunks)


def dbos_checkpoints(database_url: str, execution_id: str) -> dict[str, list[Any]]:
    """What DBOS recorded for an execution's workflow: its inputs and its steps' outputs."""
    queries = {
        "inputs": "SELECT inputs FROM {s}workflow_input WHERE workflow_uuid = {p}",
        "outputs": "SELECT output FROM {s}operation_outputs WHERE workflow_uuid = {p}"
        " ORDER BY function_id",
    }
    found: dict[str, list[Any]] = {}
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///") + ".dbos.sqlite"
        with sqlite3.connect(path) as conn:
            for name, query in queries.items():
                rows = conn.execute(query.format(s="", p="?"), (execution_id,)).fetchall()
                found[name] = [json.loads(r[0]) if r[0] else None for r in rows]
        return found
    with psycopg.connect(database_url) as conn:
        for name, query in queries.items():
            rows = conn.execute(query.format(s="dbos.", p="%s"), (execution_id,)).fetchall()
            found[name] = [json.loads(r[0]) if r[0] else None for r in rows]
    return found


# -- the guide's four tasks -----------------------------------------------------------------------
def test_the_guides_tasks_run_and_nothing_stored_holds_a_secret(
    task_server: ServerProcess,
    services: Services,
    upstream: Upstream,
    people_database: str,
    database_url: str,
) -> None:
    people = urlsplit(people_database)
    db_password = canary("dbpw")
    values = {
        "openai_api_key": canary("sk"),
        "api_key": canary("api"),
        "db_host": people.hostname or "127.0.0.1",
        "db_username": people.username or "postgres",
        "db_password": db_password,  # trust authentication: any password is accepted
        "db_name": people.path.lstrip("/"),
        "database_password": f"postgresql://{people.username}:{db_password}"
        f"@{people.hostname}:{people.port or 5432}/{people.path.lstrip('/')}",
    }
    watched = ["openai_api_key", "api_key", "db_password", "database_password"]
    answers: list[bytes] = []
    with client_of(task_server, services) as client:
        for name, value in values.items():
            client.secrets.create(name=name, value=value)
        runs: dict[str, Execution] = {}
        for label, definition in (
            ("openai", GUIDE_OPENAI),
            ("transform", GUIDE_TRANSFORM),
            ("database", GUIDE_DATABASE),
            ("async", GUIDE_ASYNC),
        ):
            task = client.tasks.create(task=definition)
            assert task.model_extra == {"warnings": []}
            runs[label] = client.tasks.execute(task.id)
        done = {label: client.executions.wait(e.id, timeout=60) for label, e in runs.items()}
        for label, execution in done.items():
            assert execution.status == "succeeded", (label, execution.error)
            steps = client.executions.steps(execution.id)
            assert [s.status for s in steps.items] == ["succeeded"]
            answers.append(execution.model_dump_json().encode())
            answers.append(steps.model_dump_json().encode())
        answers.append(client.executions.list().model_dump_json().encode())
        answers.append(client.audit.list(limit=1000).model_dump_json().encode())
        reads = client.audit.list(action="secret.read", limit=1000).items

    # openai: the upstream got the key as a bearer token, the answer is the step's output
    [chat] = upstream.seen
    assert chat.path == "/v1/chat/completions"
    assert chat.headers["authorization"] == f"Bearer {values['openai_api_key']}"
    assert chat.body["messages"] == GUIDE_OPENAI["steps"][0]["arguments"]["messages"]
    assert done["openai"].output["content"] == upstream.reply
    # transform: the URL holds the key, so it is stored redacted
    assert done["transform"].output == "[REDACTED:api_key]"
    # database: four secrets make the connection; rows come back
    assert done["database"].output["rows"] == PEOPLE
    assert done["database"].output["columns"] == ["id", "name"]
    # the guide's step with only secret_name: a URL secret, checked with SELECT 1
    assert done["async"].output["rows"] == [[1]]
    # each secret a step read is audited with its execution and step
    details = {(r.secret_name, r.detail) for r in reads}
    assert ("openai_api_key", f"execution {done['openai'].id} step 0") in details
    assert ("db_password", f"execution {done['database'].id} step 0") in details

    # DBOS's checkpoints hold the execution id, a count and statuses: nothing else
    for execution in done.values():
        recorded = dbos_checkpoints(database_url, execution.id)
        assert recorded["inputs"] == [{"namedArgs": {}, "positionalArgs": [execution.id]}]
        assert recorded["outputs"] == [1, "succeeded", "succeeded"]

    task_server.stop()
    stored = everything_stored(database_url)
    log = (task_server.log() + task_server.stdout()).encode()
    assert b'"step succeeded"' in log
    for name in watched:
        value = values[name]
        assert find_leaks(value, stored) == [], f"{name} in the database"
        assert find_leaks(value, log) == [], f"{name} in the server log"
        for answer in answers:
            assert find_leaks(value, answer) == [], f"{name} in an answer"


# -- failures, cancellation -----------------------------------------------------------------------
def test_a_failing_step_fails_the_execution_with_a_redacted_message(
    task_server: ServerProcess, services: Services, upstream: Upstream, database_url: str
) -> None:
    key = canary("api")
    steps = [
        GUIDE_TRANSFORM["steps"][0],
        {"kind": "transform", "expression": "$ [outputs.api_url, _, steps[0]]", "output": "all"},
        {
            "kind": "tool_call",
            "tool": "openai",
            "operation": "chat",
            "arguments": {
                "model": "m",
                "base_url": at(upstream, "fail"),
                "messages": [{"role": "user", "content": "$ outputs.all[0]"}],
            },
        },
        {"kind": "transform", "expression": "$ 'not reached'"},
    ]
    with client_of(task_server, services) as client:
        client.secrets.create(name="api_key", value=key)
        task = client.tasks.create(steps=steps)
        execution = client.executions.wait(client.tasks.execute(task.id).id, timeout=30)
        step_list = client.executions.steps(execution.id)
    assert execution.status == "failed"
    assert execution.error["step"] == 2
    # the prompt carried the secret-derived URL as data: the upstream's words are withheld
    assert execution.error["code"] == "upstream_error"
    assert execution.error["message"].endswith("[REDACTED:api_key]")
    assert "withheld" in execution.error["message"]
    assert [s.status for s in step_list.items] == ["succeeded", "succeeded", "failed"]
    assert step_list.items[1].output == "[REDACTED:api_key]"
    # the upstream did get the URL (and quoted it back in its error)
    assert key in upstream.seen[0].body["messages"][0]["content"]
    task_server.stop()
    everything = execution.model_dump_json().encode() + step_list.model_dump_json().encode()
    assert find_leaks(key, everything + task_server.log().encode()) == []
    assert find_leaks(key, everything_stored(database_url)) == []


def test_cancel_a_running_execution_stops_it_before_its_next_step(
    task_server: ServerProcess, services: Services, upstream: Upstream
) -> None:
    steps = [
        {
            "kind": "tool_call",
            "tool": "openai",
            "operation": "chat",
            "arguments": {
                "model": "m",
                "base_url": at(upstream, "blocking"),
                "messages": [{"role": "user", "content": "hold on"}],
            },
        },
        {"kind": "transform", "expression": "$ 'second step'"},
    ]
    with client_of(task_server, services) as client:
        task = client.tasks.create(steps=steps)
        execution = client.tasks.execute(task.id)
        assert upstream.arrived.wait(30)
        assert client.executions.get(execution.id).status == "running"
        assert client.executions.cancel(execution.id).status == "cancelled"
        upstream.release.set()
        # the step under way finishes; the next one never starts
        finished = wait_for(
            lambda: [s for s in client.executions.steps(execution.id).items if s.finished_at]
        )
        assert [s.index for s in finished] == [0]
        wait_for(lambda: b'"execution finished"' in task_server.log_path.read_bytes())
        assert client.executions.get(execution.id).status == "cancelled"
        assert [s.index for s in client.executions.steps(execution.id).items] == [0]


# -- durability -----------------------------------------------------------------------------------
def test_a_server_killed_mid_execution_resumes_without_rerunning_finished_steps(
    database_url: str, tmp_path: Path, upstream: Upstream, services: Services
) -> None:
    env = task_env(database_url, upstream, STRONGROOM_EXECUTOR_ID="api-1")
    server = start_server(tmp_path, env)
    chat = {
        "kind": "tool_call",
        "tool": "openai",
        "operation": "chat",
        "secret_name": "openai_api_key",
    }
    message = [{"role": "user", "content": "hello"}]
    steps = [
        {
            **chat,
            "arguments": {"model": "m", "base_url": at(upstream, "first"), "messages": message},
            "output": "first",
        },
        {
            **chat,
            "arguments": {"model": "m", "base_url": at(upstream, "blocking"), "messages": message},
        },
        {"kind": "transform", "expression": "$ [outputs.first['content'], _['content']]"},
    ]
    try:
        with client_of(server, services) as client:
            client.secrets.create(name="openai_api_key", value=canary("sk"))
            task = client.tasks.create(steps=steps)
            execution = client.tasks.execute(task.id)
            assert upstream.arrived.wait(30)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
    finally:
        server.stop()
    upstream.release.set()
    restarted = start_server(tmp_path, env)
    try:
        with client_of(restarted, services) as client:
            done = client.executions.wait(execution.id, timeout=60)
            step_list = client.executions.steps(execution.id)
    finally:
        restarted.stop()
    assert done.status == "succeeded", done.error
    assert done.output == [upstream.reply, upstream.reply]
    assert [s.status for s in step_list.items] == ["succeeded"] * 3
    paths = upstream.paths()
    assert paths.count("/first/v1/chat/completions") == 1  # finished before the kill
    assert paths.count("/blocking/v1/chat/completions") == 2  # interrupted, so run again


def start_worker(workdir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = workdir / f"worker-{secrets.token_hex(3)}.log"
    full_env = process_env(env)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [STRONGROOM, "worker"], env=full_env, cwd=workdir, stdout=out, stderr=out
        )
    wait_for(lambda: b"execution engine started" in log.read_bytes() or process.poll() is not None)
    assert process.poll() is None, log.read_text()
    return process


def test_a_worker_runs_queued_executions_and_resumes_them_after_a_kill(
    database_url: str, tmp_path: Path, upstream: Upstream, services: Services, caller: Caller
) -> None:
    """Executions recorded while no engine ran (the in-process app queues them) are found
    by a worker when it starts (one cancelled meanwhile never runs); one killed mid-run is
    finished by its restart."""
    message = [{"role": "user", "content": "hello"}]
    blocking = {
        "kind": "tool_call",
        "tool": "openai",
        "operation": "chat",
        "arguments": {"model": "m", "base_url": at(upstream, "blocking"), "messages": message},
    }
    quick, _ = services.tasks.create_task(
        caller, {"steps": [{"kind": "transform", "expression": "$ inputs * 2"}]}
    )
    slow, _ = services.tasks.create_task(
        caller, {"steps": [{"kind": "transform", "expression": "$ 'first'"}, blocking]}
    )
    quick_runs = [services.tasks.execute(caller, quick.id, n).id for n in range(3)]
    cancelled_run = services.tasks.execute(caller, slow.id, None).id
    services.tasks.cancel(caller, cancelled_run)  # cancelled while queued: never runs
    slow_run = services.tasks.execute(caller, slow.id, None).id
    env = task_env(database_url, upstream, STRONGROOM_EXECUTOR_ID="worker-1")
    worker = start_worker(tmp_path, env)
    try:
        assert upstream.arrived.wait(30)
        for n, execution_id in enumerate(quick_runs):
            done = ended(services, caller, execution_id)
            assert (done.status, done.output) == ("succeeded", n * 2)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        upstream.release.set()
        worker = start_worker(tmp_path, env)
        done = ended(services, caller, slow_run)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(15)
    assert done.status == "succeeded", done.error
    assert done.output["content"] == upstream.reply
    assert upstream.paths().count("/blocking/v1/chat/completions") == 2
    assert services.tasks.get_execution(caller, cancelled_run).status == "cancelled"
    assert services.tasks.execution_steps(caller, cancelled_run) == []


# -- the command line ---------------------------------------------------------------------------
def test_tasks_run_prints_step_progress_and_the_redacted_output(
    task_server: ServerProcess, services: Services, tmp_path: Path
) -> None:
    client = client_of(task_server, services)
    api_key = canary("api_key")
    client.secrets.create(name="api_key", value=api_key)
    task_file = tmp_path / "task.json"
    task_file.write_text(
        json.dumps(
            {
                "task": {
                    "steps": [
                        {
                            "kind": "transform",
                            "expression": "$ f'https://api.example.com/v1?api_key="
                            "{secrets.api_key}&query={input}'",
                            "input": "search query",
                            "output": "api_url",
                        },
                        {
                            "kind": "transform",
                            "expression": ["$ len(outputs.api_url)", "$ len(input)"],
                            "input": "four",
                        },
                    ]
                }
            }
        )
    )
    env = {
        "STRONGROOM_API_KEY": client._config.api_key,
        "STRONGROOM_BASE_URL": task_server.base_url,
    }
    done = run_cli(["tasks", "run", str(task_file), "--timeout", "60"], env)
    assert done.returncode == 0, done.stderr
    assert "step 0 transform: succeeded" in done.stderr
    assert "step 1 transform: succeeded" in done.stderr
    # a length derived from the secret is as secret as the secret: only the other shows
    assert json.loads(done.stdout) == ["[REDACTED:api_key]", 4]
    assert not find_leaks(api_key, (done.stdout + done.stderr).encode())

    failing = tmp_path / "failing.json"
    failing.write_text(json.dumps({"steps": [{"kind": "transform", "expression": "$ 1 // 0"}]}))
    failed = run_cli(["tasks", "run", str(failing)], env)
    assert failed.returncode == 1
    assert "step 0 transform: failed" in failed.stderr
    assert "failed" in failed.stderr.splitlines()[-1]
