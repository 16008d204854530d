"""A deployment as an operator runs one: two servers, two workers and Redis on one
PostgreSQL, under a bounded load from several clients, with one server and one worker
SIGKILLed and restarted mid-run.

What must hold across the nodes and the kills:

- no acknowledged write is lost: each name holds its last acknowledged value or a later
  attempted one (a write whose answer died with its server may or may not have landed);
- every execution finishes exactly once: each ends ``succeeded`` with its one output and
  one record per step, and its durable workflow ends once; a step interrupted by the kill
  runs again (at most once more), no finished step does;
- request budgets hold across the servers (Redis), not once per server;
- a revoked key, a rotated KEK are seen by every server at once (no node caches them).

The figures it measures (connections to PostgreSQL, requests answered, kills survived)
are printed for docs/deploy.md.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from strongroom.server.apikeys import create_api_key
from strongroom.server.services import Services

from .conftest import MASTER_KEY
from .support import ServerProcess, run_cli, start_server, wait_until
from .test_tasks_e2e import start_worker
from .upstream import Upstream, blocking_chat_step

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("backend", ["postgres"])]

KEY_BUDGET = 120  # a key's requests per minute, across both servers
WRITERS = 3
NAMES_PER_WRITER = 4
WRITES_BEFORE_KILL = 12  # per writer: the kill comes while they write on
WRITES_AFTER_RESTART = 15  # per writer, once both killed processes are back
MAX_WRITES = 2000  # per writer: the load is bounded whatever happens
KEYS_PER_WRITER = 20  # a writer spreads over keys of its own, each with the key budget
QUICK_RUNS = 24
SLOW_RUNS = 3


@dataclass
class Node:
    """A server or worker process and how to start it again in its own data directory."""

    name: str
    workdir: Path
    env: dict[str, str]
    server: ServerProcess | None = None
    worker: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.name.startswith("api"):
            self.server = start_server(self.workdir, self.env)
        else:
            self.worker = start_worker(self.workdir, self.env)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.base_url

    def kill(self) -> None:
        process = self.server.process if self.server else self.worker
        assert process is not None
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        elif self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(15)
            except subprocess.TimeoutExpired:
                self.worker.kill()


@dataclass
class Writer:
    """A client writing its own names over and over, on whichever server answers."""

    keys: list[str]
    names: list[str]
    acked: dict[str, int] = field(default_factory=dict)  # name -> last acknowledged seq
    tried: dict[str, int] = field(default_factory=dict)  # name -> last attempted seq
    failures: int = 0
    writes: int = 0


@pytest.fixture
def cluster(
    database_url: str, redis_url: str, tmp_path: Path, upstream: Upstream
) -> Iterator[dict[str, Node]]:
    env = {
        "STRONGROOM_DATABASE_URL": database_url,
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
        "STRONGROOM_REDIS_URL": redis_url,
        "STRONGROOM_RATE_LIMIT_PER_KEY": f"{KEY_BUDGET}/minute",
        # Every test client is 127.0.0.1, and other tests share this Redis: no address budget.
        "STRONGROOM_RATE_LIMIT_PER_ADDRESS": "off",
        "STRONGROOM_EGRESS_ALLOW": "127.0.0.1",
        "STRONGROOM_OPENAI_BASE_URL": upstream.base_url,
        "STRONGROOM_SCHEDULER_SECONDS": "1",
    }
    nodes = {}
    for name in ("api-1", "api-2", "worker-1", "worker-2"):
        workdir = tmp_path / name
        workdir.mkdir()
        # No STRONGROOM_EXECUTOR_ID: each takes the unique default kept in its data directory.
        nodes[name] = Node(name, workdir, env)
    try:
        for node in nodes.values():
            node.start()
        yield nodes
    finally:
        upstream.release.set()
        for node in nodes.values():
            node.stop()


def connections(database_url: str) -> int:
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchone()
    assert row is not None
    return int(row[0]) - 1  # this one


def test_two_servers_two_workers_survive_kills_and_agree(
    cluster: dict[str, Node],
    services: Services,
    upstream: Upstream,
    database_url: str,
) -> None:
    store, barrier = services.store, services.barrier
    admin, _ = create_api_key(store, barrier, "default", name="admin")
    slow_admin, _ = create_api_key(store, barrier, "slow", name="slow admin")
    servers = [cluster["api-1"], cluster["api-2"]]

    def client(key: str, node: Node) -> httpx.Client:
        return httpx.Client(
            base_url=node.url, headers={"Authorization": f"Bearer {key}"}, timeout=15
        )

    quick_task = (
        client(admin, servers[0])
        .post(
            "/v1/tasks",
            json={
                "steps": [
                    {"kind": "transform", "expression": "$ input * 2"},
                    {"kind": "transform", "expression": "$ steps[0] + 1"},
                    {"kind": "transform", "expression": "$ steps[1] * 10"},
                ]
            },
        )
        .json()["id"]
    )
    slow_task = (
        client(slow_admin, servers[0])
        .post(
            "/v1/tasks",
            json={
                "steps": [
                    {"kind": "transform", "expression": "$ input"},
                    blocking_chat_step(upstream),
                    {"kind": "transform", "expression": "$ steps[0]"},
                ]
            },
        )
        .json()["id"]
    )
    # A tenant of its own for the runs that block: they hold its share of the queue, not
    # the other tenant's.
    slow_runs = [
        client(slow_admin, servers[n % 2])
        .post(f"/v1/tasks/{slow_task}/executions", json={"input": n})
        .json()["id"]
        for n in range(SLOW_RUNS)
    ]
    assert upstream.arrived.wait(60), "no slow run reached the upstream"

    writers = [
        Writer(
            [
                create_api_key(store, barrier, "default", name=f"writer {w}.{k}")[0]
                for k in range(KEYS_PER_WRITER)
            ],
            [f"w{w}_name_{n}" for n in range(NAMES_PER_WRITER)],
        )
        for w in range(WRITERS)
    ]
    quick_runs: dict[str, int] = {}
    quick_lock = threading.Lock()
    restarted = threading.Event()
    peak_connections = [connections(database_url)]
    answered = [0]
    turned_away = [0]  # requests that met the killed server's closed port, sent on

    def send(key: str, method: str, path: str, n: int, **kwargs: Any) -> httpx.Response | None:
        """One request, to server n % 2, or to the other when that one is down."""
        for attempt in range(2):
            node = servers[(n + attempt) % 2]
            try:
                with client(key, node) as http:
                    response = http.request(method, path, **kwargs)
            except httpx.TransportError:
                turned_away[0] += 1
                continue
            answered[0] += 1
            return response
        return None

    def write(writer: Writer) -> None:
        after = 0
        for seq in range(1, MAX_WRITES + 1):
            if after >= WRITES_AFTER_RESTART:
                break
            after += restarted.is_set()
            name = writer.names[seq % len(writer.names)]
            writer.tried[name] = seq
            key = writer.keys[seq % len(writer.keys)]
            response = send(key, "PUT", f"/v1/secrets/{name}", seq, json={"value": f"{name}={seq}"})
            writer.writes += 1
            if response is not None and response.status_code in (200, 201):
                writer.acked[name] = seq
            else:
                writer.failures += 1

    def run_quick() -> None:
        for n in range(QUICK_RUNS):
            if n == QUICK_RUNS // 2:
                restarted.wait(60)
            response = send(
                admin, "POST", f"/v1/tasks/{quick_task}/executions", n, json={"input": n}
            )
            if response is not None and response.status_code == 201:
                with quick_lock:
                    quick_runs[response.json()["id"]] = n

    threads = [threading.Thread(target=write, args=(w,)) for w in writers]
    threads.append(threading.Thread(target=run_quick))
    for thread in threads:
        thread.start()
    started = time.monotonic()
    wait_until(
        lambda: all(w.writes >= WRITES_BEFORE_KILL - 1 for w in writers),
        "the writers got going",
        timeout=60,
    )
    peak_connections.append(connections(database_url))
    # Kill a server and a worker mid-run, hard, and bring them back from their data
    # directories (so under their own executor ids).
    for name in ("api-2", "worker-2"):
        cluster[name].kill()
    upstream.release.set()
    for name in ("api-2", "worker-2"):
        cluster[name].start()
    restarted.set()
    for thread in threads:
        thread.join(120)
        peak_connections.append(connections(database_url))
    elapsed = time.monotonic() - started
    assert turned_away[0] > 0, "the kill came after the load, not during it"

    # -- no acknowledged write lost ---------------------------------------------------------
    reader = client(admin, servers[0])
    for writer in writers:
        assert writer.acked, "a writer had no write acknowledged"
        for name, acked in writer.acked.items():
            value = reader.get(f"/v1/secrets/{name}").json()["value"]
            stored = int(value.rsplit("=", 1)[1])
            assert acked <= stored <= writer.tried[name], (name, acked, stored)

    # -- every execution finished exactly once ----------------------------------------------
    runs = {**quick_runs, **dict.fromkeys(slow_runs, -1)}
    assert len(quick_runs) >= QUICK_RUNS - 2  # a submit may die with its server, unanswered

    def status(run: str) -> str:
        key = slow_admin if run in slow_runs else admin
        return str(reader.get(f"/v1/executions/{run}", headers=_auth(key)).json()["status"])

    wait_until(
        lambda: all(status(run) not in ("queued", "running") for run in runs),
        "every execution ended",
        timeout=90,
    )
    for run, n in quick_runs.items():
        done = reader.get(f"/v1/executions/{run}").json()
        assert (done["status"], done["output"]) == ("succeeded", (n * 2 + 1) * 10), done
    for n, run in enumerate(slow_runs):
        done = reader.get(f"/v1/executions/{run}", headers=_auth(slow_admin)).json()
        assert (done["status"], done["output"]) == ("succeeded", n), done
    with psycopg.connect(database_url, autocommit=True) as conn:
        steps = conn.execute(
            "SELECT execution_id, count(*), bool_and(status = 'succeeded') "
            "FROM execution_steps GROUP BY execution_id"
        ).fetchall()
        workflows = dict(
            conn.execute(
                "SELECT workflow_uuid, status FROM dbos.workflow_status "
                "WHERE name = 'strongroom.execution'"
            ).fetchall()
        )
    assert {row[0]: (row[1], row[2]) for row in steps} == dict.fromkeys(runs, (3, True))
    assert {run: workflows.get(run) for run in runs} == dict.fromkeys(runs, "SUCCESS")
    calls = upstream.paths().count("/blocking/v1/chat/completions")
    # One call per slow run, and at most one more for each whose process was killed.
    assert SLOW_RUNS <= calls <= 2 * SLOW_RUNS

    # -- one budget across the servers ----------------------------------------------------
    probe = create_api_key(store, barrier, "default", name="probe")[0]
    taken, refused_on = 0, set()
    probe_started = time.monotonic()
    for n in range(3 * KEY_BUDGET):
        response = send(probe, "GET", "/v1/secrets?limit=1", n)
        assert response is not None
        if response.status_code == 429:
            refused_on.add(servers[n % 2].name)
            if len(refused_on) == 2:
                break
        else:
            assert response.status_code == 200
            taken += 1
    refill = (time.monotonic() - probe_started) * KEY_BUDGET / 60
    assert refused_on == {"api-1", "api-2"}
    assert KEY_BUDGET <= taken <= KEY_BUDGET + refill + 2, (taken, refill)

    # -- a revocation and a new KEK, seen by every server at once ---------------------------
    doomed, doomed_record = create_api_key(store, barrier, "default", name="doomed")
    assert client(doomed, servers[1]).get("/v1/secrets?limit=1").status_code == 200
    revoked = client(admin, servers[0]).delete(f"/v1/keys/{doomed_record.id}")
    assert revoked.status_code == 200, revoked.text
    for node in servers:
        assert client(doomed, node).get("/v1/secrets?limit=1").status_code == 401

    rotated = run_cli(
        ["master-key", "rotate"], {**cluster["api-1"].env}, cwd=cluster["api-1"].workdir
    )
    assert rotated.returncode == 0, rotated.stderr
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT max(id) FROM keyring WHERE state = 'active'").fetchone()
    assert row is not None
    newest = row[0]
    written = client(admin, servers[1]).put("/v1/secrets/after_rotation", json={"value": "v"})
    assert written.status_code in (200, 201), written.text
    assert client(admin, servers[0]).get("/v1/secrets/after_rotation").json()["value"] == "v"
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT v.kek_id FROM secret_versions v JOIN secrets s ON s.id = v.secret_id "
            "WHERE s.name = 'after_rotation'"
        ).fetchone()
    assert row is not None and row[0] == newest

    # -- the figures ---------------------------------------------------------------------
    writes = sum(w.writes for w in writers)
    lost_answers = sum(w.failures for w in writers)
    print(
        f"\nmulti-node: {answered[0]} requests answered in {elapsed:.1f} s "
        f"({writes} writes, {turned_away[0]} met the killed server and went to the other, "
        f"{lost_answers} not acknowledged, "
        f"{len(runs)} executions, {calls} slow-step calls for {SLOW_RUNS} slow runs); "
        f"peak PostgreSQL connections {max(peak_connections)} for 4 processes; "
        f"budget {taken} of {KEY_BUDGET}/minute across two servers"
    )
    assert max(peak_connections) <= 4 * 3 * 10


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
